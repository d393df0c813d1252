//! Rows in, results out, through a runner: [`RowStream`], and the adapters
//! that let the scheduler drive a [`Runner`]'s pools ([`Executors`]) and a
//! leased executor ([`Leased`]).

use std::ops::Range;
use std::time::{Duration, Instant};

use coil_ipc::{Row, Value};

use crate::config::Tuning;
use crate::error::RowError;
use crate::link::Reply;
use crate::metrics::Counters;
use crate::pool::Lease;
use crate::runner::Runner;
use crate::sched::{Executors, Leased, Scheduler};
use crate::{ExecutionMode, RunError, UdfKind};

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

    fn column_batch_size(&self) -> usize {
        Runner::column_batch_size(self)
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

    fn hand_off(&mut self) -> crate::sched::HandOff {
        match self.worker() {
            Ok(link) => crate::sched::HandOff {
                shelf: link.shelf().cloned(),
                arena: link.arena().cloned(),
            },
            Err(_) => crate::sched::HandOff::default(),
        }
    }
}

impl Runner {
    /// Runs `rows` and returns one result per row, in order: the UDF's
    /// value for scalar and vectorized UDFs, a list of rows (each a list)
    /// for table UDFs. The rows are split into batches (see
    /// [`RowStream::batch_size`]), spread over the idle workers.
    ///
    /// # Errors
    ///
    /// The first failed batch's error, in row order ([`RunError`]); with
    /// `python.fn-execution.on-error` = `skip` or `dead-letter`, the first
    /// failed row's ([`RunError::Row`]): use [`Runner::call_each`] or a
    /// stream to collect them and go on.
    pub fn call(&self, rows: &[Row]) -> Result<Vec<Value>, RunError> {
        self.stream().run_all(rows)
    }

    /// Runs `rows` and returns, for each row in order, its result or its
    /// own error: with `python.fn-execution.on-error` = `skip` or
    /// `dead-letter`, a row that fails (the UDF raised, timed out, killed
    /// its worker, or returned a value coil cannot hold) fails alone and
    /// every other row is answered. With `fail` (the default), as
    /// [`Runner::call`].
    ///
    /// # Errors
    ///
    /// What is not one row's fault: a worker that cannot be restarted, a
    /// batch too large, a broken protocol; with `fail`, the first failed
    /// batch's error.
    pub fn call_each(&self, rows: &[Row]) -> Result<Vec<Result<Value, RowError>>, RunError> {
        self.stream().run_each(rows)
    }

    /// A stream: push rows, pull results in order. Rows are sent in batches
    /// of `python.fn-execution.bundle.size`, or after
    /// `python.fn-execution.bundle.time` if fewer arrive. The stream leases
    /// idle workers as it needs them and gives them back when dropped.
    pub fn stream(&self) -> RowStream<'_> {
        RowStream::new(self)
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
