//! The runner: one API for every execution mode.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use coil_proto::UdfSpec;

use crate::config::Tuning;
use crate::env::PythonEnv;
use crate::link::{Spawn, WorkerCommand};
use crate::metrics::{Counters, Histograms, Metrics};
use crate::pool::Pool;
use crate::sched::batch_rows;
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
    /// The pool of the mode the runner started in.
    pool: Pool,
    /// Worker processes, once a sub-interpreter runner found at call time
    /// that its UDF cannot run in a sub-interpreter; from then on all work
    /// goes here.
    fallback: OnceLock<Pool>,
    /// How to start the fallback pool's workers (taken when it starts).
    fallback_command: Mutex<Option<FallbackCommand>>,
    pub(crate) counters: Arc<Counters>,
    config: Config,
    /// `config`, parsed once.
    pub(crate) tuning: Tuning,
    spec: UdfSpec,
    /// What the UDF's signature says, as its executors read it.
    signature: coil_proto::UdfSignature,
    /// The shared rate limit's region, for a fallback pool's workers too.
    limiter: Option<coil_ipc::Region>,
}

/// Finds the worker program, when process workers are first needed.
type CommandSource = Box<dyn FnOnce() -> Result<WorkerCommand, StartError> + Send>;

/// The worker program for a fall-back to process mode.
enum FallbackCommand {
    /// Not looked for yet.
    Find(CommandSource),
    /// Found.
    Found(WorkerCommand),
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("mode", &self.config.execution_mode())
            .field("udf", &self.spec.target)
            .finish()
    }
}

/// The environment the embedded (main) interpreter imports from, once a
/// `multi-thread` runner has set it: its `python`, or `None` for the
/// embedded CPython's own.
static MAIN_ENV: Mutex<Option<Option<PathBuf>>> = Mutex::new(None);

/// Claims the main interpreter's `sys.path` for `env`: the first
/// `multi-thread` runner sets it; later ones must ask for the same.
fn claim_main_interpreter(env: Option<&PythonEnv>) -> Result<(), StartError> {
    let asked = env.map(|e| e.executable.clone());
    let mut main = MAIN_ENV
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match &*main {
        None => {
            *main = Some(asked);
            Ok(())
        }
        Some(first) if *first == asked => Ok(()),
        Some(first) => {
            let name = |e: &Option<PathBuf>| match e {
                Some(p) => p.display().to_string(),
                None => format!(
                    "the embedded CPython's own site-packages ({})",
                    coil_worker::EMBEDDED_PYTHON
                ),
            };
            Err(StartError::EnvironmentConflict {
                first: name(first),
                asked: name(&asked),
            })
        }
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
        command: impl FnOnce() -> Result<WorkerCommand, StartError> + Send + 'static,
    ) -> Result<Runner, StartError> {
        if let Some(t) = &spec.returns {
            if !coil_proto::arrow_type_supported(&coil_proto::result_wire_type(t)) {
                return Err(StartError::UnsupportedReturnType(t.clone()));
            }
        }
        for (column, t) in spec.args.iter().flatten().enumerate() {
            if coil_proto::wire_type(t).is_none() {
                return Err(StartError::UnsupportedArgument {
                    column,
                    data_type: t.clone(),
                });
            }
        }
        let env = crate::env::resolve(config)?;
        let mut spec = spec;
        if let Some(env) = &env {
            spec.sys_path = env.sys_path.clone();
            spec.site_dirs = env.site_dirs.clone();
        }
        let mode = match (config.execution_mode(), spec.kind) {
            (ExecutionMode::Process, _) => ExecutionMode::Process,
            (ExecutionMode::SubInterpreter, _) if !coil_worker::SUBINTERPRETERS => {
                return Err(StartError::ModeUnavailable {
                    mode: ExecutionMode::SubInterpreter,
                    reason: "it needs a coil built against CPython >= 3.13: on 3.12 datetime, \
                             decimal and ctypes cannot load in own-GIL sub-interpreters and \
                             standard modules crashed inside them, and older versions have none \
                             (see docs/python.md)",
                })
            }
            (ExecutionMode::MultiThread, _) => match claim_main_interpreter(env.as_ref()) {
                Ok(()) => ExecutionMode::MultiThread,
                Err(e) if config.strict() => return Err(e),
                Err(e) => {
                    tracing::warn!("{e}; running this UDF in process mode instead");
                    ExecutionMode::Process
                }
            },
            (m, _) => m,
        };
        spec.calls = config.call_policy();
        if config.memory_limit().is_some() && mode != ExecutionMode::Process {
            tracing::warn!(
                "python.worker.memory-limit bounds worker processes only: in {mode} mode the executors share this process's memory, and nothing limits a UDF's"
            );
        }
        // One rate limit for every executor of this runner, fallback pool
        // included: a word in shared memory they all map.
        let limiter = match spec.calls.rate {
            Some(_) => Some(coil_ipc::Region::create_shared(&[coil_ipc::MIN_CAPACITY])?),
            None => None,
        };
        let counters = Arc::new(Counters::default());
        let tuning = Tuning::of(config);
        let mut command: Option<CommandSource> = Some(Box::new(command));
        let mut start = |mode: ExecutionMode| -> Result<Pool, StartError> {
            let command = if mode == ExecutionMode::Process {
                (command.take().expect("process mode starts once"))()?
            } else {
                WorkerCommand::new("coil-worker")
            };
            Pool::start(Spawn {
                mode,
                files: config.files(),
                tuning: tuning.clone(),
                spec: spec.clone(),
                command,
                counters: Arc::clone(&counters),
                limiter: limiter.clone(),
            })
        };
        let pool = match start(mode) {
            Err(StartError::Load {
                error,
                target,
                blocker,
            }) if mode == ExecutionMode::SubInterpreter => match blocker {
                Some(module) if tuning.strict => {
                    return Err(StartError::SubInterpreterIncompatible { target, module })
                }
                Some(module) => {
                    tracing::warn!(
                        "UDF {target} imports {module}, which cannot load in a sub-interpreter: running it in process mode"
                    );
                    start(ExecutionMode::Process)?
                }
                None => {
                    return Err(StartError::Load {
                        error,
                        target,
                        blocker: None,
                    })
                }
            },
            other => other?,
        };
        // Free-threaded CPython: an extension module the UDF imports may
        // have turned the GIL back on, and multi-thread executors then take
        // turns. Process and sub-interpreter executors do not share it.
        if let (Some(module), ExecutionMode::MultiThread) = (&pool.gil, mode) {
            if tuning.strict {
                return Err(StartError::GilEnabled {
                    target: spec.target.clone(),
                    module: module.clone(),
                });
            }
            tracing::warn!(
                "UDF {}: {}",
                spec.target,
                coil_worker::gil_message(module, " when it loaded")
            );
        }
        // Not declared: the type the UDF's return annotation names, as its
        // executors read it.
        if spec.returns.is_none() {
            spec.returns = pool.returns.clone();
        }
        let signature = pool.signature.clone();
        Ok(Runner {
            signature,
            pool,
            fallback: OnceLock::new(),
            fallback_command: Mutex::new(command.map(FallbackCommand::Find)),
            counters,
            config: config.clone(),
            tuning,
            spec,
            limiter,
        })
    }

    /// The pool new work goes to.
    pub(crate) fn active(&self) -> &Pool {
        self.fallback.get().unwrap_or(&self.pool)
    }

    /// Switches this runner to process mode for the rest of its life: the
    /// UDF imports `module`, which cannot load in a sub-interpreter (found
    /// when it was called). The first caller starts the worker processes
    /// and logs one warning; the sub-interpreters are shut down as their
    /// streams give them back.
    pub(crate) fn fall_back(&self, module: &str) -> Result<&Pool, RunError> {
        if let Some(pool) = self.fallback.get() {
            return Ok(pool);
        }
        let mut command = self.fallback_command.lock().expect("fallback lock");
        if let Some(pool) = self.fallback.get() {
            return Ok(pool);
        }
        let failed = |source: StartError| RunError::Fallback {
            module: module.to_string(),
            source: Box::new(source),
        };
        // Found once; a later attempt (after a failed start) reuses it.
        let program = match command.take() {
            Some(FallbackCommand::Found(program)) => program,
            Some(FallbackCommand::Find(find)) => find().map_err(failed)?,
            None => WorkerCommand::locate().map_err(failed)?,
        };
        *command = Some(FallbackCommand::Found(program.clone()));
        tracing::warn!(
            "UDF {} imports {module}, which cannot load in a sub-interpreter: running it in process mode from now on",
            self.spec.target
        );
        let pool = Pool::start(Spawn {
            mode: ExecutionMode::Process,
            files: self.config.files(),
            tuning: self.tuning.clone(),
            spec: self.spec.clone(),
            command: program,
            counters: Arc::clone(&self.counters),
            limiter: self.limiter.clone(),
        })
        .map_err(failed)?;
        let pool = self.fallback.get_or_init(|| pool);
        self.pool.retire();
        Ok(pool)
    }

    /// The mode the UDF runs in: the configured one, or `process` where
    /// the configured mode cannot run this UDF (vectorized UDFs, or a UDF
    /// whose imports cannot load in a sub-interpreter, found when it was
    /// loaded or called).
    pub fn mode(&self) -> ExecutionMode {
        self.active().mode()
    }

    /// The UDF it runs.
    pub fn spec(&self) -> &UdfSpec {
        &self.spec
    }

    /// What the UDF's Python signature says, as its executors read it
    /// when it loaded: its parameters and the Arrow types their
    /// annotations name, and whether it is written for whole columns
    /// (`pd.Series`, `np.ndarray`, `pa.Array`). An engine that plans with
    /// types (SQL) types a UDF nobody declared types for from this and
    /// from [`UdfSpec::returns`], which the runner fills from the return
    /// annotation.
    pub fn signature(&self) -> &coil_proto::UdfSignature {
        &self.signature
    }

    /// On a free-threaded CPython whose GIL was on once the UDF loaded:
    /// the module whose import turned it on ("" if none did); `None` while
    /// it is off, and always on a CPython with a GIL
    /// ([`coil_worker::FREE_THREADED`]). `coil env --udf` and `coil bench`
    /// report it.
    pub fn gil_enabled_by(&self) -> Option<&str> {
        self.active().gil.as_deref()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Process ids of the workers not running a batch right now (all of
    /// them between calls): for monitoring, e.g. their memory.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.active().idle_pids()
    }

    /// How many of the idle executors are running (worker processes or
    /// executor threads): fewer than `python.worker-count` once some sat
    /// idle past `python.worker.idle-timeout` (the next batch for one
    /// starts it again).
    pub fn idle_executors(&self) -> usize {
        self.active().idle_running()
    }

    /// What this runner has done so far: counts, and where the time went.
    pub fn metrics(&self) -> Metrics {
        let c = &self.counters;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let d = |a: &std::sync::atomic::AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
        Metrics {
            rows_in: n(&c.rows_in),
            rows_out: n(&c.rows_out),
            batches: n(&c.batches),
            errors: n(&c.errors),
            timeouts: n(&c.timeouts),
            worker_restarts: n(&c.restarts),
            attempts: n(&c.attempts),
            retries: n(&c.retries),
            encode: d(&c.encode_ns),
            decode: d(&c.decode_ns),
            worker_decode: d(&c.worker_decode_ns),
            python: d(&c.python_ns),
            worker_encode: d(&c.worker_encode_ns),
            transport: d(&c.transport_ns),
        }
    }

    /// The per-batch time distributions so far (latency, encode, decode,
    /// executor decode, Python, executor encode, transport).
    pub fn histograms(&self) -> Histograms {
        self.counters
            .histograms
            .lock()
            .expect("histograms lock")
            .clone()
    }

    /// Worker processes replaced so far (crashed, hung or misbehaving).
    pub fn restarts(&self) -> u64 {
        self.counters.restarts.load(Ordering::Relaxed)
    }

    /// The rows in the next batch (see [`RowStream::batch_size`](crate::RowStream::batch_size)).
    pub(crate) fn batch_size(&self) -> usize {
        self.batch_size_up_to(self.tuning.bundle_size)
    }

    /// Rows in the next column batch (Arrow input): as [`Runner::batch_size`],
    /// bounded by `python.fn-execution.arrow.batch.size` unless
    /// `bundle.size` was set. The caller already made its batch: a
    /// DataFusion batch (8,192 rows) goes to one call whole, not cut into
    /// row-sized pieces that each cost a round trip.
    pub(crate) fn column_batch_size(&self) -> usize {
        let t = &self.tuning;
        let bound = if t.bundle_fixed {
            t.bundle_size
        } else {
            t.arrow_batch_size
        };
        self.batch_size_up_to(bound)
    }

    fn batch_size_up_to(&self, bound: usize) -> usize {
        let t = &self.tuning;
        // Vectorized UDFs see the same batches run to run unless asked:
        // their answers may depend on which rows arrive together.
        let adaptive = t
            .bundle_adaptive
            .unwrap_or(self.spec.kind != coil_proto::UdfKind::Vectorized);
        let fixed = t.bundle_fixed || !adaptive;
        let rows = batch_rows(bound, fixed, t.bundle_target_time, self.counters.row_cost());
        if self.signature.asynchronous && !fixed {
            // An awaiting row costs little time of its own: batches sized
            // by time alone could hold fewer rows than the executor keeps
            // in flight. Two batches per executor, each of at least twice
            // its concurrency, keep every slot busy across batch ends.
            let least = 2 * self.spec.calls.concurrency() as usize;
            rows.max(least)
        } else {
            rows
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built against CPython 3.13 this starts sub-interpreters (and fails
    /// loading a UDF that does not exist); built against 3.12 (`.ci/run`
    /// runs this test so too) it refuses the mode before starting anything.
    #[test]
    fn sub_interpreter_mode_needs_cpython_3_13() {
        let config = Config::builder()
            .set(crate::EXECUTION_MODE, "sub-interpreter")
            .and_then(|b| b.set(crate::WORKER_COUNT, "1"))
            .unwrap()
            .build();
        let started = Runner::with_worker_command(
            &config,
            UdfSpec::new("no/such/udf.py:f"),
            WorkerCommand::new("/nonexistent"),
        );
        match (coil_worker::SUBINTERPRETERS, started) {
            (true, Err(StartError::Load { error, .. })) => {
                assert_eq!(error.type_name, "FileNotFoundError")
            }
            (false, Err(e @ StartError::ModeUnavailable { .. })) => {
                assert!(e.to_string().contains("3.13"), "{e}")
            }
            (can, other) => panic!("sub-interpreters {can}: unexpected {other:?}"),
        }
    }
}
