//! The runner: one API for every execution mode.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

use coil_ipc::{encode_batch, Row, Value};
use coil_worker::protocol;
use coil_worker::UdfSpec;
use crossbeam_channel::Receiver;

use crate::pool::{Job, ProcessPool, Settings, WorkerCommand};
use crate::{Config, ExecutionMode, RunError, StartError};

/// Runs a Python UDF over rows, in the mode the configuration chooses.
/// Results come back in input order. Safe to share between threads: calls
/// from many threads run on the workers in parallel.
///
/// # Examples
///
/// ```no_run
/// use coil_host::{Config, Runner, UdfSpec};
/// use coil_host::ipc::Value;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::builder().set("python.worker-count", "2")?.build();
/// let runner = Runner::new(&config, UdfSpec::new("udfs/inc.py:inc"))?;
/// let out = runner.call(&[vec![Value::Int(1)], vec![Value::Int(2)]])?;
/// assert_eq!(out, vec![Value::Int(2), Value::Int(3)]);
/// # Ok(()) }
/// ```
pub struct Runner {
    pool: ProcessPool,
    config: Config,
    spec: UdfSpec,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("mode", &self.config.execution_mode())
            .field("udf", &self.spec.target)
            .finish()
    }
}

impl Runner {
    /// Starts a runner for `spec`, finding the worker program with
    /// [`WorkerCommand::locate`].
    ///
    /// # Errors
    ///
    /// [`StartError`]: the worker program is missing, the UDF does not load
    /// (with its Python traceback), the mode is not available.
    pub fn new(config: &Config, spec: UdfSpec) -> Result<Runner, StartError> {
        Runner::with_worker(config, spec, WorkerCommand::locate)
    }

    /// Starts a runner whose worker processes run `command`.
    ///
    /// # Errors
    ///
    /// As [`Runner::new`].
    pub fn with_worker_command(
        config: &Config,
        spec: UdfSpec,
        command: WorkerCommand,
    ) -> Result<Runner, StartError> {
        Runner::with_worker(config, spec, || Ok(command))
    }

    fn with_worker(
        config: &Config,
        spec: UdfSpec,
        command: impl FnOnce() -> Result<WorkerCommand, StartError>,
    ) -> Result<Runner, StartError> {
        match config.execution_mode() {
            ExecutionMode::Process => {}
            m => {
                return Err(StartError::Unsupported(format!(
                    "python.execution-mode={m} is not available in this version of coil yet; use process"
                )))
            }
        }
        let pool = ProcessPool::start(Settings {
            config: config.clone(),
            spec: spec.clone(),
            command: command()?,
        })?;
        Ok(Runner {
            pool,
            config: config.clone(),
            spec,
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Worker processes replaced so far (crashed, hung or misbehaving).
    pub fn restarts(&self) -> u64 {
        self.pool.counters.restarts.load(Ordering::Relaxed)
    }

    /// Runs `rows` and returns one result per row, in order: the UDF's
    /// value for scalar and vectorized UDFs, a list of rows (each a list)
    /// for table UDFs. The rows are split into batches of
    /// `python.fn-execution.bundle.size` that run on the workers in
    /// parallel.
    ///
    /// # Errors
    ///
    /// The first batch's error, in row order ([`RunError`]).
    pub fn call(&self, rows: &[Row]) -> Result<Vec<Value>, RunError> {
        let mut stream = self.stream();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            stream.push(row.clone())?;
            while let Some(v) = stream.try_pull() {
                out.push(v?);
            }
        }
        while let Some(v) = stream.pull() {
            out.push(v?);
        }
        Ok(out)
    }

    /// A stream: push rows, pull results in order. Rows are sent in batches
    /// of `python.fn-execution.bundle.size`, or after
    /// `python.fn-execution.bundle.time` if fewer arrive; pushing blocks
    /// when every worker is busy and results are not being pulled.
    pub fn stream(&self) -> RowStream<'_> {
        RowStream {
            runner: self,
            buffer: Vec::new(),
            buffer_since: None,
            next_row: 0,
            pending: VecDeque::new(),
            ready: VecDeque::new(),
            window: 2 * self.config.worker_count().max(1),
        }
    }

    fn submit(
        &self,
        rows: &[Row],
        first_row: u64,
    ) -> Result<Receiver<Result<Vec<Value>, RunError>>, RunError> {
        let seq = self.pool.counters.next_seq.fetch_add(1, Ordering::Relaxed);
        let range = first_row..first_row + rows.len() as u64;
        let mut payload = Vec::with_capacity(protocol::SEQ_LEN + coil_ipc::encoded_len(rows));
        protocol::put_seq(&mut payload, seq).expect("a Vec never fills");
        encode_batch(rows, &mut payload).map_err(|e| RunError::BadRow {
            row: None,
            message: e.to_string(),
        })?;
        if payload.len() > self.pool.max_payload {
            return Err(RunError::TooLarge {
                rows: range,
                bytes: payload.len(),
                limit: self.pool.max_payload,
            });
        }
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.pool.submit(Job {
            seq,
            rows: range,
            payload,
            reply,
        })?;
        Ok(answer)
    }
}

/// A batch in flight, or one that failed before it left.
enum Pending {
    Sent(Receiver<Result<Vec<Value>, RunError>>),
    Failed(RunError),
}

/// Rows in, results out, in order; see [`Runner::stream`].
///
/// A failed batch yields its error once in place of its rows' results, and
/// the stream goes on with the next batch.
pub struct RowStream<'r> {
    runner: &'r Runner,
    buffer: Vec<Row>,
    buffer_since: Option<Instant>,
    next_row: u64,
    pending: VecDeque<Pending>,
    ready: VecDeque<Result<Value, RunError>>,
    window: usize,
}

impl RowStream<'_> {
    /// Adds a row; sends a batch when one is full (or has waited
    /// `bundle.time`). Blocks while `2 × workers` batches are in flight,
    /// until the oldest is back.
    ///
    /// # Errors
    ///
    /// [`RunError::Closed`] if the runner is shut down.
    pub fn push(&mut self, row: Row) -> Result<(), RunError> {
        if self.buffer.is_empty() {
            self.buffer_since = Some(Instant::now());
        }
        self.buffer.push(row);
        if self.buffer.len() >= self.runner.config.bundle_size() || self.overdue() {
            self.send()?;
        }
        while self.pending.len() > self.window {
            self.collect_oldest(true);
        }
        Ok(())
    }

    fn overdue(&self) -> bool {
        self.buffer_since
            .is_some_and(|t| t.elapsed() >= self.runner.config.bundle_time())
    }

    /// Sends the rows buffered so far as a batch.
    ///
    /// # Errors
    ///
    /// [`RunError::Closed`] if the runner is shut down.
    pub fn flush(&mut self) -> Result<(), RunError> {
        if !self.buffer.is_empty() {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), RunError> {
        let rows = std::mem::take(&mut self.buffer);
        self.buffer_since = None;
        let first = self.next_row;
        self.next_row += rows.len() as u64;
        match self.runner.submit(&rows, first) {
            Ok(rx) => self.pending.push_back(Pending::Sent(rx)),
            Err(RunError::Closed) => return Err(RunError::Closed),
            Err(e) => self.pending.push_back(Pending::Failed(e)),
        }
        Ok(())
    }

    /// Moves the oldest batch's results (or its error) to `ready`; returns
    /// false if it is not back yet and `block` is false.
    fn collect_oldest(&mut self, block: bool) -> bool {
        let Some(front) = self.pending.front() else {
            return false;
        };
        let outcome = match front {
            Pending::Failed(_) => None,
            Pending::Sent(rx) if block => Some(rx.recv().unwrap_or(Err(RunError::Closed))),
            Pending::Sent(rx) => match rx.try_recv() {
                Ok(r) => Some(r),
                Err(crossbeam_channel::TryRecvError::Empty) => return false,
                Err(crossbeam_channel::TryRecvError::Disconnected) => Some(Err(RunError::Closed)),
            },
        };
        match (self.pending.pop_front().expect("front exists"), outcome) {
            (Pending::Failed(e), _) => self.ready.push_back(Err(e)),
            (Pending::Sent(..), Some(Ok(values))) => self.ready.extend(values.into_iter().map(Ok)),
            (Pending::Sent(..), Some(Err(e))) => self.ready.push_back(Err(e)),
            (Pending::Sent(..), None) => unreachable!("a sent batch has an outcome"),
        }
        true
    }

    /// The next result if it is back, without waiting (sends a partial
    /// batch that has waited `bundle.time`).
    pub fn try_pull(&mut self) -> Option<Result<Value, RunError>> {
        if self.overdue() && self.send().is_err() {
            return Some(Err(RunError::Closed));
        }
        if self.ready.is_empty() {
            self.collect_oldest(false);
        }
        self.ready.pop_front()
    }

    /// The next result, waiting for it; sends any buffered rows first.
    /// `None` once every pushed row has been answered.
    pub fn pull(&mut self) -> Option<Result<Value, RunError>> {
        if self.ready.is_empty() {
            if self.pending.is_empty() {
                if let Err(e) = self.flush() {
                    return Some(Err(e));
                }
            }
            self.collect_oldest(true);
        }
        self.ready.pop_front()
    }

    /// Rows pushed so far.
    pub fn rows_pushed(&self) -> u64 {
        self.next_row + self.buffer.len() as u64
    }
}

impl Iterator for RowStream<'_> {
    type Item = Result<Value, RunError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.pull()
    }
}
