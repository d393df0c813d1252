//! `coil-host`: the side of coil that a host engine embeds. It turns a
//! Flink-style configuration (`python.execution-mode` and friends) into a
//! runner, feeds it batches of rows and returns results in order, whichever
//! execution mode runs the Python: pooled `coil-worker` processes behind
//! shared-memory rings, or executor threads in the host process.
//!
//! This crate is at its start: configuration and the runner land with
//! process mode. Today it re-exports the transport it is built on, [`ipc`].
//!
//! # Examples
//!
//! The region a host creates for one worker process: a request ring and a
//! reply ring in one sealed `memfd`, inherited by the child as a descriptor.
//!
//! ```
//! use coil_host::ipc::Region;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let region = Region::create_shared(&[1 << 20, 1 << 20])?;
//! assert_eq!(region.ring_count(), 2);
//! let requests = region.producer(0)?;
//! let replies = region.consumer(1)?;
//! assert_eq!(requests.capacity(), 1 << 20);
//! # drop((requests, replies));
//! # Ok(()) }
//! ```

pub use coil_ipc as ipc;
