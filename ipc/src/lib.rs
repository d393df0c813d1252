//! coil-ipc: single-producer/single-consumer rings of variable-length frames,
//! over shared memory between processes or private memory between threads.
//!
//! # Overview
//!
//! A [`Region`] is a block of memory that starts with a validated header and
//! holds up to [`MAX_RINGS`] rings. Its memory is either private (a heap
//! block, for threads) or an anonymous, sealed `memfd` that a child process
//! inherits (for processes); the ring code is the same for both and does not
//! know which it runs on.
//!
//! Each ring has one [`Producer`] and one [`Consumer`]. The producer
//! reserves room for a frame, writes it in place and commits it; the consumer
//! borrows the next frame, reads it in place and releases it. Frames are
//! 8-byte aligned, never wrap, and carry a `u16` tag; a frame larger than the
//! ring can ever hold is refused at once ([`RingPushError::TooLarge`]).
//!
//! What the ring guarantees:
//! - frames arrive in order, each exactly once, with the bytes and tag
//!   committed;
//! - when the ring is full the producer waits (spin briefly, then park on a
//!   futex) up to its timeout; when it is empty the consumer does the same;
//!   every wait has a timeout, and a peer that closes wakes the waiter at
//!   once;
//! - no locks, no allocation and no syscalls on the hot path: wake-up
//!   syscalls happen only when the other side is parked;
//! - the other side is untrusted: every counter and frame header read from
//!   the ring is bounds-checked, and corruption is a [`FrameError`], never a
//!   panic or an out-of-bounds access.
//!
//! What it never does: hold a Rust reference into memory another process can
//! write (payloads are copied out through raw pointers), or leave a named
//! segment behind (a memfd has no name).
//!
//! # Example: a ring between two threads
//!
//! ```
//! use std::time::Duration;
//! use coil_ipc::Region;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let region = Region::create_private(&[1 << 16])?;
//! let mut tx = region.producer(0)?;
//! let mut rx = region.consumer(0)?;
//! let t = std::thread::spawn(move || -> Result<(), coil_ipc::RingPushError> {
//!     for i in 0..1000u32 {
//!         tx.push_timeout(1, &i.to_le_bytes(), Duration::from_secs(10))?;
//!     }
//!     Ok(())
//! });
//! for i in 0..1000u32 {
//!     let frame = rx.recv_timeout(Duration::from_secs(10))?;
//!     assert_eq!(frame.to_vec(), i.to_le_bytes());
//! }
//! t.join().unwrap()?;
//! # Ok(()) }
//! ```
//!
//! # Example: a ring between two processes
//!
//! ```no_run
//! use std::process::Command;
//! use coil_ipc::Region;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Parent: ring 0 goes to the child, ring 1 comes back.
//! let region = Region::create_shared(&[1 << 20, 1 << 20])?;
//! let mut cmd = Command::new("my-child");
//! let fd = region.inherit_into(&mut cmd).expect("a shared region");
//! let child = cmd.arg(fd.to_string()).spawn()?;
//! let mut tx = region.producer(0)?;
//! tx.set_peer_watch(coil_ipc::PidWatch::new(child.id())?);
//! # Ok(()) }
//! // Child:
//! # fn child(fd: i32) -> Result<(), Box<dyn std::error::Error>> {
//! // Sound: the parent passed this descriptor down and nothing else owns it.
//! let region = unsafe { Region::from_inherited_fd(fd)? };
//! let mut rx = region.consumer(0)?;
//! rx.set_peer_watch(coil_ipc::ParentWatch::new());
//! # Ok(()) }
//! ```
//!
//! # Why this design
//!
//! - **memfd, not named shared memory.** The `shared_memory` crate names a
//!   segment in `/dev/shm`, which leaks when its creator is killed, and its
//!   last release dates from 2022. A memfd has no name to leak, is freed with
//!   its last descriptor, and can be sealed so that the peer cannot shrink it
//!   under our mapping (which would raise `SIGBUS`). See
//!   `docs/architecture.md`.
//! - **Copying frames, spin-then-park wake-ups.** On these machines a
//!   blocking wake-up costs about 11 µs and a 64 KiB copy about 2–3 µs, so the
//!   wake-up policy, not copies, decides small-message latency.
//! - **Byte positions that never wrap.** `head` and `tail` are `u64` byte
//!   counts; full and empty are `head - tail == capacity` and `head == tail`,
//!   with no slot wasted and no ambiguity.
//!
//! # Features
//!
//! None. `--cfg loom` swaps the atomics and futexes for loom's model-checked
//! versions (see `ipc/tests/loom.rs`).

pub mod codec;
pub mod frame;
pub mod header;
pub mod peer;
pub mod region;
pub mod ring;
mod sync;
pub mod wake;

pub use codec::*;
pub use frame::{max_frame_len, FrameError, FRAME_HEADER_LEN};
pub use header::{
    required_size, CONTROL_SIZE, HEADER_SIZE, LAYOUT_VERSION, MAX_CAPACITY, MAX_RINGS,
    MIN_CAPACITY, REGION_MAGIC, USER_WORDS,
};
pub use peer::{ParentWatch, PeerWatch, PidWatch};
pub use region::{EndpointError, Region, RegionCreateError, RegionOpenError, UserWord};
pub use ring::{
    Consumer, Frame, FrameBoundsError, FrameWriter, Producer, RingPushError, RingRecvError,
};
pub use wake::WaitStrategy;
