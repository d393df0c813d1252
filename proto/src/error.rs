//! What makes a message malformed.

use crate::Tag;
use coil_ipc::DecodeError;

/// Why a message does not decode: the executor (another process, possibly
/// broken) wrote something no executor would. The host treats it as a
/// broken worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A tag no message has.
    #[error("unknown frame tag {0}")]
    UnknownTag(u16),
    /// A message of a kind that does not belong here.
    #[error("a {tag:?} frame where {expected} was expected")]
    Unexpected {
        /// What came.
        tag: Tag,
        /// What was expected.
        expected: &'static str,
    },
    /// The answer is for another batch than the one the host waits for.
    #[error("an answer for batch {got}, expected batch {expected}")]
    WrongBatch {
        /// The batch it answers.
        got: u64,
        /// The batch expected.
        expected: u64,
    },
    /// Results whose count is not the batch's row count.
    #[error("{got} results for a batch of {expected} rows")]
    RowCount {
        /// Results in the answer.
        got: u64,
        /// Rows in the batch.
        expected: u64,
    },
    /// A result row that is not exactly one value.
    #[error("result {row} holds {values} values, not 1")]
    RowWidth {
        /// The row.
        row: u64,
        /// Its values.
        values: u32,
    },
    /// An error naming a row the batch does not have.
    #[error("an error for row {row} of a batch of {rows} rows")]
    RowOutOfRange {
        /// The row named.
        row: i64,
        /// Rows in the batch.
        rows: u64,
    },
    /// A control message whose fields are not what they must be.
    #[error("a {tag:?} message with {got}")]
    Fields {
        /// The message.
        tag: Tag,
        /// What its fields were, e.g. "3 fields, expected 4".
        got: String,
    },
    /// A column frame that does not decode or whose arrays do not
    /// validate.
    #[error("a malformed column frame: {0}")]
    Columns(String),
    /// The bytes do not decode.
    #[error("a {tag:?} message does not decode")]
    Decode {
        /// The message.
        tag: Tag,
        /// Why.
        #[source]
        source: DecodeError,
    },
}
