//! Test support for coil's rings across a process boundary: a
//! deterministic, checksummed frame stream ([`stream`]) and the peer that
//! serves the far end of a ring pair ([`peer`]), run in another process by
//! the `coil-ring-peer` program; and the Arrow fixtures ([`arrow`]): a
//! column of every type coil takes.
//!
//! The cross-process ring tests (`tests/ipc_process.rs`), the `ring`
//! benchmark and the ring demo live in this package because they spawn
//! `coil-ring-peer`, and Cargo tells only the package that owns a binary
//! where it was built.
//!
//! This package is not part of the product and is never published;
//! `coil-ipc`, `coil-worker`, `coil-host` and the `coil` CLI are.
//!
//! # Examples
//!
//! A receiver that knows which frame it expects detects a corrupted one:
//!
//! ```
//! use coil_testkit::stream;
//!
//! let mut frame = Vec::new();
//! stream::fill(17, 4096, &mut frame);
//! assert!(stream::check(17, 4096, &frame).is_ok());
//! frame[3] ^= 1;
//! assert!(stream::check(17, 4096, &frame).is_err());
//! ```
//!
//! The peer serves a ring pair until the other side closes ring 0; here on
//! a thread, in the tests in a `coil-ring-peer` process:
//!
//! ```
//! use coil_ipc::Region;
//! use coil_testkit::peer::{self, Mode};
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let region = Region::create_private(&[4096, 4096])?;
//! let far = region.clone();
//! let echo = std::thread::spawn(move || peer::serve(&far, Mode::Echo));
//! let (mut tx, mut rx) = (region.producer(0)?, region.consumer(1)?);
//! tx.try_push(7, b"ping")?;
//! let back = rx.recv_timeout(std::time::Duration::from_secs(60))?;
//! assert_eq!((back.tag(), back.len()), (7, 4));
//! drop(back);
//! drop(tx); // closes ring 0: the peer returns
//! echo.join().expect("the peer thread")?;
//! # Ok(())
//! # }
//! ```

pub mod arrow;
pub mod peer;
pub mod stream;
