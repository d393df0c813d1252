//! Process mode: a pool of `coil-worker` processes, each behind its own pair
//! of rings in a sealed memfd, each driven by one host thread.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coil_ipc::{
    decode_batch_into, Consumer, PidWatch, Producer, Region, RingPushError, RingRecvError, Row,
    Value,
};
use coil_worker::protocol::{self, After};
use coil_worker::{PyErrorInfo, UdfSpec};
use crossbeam_channel::{Receiver, Sender};

use crate::error::{RunError, StartError};
use crate::Config;

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

/// One batch on its way to a worker.
pub(crate) struct Job {
    /// Unique in the pool; the worker echoes it in its answer.
    pub seq: u64,
    /// Rows `rows.start..rows.end` of the caller's numbering.
    pub rows: Range<u64>,
    /// `seq` and the encoded batch, ready to copy into the ring.
    pub payload: Vec<u8>,
    /// Where the results go.
    pub reply: Sender<Result<Vec<Value>, RunError>>,
}

/// What a pool needs to start workers.
pub(crate) struct Settings {
    pub config: Config,
    pub spec: UdfSpec,
    pub command: WorkerCommand,
}

/// Counters shared by a pool's drivers.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub restarts: AtomicU64,
    pub batches: AtomicU64,
    pub next_seq: AtomicU64,
}

/// The workers' drivers; dropping it shuts every worker down.
pub(crate) struct ProcessPool {
    jobs: Option<Sender<Job>>,
    drivers: Vec<JoinHandle<()>>,
    pub counters: Arc<Counters>,
    /// The largest payload a request frame can carry.
    pub max_payload: usize,
}

impl ProcessPool {
    pub fn start(settings: Settings) -> Result<ProcessPool, StartError> {
        let n = settings.config.worker_count();
        let settings = Arc::new(settings);
        // Start every worker at once: each loads Python on its own core.
        let starting: Vec<_> = (0..n)
            .map(|slot| {
                let s = settings.clone();
                std::thread::spawn(move || Worker::start(slot, &s))
            })
            .collect();
        let mut workers = Vec::with_capacity(n);
        let mut first_err = None;
        for t in starting {
            match t.join().expect("a starting thread does not panic") {
                Ok(w) => workers.push(w),
                Err(e) => first_err = first_err.or(Some(e)),
            }
        }
        if let Some(e) = first_err {
            drop(workers);
            return Err(e);
        }
        let max_payload = workers[0].tx.max_frame_len();
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(n);
        let counters = Arc::new(Counters::default());
        let drivers = workers
            .into_iter()
            .map(|w| {
                let (s, q, c) = (settings.clone(), queue.clone(), counters.clone());
                std::thread::Builder::new()
                    .name(format!("coil-driver-{}", w.slot))
                    .spawn(move || drive(w, &s, &q, &c))
                    .expect("spawning a driver thread")
            })
            .collect();
        Ok(ProcessPool {
            jobs: Some(jobs),
            drivers,
            counters,
            max_payload,
        })
    }

    /// Queues a job; blocks while every worker is busy and the queue is
    /// full (back-pressure).
    pub fn submit(&self, job: Job) -> Result<(), RunError> {
        self.jobs
            .as_ref()
            .ok_or(RunError::Closed)?
            .send(job)
            .map_err(|_| RunError::Closed)
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        self.jobs = None;
        for d in self.drivers.drain(..) {
            let _ = d.join();
        }
    }
}

/// Runs jobs on one worker slot, replacing the worker when it fails.
fn drive(first: Worker, settings: &Settings, queue: &Receiver<Job>, counters: &Counters) {
    let slot = first.slot;
    let mut worker = Some(first);
    let retries = settings.config.retries();
    for job in queue {
        let mut attempts = 0;
        let result = loop {
            let w = match worker.as_mut() {
                Some(w) => w,
                None => match Worker::start(slot, settings) {
                    Ok(w) => worker.insert(w),
                    Err(e) => break Err(RunError::Restart(Box::new(e))),
                },
            };
            match w.run(&job, settings.config.timeout()) {
                Ok(values) => break Ok(values),
                Err(Failure::Answer(e)) => break Err(e),
                Err(Failure::Broken(e)) => {
                    let died = matches!(e, RunError::WorkerDied { .. });
                    if let Some(w) = worker.take() {
                        w.kill();
                    }
                    counters.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(worker = slot, "replacing worker: {e}");
                    // Start the replacement now, so the next batch does not wait.
                    match Worker::start(slot, settings) {
                        Ok(w) => worker = Some(w),
                        Err(se) => tracing::error!(worker = slot, "restarting worker: {se}"),
                    }
                    if died && attempts < retries {
                        attempts += 1;
                        tracing::warn!(
                            worker = slot,
                            "retrying rows {}..{}",
                            job.rows.start,
                            job.rows.end
                        );
                        continue;
                    }
                    break Err(e);
                }
            }
        };
        counters.batches.fetch_add(1, Ordering::Relaxed);
        let _ = job.reply.send(result);
    }
    if let Some(w) = worker {
        w.shutdown();
    }
}

/// How a job failed: an answer (the worker is fine) or a broken worker.
enum Failure {
    Answer(RunError),
    Broken(RunError),
}

/// One worker process and the host's ends of its rings.
struct Worker {
    slot: usize,
    child: Child,
    region: Region,
    tx: Producer,
    rx: Consumer,
    stderr: Arc<Mutex<VecDeque<String>>>,
    results: Vec<Row>,
    logs: Vec<JoinHandle<()>>,
}

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
        for p in settings
            .spec
            .paths
            .iter()
            .chain(settings.config.files().iter())
        {
            cmd.arg("--path").arg(p);
        }
        cmd.env("PYTHONUNBUFFERED", "1")
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
            child,
            region,
            tx,
            rx,
            stderr,
            results: Vec::new(),
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

    /// Runs one job. UDF errors are answers; anything that leaves the
    /// worker in doubt breaks it.
    fn run(&mut self, job: &Job, timeout: Option<Duration>) -> Result<Vec<Value>, Failure> {
        let rows = job.rows.clone();
        let wait = timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600));
        let start = Instant::now();
        let pushed = self
            .tx
            .push_timeout(protocol::TAG_BATCH, &job.payload, wait);
        self.tx.flush();
        match pushed {
            Ok(()) => {}
            Err(RingPushError::PeerDead | RingPushError::Closed) => return Err(self.died(rows)),
            Err(RingPushError::Timeout { .. }) => return Err(self.timed_out(rows, timeout)),
            Err(e) => return Err(self.protocol(rows, e.to_string())),
        }
        let remaining = wait.saturating_sub(start.elapsed());
        let got = match self.rx.recv_timeout(remaining) {
            Ok(frame) => Ok(read_answer(&frame, job, &mut self.results)),
            Err(e) => Err(e),
        };
        let answer = match got {
            Ok(answer) => answer,
            Err(RingRecvError::PeerDead | RingRecvError::Closed) => return Err(self.died(rows)),
            Err(RingRecvError::Timeout { .. }) => return Err(self.timed_out(rows, timeout)),
            Err(e) => return Err(self.protocol(rows, e.to_string())),
        };
        self.rx.flush();
        match answer {
            Ok(Ok(values)) => Ok(values),
            Ok(Err(e)) => Err(Failure::Answer(e)),
            Err(message) => Err(self.protocol(rows, message)),
        }
    }

    fn died(&mut self, rows: Range<u64>) -> Failure {
        let status = self.reap();
        Failure::Broken(RunError::WorkerDied {
            worker: self.slot,
            status,
            rows,
            stderr: self.stderr_tail(),
        })
    }

    fn timed_out(&mut self, rows: Range<u64>, after: Option<Duration>) -> Failure {
        // The worker publishes `row + 1` of the row it runs.
        let at = self.region.user_word(0).map_or(0, |w| w.load());
        let len = rows.end - rows.start;
        let row = (at > 0 && at <= len).then(|| rows.start + at - 1);
        Failure::Broken(RunError::Timeout {
            row,
            after: after.unwrap_or_default(),
            rows,
        })
    }

    fn protocol(&mut self, rows: Range<u64>, message: String) -> Failure {
        Failure::Broken(RunError::Protocol {
            worker: self.slot,
            rows,
            message,
        })
    }

    /// Waits (briefly) for the exited child and describes how it exited.
    fn reap(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes the worker's input, so it runs the UDF's `close()` and exits;
    /// kills it if it has not exited within a few seconds.
    fn shutdown(mut self) {
        self.tx.close();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => {
                    tracing::warn!(
                        worker = self.slot,
                        "worker did not exit after close; killing it"
                    );
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
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
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a worker's answer to `job`: its results, a UDF or row error
/// (`Ok(Err)`), or what makes it malformed (`Err`).
#[allow(clippy::type_complexity)]
fn read_answer(
    frame: &coil_ipc::Frame<'_>,
    job: &Job,
    results: &mut Vec<Row>,
) -> Result<Result<Vec<Value>, RunError>, String> {
    let rows = job.rows.clone();
    let seq = protocol::read_seq(frame).map_err(|e| e.to_string())?;
    if seq != job.seq {
        return Err(format!("answer for batch {seq}, expected {}", job.seq));
    }
    let n = (rows.end - rows.start) as usize;
    match frame.tag() {
        protocol::TAG_RESULT => {
            decode_batch_into(&After::new(frame, protocol::SEQ_LEN), results)
                .map_err(|e| e.to_string())?;
            if results.len() != n {
                return Err(format!("{} results for {n} rows", results.len()));
            }
            let values = results
                .iter_mut()
                .map(|r| match r.as_mut_slice() {
                    [v] => Ok(std::mem::replace(v, Value::Null)),
                    _ => Err(format!("a result row of {} values", r.len())),
                })
                .collect::<Result<Vec<Value>, String>>()?;
            Ok(Ok(values))
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
