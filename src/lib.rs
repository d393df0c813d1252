//! Support for coil's integration tests, benchmarks and ring demo: a
//! deterministic, checksummed frame stream and the peer process that serves
//! the other end of a ring across a process boundary.
//!
//! This package is not part of the product; `coil-ipc`, `coil-worker` and
//! `coil-host` are. It exists so that tests, benches and the demo exercise
//! the same peer code.
//!
//! # Examples
//!
//! ```
//! use coil::stream;
//! let mut frame = Vec::new();
//! stream::fill(17, 4096, &mut frame);
//! assert!(stream::check(17, 4096, &frame).is_ok());
//! frame[3] ^= 1;
//! assert!(stream::check(17, 4096, &frame).is_err());
//! ```

pub mod bench;
pub mod json;
pub mod peer;
pub mod stream;
