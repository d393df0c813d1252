//! The scheduler of coil-host: it cuts rows into batches, picks an
//! executor for each, keeps two in flight per executor, takes answers back
//! in order, and recovers from broken executors and from a fall-back to
//! process mode without losing or repeating a row.
//!
//! The scheduler ([`Scheduler`]) drives executors through two small traits,
//! [`Executors`] (a runner's pools) and [`Leased`] (one leased executor), so
//! its unit tests run it against fakes that answer, fail, die and fall
//! back on cue. Along a batch's path:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the core: buffer, pick an executor, dispatch, collect the oldest answer |
//! | `batch.rs` | a batch: its [`State`], its payload (rows or columns, the only place that knows which), its size |
//! | `deliver.rs` | answers and errors into the ready queue, in row order; column answers |
//! | `recover.rs` | a broken executor, a split batch, moving off a retired pool |

mod batch;
mod deliver;
mod recover;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coil_ipc::{Row, Value};
use coil_proto::{Batch, Times};

use crate::config::Tuning;
use crate::error::Direction;
use crate::link::{Reply, Results};
use crate::metrics::{BatchRecord, Counters};
use crate::{ExecutionMode, RunError, UdfKind};

pub(crate) use batch::{batch_rows, concat};
use batch::{InFlight, Payload, State, DEPTH};
use deliver::{ColumnAnswer, Joining};
use recover::with_rows;

/// What the scheduler needs from the executors it drives: a runner's pools
/// for real, a fake in tests.
pub(crate) trait Executors {
    /// A leased executor.
    type Lease: Leased;
    /// The runner's configuration, parsed.
    fn tuning(&self) -> &Tuning;
    /// The runner's counters.
    fn counters(&self) -> &Counters;
    /// The mode new work runs in.
    fn mode(&self) -> ExecutionMode;
    /// The UDF's kind.
    fn kind(&self) -> UdfKind;
    /// Rows in the next batch.
    fn batch_size(&self) -> usize;
    /// Rows in the next column batch.
    fn column_batch_size(&self) -> usize {
        self.batch_size()
    }
    /// The largest batch, in bytes.
    fn max_payload(&self) -> usize;
    /// An idle executor of the active pool; waits for one if `wait`.
    fn lease(&self, wait: bool) -> Option<Self::Lease>;
    /// Whether `lease` is of the active pool (not of one retired by a
    /// fall-back).
    fn is_active(&self, lease: &Self::Lease) -> bool;
    /// Moves new work to process mode for good: the UDF imports `module`,
    /// which cannot load in a sub-interpreter.
    fn fall_back(&self, module: &str) -> Result<(), RunError>;
}

/// One leased executor, as the scheduler drives it.
pub(crate) trait Leased {
    /// Its slot, for log lines.
    fn id(&self) -> usize;
    /// Puts a batch into the executor's request ring: waiting up to `wait`
    /// for room when `alone` (nothing else of ours ahead of it there, so
    /// the executor is reading), else without waiting. `Ok(false)`: no room
    /// now (or the batch must travel in pieces, which only a batch `alone`
    /// may).
    fn send_batch(
        &mut self,
        payload: &[u8],
        columnar: bool,
        alone: bool,
        wait: Duration,
    ) -> Result<bool, RunError>;
    /// The answer to batch `seq` (rows `rows`), the next one this executor
    /// sends; waits until `deadline` if `wait`.
    fn answer(
        &mut self,
        seq: u64,
        rows: Range<u64>,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
        wait: bool,
    ) -> Reply;
    /// The executor broke: kill it and start a replacement.
    fn replace(&mut self, why: &RunError);
    /// The executor broke and its pool is retired: kill it, no replacement.
    fn discard(&mut self, why: &RunError);
    /// What the executor takes column batches through besides its ring.
    fn hand_off(&mut self) -> HandOff {
        HandOff::default()
    }
}

/// What a leased executor takes column batches through besides its ring:
/// an executor thread's shelf (the columns themselves), a worker
/// process's arena (their fixed-width values, copied once).
#[derive(Debug, Clone, Default)]
pub(crate) struct HandOff {
    /// An executor thread's shelf.
    pub(crate) shelf: Option<std::sync::Arc<coil_proto::Shelf>>,
    /// A worker process's arena.
    pub(crate) arena: Option<coil_ipc::Arena>,
}

/// The scheduler behind a [`RowStream`](crate::RowStream) and an
/// [`ArrowStream`](crate::ArrowStream), over any [`Executors`].
pub(crate) struct Scheduler<E: Executors> {
    pub(crate) executors: E,
    leases: Vec<E::Lease>,
    flight: VecDeque<InFlight>,
    /// Answers in row order; errors boxed to keep the queue's items small.
    ready: VecDeque<Result<Value, Box<RunError>>>,
    /// What each column batch came back as, in order (its errors go to
    /// `ready`).
    columns: VecDeque<ColumnAnswer>,
    /// The answers so far of the parts of a column batch that was split
    /// (after its executor broke), to be joined into its one answer.
    joining: Option<Joining>,
    buffer: Vec<Row>,
    buffer_since: Option<Instant>,
    next_row: u64,
}

impl<E: Executors> Scheduler<E> {
    pub(crate) fn new(executors: E) -> Self {
        Scheduler {
            executors,
            leases: Vec::new(),
            flight: VecDeque::new(),
            ready: VecDeque::new(),
            columns: VecDeque::new(),
            joining: None,
            buffer: Vec::new(),
            buffer_since: None,
            next_row: 0,
        }
    }

    pub(crate) fn push(&mut self, row: Row) {
        if self.buffer.is_empty() {
            self.buffer_since = Some(Instant::now());
        }
        self.buffer.push(row);
        if self.buffer.len() >= self.executors.batch_size() || self.overdue() {
            self.flush();
        }
    }

    fn overdue(&self) -> bool {
        let wait = self.executors.tuning().bundle_time;
        self.buffer_since.is_some_and(|t| t.elapsed() >= wait)
    }

    pub(crate) fn flush(&mut self) {
        if !self.buffer.is_empty() {
            let mut rows = std::mem::take(&mut self.buffer);
            self.buffer_since = None;
            self.send_rows(&rows);
            rows.clear();
            self.buffer = rows;
        }
    }

    pub(crate) fn rows_pushed(&self) -> u64 {
        self.next_row + self.buffer.len() as u64
    }

    pub(crate) fn run_all(&mut self, rows: &[Row]) -> Result<Vec<Value>, RunError> {
        let mut out = Vec::with_capacity(rows.len());
        self.run_each(rows, |r| {
            out.push(r?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs `rows`, handing each result (or error) to `take` in order;
    /// stops at the first error `take` returns.
    pub(crate) fn run_each(
        &mut self,
        rows: &[Row],
        take: impl FnMut(Result<Value, RunError>) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        self.run_batches(
            rows.len(),
            false,
            |s, range| s.send_rows(&rows[range]),
            take,
        )
    }

    /// Runs `total` rows, cut into batches of the current batch size (of a
    /// column batch if `columnar`) that `send` sends (rows `range` of the
    /// input), handing each result (or error) to `take` in order; stops at
    /// the first error `take` returns.
    pub(crate) fn run_batches(
        &mut self,
        total: usize,
        columnar: bool,
        mut send: impl FnMut(&mut Self, Range<usize>),
        mut take: impl FnMut(Result<Value, RunError>) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        let mut at = 0;
        // The call ends at its first failed batch: once one has failed
        // (other than a row alone), send nothing more (a broken executor's
        // replacement is not started again for every later batch).
        while at < total
            && !self.flight.iter().any(|e| match &e.state {
                State::Failed(e) => e.row_error().is_none(),
                _ => false,
            })
        {
            let size = if columnar {
                self.executors.column_batch_size()
            } else {
                self.executors.batch_size()
            };
            let n = size.min(total - at);
            send(self, at..at + n);
            at += n;
            while let Some(v) = self.ready.pop_front() {
                take(v.map_err(|e| *e))?;
            }
        }
        while let Some(v) = self.pull() {
            take(v)?;
        }
        Ok(())
    }

    pub(crate) fn try_pull(&mut self) -> Option<Result<Value, RunError>> {
        if self.overdue() {
            self.flush();
        }
        while self.ready.is_empty() && self.collect_oldest(false) {}
        self.ready.pop_front().map(|r| r.map_err(|e| *e))
    }

    pub(crate) fn pull(&mut self) -> Option<Result<Value, RunError>> {
        if self.ready.is_empty() && self.flight.is_empty() {
            self.flush();
        }
        while self.ready.is_empty() && !self.flight.is_empty() {
            self.collect_oldest(true);
        }
        self.ready.pop_front().map(|r| r.map_err(|e| *e))
    }

    /// Sends `rows` as one batch (its failure, if any, is queued in order).
    fn send_rows(&mut self, rows: &[Row]) {
        let capacity = coil_proto::SEQ_LEN + coil_ipc::encoded_len(rows);
        self.send_payload(rows.len(), Payload::rows(capacity), |seq, out| {
            Batch::encode(seq, rows, out).map_err(|e| e.to_string())
        });
    }

    /// Sends `columns` (Arrow arrays, `rows` long) as one batch in a
    /// column frame.
    /// Its results come back as one array of `result_type`.
    pub(crate) fn send_columns(
        &mut self,
        rows: usize,
        columns: &[arrow_array::ArrayRef],
        result_type: &arrow_schema::DataType,
    ) {
        // The frame is written when the batch goes to its executor, which
        // decides how (`Payload::wire`): only the checks encoding makes
        // happen now.
        let payload = Payload::columns(columns.to_vec(), rows, result_type.clone());
        self.send_payload(rows, payload, |_, _| {
            coil_proto::Columns::check(rows, columns).map_err(|e| e.to_string())
        });
    }

    /// Sends a batch of `rows` rows, which `encode` writes (with its
    /// sequence number) into `payload`.
    fn send_payload(
        &mut self,
        rows: usize,
        payload: Payload,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), String>,
    ) {
        let first = self.next_row;
        self.next_row += rows as u64;
        let range = first..self.next_row;
        let seq = self
            .executors
            .counters()
            .next_seq
            .fetch_add(1, Ordering::Relaxed);
        let mut entry = InFlight {
            lease: None,
            seq,
            rows: range.clone(),
            payload,
            queued: Instant::now(),
            attempts: 0,
            free_resends: 0,
            state: State::Unsent,
        };
        let encode_started = Instant::now();
        let encoded = encode(seq, entry.payload.buffer());
        self.executors.counters().record_sent(
            self.executors.mode(),
            rows as u64,
            encode_started.elapsed(),
        );
        let limit = self.executors.max_payload();
        if let Err(message) = encoded {
            entry.fail(RunError::BadRow { row: None, message });
        } else if entry.payload.bytes().len() > limit {
            entry.fail(RunError::TooLarge {
                direction: Direction::Batch,
                rows: range,
                bytes: entry.payload.bytes().len() as u64,
                limit: limit as u64,
            });
        }
        if matches!(entry.state, State::Failed(_)) {
            self.flight.push_back(entry);
            return;
        }
        entry.lease = Some(self.pick_lease());
        self.flight.push_back(entry);
        let at = self.flight.len() - 1;
        self.dispatch(at);
    }

    fn in_flight_on(&self, lease: usize) -> usize {
        self.flight.iter().filter(|e| e.pending_on(lease)).count()
    }

    /// A leased executor of the active pool with room for another batch:
    /// an idle one of ours, else another idle executor from the pool, else
    /// one of ours with one batch running, else wait for the oldest answer.
    fn pick_lease(&mut self) -> usize {
        if self.flight.iter().any(|e| match e.lease {
            Some(l) if e.pending() => !self.executors.is_active(&self.leases[l]),
            _ => false,
        }) {
            // The runner fell back to process mode since these were sent:
            // settle them before anything goes to the new pool, so that
            // every executor still answers in the stream's order.
            self.move_off_retired();
        }
        loop {
            // The stream's leases of the active pool: how many, and the one
            // with the fewest batches in flight (no allocation: this runs
            // for every batch).
            let ours =
                || (0..self.leases.len()).filter(|&l| self.executors.is_active(&self.leases[l]));
            let count = ours().count();
            let best = ours().min_by_key(|&l| self.in_flight_on(l));
            if let Some(l) = best.filter(|&l| self.in_flight_on(l) == 0) {
                return l;
            }
            if count < self.executors.tuning().workers {
                if let Some(lease) = self.executors.lease(count == 0) {
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

    /// Sends flight entry `at` to its executor; on failure the entry
    /// carries the error.
    fn dispatch(&mut self, mut at: usize) {
        let li = self.flight[at]
            .lease
            .expect("a batch is given an executor before it is sent");
        let timeout = self.executors.tuning().timeout;
        let limit = self.executors.max_payload();
        loop {
            let alone = self.flight.iter().take(at).all(|e| !e.pending_on(li));
            // Nothing of ours ahead of it: the executor is reading, so
            // waiting for room cannot deadlock.
            let wait = timeout.unwrap_or(Duration::from_secs(3600));
            let via = self.leases[li].hand_off();
            let e = &mut self.flight[at];
            let (seq, columnar) = (e.seq, e.payload.is_columnar());
            let started = Instant::now();
            let (bytes, sent) = match e.payload.wire(seq, &via) {
                Ok(wire) => wire,
                Err(message) => {
                    e.fail(RunError::BadRow { row: None, message });
                    return;
                }
            };
            if columnar {
                self.executors.counters().record_encode(started.elapsed());
            }
            if bytes.len() > limit {
                // A column batch's frame (written here) with more in it
                // than a message may hold.
                sent.undo();
                let error = RunError::TooLarge {
                    direction: Direction::Batch,
                    rows: e.rows.clone(),
                    bytes: bytes.len() as u64,
                    limit: limit as u64,
                };
                e.fail(error);
                return;
            }
            let result = self.leases[li].send_batch(bytes, columnar, alone, wait);
            if !matches!(result, Ok(true)) {
                // Not in the ring: nothing will take what it left outside.
                sent.undo();
            }
            match result {
                Ok(true) => {
                    self.flight[at].state = if alone {
                        State::Running {
                            since: Instant::now(),
                            deadline: timeout.map(|t| Instant::now() + t),
                        }
                    } else {
                        State::Queued
                    };
                    return;
                }
                Ok(false) => {
                    // The request ring is full behind our own batches (or
                    // this batch must travel in pieces): take the oldest
                    // answer first, so the executor can go on.
                    let before = self.flight.len();
                    self.collect_oldest(true);
                    at -= before - self.flight.len();
                    let e = &self.flight[at];
                    if !matches!(e.state, State::Unsent) || e.lease != Some(li) {
                        return; // answered, failed, or re-sent meanwhile
                    }
                }
                Err(e) => {
                    let rows = self.flight[at].rows.clone();
                    self.flight[at].fail(with_rows(e, rows));
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
        match front.state {
            State::Failed(_) => {
                let mut entry = self.flight.pop_front().expect("the oldest batch");
                let State::Failed(e) = std::mem::replace(&mut entry.state, State::Unsent) else {
                    unreachable!("matched above")
                };
                self.fail_batch(&entry, e);
                return true;
            }
            State::Done(_) => {
                let mut entry = self.flight.pop_front().expect("the oldest batch");
                let State::Done(done) = std::mem::replace(&mut entry.state, State::Unsent) else {
                    unreachable!("matched above")
                };
                let (values, times, decode, failed) = *done;
                let answered = self.answered(&entry, &values, &failed);
                self.record(answered, times, decode, entry.queued, Duration::ZERO);
                self.deliver(&entry, values, failed);
                return true;
            }
            State::Unsent => {
                // Every path that unsends a batch sends it again before
                // anything waits on it; this would wait forever.
                debug_assert!(false, "the oldest batch was never sent");
                let mut entry = self.flight.pop_front().expect("the oldest batch");
                entry.fail(RunError::BadRow {
                    row: None,
                    message: "internal error: a batch was never sent".into(),
                });
                self.flight.push_front(entry);
                return true;
            }
            State::Queued | State::Running { .. } => {}
        }
        let li = front.lease.expect("a pending batch has an executor");
        let (seq, rows, deadline) = (front.seq, front.rows.clone(), front.deadline());
        let timeout = self.executors.tuning().timeout;
        let columnar = front.payload.is_columnar();
        let reply = self.leases[li].answer(seq, rows.clone(), deadline, timeout, wait);
        match self.matching(li, columnar, rows, reply) {
            Reply::Pending => false,
            Reply::Interrupted => {
                // The executor thread went on past the timeout (the row
                // running failed alone, or none was running): the rest of
                // the batch gets a fresh timeout.
                if let State::Running { deadline, .. } = &mut self.flight[0].state {
                    *deadline = timeout.map(|t| Instant::now() + t);
                }
                true
            }
            Reply::Values(values, times, decode, failed) => {
                let entry = self.flight.pop_front().expect("the oldest batch");
                let transport = match entry.state {
                    State::Running { since, .. } => since
                        .elapsed()
                        .saturating_sub(decode)
                        .saturating_sub(times.total()),
                    _ => Duration::ZERO,
                };
                let answered = self.answered(&entry, &values, &failed);
                self.record(answered, times, decode, entry.queued, transport);
                self.deliver(&entry, values, failed);
                self.started_next_on(li);
                true
            }
            Reply::Error(RunError::SubInterpreterIncompatible { module, .. })
                if !self.executors.tuning().strict =>
            {
                // Found at call time: the UDF cannot run in a
                // sub-interpreter. The runner moves to process mode for
                // good; this batch (which produced nothing) runs again
                // there, with every other one still owed.
                self.started_next_on(li);
                match self.executors.fall_back(&module) {
                    Ok(()) => {
                        self.flight[0].unsent();
                        self.move_off_retired();
                    }
                    Err(e) => {
                        let entry = self.flight.pop_front().expect("the oldest batch");
                        self.fail_batch(&entry, Box::new(e));
                    }
                }
                true
            }
            Reply::Error(e) => {
                let entry = self.flight.pop_front().expect("the oldest batch");
                let e = Box::new(with_rows(e, entry.rows.clone()));
                self.fail_batch(&entry, e);
                self.started_next_on(li);
                true
            }
            Reply::Broken(e) => {
                self.broken(li, e);
                true
            }
        }
    }

    /// `reply`, or, if it holds results of the other kind than the batch
    /// (`columnar` or not) asked for, the executor broke the protocol.
    fn matching(&self, li: usize, columnar: bool, rows: Range<u64>, reply: Reply) -> Reply {
        match reply {
            Reply::Values(Results::Rows(_), ..) if columnar => {
                Reply::Broken(self.wrong_results(li, rows, coil_proto::Tag::Results))
            }
            Reply::Values(Results::Column(_), ..) if !columnar => {
                Reply::Broken(self.wrong_results(li, rows, coil_proto::Tag::ColumnResults))
            }
            reply => reply,
        }
    }

    fn wrong_results(&self, li: usize, rows: Range<u64>, tag: coil_proto::Tag) -> RunError {
        RunError::Protocol {
            worker: self.leases[li].id(),
            rows,
            error: crate::error::ProtocolError::Answer(coil_proto::ProtoError::Unexpected {
                tag,
                expected: "results of the batch's kind (rows or a column)",
            }),
        }
    }

    /// How many of a batch's `values` reach the caller as results: all of
    /// them (a row that failed alone holds a null), but under `fail` only
    /// those before the first failure.
    fn answered(&self, entry: &InFlight, values: &Results, failed: &[(u64, RunError)]) -> u64 {
        match failed.first() {
            Some((row, _)) if !self.executors.tuning().per_row => {
                row.saturating_sub(entry.rows.start)
            }
            _ => values.len() as u64,
        }
    }

    fn record(
        &self,
        rows: u64,
        times: Times,
        decode: Duration,
        queued: Instant,
        transport: Duration,
    ) {
        self.executors.counters().record_batch(
            self.executors.mode(),
            &BatchRecord {
                rows,
                latency: queued.elapsed(),
                decode,
                times,
                transport,
            },
        );
    }

    fn count_error(&self, e: &RunError) {
        let timeout = matches!(e, RunError::Timeout { .. });
        self.executors
            .counters()
            .record_error(self.executors.mode(), timeout);
    }

    /// The next batch on executor `li` starts running now: its timeout
    /// starts.
    fn started_next_on(&mut self, li: usize) {
        let timeout = self.executors.tuning().timeout;
        if let Some(next) = self.flight.iter_mut().find(|e| e.pending_on(li)) {
            let now = Instant::now();
            next.state = State::Running {
                since: now,
                deadline: timeout.map(|t| now + t),
            };
        }
    }
}

impl<E: Executors> Drop for Scheduler<E> {
    fn drop(&mut self) {
        // Take every outstanding answer, so each executor goes back to the
        // pool with empty rings.
        while !self.flight.is_empty() {
            self.collect_oldest(true);
        }
    }
}
