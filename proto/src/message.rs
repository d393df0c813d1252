//! The messages: a [`Batch`] from host to executor, an [`Answer`] back.
//! Encode and decode of each sit next to each other.
//!
//! | tag | direction | payload |
//! |---|---|---|
//! | [`Tag::Batch`] | host → executor | `seq: u64`, then a batch of argument rows |
//! | [`Tag::BatchPerRow`] | host → executor | the same; rows fail one by one |
//! | [`Tag::Ready`] | executor → host | one row: `[pid, python version, return type or null, parameters or null, columnar, the kind it is written as or null, async, the module that turned a free-threaded CPython's GIL back on or null]` (types as [`Columns::type_to_bytes`](crate::Columns::type_to_bytes) writes them; the parameters as a struct, a field per parameter, `Null` where unknown; see [`UdfSignature`](crate::UdfSignature)) |
//! | [`Tag::LoadFailed`] | executor → host | one row: `[type, message, traceback, blocker or null]` (the blocker: the package that cannot load in a sub-interpreter, see [`incompatible_module`](crate::incompatible_module)) |
//! | [`Tag::Results`] | executor → host | `seq: u64`, the executor's decode, Python and encode nanoseconds (3 × `u64`), then one row `[result]` per input row |
//! | [`Tag::ResultsAndFailures`] | executor → host | as `Results` (a null for each failed row), then one row `[row, kind, type, message, traceback]` per failed row, rows ascending; kind 0: raised, 1: interrupted by the host's timeout, 2: a result coil cannot hold (`type` and `traceback` empty) |
//! | [`Tag::ColumnResults`] | executor → host | `seq: u64`, the times, then a column frame's body ([`Columns::encode_body`](crate::Columns::encode_body)) of one column, a value per input row |
//! | [`Tag::ColumnResultsAndFailures`] | executor → host | as `ColumnResults` (a null for each failed row), then the failures as `ResultsAndFailures` has them |
//! | [`Tag::UdfError`] | executor → host | `seq: u64`, then one row: `[row, type, message, traceback]` |
//! | [`Tag::Incompatible`] | executor → host | `seq: u64`, then one row: `[row, module, type, message, traceback]` |
//! | [`Tag::BadRow`] | executor → host | `seq: u64`, then one row: `[row or -1, message]` |
//! | [`Tag::TooLarge`] | executor → host | `seq: u64`, then one row: `[bytes, limit]` |
//!
//! A table UDF's result for one input row is a list of rows (each a list).

use std::time::Duration;

use arrow_array::{Array, ArrayRef};
use coil_ipc::{BatchDecoder, ByteSource, EncodeError, Row, Value};

use crate::pieces::After;
use crate::{ProtoError, PyErrorInfo, Tag};

/// Bytes of the sequence number that starts a batch and every answer to it.
pub const SEQ_LEN: usize = 8;

/// Bytes of the executor's timings after a result's sequence number.
pub const TIMES_LEN: usize = 24;

/// Why an [`Answer`] could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A value the row codec cannot hold.
    #[error(transparent)]
    Row(#[from] EncodeError),
    /// A column a column frame cannot hold.
    #[error(transparent)]
    Column(#[from] crate::ColumnError),
}

/// Where the executor's time on one batch went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    /// Decoding the rows into Python objects.
    pub decode: Duration,
    /// Calling the UDF (and running a table UDF's generator).
    pub python: Duration,
    /// Encoding the results.
    pub encode: Duration,
}

impl Times {
    /// The three together.
    pub fn total(&self) -> Duration {
        self.decode + self.python + self.encode
    }
}

fn nanos(d: Duration) -> [u8; 8] {
    (d.as_nanos().min(u128::from(u64::MAX)) as u64).to_le_bytes()
}

fn read_u64<S: ByteSource + ?Sized>(src: &S, at: usize, tag: Tag) -> Result<u64, ProtoError> {
    let mut b = [0u8; 8];
    src.read_at(at, &mut b)
        .map_err(|source| ProtoError::Decode { tag, source })?;
    Ok(u64::from_le_bytes(b))
}

/// A batch of argument rows, host → executor: `seq`, then the rows.
#[derive(Debug)]
pub struct Batch;

impl Batch {
    /// Appends batch `seq` of `rows` to `out`.
    ///
    /// # Errors
    ///
    /// A value the row codec cannot hold ([`EncodeError`]).
    pub fn encode(seq: u64, rows: &[Row], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&seq.to_le_bytes());
        coil_ipc::encode_batch(rows, out).map(drop)
    }

    /// The batch's sequence number.
    ///
    /// # Errors
    ///
    /// [`ProtoError::Decode`] if the frame is shorter than [`SEQ_LEN`].
    pub fn seq<S: ByteSource + ?Sized>(src: &S) -> Result<u64, ProtoError> {
        read_u64(src, 0, Tag::Batch)
    }

    /// The rows, after the sequence number, to decode in place.
    pub fn rows<S: ByteSource + ?Sized>(src: &S) -> After<'_, S> {
        After::new(src, SEQ_LEN)
    }
}

/// How one row of a [`Tag::BatchPerRow`] batch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowFault {
    /// The UDF raised.
    Raised(PyErrorInfo),
    /// The host interrupted the row (it ran past the timeout): the
    /// exception that interrupting raised in it.
    TimedOut(PyErrorInfo),
    /// The UDF's result is not a value coil can hold; what was wrong.
    BadValue(String),
}

/// A failed row of a [`Tag::BatchPerRow`] batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFailure {
    /// The row, 0-based within the batch.
    pub row: u32,
    /// How it failed.
    pub fault: RowFault,
}

impl RowFailure {
    fn fields(&self) -> Vec<Value> {
        let (kind, error) = match &self.fault {
            RowFault::Raised(e) => (0, error_fields(e)),
            RowFault::TimedOut(e) => (1, error_fields(e)),
            RowFault::BadValue(m) => (2, [s(""), s(m), s("")]),
        };
        let mut row = vec![Value::Int(i64::from(self.row)), Value::Int(kind)];
        row.extend(error);
        row
    }
}

/// What the host waits for, to check an answer against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The executor's first message: [`Answer::Ready`] or
    /// [`Answer::LoadFailed`].
    Start,
    /// The answer to batch `seq` of `rows` rows.
    Batch {
        /// The batch.
        seq: u64,
        /// Its rows.
        rows: u64,
    },
}

/// A message from executor to host.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The UDF loaded; the executor waits for batches.
    Ready {
        /// The executor's process id.
        pid: u32,
        /// Its CPython version.
        python: String,
        /// The Arrow type of the UDF's results: declared, or read from its
        /// return annotation; `None` if neither says.
        returns: Option<arrow_schema::DataType>,
        /// What the UDF's signature says (its parameters' annotations).
        signature: crate::UdfSignature,
        /// On a free-threaded CPython whose GIL is on once the UDF loaded:
        /// the module whose import turned it on ("" if none did); `None`
        /// while the GIL is off, and on a CPython with a GIL.
        gil: Option<String>,
    },
    /// The UDF did not load; the executor stops after sending this.
    LoadFailed {
        /// The exception loading raised.
        error: PyErrorInfo,
        /// The top-level package that cannot load in a sub-interpreter,
        /// when that is why loading failed (the executor classifies it, so
        /// the host can fall back to process mode without reading the
        /// traceback).
        blocker: Option<String>,
    },
    /// One result per input row, in order ([`Tag::Results`]); with
    /// failed rows ([`Tag::ResultsAndFailures`]) a null in their place.
    Results {
        /// The batch answered.
        seq: u64,
        /// Where the executor's time went.
        times: Times,
        /// The results.
        values: Vec<Value>,
        /// The rows that failed, ascending (only in answer to a
        /// [`Tag::BatchPerRow`] batch).
        failed: Vec<RowFailure>,
    },
    /// The results of a column batch: one Arrow column, a value per row
    /// ([`Tag::ColumnResults`]); with failed rows
    /// ([`Tag::ColumnResultsAndFailures`]) a null in their place.
    ColumnResults {
        /// The batch answered.
        seq: u64,
        /// Where the executor's time went.
        times: Times,
        /// The results.
        column: ArrayRef,
        /// The rows that failed, ascending (only in answer to a
        /// [`Tag::ColumnsPerRow`] batch).
        failed: Vec<RowFailure>,
    },
    /// The UDF raised on row `row` of the batch.
    UdfError {
        /// The batch.
        seq: u64,
        /// The row, 0-based within the batch.
        row: u32,
        /// The exception.
        error: PyErrorInfo,
    },
    /// The UDF raised on row `row` because `module`, which it imports,
    /// cannot load in a sub-interpreter.
    Incompatible {
        /// The batch.
        seq: u64,
        /// The row, 0-based within the batch.
        row: u32,
        /// The top-level package that cannot load.
        module: String,
        /// The exception.
        error: PyErrorInfo,
    },
    /// A value could not be converted to or from Python.
    BadRow {
        /// The batch.
        seq: u64,
        /// The row, when one row is to blame.
        row: Option<u32>,
        /// What was wrong.
        message: String,
    },
    /// The results take more bytes than the message limit.
    TooLarge {
        /// The batch.
        seq: u64,
        /// Bytes of the encoded results.
        bytes: u64,
        /// The limit (`python.fn-execution.max-message-size`).
        limit: u64,
    },
}

fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}

fn error_fields(e: &PyErrorInfo) -> [Value; 3] {
    [s(&e.type_name), s(&e.message), s(&e.traceback)]
}

impl Answer {
    /// Its tag.
    pub fn tag(&self) -> Tag {
        match self {
            Answer::Ready { .. } => Tag::Ready,
            Answer::LoadFailed { .. } => Tag::LoadFailed,
            Answer::Results { failed, .. } if failed.is_empty() => Tag::Results,
            Answer::Results { .. } => Tag::ResultsAndFailures,
            Answer::ColumnResults { failed, .. } if failed.is_empty() => Tag::ColumnResults,
            Answer::ColumnResults { .. } => Tag::ColumnResultsAndFailures,
            Answer::UdfError { .. } => Tag::UdfError,
            Answer::Incompatible { .. } => Tag::Incompatible,
            Answer::BadRow { .. } => Tag::BadRow,
            Answer::TooLarge { .. } => Tag::TooLarge,
        }
    }

    /// The batch it answers (`None` for the start-up messages).
    pub fn seq(&self) -> Option<u64> {
        match self {
            Answer::Ready { .. } | Answer::LoadFailed { .. } => None,
            Answer::Results { seq, .. }
            | Answer::ColumnResults { seq, .. }
            | Answer::UdfError { seq, .. }
            | Answer::Incompatible { seq, .. }
            | Answer::BadRow { seq, .. }
            | Answer::TooLarge { seq, .. } => Some(*seq),
        }
    }

    /// Writes the answer into `out` (cleared first) and returns its tag.
    /// An executor writes results with [`Answer::begin_results`] instead,
    /// straight from Python objects.
    ///
    /// # Errors
    ///
    /// A value the row codec cannot hold, or a column a column frame
    /// cannot ([`WriteError`]).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<Tag, WriteError> {
        out.clear();
        if let Some(seq) = self.seq() {
            out.extend_from_slice(&seq.to_le_bytes());
        }
        let one =
            |row: Vec<Value>, out: &mut Vec<u8>| coil_ipc::encode_batch(&[row], out).map(drop);
        match self {
            Answer::Ready {
                pid,
                python,
                returns,
                signature,
                gil,
            } => {
                let returns = match returns.as_ref().and_then(crate::Columns::type_to_bytes) {
                    Some(bytes) => Value::Bytes(bytes),
                    None => Value::Null,
                };
                let [params, columnar, written_as, asynchronous] = signature.to_values();
                one(
                    vec![
                        Value::Int(i64::from(*pid)),
                        s(python),
                        returns,
                        params,
                        columnar,
                        written_as,
                        asynchronous,
                        gil.as_deref().map_or(Value::Null, s),
                    ],
                    out,
                )?
            }
            Answer::LoadFailed { error, blocker } => {
                let [type_name, message, traceback] = error_fields(error);
                let blocker = blocker.as_deref().map_or(Value::Null, s);
                one(vec![type_name, message, traceback, blocker], out)?
            }
            Answer::Results {
                times,
                values,
                failed,
                ..
            } => {
                Answer::put_times(out, *times);
                let rows: Vec<Row> = values.iter().map(|v| vec![v.clone()]).collect();
                coil_ipc::encode_batch(&rows, out)?;
                Answer::append_failures(out, failed, false)?;
            }
            Answer::ColumnResults {
                times,
                column,
                failed,
                ..
            } => {
                Answer::put_times(out, *times);
                crate::Columns::encode_body(column.len(), std::slice::from_ref(column), out)?;
                Answer::append_failures(out, failed, true)?;
            }
            Answer::UdfError { row, error, .. } => {
                let mut r = vec![Value::Int(i64::from(*row))];
                r.extend(error_fields(error));
                one(r, out)?;
            }
            Answer::Incompatible {
                row, module, error, ..
            } => {
                let mut r = vec![Value::Int(i64::from(*row)), s(module)];
                r.extend(error_fields(error));
                one(r, out)?;
            }
            Answer::BadRow { row, message, .. } => {
                one(vec![Value::Int(row.map_or(-1, i64::from)), s(message)], out)?
            }
            Answer::TooLarge { bytes, limit, .. } => one(
                vec![
                    Value::Int(i64::try_from(*bytes).unwrap_or(i64::MAX)),
                    Value::Int(i64::try_from(*limit).unwrap_or(i64::MAX)),
                ],
                out,
            )?,
        }
        Ok(self.tag())
    }

    fn put_times(out: &mut Vec<u8>, t: Times) {
        for d in [t.decode, t.python, t.encode] {
            out.extend_from_slice(&nanos(d));
        }
    }

    /// Starts the results of batch `seq` in `out` (cleared first): the
    /// executor then appends the rows (a row batch of one `[result]` per
    /// input row, e.g. with `coil_ipc::BatchEncoder`) and calls
    /// [`Answer::finish_results`]. The tag is [`Tag::Results`].
    pub fn begin_results(seq: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&seq.to_le_bytes());
        Answer::put_times(out, Times::default());
    }

    /// Writes the executor's `times` into results started with
    /// [`Answer::begin_results`].
    pub fn finish_results(out: &mut [u8], times: Times) {
        let mut at = SEQ_LEN;
        for d in [times.decode, times.python, times.encode] {
            if let Some(slot) = out.get_mut(at..at + 8) {
                slot.copy_from_slice(&nanos(d));
            }
            at += 8;
        }
    }

    /// Appends the failed rows to results started with
    /// [`Answer::begin_results`] (rows, or if `columnar` a column frame's
    /// body) and returns the answer's tag: [`Tag::Results`] or
    /// [`Tag::ColumnResults`] when none failed, else
    /// [`Tag::ResultsAndFailures`] or [`Tag::ColumnResultsAndFailures`].
    ///
    /// # Errors
    ///
    /// A value the row codec cannot hold ([`EncodeError`]).
    pub fn append_failures(
        out: &mut Vec<u8>,
        failed: &[RowFailure],
        columnar: bool,
    ) -> Result<Tag, EncodeError> {
        if !failed.is_empty() {
            let rows: Vec<Row> = failed.iter().map(RowFailure::fields).collect();
            coil_ipc::encode_batch(&rows, out)?;
        }
        Ok(match (columnar, failed.is_empty()) {
            (false, true) => Tag::Results,
            (false, false) => Tag::ResultsAndFailures,
            (true, true) => Tag::ColumnResults,
            (true, false) => Tag::ColumnResultsAndFailures,
        })
    }

    /// Decodes a message with tag `tag` from `src`, checked against what
    /// the host waits for: the start-up message, or the answer to a batch
    /// (its sequence number, a result per row, rows named within the
    /// batch).
    ///
    /// # Errors
    ///
    /// [`ProtoError`] for anything an honest executor does not write.
    pub fn decode<S: ByteSource + ?Sized>(
        tag: Tag,
        src: &S,
        expect: Expect,
    ) -> Result<Answer, ProtoError> {
        Answer::decode_from(tag, src, expect, crate::Refs::default())
    }

    /// [`Answer::decode`], with what column results may refer to besides
    /// the message's bytes (`refs`: an in-process executor's shelf, a
    /// worker's arena; see
    /// [`Columns::decode_from`](crate::Columns::decode_from)); without
    /// them, shelved or placed results are refused.
    ///
    /// # Errors
    ///
    /// As [`Answer::decode`].
    pub fn decode_from<S: ByteSource + ?Sized>(
        tag: Tag,
        src: &S,
        expect: Expect,
        refs: crate::Refs<'_>,
    ) -> Result<Answer, ProtoError> {
        match (expect, tag) {
            (Expect::Start, Tag::Ready) => match one_row(src, 0, tag)?.as_slice() {
                [Value::Int(pid), Value::Str(python), returns, params, columnar, written_as, asynchronous, gil] => {
                    Ok(Answer::Ready {
                        pid: u32::try_from(*pid).map_err(|_| fields(tag, "a pid out of range"))?,
                        python: python.clone(),
                        returns: match returns {
                            Value::Null => None,
                            Value::Bytes(b) => Some(crate::Columns::type_from_bytes(b)?),
                            _ => return Err(fields(tag, "a return type that is not bytes")),
                        },
                        signature: crate::UdfSignature::from_values(
                            params,
                            columnar,
                            written_as,
                            asynchronous,
                        )
                        .ok_or_else(|| fields(tag, "a signature that is not one"))?,
                        gil: match gil {
                            Value::Null => None,
                            Value::Str(m) => Some(m.clone()),
                            _ => return Err(fields(tag, "a GIL module that is not a string")),
                        },
                    })
                }
                other => Err(fields(tag, &shape(other))),
            },
            (Expect::Start, Tag::LoadFailed) => {
                let row = one_row(src, 0, tag)?;
                let (error, blocker) = match &row[..] {
                    [error @ .., Value::Null] => (error, None),
                    [error @ .., Value::Str(module)] => (error, Some(module.clone())),
                    other => return Err(fields(tag, &shape(other))),
                };
                Ok(Answer::LoadFailed {
                    error: py_error(tag, error)?,
                    blocker,
                })
            }
            (Expect::Start, _) => Err(ProtoError::Unexpected {
                tag,
                expected: "the executor's start-up message",
            }),
            (Expect::Batch { seq, rows }, _) => {
                let got = read_u64(src, 0, tag)?;
                if got != seq {
                    return Err(ProtoError::WrongBatch { got, expected: seq });
                }
                decode_batch_answer(tag, src, seq, rows, refs)
            }
        }
    }
}

fn decode_batch_answer<S: ByteSource + ?Sized>(
    tag: Tag,
    src: &S,
    seq: u64,
    rows: u64,
    refs: crate::Refs<'_>,
) -> Result<Answer, ProtoError> {
    let row_in_batch = |r: &Value| match r {
        Value::Int(r) if (0..rows as i64).contains(r) => Ok(*r as u32),
        Value::Int(r) => Err(ProtoError::RowOutOfRange { row: *r, rows }),
        _ => Err(fields(tag, "a row that is not an integer")),
    };
    let times = || -> Result<Times, ProtoError> {
        Ok(Times {
            decode: std::time::Duration::from_nanos(read_u64(src, SEQ_LEN, tag)?),
            python: std::time::Duration::from_nanos(read_u64(src, SEQ_LEN + 8, tag)?),
            encode: std::time::Duration::from_nanos(read_u64(src, SEQ_LEN + 16, tag)?),
        })
    };
    match tag {
        Tag::ColumnResults | Tag::ColumnResultsAndFailures => {
            let times = times()?;
            let body = After::new(src, SEQ_LEN + TIMES_LEN);
            let (got, mut columns, used) = crate::Columns::decode_body_from(&body, refs)?;
            if got as u64 != rows {
                return Err(ProtoError::RowCount {
                    got: got as u64,
                    expected: rows,
                });
            }
            if columns.len() != 1 {
                return Err(ProtoError::RowWidth {
                    row: 0,
                    values: columns.len() as u32,
                });
            }
            let column = columns.pop().expect("one column");
            let rest = After::new(&body, used);
            let failed = if tag == Tag::ColumnResultsAndFailures {
                decode_failures(tag, &rest, column.len(), |at| column.is_null(at))?
            } else if rest.len() != 0 {
                return Err(fields(
                    tag,
                    &format!("{} bytes after the column", rest.len()),
                ));
            } else {
                Vec::new()
            };
            Ok(Answer::ColumnResults {
                seq,
                times,
                column,
                failed,
            })
        }
        Tag::Results | Tag::ResultsAndFailures => {
            let times = times()?;
            let decode = |source| ProtoError::Decode { tag, source };
            let body = After::new(src, SEQ_LEN + TIMES_LEN);
            let mut dec = BatchDecoder::new(&body).map_err(decode)?;
            let got = u64::from(dec.rows_remaining());
            if got != rows {
                return Err(ProtoError::RowCount {
                    got,
                    expected: rows,
                });
            }
            let mut values = Vec::with_capacity(rows as usize);
            for row in 0..rows {
                match dec.begin_row().map_err(decode)? {
                    1 => values.push(dec.read_value(0).map_err(decode)?),
                    values => return Err(ProtoError::RowWidth { row, values }),
                }
            }
            let failed = if tag == Tag::ResultsAndFailures {
                let rest = After::new(&body, dec.position());
                decode_failures(tag, &rest, values.len(), |at| values[at] == Value::Null)?
            } else {
                dec.finish().map_err(decode)?;
                Vec::new()
            };
            Ok(Answer::Results {
                seq,
                times,
                values,
                failed,
            })
        }
        Tag::UdfError => match one_row(src, SEQ_LEN, tag)?.as_slice() {
            [r, t, m, tb] => Ok(Answer::UdfError {
                seq,
                row: row_in_batch(r)?,
                error: py_error(tag, &[t.clone(), m.clone(), tb.clone()])?,
            }),
            other => Err(fields(tag, &shape(other))),
        },
        Tag::Incompatible => match one_row(src, SEQ_LEN, tag)?.as_slice() {
            [r, Value::Str(module), t, m, tb] => Ok(Answer::Incompatible {
                seq,
                row: row_in_batch(r)?,
                module: module.clone(),
                error: py_error(tag, &[t.clone(), m.clone(), tb.clone()])?,
            }),
            other => Err(fields(tag, &shape(other))),
        },
        Tag::BadRow => match one_row(src, SEQ_LEN, tag)?.as_slice() {
            [Value::Int(-1), Value::Str(message)] => Ok(Answer::BadRow {
                seq,
                row: None,
                message: message.clone(),
            }),
            [r, Value::Str(message)] => Ok(Answer::BadRow {
                seq,
                row: Some(row_in_batch(r)?),
                message: message.clone(),
            }),
            other => Err(fields(tag, &shape(other))),
        },
        Tag::TooLarge => match one_row(src, SEQ_LEN, tag)?.as_slice() {
            [Value::Int(bytes), Value::Int(limit)] if *bytes >= 0 && *limit >= 0 => {
                Ok(Answer::TooLarge {
                    seq,
                    bytes: *bytes as u64,
                    limit: *limit as u64,
                })
            }
            other => Err(fields(tag, &shape(other))),
        },
        Tag::Batch
        | Tag::BatchPerRow
        | Tag::Columns
        | Tag::ColumnsPerRow
        | Tag::Part
        | Tag::Ready
        | Tag::LoadFailed => Err(ProtoError::Unexpected {
            tag,
            expected: "an answer to a batch",
        }),
    }
}

/// The failures after the results of a [`Tag::ResultsAndFailures`] or
/// [`Tag::ColumnResultsAndFailures`] answer: at least one, rows ascending
/// within the batch of `len` results, each where the results hold a null
/// (`is_null`).
fn decode_failures<S: ByteSource + ?Sized>(
    tag: Tag,
    src: &S,
    len: usize,
    is_null: impl Fn(usize) -> bool,
) -> Result<Vec<RowFailure>, ProtoError> {
    let decode = |source| ProtoError::Decode { tag, source };
    let mut dec = BatchDecoder::new(src).map_err(decode)?;
    let n = dec.rows_remaining();
    if n == 0 || n as usize > len {
        return Err(fields(tag, &format!("{n} failures for {len} rows")));
    }
    let mut failed = Vec::with_capacity(n as usize);
    let mut row = Vec::with_capacity(5);
    for _ in 0..n {
        row.clear();
        for _ in 0..dec.begin_row().map_err(decode)? {
            row.push(dec.read_value(0).map_err(decode)?);
        }
        let [Value::Int(at), Value::Int(kind), t, m, tb] = row.as_slice() else {
            return Err(fields(tag, &shape(&row)));
        };
        let at = match usize::try_from(*at) {
            Ok(i) if i < len => i,
            _ => {
                return Err(ProtoError::RowOutOfRange {
                    row: *at,
                    rows: len as u64,
                })
            }
        };
        if failed
            .last()
            .is_some_and(|f: &RowFailure| f.row as usize >= at)
        {
            return Err(fields(tag, "failures out of order"));
        }
        if !is_null(at) {
            return Err(fields(tag, &format!("a failed row {at} with a result")));
        }
        let error = py_error(tag, &[t.clone(), m.clone(), tb.clone()])?;
        let fault = match kind {
            0 => RowFault::Raised(error),
            1 => RowFault::TimedOut(error),
            2 => RowFault::BadValue(error.message),
            _ => return Err(fields(tag, &format!("a failure of kind {kind}"))),
        };
        failed.push(RowFailure {
            row: at as u32,
            fault,
        });
    }
    dec.finish().map_err(decode)?;
    Ok(failed)
}

fn fields(tag: Tag, got: &str) -> ProtoError {
    ProtoError::Fields {
        tag,
        got: got.to_string(),
    }
}

/// Describes a control row's shape for an error: its value kinds.
fn shape(row: &[Value]) -> String {
    let kinds: Vec<&str> = row
        .iter()
        .map(|v| match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
        })
        .collect();
    format!("fields [{}]", kinds.join(", "))
}

fn py_error(tag: Tag, row: &[Value]) -> Result<PyErrorInfo, ProtoError> {
    match row {
        [Value::Str(type_name), Value::Str(message), Value::Str(traceback)] => Ok(PyErrorInfo {
            type_name: type_name.clone(),
            message: message.clone(),
            traceback: traceback.clone(),
        }),
        other => Err(fields(tag, &shape(other))),
    }
}

/// Decodes a payload that holds exactly one row, after `skip` bytes, as the
/// control messages do.
fn one_row<S: ByteSource + ?Sized>(
    src: &S,
    skip: usize,
    tag: Tag,
) -> Result<Vec<Value>, ProtoError> {
    let decode = |source| ProtoError::Decode { tag, source };
    let after = After::new(src, skip);
    let mut dec = BatchDecoder::new(&after).map_err(decode)?;
    if dec.rows_remaining() != 1 {
        return Err(fields(
            tag,
            &format!("{} rows, not 1", dec.rows_remaining()),
        ));
    }
    let n = dec.begin_row().map_err(decode)?;
    let mut row = Vec::with_capacity(n.min(8) as usize);
    for _ in 0..n {
        row.push(dec.read_value(0).map_err(decode)?);
    }
    dec.finish().map_err(decode)?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(t: &str) -> PyErrorInfo {
        PyErrorInfo {
            type_name: t.into(),
            message: "boom".into(),
            traceback: "Traceback ...\nValueError: boom\n".into(),
        }
    }

    fn every_answer() -> Vec<(Answer, Expect)> {
        let b = |seq| Expect::Batch { seq, rows: 3 };
        vec![
            (
                Answer::Ready {
                    pid: 4242,
                    python: "3.13.0".into(),
                    returns: Some(arrow_schema::DataType::List(std::sync::Arc::new(
                        arrow_schema::Field::new("item", arrow_schema::DataType::Utf8, true),
                    ))),
                    signature: crate::UdfSignature {
                        params: Some(vec![
                            ("title".into(), Some(arrow_schema::DataType::Utf8)),
                            ("n".into(), None),
                        ]),
                        columnar: true,
                        written_as: Some(crate::UdfKind::VectorizedAggregate),
                        window: true,
                        asynchronous: true,
                    },
                    gil: Some("legacy_ext".into()),
                },
                Expect::Start,
            ),
            (
                Answer::Ready {
                    pid: 7,
                    python: "3.14.7".into(),
                    returns: None,
                    signature: crate::UdfSignature::default(),
                    gil: Some(String::new()),
                },
                Expect::Start,
            ),
            (
                Answer::LoadFailed {
                    error: err("ImportError"),
                    blocker: None,
                },
                Expect::Start,
            ),
            (
                Answer::LoadFailed {
                    error: err("ImportError"),
                    blocker: Some("numpy".into()),
                },
                Expect::Start,
            ),
            (
                Answer::Results {
                    seq: 9,
                    times: Times {
                        decode: Duration::from_nanos(1),
                        python: Duration::from_nanos(22),
                        encode: Duration::from_nanos(333),
                    },
                    values: vec![Value::Int(1), Value::Null, Value::Str("ü".into())],
                    failed: vec![],
                },
                b(9),
            ),
            (
                Answer::Results {
                    seq: 10,
                    times: Times::default(),
                    values: vec![Value::Null, Value::Int(2), Value::Null],
                    failed: vec![
                        RowFailure {
                            row: 0,
                            fault: RowFault::Raised(err("ValueError")),
                        },
                        RowFailure {
                            row: 2,
                            fault: RowFault::BadValue("an unsupported type".into()),
                        },
                    ],
                },
                b(10),
            ),
            (
                Answer::UdfError {
                    seq: 1,
                    row: 2,
                    error: err("ValueError"),
                },
                b(1),
            ),
            (
                Answer::Incompatible {
                    seq: 2,
                    row: 0,
                    module: "numpy".into(),
                    error: err("ImportError"),
                },
                b(2),
            ),
            (
                Answer::BadRow {
                    seq: 3,
                    row: Some(1),
                    message: "int too big".into(),
                },
                b(3),
            ),
            (
                Answer::BadRow {
                    seq: 4,
                    row: None,
                    message: "truncated batch".into(),
                },
                b(4),
            ),
            (
                Answer::TooLarge {
                    seq: 5,
                    bytes: 300 << 20,
                    limit: 256 << 20,
                },
                b(5),
            ),
            (
                Answer::ColumnResults {
                    seq: 6,
                    times: Times::default(),
                    column: std::sync::Arc::new(arrow_array::Int64Array::from(vec![
                        Some(1),
                        None,
                        Some(3),
                    ])),
                    failed: vec![],
                },
                Expect::Batch { seq: 6, rows: 3 },
            ),
            (
                Answer::ColumnResults {
                    seq: 7,
                    times: Times::default(),
                    column: std::sync::Arc::new(arrow_array::StringArray::from(vec![
                        None,
                        Some("b"),
                    ])),
                    failed: vec![RowFailure {
                        row: 0,
                        fault: RowFault::BadValue("does not fit".into()),
                    }],
                },
                Expect::Batch { seq: 7, rows: 2 },
            ),
        ]
    }

    #[test]
    fn column_results_must_hold_one_column_per_batch_and_nulls_where_rows_failed() {
        let column: ArrayRef = std::sync::Arc::new(arrow_array::Int64Array::from(vec![1, 2]));
        let mut out = Vec::new();
        Answer::begin_results(1, &mut out);
        crate::Columns::encode_body(2, &[column.clone(), column.clone()], &mut out).unwrap();
        assert!(Answer::decode(
            Tag::ColumnResults,
            &out[..],
            Expect::Batch { seq: 1, rows: 2 }
        )
        .is_err());
        let mut out = Vec::new();
        Answer::begin_results(1, &mut out);
        crate::Columns::encode_body(2, &[column], &mut out).unwrap();
        assert!(Answer::decode(
            Tag::ColumnResults,
            &out[..],
            Expect::Batch { seq: 1, rows: 3 }
        )
        .is_err());
        let failed = [RowFailure {
            row: 1,
            fault: RowFault::BadValue("x".into()),
        }];
        let tag = Answer::append_failures(&mut out, &failed, true).unwrap();
        assert_eq!(tag, Tag::ColumnResultsAndFailures);
        assert!(
            Answer::decode(tag, &out[..], Expect::Batch { seq: 1, rows: 2 }).is_err(),
            "row 1 has a value: it cannot have failed"
        );
    }

    #[test]
    fn every_answer_round_trips() {
        let mut out = Vec::new();
        for (answer, expect) in every_answer() {
            let tag = answer.encode(&mut out).unwrap();
            assert_eq!(tag, answer.tag());
            assert_eq!(Answer::decode(tag, &out[..], expect), Ok(answer));
        }
    }

    #[test]
    fn results_written_by_an_executor_decode_with_their_times() {
        let mut out = Vec::new();
        Answer::begin_results(77, &mut out);
        coil_ipc::encode_batch(&[vec![Value::Int(1)], vec![Value::Float(0.5)]], &mut out).unwrap();
        let times = Times {
            decode: Duration::from_micros(1),
            python: Duration::from_micros(2),
            encode: Duration::from_micros(3),
        };
        Answer::finish_results(&mut out, times);
        assert_eq!(
            Answer::decode(Tag::Results, &out[..], Expect::Batch { seq: 77, rows: 2 }),
            Ok(Answer::Results {
                seq: 77,
                times,
                values: vec![Value::Int(1), Value::Float(0.5)],
                failed: vec![],
            })
        );
        assert_eq!(times.total(), Duration::from_micros(6));
    }

    #[test]
    fn a_batch_round_trips() {
        let rows = vec![vec![Value::Int(1), Value::Str("a".into())], vec![]];
        let mut out = Vec::new();
        Batch::encode(12, &rows, &mut out).unwrap();
        assert_eq!(Batch::seq(&out[..]), Ok(12));
        assert_eq!(coil_ipc::decode_batch(&Batch::rows(&out[..])), Ok(rows));
        assert!(matches!(
            Batch::seq(&out[..4]),
            Err(ProtoError::Decode {
                tag: Tag::Batch,
                ..
            })
        ));
    }

    #[test]
    fn answers_that_do_not_match_their_batch_are_refused() {
        let mut out = Vec::new();
        let results = Answer::Results {
            seq: 3,
            times: Times::default(),
            values: vec![Value::Int(1), Value::Int(2)],
            failed: vec![],
        };
        let tag = results.encode(&mut out).unwrap();
        assert_eq!(
            Answer::decode(tag, &out[..], Expect::Batch { seq: 4, rows: 2 }),
            Err(ProtoError::WrongBatch {
                got: 3,
                expected: 4
            })
        );
        assert_eq!(
            Answer::decode(tag, &out[..], Expect::Batch { seq: 3, rows: 3 }),
            Err(ProtoError::RowCount {
                got: 2,
                expected: 3
            })
        );
        // An error naming a row outside the batch.
        let e = Answer::UdfError {
            seq: 3,
            row: 5,
            error: err("ValueError"),
        };
        let tag = e.encode(&mut out).unwrap();
        assert_eq!(
            Answer::decode(tag, &out[..], Expect::Batch { seq: 3, rows: 5 }),
            Err(ProtoError::RowOutOfRange { row: 5, rows: 5 })
        );
        // A start-up message where an answer was expected, and the reverse.
        let tag = Answer::Ready {
            pid: 1,
            python: "3.13".into(),
            returns: None,
            signature: crate::UdfSignature::default(),
            gil: None,
        }
        .encode(&mut out)
        .unwrap();
        assert!(matches!(
            Answer::decode(tag, &out[..], Expect::Batch { seq: 0, rows: 1 }),
            Err(ProtoError::WrongBatch { .. }
                | ProtoError::Unexpected { .. }
                | ProtoError::Decode { .. })
        ));
        assert!(matches!(
            Answer::decode(Tag::Results, &out[..], Expect::Start),
            Err(ProtoError::Unexpected { .. })
        ));
    }

    #[test]
    fn failures_must_name_null_rows_of_the_batch_in_order() {
        let results = |values: Vec<Value>, rows: &[(i64, i64)]| {
            let mut out = Vec::new();
            Answer::begin_results(1, &mut out);
            let n = values.len();
            let rows_of: Vec<Row> = values.into_iter().map(|v| vec![v]).collect();
            coil_ipc::encode_batch(&rows_of, &mut out).unwrap();
            let failures: Vec<Row> = rows
                .iter()
                .map(|&(r, kind)| {
                    vec![
                        Value::Int(r),
                        Value::Int(kind),
                        Value::Str("E".into()),
                        Value::Str("m".into()),
                        Value::Str(String::new()),
                    ]
                })
                .collect();
            coil_ipc::encode_batch(&failures, &mut out).unwrap();
            Answer::decode(
                Tag::ResultsAndFailures,
                &out[..],
                Expect::Batch {
                    seq: 1,
                    rows: n as u64,
                },
            )
        };
        let two = || vec![Value::Null, Value::Null];
        match results(two(), &[(0, 1), (1, 2)]).unwrap() {
            Answer::Results { failed, .. } => {
                assert!(matches!(failed[0].fault, RowFault::TimedOut(_)));
                assert_eq!(failed[1].fault, RowFault::BadValue("m".into()));
            }
            other => panic!("{other:?}"),
        }
        // A failed row that also has a result; out of order; repeated; out
        // of range; an unknown kind; none at all.
        assert!(results(vec![Value::Int(1), Value::Null], &[(0, 0)]).is_err());
        assert!(results(two(), &[(1, 0), (0, 0)]).is_err());
        assert!(results(two(), &[(1, 0), (1, 0)]).is_err());
        assert!(matches!(
            results(two(), &[(2, 0)]),
            Err(ProtoError::RowOutOfRange { row: 2, rows: 2 })
        ));
        assert!(results(two(), &[(0, 7)]).is_err());
        assert!(results(two(), &[]).is_err());
    }

    #[test]
    fn control_rows_of_the_wrong_shape_are_refused() {
        let mut out = Vec::new();
        out.extend_from_slice(&3u64.to_le_bytes());
        coil_ipc::encode_batch(&[vec![Value::Int(0), Value::Int(7)]], &mut out).unwrap();
        for tag in [Tag::UdfError, Tag::Incompatible, Tag::BadRow] {
            assert!(
                matches!(
                    Answer::decode(tag, &out[..], Expect::Batch { seq: 3, rows: 2 }),
                    Err(ProtoError::Fields { .. })
                ),
                "{tag:?}"
            );
        }
        // Two rows where a control message has one.
        let mut out = Vec::new();
        out.extend_from_slice(&3u64.to_le_bytes());
        coil_ipc::encode_batch(
            &[vec![Value::Int(0), Value::Str("m".into())], vec![]],
            &mut out,
        )
        .unwrap();
        assert!(matches!(
            Answer::decode(Tag::BadRow, &out[..], Expect::Batch { seq: 3, rows: 2 }),
            Err(ProtoError::Fields { .. })
        ));
    }

    proptest! {
        /// Any bytes at all, under any tag, decode to an answer or a
        /// `ProtoError`: never a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), raw in 0u16..20, seq in 0u64..4, rows in 0u64..4) {
            if let Ok(tag) = Tag::try_from(raw) {
                let _ = Answer::decode(tag, &bytes[..], Expect::Batch { seq, rows });
                let _ = Answer::decode(tag, &bytes[..], Expect::Start);
            }
        }

        /// Flipping any byte of a valid answer gives back that answer, another
        /// valid one, or an error: never a panic.
        #[test]
        fn scribbled_answers_never_panic(which in 0usize..9, at in 0usize..400, byte in any::<u8>()) {
            let (answer, expect) = every_answer().swap_remove(which);
            let mut out = Vec::new();
            let tag = answer.encode(&mut out).unwrap();
            let at = at % out.len();
            out[at] = byte;
            let _ = Answer::decode(tag, &out[..], expect);
        }
    }
}
