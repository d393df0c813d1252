//! Starting an executor: what it takes ([`Spawn`]), where `coil-worker`
//! is ([`WorkerCommand::locate`]), a worker process (and the command line
//! it gets) or an executor thread, and the handshake until it is ready.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use coil_ipc::{PidWatch, Region, RingRecvError};
use coil_proto::{layout, Answer, Expect, Launch, Tag, UdfSpec};
use coil_worker::InterruptTarget;

use super::output::{log_lines, StderrTail};
use super::{Executor, Link};
use crate::config::Tuning;
use crate::error::StartError;
use crate::metrics::Counters;
use crate::ExecutionMode;

/// What it takes to start one executor (and so a pool of them).
pub(crate) struct Spawn {
    /// The mode the executors run in (after any fallback).
    pub mode: ExecutionMode,
    /// The runner's configuration, parsed.
    pub tuning: Tuning,
    /// `python.files`: directories and files a worker process puts on its
    /// `sys.path` after the UDF's own paths.
    pub files: Vec<PathBuf>,
    /// The UDF, with the paths its environment adds.
    pub spec: UdfSpec,
    /// How to start a worker process (unused for executor threads).
    pub command: WorkerCommand,
    /// The runner's counters (shared with a fallback pool).
    pub counters: Arc<Counters>,
    /// The region whose first header word holds the rate limit all of the
    /// runner's executors share (`spec.calls.rate`), if it has one.
    pub limiter: Option<Region>,
}

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

/// What a worker process is told (`coil_proto::Launch`, the one
/// definition the worker reads too): the descriptor of its rings (`fd`),
/// the UDF, with `python.files` after the spec's own paths, and the
/// message limit.
fn launch(fd: RawFd, limiter_fd: Option<RawFd>, spawn: &Spawn) -> Launch {
    let mut spec = spawn.spec.clone();
    spec.paths.extend(spawn.files.iter().cloned());
    Launch {
        max_message: spawn.tuning.max_message,
        limiter_fd,
        ..Launch::new(fd, spec)
    }
}

/// The environment variable that tells a worker its memory limit, so a
/// `MemoryError` can say which limit it hit.
pub(crate) const MEMORY_LIMIT_VAR: &str = "COIL_MEMORY_LIMIT";

/// Limits the data segment (heap and private mappings, `RLIMIT_DATA`) of
/// the process `cmd` starts to `bytes`: a UDF that allocates more gets
/// `MemoryError`, or its worker dies, and the host's memory is never the
/// one that runs out. The region the worker shares with the host is a
/// shared mapping, outside the limit.
fn limit_memory(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    cmd.env(MEMORY_LIMIT_VAR, bytes.to_string());
    let hook = move || {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_DATA, bytes, bytes)
            .map_err(std::io::Error::from)
    };
    // SAFETY: the hook runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it makes one `setrlimit` system
    // call, allocates nothing and takes no lock.
    unsafe { cmd.pre_exec(hook) };
}

impl Link {
    /// Starts executor `slot` as `spawn` says and waits until it is ready.
    pub(crate) fn start(slot: usize, spawn: &Spawn) -> Result<Link, StartError> {
        match spawn.mode {
            ExecutionMode::Process => Link::start_process(slot, spawn),
            _ => Link::start_thread(slot, spawn),
        }
    }

    /// An executor thread in this process, on the embedded interpreter or
    /// in a sub-interpreter of its own, behind a ring pair in private
    /// memory.
    fn start_thread(slot: usize, spawn: &Spawn) -> Result<Link, StartError> {
        let size = spawn.tuning.ring_size;
        let region = Region::create_private(&[size, size])?;
        let (theirs, spec, max) = (region.clone(), spawn.spec.clone(), spawn.tuning.max_message);
        let limiter = spawn.limiter.clone();
        // Column batches and results change hands here, not their bytes.
        let shelf = std::sync::Arc::new(coil_proto::Shelf::new());
        let theirs_shelf = Some(std::sync::Arc::clone(&shelf));
        let serve = match spawn.mode {
            ExecutionMode::SubInterpreter => coil_worker::serve_in_subinterpreter,
            _ => coil_worker::serve_in_process,
        };
        // The executor hands over where to raise `TimeoutError` in it before
        // it loads the UDF, so by the time it is ready the target is here.
        let (targets, target) = std::sync::mpsc::channel::<InterruptTarget>();
        let first_row = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let ours = std::sync::Arc::clone(&first_row);
        let handle = std::thread::Builder::new()
            .name(format!("coil-executor-{slot}"))
            .spawn(move || {
                let started = move |t: InterruptTarget| {
                    let _ = targets.send(t);
                };
                // What this thread says if the UDF crashes the process.
                let name = spec
                    .target
                    .rsplit_once(':')
                    .map_or(&*spec.target, |(_, f)| f);
                let _crash =
                    crate::crash::register(name, theirs.user_word(layout::WORD_PROGRESS), ours);
                if let Err(e) = serve(
                    &theirs,
                    &spec,
                    max,
                    limiter.as_ref(),
                    theirs_shelf,
                    &started,
                ) {
                    if !matches!(e, coil_worker::ServeError::Load(_)) {
                        tracing::error!(worker = slot, "executor thread stopped: {e}");
                    }
                }
            })
            .map_err(|source| StartError::Spawn {
                program: "an executor thread".into(),
                source,
            })?;
        let executor = Executor::Thread {
            handle: Some(handle),
            interrupt: None,
        };
        let mut link = Link::new(slot, executor, region, spawn);
        link.first_row = Some(first_row);
        link.shelf = Some(shelf);
        let mut link = link.ready_or_killed(spawn)?;
        if let Executor::Thread { interrupt, .. } = &mut link.executor {
            *interrupt = target.try_recv().ok();
        }
        Ok(link)
    }

    /// A `coil-worker` process behind a ring pair in a sealed memfd.
    fn start_process(slot: usize, spawn: &Spawn) -> Result<Link, StartError> {
        let size = spawn.tuning.ring_size;
        let region = Region::create_shared(&[size, size])?;
        let mut cmd = Command::new(&spawn.command.program);
        cmd.args(&spawn.command.args);
        let fd = region
            .inherit_into(&mut cmd)
            .expect("a shared region has a descriptor");
        let limiter_fd = spawn
            .limiter
            .as_ref()
            .and_then(|l| l.inherit_into(&mut cmd));
        // Column buffers are placed here instead of copied through the
        // rings; a worker that cannot have one still works through them.
        let arena = match spawn.tuning.arena_size {
            0 => None,
            size => match coil_ipc::Arena::create_shared(size / 2) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(
                        worker = slot,
                        "no arena for the worker ({e}): column batches go through its rings"
                    );
                    None
                }
            },
        };
        let mut launch = launch(fd, limiter_fd, spawn);
        launch.arena_fd = arena.as_ref().and_then(|a| a.inherit_into(&mut cmd));
        if let Some(limit) = spawn.tuning.memory_limit {
            limit_memory(&mut cmd, limit);
        }
        // Its own process group, which ends with it: whatever the UDF
        // forks is killed when the worker is stopped or replaced
        // (Link::kill, Link::shutdown), never left running after coil.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.args(launch.to_args())
            .envs(launch.env())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONFAULTHANDLER", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| StartError::Spawn {
            program: spawn.command.program.display().to_string(),
            source,
        })?;
        let pid = child.id();
        let stderr = StderrTail::default();
        let mut logs = Vec::new();
        if let Some(out) = child.stdout.take() {
            logs.push(log_lines(out, slot, pid, false, None));
        }
        if let Some(err) = child.stderr.take() {
            logs.push(log_lines(err, slot, pid, true, Some(stderr.clone())));
        }
        let executor = Executor::Process {
            child,
            logs,
            stderr,
        };
        let mut link = Link::new(slot, executor, region, spawn);
        link.arena = arena;
        if let Ok(p) = PidWatch::new(pid) {
            link.tx.set_peer_watch(p);
        }
        if let Ok(p) = PidWatch::new(pid) {
            link.rx.set_peer_watch(p);
        }
        let link = link.ready_or_killed(spawn)?;
        tracing::debug!(worker = slot, pid, "worker ready");
        Ok(link)
    }

    /// The link once its executor reported ready; an executor that did not
    /// is killed, and the reason returned.
    fn ready_or_killed(mut self, spawn: &Spawn) -> Result<Link, StartError> {
        match self.await_ready(spawn) {
            Ok(()) => Ok(self),
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    fn await_ready(&mut self, spawn: &Spawn) -> Result<(), StartError> {
        let timeout = spawn.tuning.start_timeout;
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
                returns,
                signature,
                gil,
                ..
            } => {
                self.returns = returns;
                self.signature = signature;
                self.gil = gil;
                Ok(())
            }
            Answer::LoadFailed { error, blocker } => Err(StartError::Load {
                target: spawn.spec.target.clone(),
                error,
                blocker,
            }),
            _ => unreachable!("Expect::Start decodes only start-up messages"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn spawn(spec: UdfSpec, files: Vec<PathBuf>) -> Spawn {
        let mut c = Config::default();
        c.set_pair("python.fn-execution.max-message-size=1048576")
            .unwrap();
        Spawn {
            mode: ExecutionMode::Process,
            tuning: Tuning::of(&c),
            files,
            spec,
            command: WorkerCommand::new("coil-worker"),
            counters: Arc::default(),
            limiter: None,
        }
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn a_worker_is_told_its_rings_udf_kind_and_limit_and_the_paths_in_order() {
        let mut spec = UdfSpec::new("udfs/inc.py:inc");
        spec.paths = vec!["a".into()];
        spec.sys_path = vec!["s".into()];
        spec.site_dirs = vec!["d".into()];
        let launch = launch(7, None, &spawn(spec, vec!["f".into()]));
        let args = strings(launch.to_args());
        assert_eq!(
            args,
            [
                "--fd",
                "7",
                "--udf",
                "udfs/inc.py:inc",
                "--kind",
                "scalar",
                "--max-message",
                "1048576",
                "--path",
                "a",
                "--path",
                "f",
                "--sys-path",
                "s",
                "--site-dir",
                "d",
            ]
        );
        // And the worker reads back exactly what the host meant.
        let read = Launch::from_args(args).unwrap();
        assert_eq!(read.spec.paths, launch.spec.paths);
        assert_eq!((read.fd, read.max_message), (7, 1_048_576));
    }

    #[test]
    fn a_declared_return_type_travels_as_the_hex_of_its_frame_bytes() {
        let spec = UdfSpec::new("u.py:f").returns(arrow_schema::DataType::Int64);
        let args = strings(launch(3, None, &spawn(spec, Vec::new())).to_args());
        let at = args.iter().position(|a| a == "--returns").unwrap();
        let bytes = coil_proto::Columns::type_to_bytes(&arrow_schema::DataType::Int64).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(args[at + 1], hex);
        assert_eq!(at + 2, args.len());
    }
}
