//! [`ArrowStream`]: Arrow batches in, one array per batch out, in order.

use std::collections::VecDeque;

use arrow_array::{ArrayRef, RecordBatch};

use super::{Returns, WireColumns};
use crate::sched::Scheduler;
use crate::{ArrowError, RowError, RunError, Runner};

impl Runner {
    /// A stream of Arrow batches: push batches, pull each one's results,
    /// as one array, in order; see [`ArrowStream`].
    pub fn stream_arrow(&self) -> ArrowStream<'_> {
        ArrowStream {
            runner: self,
            scheduler: Scheduler::new(self),
            pushed: VecDeque::new(),
            rows: 0,
        }
    }
}

/// Arrow batches in, one array per batch out, in order: the streaming form
/// of [`Runner::call_arrow`], from [`Runner::stream_arrow`].
///
/// [`push`](ArrowStream::push) checks a batch's columns as `call_arrow`
/// does, cuts it into slices of the current batch size
/// ([`RowStream::batch_size`](crate::RowStream::batch_size)) and sends
/// them; like [`RowStream::push`](crate::RowStream::push) it blocks while
/// every leased worker has two batches in flight, until the oldest is
/// answered. [`pull`](ArrowStream::pull) gives the results of the oldest
/// batch not pulled yet, put together from its slices into one array of
/// the declared type with exactly that batch's rows. A batch that failed
/// yields its error once, in its place, and the stream goes on with the
/// next batch.
///
/// Rows are numbered across the stream, as in every [`RunError`]: the
/// rows of a batch start at [`ArrowStream::rows_pushed`] as it was before
/// the batch was pushed.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use coil_host::arrow_array::{ArrayRef, Int64Array, RecordBatch};
/// # use coil_host::arrow_schema::DataType;
/// # use coil_host::{Config, Runner, UdfSpec};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = UdfSpec::new("udfs/inc.py:inc").returns(DataType::Int64);
/// let runner = Runner::new(&Config::default(), spec)?;
/// let mut stream = runner.stream_arrow();
/// for n in [10, 1000, 3] {
///     let xs: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n));
///     stream.push(&RecordBatch::try_from_iter([("x", xs)])?)?;
/// }
/// for results in stream {
///     println!("{} results", results?.len());
/// }
/// # Ok(()) }
/// ```
pub struct ArrowStream<'r> {
    runner: &'r Runner,
    scheduler: Scheduler<&'r Runner>,
    /// The batches pushed and not pulled yet, oldest first.
    pushed: VecDeque<Pushed>,
    /// Rows pushed so far.
    rows: u64,
}

/// A batch pushed to an [`ArrowStream`]: how its results are put together.
struct Pushed {
    returns: Returns,
    rows: usize,
    /// The column batches it was cut into.
    slices: usize,
}

impl ArrowStream<'_> {
    /// Sends `batch` (one column per argument), cut into slices of the
    /// current batch size; blocks while every leased worker has two
    /// batches in flight, until the oldest is answered. Its results, or
    /// its error, come from [`ArrowStream::pull`] in its turn.
    ///
    /// # Errors
    ///
    /// As [`Runner::call_arrow`] before any row runs, and with nothing
    /// sent: [`RunError::UnsupportedColumn`] naming the column and its
    /// type; [`RunError::Arrow`] without a supported return type, or for a
    /// table UDF. The stream goes on without the batch.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), RunError> {
        let returns = Returns::of(self.runner, false)?;
        let columns = WireColumns::of(self.runner, batch)?;
        let mut slices = 0;
        let mut at = 0;
        while at < columns.rows {
            let n = self.runner.column_batch_size().min(columns.rows - at);
            columns.send(&mut self.scheduler, at..at + n, &returns.wire);
            at += n;
            slices += 1;
        }
        self.rows += columns.rows as u64;
        self.pushed.push_back(Pushed {
            returns,
            rows: columns.rows,
            slices,
        });
        Ok(())
    }

    /// The results of the oldest batch not pulled yet, as one array of the
    /// declared type holding that batch's rows in order, waiting for them;
    /// `None` once every pushed batch has been pulled.
    ///
    /// # Errors
    ///
    /// The batch's first error, as [`Runner::call_arrow`] gives it (under
    /// `on-error` = `skip` or `dead-letter`, a row that failed alone is a
    /// [`RunError::Row`]: [`ArrowStream::pull_each`] takes those as
    /// nulls). The stream goes on with the next batch.
    pub fn pull(&mut self) -> Option<Result<ArrayRef, RunError>> {
        self.next_batch(true).map(Answer::whole)
    }

    /// As [`ArrowStream::pull`] if the oldest batch's results are all back,
    /// without waiting; else `None`.
    pub fn try_pull(&mut self) -> Option<Result<ArrayRef, RunError>> {
        self.next_batch(false).map(Answer::whole)
    }

    /// The results of the oldest batch not pulled yet, as
    /// [`ArrowStream::pull`] gives them, except that under
    /// `python.fn-execution.on-error` = `skip` or `dead-letter` each row
    /// that failed alone holds a null in the array and its error
    /// ([`RowError`], without its input values) is in the list, in row
    /// order, as [`Runner::call_arrow_each`] gives them. Waits for them;
    /// `None` once every pushed batch has been pulled.
    ///
    /// # Errors
    ///
    /// As [`ArrowStream::pull`], except rows that failed alone.
    pub fn pull_each(&mut self) -> Option<Result<(ArrayRef, Vec<RowError>), RunError>> {
        self.next_batch(true).map(Answer::each)
    }

    /// As [`ArrowStream::pull_each`] if the oldest batch's results are all
    /// back, without waiting; else `None`.
    pub fn try_pull_each(&mut self) -> Option<Result<(ArrayRef, Vec<RowError>), RunError>> {
        self.next_batch(false).map(Answer::each)
    }

    /// Rows pushed so far: the first row of the next batch pushed, as
    /// errors number it.
    pub fn rows_pushed(&self) -> u64 {
        self.rows
    }

    /// The oldest pushed batch's slices' answers, once all are back
    /// (waiting for them if `wait`).
    fn next_batch(&mut self, wait: bool) -> Option<Answer> {
        let front = self.pushed.front()?;
        if !self.scheduler.collect_columns(front.slices, wait) && !wait {
            return None;
        }
        let batch = self.pushed.pop_front().expect("the oldest batch");
        let mut arrays = Vec::with_capacity(batch.slices);
        let mut errors = Vec::new();
        for _ in 0..batch.slices {
            match self.scheduler.next_column() {
                Some((array, e)) => {
                    arrays.push(array);
                    errors.extend(e);
                }
                None => {
                    arrays.push(None);
                    errors.push(RunError::Arrow(ArrowError::Internal(
                        "a column batch never came back",
                    )));
                }
            }
        }
        Some(Answer {
            batch,
            arrays,
            errors,
        })
    }
}

impl Iterator for ArrowStream<'_> {
    type Item = Result<ArrayRef, RunError>;

    /// [`ArrowStream::pull`].
    fn next(&mut self) -> Option<Self::Item> {
        self.pull()
    }
}

/// A pushed batch's answers, every slice's.
struct Answer {
    batch: Pushed,
    /// Each slice's results, none for a slice that failed as a whole.
    arrays: Vec<Option<ArrayRef>>,
    /// The slices' errors, in row order.
    errors: Vec<RunError>,
}

impl Answer {
    /// The batch's results, or its first error.
    fn whole(self) -> Result<ArrayRef, RunError> {
        match self.errors.into_iter().next() {
            Some(e) => Err(e),
            None => join_slices(&self.batch, self.arrays),
        }
    }

    /// The batch's results with its rows that failed alone, or its first
    /// other error.
    fn each(self) -> Result<(ArrayRef, Vec<RowError>), RunError> {
        let mut failed = Vec::new();
        let mut other = None;
        for e in self.errors {
            match e {
                RunError::Row(r) => failed.push(*r),
                e => {
                    other.get_or_insert(e);
                }
            }
        }
        match other {
            Some(e) => Err(e),
            None => Ok((join_slices(&self.batch, self.arrays)?, failed)),
        }
    }
}

/// The arrays of `batch`'s slices as one (none missing: a slice that
/// failed as a whole left an error, which comes first).
fn join_slices(batch: &Pushed, arrays: Vec<Option<ArrayRef>>) -> Result<ArrayRef, RunError> {
    let arrays = arrays.into_iter().collect::<Option<Vec<_>>>();
    let arrays = arrays.ok_or_else(|| {
        RunError::Arrow(ArrowError::Internal(
            "a failed column batch without its error",
        ))
    })?;
    batch.returns.join(arrays, batch.rows)
}
