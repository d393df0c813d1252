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
//!
//! # Reference
//!
//! The model of each part, from its module (the modules are private; their
//! items are re-exported above).
//!
//! ## Regions
//!
//! Memory regions: a validated header followed by one or more rings, over
//! private memory (threads) or a sealed memfd (processes).
//!
//! The ring code never learns which backing it runs on: it gets a control
//! block pointer, a data pointer and a capacity from [`Region`], and the same
//! code, with the same checks, runs over both.
//!
//! ## The header
//!
//! The memory layout of a region: its header, its ring table and each ring's
//! control block.
//!
//! ```text
//! region (a multiple of 64 bytes; every block starts on a cache line)
//! ┌──────────────────────────────────────────────────────────────────────┐
//! │ header, 192 bytes                                                    │
//! │  off size field            written by   when / ordering              │
//! │    0   8  magic            creator      before `ready`               │
//! │    8   4  layout_version   creator      before `ready`               │
//! │   12   4  ring_count       creator      before `ready`               │
//! │   16   8  region_size      creator      before `ready`               │
//! │   24   4  ready            creator      last, Release (opener: Acquire)
//! │   28   4  creator_pid      creator      before `ready`               │
//! │   32  32  user words: 4 × u64, either side, any time (untrusted)     │
//! │   64 128 ring table: 8 × { offset: u64, capacity: u64 }              │
//! ├──────────────────────────────────────────────────────────────────────┤
//! │ ring 0 control block, 128 bytes (at ring_table[0].offset)            │
//! │  line 0, written by the producer only                                │
//! │   +0   8  head             bytes ever committed; Release store       │
//! │   +8   4  data_bell        futex word the consumer parks on          │
//! │  +12   4  producer_waiting 1 while the producer is parked for space  │
//! │  +16   4  producer_closed  1 once the producer has closed            │
//! │  line 1, written by the consumer only                                │
//! │  +64   8  tail             bytes ever released; Release store        │
//! │  +72   4  space_bell       futex word the producer parks on          │
//! │  +76   4  consumer_waiting 1 while the consumer is parked for data   │
//! │  +80   4  consumer_closed  1 once the consumer has closed            │
//! ├──────────────────────────────────────────────────────────────────────┤
//! │ ring 0 data, `capacity` bytes (a power of two, ≥ 64)                 │
//! ├──────────────────────────────────────────────────────────────────────┤
//! │ ring 1 control block, ring 1 data, …                                 │
//! └──────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Head and tail are byte positions that only grow (a `u64` does not wrap in
//! the lifetime of a machine); a position's place in the data area is
//! `position & (capacity - 1)`. Each side keeps a private copy of its own
//! counter and only ever *reads* the other side's, so a peer that scribbles
//! over the control block can make the ring report corruption but cannot make
//! this side index out of bounds.
//!
//! Only integers and atomics live here: no `bool`, enum or pointer is ever
//! read out of shared memory. The `const` assertions at the bottom keep the
//! diagram and the code from drifting apart.
//!
//! ## The ring
//!
//! The SPSC ring of variable-length frames: [`Producer`] and [`Consumer`].
//!
//! The producer reserves room for a frame ([`Producer::reserve_timeout`]), writes the
//! payload in place through a [`FrameWriter`] and commits it; the consumer
//! borrows the next committed [`Frame`], reads it in place and releases it by
//! dropping it. Neither side allocates, takes a lock or makes a syscall while
//! the other keeps up.
//!
//! **Batched publication.** A commit only advances the producer's private
//! head; [`Producer::flush`] publishes it (one Release store, and a wake-up
//! only if the consumer is parked). Likewise releases advance the consumer's
//! private tail and are published in batches, or at once when the consumer
//! has caught up. Both sides publish on their own when a quarter of the ring
//! is pending and before they wait, so a forgotten flush delays the peer but
//! never deadlocks a single ring.
//!
//! **Wrapping.** A frame never wraps: when it does not fit before the end of
//! the data area, the producer fills the rest with padding that the consumer
//! skips, and starts the frame at offset 0. So a frame of up to
//! `capacity - 8` bytes always fits once the consumer has drained the ring;
//! a non-blocking [`Producer::try_reserve`] may report `Full` until the
//! consumer has skipped that padding (its next receive does).
//!
//! **Caching.** Each side caches the other's counter and re-reads it (one
//! Acquire load of the peer's cache line) only when the cached value says the
//! ring is full, or empty.
//!
//! **A hostile peer.** Every counter read from the control block is checked
//! (monotonic, within one capacity of ours, 8-byte aligned) and every frame
//! header is read once into locals and checked against the committed,
//! contiguous bytes before its payload is touched. A failed check yields
//! [`FrameError`] and breaks the endpoint for good; it is never a panic or an
//! out-of-bounds access. Payload bytes are only ever *copied* out of the ring
//! (no `&[u8]` into memory another process can write), so a peer that keeps
//! scribbling can change what we read, never where.
//!
//! ### Deadlocks
//!
//! One ring cannot deadlock. Two rings used as request/response between the
//! same pair can: if A blocks pushing requests into a full ring while B blocks
//! pushing responses into a full ring that A is not reading, both wait until
//! their timeouts. Drain responses while you send requests (or bound the
//! requests in flight), and call [`Consumer::flush`] before a long computation
//! so the space you already consumed is handed back.
//!
//! ## Frames
//!
//! Frames: the unit the ring carries, and the checks a consumer applies to
//! every frame header before it believes it.
//!
//! ```text
//! frame at a position p (p % 8 == 0), contiguous in the data area
//! ┌───────────┬───────────┬───────────┬────────────────────┬─────────┐
//! │ len: u32  │ tag: u16  │ kind: u16 │ payload: len bytes │ pad → 8 │
//! └───────────┴───────────┴───────────┴────────────────────┴─────────┘
//!   +0          +4          +6          +8
//! ```
//!
//! `kind` is `KIND_DATA` (0) for a frame the user wrote and `KIND_PAD` (1) for
//! filler the producer writes when a frame does not fit before the end of the
//! data area; a pad always runs exactly to the end, and the consumer skips it.
//! `tag` is the user's (for example: batch, control, error). A frame occupies
//! `8 + len` bytes rounded up to 8, so every frame header is 8-byte aligned,
//! and a frame never wraps: its payload is one contiguous run of bytes on both
//! sides. The largest payload is therefore `capacity - 8`.
//!
//! ## Wake-ups
//!
//! How a side of a ring waits: spin briefly, then park on a futex.
//!
//! A waiter first spins for a bounded *time*, because on a 2-core machine a
//! bound in iterations lets two spinners starve each other, and the cost of
//! a `pause` differs between CPUs. The bound learns from the end's recent
//! waits: [`WaitStrategy::spin`] when they were long (an idle peer), up to
//! twice their average, at most [`WaitStrategy::spin_max`], when the peer
//! answers in a steady rhythm, since waking a parked thread costs more than
//! spinning through a short wait. Measured on
//! this project's machines: a spin-then-park round trip with a ready peer
//! costs about 0.12 µs, a futex wait/wake round trip about 11 µs (see
//! `docs/benchmarks.md`). If the condition still does not hold, the waiter
//! parks on the ring's doorbell word (see `wake/futex.rs`) in slices of
//! [`WaitStrategy::park_slice`], and between slices it checks its deadline,
//! whether the peer closed, and whether the peer is still alive.
//!
//! The notifier makes a wake syscall only when the waiter announced that it
//! may be parked, so two busy sides exchange frames without any syscall.
//!
//! ## Dead peers
//!
//! Noticing a dead peer without waiting out a long timeout.
//!
//! A parked side wakes at least every [`WaitStrategy::park_slice`] and asks
//! its [`PeerWatch`] whether the other side still lives; a peer that closed
//! its end cleanly wakes the waiter at once instead.
//!
//! [`WaitStrategy::park_slice`]: crate::WaitStrategy::park_slice
//!
//! ## The row codec
//!
//! The row codec: batches of rows in a flat little-endian layout, written
//! straight into a ring frame and decoded in place from it.
//!
//! ```text
//! batch  = row_count: u32, row × row_count
//! row    = value_count: u32, value × value_count
//! value  = tag: u8, payload
//!   tag 0 null    (no payload)
//!   tag 1 false   (no payload)
//!   tag 2 true    (no payload)
//!   tag 3 int     i64, 8 bytes
//!   tag 4 float   f64 bits, 8 bytes
//!   tag 5 str     len: u32, len bytes of UTF-8
//!   tag 6 bytes   len: u32, len bytes
//!   tag 7 list    count: u32, value × count
//! ```
//!
//! All integers are little-endian and unaligned; there is no padding. A
//! batch of 1,000 rows of (i64, f64, 32-character string) takes 58 bytes a
//! row.
//!
//! **Hostile input.** The decoder reads only through [`ByteSource::read_at`],
//! which copies (a ring frame in shared memory is never turned into a
//! `&[u8]`), and reads each length once. Every count and length is checked
//! against the bytes that remain before anything is allocated (a value takes
//! at least 1 byte, a row at least 4), lists nest at most [`MAX_DEPTH`]
//! deep, string bytes are copied out *before* they are checked as UTF-8, and
//! trailing bytes are an error. Bad input is a [`DecodeError`] with its
//! offset, never a panic.
//!
//! **Why not bincode.** bincode 2.0.1 (pinned; 3.0.0 is a tombstone and
//! RUSTSEC-2025-0141 marks it unmaintained) needs a `&[u8]`, which shared
//! memory cannot safely give, and decodes into its own types first; the
//! streaming [`BatchDecoder`] lets a caller build Python objects straight
//! from the frame. The numbers are in `docs/benchmarks.md` (`codec` group).
//!
//! ### Examples
//!
//! ```
//! use coil_ipc::{decode_batch, encode_batch, encoded_len, Value};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rows = vec![
//!     vec![Value::Int(1), Value::Str("ünïcode".into())],
//!     vec![Value::Null, Value::List(vec![Value::Float(0.5), Value::Bool(true)])],
//! ];
//! let mut buf = Vec::new();
//! let n = encode_batch(&rows, &mut buf)?;
//! assert_eq!(n, encoded_len(&rows));
//! assert_eq!(decode_batch(&buf[..])?, rows);
//! # Ok(()) }
//! ```

mod arena;
mod codec;
mod frame;
mod header;
mod limit;
mod peer;
mod region;
mod ring;
mod sync;
mod wake;

pub use arena::{Arena, Claim, ClaimError, Half};
pub use codec::*;
pub use frame::{max_frame_len, FrameError, FRAME_HEADER_LEN};
pub use header::{
    required_size, CONTROL_SIZE, HEADER_SIZE, LAYOUT_VERSION, MAX_CAPACITY, MAX_RINGS,
    MIN_CAPACITY, REGION_MAGIC, USER_WORDS,
};
pub use limit::{monotonic_nanos, RateLimiter};
pub use peer::{ParentWatch, PeerWatch, PidWatch};
pub use region::{EndpointError, Region, RegionCreateError, RegionOpenError, UserWord};
pub use ring::{
    Consumer, Frame, FrameBoundsError, FrameWriter, Producer, RingPushError, RingRecvError,
};
pub use wake::WaitStrategy;

/// Cases for a property test that feeds untrusted bytes to a decoder:
/// `default`, or `PROPTEST_CASES` when it asks for more (`tools/fuzz`
/// runs them long).
#[cfg(all(test, not(loom)))]
pub(crate) fn fuzz_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(default, |n: u32| n.max(default))
}
