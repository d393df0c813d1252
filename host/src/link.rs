//! A link: the host's end of one executor — a `coil-worker` process behind
//! a pair of rings in a sealed memfd, or an executor thread in this process
//! behind rings in private memory. It starts the executor, sends batches,
//! reads and checks answers, notices deaths, hangs and garbage, and relays
//! a worker's output to `tracing`.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use coil_ipc::{
    ByteSource, Consumer, PidWatch, Producer, Region, RingPushError, RingRecvError, Value,
};
use coil_proto::{layout, Answer, Expect, MessageError, RowFault, Tag, Times};
use coil_worker::InterruptTarget;

use crate::error::{Direction, ProtocolError, RunError, StartError, WorkerExit};
use crate::pool::Settings;
use crate::ExecutionMode;

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
        Err(StartError::WorkerNotFound { looked })
    }
}

/// The first frame of an answer: decoded, or the first piece of a large
/// one, copied out of the ring.
enum First {
    Whole(Result<Answer, ProtocolError>),
    Piece(Vec<u8>),
    Nothing,
}

/// A batch's results: values of the row codec (answering rows), or one
/// Arrow column (answering a column batch).
#[derive(Debug)]
pub(crate) enum Results {
    /// One value per row.
    Rows(Vec<Value>),
    /// One column, a value per row.
    Column(arrow_array::ArrayRef),
}

impl Results {
    /// How many rows they answer.
    pub(crate) fn len(&self) -> usize {
        match self {
            Results::Rows(v) => v.len(),
            Results::Column(c) => arrow_array::Array::len(c.as_ref()),
        }
    }
}

/// How waiting for a batch's answer ended.
pub(crate) enum Reply {
    /// The batch's results, where the executor's time went, how long the
    /// host took to decode them, and the rows that failed alone (a null
    /// in the results holds each one's place).
    Values(Results, Times, Duration, Vec<(u64, RunError)>),
    /// The row running timed out and was interrupted, and the executor
    /// went on with the batch's other rows (a per-row batch in an executor
    /// thread); or the batch timed out with no row running (its answer is
    /// on its way): wait again, with a fresh deadline.
    Interrupted,
    /// An error the UDF or a row caused; the executor is fine.
    Error(RunError),
    /// The executor broke (died, hung, wrote garbage) and must be replaced.
    Broken(RunError),
    /// Not back yet (only when not waiting).
    Pending,
}

/// Where an executor runs.
enum Executor {
    /// A `coil-worker` process: the child, the threads relaying its stdout
    /// and stderr to `tracing`, and the last lines of its stderr.
    Process {
        child: Child,
        logs: Vec<JoinHandle<()>>,
        stderr: Arc<Mutex<VecDeque<String>>>,
    },
    /// An executor thread of this process: its handle (`None` once
    /// abandoned), and where to raise `TimeoutError` in it.
    Thread {
        handle: Option<JoinHandle<()>>,
        interrupt: Option<InterruptTarget>,
    },
}

/// One executor and the host's ends of its rings.
pub(crate) struct Link {
    slot: usize,
    executor: Executor,
    region: Region,
    tx: Producer,
    rx: Consumer,
    max_message: usize,
    /// The tag batches go with: [`Tag::BatchPerRow`] when rows fail alone.
    batch_tag: Tag,
    /// An executor thread's batch timed out with no row running, and it
    /// was given more time; reset by its answer.
    waited_idle: bool,
    /// The Arrow type of the UDF's results, as the executor said when it
    /// was ready (declared, or read from the return annotation).
    returns: Option<arrow_schema::DataType>,
    /// What the UDF's signature says, as the executor read it.
    signature: coil_proto::UdfSignature,
}

/// The tag of a batch under `settings`' error policy.
fn batch_tag(settings: &Settings) -> Tag {
    if settings.tuning.per_row {
        Tag::BatchPerRow
    } else {
        Tag::Batch
    }
}

/// How long an interrupted executor thread has to come back.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// Lines of a worker's stderr kept for error messages.
const STDERR_TAIL: usize = 30;

impl Link {
    pub(crate) fn start(slot: usize, settings: &Settings) -> Result<Link, StartError> {
        match settings.mode {
            ExecutionMode::Process => Link::start_process(slot, settings),
            _ => Link::start_thread(slot, settings),
        }
    }

    /// An executor thread in this process, on the embedded interpreter or
    /// in a sub-interpreter of its own, behind a ring pair in private
    /// memory.
    fn start_thread(slot: usize, settings: &Settings) -> Result<Link, StartError> {
        let size = settings.tuning.ring_size;
        let region = Region::create_private(&[size, size])?;
        let (theirs, spec, max) = (
            region.clone(),
            settings.spec.clone(),
            settings.tuning.max_message,
        );
        let serve = match settings.mode {
            ExecutionMode::SubInterpreter => coil_worker::serve_in_subinterpreter,
            _ => coil_worker::serve_in_process,
        };
        // The executor hands over where to raise `TimeoutError` in it before
        // it loads the UDF, so by the time it is ready the target is here.
        let (targets, target) = std::sync::mpsc::channel::<InterruptTarget>();
        let handle = std::thread::Builder::new()
            .name(format!("coil-executor-{slot}"))
            .spawn(move || {
                let started = move |t: InterruptTarget| {
                    let _ = targets.send(t);
                };
                if let Err(e) = serve(&theirs, &spec, max, &started) {
                    if !matches!(e, coil_worker::ServeError::Load(_)) {
                        tracing::error!(worker = slot, "executor thread stopped: {e}");
                    }
                }
            })
            .map_err(|source| StartError::Spawn {
                program: "an executor thread".into(),
                source,
            })?;
        let tx = region.producer(layout::REQUESTS).expect("a fresh region");
        let rx = region.consumer(layout::ANSWERS).expect("a fresh region");
        let link = Link {
            slot,
            executor: Executor::Thread {
                handle: Some(handle),
                interrupt: None,
            },
            region,
            tx,
            rx,
            max_message: settings.tuning.max_message,
            batch_tag: batch_tag(settings),
            waited_idle: false,
            returns: None,
            signature: coil_proto::UdfSignature::default(),
        };
        let mut link = link.ready_or_killed(settings)?;
        if let Executor::Thread { interrupt, .. } = &mut link.executor {
            *interrupt = target.try_recv().ok();
        }
        Ok(link)
    }

    /// A `coil-worker` process behind a ring pair in a sealed memfd.
    fn start_process(slot: usize, settings: &Settings) -> Result<Link, StartError> {
        let size = settings.tuning.ring_size;
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
            .arg(settings.tuning.max_message.to_string());
        for p in settings
            .spec
            .paths
            .iter()
            .chain(settings.config.files().iter())
        {
            cmd.arg("--path").arg(p);
        }
        for p in &settings.spec.sys_path {
            cmd.arg("--sys-path").arg(p);
        }
        for p in &settings.spec.site_dirs {
            cmd.arg("--site-dir").arg(p);
        }
        if let Some(bytes) = settings
            .spec
            .returns
            .as_ref()
            .map(coil_worker::result_wire_type)
            .and_then(|t| coil_proto::Columns::type_to_bytes(&t))
        {
            // The type as a column frame writes it, in hexadecimal.
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            cmd.arg("--returns").arg(hex);
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
        let mut tx = region.producer(layout::REQUESTS).expect("a fresh region");
        let mut rx = region.consumer(layout::ANSWERS).expect("a fresh region");
        watch(&mut |p| tx.set_peer_watch(p));
        watch(&mut |p| rx.set_peer_watch(p));
        let link = Link {
            slot,
            executor: Executor::Process {
                child,
                logs,
                stderr,
            },
            region,
            tx,
            rx,
            max_message: settings.tuning.max_message,
            batch_tag: batch_tag(settings),
            waited_idle: false,
            returns: None,
            signature: coil_proto::UdfSignature::default(),
        };
        let link = link.ready_or_killed(settings)?;
        tracing::debug!(worker = slot, pid, "worker ready");
        Ok(link)
    }

    /// The link once its executor reported ready; an executor that did not
    /// is killed, and the reason returned.
    fn ready_or_killed(mut self, settings: &Settings) -> Result<Link, StartError> {
        match self.await_ready(settings) {
            Ok(()) => Ok(self),
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    /// The Arrow type of the UDF's results, as the executor said.
    pub fn returns(&self) -> Option<&arrow_schema::DataType> {
        self.returns.as_ref()
    }

    /// What the UDF's signature says, as the executor said.
    pub fn signature(&self) -> &coil_proto::UdfSignature {
        &self.signature
    }

    /// The worker process's id (`None` for an executor thread).
    pub fn pid(&self) -> Option<u32> {
        match &self.executor {
            Executor::Process { child, .. } => Some(child.id()),
            Executor::Thread { .. } => None,
        }
    }

    fn await_ready(&mut self, settings: &Settings) -> Result<(), StartError> {
        let timeout = settings.tuning.start_timeout;
        let got = match self.rx.recv_timeout(timeout) {
            Ok(frame) => Ok(Tag::try_from(frame.tag())
                .and_then(|tag| Answer::decode(tag, &frame, Expect::Start))),
            Err(e) => Err(e),
        };
        let answer = match got {
            Ok(answer) => answer,
            Err(RingRecvError::Timeout { .. }) => return Err(StartError::Timeout(timeout)),
            Err(RingRecvError::PeerDead | RingRecvError::Closed) => {
                let exit = self.reap();
                return Err(StartError::Exited {
                    exit,
                    stderr: self.stderr_tail(),
                });
            }
            Err(e) => return Err(StartError::Protocol(e.into())),
        };
        self.rx.flush();
        match answer.map_err(|e| StartError::Protocol(e.into()))? {
            Answer::Ready {
                returns, signature, ..
            } => {
                self.returns = returns;
                self.signature = signature;
                Ok(())
            }
            Answer::LoadFailed { error } => Err(StartError::Load {
                target: settings.spec.target.clone(),
                error,
            }),
            _ => unreachable!("Expect::Start decodes only start-up messages"),
        }
    }

    /// Closes the request ring: the executor runs the UDF's `close()` and
    /// stops.
    pub fn close_input(&mut self) {
        self.tx.close();
    }

    /// Puts a batch (`seq` and rows, encoded) into the request ring
    /// without waiting; `Ok(false)` if there is no room yet.
    pub fn try_send(&mut self, payload: &[u8], columnar: bool) -> Result<bool, RunError> {
        let tag = self.tag(columnar);
        match self.tx.try_reserve(payload.len()) {
            Ok(mut w) => {
                w.append(payload).expect("reserved exactly this much");
                w.commit(tag.raw());
                self.tx.flush();
                Ok(true)
            }
            Err(RingPushError::Full) => Ok(false),
            Err(RingPushError::PeerDead | RingPushError::Closed) => Err(self.died(0..0)),
            Err(e) => Err(self.protocol(0..0, e.into())),
        }
    }

    /// The tag of a batch: rows or columns, under the error policy.
    fn tag(&self, columnar: bool) -> Tag {
        match (columnar, self.batch_tag) {
            (false, tag) => tag,
            (true, Tag::BatchPerRow) => Tag::ColumnsPerRow,
            (true, _) => Tag::Columns,
        }
    }

    /// Whether a batch of `len` bytes must travel in pieces.
    pub fn needs_pieces(&self, len: usize) -> bool {
        len > self.tx.max_frame_len()
    }

    /// Sends a batch, in pieces if it is larger than a frame, waiting up to
    /// `wait` for room for each frame. Only call it while the executor has
    /// nothing else of ours to answer: it reads while we write.
    pub fn send(&mut self, payload: &[u8], columnar: bool, wait: Duration) -> Result<(), RunError> {
        let tag = self.tag(columnar);
        match coil_proto::send_message(&mut self.tx, tag, payload, wait) {
            Ok(()) => Ok(()),
            Err(MessageError::Push(RingPushError::PeerDead | RingPushError::Closed)) => {
                Err(self.died(0..0))
            }
            Err(MessageError::Push(RingPushError::Timeout { .. })) => {
                Err(self.timed_out(0..0, Some(wait)))
            }
            Err(e) => Err(self.protocol(0..0, e.into())),
        }
    }

    /// The answer to batch `seq` (rows `rows`), the next one this executor
    /// sends: waits until `deadline` if `wait`, else only looks.
    pub fn answer(
        &mut self,
        seq: u64,
        rows: Range<u64>,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
        wait: bool,
    ) -> Reply {
        let left = deadline.map_or(Duration::from_secs(365 * 24 * 3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        let expect = Expect::Batch {
            seq,
            rows: rows.end - rows.start,
        };
        // Host decode time runs from here when the frame is already there;
        // when we wait, it includes the wait's last moments only.
        let decode_started;
        // The first frame, decoded (or its bytes copied) before the borrow
        // of the ring ends.
        let first = {
            let f = if wait {
                self.rx.recv_timeout(left).map(Some)
            } else {
                self.rx.try_recv()
            };
            decode_started = Instant::now();
            match f {
                Ok(Some(frame)) if frame.tag() == Tag::Part.raw() => {
                    let mut buf = Vec::new();
                    frame.copy_into(&mut buf);
                    Ok(First::Piece(buf))
                }
                Ok(Some(frame)) => Ok(First::Whole(decode(frame.tag(), &frame, expect))),
                Ok(None) => Ok(First::Nothing),
                Err(e) => Err(e),
            }
        };
        let got = match first {
            Ok(First::Piece(mut buf)) => {
                // An answer larger than a frame: collect its pieces.
                let left = deadline.map_or(left, |d| d.saturating_duration_since(Instant::now()));
                match coil_proto::assemble_rest(&mut self.rx, &mut buf, self.max_message, left) {
                    Ok(tag) => Ok(Some(decode(tag.raw(), &buf[..], expect))),
                    Err(MessageError::Recv(e)) => Err(e),
                    Err(e) => Ok(Some(Err(e.into()))),
                }
            }
            Ok(First::Whole(answer)) => Ok(Some(answer)),
            Ok(First::Nothing) => Ok(None),
            Err(e) => Err(e),
        };
        let answer = match got {
            Ok(None) => return Reply::Pending,
            Ok(Some(Ok(answer))) => {
                self.rx.flush();
                self.waited_idle = false;
                answer
            }
            Ok(Some(Err(e))) => return Reply::Broken(self.protocol(rows, e)),
            Err(RingRecvError::PeerDead | RingRecvError::Closed) => {
                return Reply::Broken(self.died(rows))
            }
            Err(RingRecvError::Timeout { .. })
                if matches!(self.executor, Executor::Thread { .. }) =>
            {
                return self.interrupt(rows, timeout)
            }
            Err(RingRecvError::Timeout { .. }) => {
                return Reply::Broken(self.timed_out(rows, timeout))
            }
            Err(e) => return Reply::Broken(self.protocol(rows, e.into())),
        };
        let at = |row: u32| rows.start + u64::from(row);
        let (results, times, failed) = match answer {
            Answer::Results {
                times,
                values,
                failed,
                ..
            } => (Results::Rows(values), times, failed),
            Answer::ColumnResults {
                times,
                column,
                failed,
                ..
            } => (Results::Column(column), times, failed),
            Answer::UdfError { row, error, .. } => {
                return Reply::Error(RunError::Udf {
                    row: at(row),
                    error,
                })
            }
            Answer::Incompatible {
                row, module, error, ..
            } => {
                return Reply::Error(RunError::SubInterpreterIncompatible {
                    row: at(row),
                    module,
                    error,
                })
            }
            Answer::BadRow { row, message, .. } => {
                return Reply::Error(RunError::BadRow {
                    row: row.map(at),
                    message,
                })
            }
            Answer::TooLarge { bytes, limit, .. } => {
                return Reply::Error(RunError::TooLarge {
                    direction: Direction::Results,
                    rows,
                    bytes,
                    limit,
                })
            }
            Answer::Ready { .. } | Answer::LoadFailed { .. } => {
                unreachable!("Expect::Batch decodes only answers to batches")
            }
        };
        {
            {
                let failed = failed
                    .into_iter()
                    .map(|f| {
                        let row = at(f.row);
                        let error = match f.fault {
                            RowFault::Raised(error) => RunError::Udf { row, error },
                            RowFault::TimedOut(_) => RunError::Timeout {
                                row: Some(row),
                                after: timeout.unwrap_or_default(),
                                rows: row..row + 1,
                            },
                            RowFault::BadValue(message) => RunError::BadRow {
                                row: Some(row),
                                message,
                            },
                        };
                        (row, error)
                    })
                    .collect();
                Reply::Values(results, times, decode_started.elapsed(), failed)
            }
        }
    }

    /// An executor thread ran past the timeout: raise `TimeoutError` in it
    /// and wait briefly for it to come back. A thread stuck in C code does
    /// not come back; it is then abandoned (closed, left to finish).
    fn interrupt(&mut self, rows: Range<u64>, timeout: Option<Duration>) -> Reply {
        let running = self.progress();
        if running == 0 && !self.waited_idle {
            // No row running: the executor has just finished the batch (its
            // answer is on its way) or not yet begun it. Interrupting would
            // land in some later row; wait once more instead.
            self.waited_idle = true;
            return Reply::Interrupted;
        }
        let error = self.timed_out(rows, timeout);
        if let Executor::Thread {
            interrupt: Some(target),
            ..
        } = &self.executor
        {
            // Whether it was marked shows in whether the executor comes
            // back below.
            let _ = target.interrupt();
        }
        if self.batch_tag == Tag::BatchPerRow {
            // The row fails alone and the executor goes on with the next:
            // it came back once it runs another row (or none).
            let deadline = Instant::now() + INTERRUPT_GRACE;
            while Instant::now() < deadline {
                if self.progress() != running {
                    return Reply::Interrupted;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            return Reply::Broken(error);
        }
        let back = match self.rx.recv_timeout(INTERRUPT_GRACE) {
            Ok(frame) => frame.tag() != Tag::Part.raw(),
            Err(_) => false,
        };
        if back {
            self.rx.flush();
            Reply::Error(error)
        } else {
            Reply::Broken(error)
        }
    }

    fn died(&mut self, rows: Range<u64>) -> RunError {
        let exit = self.reap();
        RunError::WorkerDied {
            worker: self.slot,
            exit,
            row: self.running_row(&rows),
            rows,
            stderr: self.stderr_tail(),
        }
    }

    /// The row of `rows` the executor says it is running, if it is running
    /// one of them. It publishes `row + 1` while it runs a row and 0
    /// between batches: untrusted, so only a value within the batch names a
    /// row.
    fn running_row(&self, rows: &Range<u64>) -> Option<u64> {
        let at = self.progress();
        let len = rows.end - rows.start;
        (at > 0 && at <= len).then(|| rows.start + at - 1)
    }

    /// The executor's progress word, as it published it.
    fn progress(&self) -> u64 {
        self.region
            .user_word(layout::WORD_PROGRESS)
            .map_or(0, |w| w.load())
    }

    fn timed_out(&mut self, rows: Range<u64>, after: Option<Duration>) -> RunError {
        let row = self.running_row(&rows);
        RunError::Timeout {
            row,
            after: after.unwrap_or_default(),
            rows,
        }
    }

    fn protocol(&mut self, rows: Range<u64>, error: ProtocolError) -> RunError {
        RunError::Protocol {
            worker: self.slot,
            rows,
            error,
        }
    }

    /// Waits (briefly) for the exited child and says how it ended.
    fn reap(&mut self) -> WorkerExit {
        let Executor::Process { child, .. } = &mut self.executor else {
            return WorkerExit::ThreadStopped;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return WorkerExit::from_status(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => return WorkerExit::Killed,
                Err(_) => return WorkerExit::Unknown,
            }
        }
    }

    fn stderr_tail(&mut self) -> String {
        let Executor::Process { logs, stderr, .. } = &mut self.executor else {
            return String::new();
        };
        // Let the log threads drain what the worker wrote before it died.
        finish_relaying(logs, Duration::from_secs(1));
        let tail = stderr.lock().expect("stderr tail lock");
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Kills the executor at once: a process is killed and reaped; a thread
    /// cannot be killed, so its input is closed and it stops as soon as it
    /// is free (until then it is left to run on, detached).
    pub(crate) fn kill(mut self) {
        self.tx.close();
        match &mut self.executor {
            Executor::Process { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Executor::Thread { handle, .. } => drop(handle.take()),
        }
    }

    /// Closes the executor's input, so it runs the UDF's `close()` and
    /// stops; kills a process that has not exited within a few seconds.
    pub(crate) fn shutdown(mut self) {
        self.tx.close();
        let deadline = Instant::now() + Duration::from_secs(5);
        match &mut self.executor {
            Executor::Thread { handle, .. } => {
                if let Some(thread) = handle.take() {
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
            }
            Executor::Process { child, logs, .. } => {
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
                finish_relaying(logs, Duration::from_millis(200));
            }
        }
    }
}

/// Waits up to `grace` for the threads relaying an exited worker's output
/// to drain what it wrote, then leaves them: a process the UDF started
/// (`subprocess.Popen`) may hold the pipes open for as long as it lives,
/// and must not keep the host waiting. A relay left behind ends with its
/// pipe, or with the host.
fn finish_relaying(logs: &mut Vec<JoinHandle<()>>, grace: Duration) {
    let deadline = Instant::now() + grace;
    for h in logs.drain(..) {
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Whatever path dropped us: no child outlives its link.
        if let Executor::Process { child, .. } = &mut self.executor {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Decodes an answer frame: its tag, then its payload, checked against the
/// batch it must answer.
fn decode<S: ByteSource + ?Sized>(
    raw: u16,
    src: &S,
    expect: Expect,
) -> Result<Answer, ProtocolError> {
    let tag = Tag::try_from(raw)?;
    Ok(Answer::decode(tag, src, expect)?)
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
