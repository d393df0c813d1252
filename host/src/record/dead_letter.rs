//! The dead-letter record: one JSON object per row that failed alone
//! (`python.fn-execution.on-error=dead-letter`), as `coil run --errors FILE`
//! writes them, one per line.
//!
//! A failed row's record names where the row was ([`FailedAt`]: `line`, or
//! `batch` and `row`, all from 1), its `input` when it can be shown, and
//! its `error`: `kind` (`raised`, `timeout`, `worker-died`, `bad-value` or
//! `other`) and `message`, plus `type` and `traceback` for an exception
//! and `stderr` for a worker that died. An input line that is not a row is
//! `{"line": N, "text": "...", "error": {"kind": "input", "message": ...}}`.

use std::fmt;
use std::io::{self, Write};

use serde_json::{Map, Value as Json};

use crate::RunError;

/// Where a failed row was in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedAt {
    /// A JSON Lines line, from 1.
    Line(u64),
    /// An Arrow record batch, and a row in it, both from 1.
    Cell {
        /// The batch, from 1.
        batch: u64,
        /// The row in the batch, from 1.
        row: u64,
    },
}

impl fmt::Display for FailedAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailedAt::Line(line) => write!(f, "line {line}"),
            FailedAt::Cell { batch, row } => write!(f, "batch {batch}, row {row}"),
        }
    }
}

impl FailedAt {
    /// The record's first keys: `line`, or `batch` and `row`.
    fn record(&self) -> Map<String, Json> {
        let mut record = Map::new();
        match self {
            FailedAt::Line(line) => {
                record.insert("line".into(), (*line).into());
            }
            FailedAt::Cell { batch, row } => {
                record.insert("batch".into(), (*batch).into());
                record.insert("row".into(), (*row).into());
            }
        }
        record
    }
}

/// One record of the dead-letter file, and the one-line summary a log
/// gives of it.
///
/// # Examples
///
/// ```
/// use coil_host::DeadLetter;
///
/// let record = DeadLetter::bad_line(3, "[1,", "invalid JSON");
/// assert_eq!(record.summary(), "invalid JSON");
/// assert_eq!(
///     record.to_json(),
///     &serde_json::json!({
///         "line": 3,
///         "text": "[1,",
///         "error": {"kind": "input", "message": "invalid JSON"}
///     })
/// );
/// let mut file = Vec::new();
/// record.write_line(&mut file)?;
/// assert!(file.ends_with(b"}\n"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    record: Json,
    summary: String,
}

impl DeadLetter {
    /// The row at `at`, whose arguments are `input` (when they can be
    /// shown, as [`value_to_json`](crate::value_to_json) or
    /// [`row_to_json`](crate::row_to_json) writes them), failed in the UDF
    /// or its worker with `error`.
    pub fn failed_row(at: FailedAt, input: Option<Json>, error: &RunError) -> DeadLetter {
        let mut fields = Map::new();
        let (kind, summary) = match error {
            RunError::Udf { error: py, .. } => {
                fields.insert("type".into(), py.type_name.clone().into());
                fields.insert("message".into(), py.message.clone().into());
                fields.insert("traceback".into(), py.traceback.clone().into());
                (
                    "raised",
                    format!("the UDF raised {}: {}", py.type_name, py.message),
                )
            }
            RunError::Timeout { after, .. } => (
                "timeout",
                format!("timed out after {after:?} (python.fn-execution.timeout)"),
            ),
            RunError::WorkerDied { exit, stderr, .. } => {
                if !stderr.is_empty() {
                    fields.insert("stderr".into(), stderr.clone().into());
                }
                ("worker-died", format!("its worker died ({exit})"))
            }
            RunError::BadRow { message, .. } => ("bad-value", message.clone()),
            other => ("other", other.to_string()),
        };
        fields.insert("kind".into(), kind.into());
        if !fields.contains_key("message") {
            fields.insert("message".into(), summary.clone().into());
        }
        let mut record = at.record();
        if let Some(input) = input {
            record.insert("input".into(), input);
        }
        record.insert("error".into(), fields.into());
        DeadLetter {
            record: record.into(),
            summary,
        }
    }

    /// Input line `line`, `text`, is not a row of arguments, for the reason
    /// `why`.
    pub fn bad_line(line: u64, text: &str, why: &str) -> DeadLetter {
        DeadLetter {
            record: serde_json::json!({
                "line": line,
                "text": text,
                "error": { "kind": "input", "message": why },
            }),
            summary: why.into(),
        }
    }

    /// What failed, in a line: the exception and its message, the timeout,
    /// the worker's exit.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The record as JSON.
    pub fn to_json(&self) -> &Json {
        &self.record
    }

    /// Writes the record and a newline.
    ///
    /// # Errors
    ///
    /// The writer's error.
    pub fn write_line(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, &self.record)?;
        out.write_all(b"\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PyErrorInfo;
    use serde_json::json;

    #[test]
    fn a_raised_row_records_its_line_input_and_exception() {
        let e = RunError::Udf {
            row: 0,
            error: PyErrorInfo {
                type_name: "ValueError".into(),
                message: "no".into(),
                traceback: "Traceback ...".into(),
            },
        };
        let record = DeadLetter::failed_row(FailedAt::Line(4), Some(json!([1])), &e);
        assert_eq!(record.summary(), "the UDF raised ValueError: no");
        assert_eq!(
            record.to_json(),
            &json!({
                "line": 4,
                "input": [1],
                "error": {
                    "kind": "raised",
                    "type": "ValueError",
                    "message": "no",
                    "traceback": "Traceback ..."
                }
            })
        );
    }

    #[test]
    fn a_bad_value_in_a_batch_records_batch_and_row_without_input() {
        let e = RunError::BadRow {
            row: Some(1),
            message: "not an int".into(),
        };
        let record = DeadLetter::failed_row(FailedAt::Cell { batch: 2, row: 2 }, None, &e);
        assert_eq!(
            record.to_json(),
            &json!({"batch": 2, "row": 2, "error": {"kind": "bad-value", "message": "not an int"}})
        );
        assert_eq!(
            FailedAt::Cell { batch: 2, row: 2 }.to_string(),
            "batch 2, row 2"
        );
    }

    #[test]
    fn a_record_is_one_line() {
        let mut out = Vec::new();
        DeadLetter::bad_line(1, "x\ny", "invalid JSON")
            .write_line(&mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
    }
}
