//! `coil-worker`: the executor side of coil. It takes frames off a ring,
//! decodes the batch of rows in place, calls the Python UDF on them and
//! encodes the answers into the reply frame. The same executor code runs in
//! every execution mode: in a separate `coil-worker` process (`process`
//! mode) or on a host thread (`multi-thread`, `sub-interpreter`).
//!
//! This crate is at its start: the Python side lands with process mode.
//! Today it re-exports the transport it is built on, [`ipc`].
//!
//! # Examples
//!
//! A batch as the executor receives it, from a ring over private memory:
//!
//! ```
//! use coil_worker::ipc::{decode_batch, encode_batch, encoded_len, Region, Value};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let region = Region::create_private(&[64 * 1024])?;
//! let (mut tx, mut rx) = (region.producer(0)?, region.consumer(0)?);
//! let rows = vec![vec![Value::Int(41)], vec![Value::Str("hi".into())]];
//! let mut frame = tx.try_reserve(encoded_len(&rows))?;
//! encode_batch(&rows, &mut frame)?;
//! frame.commit(0);
//! tx.flush();
//! let frame = rx.try_recv()?.expect("a committed frame");
//! assert_eq!(decode_batch(&frame)?, rows);
//! # Ok(()) }
//! ```

pub use coil_ipc as ipc;
