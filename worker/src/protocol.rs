//! The messages between a host and a worker: frames on a pair of rings,
//! their payloads in the flat row codec ([`coil_ipc::codec`]).
//!
//! Ring 0 carries requests from the host to the worker, ring 1 the answers.
//!
//! | tag | direction | payload |
//! |---|---|---|
//! | [`TAG_BATCH`] | host → worker | `seq: u64`, then a batch of argument rows |
//! | [`TAG_READY`] | worker → host | one row: `[pid, python version]` |
//! | [`TAG_LOAD_FAILED`] | worker → host | one row: `[type, message, traceback]` |
//! | [`TAG_RESULT`] | worker → host | `seq: u64`, the executor's decode, Python and encode nanoseconds (3 × `u64`), then one row per input row: `[result]` |
//! | [`TAG_UDF_ERROR`] | worker → host | `seq: u64`, then one row: `[row, type, message, traceback]` |
//! | [`TAG_BAD_ROW`] | worker → host | `seq: u64`, then one row: `[row, message]` |
//! | [`TAG_INCOMPATIBLE`] | worker → host | `seq: u64`, then one row: `[row, module, type, message, traceback]` |
//!
//! A table UDF's result for one input row is a list of rows (each a list).
//! The host closes ring 0 to shut the worker down; the worker then runs the
//! UDF's `close()` and exits.

use coil_ipc::{
    BatchDecoder, ByteSink, ByteSource, DecodeError, DecodeErrorKind, EncodeError, Value,
};

/// A batch of argument rows to run.
pub const TAG_BATCH: u16 = 1;
/// The worker loaded the UDF and waits for batches.
pub const TAG_READY: u16 = 10;
/// The worker could not load the UDF; it exits after sending this.
pub const TAG_LOAD_FAILED: u16 = 11;
/// The results of a batch, one per input row, in order.
pub const TAG_RESULT: u16 = 12;
/// The UDF raised on a row of a batch.
pub const TAG_UDF_ERROR: u16 = 13;
/// A row of a batch could not be converted (to or from Python).
pub const TAG_BAD_ROW: u16 = 14;
/// The UDF raised on a row of a batch because a module it imports cannot
/// load in a sub-interpreter (the batch can run in process mode).
pub const TAG_INCOMPATIBLE: u16 = 15;

/// Bytes of the sequence number that starts a batch, result or error.
pub const SEQ_LEN: usize = 8;

/// Bytes of the executor's timings after a result's sequence number.
pub const TIMES_LEN: usize = 24;

/// Writes the executor's timings of a batch (decode, Python, encode).
///
/// # Errors
///
/// [`EncodeError::Full`] if the sink has no room.
pub fn put_times<S: ByteSink + ?Sized>(
    sink: &mut S,
    t: crate::BatchTimes,
) -> Result<(), EncodeError> {
    for d in [t.decode, t.python, t.encode] {
        sink.put(&(d.as_nanos().min(u128::from(u64::MAX)) as u64).to_le_bytes())?;
    }
    Ok(())
}

/// Reads the executor's timings that follow a result's sequence number.
///
/// # Errors
///
/// A truncation error if the frame is too short.
pub fn read_times<S: ByteSource + ?Sized>(src: &S) -> Result<crate::BatchTimes, DecodeError> {
    let mut b = [0u8; TIMES_LEN];
    src.read_at(SEQ_LEN, &mut b)?;
    let ns = |i: usize| {
        std::time::Duration::from_nanos(u64::from_le_bytes(
            b[i * 8..i * 8 + 8].try_into().expect("8 bytes"),
        ))
    };
    Ok(crate::BatchTimes {
        decode: ns(0),
        python: ns(1),
        encode: ns(2),
    })
}

/// Writes the sequence number that starts a batch, result or error frame.
///
/// # Errors
///
/// [`EncodeError::Full`] if the sink has no room.
pub fn put_seq<S: ByteSink + ?Sized>(sink: &mut S, seq: u64) -> Result<(), EncodeError> {
    sink.put(&seq.to_le_bytes())
}

/// Reads the sequence number at the start of a frame.
///
/// # Errors
///
/// A truncation error if the frame is shorter than [`SEQ_LEN`].
pub fn read_seq<S: ByteSource + ?Sized>(src: &S) -> Result<u64, DecodeError> {
    let mut b = [0u8; SEQ_LEN];
    src.read_at(0, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A [`ByteSource`] that starts `skip` bytes into another: the batch after
/// a frame's sequence number.
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

/// Decodes a frame that holds exactly one row (after `skip` bytes), as the
/// control messages do.
///
/// # Errors
///
/// Any [`DecodeError`], or `CountTooLarge` if the frame holds another
/// number of rows.
pub fn decode_one_row<S: ByteSource + ?Sized>(
    src: &S,
    skip: usize,
) -> Result<Vec<Value>, DecodeError> {
    let after = After::new(src, skip);
    let mut dec = BatchDecoder::new(&after)?;
    if dec.rows_remaining() != 1 {
        return Err(DecodeError {
            offset: 0,
            kind: DecodeErrorKind::CountTooLarge {
                count: dec.rows_remaining(),
                remaining: 1,
            },
        });
    }
    let n = dec.begin_row()?;
    let mut row = Vec::with_capacity(n as usize);
    for _ in 0..n {
        row.push(dec.read_value(0)?);
    }
    dec.finish()?;
    Ok(row)
}

/// A piece of a message too large for one frame. The pieces go in order,
/// each tagged `TAG_PART`; the last piece carries the message's own tag.
pub const TAG_PART: u16 = 2;

/// Why a message could not be sent or reassembled.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The ring failed.
    #[error(transparent)]
    Push(#[from] coil_ipc::RingPushError),
    /// The ring failed.
    #[error(transparent)]
    Recv(#[from] coil_ipc::RingRecvError),
    /// The message is larger than the configured limit.
    #[error("a message of {size} bytes is larger than the limit of {limit} (python.fn-execution.max-message-size)")]
    TooLarge {
        /// Its size so far.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// The size of the pieces a large message is cut into: a quarter of the
/// ring, so the receiver reads one piece while the sender writes the next.
pub fn piece_len(tx: &coil_ipc::Producer) -> usize {
    (tx.capacity() / 4).max(64).min(tx.max_frame_len())
}

/// Sends `payload` as one frame with `tag`, or, if it does not fit in one,
/// as pieces; waits up to `timeout` for room for each frame.
///
/// # Errors
///
/// [`MessageError`].
pub fn send_message(
    tx: &mut coil_ipc::Producer,
    tag: u16,
    payload: &[u8],
    timeout: std::time::Duration,
) -> Result<(), MessageError> {
    if payload.len() <= tx.max_frame_len() {
        tx.push_timeout(tag, payload, timeout)?;
    } else {
        let piece = piece_len(tx);
        let mut chunks = payload.chunks(piece).peekable();
        while let Some(chunk) = chunks.next() {
            let t = if chunks.peek().is_some() {
                TAG_PART
            } else {
                tag
            };
            tx.push_timeout(t, chunk, timeout)?;
        }
    }
    tx.flush();
    Ok(())
}

/// Collects the rest of a message whose first piece (tagged [`TAG_PART`])
/// the caller has already copied into `buf`; returns the message's tag.
/// Waits up to `timeout` for each piece.
///
/// # Errors
///
/// [`MessageError`], or `TooLarge` once `buf` would pass `limit` bytes.
pub fn assemble_rest(
    rx: &mut coil_ipc::Consumer,
    buf: &mut Vec<u8>,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<u16, MessageError> {
    loop {
        let frame = rx.recv_timeout(timeout)?;
        if buf.len() + frame.len() > limit {
            return Err(MessageError::TooLarge {
                size: buf.len() + frame.len(),
                limit,
            });
        }
        frame.copy_into(buf);
        if frame.tag() != TAG_PART {
            return Ok(frame.tag());
        }
    }
}
