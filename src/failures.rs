//! The rows and input lines of a `coil run` that failed alone
//! (`python.fn-execution.on-error` = `skip` or `dead-letter`): logged, the
//! first few one by one, and under `dead-letter` written to the `--errors`
//! file as coil-host's [`DeadLetter`] records.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use coil_host::{DeadLetter, FailedAt, OnError, RunError};

/// Failures logged one by one before the rest are only counted.
const LOGGED_FAILURES: u64 = 10;

/// Rows and input lines that failed alone, and where their records go.
pub struct Failures {
    policy: OnError,
    /// The errors file's name and its writer.
    file: Option<(PathBuf, Box<dyn Write>)>,
    /// Failed rows the UDF ran.
    rows: u64,
    /// Input lines that were not a row.
    lines: u64,
}

/// How many rows failed, for the final message.
#[derive(Debug)]
pub struct Failed {
    /// Failed rows the UDF ran.
    pub rows: u64,
    /// Input lines that were not a row.
    pub lines: u64,
    /// The errors file, under `dead-letter`.
    pub file: Option<PathBuf>,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = Vec::new();
        if self.rows > 0 {
            parts.push(plural(self.rows, "row failed", "rows failed"));
        }
        if self.lines > 0 {
            parts.push(plural(
                self.lines,
                "input line was not a row",
                "input lines were not rows",
            ));
        }
        f.write_str(&parts.join(" and "))?;
        match &self.file {
            Some(p) => write!(f, ": written to {}", p.display())?,
            None => f.write_str(": skipped (python.fn-execution.on-error=skip)")?,
        }
        Ok(())
    }
}

impl Failures {
    /// Failures under `policy`, recorded in the file `errors` (created) if
    /// there is one.
    ///
    /// # Errors
    ///
    /// The file cannot be created.
    pub fn new(policy: OnError, errors: Option<&Path>) -> anyhow::Result<Failures> {
        let file = match errors {
            Some(p) => {
                let f = File::create(p).with_context(|| format!("creating {}", p.display()))?;
                let w: Box<dyn Write> = Box::new(BufWriter::new(f));
                Some((p.to_path_buf(), w))
            }
            None => None,
        };
        Ok(Failures::to(policy, file))
    }

    /// Failures under `policy`, recorded in `file` (its name and writer).
    pub fn to(policy: OnError, file: Option<(PathBuf, Box<dyn Write>)>) -> Failures {
        Failures {
            policy,
            file,
            rows: 0,
            lines: 0,
        }
    }

    /// Whether a row fails alone.
    pub fn per_row(&self) -> bool {
        self.policy != OnError::Fail
    }

    fn log(&self, at: FailedAt, what: &str) {
        let n = self.rows + self.lines;
        if n <= LOGGED_FAILURES {
            tracing::warn!("{at}: {what}");
        }
        if n == LOGGED_FAILURES {
            tracing::warn!("more failed rows are counted, not logged");
        }
    }

    fn write(&mut self, record: &DeadLetter) -> anyhow::Result<()> {
        if let Some((path, w)) = &mut self.file {
            record
                .write_line(w)
                .with_context(|| format!("writing failed rows to {}", path.display()))?;
        }
        Ok(())
    }

    /// The row at `at`, whose arguments are `input` (when they can be
    /// shown), failed in the UDF (or its worker) with `e`.
    ///
    /// # Errors
    ///
    /// The errors file cannot be written.
    pub fn row(
        &mut self,
        at: FailedAt,
        input: Option<serde_json::Value>,
        e: &RunError,
    ) -> anyhow::Result<()> {
        self.rows += 1;
        let record = DeadLetter::failed_row(at, input, e);
        self.log(at, record.summary());
        self.write(&record)
    }

    /// Input line `line`, `text`, is not a row of arguments (`why`).
    ///
    /// # Errors
    ///
    /// The errors file cannot be written.
    pub fn bad_line(&mut self, line: u64, text: &str, why: &str) -> anyhow::Result<()> {
        self.lines += 1;
        self.log(FailedAt::Line(line), why);
        self.write(&DeadLetter::bad_line(line, text, why))
    }

    /// Flushes the errors file; what failed.
    ///
    /// # Errors
    ///
    /// The errors file cannot be written.
    pub fn finish(self) -> anyhow::Result<Failed> {
        let file = match self.file {
            Some((path, mut w)) => {
                w.flush()
                    .with_context(|| format!("writing failed rows to {}", path.display()))?;
                Some(path)
            }
            None => None,
        };
        Ok(Failed {
            rows: self.rows,
            lines: self.lines,
            file,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose bytes the test keeps (`run`'s tests use it too).
    #[derive(Clone, Default)]
    pub(crate) struct Shared(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn dead_letters_are_one_json_line_each_and_counted() {
        let file = Shared::default();
        let mut failures = Failures::to(
            OnError::DeadLetter,
            Some(("errors.jsonl".into(), Box::new(file.clone()))),
        );
        assert!(failures.per_row());
        failures.bad_line(2, "[1,", "invalid JSON").unwrap();
        let e = RunError::BadRow {
            row: Some(0),
            message: "no".into(),
        };
        failures
            .row(FailedAt::Line(3), Some(serde_json::json!([1])), &e)
            .unwrap();
        let failed = failures.finish().unwrap();
        assert_eq!(
            failed.to_string(),
            "1 row failed and 1 input line was not a row: written to errors.jsonl"
        );
        let text = String::from_utf8(file.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["line"], 2);
        assert_eq!(lines[1]["input"], serde_json::json!([1]));
        assert_eq!(lines[1]["error"]["kind"], "bad-value");
    }

    #[test]
    fn skipped_rows_say_so_in_the_final_message() {
        let mut failures = Failures::to(OnError::Skip, None);
        for line in 1..=3 {
            failures.bad_line(line, "x", "invalid JSON").unwrap();
        }
        let failed = failures.finish().unwrap();
        assert_eq!(
            failed.to_string(),
            "3 input lines were not rows: skipped (python.fn-execution.on-error=skip)"
        );
        assert!(!Failures::to(OnError::Fail, None).per_row());
    }
}
