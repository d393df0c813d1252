//! Recovery: an executor that broke on the oldest batch (retry, replace,
//! or, under the per-row policy, split the batch so that only the row to
//! blame fails), and moving the stream off a pool the runner retired.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::batch::{InFlight, State};
use super::{Executors, Leased, Scheduler};
use crate::error::RowError;
use crate::link::Reply;
use crate::{RunError, UdfKind};

/// Names `rows` in an error raised before anyone knew which rows it would
/// cost (a replacement worker that did not start).
pub(super) fn with_rows(e: RunError, rows: Range<u64>) -> RunError {
    match e {
        RunError::Restart {
            attempts, source, ..
        } => RunError::Restart {
            rows,
            attempts,
            source,
        },
        other => other,
    }
}

/// Times a batch is sent again, without spending its retry budget, after
/// an executor died before it started the batch's first row.
pub(super) const FREE_RESENDS: u32 = 3;

impl<E: Executors> Scheduler<E> {
    /// Moves the stream off executors of a pool the runner retired (it
    /// fell back to process mode): reads, in order, every answer those
    /// executors still owe, keeping results and errors in place; then sends
    /// every batch that must run again (the UDF could not run it in a
    /// sub-interpreter, or its executor broke) to the active pool, in
    /// order. Nothing that produced results runs twice, and nothing is
    /// dropped.
    pub(super) fn move_off_retired(&mut self) {
        let timeout = self.executors.tuning().timeout;
        let strict = self.executors.tuning().strict;
        for i in 0..self.flight.len() {
            let li = match self.flight[i].lease {
                Some(li) if self.flight[i].pending() => li,
                _ => continue,
            };
            if self.executors.is_active(&self.leases[li]) {
                continue;
            }
            // Entries are visited in order, so this is the oldest one its
            // executor owes: its answer is the next that executor sends.
            let (seq, rows) = (self.flight[i].seq, self.flight[i].rows.clone());
            let columnar = self.flight[i].payload.is_columnar();
            let reply = loop {
                let deadline = self.flight[i].deadline();
                let reply = self.leases[li].answer(seq, rows.clone(), deadline, timeout, true);
                match self.matching(li, columnar, rows.clone(), reply) {
                    Reply::Interrupted => {
                        // Its executor goes on with the batch: wait again.
                        if let State::Running { deadline, .. } = &mut self.flight[i].state {
                            *deadline = timeout.map(|t| Instant::now() + t);
                        }
                    }
                    reply => break reply,
                }
            };
            match reply {
                Reply::Values(values, times, decode, failed) => {
                    self.flight[i].state = State::Done(Box::new((values, times, decode, failed)));
                }
                Reply::Interrupted => unreachable!("waited again above"),
                Reply::Error(RunError::SubInterpreterIncompatible { .. }) if !strict => {
                    self.flight[i].unsent();
                }
                Reply::Broken(e) | Reply::Error(e @ RunError::Restart { .. }) => {
                    // Its executor is gone: this and what it still held
                    // run again on the active pool.
                    for entry in self.flight.iter_mut().skip(i) {
                        if entry.pending_on(li) {
                            entry.unsent();
                        }
                    }
                    self.leases[li].discard(&e);
                    continue;
                }
                Reply::Error(e) => self.flight[i].fail(e),
                Reply::Pending => self.flight[i].unsent(),
            }
            self.started_next_on(li);
        }
        let again: Vec<u64> = self
            .flight
            .iter()
            .filter(|e| matches!(e.state, State::Unsent))
            .map(|e| e.seq)
            .collect();
        for seq in again {
            let lease = self.pick_lease();
            // Picking may have collected answers and moved the queue.
            if let Some(at) = self.flight.iter().position(|e| e.seq == seq) {
                self.flight[at].lease = Some(lease);
                self.dispatch(at);
            }
        }
    }

    /// Under the per-row policy, splits the oldest batch, whose executor
    /// broke with `e` while running it, so that only the row to blame
    /// fails: the row `e` names (for a vectorized UDF, which runs the whole
    /// batch at once, no row is to blame: every row goes alone, and fails
    /// alone if it breaks its executor again). The rows around it become
    /// new batches, unsent, on executor `li`; returns their sequence
    /// numbers, or `e` if it is not a row's fault.
    fn split_front(&mut self, li: usize, e: RunError) -> Result<Vec<u64>, RunError> {
        let named = match &e {
            RunError::Timeout { row, .. } => *row,
            RunError::WorkerDied { row: Some(r), .. } => Some(*r),
            _ => return Err(e),
        };
        let front = &self.flight[0];
        let rows = front.rows.clone();
        let named = named
            .filter(|r| rows.contains(r))
            .filter(|_| self.executors.kind() != UdfKind::Vectorized);
        // A batch's parts are its rows, or slices of its columns (decoded
        // again from its frame, which this host wrote).
        let len = (rows.end - rows.start) as usize;
        let Some(parts) = front.payload.parts(len) else {
            return Err(e);
        };
        let (attempts, joins_next) = (front.attempts, front.payload.joins_next());
        // The new batches' rows, and the error of the one that fails alone.
        let mut cuts: Vec<(Range<u64>, Option<RunError>)> = Vec::new();
        match named {
            Some(r) => {
                cuts.push((rows.start..r, None));
                cuts.push((r..r + 1, Some(e)));
                cuts.push((r + 1..rows.end, None));
            }
            None if len == 1 => cuts.push((rows.clone(), Some(e))),
            None => cuts.extend((rows.clone()).map(|r| (r..r + 1, None))),
        }
        cuts.retain(|(range, _)| !range.is_empty());
        let last = cuts.len().saturating_sub(1);
        let mut entries: Vec<InFlight> = Vec::with_capacity(cuts.len());
        for (i, (range, failed)) in cuts.into_iter().enumerate() {
            let seq = self
                .executors
                .counters()
                .next_seq
                .fetch_add(1, Ordering::Relaxed);
            let at = (range.start - rows.start) as usize..(range.end - rows.start) as usize;
            let state = match failed {
                Some(error) => State::Failed(Box::new(RowError::boxed(
                    range.start,
                    parts.arg(at.start),
                    error,
                ))),
                None => State::Unsent,
            };
            entries.push(InFlight {
                lease: Some(li),
                seq,
                rows: range,
                // Every part's answer joins the next one's, up to the last
                // part, which ends the batch as the batch would.
                payload: parts.cut(seq, at, i < last || joins_next),
                queued: Instant::now(),
                attempts,
                free_resends: 0,
                state,
            });
        }
        self.flight.pop_front();
        let unsent = entries
            .iter()
            .filter(|e| matches!(e.state, State::Unsent))
            .map(|e| e.seq)
            .collect();
        for entry in entries.into_iter().rev() {
            self.flight.push_front(entry);
        }
        Ok(unsent)
    }

    /// Executor `li` broke on the oldest batch: replace it; fail that batch
    /// (or retry it, if configured and the executor died; or, under the
    /// per-row policy, fail only the row to blame and send the rest again),
    /// and send the batches queued behind it, which got no answer, to the
    /// replacement.
    pub(super) fn broken(&mut self, li: usize, e: RunError) {
        self.leases[li].replace(&e);
        let mut resend = Vec::new();
        let front = &self.flight[0];
        // A death before the batch's first row started does not spend its
        // retry budget (the worker never ran it), up to a bound, so that a
        // worker that always dies at once still ends in an error.
        let unstarted = matches!(e, RunError::WorkerDied { row: None, .. })
            && front.free_resends < FREE_RESENDS;
        let retry = matches!(e, RunError::WorkerDied { .. })
            && (unstarted || front.attempts < self.executors.tuning().retries);
        if retry {
            if unstarted {
                self.flight[0].free_resends += 1;
            } else {
                self.flight[0].attempts += 1;
            }
            tracing::warn!(
                worker = self.leases[li].id(),
                "retrying rows {}..{}",
                self.flight[0].rows.start,
                self.flight[0].rows.end
            );
        } else if self.executors.tuning().per_row {
            match self.split_front(li, e) {
                Ok(parts) => resend = parts,
                Err(e) => self.flight[0].fail(e),
            }
        } else {
            self.flight[0].fail(e);
        }
        for e in self.flight.iter_mut().filter(|e| e.pending_on(li)) {
            e.unsent();
            resend.push(e.seq);
        }
        for seq in resend {
            // An earlier dispatch may have collected answers and moved the
            // queue: find the entry by its sequence number.
            if let Some(at) = self.flight.iter().position(|e| e.seq == seq) {
                if matches!(self.flight[at].state, State::Unsent) {
                    self.dispatch(at);
                }
            }
        }
    }
}
