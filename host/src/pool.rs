//! Process mode: a pool of `coil-worker` processes, each behind its own pair
//! of rings in a sealed memfd, each driven by one host thread.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coil_ipc::{
    BatchDecoder, ByteSource, Consumer, PidWatch, Producer, Region, RingPushError, RingRecvError,
    Value,
};
use coil_worker::protocol::{self, After, MessageError};
use coil_worker::{BatchTimes, PyErrorInfo, UdfSpec};

use crate::error::{RunError, StartError};
use crate::{Config, ExecutionMode};

/// How to start a worker process: a program and the arguments that come
/// before coil's own (`--fd`, `--udf`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The program.
    pub program: PathBuf,
    /// Arguments before coil's.
    pub args: Vec<OsString>,
}

impl WorkerCommand {
    /// Runs `program` with no extra arguments.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        WorkerCommand {
            program: program.into(),
            args: Vec::new(),
        }
    }

    /// Adds an argument before coil's.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Finds `coil-worker`: `$COIL_WORKER`, else next to the running
    /// program (or one directory up, for test binaries in `deps/`), else on
    /// `PATH`.
    ///
    /// # Errors
    ///
    /// [`StartError::WorkerNotFound`] naming the places looked at.
    pub fn locate() -> Result<WorkerCommand, StartError> {
        if let Some(p) = std::env::var_os("COIL_WORKER") {
            return Ok(WorkerCommand::new(p));
        }
        let mut looked = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            for dir in exe.ancestors().skip(1).take(2) {
                let candidate = dir.join("coil-worker");
                if candidate.is_file() {
                    return Ok(WorkerCommand::new(candidate));
                }
                looked.push(candidate.display().to_string());
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let candidate = dir.join("coil-worker");
                if candidate.is_file() {
                    return Ok(WorkerCommand::new(candidate));
                }
            }
        }
        looked.push("$PATH".into());
        Err(StartError::WorkerNotFound(format!(
            "looked at {}",
            looked.join(", ")
        )))
    }
}

/// What a pool needs to start workers.
pub(crate) struct Settings {
    /// The mode the workers run in (after any fallback).
    pub mode: ExecutionMode,
    pub config: Config,
    pub spec: UdfSpec,
    pub command: WorkerCommand,
    /// The runner's counters (shared with a fallback pool).
    pub counters: Arc<Counters>,
}

/// Counters shared by a pool's users.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub restarts: AtomicU64,
    pub batches: AtomicU64,
    pub next_seq: AtomicU64,
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub encode_ns: AtomicU64,
    pub decode_ns: AtomicU64,
    pub worker_decode_ns: AtomicU64,
    pub python_ns: AtomicU64,
    pub worker_encode_ns: AtomicU64,
    pub transport_ns: AtomicU64,
    /// The executor's time per row, nanoseconds as `f64` bits, smoothed
    /// over the answered batches (0: nothing measured yet). Sizes batches.
    pub row_cost: AtomicU64,
    pub histograms: Mutex<Histograms>,
}

impl Counters {
    pub fn add(counter: &AtomicU64, d: Duration) {
        counter.fetch_add(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }
}

/// Per-batch time distributions of a runner, in nanoseconds per batch
/// (HDR histograms, two significant digits, up to an hour).
#[derive(Debug, Clone)]
pub struct Histograms {
    /// From sending a batch to having its results.
    pub latency: hdrhistogram::Histogram<u64>,
    /// Host: encoding the batch.
    pub encode: hdrhistogram::Histogram<u64>,
    /// Host: decoding its results.
    pub decode: hdrhistogram::Histogram<u64>,
    /// Executor: decoding rows into Python objects.
    pub executor_decode: hdrhistogram::Histogram<u64>,
    /// Executor: calling the UDF.
    pub python: hdrhistogram::Histogram<u64>,
    /// Executor: encoding results.
    pub executor_encode: hdrhistogram::Histogram<u64>,
    /// Rings, wake-ups and waiting.
    pub transport: hdrhistogram::Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        let h = || {
            hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 2).expect("valid bounds")
        };
        Histograms {
            latency: h(),
            encode: h(),
            decode: h(),
            executor_decode: h(),
            python: h(),
            executor_encode: h(),
            transport: h(),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().clamp(1, 3_600_000_000_000) as u64
}

/// One answered batch, as the runner's metrics record it.
pub(crate) struct BatchRecord {
    pub rows: u64,
    pub latency: Duration,
    pub decode: Duration,
    pub times: BatchTimes,
    pub transport: Duration,
}

impl Counters {
    /// Counts an answered batch: the counters, the histograms, and the
    /// `metrics` facade (a no-op unless the host installed a recorder).
    pub fn record_batch(&self, mode: ExecutionMode, b: &BatchRecord) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        if b.rows > 0 {
            let executor = b.times.decode + b.times.python + b.times.encode;
            let cost = executor.as_nanos() as f64 / b.rows as f64;
            // Exponential smoothing: half the weight on the newest batch.
            // Racing updates from several streams may lose one sample; the
            // estimate stays a plausible cost either way.
            let old = f64::from_bits(self.row_cost.load(Ordering::Relaxed));
            let new = if old > 0.0 { (old + cost) / 2.0 } else { cost };
            self.row_cost
                .store(new.max(1.0).to_bits(), Ordering::Relaxed);
        }
        self.rows_out.fetch_add(b.rows, Ordering::Relaxed);
        Counters::add(&self.decode_ns, b.decode);
        Counters::add(&self.worker_decode_ns, b.times.decode);
        Counters::add(&self.python_ns, b.times.python);
        Counters::add(&self.worker_encode_ns, b.times.encode);
        Counters::add(&self.transport_ns, b.transport);
        {
            let mut h = self.histograms.lock().expect("histograms lock");
            let _ = h.latency.record(nanos(b.latency));
            let _ = h.decode.record(nanos(b.decode));
            let _ = h.executor_decode.record(nanos(b.times.decode));
            let _ = h.python.record(nanos(b.times.python));
            let _ = h.executor_encode.record(nanos(b.times.encode));
            let _ = h.transport.record(nanos(b.transport));
        }
        let m = mode.as_str();
        metrics::counter!("coil_rows_out_total", "mode" => m).increment(b.rows);
        metrics::counter!("coil_batches_total", "mode" => m).increment(1);
        for (part, d) in [
            ("latency", b.latency),
            ("decode", b.decode),
            ("executor_decode", b.times.decode),
            ("python", b.times.python),
            ("executor_encode", b.times.encode),
            ("transport", b.transport),
        ] {
            metrics::histogram!("coil_batch_seconds", "mode" => m, "part" => part)
                .record(d.as_secs_f64());
        }
    }

    /// The executor's measured time per row, if any batch was answered.
    pub fn row_cost(&self) -> Option<Duration> {
        let ns = f64::from_bits(self.row_cost.load(Ordering::Relaxed));
        (ns > 0.0).then(|| Duration::from_secs_f64(ns / 1e9))
    }

    /// Counts a batch sent: its rows and the time to encode it.
    pub fn record_sent(&self, mode: ExecutionMode, rows: u64, encode: Duration) {
        self.rows_in.fetch_add(rows, Ordering::Relaxed);
        Counters::add(&self.encode_ns, encode);
        let _ = self
            .histograms
            .lock()
            .expect("histograms lock")
            .encode
            .record(nanos(encode));
        let m = mode.as_str();
        metrics::counter!("coil_rows_in_total", "mode" => m).increment(rows);
        metrics::histogram!("coil_batch_seconds", "mode" => m, "part" => "encode")
            .record(encode.as_secs_f64());
    }

    /// Counts a failed batch.
    pub fn record_error(&self, mode: ExecutionMode, timeout: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("coil_errors_total", "mode" => mode.as_str()).increment(1);
        if timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("coil_timeouts_total", "mode" => mode.as_str()).increment(1);
        }
    }
}

/// One worker slot: a running worker, or a vacancy after a failed restart.
pub(crate) struct Slot {
    id: usize,
    worker: Option<Worker>,
}

/// The worker processes. Callers lease a worker, drive it from their own
/// thread (no hand-off to another thread on the way to Python and back),
/// and give it back; dropping the pool shuts every worker down.
pub(crate) struct Pool {
    settings: Settings,
    idle: Mutex<Vec<Slot>>,
    returned: Condvar,
    /// No new work: workers given back are shut down (the runner fell back
    /// to another mode).
    retired: std::sync::atomic::AtomicBool,
    pub counters: Arc<Counters>,
    /// The largest batch (`python.fn-execution.max-message-size`).
    pub max_payload: usize,
}

impl Pool {
    pub fn start(settings: Settings) -> Result<Pool, StartError> {
        let n = settings.config.worker_count();
        // Start every worker at once: each loads Python on its own core.
        let started: Vec<Result<Worker, StartError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|id| {
                    let settings = &settings;
                    s.spawn(move || Worker::start(id, settings))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a starting thread does not panic"))
                .collect()
        });
        let mut slots = Vec::with_capacity(n);
        let mut first_error = None;
        for (id, w) in started.into_iter().enumerate() {
            match w {
                Ok(w) => slots.push(Slot {
                    id,
                    worker: Some(w),
                }),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if let Some(e) = first_error {
            // Nothing half-started: stop the workers that did start.
            for w in slots.into_iter().filter_map(|s| s.worker) {
                w.shutdown();
            }
            return Err(e);
        }
        let max_payload = settings.config.max_message_size();
        let counters = Arc::clone(&settings.counters);
        Ok(Pool {
            settings,
            idle: Mutex::new(slots),
            returned: Condvar::new(),
            retired: std::sync::atomic::AtomicBool::new(false),
            counters,
            max_payload,
        })
    }

    /// The mode the workers run in.
    pub fn mode(&self) -> ExecutionMode {
        self.settings.mode
    }

    /// Process ids of the idle workers.
    pub fn idle_pids(&self) -> Vec<u32> {
        let idle = self.idle.lock().expect("pool lock");
        idle.iter()
            .filter_map(|s| {
                s.worker
                    .as_ref()
                    .and_then(|w| w.child.as_ref().map(Child::id))
            })
            .collect()
    }

    /// Leases an idle worker; waits for one if `wait` and none is idle.
    pub fn lease(&self, wait: bool) -> Option<Lease<'_>> {
        let mut idle = self.idle.lock().expect("pool lock");
        loop {
            if let Some(slot) = idle.pop() {
                return Some(Lease {
                    pool: self,
                    slot: Some(slot),
                });
            }
            if !wait {
                return None;
            }
            idle = self.returned.wait(idle).expect("pool lock");
        }
    }

    fn give_back(&self, slot: Slot) {
        if self.retired.load(Ordering::Acquire) {
            if let Some(w) = slot.worker {
                w.shutdown();
            }
            return;
        }
        self.idle.lock().expect("pool lock").push(slot);
        self.returned.notify_one();
    }

    /// Takes no more work: shuts down the idle workers now, and every
    /// leased one when it comes back.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let slots = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        let mut closing: Vec<Worker> = slots.into_iter().filter_map(|s| s.worker).collect();
        for w in &mut closing {
            w.tx.close();
        }
        for w in closing {
            w.shutdown();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let slots = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        // Close every worker's input first, so they run close() in parallel.
        let mut closing: Vec<Worker> = slots.into_iter().filter_map(|s| s.worker).collect();
        for w in &mut closing {
            w.tx.close();
        }
        for w in closing {
            w.shutdown();
        }
    }
}

/// A worker leased from the pool; goes back when dropped.
pub(crate) struct Lease<'p> {
    pool: &'p Pool,
    slot: Option<Slot>,
}

impl Lease<'_> {
    /// Whether this lease is of `pool`.
    pub fn is_of(&self, pool: &Pool) -> bool {
        std::ptr::eq(self.pool, pool)
    }

    /// The slot's id.
    pub fn id(&self) -> usize {
        self.slot.as_ref().expect("a live lease").id
    }

    /// The leased worker, restarting it first if the slot is vacant.
    pub fn worker(&mut self) -> Result<&mut Worker, RunError> {
        let slot = self.slot.as_mut().expect("a live lease");
        if slot.worker.is_none() {
            let w = Worker::start(slot.id, &self.pool.settings)
                .map_err(|e| RunError::Restart(Box::new(e)))?;
            slot.worker = Some(w);
        }
        Ok(slot.worker.as_mut().expect("just started"))
    }

    /// Kills the worker (it broke) and leaves the slot vacant: for a pool
    /// that takes no more work ([`Pool::retire`]).
    pub fn discard(&mut self, why: &RunError) {
        let slot = self.slot.as_mut().expect("a live lease");
        if let Some(w) = slot.worker.take() {
            w.kill();
        }
        tracing::warn!(worker = slot.id, "stopping a retired worker: {why}");
    }

    /// Kills the worker (it broke) and starts its replacement.
    pub fn replace(&mut self, why: &RunError) {
        let slot = self.slot.as_mut().expect("a live lease");
        if let Some(w) = slot.worker.take() {
            w.kill();
        }
        self.pool.counters.restarts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("coil_worker_restarts_total", "mode" => self.pool.settings.mode.as_str())
            .increment(1);
        tracing::warn!(worker = slot.id, "replacing worker: {why}");
        match Worker::start(slot.id, &self.pool.settings) {
            Ok(w) => slot.worker = Some(w),
            Err(e) => tracing::error!(worker = slot.id, "restarting worker: {e}"),
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.pool.give_back(slot);
        }
    }
}

/// The first frame of an answer.
enum First {
    Whole(Result<Result<(Vec<Value>, BatchTimes), RunError>, String>),
    Piece(Vec<u8>),
    Nothing,
}

/// How waiting for an answer ended.
pub(crate) enum Answer {
    /// The batch's results, where the executor's time went, and how long
    /// the host took to decode them.
    Values(Vec<Value>, BatchTimes, Duration),
    /// An error the UDF or a row caused; the worker is fine.
    Error(RunError),
    /// The worker broke (died, hung, wrote garbage) and must be replaced.
    Broken(RunError),
    /// Not back yet (only when not waiting).
    Pending,
}

/// One worker process and the host's ends of its rings.
pub(crate) struct Worker {
    slot: usize,
    /// The worker process (`process` mode).
    child: Option<Child>,
    /// The executor thread (the in-process modes).
    thread: Option<JoinHandle<()>>,
    region: Region,
    tx: Producer,
    rx: Consumer,
    stderr: Arc<Mutex<VecDeque<String>>>,
    max_message: usize,
    logs: Vec<JoinHandle<()>>,
}

/// How long an interrupted executor thread has to come back.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// Lines of a worker's stderr kept for error messages.
const STDERR_TAIL: usize = 30;

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => {
            let name = nix::sys::signal::Signal::try_from(s)
                .map(|s| s.as_str())
                .unwrap_or("?");
            format!("killed by signal {s} ({name})")
        }
        _ => status.to_string(),
    }
}

fn expect_row<const N: usize>(row: Vec<Value>) -> Option<[Value; N]> {
    row.try_into().ok()
}

fn py_error(type_name: Value, message: Value, traceback: Value) -> Option<PyErrorInfo> {
    match (type_name, message, traceback) {
        (Value::Str(type_name), Value::Str(message), Value::Str(traceback)) => Some(PyErrorInfo {
            type_name,
            message,
            traceback,
        }),
        _ => None,
    }
}

impl Worker {
    fn start(slot: usize, settings: &Settings) -> Result<Worker, StartError> {
        match settings.mode {
            ExecutionMode::Process => Worker::start_process(slot, settings),
            _ => Worker::start_thread(slot, settings),
        }
    }

    /// An executor thread in this process, on the embedded interpreter,
    /// behind a ring pair in private memory.
    fn start_thread(slot: usize, settings: &Settings) -> Result<Worker, StartError> {
        let size = settings.config.ring_size();
        let region = Region::create_private(&[size, size])?;
        let (theirs, spec, max) = (
            region.clone(),
            settings.spec.clone(),
            settings.config.max_message_size(),
        );
        let serve = match settings.mode {
            ExecutionMode::SubInterpreter => coil_worker::serve_in_subinterpreter,
            _ => coil_worker::serve_in_process,
        };
        let thread = std::thread::Builder::new()
            .name(format!("coil-executor-{slot}"))
            .spawn(move || {
                if let Err(e) = serve(&theirs, &spec, max) {
                    if !matches!(e, coil_worker::ServeError::Load(_)) {
                        tracing::error!(worker = slot, "executor thread stopped: {e}");
                    }
                }
            })
            .map_err(|source| StartError::Spawn {
                program: "an executor thread".into(),
                source,
            })?;
        let tx = region.producer(0).expect("a fresh region");
        let rx = region.consumer(1).expect("a fresh region");
        let mut worker = Worker {
            slot,
            child: None,
            thread: Some(thread),
            region,
            tx,
            rx,
            stderr: Arc::new(Mutex::new(VecDeque::new())),
            max_message: settings.config.max_message_size(),
            logs: Vec::new(),
        };
        match worker.await_ready(settings) {
            Ok(()) => Ok(worker),
            Err(e) => {
                worker.kill();
                Err(e)
            }
        }
    }

    /// A `coil-worker` process behind a ring pair in a sealed memfd.
    fn start_process(slot: usize, settings: &Settings) -> Result<Worker, StartError> {
        let size = settings.config.ring_size();
        let region = Region::create_shared(&[size, size])?;
        let mut cmd = Command::new(&settings.command.program);
        cmd.args(&settings.command.args);
        let fd = region
            .inherit_into(&mut cmd)
            .expect("a shared region has a descriptor");
        cmd.arg("--fd").arg(fd.to_string());
        cmd.arg("--udf").arg(&settings.spec.target);
        cmd.arg("--kind").arg(settings.spec.kind.as_str());
        cmd.arg("--max-message")
            .arg(settings.config.max_message_size().to_string());
        for p in settings
            .spec
            .paths
            .iter()
            .chain(settings.config.files().iter())
        {
            cmd.arg("--path").arg(p);
        }
        cmd.env("COIL_HOST_PID", std::process::id().to_string())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONFAULTHANDLER", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| StartError::Spawn {
            program: settings.command.program.display().to_string(),
            source,
        })?;
        let pid = child.id();
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let mut logs = Vec::new();
        if let Some(out) = child.stdout.take() {
            logs.push(log_lines(out, slot, pid, false, None));
        }
        if let Some(err) = child.stderr.take() {
            logs.push(log_lines(err, slot, pid, true, Some(stderr.clone())));
        }
        let watch = |w: &mut dyn FnMut(PidWatch)| {
            if let Ok(p) = PidWatch::new(pid) {
                w(p)
            }
        };
        let mut tx = region.producer(0).expect("a fresh region");
        let mut rx = region.consumer(1).expect("a fresh region");
        watch(&mut |p| tx.set_peer_watch(p));
        watch(&mut |p| rx.set_peer_watch(p));
        let mut worker = Worker {
            slot,
            child: Some(child),
            thread: None,
            region,
            tx,
            rx,
            stderr,
            max_message: settings.config.max_message_size(),
            logs,
        };
        match worker.await_ready(settings) {
            Ok(()) => {
                tracing::debug!(worker = slot, pid, "worker ready");
                Ok(worker)
            }
            Err(e) => {
                worker.kill();
                Err(e)
            }
        }
    }

    fn await_ready(&mut self, settings: &Settings) -> Result<(), StartError> {
        let timeout = settings.config.start_timeout();
        let got = match self.rx.recv_timeout(timeout) {
            Ok(frame) => Ok((frame.tag(), protocol::decode_one_row(&frame, 0))),
            Err(e) => Err(e),
        };
        let (tag, row) = match got {
            Ok(x) => x,
            Err(RingRecvError::Timeout { .. }) => return Err(StartError::Timeout(timeout)),
            Err(RingRecvError::PeerDead | RingRecvError::Closed) => {
                let status = self.reap();
                return Err(StartError::Exited {
                    status,
                    stderr: self.stderr_tail(),
                });
            }
            Err(e) => return Err(StartError::Protocol(e.to_string())),
        };
        self.rx.flush();
        let row = row.map_err(|e| StartError::Protocol(e.to_string()))?;
        match tag {
            protocol::TAG_READY => Ok(()),
            protocol::TAG_LOAD_FAILED => {
                let error = expect_row::<3>(row)
                    .and_then(|[t, m, tb]| py_error(t, m, tb))
                    .ok_or_else(|| StartError::Protocol("malformed load error".into()))?;
                Err(StartError::Load {
                    target: settings.spec.target.clone(),
                    error,
                })
            }
            t => Err(StartError::Protocol(format!("unexpected frame tag {t}"))),
        }
    }

    /// Puts a batch (`seq` and rows, encoded) into the request ring
    /// without waiting; `Ok(false)` if there is no room yet.
    pub fn try_send(&mut self, payload: &[u8]) -> Result<bool, RunError> {
        match self.tx.try_reserve(payload.len()) {
            Ok(mut w) => {
                w.append(payload).expect("reserved exactly this much");
                w.commit(protocol::TAG_BATCH);
                self.tx.flush();
                Ok(true)
            }
            Err(RingPushError::Full) => Ok(false),
            Err(RingPushError::PeerDead | RingPushError::Closed) => Err(self.died(0..0)),
            Err(e) => Err(self.protocol(0..0, e.to_string())),
        }
    }

    /// Whether a batch of `len` bytes must travel in pieces.
    pub fn needs_pieces(&self, len: usize) -> bool {
        len > self.tx.max_frame_len()
    }

    /// Sends a batch, in pieces if it is larger than a frame, waiting up to
    /// `wait` for room for each frame. Only call it while the worker has
    /// nothing else of ours to answer: it reads while we write.
    pub fn send(&mut self, payload: &[u8], wait: Duration) -> Result<(), RunError> {
        match protocol::send_message(&mut self.tx, protocol::TAG_BATCH, payload, wait) {
            Ok(()) => Ok(()),
            Err(MessageError::Push(RingPushError::PeerDead | RingPushError::Closed)) => {
                Err(self.died(0..0))
            }
            Err(MessageError::Push(RingPushError::Timeout { .. })) => {
                Err(self.timed_out(0..0, Some(wait)))
            }
            Err(e) => Err(self.protocol(0..0, e.to_string())),
        }
    }

    /// The answer to batch `seq` (rows `rows`), the next one this worker
    /// sends: waits until `deadline` if `wait`, else only looks.
    pub fn answer(
        &mut self,
        seq: u64,
        rows: Range<u64>,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
        wait: bool,
    ) -> Answer {
        let left = deadline.map_or(Duration::from_secs(365 * 24 * 3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        // Host decode time runs from here when the frame is already there;
        // when we wait, it includes the wait's last moments only.
        let decode_started;
        // The first frame, read (or its bytes copied) before the borrow of
        // the ring ends.
        let first = {
            let f = if wait {
                self.rx.recv_timeout(left).map(Some)
            } else {
                self.rx.try_recv()
            };
            decode_started = Instant::now();
            match f {
                Ok(Some(frame)) if frame.tag() == protocol::TAG_PART => {
                    let mut buf = Vec::new();
                    frame.copy_into(&mut buf);
                    Ok(First::Piece(buf))
                }
                Ok(Some(frame)) => Ok(First::Whole(read_answer(
                    &frame,
                    frame.tag(),
                    seq,
                    rows.clone(),
                ))),
                Ok(None) => Ok(First::Nothing),
                Err(e) => Err(e),
            }
        };
        let got = match first {
            Ok(First::Piece(mut buf)) => {
                // An answer larger than a frame: collect its pieces.
                let left = deadline.map_or(left, |d| d.saturating_duration_since(Instant::now()));
                match protocol::assemble_rest(&mut self.rx, &mut buf, self.max_message, left) {
                    Ok(tag) => Ok(Some(read_answer(&buf[..], tag, seq, rows.clone()))),
                    Err(MessageError::Recv(e)) => Err(e),
                    Err(e) => Ok(Some(Err(e.to_string()))),
                }
            }
            Ok(First::Whole(answer)) => Ok(Some(answer)),
            Ok(First::Nothing) => Ok(None),
            Err(e) => Err(e),
        };
        match got {
            Ok(None) => Answer::Pending,
            Ok(Some(Ok(Ok((values, times))))) => {
                self.rx.flush();
                Answer::Values(values, times, decode_started.elapsed())
            }
            Ok(Some(Ok(Err(e)))) => {
                self.rx.flush();
                Answer::Error(e)
            }
            Ok(Some(Err(message))) => Answer::Broken(self.protocol(rows, message)),
            Err(RingRecvError::PeerDead | RingRecvError::Closed) => Answer::Broken(self.died(rows)),
            Err(RingRecvError::Timeout { .. }) if self.thread.is_some() => {
                self.interrupt(rows, timeout)
            }
            Err(RingRecvError::Timeout { .. }) => Answer::Broken(self.timed_out(rows, timeout)),
            Err(e) => Answer::Broken(self.protocol(rows, e.to_string())),
        }
    }

    /// An executor thread ran past the timeout: raise `TimeoutError` in it
    /// and wait briefly for it to come back. A thread stuck in C code does
    /// not come back; it is then abandoned (closed, left to finish).
    fn interrupt(&mut self, rows: Range<u64>, timeout: Option<Duration>) -> Answer {
        let error = self.timed_out(rows, timeout);
        let word = |i| self.region.user_word(i).map_or(0, |w| w.load());
        let (ident, interp) = (word(1), word(2));
        if interp != 0 {
            // SAFETY: the executor publishes its interpreter in word 2 while
            // it lives and clears it before ending it; it is running our
            // batch (we are waiting for its answer), so it is alive.
            unsafe { coil_worker::interrupt_in(interp, ident) };
        } else if ident != 0 {
            coil_worker::interrupt(ident);
        }
        let back = match self.rx.recv_timeout(INTERRUPT_GRACE) {
            Ok(frame) => frame.tag() != protocol::TAG_PART,
            Err(_) => false,
        };
        if back {
            self.rx.flush();
            Answer::Error(error)
        } else {
            Answer::Broken(error)
        }
    }

    fn died(&mut self, rows: Range<u64>) -> RunError {
        let status = self.reap();
        RunError::WorkerDied {
            worker: self.slot,
            status,
            rows,
            stderr: self.stderr_tail(),
        }
    }

    fn timed_out(&mut self, rows: Range<u64>, after: Option<Duration>) -> RunError {
        // The worker publishes `row + 1` of the row it runs.
        let at = self.region.user_word(0).map_or(0, |w| w.load());
        let len = rows.end - rows.start;
        let row = (at > 0 && at <= len).then(|| rows.start + at - 1);
        RunError::Timeout {
            row,
            after: after.unwrap_or_default(),
            rows,
        }
    }

    fn protocol(&mut self, rows: Range<u64>, message: String) -> RunError {
        RunError::Protocol {
            worker: self.slot,
            rows,
            message,
        }
    }

    /// Waits (briefly) for the exited child and describes how it exited.
    fn reap(&mut self) -> String {
        let Some(child) = self.child.as_mut() else {
            return "its executor thread stopped".into();
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return describe(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => return "still running; killed".into(),
                Err(e) => return format!("unknown ({e})"),
            }
        }
    }

    fn stderr_tail(&mut self) -> String {
        // Let the log thread drain what the worker wrote before it died.
        for h in self.logs.drain(..) {
            let _ = h.join();
        }
        let tail = self.stderr.lock().expect("stderr tail lock");
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Kills the worker at once and reaps it.
    fn kill(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A thread cannot be killed: closing its input makes it stop as soon
        // as it is free; until then it is left to run on, detached.
        self.tx.close();
        self.thread = None;
    }

    /// Closes the worker's input, so it runs the UDF's `close()` and exits;
    /// kills it if it has not exited within a few seconds.
    fn shutdown(mut self) {
        self.tx.close();
        let deadline = Instant::now() + Duration::from_secs(5);
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!(
                    worker = self.slot,
                    "executor thread still busy after close; leaving it"
                );
            }
        }
        if let Some(child) = self.child.as_mut() {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Ok(None) => {
                        tracing::warn!(
                            worker = self.slot,
                            "worker did not exit after close; killing it"
                        );
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        for h in self.logs.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Whatever path dropped us: no child outlives its worker.
        if let Some(child) = self.child.as_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Reads a worker's answer to batch `seq`: its results, a UDF or row
/// error (`Ok(Err)`), or what makes it malformed (`Err`).
fn read_answer<S: ByteSource + ?Sized>(
    frame: &S,
    tag: u16,
    seq: u64,
    rows: Range<u64>,
) -> Result<Result<(Vec<Value>, BatchTimes), RunError>, String> {
    let got = protocol::read_seq(frame).map_err(|e| e.to_string())?;
    if got != seq {
        return Err(format!("answer for batch {got}, expected {seq}"));
    }
    let n = (rows.end - rows.start) as usize;
    match tag {
        protocol::TAG_RESULT => {
            let times = protocol::read_times(frame).map_err(|e| e.to_string())?;
            let body = After::new(frame, protocol::SEQ_LEN + protocol::TIMES_LEN);
            let mut dec = BatchDecoder::new(&body).map_err(|e| e.to_string())?;
            if dec.rows_remaining() as usize != n {
                return Err(format!("{} results for {n} rows", dec.rows_remaining()));
            }
            let mut values = Vec::with_capacity(n);
            for _ in 0..n {
                match dec.begin_row().map_err(|e| e.to_string())? {
                    1 => values.push(dec.read_value(0).map_err(|e| e.to_string())?),
                    k => return Err(format!("a result row of {k} values")),
                }
            }
            dec.finish().map_err(|e| e.to_string())?;
            Ok(Ok((values, times)))
        }
        protocol::TAG_UDF_ERROR => {
            let row =
                protocol::decode_one_row(frame, protocol::SEQ_LEN).map_err(|e| e.to_string())?;
            match expect_row::<4>(row) {
                Some([Value::Int(r), t, m, tb]) if (0..n as i64).contains(&r) => {
                    let error = py_error(t, m, tb).ok_or("malformed UDF error")?;
                    Ok(Err(RunError::Udf {
                        row: rows.start + r as u64,
                        error,
                    }))
                }
                _ => Err("malformed UDF error".into()),
            }
        }
        protocol::TAG_INCOMPATIBLE => {
            let row =
                protocol::decode_one_row(frame, protocol::SEQ_LEN).map_err(|e| e.to_string())?;
            match expect_row::<5>(row) {
                Some([Value::Int(r), Value::Str(module), t, m, tb])
                    if (0..n as i64).contains(&r) =>
                {
                    let error = py_error(t, m, tb).ok_or("malformed incompatibility error")?;
                    Ok(Err(RunError::SubInterpreterIncompatible {
                        row: rows.start + r as u64,
                        module,
                        error,
                    }))
                }
                _ => Err("malformed incompatibility error".into()),
            }
        }
        protocol::TAG_BAD_ROW => {
            let row =
                protocol::decode_one_row(frame, protocol::SEQ_LEN).map_err(|e| e.to_string())?;
            match expect_row::<2>(row) {
                Some([Value::Int(r), Value::Str(message)]) if r < n as i64 => {
                    Ok(Err(RunError::BadRow {
                        row: (r >= 0).then(|| rows.start + r as u64),
                        message,
                    }))
                }
                _ => Err("malformed row error".into()),
            }
        }
        t => Err(format!("unexpected frame tag {t}")),
    }
}

/// Forwards a worker's output, line by line, to `tracing`; keeps the last
/// stderr lines in `tail`.
fn log_lines(
    pipe: impl std::io::Read + Send + 'static,
    slot: usize,
    pid: u32,
    is_stderr: bool,
    tail: Option<Arc<Mutex<VecDeque<String>>>>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("coil-log-{slot}"))
        .spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if is_stderr {
                    tracing::warn!(target: "coil::worker", worker = slot, pid, stream = "stderr", "{line}");
                } else {
                    tracing::info!(target: "coil::worker", worker = slot, pid, stream = "stdout", "{line}");
                }
                if let Some(t) = &tail {
                    let mut t = t.lock().expect("stderr tail lock");
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        })
        .expect("spawning a log thread")
}
