//! `coil run --format arrow`: each record batch of an Arrow IPC stream or
//! file through `Runner::call_arrow`, its results out as a batch of one
//! column, `result`. A failed row is named by its batch and row.

use std::io::{Read, Write};

use anyhow::Context;
use coil_host::arrow_array::{Array, RecordBatch};
use coil_host::arrow_schema::DataType;
use coil_host::{FailedAt, RunError, Runner};

use crate::failures::{Failed, Failures};
use crate::ipc_stream::{result_schema, BatchReader, BatchWriter};

/// A reader that moves a progress bar by the bytes read through it.
pub struct Counted<R> {
    /// What is read.
    pub inner: R,
    /// The bar.
    pub progress: indicatif::ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// Where `coil run --format arrow`'s results go, and what it says of its
/// input and output.
pub struct ArrowDelivery {
    /// The input's name in messages.
    pub input_name: String,
    /// The output's name in messages.
    pub output_name: String,
    /// Write the Arrow IPC file format (else a stream).
    pub file: bool,
    /// Flush after every batch (the output is a pipe or a terminal).
    pub live: bool,
    /// The rows that failed alone.
    pub failures: Failures,
}

/// `coil run --format arrow`: each record batch of the input stream
/// through `Runner::call_arrow`, its results out as a batch of one column,
/// `result`, of the `declared` type. On an error the batches before it
/// are delivered, and the output stream is ended, before the run fails.
/// Under `on-error` = `skip` or `dead-letter` a row that fails (or whose
/// result does not fit `declared`) is recorded as `coil run` records a
/// failed line, and its result is null (`Runner::call_arrow_each`): the
/// output's batches keep their input's rows.
///
/// The number of results written, and what failed alone.
///
/// # Errors
///
/// The input is not Arrow IPC, a batch cannot be read or its results
/// written, a row fails (under `on-error=fail`).
pub fn run_arrow(
    runner: &Runner,
    declared: &DataType,
    input: impl Read,
    out: Box<dyn Write>,
    mut to: ArrowDelivery,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<(u64, Failed)> {
    let reader = BatchReader::new(input, &to.input_name, runner.config().max_message_size())?;
    let schema = result_schema(declared);
    let mut writer = BatchWriter::new(out, &schema, to.file)
        .with_context(|| format!("writing the results to {}", to.output_name))?;
    let mut written = 0u64;
    let mut failed = None;
    for (i, batch) in reader.enumerate() {
        let number = i as u64 + 1;
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                failed = Some(anyhow::Error::new(e).context(format!(
                    "reading batch {number} of the Arrow IPC stream {}",
                    to.input_name
                )));
                break;
            }
        };
        let rows = batch.num_rows() as u64;
        let called = if to.failures.per_row() {
            runner.call_arrow_each(&batch)
        } else {
            runner.call_arrow(&batch).map(|a| (a, Vec::new()))
        };
        let (array, row_errors) = match called {
            Ok((array, _)) if array.len() != batch.num_rows() => {
                failed = Some(anyhow::anyhow!(
                    "batch {number}: {} results for its {rows} rows",
                    array.len()
                ));
                break;
            }
            Ok(answered) => answered,
            Err(e) => {
                failed = Some(describe_batch(e, number, &batch));
                break;
            }
        };
        for e in row_errors {
            let at = FailedAt::Cell {
                batch: number,
                row: e.row + 1,
            };
            let input = usize::try_from(e.row)
                .ok()
                .filter(|&r| r < batch.num_rows())
                .and_then(|r| coil_host::row_to_json(&batch, r));
            to.failures.row(at, input, &e.error)?;
        }
        let results = RecordBatch::try_new(schema.clone(), vec![array])
            .context("the results of a batch as a record batch")?;
        writer
            .write(&results)
            .and_then(|()| if to.live { writer.flush() } else { Ok(()) })
            .with_context(|| {
                format!(
                    "writing the results of batch {number} to {} ({written} rows delivered before)",
                    to.output_name
                )
            })?;
        written += rows;
    }
    progress.finish_and_clear();
    // The batches before an error are delivered, in a stream ended as
    // usual, whatever comes next.
    let delivered = writer.finish().with_context(|| {
        format!(
            "writing the results to {} ({written} rows may not have been delivered whole)",
            to.output_name
        )
    });
    if let Some(e) = failed {
        return Err(e);
    }
    delivered?;
    drop(writer);
    let failed = to.failures.finish()?;
    Ok((written, failed))
}

/// Turns a `Runner::call_arrow` error on input batch `number` into a
/// message that names the batch, and its row (from 1) or column where
/// known.
pub fn describe_batch(e: RunError, number: u64, batch: &RecordBatch) -> anyhow::Error {
    let at = |row: u64| FailedAt::Cell {
        batch: number,
        row: row + 1,
    };
    match &e {
        RunError::Udf { row, error } => anyhow::anyhow!(
            "{}: the UDF raised {}: {}\n{}",
            at(*row),
            error.type_name,
            error.message,
            error.traceback.trim_end()
        ),
        RunError::BadRow {
            row: Some(row),
            message,
        } => anyhow::anyhow!("{}: {message}", at(*row)),
        RunError::UnsupportedColumn { column, .. } => match batch.schema().fields().get(*column) {
            Some(field) => anyhow::anyhow!("batch {number}, column {:?}: {e}", field.name()),
            None => anyhow::anyhow!("batch {number}: {e}"),
        },
        RunError::Row(_) => anyhow::Error::new(e).context(format!("batch {number}")),
        // A death names the rows it ended, whichever one was running.
        RunError::WorkerDied { rows, .. } => anyhow::anyhow!(
            "batch {number}, rows {}..={}: {e}",
            rows.start + 1,
            rows.end
        ),
        _ => match (e.row(), e.rows()) {
            (Some(row), _) => anyhow::anyhow!("{}: {e}", at(row)),
            (None, Some(rows)) => anyhow::anyhow!(
                "batch {number}, rows {}..={}: {e}",
                rows.start + 1,
                rows.end
            ),
            (None, None) => anyhow::Error::new(e).context(format!("batch {number}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coil_host::arrow_array::{ArrayRef, Int64Array};
    use std::sync::Arc;

    #[test]
    fn a_batch_error_names_the_batch_and_its_row_or_column() {
        let column: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let batch = RecordBatch::try_from_iter([("n", column)]).unwrap();
        let bad = RunError::BadRow {
            row: Some(1),
            message: "not an int".into(),
        };
        assert_eq!(
            describe_batch(bad, 3, &batch).to_string(),
            "batch 3, row 2: not an int"
        );
        let unsupported = RunError::UnsupportedColumn {
            column: 0,
            data_type: coil_host::arrow_schema::DataType::Int64,
        };
        let e = describe_batch(unsupported, 1, &batch).to_string();
        assert!(e.starts_with("batch 1, column \"n\": "), "{e}");
    }

    #[test]
    fn counted_reads_move_the_bar() {
        let progress = indicatif::ProgressBar::hidden();
        let mut counted = Counted {
            inner: std::io::Cursor::new(vec![0u8; 10]),
            progress: progress.clone(),
        };
        let mut all = Vec::new();
        counted.read_to_end(&mut all).unwrap();
        assert_eq!(progress.position(), 10);
    }
}
