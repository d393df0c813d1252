//! A stream: rows in, results out, in order. The scheduler of coil-host:
//! it cuts rows into batches, picks an executor for each, keeps two in
//! flight per executor, takes answers back in order, and recovers from
//! broken executors and from a fall-back to process mode without losing or
//! repeating a row.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coil_ipc::{Row, Value};
use coil_proto::{Batch, Times};

use crate::error::Direction;
use crate::link::Reply;
use crate::metrics::BatchRecord;
use crate::pool::Lease;
use crate::runner::Runner;
use crate::RunError;

/// Batches in flight per worker: one running, one waiting in its ring, so
/// the worker never waits for the host between batches.
const DEPTH: usize = 2;

/// Rows per batch until a batch has been answered and the time per row is
/// known (unless `python.fn-execution.bundle.size` is set): small, so that
/// a slow UDF's first batches do not give one worker all the work.
const FIRST_BATCH: usize = 4;

/// A batch sent to a worker and not yet answered (or failed before it
/// could be sent).
struct InFlight {
    lease: usize,
    seq: u64,
    rows: Range<u64>,
    /// Kept so the batch can be sent again to a replacement worker.
    payload: Vec<u8>,
    /// Set once the batch is the oldest on its worker (it is running).
    deadline: Option<Instant>,
    /// When it started running (became the oldest on its worker).
    started: Option<Instant>,
    /// When it was queued to be sent.
    queued: Instant,
    attempts: u32,
    /// In its worker's request ring (until that worker is replaced).
    sent: bool,
    /// Its results, read before the older batches' were (when the stream
    /// moved off a retired pool): the results, the executor's times, the
    /// host's decode time.
    done: Option<(Vec<Value>, Times, Duration)>,
    failed: Option<RunError>,
}

impl InFlight {
    /// Sent to its worker and not answered yet.
    fn pending(&self) -> bool {
        self.sent && self.failed.is_none() && self.done.is_none()
    }

    /// To be sent (again), to a worker of the active pool.
    fn unsent(&mut self) {
        self.sent = false;
        self.deadline = None;
        self.started = None;
    }
}

/// Rows per batch: `bound` when `fixed` (the user set
/// `python.fn-execution.bundle.size`); otherwise the rows the executor runs
/// in `target` at `cost` per row, from 1 to `bound`, and [`FIRST_BATCH`]
/// while nothing has been measured.
pub(crate) fn batch_rows(
    bound: usize,
    fixed: bool,
    target: Duration,
    cost: Option<Duration>,
) -> usize {
    if fixed {
        return bound;
    }
    match cost {
        Some(cost) if !cost.is_zero() => {
            let rows = target.as_secs_f64() / cost.as_secs_f64();
            // `as` saturates: a huge quotient is usize::MAX, then clamped.
            (rows.round() as usize).clamp(1, bound)
        }
        _ => FIRST_BATCH.min(bound),
    }
}

/// Rows in, results out, in order; see [`Runner::stream`].
///
/// The stream drives its workers from the calling thread: a batch goes
/// straight into a worker's ring and its answer straight back, with no
/// hand-off to another host thread. A failed batch yields its error once in
/// place of its rows' results, and the stream goes on with the next batch.
pub struct RowStream<'r> {
    runner: &'r Runner,
    leases: Vec<Lease<'r>>,
    flight: VecDeque<InFlight>,
    /// Answers in row order; errors boxed to keep the queue's items small.
    ready: VecDeque<Result<Value, Box<RunError>>>,
    buffer: Vec<Row>,
    buffer_since: Option<Instant>,
    next_row: u64,
}

impl<'r> RowStream<'r> {
    pub(crate) fn new(runner: &'r Runner) -> Self {
        RowStream {
            runner,
            leases: Vec::new(),
            flight: VecDeque::new(),
            ready: VecDeque::new(),
            buffer: Vec::new(),
            buffer_since: None,
            next_row: 0,
        }
    }

    /// Adds a row; sends a batch when one is full (or has waited
    /// `bundle.time`). Blocks while every leased worker has two batches in
    /// flight, until the oldest is answered. A batch that fails yields its
    /// error from [`RowStream::pull`], in its rows' place.
    pub fn push(&mut self, row: Row) {
        if self.buffer.is_empty() {
            self.buffer_since = Some(Instant::now());
        }
        self.buffer.push(row);
        if self.buffer.len() >= self.batch_size() || self.overdue() {
            self.flush();
        }
    }

    fn overdue(&self) -> bool {
        self.buffer_since
            .is_some_and(|t| t.elapsed() >= self.runner.tuning.bundle_time)
    }

    /// Sends the rows buffered so far as a batch.
    pub fn flush(&mut self) {
        if !self.buffer.is_empty() {
            let mut rows = std::mem::take(&mut self.buffer);
            self.buffer_since = None;
            self.send_rows(&rows);
            rows.clear();
            self.buffer = rows;
        }
    }

    /// Sends `rows` as one batch (its failure, if any, is queued in order).
    fn send_rows(&mut self, rows: &[Row]) {
        let pool = self.runner.active();
        let first = self.next_row;
        self.next_row += rows.len() as u64;
        let range = first..self.next_row;
        let seq = self
            .runner
            .counters
            .next_seq
            .fetch_add(1, Ordering::Relaxed);
        let payload = Vec::with_capacity(coil_proto::SEQ_LEN + coil_ipc::encoded_len(rows));
        let mut entry = InFlight {
            lease: usize::MAX,
            seq,
            rows: range.clone(),
            payload,
            deadline: None,
            started: None,
            queued: Instant::now(),
            attempts: 0,
            sent: false,
            done: None,
            failed: None,
        };
        let encode_started = Instant::now();
        let encoded = Batch::encode(seq, rows, &mut entry.payload);
        self.runner
            .counters
            .record_sent(pool.mode(), rows.len() as u64, encode_started.elapsed());
        if let Err(e) = encoded {
            entry.failed = Some(RunError::BadRow {
                row: None,
                message: e.to_string(),
            });
        } else if entry.payload.len() > pool.max_payload {
            entry.failed = Some(RunError::TooLarge {
                direction: Direction::Batch,
                rows: range,
                bytes: entry.payload.len() as u64,
                limit: pool.max_payload as u64,
            });
        }
        if entry.failed.is_some() {
            self.flight.push_back(entry);
            return;
        }
        entry.lease = self.pick_lease();
        self.flight.push_back(entry);
        let at = self.flight.len() - 1;
        self.dispatch(at);
    }

    fn in_flight_on(&self, lease: usize) -> usize {
        self.flight
            .iter()
            .filter(|e| e.lease == lease && e.pending())
            .count()
    }

    /// A leased worker of the active pool with room for another batch: an
    /// idle one of ours, else another idle worker from the pool, else one
    /// of ours with one batch running, else wait for the oldest answer.
    fn pick_lease(&mut self) -> usize {
        let active = self.runner.active();
        if self
            .flight
            .iter()
            .any(|e| e.pending() && !self.leases[e.lease].is_of(active))
        {
            // The runner fell back to process mode since these were sent:
            // settle them before anything goes to the new pool, so that
            // every worker still answers in the stream's order.
            self.move_off_retired();
        }
        loop {
            let ours: Vec<usize> = (0..self.leases.len())
                .filter(|&l| self.leases[l].is_of(active))
                .collect();
            let best = ours.iter().copied().min_by_key(|&l| self.in_flight_on(l));
            if let Some(l) = best.filter(|&l| self.in_flight_on(l) == 0) {
                return l;
            }
            if ours.len() < self.runner.tuning.workers {
                if let Some(lease) = active.lease(ours.is_empty()) {
                    self.leases.push(lease);
                    return self.leases.len() - 1;
                }
            }
            if let Some(l) = best.filter(|&l| self.in_flight_on(l) < DEPTH) {
                return l;
            }
            self.collect_oldest(true);
        }
    }

    /// Sends flight entry `at` to its worker; on failure the entry carries
    /// the error.
    fn dispatch(&mut self, mut at: usize) {
        let li = self.flight[at].lease;
        let timeout = self.runner.tuning.timeout;
        loop {
            let first_on_worker = self
                .flight
                .iter()
                .take(at)
                .all(|e| e.lease != li || !e.pending());
            let sent = match self.leases[li].worker() {
                Err(e) => Err(e),
                // Pieces go only to a worker with nothing else of ours to
                // answer (it must read while we write): take answers first.
                Ok(w) if !first_on_worker && w.needs_pieces(self.flight[at].payload.len()) => {
                    Ok(false)
                }
                Ok(w) if first_on_worker => {
                    // Nothing of ours ahead of it: the worker is reading,
                    // so waiting for room cannot deadlock.
                    let wait = timeout.unwrap_or(Duration::from_secs(3600));
                    w.send(&self.flight[at].payload, wait).map(|()| true)
                }
                Ok(w) => w.try_send(&self.flight[at].payload),
            };
            match sent {
                Ok(true) => {
                    self.flight[at].sent = true;
                    if first_on_worker {
                        self.flight[at].deadline = timeout.map(|t| Instant::now() + t);
                        self.flight[at].started = Some(Instant::now());
                    }
                    return;
                }
                Ok(false) => {
                    // The request ring is full behind our own batches: take
                    // the oldest answer first, so the worker can go on.
                    let before = self.flight.len();
                    self.collect_oldest(true);
                    at -= before - self.flight.len();
                    let e = &self.flight[at];
                    if e.sent || e.failed.is_some() || e.lease != li {
                        return; // answered, failed, or re-sent meanwhile
                    }
                }
                Err(e) => {
                    self.flight[at].failed = Some(e);
                    return;
                }
            }
        }
    }

    /// Moves the oldest batch's results (or its error) to `ready`; returns
    /// false if it is not back yet and `wait` is false.
    fn collect_oldest(&mut self, wait: bool) -> bool {
        let Some(front) = self.flight.front() else {
            return false;
        };
        if front.failed.is_some() {
            let e = self
                .flight
                .pop_front()
                .and_then(|e| e.failed)
                .expect("a failed entry");
            self.count_error(&e);
            self.ready.push_back(Err(Box::new(e)));
            return true;
        }
        if front.done.is_some() {
            let entry = self.flight.pop_front().expect("the oldest batch");
            let (values, times, decode) = entry.done.expect("an answered entry");
            self.runner.counters.record_batch(
                self.runner.mode(),
                &BatchRecord {
                    rows: values.len() as u64,
                    latency: entry.queued.elapsed(),
                    decode,
                    times,
                    transport: Duration::ZERO,
                },
            );
            self.ready.extend(values.into_iter().map(Ok));
            return true;
        }
        let (li, seq, rows, deadline) =
            (front.lease, front.seq, front.rows.clone(), front.deadline);
        let timeout = self.runner.tuning.timeout;
        let answer = match self.leases[li].worker() {
            Ok(w) => w.answer(seq, rows, deadline, timeout, wait),
            Err(e) => Reply::Error(e),
        };
        match answer {
            Reply::Pending => false,
            Reply::Values(values, times, decode) => {
                let entry = self.flight.pop_front().expect("the oldest batch");
                let transport = entry.started.map_or(Duration::ZERO, |started| {
                    let round_trip = started.elapsed().saturating_sub(decode);
                    round_trip.saturating_sub(times.decode + times.python + times.encode)
                });
                self.runner.counters.record_batch(
                    self.runner.mode(),
                    &BatchRecord {
                        rows: values.len() as u64,
                        latency: entry.queued.elapsed(),
                        decode,
                        times,
                        transport,
                    },
                );
                self.ready.extend(values.into_iter().map(Ok));
                self.started_next_on(li);
                true
            }
            Reply::Error(RunError::SubInterpreterIncompatible { module, .. })
                if !self.runner.tuning.strict =>
            {
                // Found at call time: the UDF cannot run in a
                // sub-interpreter. The runner moves to process mode for
                // good; this batch (which produced nothing) runs again
                // there, with every other one still owed.
                self.started_next_on(li);
                match self.runner.fall_back(&module) {
                    Ok(_) => {
                        self.flight[0].unsent();
                        self.move_off_retired();
                    }
                    Err(e) => {
                        self.flight.pop_front();
                        self.count_error(&e);
                        self.ready.push_back(Err(Box::new(e)));
                    }
                }
                true
            }
            Reply::Error(e) => {
                self.flight.pop_front();
                self.count_error(&e);
                self.ready.push_back(Err(Box::new(e)));
                self.started_next_on(li);
                true
            }
            Reply::Broken(e) => {
                self.broken(li, e);
                true
            }
        }
    }

    /// Moves the stream off workers of a pool the runner retired (it fell
    /// back to process mode): reads, in order, every answer those workers
    /// still owe, keeping results and errors in place; then sends every
    /// batch that must run again (the UDF could not run it in a
    /// sub-interpreter, or its worker broke) to the active pool, in order.
    /// Nothing is run twice that produced results, and nothing is dropped.
    fn move_off_retired(&mut self) {
        let active = self.runner.active();
        let timeout = self.runner.tuning.timeout;
        let strict = self.runner.tuning.strict;
        for i in 0..self.flight.len() {
            let li = self.flight[i].lease;
            if !self.flight[i].pending() || self.leases[li].is_of(active) {
                continue;
            }
            // Entries are visited in order, so this is the oldest one its
            // worker owes: its answer is the next that worker sends.
            let (seq, rows, deadline) = {
                let e = &self.flight[i];
                (e.seq, e.rows.clone(), e.deadline)
            };
            let answer = match self.leases[li].worker() {
                Ok(w) => w.answer(seq, rows, deadline, timeout, true),
                Err(e) => Reply::Broken(e),
            };
            match answer {
                Reply::Values(values, times, decode) => {
                    self.flight[i].done = Some((values, times, decode));
                }
                Reply::Error(RunError::SubInterpreterIncompatible { .. }) if !strict => {
                    self.flight[i].unsent();
                }
                Reply::Broken(e) | Reply::Error(e @ RunError::Restart(_)) => {
                    // Its worker is gone: this and what it still held run
                    // again on the active pool.
                    for entry in self.flight.iter_mut().skip(i) {
                        if entry.lease == li && entry.pending() {
                            entry.unsent();
                        }
                    }
                    self.leases[li].discard(&e);
                    continue;
                }
                Reply::Error(e) => self.flight[i].failed = Some(e),
                Reply::Pending => self.flight[i].unsent(),
            }
            self.started_next_on(li);
        }
        let again: Vec<u64> = self
            .flight
            .iter()
            .filter(|e| !e.sent && e.failed.is_none() && e.done.is_none())
            .map(|e| e.seq)
            .collect();
        for seq in again {
            let lease = self.pick_lease();
            // Picking may have collected answers and moved the queue.
            if let Some(at) = self.flight.iter().position(|e| e.seq == seq) {
                self.flight[at].lease = lease;
                self.dispatch(at);
            }
        }
    }

    fn count_error(&self, e: &RunError) {
        let timeout = matches!(e, RunError::Timeout { .. });
        self.runner
            .counters
            .record_error(self.runner.mode(), timeout);
    }

    /// The next batch on worker `li` starts running now: its timeout starts.
    fn started_next_on(&mut self, li: usize) {
        let timeout = self.runner.tuning.timeout;
        if let Some(next) = self
            .flight
            .iter_mut()
            .find(|e| e.lease == li && e.pending())
        {
            next.deadline = timeout.map(|t| Instant::now() + t);
            next.started = Some(Instant::now());
        }
    }

    /// Worker `li` broke on the oldest batch: replace it; fail that batch
    /// (or retry it once, if configured and the worker died), and send the
    /// batches queued behind it, which got no answer, to the replacement.
    fn broken(&mut self, li: usize, e: RunError) {
        self.leases[li].replace(&e);
        let retry = matches!(e, RunError::WorkerDied { .. })
            && self.flight[0].attempts < self.runner.tuning.retries;
        if retry {
            self.flight[0].attempts += 1;
            tracing::warn!(
                worker = self.leases[li].id(),
                "retrying rows {}..{}",
                self.flight[0].rows.start,
                self.flight[0].rows.end
            );
        } else {
            self.flight[0].failed = Some(e);
        }
        let mut resend = Vec::new();
        for e in self
            .flight
            .iter_mut()
            .filter(|e| e.lease == li && e.pending())
        {
            e.unsent();
            resend.push(e.seq);
        }
        for seq in resend {
            // An earlier dispatch may have collected answers and moved the
            // queue: find the entry by its sequence number.
            if let Some(at) = self.flight.iter().position(|e| e.seq == seq) {
                if !self.flight[at].sent && self.flight[at].failed.is_none() {
                    self.dispatch(at);
                }
            }
        }
    }

    /// The next result if it is back, without waiting (sends a partial
    /// batch that has waited `bundle.time`).
    pub fn try_pull(&mut self) -> Option<Result<Value, RunError>> {
        if self.overdue() {
            self.flush();
        }
        while self.ready.is_empty() && self.collect_oldest(false) {}
        self.ready.pop_front().map(|r| r.map_err(|e| *e))
    }

    /// The next result, waiting for it; sends any buffered rows first.
    /// `None` once every pushed row has been answered.
    pub fn pull(&mut self) -> Option<Result<Value, RunError>> {
        if self.ready.is_empty() && self.flight.is_empty() {
            self.flush();
        }
        while self.ready.is_empty() && !self.flight.is_empty() {
            self.collect_oldest(true);
        }
        self.ready.pop_front().map(|r| r.map_err(|e| *e))
    }

    /// Runs all of `rows` and returns their results in order, or the first
    /// failed batch's error ([`Runner::call`]).
    pub(crate) fn run_all(mut self, rows: &[Row]) -> Result<Vec<Value>, RunError> {
        let mut out = Vec::with_capacity(rows.len());
        let mut rest = rows;
        while !rest.is_empty() {
            let (batch, after) = rest.split_at(self.batch_size().min(rest.len()));
            rest = after;
            self.send_rows(batch);
            while let Some(v) = self.ready.pop_front() {
                out.push(v.map_err(|e| *e)?);
            }
        }
        while let Some(v) = self.pull() {
            out.push(v?);
        }
        Ok(out)
    }

    /// How many rows the next batch holds: `python.fn-execution.bundle.size`
    /// if it was set; otherwise as many as the UDF runs in
    /// `python.fn-execution.bundle.target-time` at the time per row measured
    /// so far (at least 1, at most `bundle.size`), and 4 until a first
    /// batch has been measured. Small inputs and slow UDFs so make many
    /// small batches that spread over every worker; fast UDFs get full
    /// batches after the first few.
    pub fn batch_size(&self) -> usize {
        self.runner.batch_size()
    }

    /// Rows pushed so far.
    pub fn rows_pushed(&self) -> u64 {
        self.next_row + self.buffer.len() as u64
    }
}

impl Drop for RowStream<'_> {
    fn drop(&mut self) {
        // Take every outstanding answer, so each worker goes back to the
        // pool with empty rings.
        while !self.flight.is_empty() {
            self.collect_oldest(true);
        }
    }
}

impl Iterator for RowStream<'_> {
    type Item = Result<Value, RunError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.pull()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_sized_from_the_measured_time_per_row_unless_the_size_is_set() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        let ns = Duration::from_nanos;
        // Nothing measured yet: a small first batch, within the bound.
        assert_eq!(batch_rows(1000, false, ms(5), None), FIRST_BATCH);
        assert_eq!(batch_rows(4, false, ms(5), None), 4);
        // A ~1 ms UDF: five rows make 5 ms.
        assert_eq!(batch_rows(1000, false, ms(5), Some(ms(1))), 5);
        // Slower than the target: one row at a time.
        assert_eq!(batch_rows(1000, false, ms(5), Some(ms(80))), 1);
        // `x + 1`: the bound, as before adaptive sizing.
        assert_eq!(batch_rows(1000, false, ms(5), Some(ns(60))), 1000);
        assert_eq!(batch_rows(1000, false, ms(5), Some(us(10))), 500);
        assert_eq!(
            batch_rows(1000, false, ms(5), Some(Duration::ZERO)),
            FIRST_BATCH
        );
        // Set by the user: always that size.
        assert_eq!(batch_rows(1000, true, ms(5), Some(ms(1))), 1000);
        assert_eq!(batch_rows(7, true, ms(5), None), 7);
    }
}
