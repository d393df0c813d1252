//! Delivery: a batch's answer into the ready queue in row order (each row
//! that failed alone as its own error, in its place), a failed batch's
//! error in its rows' place, and column batches' answers (a split batch's
//! parts joined into one).

use arrow_array::ArrayRef;
use coil_ipc::Row;

use super::batch::InFlight;
use super::{Executors, Scheduler};
use crate::error::{ArrowError, RowError};
use crate::link::Results;
use crate::RunError;

/// What a column batch came back as: its results (none if it failed as a
/// whole) and how many errors, of the next ones in the scheduler's ready
/// queue, are its own (its rows' under the per-row policy, else at most
/// one).
pub(super) struct ColumnAnswer {
    array: Option<ArrayRef>,
    errors: usize,
}

/// The answers so far of a split column batch's parts.
#[derive(Default)]
pub(super) struct Joining {
    arrays: Vec<ArrayRef>,
    errors: usize,
    /// A part failed as a whole: the batch has no results.
    failed: bool,
}

impl<E: Executors> Scheduler<E> {
    /// The results of the column batches answered so far, in order.
    pub(crate) fn take_arrays(&mut self) -> Vec<ArrayRef> {
        self.columns.drain(..).filter_map(|c| c.array).collect()
    }

    /// Takes answers back, oldest first, until `n` column batches have
    /// come back (answered or failed) and are kept for
    /// [`Scheduler::next_column`]: waiting for them if `wait`, else only
    /// as far as answers are already back. Whether `n` have.
    pub(crate) fn collect_columns(&mut self, n: usize, wait: bool) -> bool {
        while self.columns.len() < n && !self.flight.is_empty() {
            if !self.collect_oldest(wait) {
                break;
            }
        }
        self.columns.len() >= n
    }

    /// The oldest column batch that came back and is not taken yet: its
    /// results (none if it failed as a whole) and its errors, in row order.
    /// For a scheduler that sends only column batches (whose `ready` queue
    /// so holds only their errors).
    pub(crate) fn next_column(&mut self) -> Option<(Option<ArrayRef>, Vec<RunError>)> {
        let answer = self.columns.pop_front()?;
        let errors = (0..answer.errors)
            .map(|_| match self.ready.pop_front() {
                Some(Err(e)) => *e,
                _ => RunError::Arrow(ArrowError::Internal("a column batch's error is missing")),
            })
            .collect();
        Some((answer.array, errors))
    }

    /// Queues a batch's results in order. Under the per-row policy each
    /// failed row's own error, with its input (decoded again from the
    /// batch), takes its place; otherwise (`fail`: scalar and table UDFs'
    /// batches travel per row all the same) the rows before the first
    /// failure are answered and its error is the batch's.
    pub(super) fn deliver(
        &mut self,
        entry: &InFlight,
        results: Results,
        failed: Vec<(u64, RunError)>,
    ) {
        let values = match results {
            Results::Rows(values) => values,
            Results::Column(column) => {
                // A failed row holds a null in the column; its error is
                // queued in its turn (without its input, which stays in
                // the caller's arrays).
                let errors = if self.executors.tuning().per_row {
                    let n = failed.len();
                    for (row, error) in failed {
                        self.fail_row(row, Vec::new(), error);
                    }
                    n
                } else if let Some((_, e)) = failed.into_iter().next() {
                    self.count_error(&e);
                    self.ready.push_back(Err(Box::new(e)));
                    1
                } else {
                    0
                };
                self.column_answer(entry, Some(column), errors);
                return;
            }
        };
        if failed.is_empty() {
            self.ready.extend(values.into_iter().map(Ok));
            return;
        }
        if !self.executors.tuning().per_row {
            // Under `fail`: the rows before the first failure, then its
            // error, where the run stops.
            let (row, e) = failed.into_iter().next().expect("not empty");
            let before = row.saturating_sub(entry.rows.start) as usize;
            self.ready.extend(values.into_iter().take(before).map(Ok));
            self.count_error(&e);
            self.ready.push_back(Err(Box::new(e)));
            return;
        }
        let mut args = entry.payload.args();
        let mut failed = failed.into_iter().peekable();
        for (i, v) in values.into_iter().enumerate() {
            let row = entry.rows.start + i as u64;
            match failed.next_if(|(r, _)| *r == row) {
                Some((_, error)) => {
                    let args = args.get_mut(i).map(std::mem::take).unwrap_or_default();
                    self.fail_row(row, args, error);
                }
                None => self.ready.push_back(Ok(v)),
            }
        }
    }

    /// Queues the error of a batch that failed as a whole in its rows'
    /// place (for a column batch, with no results).
    pub(super) fn fail_batch(&mut self, entry: &InFlight, e: Box<RunError>) {
        // A row that failed alone (a part of a split column batch) still
        // answers: a null in its place.
        let nulls = match &*e {
            RunError::Row(_) => entry
                .payload
                .nulls((entry.rows.end - entry.rows.start) as usize),
            _ => None,
        };
        self.count_error(&e);
        self.ready.push_back(Err(e));
        if entry.payload.is_columnar() {
            self.column_answer(entry, nulls, 1);
        }
    }

    /// Records a column batch's (or a part's) answer: its results (`None`
    /// if it failed as a whole) and how many errors it queued; a part
    /// that joins the next waits for the rest of its batch.
    fn column_answer(&mut self, entry: &InFlight, array: Option<ArrayRef>, errors: usize) {
        let joins_next = entry.payload.joins_next();
        if !joins_next && self.joining.is_none() {
            self.columns.push_back(ColumnAnswer { array, errors });
            return;
        }
        let j = self.joining.get_or_insert_with(Joining::default);
        j.errors += errors;
        match array {
            Some(a) => j.arrays.push(a),
            None => j.failed = true,
        }
        if joins_next {
            return;
        }
        let j = self.joining.take().expect("joining");
        let array = if j.failed {
            None
        } else {
            entry.payload.join(j.arrays)
        };
        let errors = if array.is_none() && !j.failed {
            // Could not be joined: the batch fails, one error more.
            self.ready
                .push_back(Err(Box::new(RunError::Arrow(ArrowError::Internal(
                    "the parts of a split batch do not join",
                )))));
            j.errors + 1
        } else {
            j.errors
        };
        self.columns.push_back(ColumnAnswer { array, errors });
    }

    /// Queues row `row`'s own error in its place.
    fn fail_row(&mut self, row: u64, args: Row, error: RunError) {
        self.count_error(&error);
        self.ready
            .push_back(Err(Box::new(RowError::boxed(row, args, error))));
    }
}
