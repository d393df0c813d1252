//! `coil-proto`: the conversation between a coil host and its executors.
//!
//! A host and an executor (a `coil-worker` process, or a thread in the host
//! running an embedded interpreter) share a region with two rings (see
//! [`layout`]): the host sends [`Batch`]es on one, the executor sends
//! [`Answer`]s on the other. Every frame carries a [`Tag`]. Payloads are in
//! `coil-ipc`'s flat row codec. This crate holds both sides of each
//! message — encode and decode next to each other — so the host and the
//! executor cannot drift apart, and it validates everything it decodes: an
//! answer is untrusted input written by another process, so a malformed one
//! is a [`ProtoError`], never a panic.
//!
//! It knows nothing of Python: [`UdfSpec`] names a UDF, [`PyErrorInfo`]
//! carries an exception as strings.
//!
//! # Examples
//!
//! The executor answers a batch of two rows; the host decodes the answer:
//!
//! ```
//! use coil_proto::{Answer, Batch, Expect, Tag, Times};
//! use coil_proto::ipc::{encode_batch, Value};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Host: batch 7, two rows of one argument.
//! let mut request = Vec::new();
//! Batch::encode(7, &[vec![Value::Int(1)], vec![Value::Int(41)]], &mut request)?;
//! let seq = Batch::seq(&request[..])?;
//! assert_eq!(seq, 7);
//!
//! // Executor: a results header, the rows (straight from Python objects in
//! // coil-worker), then the executor's timings.
//! let mut answer = Vec::new();
//! Answer::begin_results(seq, &mut answer);
//! encode_batch(&[vec![Value::Int(2)], vec![Value::Int(42)]], &mut answer)?;
//! Answer::finish_results(&mut answer, Times::default());
//!
//! // Host: decode, checking it answers batch 7 with 2 results.
//! match Answer::decode(Tag::Results, &answer[..], Expect::Batch { seq: 7, rows: 2 })? {
//!     Answer::Results { values, .. } => assert_eq!(values, [Value::Int(2), Value::Int(42)]),
//!     other => panic!("{other:?}"),
//! }
//! # Ok(()) }
//! ```

mod blocker;
mod calls;
mod columns;
mod error;
mod launch;
pub mod layout;
mod message;
mod pieces;
mod placed;
mod shelf;
mod spec;
mod tag;
mod typename;
mod wire;

pub use blocker::{incompatible_module, INCOMPATIBLE};
pub use calls::{CallPolicy, RateLimit, DEFAULT_MAX_CONCURRENCY};
pub use coil_ipc as ipc;
pub use columns::{ColumnError, Columns, Decoded, Refs};
pub use error::ProtoError;
pub use launch::{Launch, LaunchError, DEFAULT_MAX_MESSAGE, HOST_PID, USAGE};
pub use message::{
    Answer, Batch, Expect, RowFailure, RowFault, Times, WriteError, SEQ_LEN, TIMES_LEN,
};
pub use pieces::{assemble_rest, piece_len, send_message, After, MessageError};
pub use shelf::Shelf;
pub use spec::{
    aggregate_result_type, AggregateOp, PyErrorInfo, UdfKind, UdfSignature, UdfSpec, UnknownKind,
};
pub use tag::Tag;
pub use typename::{BadType, TypeName, TypeProblem, UnnamedType};
pub use wire::{arrow_type_supported, child_types, plain_type, result_wire_type, wire_type};
