//! The worker's errors, under every other module: why a batch produced no
//! results ([`BatchError`]), why a UDF did not load ([`LoadError`]), why a
//! serve loop stopped ([`ServeError`]), and why a Python value could not be
//! encoded as a row-model value ([`ConvertError`]).

use coil_ipc::{DecodeError, EncodeError, MAX_DEPTH};
use coil_proto::{MessageError, ProtoError, PyErrorInfo};

/// Why a batch produced no results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The UDF raised on row `row` (0-based within the batch; for a
    /// vectorized UDF the batch's first row).
    #[error("the UDF raised on row {row}: {error}")]
    Udf {
        /// Index of the row in the batch.
        row: u32,
        /// The exception.
        error: PyErrorInfo,
    },
    /// An async UDF's call on row `row` took longer than the timeout and
    /// was cancelled (the error is the `TimeoutError` it ended with).
    #[error("row {row} timed out: {error}")]
    TimedOut {
        /// Index of the row in the batch.
        row: u32,
        /// The timeout, as an exception.
        error: PyErrorInfo,
    },
    /// The UDF raised on row `row` because something it imports cannot
    /// load in a sub-interpreter (an `ImportError` saying so is in the
    /// exception's chain): the batch can run in a worker process instead.
    #[error("row {row}: {module} cannot load in a sub-interpreter: {error}")]
    Incompatible {
        /// Index of the row in the batch.
        row: u32,
        /// The top-level package that cannot load.
        module: String,
        /// The exception.
        error: PyErrorInfo,
    },
    /// A value of row `row` could not be converted to or from Python.
    #[error("row {}: {message}", row.map(|r| r.to_string()).unwrap_or_else(|| "?".into()))]
    BadRow {
        /// Index of the row in the batch, when one row is to blame.
        row: Option<u32>,
        /// What was wrong with it.
        message: String,
    },
}

/// Why a UDF could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("loading UDF {target}: {error}")]
pub struct LoadError {
    /// What was being loaded.
    pub target: String,
    /// The exception that loading raised.
    pub error: PyErrorInfo,
    /// The top-level package that cannot load in a sub-interpreter, when
    /// that is why loading failed.
    pub blocker: Option<String>,
}

/// Why a worker stopped other than by the host closing its ring.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The UDF could not be loaded (already reported to the host).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The region's rings could not be taken.
    #[error("taking the region's rings")]
    Endpoint(#[from] coil_ipc::EndpointError),
    /// A ring failed: the host died, or wrote something no host would.
    #[error("waiting for a batch")]
    Recv(#[from] coil_ipc::RingRecvError),
    /// An answer could not be sent.
    #[error("sending an answer")]
    Push(#[from] coil_ipc::RingPushError),
    /// A frame that is not a batch, or a batch too short for its header.
    #[error("reading a batch")]
    Proto(#[from] ProtoError),
    /// A message could not be sent or reassembled.
    #[error("sending or reassembling a message")]
    Message(#[from] MessageError),
    /// The mode cannot run in this build or on this machine.
    #[error("{0}")]
    Unsupported(String),
}

/// Why a Python object is not a row-model value (`None`, `bool`, `int`
/// within i64, `float`, `str`, `bytes`, lists of these).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConvertError {
    /// An `int` outside the 64-bit range.
    #[error("int {value} does not fit in a 64-bit integer")]
    TooBig {
        /// The integer, as Python prints it.
        value: String,
    },
    /// A `str` with lone surrogates.
    #[error("str is not valid UTF-8: {reason}")]
    NotUtf8 {
        /// What Python said.
        reason: String,
    },
    /// Lists nested deeper than the codec holds.
    #[error("lists nest deeper than {MAX_DEPTH}")]
    TooDeep,
    /// A type outside the row model.
    #[error("a value of type {type_name} is not supported (None, bool, int, float, str, bytes, list, tuple)")]
    Unsupported {
        /// The Python type's name.
        type_name: String,
    },
    /// Python raised while the value was read (iterating a list, numpy's
    /// `.item()`).
    #[error("{0}")]
    Python(String),
    /// The encoder refused the value (the answer is full).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Row `row`'s error: `message` says what was wrong with its value.
pub(crate) fn bad_row(row: u32, message: impl Into<String>) -> BatchError {
    BatchError::BadRow {
        row: Some(row),
        message: message.into(),
    }
}

/// The batch's error, not one row's: a column that cannot run, a result
/// column that cannot be built.
pub(crate) fn bad_batch(message: impl Into<String>) -> BatchError {
    BatchError::BadRow {
        row: None,
        message: message.into(),
    }
}

/// A result that could not be encoded (of row `row`, if one is to blame).
pub(crate) fn enc_err(row: Option<u32>, e: EncodeError) -> BatchError {
    BatchError::BadRow {
        row,
        message: format!("result: {e}"),
    }
}

/// A batch frame that could not be decoded (at row `row`, if known).
pub(crate) fn decode_err(row: Option<u32>, e: DecodeError) -> BatchError {
    BatchError::BadRow {
        row,
        message: format!("malformed batch: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_row_names_its_row_and_a_bad_batch_names_none() {
        assert_eq!(bad_row(3, "result: x").to_string(), "row 3: result: x");
        assert_eq!(bad_batch("no type").to_string(), "row ?: no type");
    }

    #[test]
    fn conversion_errors_read_as_they_did_as_strings() {
        let e = ConvertError::TooBig {
            value: "18446744073709551616".into(),
        };
        assert_eq!(
            e.to_string(),
            "int 18446744073709551616 does not fit in a 64-bit integer"
        );
        assert_eq!(
            ConvertError::TooDeep.to_string(),
            format!("lists nest deeper than {MAX_DEPTH}")
        );
        assert_eq!(
            ConvertError::Unsupported {
                type_name: "set".into()
            }
            .to_string(),
            "a value of type set is not supported (None, bool, int, float, str, bytes, list, tuple)"
        );
    }
}
