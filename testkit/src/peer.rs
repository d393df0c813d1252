//! The far end of a ring pair, run in a child process by `coil-ring-peer`
//! (tests, benches) or by the ring demo.
//!
//! Ring 0 carries frames from the parent to the peer, ring 1 from the peer
//! back. The peer watches its parent and exits when it dies.

use std::io::{BufReader, BufWriter, Read, Write};
use std::time::Duration;

use coil_ipc::{ParentWatch, Region, RingRecvError};

/// Tag of the frame that ends a burst; the peer answers it with one frame.
pub const TAG_END: u16 = 0xFFFF;

/// How long the peer waits for anything before giving up.
const IDLE: Duration = Duration::from_secs(120);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What the peer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read every frame (copying its payload out); answer each [`TAG_END`]
    /// frame with one [`TAG_END`] frame.
    Sink,
    /// Send every frame straight back.
    Echo,
    /// Check `n` frames of the [`stream`](crate::stream) with frames of at
    /// most `max` bytes on ring 0, while sending the same stream on ring 1.
    Verify {
        /// Frames each way.
        n: u64,
        /// Largest frame.
        max: usize,
    },
    /// Take both ends and never touch them again.
    Hold,
    /// Close both ends at once, then stay alive.
    Close,
}

/// Serves the ring pair in `region` as `mode` says, until the parent closes
/// ring 0 (or dies).
///
/// # Errors
///
/// A ring error, or a stream mismatch in [`Mode::Verify`].
pub fn serve(region: &Region, mode: Mode) -> Result<()> {
    let mut rx = region.consumer(0)?;
    let mut tx = region.producer(1)?;
    rx.set_peer_watch(ParentWatch::new());
    tx.set_peer_watch(ParentWatch::new());
    match mode {
        Mode::Sink => {
            let mut fold = 0u8;
            loop {
                let frame = match rx.recv_timeout(IDLE) {
                    Ok(f) => f,
                    Err(RingRecvError::Closed) => {
                        std::hint::black_box(fold);
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                };
                // Read every byte in place, as a decoder would: through a
                // small chunk that stays in L1, folded so it is not elided.
                let mut chunk = [0u8; 4096];
                let mut at = 0;
                while at < frame.len() {
                    let n = chunk.len().min(frame.len() - at);
                    frame.read_at(at, &mut chunk[..n])?;
                    fold ^= chunk[..n].iter().step_by(64).fold(0u8, |a, &b| a ^ b);
                    at += n;
                }
                if frame.tag() == TAG_END {
                    drop(frame);
                    rx.flush();
                    tx.push_timeout(TAG_END, &[], IDLE)?;
                }
            }
        }
        Mode::Echo => loop {
            let frame = match rx.recv_timeout(IDLE) {
                Ok(f) => f,
                Err(RingRecvError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let mut w = tx.reserve_timeout(frame.len(), IDLE)?;
            let mut chunk = [0u8; 4096];
            let mut at = 0;
            while at < frame.len() {
                let n = chunk.len().min(frame.len() - at);
                frame.read_at(at, &mut chunk[..n])?;
                w.append(&chunk[..n])?;
                at += n;
            }
            w.commit(frame.tag());
            drop(frame);
            tx.flush();
        },
        Mode::Verify { n, max } => {
            let sender = std::thread::spawn(move || -> Result<()> {
                let mut buf = Vec::new();
                for seq in 0..n {
                    crate::stream::fill(seq, max, &mut buf);
                    let mut w = tx.reserve_timeout(buf.len(), IDLE)?;
                    w.append(&buf)?;
                    w.commit(seq as u16);
                }
                tx.close();
                Ok(())
            });
            let mut buf = Vec::new();
            for seq in 0..n {
                let frame = rx.recv_timeout(IDLE)?;
                buf.clear();
                frame.copy_into(&mut buf);
                crate::stream::check(seq, max, &buf)?;
            }
            match rx.recv_timeout(IDLE) {
                Err(RingRecvError::Closed) => {}
                Ok(f) => {
                    return Err(format!("an extra frame of {} bytes after {n}", f.len()).into())
                }
                Err(e) => return Err(e.into()),
            }
            sender.join().map_err(|_| "sender thread panicked")??;
            Ok(())
        }
        Mode::Hold => {
            std::thread::sleep(IDLE);
            Ok(())
        }
        Mode::Close => {
            drop(rx);
            drop(tx);
            std::thread::sleep(IDLE);
            Ok(())
        }
    }
}

/// The socket baseline: reads frames (`u32` length, `u16` tag, payload)
/// from `sock`; echoes each one back when `echo`, else answers each
/// [`TAG_END`] frame with one.
///
/// # Errors
///
/// I/O errors other than the parent hanging up.
pub fn serve_socket(sock: std::os::unix::net::UnixStream, echo: bool) -> Result<()> {
    let mut r = BufReader::with_capacity(1 << 16, sock.try_clone()?);
    let mut w = BufWriter::with_capacity(1 << 16, sock);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let mut head = [0u8; 6];
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(head[..4].try_into()?) as usize;
        let tag = u16::from_le_bytes(head[4..].try_into()?);
        if len > buf.len() {
            return Err(format!("socket frame of {len} bytes is too large").into());
        }
        r.read_exact(&mut buf[..len])?;
        if echo {
            w.write_all(&head)?;
            w.write_all(&buf[..len])?;
            w.flush()?;
        } else if tag == TAG_END {
            w.write_all(&[0, 0, 0, 0, 0xFF, 0xFF])?;
            w.flush()?;
        }
    }
}
