//! Messages larger than a frame: cut into pieces tagged [`Tag::Part`], the
//! last piece carrying the message's own tag; and [`After`], a view of a
//! frame past its first bytes.

use std::time::Duration;

use coil_ipc::{ByteSource, Consumer, DecodeError, Producer, RingPushError, RingRecvError};

use crate::Tag;

/// Why a message could not be sent or reassembled.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The ring refused a piece.
    #[error(transparent)]
    Push(#[from] RingPushError),
    /// The ring failed while a piece was awaited.
    #[error(transparent)]
    Recv(#[from] RingRecvError),
    /// The message is larger than the configured limit.
    #[error("a message of {size} bytes is larger than the limit of {limit} (python.fn-execution.max-message-size)")]
    TooLarge {
        /// Its size so far.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A piece carried a tag no message has.
    #[error("a piece tagged {0}, which no message has")]
    UnknownTag(u16),
}

/// The size of the pieces a large message is cut into: a quarter of the
/// ring, so the receiver reads one piece while the sender writes the next.
pub fn piece_len(tx: &Producer) -> usize {
    (tx.capacity() / 4).max(64).min(tx.max_frame_len())
}

/// Sends `payload` as one frame with `tag`, or, if it does not fit in one,
/// as pieces; waits up to `timeout` for room for each frame.
///
/// # Errors
///
/// [`MessageError::Push`] if the ring refuses a frame (closed, dead peer,
/// timeout).
pub fn send_message(
    tx: &mut Producer,
    tag: Tag,
    payload: &[u8],
    timeout: Duration,
) -> Result<(), MessageError> {
    if payload.len() <= tx.max_frame_len() {
        tx.push_timeout(tag.raw(), payload, timeout)?;
    } else {
        let piece = piece_len(tx);
        let mut chunks = payload.chunks(piece).peekable();
        while let Some(chunk) = chunks.next() {
            let t = if chunks.peek().is_some() {
                Tag::Part
            } else {
                tag
            };
            tx.push_timeout(t.raw(), chunk, timeout)?;
        }
    }
    tx.flush();
    Ok(())
}

/// Collects the rest of a message whose first piece (tagged [`Tag::Part`])
/// the caller has already copied into `buf`; returns the message's tag.
/// Waits up to `timeout` for each piece.
///
/// # Errors
///
/// [`MessageError`]: `TooLarge` once `buf` would pass `limit` bytes,
/// `UnknownTag` for a last piece whose tag no message has.
pub fn assemble_rest(
    rx: &mut Consumer,
    buf: &mut Vec<u8>,
    limit: usize,
    timeout: Duration,
) -> Result<Tag, MessageError> {
    loop {
        let frame = rx.recv_timeout(timeout)?;
        if buf.len() + frame.len() > limit {
            return Err(MessageError::TooLarge {
                size: buf.len() + frame.len(),
                limit,
            });
        }
        frame.copy_into(buf);
        let raw = frame.tag();
        match Tag::try_from(raw) {
            Ok(Tag::Part) => continue,
            Ok(tag) => return Ok(tag),
            Err(_) => return Err(MessageError::UnknownTag(raw)),
        }
    }
}

/// A [`ByteSource`] that starts `skip` bytes into another: the rows after a
/// message's header.
#[derive(Debug)]
pub struct After<'a, S: ByteSource + ?Sized> {
    src: &'a S,
    skip: usize,
}

impl<'a, S: ByteSource + ?Sized> After<'a, S> {
    /// The bytes of `src` after the first `skip` (none if it is shorter).
    pub fn new(src: &'a S, skip: usize) -> Self {
        After {
            src,
            skip: skip.min(src.len()),
        }
    }
}

impl<S: ByteSource + ?Sized> ByteSource for After<'_, S> {
    #[inline]
    fn len(&self) -> usize {
        self.src.len() - self.skip
    }

    #[inline]
    fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), DecodeError> {
        self.src
            .read_at(offset + self.skip, dst)
            .map_err(|e| shift(e, self.skip))
    }

    #[inline]
    fn append_to(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        self.src
            .append_to(offset + self.skip, len, out)
            .map_err(|e| shift(e, self.skip))
    }
}

fn shift(mut e: DecodeError, skip: usize) -> DecodeError {
    e.offset = e.offset.saturating_sub(skip);
    e
}
