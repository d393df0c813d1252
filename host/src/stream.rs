//! A stream: rows in, results out, in order. The scheduler of coil-host:
//! it cuts rows into batches, picks an executor for each, keeps two in
//! flight per executor, takes answers back in order, and recovers from
//! broken executors and from a fall-back to process mode without losing or
//! repeating a row.
//!
//! The scheduler ([`Scheduler`]) drives executors through two small traits,
//! [`Executors`] (a runner's pools) and [`Leased`] (one leased executor), so
//! its unit tests run it against fakes that answer, fail, die and fall
//! back on cue.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use coil_ipc::{Row, Value};
use coil_proto::{Batch, Times};

use crate::config::Tuning;
use crate::error::Direction;
use crate::error::RowError;
use crate::link::{Reply, Results};
use crate::metrics::{BatchRecord, Counters};
use crate::pool::Lease;
use crate::runner::Runner;
use crate::{ExecutionMode, RunError, UdfKind};

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
}

impl<'r> Executors for &'r Runner {
    type Lease = Lease<'r>;

    fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn mode(&self) -> ExecutionMode {
        Runner::mode(self)
    }

    fn kind(&self) -> UdfKind {
        self.spec().kind
    }

    fn batch_size(&self) -> usize {
        Runner::batch_size(self)
    }

    fn max_payload(&self) -> usize {
        self.active().max_payload
    }

    fn lease(&self, wait: bool) -> Option<Lease<'r>> {
        self.active().lease(wait)
    }

    fn is_active(&self, lease: &Lease<'r>) -> bool {
        lease.is_of(self.active())
    }

    fn fall_back(&self, module: &str) -> Result<(), RunError> {
        Runner::fall_back(self, module).map(drop)
    }
}

impl Leased for Lease<'_> {
    fn id(&self) -> usize {
        Lease::id(self)
    }

    fn send_batch(
        &mut self,
        payload: &[u8],
        columnar: bool,
        alone: bool,
        wait: Duration,
    ) -> Result<bool, RunError> {
        let link = self.worker()?;
        if alone {
            link.send(payload, columnar, wait).map(|()| true)
        } else if link.needs_pieces(payload.len()) {
            Ok(false)
        } else {
            link.try_send(payload, columnar)
        }
    }

    fn answer(
        &mut self,
        seq: u64,
        rows: Range<u64>,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
        wait: bool,
    ) -> Reply {
        match self.worker() {
            Ok(link) => link.answer(seq, rows, deadline, timeout, wait),
            Err(e) => Reply::Error(e),
        }
    }

    fn replace(&mut self, why: &RunError) {
        Lease::replace(self, why)
    }

    fn discard(&mut self, why: &RunError) {
        Lease::discard(self, why)
    }
}

/// Batches in flight per worker: one running, one waiting in its ring, so
/// the worker never waits for the host between batches.
const DEPTH: usize = 2;

/// Names `rows` in an error raised before anyone knew which rows it would
/// cost (a replacement worker that did not start).
fn with_rows(e: RunError, rows: Range<u64>) -> RunError {
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
const FREE_RESENDS: u32 = 3;

/// Rows per batch until a batch has been answered and the time per row is
/// known (unless `python.fn-execution.bundle.size` is set): small, so that
/// a slow UDF's first batches do not give one worker all the work.
const FIRST_BATCH: usize = 4;

/// Where a batch is.
enum State {
    /// In no executor's ring: new, or to be sent again (its executor broke,
    /// or its pool was retired).
    Unsent,
    /// In its executor's ring behind another batch of ours.
    Queued,
    /// The oldest of ours on its executor, so running: since when, and when
    /// it times out.
    Running {
        since: Instant,
        deadline: Option<Instant>,
    },
    /// Answered before the older batches were (while the stream moved off
    /// a retired pool): the results, the executor's times, the host's
    /// decode time, the rows that failed alone; delivered in its turn.
    Done(Box<Answered>),
    /// Failed; the error is delivered in its rows' place.
    Failed(Box<RunError>),
}

/// A batch's answer, kept until its turn: results, the executor's times,
/// the host's decode time, the rows that failed alone.
type Answered = (Results, Times, Duration, Vec<(u64, RunError)>);

/// A batch of the stream, from being cut until its results are delivered.
struct InFlight {
    /// Index of its executor in the stream's leases.
    lease: usize,
    seq: u64,
    rows: Range<u64>,
    /// Kept so the batch can be sent again to a replacement executor.
    payload: Vec<u8>,
    /// The payload is a column frame, not rows.
    columnar: bool,
    /// A column batch's result type (as it travels): a part that fails
    /// alone answers with nulls of it.
    column_type: Option<arrow_schema::DataType>,
    /// A part of a column batch split after its executor broke: its answer
    /// is joined with the next entry's into the batch's one answer.
    joins_next: bool,
    /// When it was queued to be sent.
    queued: Instant,
    /// Times it was sent again after its executor died while running it.
    attempts: u32,
    /// Times it was sent again after its executor died before running it.
    free_resends: u32,
    state: State,
}

impl InFlight {
    /// In its executor's ring, not answered yet.
    fn pending(&self) -> bool {
        matches!(self.state, State::Queued | State::Running { .. })
    }

    /// To be sent (again), to an executor of the active pool.
    fn unsent(&mut self) {
        self.state = State::Unsent;
    }

    fn fail(&mut self, e: RunError) {
        self.state = State::Failed(Box::new(e));
    }

    /// Its rows' input values, decoded again from its payload (empty if it
    /// has none).
    fn args(&self) -> Vec<Row> {
        if self.columnar {
            // Column frames are not split: a failed row's input stays in
            // the caller's arrays.
            return Vec::new();
        }
        coil_ipc::decode_batch(&Batch::rows(&self.payload[..])).unwrap_or_default()
    }

    fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Running { deadline, .. } => deadline,
            _ => None,
        }
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
    scheduler: Scheduler<&'r Runner>,
}

impl<'r> RowStream<'r> {
    pub(crate) fn new(runner: &'r Runner) -> Self {
        RowStream {
            scheduler: Scheduler::new(runner),
        }
    }

    /// Adds a row; sends a batch when one is full (or has waited
    /// `bundle.time`). Blocks while every leased worker has two batches in
    /// flight, until the oldest is answered. A batch that fails yields its
    /// error from [`RowStream::pull`], in its rows' place.
    pub fn push(&mut self, row: Row) {
        self.scheduler.push(row)
    }

    /// Sends the rows buffered so far as a batch.
    pub fn flush(&mut self) {
        self.scheduler.flush()
    }

    /// The next result if it is back, without waiting (sends a partial
    /// batch that has waited `bundle.time`).
    pub fn try_pull(&mut self) -> Option<Result<Value, RunError>> {
        self.scheduler.try_pull()
    }

    /// The next result, waiting for it; sends any buffered rows first.
    /// `None` once every pushed row has been answered.
    pub fn pull(&mut self) -> Option<Result<Value, RunError>> {
        self.scheduler.pull()
    }

    /// How many rows the next batch holds: `python.fn-execution.bundle.size`
    /// if it was set; otherwise as many as the UDF runs in
    /// `python.fn-execution.bundle.target-time` at the time per row measured
    /// so far (at least 1, at most `bundle.size`), and 4 until a first
    /// batch has been measured. Small inputs and slow UDFs so make many
    /// small batches that spread over every worker; fast UDFs get full
    /// batches after the first few.
    pub fn batch_size(&self) -> usize {
        self.scheduler.executors.batch_size()
    }

    /// Rows pushed so far.
    pub fn rows_pushed(&self) -> u64 {
        self.scheduler.rows_pushed()
    }

    /// Runs all of `rows` and returns their results in order, or the first
    /// failed batch's error ([`Runner::call`]).
    pub(crate) fn run_all(mut self, rows: &[Row]) -> Result<Vec<Value>, RunError> {
        self.scheduler.run_all(rows)
    }

    /// Runs all of `rows` and returns a result or a row's own error for
    /// each, in order ([`Runner::call_each`]).
    pub(crate) fn run_each(
        mut self,
        rows: &[Row],
    ) -> Result<Vec<Result<Value, RowError>>, RunError> {
        let mut out = Vec::with_capacity(rows.len());
        self.scheduler.run_each(rows, |r| {
            match r {
                Ok(v) => out.push(Ok(v)),
                Err(RunError::Row(e)) => out.push(Err(*e)),
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        Ok(out)
    }
}

impl Iterator for RowStream<'_> {
    type Item = Result<Value, RunError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.pull()
    }
}

/// What a column batch came back as: its results (none if it failed as a
/// whole) and how many errors, of the next ones in the scheduler's ready
/// queue, are its own (its rows' under the per-row policy, else at most
/// one).
struct ColumnAnswer {
    array: Option<arrow_array::ArrayRef>,
    errors: usize,
}

/// The answers so far of a split column batch's parts.
#[derive(Default)]
struct Joining {
    arrays: Vec<arrow_array::ArrayRef>,
    errors: usize,
    /// A part failed as a whole: the batch has no results.
    failed: bool,
}

/// The scheduler behind a [`RowStream`], over any [`Executors`].
pub(crate) struct Scheduler<E: Executors> {
    executors: E,
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

    fn push(&mut self, row: Row) {
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

    fn flush(&mut self) {
        if !self.buffer.is_empty() {
            let mut rows = std::mem::take(&mut self.buffer);
            self.buffer_since = None;
            self.send_rows(&rows);
            rows.clear();
            self.buffer = rows;
        }
    }

    fn rows_pushed(&self) -> u64 {
        self.next_row + self.buffer.len() as u64
    }

    fn run_all(&mut self, rows: &[Row]) -> Result<Vec<Value>, RunError> {
        let mut out = Vec::with_capacity(rows.len());
        self.run_each(rows, |r| {
            out.push(r?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs `rows`, handing each result (or error) to `take` in order;
    /// stops at the first error `take` returns.
    fn run_each(
        &mut self,
        rows: &[Row],
        take: impl FnMut(Result<Value, RunError>) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        self.run_batches(rows.len(), |s, range| s.send_rows(&rows[range]), take)
    }

    /// Runs `total` rows, cut into batches of the current batch size that
    /// `send` sends (rows `range` of the input), handing each result (or
    /// error) to `take` in order; stops at the first error `take` returns.
    pub(crate) fn run_batches(
        &mut self,
        total: usize,
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
            let n = self.executors.batch_size().min(total - at);
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

    fn try_pull(&mut self) -> Option<Result<Value, RunError>> {
        if self.overdue() {
            self.flush();
        }
        while self.ready.is_empty() && self.collect_oldest(false) {}
        self.ready.pop_front().map(|r| r.map_err(|e| *e))
    }

    fn pull(&mut self) -> Option<Result<Value, RunError>> {
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
        self.send_payload(rows.len(), None, capacity, |seq, out| {
            Batch::encode(seq, rows, out).map_err(|e| e.to_string())
        });
    }

    /// The results of the column batches answered so far, in order.
    pub(crate) fn take_arrays(&mut self) -> Vec<arrow_array::ArrayRef> {
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
    pub(crate) fn next_column(&mut self) -> Option<(Option<arrow_array::ArrayRef>, Vec<RunError>)> {
        let answer = self.columns.pop_front()?;
        let errors = (0..answer.errors)
            .map(|_| match self.ready.pop_front() {
                Some(Err(e)) => *e,
                _ => RunError::Arrow("internal error: a column batch's error is missing".into()),
            })
            .collect();
        Some((answer.array, errors))
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
        // A first guess; the frame grows as it needs (a slice's arrays
        // report their whole column's memory, so that is no guide).
        let capacity = 64 + rows * 16 * columns.len();
        self.send_payload(rows, Some(result_type.clone()), capacity, |seq, out| {
            coil_proto::Columns::encode(seq, rows, columns, out).map_err(|e| e.to_string())
        });
    }

    /// Sends a batch of `rows` rows, which `encode` writes (with its
    /// sequence number) as rows or, with a `column_type` (its results'),
    /// as a column frame.
    fn send_payload(
        &mut self,
        rows: usize,
        column_type: Option<arrow_schema::DataType>,
        capacity: usize,
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
            lease: usize::MAX,
            seq,
            rows: range.clone(),
            payload: Vec::with_capacity(capacity),
            columnar: column_type.is_some(),
            column_type,
            joins_next: false,
            queued: Instant::now(),
            attempts: 0,
            free_resends: 0,
            state: State::Unsent,
        };
        let encode_started = Instant::now();
        let encoded = encode(seq, &mut entry.payload);
        self.executors.counters().record_sent(
            self.executors.mode(),
            rows as u64,
            encode_started.elapsed(),
        );
        let limit = self.executors.max_payload();
        if let Err(message) = encoded {
            entry.fail(RunError::BadRow { row: None, message });
        } else if entry.payload.len() > limit {
            entry.fail(RunError::TooLarge {
                direction: Direction::Batch,
                rows: range,
                bytes: entry.payload.len() as u64,
                limit: limit as u64,
            });
        }
        if matches!(entry.state, State::Failed(_)) {
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

    /// A leased executor of the active pool with room for another batch:
    /// an idle one of ours, else another idle executor from the pool, else
    /// one of ours with one batch running, else wait for the oldest answer.
    fn pick_lease(&mut self) -> usize {
        if self
            .flight
            .iter()
            .any(|e| e.pending() && !self.executors.is_active(&self.leases[e.lease]))
        {
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
        let li = self.flight[at].lease;
        let timeout = self.executors.tuning().timeout;
        loop {
            let alone = self
                .flight
                .iter()
                .take(at)
                .all(|e| e.lease != li || !e.pending());
            // Nothing of ours ahead of it: the executor is reading, so
            // waiting for room cannot deadlock.
            let wait = timeout.unwrap_or(Duration::from_secs(3600));
            let e = &self.flight[at];
            let sent = self.leases[li].send_batch(&e.payload, e.columnar, alone, wait);
            match sent {
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
                    if !matches!(e.state, State::Unsent) || e.lease != li {
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
                self.record(&values, times, decode, entry.queued, Duration::ZERO);
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
        let (li, seq, rows, deadline) =
            (front.lease, front.seq, front.rows.clone(), front.deadline());
        let timeout = self.executors.tuning().timeout;
        let columnar = front.columnar;
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
                self.record(&values, times, decode, entry.queued, transport);
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

    fn record(
        &self,
        values: &Results,
        times: Times,
        decode: Duration,
        queued: Instant,
        transport: Duration,
    ) {
        self.executors.counters().record_batch(
            self.executors.mode(),
            &BatchRecord {
                rows: values.len() as u64,
                latency: queued.elapsed(),
                decode,
                times,
                transport,
            },
        );
    }

    /// Moves the stream off executors of a pool the runner retired (it
    /// fell back to process mode): reads, in order, every answer those
    /// executors still owe, keeping results and errors in place; then sends
    /// every batch that must run again (the UDF could not run it in a
    /// sub-interpreter, or its executor broke) to the active pool, in
    /// order. Nothing that produced results runs twice, and nothing is
    /// dropped.
    fn move_off_retired(&mut self) {
        let timeout = self.executors.tuning().timeout;
        let strict = self.executors.tuning().strict;
        for i in 0..self.flight.len() {
            let li = self.flight[i].lease;
            if !self.flight[i].pending() || self.executors.is_active(&self.leases[li]) {
                continue;
            }
            // Entries are visited in order, so this is the oldest one its
            // executor owes: its answer is the next that executor sends.
            let (seq, rows) = (self.flight[i].seq, self.flight[i].rows.clone());
            let columnar = self.flight[i].columnar;
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
                        if entry.lease == li && entry.pending() {
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
                self.flight[at].lease = lease;
                self.dispatch(at);
            }
        }
    }

    /// Queues a batch's results in order. Under the per-row policy each
    /// failed row's own error, with its input (decoded again from the
    /// batch), takes its place; otherwise (an executor only reports rows
    /// that way for a per-row batch) the first failure is the batch's.
    fn deliver(&mut self, entry: &InFlight, results: Results, failed: Vec<(u64, RunError)>) {
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
                self.column_answer(entry.joins_next, Some(column), errors);
                return;
            }
        };
        if failed.is_empty() {
            self.ready.extend(values.into_iter().map(Ok));
            return;
        }
        if !self.executors.tuning().per_row {
            let (_, e) = failed.into_iter().next().expect("not empty");
            self.count_error(&e);
            self.ready.push_back(Err(Box::new(e)));
            return;
        }
        let mut args = entry.args();
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
    fn fail_batch(&mut self, entry: &InFlight, e: Box<RunError>) {
        // A row that failed alone (a part of a split column batch) still
        // answers: a null in its place.
        let nulls = match (&*e, &entry.column_type) {
            (RunError::Row(_), Some(t)) => Some(arrow_array::new_null_array(
                t,
                (entry.rows.end - entry.rows.start) as usize,
            )),
            _ => None,
        };
        self.count_error(&e);
        self.ready.push_back(Err(e));
        if entry.columnar {
            self.column_answer(entry.joins_next, nulls, 1);
        }
    }

    /// Records a column batch's (or a part's) answer: its results (`None`
    /// if it failed as a whole) and how many errors it queued; a part
    /// that `joins_next` waits for the rest of its batch.
    fn column_answer(
        &mut self,
        joins_next: bool,
        array: Option<arrow_array::ArrayRef>,
        errors: usize,
    ) {
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
            join_arrays(&j.arrays)
        };
        let errors = if array.is_none() && !j.failed {
            // Could not be joined: the batch fails, one error more.
            self.ready.push_back(Err(Box::new(RunError::Arrow(
                "internal error: the parts of a split batch do not join".into(),
            ))));
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
        // A column batch's parts are slices of its columns (decoded again
        // from its frame, which this host wrote); a row batch's, its rows.
        let (columnar, column_type, joins_next) =
            (front.columnar, front.column_type.clone(), front.joins_next);
        let columns = if columnar {
            match coil_proto::Columns::decode(&front.payload[..]) {
                Ok(d) if d.rows as u64 == rows.end - rows.start => Some(d.columns),
                _ => return Err(e),
            }
        } else {
            None
        };
        let mut args = if columnar {
            vec![Row::new(); (rows.end - rows.start) as usize]
        } else {
            front.args()
        };
        if args.len() as u64 != rows.end - rows.start {
            return Err(e);
        }
        let attempts = front.attempts;
        let mut entries: Vec<InFlight> = Vec::new();
        let mut part = |range: Range<u64>, args: &[Row], failed: Option<RunError>| {
            if range.is_empty() {
                return;
            }
            let seq = self
                .executors
                .counters()
                .next_seq
                .fetch_add(1, Ordering::Relaxed);
            let mut payload = Vec::new();
            let state = match failed {
                Some(error) => State::Failed(Box::new(RowError::boxed(
                    range.start,
                    args[0].clone(),
                    error,
                ))),
                None => {
                    match &columns {
                        Some(columns) => {
                            let at = (range.start - rows.start) as usize;
                            let n = (range.end - range.start) as usize;
                            let slices: Vec<arrow_array::ArrayRef> =
                                columns.iter().map(|c| c.slice(at, n)).collect();
                            coil_proto::Columns::encode(seq, n, &slices, &mut payload)
                                .expect("these columns encoded before");
                        }
                        None => Batch::encode(seq, args, &mut payload)
                            .expect("these rows encoded before"),
                    }
                    State::Unsent
                }
            };
            entries.push(InFlight {
                lease: li,
                seq,
                rows: range,
                payload,
                columnar,
                column_type: column_type.clone(),
                // Set below: every part's answer joins the next one's, up to
                // the last part, which ends the batch as the batch would.
                joins_next: false,
                queued: Instant::now(),
                attempts,
                free_resends: 0,
                state,
            });
        };
        let at = |r: u64| (r - rows.start) as usize;
        match named {
            Some(r) => {
                part(rows.start..r, &args[..at(r)], None);
                part(r..r + 1, &args[at(r)..=at(r)], Some(e));
                part(r + 1..rows.end, &args[at(r) + 1..], None);
            }
            None if rows.end - rows.start == 1 => part(rows.clone(), &args, Some(e)),
            None => {
                for (i, row) in args.iter_mut().enumerate() {
                    let r = rows.start + i as u64;
                    part(r..r + 1, std::slice::from_ref(row), None);
                }
            }
        }
        for entry in entries.iter_mut() {
            entry.joins_next = columnar;
        }
        if let Some(last) = entries.last_mut() {
            last.joins_next = joins_next;
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
        if let Some(next) = self
            .flight
            .iter_mut()
            .find(|e| e.lease == li && e.pending())
        {
            let now = Instant::now();
            next.state = State::Running {
                since: now,
                deadline: timeout.map(|t| now + t),
            };
        }
    }

    /// Executor `li` broke on the oldest batch: replace it; fail that batch
    /// (or retry it, if configured and the executor died; or, under the
    /// per-row policy, fail only the row to blame and send the rest again),
    /// and send the batches queued behind it, which got no answer, to the
    /// replacement.
    fn broken(&mut self, li: usize, e: RunError) {
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
                if matches!(self.flight[at].state, State::Unsent) {
                    self.dispatch(at);
                }
            }
        }
    }
}

/// Arrays of one type, one after another, as one (`None` if they cannot
/// be joined).
fn join_arrays(arrays: &[arrow_array::ArrayRef]) -> Option<arrow_array::ArrayRef> {
    let data: Vec<_> = arrays.iter().map(|a| a.to_data()).collect();
    let total = data.iter().map(|d| d.len()).sum();
    let mut out = arrow_data::transform::MutableArrayData::new(data.iter().collect(), false, total);
    for (i, d) in data.iter().enumerate() {
        out.try_extend(i, 0, d.len()).ok()?;
    }
    Some(arrow_array::make_array(out.freeze()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::rc::Rc;

    use crate::error::WorkerExit;
    use crate::Config;
    use coil_proto::PyErrorInfo;

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

    /// What a fake executor does with a batch.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Act {
        /// Answers every row with `x + 1`.
        Answer,
        /// The UDF raises on the batch's first row.
        Raise,
        /// Raises the sub-interpreter incompatibility on its first row.
        Incompatible,
        /// Dies running the batch: it and everything behind it get no
        /// answer.
        Die,
        /// Dies before it started the batch's first row.
        DieUnstarted,
        /// The row holding [`POISON`] raises (alone, in a per-row batch);
        /// other batches are answered.
        PoisonRaises,
        /// The row holding [`POISON`] kills its executor; the executor
        /// names it as the row running (for a vectorized UDF: the batch's
        /// first row, as a real executor does).
        PoisonKills,
        /// The row holding [`POISON`] runs past the timeout in a process:
        /// the executor is killed.
        PoisonHangs,
    }

    /// The value that [`Act::PoisonRaises`] and friends fail on.
    const POISON: i64 = 13;

    /// The fakes' shared state: what each pool does with which batch, and
    /// what happened.
    struct World {
        /// (pool, seq, attempt) → what to do; default `Answer`.
        script: Box<dyn Fn(usize, u64, u32) -> Act>,
        /// The pool new work goes to (0 until a fall-back, then 1).
        active: Cell<usize>,
        fallbacks: Cell<u32>,
        /// Leases handed out, per pool.
        leased: RefCell<[usize; 2]>,
        /// How often each (seq) was answered with results, and by which pool.
        computed: RefCell<HashMap<u64, Vec<usize>>>,
        /// Times each seq was run (any outcome).
        runs: RefCell<HashMap<u64, u32>>,
        replaced: Cell<u32>,
        discarded: Cell<u32>,
        /// The most batches one executor ever held at once.
        deepest: Cell<usize>,
    }

    struct Fake {
        world: Rc<World>,
        tuning: Tuning,
        counters: Counters,
        kind: UdfKind,
    }

    struct FakeLease {
        world: Rc<World>,
        kind: UdfKind,
        per_row: bool,
        id: usize,
        pool: usize,
        /// Batches in its ring, in order: (seq, rows, encoded payload).
        ring: VecDeque<(u64, Vec<Row>)>,
        dead: bool,
    }

    impl Executors for Fake {
        type Lease = FakeLease;
        fn tuning(&self) -> &Tuning {
            &self.tuning
        }
        fn counters(&self) -> &Counters {
            &self.counters
        }
        fn mode(&self) -> ExecutionMode {
            [ExecutionMode::SubInterpreter, ExecutionMode::Process][self.world.active.get()]
        }
        fn kind(&self) -> UdfKind {
            self.kind
        }
        fn batch_size(&self) -> usize {
            self.tuning.bundle_size
        }
        fn max_payload(&self) -> usize {
            self.tuning.max_message
        }
        fn lease(&self, wait: bool) -> Option<FakeLease> {
            let pool = self.world.active.get();
            let mut leased = self.world.leased.borrow_mut();
            if leased[pool] == self.tuning.workers {
                assert!(!wait, "the stream would wait forever for an executor");
                return None;
            }
            leased[pool] += 1;
            Some(FakeLease {
                world: Rc::clone(&self.world),
                kind: self.kind,
                per_row: self.tuning.per_row,
                id: leased[pool] - 1,
                pool,
                ring: VecDeque::new(),
                dead: false,
            })
        }
        fn is_active(&self, lease: &FakeLease) -> bool {
            lease.pool == self.world.active.get()
        }
        fn fall_back(&self, _module: &str) -> Result<(), RunError> {
            self.world.fallbacks.set(self.world.fallbacks.get() + 1);
            self.world.active.set(1);
            Ok(())
        }
    }

    impl Leased for FakeLease {
        fn id(&self) -> usize {
            self.id
        }
        fn send_batch(
            &mut self,
            payload: &[u8],
            _columnar: bool,
            _alone: bool,
            _wait: Duration,
        ) -> Result<bool, RunError> {
            assert!(!self.dead, "a batch sent to a dead executor");
            let seq = Batch::seq(payload).unwrap();
            let rows = coil_ipc::decode_batch(&Batch::rows(payload)).unwrap();
            self.ring.push_back((seq, rows));
            let deepest = self.world.deepest.get().max(self.ring.len());
            self.world.deepest.set(deepest);
            Ok(true)
        }
        fn answer(
            &mut self,
            seq: u64,
            rows: Range<u64>,
            _deadline: Option<Instant>,
            _timeout: Option<Duration>,
            _wait: bool,
        ) -> Reply {
            let (got, values) = self.ring.pop_front().expect("an answer owed");
            assert_eq!(got, seq, "executor {} answers in its own order", self.id);
            let attempt = {
                let mut runs = self.world.runs.borrow_mut();
                let n = runs.entry(seq).or_default();
                *n += 1;
                *n - 1
            };
            let error = || PyErrorInfo {
                type_name: "ImportError".into(),
                message: "module m does not support loading in subinterpreters".into(),
                traceback: String::new(),
            };
            let poisoned = values.iter().position(|r| r[0] == Value::Int(POISON));
            let mut act = (self.world.script)(self.pool, seq, attempt);
            let mut failed = Vec::new();
            match (act, poisoned) {
                (Act::PoisonRaises, Some(at)) if self.per_row => {
                    failed.push((
                        rows.start + at as u64,
                        RunError::Udf {
                            row: rows.start + at as u64,
                            error: error(),
                        },
                    ));
                    act = Act::Answer;
                }
                (Act::PoisonRaises, Some(at)) => {
                    return Reply::Error(RunError::Udf {
                        row: rows.start + at as u64,
                        error: error(),
                    })
                }
                (Act::PoisonKills, Some(_)) => act = Act::Die,
                (Act::PoisonHangs, Some(at)) => {
                    self.ring.clear();
                    self.dead = true;
                    return Reply::Broken(RunError::Timeout {
                        row: Some(rows.start + at as u64),
                        after: Duration::from_secs(1),
                        rows,
                    });
                }
                (Act::PoisonRaises | Act::PoisonKills | Act::PoisonHangs, _) => act = Act::Answer,
                _ => {}
            }
            match act {
                Act::PoisonRaises | Act::PoisonKills | Act::PoisonHangs => {
                    unreachable!("resolved above")
                }
                Act::Answer => {
                    self.world
                        .computed
                        .borrow_mut()
                        .entry(seq)
                        .or_default()
                        .push(self.pool);
                    let out = values
                        .iter()
                        .enumerate()
                        .map(|(i, r)| match r[0] {
                            _ if failed.iter().any(|(f, _)| *f == rows.start + i as u64) => {
                                Value::Null
                            }
                            Value::Int(x) => Value::Int(x + 1),
                            _ => Value::Null,
                        })
                        .collect();
                    Reply::Values(Results::Rows(out), Times::default(), Duration::ZERO, failed)
                }
                Act::Raise => Reply::Error(RunError::Udf {
                    row: rows.start,
                    error: error(),
                }),
                Act::Incompatible => Reply::Error(RunError::SubInterpreterIncompatible {
                    row: rows.start,
                    module: "m".into(),
                    error: error(),
                }),
                act @ (Act::Die | Act::DieUnstarted) => {
                    self.ring.clear();
                    self.dead = true;
                    Reply::Broken(RunError::WorkerDied {
                        worker: self.id,
                        exit: WorkerExit::Signal {
                            number: 9,
                            name: "SIGKILL",
                        },
                        row: (act == Act::Die).then(|| match (poisoned, self.kind) {
                            (Some(at), UdfKind::Scalar) => rows.start + at as u64,
                            _ => rows.start,
                        }),
                        rows,
                        stderr: String::new(),
                    })
                }
            }
        }
        fn replace(&mut self, _why: &RunError) {
            self.world.replaced.set(self.world.replaced.get() + 1);
            self.ring.clear();
            self.dead = false;
        }
        fn discard(&mut self, _why: &RunError) {
            self.world.discarded.set(self.world.discarded.get() + 1);
            self.ring.clear();
        }
    }

    fn fake(pairs: &[&str], script: impl Fn(usize, u64, u32) -> Act + 'static) -> Fake {
        let mut c = Config::default();
        for p in pairs {
            c.set_pair(p).unwrap();
        }
        Fake {
            world: Rc::new(World {
                script: Box::new(script),
                active: Cell::new(0),
                fallbacks: Cell::new(0),
                leased: RefCell::new([0, 0]),
                computed: RefCell::new(HashMap::new()),
                runs: RefCell::new(HashMap::new()),
                replaced: Cell::new(0),
                discarded: Cell::new(0),
                deepest: Cell::new(0),
            }),
            tuning: Tuning::of(&c),
            counters: Counters::default(),
            kind: UdfKind::Scalar,
        }
    }

    const ROWS: i64 = 100;

    /// Pushes 0..ROWS through a scheduler, then pulls every result or
    /// error, in order.
    fn drive(f: Fake) -> (Vec<Result<Value, RunError>>, Rc<World>) {
        let world = Rc::clone(&f.world);
        let mut s = Scheduler::new(f);
        let mut out = Vec::new();
        // Push everything first: the scheduler keeps up to two batches in
        // flight on each executor and takes answers only when it must.
        for x in 0..ROWS {
            s.push(vec![Value::Int(x)]);
        }
        while let Some(v) = s.pull() {
            out.push(v);
        }
        (out, world)
    }

    fn values(out: &[Result<Value, RunError>]) -> Vec<i64> {
        out.iter()
            .filter_map(|r| match r {
                Ok(Value::Int(x)) => Some(*x),
                _ => None,
            })
            .collect()
    }

    const TWO: &[&str] = &["python.worker-count=2", "python.fn-execution.bundle.size=3"];

    #[test]
    fn results_come_back_in_order_across_executors_two_batches_deep_at_most() {
        let (out, world) = drive(fake(TWO, |_, _, _| Act::Answer));
        assert_eq!(values(&out), (1..=ROWS).collect::<Vec<_>>());
        assert_eq!(out.len(), ROWS as usize);
        assert_eq!(*world.leased.borrow(), [2, 0], "both executors used");
        assert!(world.deepest.get() <= DEPTH, "{}", world.deepest.get());
    }

    #[test]
    fn a_udf_error_takes_the_place_of_its_batch_only() {
        let (out, _) = drive(fake(
            TWO,
            |_, seq, _| if seq == 5 { Act::Raise } else { Act::Answer },
        ));
        // Batch 5 holds rows 15..18: one error in their place.
        assert_eq!(out.len(), ROWS as usize - 3 + 1);
        assert!(
            matches!(out[15], Err(RunError::Udf { row: 15, .. })),
            "{:?}",
            out[15]
        );
        let want: Vec<i64> = (0..ROWS)
            .filter(|x| !(15..18).contains(x))
            .map(|x| x + 1)
            .collect();
        assert_eq!(values(&out), want);
    }

    #[test]
    fn a_dead_executor_fails_its_batch_and_what_it_held_runs_on_the_replacement() {
        let (out, world) = drive(fake(TWO, |_, seq, attempt| {
            if seq == 6 && attempt == 0 {
                Act::Die
            } else {
                Act::Answer
            }
        }));
        assert!(
            matches!(out[18], Err(RunError::WorkerDied { .. })),
            "{:?}",
            out[18]
        );
        let want: Vec<i64> = (0..ROWS)
            .filter(|x| !(18..21).contains(x))
            .map(|x| x + 1)
            .collect();
        assert_eq!(values(&out), want, "every other row, once, in order");
        assert_eq!(world.replaced.get(), 1);
        // Nothing answered twice.
        assert!(world.computed.borrow().values().all(|p| p.len() == 1));
    }

    #[test]
    fn with_one_retry_a_dead_executors_batch_runs_again() {
        let mut pairs = TWO.to_vec();
        pairs.push("python.fn-execution.retries=1");
        let (out, world) = drive(fake(&pairs, |_, seq, attempt| {
            if seq == 6 && attempt == 0 {
                Act::Die
            } else {
                Act::Answer
            }
        }));
        assert_eq!(values(&out), (1..=ROWS).collect::<Vec<_>>());
        assert_eq!(out.len(), ROWS as usize);
        assert_eq!(world.replaced.get(), 1);
        assert!(world.computed.borrow().values().all(|p| p.len() == 1));
    }

    #[test]
    fn a_fall_back_keeps_every_answer_and_reruns_only_what_produced_nothing() {
        // In pool 0 (sub-interpreters) batches from 8 on fail every other
        // time; pool 1 (processes) answers everything.
        let (out, world) = drive(fake(TWO, |pool, seq, _| {
            if pool == 0 && seq >= 8 && seq % 2 == 1 {
                Act::Incompatible
            } else {
                Act::Answer
            }
        }));
        assert_eq!(values(&out), (1..=ROWS).collect::<Vec<_>>());
        assert_eq!(out.len(), ROWS as usize);
        assert_eq!(world.fallbacks.get(), 1);
        let computed = world.computed.borrow();
        // Every batch produced results exactly once...
        assert_eq!(computed.len() as i64, (ROWS + 2) / 3);
        assert!(computed.values().all(|p| p.len() == 1), "{computed:?}");
        // ... the failed one in process mode, and everything after the
        // fall-back too; batches answered in sub-interpreters stayed there.
        assert_eq!(computed[&9], vec![1]);
        assert_eq!(computed[&0], vec![0]);
        // Batch 10 was in flight on the other executor when 9 failed: its
        // answer from the sub-interpreter was kept (read out of order and
        // delivered in its turn), not run again.
        assert_eq!(computed[&10], vec![0]);
        // Only batches already in flight when 9 failed (at most two per
        // executor: 9..=12) ran in sub-interpreters after it.
        let in_flight = 9 + 2 * DEPTH as u64 - 1;
        assert!(computed
            .iter()
            .all(|(seq, p)| *seq <= in_flight || p == &vec![1]));
    }

    #[test]
    fn in_strict_mode_an_incompatibility_is_the_batchs_error() {
        let mut pairs = TWO.to_vec();
        pairs.push("python.execution-mode.strict=true");
        let (out, world) = drive(fake(&pairs, |_, seq, _| {
            if seq == 4 {
                Act::Incompatible
            } else {
                Act::Answer
            }
        }));
        assert!(matches!(
            out[12],
            Err(RunError::SubInterpreterIncompatible { row: 12, .. })
        ));
        assert_eq!(world.fallbacks.get(), 0);
        assert_eq!(out.len(), ROWS as usize - 3 + 1);
    }

    #[test]
    fn a_death_before_the_batch_started_does_not_spend_its_retries() {
        // No retries configured: a worker that died before it ran batch 6
        // does not cost batch 6 its answer.
        let (out, world) = drive(fake(TWO, |_, seq, attempt| {
            if seq == 6 && attempt == 0 {
                Act::DieUnstarted
            } else {
                Act::Answer
            }
        }));
        assert_eq!(values(&out), (1..=ROWS).collect::<Vec<_>>());
        assert_eq!(world.replaced.get(), 1);
        // ... but a worker that always dies at once ends in an error, after
        // a bounded number of free resends.
        let (out, world) = drive(fake(TWO, |_, seq, _| {
            if seq == 6 {
                Act::DieUnstarted
            } else {
                Act::Answer
            }
        }));
        assert!(
            matches!(out[18], Err(RunError::WorkerDied { row: None, .. })),
            "{:?}",
            out[18]
        );
        assert_eq!(world.runs.borrow()[&6], FREE_RESENDS + 1);
        assert_eq!(out.len(), ROWS as usize - 3 + 1);
    }

    const PER_ROW: &[&str] = &[
        "python.worker-count=2",
        "python.fn-execution.bundle.size=10",
        "python.fn-execution.on-error=skip",
    ];

    /// Checks that every row but [`POISON`]'s was answered once, in order,
    /// and that the poisoned row's own error, with its input, holds its
    /// place; returns that error.
    fn only_the_poisoned_row_failed(out: &[Result<Value, RunError>]) -> &RunError {
        assert_eq!(out.len(), ROWS as usize, "one item per row");
        for (x, r) in out.iter().enumerate() {
            if x as i64 != POISON {
                assert!(
                    matches!(r, Ok(Value::Int(v)) if *v == x as i64 + 1),
                    "row {x}: {r:?}"
                );
            }
        }
        match &out[POISON as usize] {
            Err(RunError::Row(e)) => {
                assert_eq!(e.row, POISON as u64);
                assert_eq!(e.args, vec![Value::Int(POISON)]);
                &e.error
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn per_row_a_udf_error_fails_its_row_alone() {
        let (out, world) = drive(fake(PER_ROW, |_, _, _| Act::PoisonRaises));
        let e = only_the_poisoned_row_failed(&out);
        assert!(matches!(e, RunError::Udf { row: 13, .. }), "{e:?}");
        assert_eq!(world.replaced.get(), 0);
        // Under `fail`, the same error is its batch's (rows 10..20).
        let mut pairs = PER_ROW.to_vec();
        pairs.pop();
        let (out, _) = drive(fake(&pairs, |_, _, _| Act::PoisonRaises));
        assert_eq!(out.len(), ROWS as usize - 10 + 1);
        assert!(matches!(out[10], Err(RunError::Udf { row: 13, .. })));
    }

    #[test]
    fn per_row_a_death_fails_only_the_row_running_and_the_rest_run_again() {
        let (out, world) = drive(fake(PER_ROW, |_, _, _| Act::PoisonKills));
        let e = only_the_poisoned_row_failed(&out);
        assert!(
            matches!(e, RunError::WorkerDied { row: Some(13), .. }),
            "{e:?}"
        );
        assert_eq!(world.replaced.get(), 1, "the poisoned row ran once");
        // With a retry, the row runs twice (and kills twice) first.
        let mut pairs = PER_ROW.to_vec();
        pairs.push("python.fn-execution.retries=1");
        let (out, world) = drive(fake(&pairs, |_, _, _| Act::PoisonKills));
        only_the_poisoned_row_failed(&out);
        assert_eq!(world.replaced.get(), 2);
    }

    #[test]
    fn per_row_a_timeout_fails_only_the_row_running() {
        let (out, world) = drive(fake(PER_ROW, |_, _, _| Act::PoisonHangs));
        let e = only_the_poisoned_row_failed(&out);
        assert!(
            matches!(e, RunError::Timeout { row: Some(13), .. }),
            "{e:?}"
        );
        assert_eq!(world.replaced.get(), 1);
    }

    #[test]
    fn per_row_a_vectorized_batch_that_breaks_its_executor_runs_row_by_row() {
        let mut f = fake(PER_ROW, |_, _, _| Act::PoisonKills);
        f.kind = UdfKind::Vectorized;
        let (out, world) = drive(f);
        let e = only_the_poisoned_row_failed(&out);
        assert!(matches!(e, RunError::WorkerDied { .. }), "{e:?}");
        // Once with its batch, once alone.
        assert_eq!(world.replaced.get(), 2);
    }
}
