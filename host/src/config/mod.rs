//! Configuration: Flink-style string keys with typed accessors.
//!
//! Every key coil understands is in [`KEYS`], with its default and meaning;
//! setting an unknown key or a bad value is an error that names what is
//! valid.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

mod values;
use values::*;

/// Where the Python code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutionMode {
    /// Pooled `coil-worker` processes behind shared-memory rings.
    #[default]
    Process,
    /// Executor threads on the host's embedded interpreter (one GIL).
    MultiThread,
    /// One own-GIL sub-interpreter per executor thread.
    SubInterpreter,
}

impl ExecutionMode {
    /// The value as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Process => "process",
            ExecutionMode::MultiThread => "multi-thread",
            ExecutionMode::SubInterpreter => "sub-interpreter",
        }
    }
}

impl fmt::Display for ExecutionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecutionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "process" => Ok(ExecutionMode::Process),
            "multi-thread" | "thread" => Ok(ExecutionMode::MultiThread),
            "sub-interpreter" => Ok(ExecutionMode::SubInterpreter),
            _ => Err("process, multi-thread (or thread), sub-interpreter".into()),
        }
    }
}

/// A configuration key: its name, default and meaning.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The key.
    pub name: &'static str,
    /// Its default, as a string (`"cores"`: the number of cores).
    pub default: &'static str,
    /// What it means and what values it takes.
    pub doc: &'static str,
    check: fn(&str) -> Result<(), String>,
}

/// `python.execution-mode`.
pub const EXECUTION_MODE: &str = "python.execution-mode";
/// `python.execution-mode.strict`.
pub const EXECUTION_MODE_STRICT: &str = "python.execution-mode.strict";
/// `python.worker-count`.
pub const WORKER_COUNT: &str = "python.worker-count";
/// `python.fn-execution.bundle.size`.
pub const BUNDLE_SIZE: &str = "python.fn-execution.bundle.size";
/// `python.fn-execution.arrow.batch.size`.
pub const ARROW_BATCH_SIZE: &str = "python.fn-execution.arrow.batch.size";
/// `python.fn-execution.bundle.time`.
pub const BUNDLE_TIME: &str = "python.fn-execution.bundle.time";
/// `python.fn-execution.bundle.adaptive`.
pub const BUNDLE_ADAPTIVE: &str = "python.fn-execution.bundle.adaptive";
/// `python.fn-execution.bundle.target-time`.
pub const BUNDLE_TARGET_TIME: &str = "python.fn-execution.bundle.target-time";
/// `python.files`.
pub const FILES: &str = "python.files";
/// `python.fn-execution.ring.size`.
pub const RING_SIZE: &str = "python.fn-execution.ring.size";
/// `python.fn-execution.arena.size`.
pub const ARENA_SIZE: &str = "python.fn-execution.arena.size";
/// `python.fn-execution.max-message-size`.
pub const MAX_MESSAGE_SIZE: &str = "python.fn-execution.max-message-size";
/// `python.fn-execution.timeout`.
pub const TIMEOUT: &str = "python.fn-execution.timeout";
/// `python.fn-execution.retries`.
pub const RETRIES: &str = "python.fn-execution.retries";
/// `python.worker.idle-timeout`.
pub const IDLE_TIMEOUT: &str = "python.worker.idle-timeout";
/// `python.worker.memory-limit`.
pub const MEMORY_LIMIT: &str = "python.worker.memory-limit";
/// `python.worker.max-processes`.
pub const MAX_PROCESSES: &str = "python.worker.max-processes";
/// `python.worker.start-timeout`.
pub const START_TIMEOUT: &str = "python.worker.start-timeout";
/// `python.fn-execution.on-error`.
pub const ON_ERROR: &str = "python.fn-execution.on-error";
/// `python.fn-execution.async.max-concurrency`.
pub const ASYNC_MAX_CONCURRENCY: &str = "python.fn-execution.async.max-concurrency";
/// `python.fn-execution.retry.max-attempts`.
pub const RETRY_MAX_ATTEMPTS: &str = "python.fn-execution.retry.max-attempts";
/// `python.fn-execution.retry.on`.
pub const RETRY_ON: &str = "python.fn-execution.retry.on";
/// `python.fn-execution.retry.initial-delay`.
pub const RETRY_INITIAL_DELAY: &str = "python.fn-execution.retry.initial-delay";
/// `python.fn-execution.retry.max-delay`.
pub const RETRY_MAX_DELAY: &str = "python.fn-execution.retry.max-delay";
/// `python.fn-execution.rate-limit`.
pub const RATE_LIMIT: &str = "python.fn-execution.rate-limit";
/// `python.fn-execution.rate-limit.burst`.
pub const RATE_LIMIT_BURST: &str = "python.fn-execution.rate-limit.burst";
/// `python.executable`.
pub const EXECUTABLE: &str = "python.executable";
/// `python.requirements`.
pub const REQUIREMENTS: &str = "python.requirements";
/// `python.env.max-age`.
pub const ENV_MAX_AGE: &str = "python.env.max-age";
/// `python.env.cache-dir`.
pub const ENV_CACHE_DIR: &str = "python.env.cache-dir";

/// What a row that fails does to the rest (`python.fn-execution.on-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// The row's batch fails: its error takes the place of the batch's
    /// results, and `Runner::call` and `coil run` stop there.
    #[default]
    Fail,
    /// Only the row fails: every other row is answered, in order, and the
    /// failed row's place holds its own error ([`RunError::Row`](crate::RunError::Row)).
    /// `coil run` leaves the row out of its output and logs it.
    Skip,
    /// As `Skip` for a host; `coil run` also writes each failed row, with
    /// its input and error, to the file given by `--errors`.
    DeadLetter,
}

impl OnError {
    /// The value as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Fail => "fail",
            OnError::Skip => "skip",
            OnError::DeadLetter => "dead-letter",
        }
    }
}

impl fmt::Display for OnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnError {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(OnError::Fail),
            "skip" => Ok(OnError::Skip),
            "dead-letter" | "deadletter" | "dead_letter" => Ok(OnError::DeadLetter),
            _ => Err("fail, skip or dead-letter".into()),
        }
    }
}

/// Every key coil understands.
pub const KEYS: &[Key] = &[
    Key {
        name: EXECUTION_MODE,
        default: "process",
        doc: "where UDFs run: process (pooled worker processes), multi-thread (host threads, one GIL) or sub-interpreter (one own-GIL interpreter per thread); case-insensitive, `thread` is accepted for multi-thread",
        check: check_mode,
    },
    Key {
        name: EXECUTION_MODE_STRICT,
        default: "false",
        doc: "true: a UDF that cannot run in the chosen mode is an error; false: it falls back to process mode with a warning",
        check: check_bool,
    },
    Key {
        name: WORKER_COUNT,
        default: "cores",
        doc: "worker processes (or executor threads); a positive integer, or cores: the number of cores",
        check: check_workers,
    },
    Key {
        name: BUNDLE_SIZE,
        default: "1000",
        doc: "the most rows per batch sent to a worker, a positive integer; unless set, batches are sized from the UDF's measured time per row (see bundle.target-time) up to this bound, except a vectorized UDF's, which hold this many (see bundle.adaptive); set, every batch holds this many rows (column batches too; unset, they are bounded by arrow.batch.size instead)",
        check: check_count,
    },
    Key {
        name: ARROW_BATCH_SIZE,
        default: "65536",
        doc: "the most rows per column batch (Arrow input: Runner::call_arrow, Arrow streams, SQL) while bundle.size is not set, a positive integer: a record batch up to this long goes to one call whole (a vectorized UDF's batches hold this many rows of the caller's batch; a scalar UDF's are sized from its measured time per row up to it)",
        check: check_count,
    },
    Key {
        name: BUNDLE_TIME,
        default: "1000",
        doc: "how long a streaming runner waits before it sends a partial batch; a duration",
        check: check_millis,
    },
    Key {
        name: BUNDLE_ADAPTIVE,
        default: "auto",
        doc: "whether batches are sized from the measured time per row (true) or hold bundle.size rows each (false); auto: false for vectorized UDFs, whose answers may depend on the rows a call sees together (a batch-wise statistic), true for the others, whose answers cannot; a set bundle.size always fixes the size",
        check: check_adaptive,
    },
    Key {
        name: BUNDLE_TARGET_TIME,
        default: "5",
        doc: "executor time a batch aims at while bundle.size is not set: batches hold that long's worth of rows at the measured time per row (4 rows until a first batch was measured), so every worker gets work however small the input; a positive duration",
        check: check_millis_positive,
    },
    Key {
        name: FILES,
        default: "",
        doc: "comma-separated directories put on the UDF's sys.path, in order; a runner does not start when one does not exist",
        check: check_any,
    },
    Key {
        name: EXECUTABLE,
        default: "",
        doc: "the python of a virtual environment (or another installation) whose packages UDFs import, in every mode: coil uses the sys.path that python has (and runs its .pth files); its major.minor must be the embedded CPython's",
        check: check_any,
    },
    Key {
        name: REQUIREMENTS,
        default: "",
        doc: "a pip requirements file: coil makes a virtual environment from the embedded CPython, installs it, caches it under python.env.cache-dir by the file's content and the Python version, and uses it as python.executable (not both)",
        check: check_any,
    },
    Key {
        name: ENV_CACHE_DIR,
        default: "",
        doc: "where python.requirements environments are kept; default $XDG_CACHE_HOME/coil/envs, else ~/.cache/coil/envs",
        check: check_any,
    },
    Key {
        name: ENV_MAX_AGE,
        default: "30d",
        doc: "how long a cached python.requirements environment may go without a runner starting with it before coil env --prune removes it; a duration",
        check: check_millis,
    },
    Key {
        name: RING_SIZE,
        default: "4m",
        doc: "bytes of each ring between host and worker (one each way): a power of two from 4k to 1g, with an optional k/m/g suffix; batches larger than a ring travel through it in pieces",
        check: check_ring,
    },
    Key {
        name: ARENA_SIZE,
        default: "64m",
        doc: "bytes of shared memory beside each worker process's rings (half each way) where column batches' fixed-width values and results are placed, copied once and read in place; when it is full they travel through the rings; 0 turns it off; from 64k to 16g, with an optional k/m/g suffix",
        check: check_arena,
    },
    Key {
        name: MAX_MESSAGE_SIZE,
        default: "256m",
        doc: "bytes of the largest batch or batch of results; larger ones than a ring travel through it in pieces; from 4k to 4g, with an optional k/m/g suffix",
        check: check_message,
    },
    Key {
        name: TIMEOUT,
        default: "300000",
        doc: "how long a batch may run before the row running is stopped (a worker process is killed and replaced; an executor thread gets TimeoutError raised in it) and the caller gets a timeout error; for an async UDF, how long one call may take before it is cancelled and its row fails with a timeout while the worker goes on (a worker whose event loop stops turning for this long is stopped as a hung one); a duration, 0 disables",
        check: check_millis,
    },
    Key {
        name: ON_ERROR,
        default: "fail",
        doc: "what a failed row (the UDF raised, timed out, killed its worker, or returned a value coil cannot hold) does: fail (the run stops there: every row before it is answered, for a vectorized UDF every batch before its batch, and its error takes its place), skip (only that row fails: every other row is answered in order and the row's own error takes its place), dead-letter (as skip; coil run also writes failed rows to --errors FILE)",
        check: check_on_error,
    },
    Key {
        name: RETRIES,
        default: "0",
        doc: "batches whose worker died: 0 reports them as failed, 1 retries each once on a fresh worker (under on-error=skip, the row it died on then fails alone and the rest of its batch runs again)",
        check: check_retries,
    },
    Key {
        name: ASYNC_MAX_CONCURRENCY,
        default: "64",
        doc: "rows an async UDF (async def) keeps in flight in each executor, across batches; a positive integer; setting it for a sync UDF is an error",
        check: check_count,
    },
    Key {
        name: RETRY_MAX_ATTEMPTS,
        default: "1",
        doc: "calls of one row at most, for sync and async UDFs: 1 never retries; a row whose call raises an exception named in python.fn-execution.retry.on (or coil.RetryAfter) is called again while attempts remain; the last error then goes to on-error with the attempt count",
        check: check_count,
    },
    Key {
        name: RETRY_ON,
        default: "",
        doc: "exception classes a failed call is retried on, comma-separated, matched with isinstance (so subclasses too): builtins (ConnectionError,TimeoutError), dotted names (httpx.ConnectError) or names the UDF's module defines or imports; empty: only coil.RetryAfter is retried",
        check: check_exception_names,
    },
    Key {
        name: RETRY_INITIAL_DELAY,
        default: "100ms",
        doc: "the wait before the first retry; each next one doubles, up to python.fn-execution.retry.max-delay, with +-25% jitter; a duration",
        check: check_millis,
    },
    Key {
        name: RETRY_MAX_DELAY,
        default: "60s",
        doc: "the longest wait between two attempts; a coil.RetryAfter asking for longer fails its row; a duration, at least the initial delay",
        check: check_millis,
    },
    Key {
        name: RATE_LIMIT,
        default: "0",
        doc: "calls per second all of a UDF's executors (processes or threads) make together at most, kept in shared memory; retries count; a positive number (0.5 is one call every 2 s), 0 for no limit",
        check: check_rate,
    },
    Key {
        name: RATE_LIMIT_BURST,
        default: "1",
        doc: "calls the rate limit lets start at once after a pause; a positive integer",
        check: check_count,
    },
    Key {
        name: IDLE_TIMEOUT,
        default: "10min",
        doc: "how long a worker may sit idle (no batch) before it is ended; the next batch for it starts it again. Bounds the processes of a long-running host or Ballista executor that has seen many UDFs; a duration, 0 keeps workers until the runner stops",
        check: check_millis,
    },
    Key {
        name: MEMORY_LIMIT,
        default: "0",
        doc: "the most memory each worker process may allocate (its data segment: heap and private mappings, RLIMIT_DATA), in bytes with an optional k/m/g suffix, from 64m; 0 for no limit. A UDF that asks for more gets MemoryError in its row (the message names the limit) or, if the allocation is not Python's, its worker dies and is replaced; the host is never the one to run out. Executor threads (multi-thread, sub-interpreter) share the host's memory: this bounds nothing there, and starting such a runner with it set logs a warning",
        check: check_memory_limit,
    },
    Key {
        name: MAX_PROCESSES,
        default: "0",
        doc: "the most worker processes this host keeps across all its runners (every UDF of a SQL session, of a Ballista executor); when a new one would pass it, the worker idle the longest (of any UDF) is ended first, and if none is idle the start waits for one, up to python.worker.start-timeout, then fails saying so. Each runner holds to its own setting; 0 for no limit",
        check: check_max_processes,
    },
    Key {
        name: START_TIMEOUT,
        default: "60000",
        doc: "how long a worker may take to start and load the UDF; a duration",
        check: check_millis,
    },
];

/// A configuration key or value that coil does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The key is not one coil knows. When it is a key spelled with `_`
    /// for `-` (as SQL spells it), the message says which key to write.
    #[error("unknown configuration key {key:?}; {}", unknown_key_hint(key))]
    UnknownKey {
        /// The key given.
        key: String,
    },
    /// The value is not valid for the key.
    #[error("bad value {value:?} for {key}: expected {expected}")]
    BadValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What the key accepts.
        expected: String,
    },
    /// A `KEY=VALUE` pair without `=`.
    #[error("expected KEY=VALUE, got {0:?}")]
    NotAPair(String),
}

/// What an unknown key's error says: the key meant, when `key` is a
/// known key with `_` for `-`; else every valid key.
fn unknown_key_hint(key: &str) -> String {
    let dashed = key.trim().replace('_', "-");
    match KEYS.iter().find(|k| k.name == dashed) {
        Some(k) if dashed != key => format!(
            "write {} (coil's keys are spelled with '-'; '_' for '-' is only SQL's SET spelling)",
            k.name
        ),
        _ => format!(
            "valid keys: {}",
            KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A validated configuration. Build it with [`Config::builder`] or
/// [`Config::set`]; read it with the typed accessors.
///
/// # Examples
///
/// ```
/// use coil_host::{Config, ExecutionMode};
/// # fn main() -> Result<(), coil_host::ConfigError> {
/// let config = Config::builder()
///     .set("python.execution-mode", "PROCESS")?
///     .set("python.worker-count", "2")?
///     .build();
/// assert_eq!(config.execution_mode(), ExecutionMode::Process);
/// assert_eq!(config.worker_count(), 2);
/// assert!(Config::builder().set("python.worker-count", "none").is_err());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    values: BTreeMap<String, String>,
}

/// Builds a [`Config`], checking each key and value as it is set.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Sets `key` to `value`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the valid keys or values.
    pub fn set(mut self, key: &str, value: &str) -> Result<Self, ConfigError> {
        self.config.set(key, value)?;
        Ok(self)
    }

    /// The configuration.
    pub fn build(self) -> Config {
        self.config
    }
}

impl Config {
    /// An empty builder: every key at its default.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the valid keys or values.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let k = KEYS
            .iter()
            .find(|k| k.name == key)
            .ok_or_else(|| ConfigError::UnknownKey {
                key: key.to_string(),
            })?;
        (k.check)(value).map_err(|expected| ConfigError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        })?;
        self.values.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// Sets a `KEY=VALUE` pair, as `--conf` takes it.
    ///
    /// # Errors
    ///
    /// [`ConfigError`].
    pub fn set_pair(&mut self, pair: &str) -> Result<(), ConfigError> {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ConfigError::NotAPair(pair.to_string()))?;
        self.set(k.trim(), v)
    }

    /// The value set for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    fn typed<T>(&self, key: &str, parse: fn(&str) -> Result<T, String>) -> T {
        let default = KEYS
            .iter()
            .find(|k| k.name == key)
            .expect("a known key")
            .default;
        let v = self.get(key).unwrap_or(default);
        parse(v).expect("values are checked when set, defaults are valid")
    }

    /// `python.execution-mode`.
    pub fn execution_mode(&self) -> ExecutionMode {
        self.typed(EXECUTION_MODE, str::parse)
    }

    /// `python.execution-mode.strict`.
    pub fn strict(&self) -> bool {
        self.typed(EXECUTION_MODE_STRICT, parse_bool)
    }

    /// `python.worker-count`; `cores` (the default) is the number of cores.
    pub fn worker_count(&self) -> usize {
        self.typed(WORKER_COUNT, parse_workers)
    }

    /// `python.fn-execution.bundle.size`.
    pub fn bundle_size(&self) -> usize {
        self.typed(BUNDLE_SIZE, parse_count)
    }

    /// `python.fn-execution.arrow.batch.size`.
    pub fn arrow_batch_size(&self) -> usize {
        self.typed(ARROW_BATCH_SIZE, parse_count)
    }

    /// Whether `python.fn-execution.bundle.size` was set: then every batch
    /// holds that many rows; otherwise it is an upper bound and batches are
    /// sized from the measured time per row.
    pub fn bundle_size_is_fixed(&self) -> bool {
        self.get(BUNDLE_SIZE).is_some()
    }

    /// `python.fn-execution.bundle.adaptive`: `None` for auto (adaptive
    /// unless the UDF is vectorized).
    pub fn bundle_adaptive(&self) -> Option<bool> {
        self.typed(BUNDLE_ADAPTIVE, parse_adaptive)
    }

    /// `python.fn-execution.bundle.target-time`.
    pub fn bundle_target_time(&self) -> Duration {
        Duration::from_millis(self.typed(BUNDLE_TARGET_TIME, parse_millis))
    }

    /// `python.fn-execution.bundle.time`.
    pub fn bundle_time(&self) -> Duration {
        Duration::from_millis(self.typed(BUNDLE_TIME, parse_millis))
    }

    /// `python.files`.
    pub fn files(&self) -> Vec<PathBuf> {
        self.get(FILES)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    /// `python.fn-execution.ring.size`, in bytes.
    pub fn ring_size(&self) -> usize {
        self.typed(RING_SIZE, parse_ring_size)
    }

    /// `python.fn-execution.arena.size`, in bytes (0: no arena).
    pub fn arena_size(&self) -> usize {
        self.typed(ARENA_SIZE, parse_arena_size)
    }

    /// `python.fn-execution.max-message-size`, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.typed(MAX_MESSAGE_SIZE, parse_message_size)
    }

    /// `python.fn-execution.timeout`; `None` when disabled.
    pub fn timeout(&self) -> Option<Duration> {
        Some(self.typed(TIMEOUT, parse_millis))
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis)
    }

    /// `python.fn-execution.retries`.
    pub fn retries(&self) -> u32 {
        self.typed(RETRIES, |v| {
            v.trim().parse::<u32>().map_err(|e| e.to_string())
        })
    }

    /// `python.worker.idle-timeout`; `None` when workers stay.
    pub fn idle_timeout(&self) -> Option<Duration> {
        Some(self.typed(IDLE_TIMEOUT, parse_millis))
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis)
    }

    /// `python.worker.max-processes`; 0 for no limit.
    pub fn max_processes(&self) -> usize {
        self.typed(MAX_PROCESSES, parse_max_processes)
    }

    /// `python.worker.memory-limit`, in bytes; `None` for no limit.
    pub fn memory_limit(&self) -> Option<u64> {
        self.typed(MEMORY_LIMIT, parse_memory_limit)
    }

    /// `python.worker.start-timeout`.
    pub fn start_timeout(&self) -> Duration {
        Duration::from_millis(self.typed(START_TIMEOUT, parse_millis))
    }

    /// `python.executable`, if set.
    pub fn executable(&self) -> Option<PathBuf> {
        self.get(EXECUTABLE)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
    }

    /// `python.requirements`, if set.
    pub fn requirements(&self) -> Option<PathBuf> {
        self.get(REQUIREMENTS)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from)
    }

    /// `python.env.cache-dir`: as set, else `$XDG_CACHE_HOME/coil/envs`,
    /// else `~/.cache/coil/envs` (`None` with neither variable set).
    pub fn env_cache_dir(&self) -> Option<PathBuf> {
        if let Some(v) = self.get(ENV_CACHE_DIR).filter(|v| !v.trim().is_empty()) {
            return Some(PathBuf::from(v));
        }
        let var = |k| std::env::var_os(k).filter(|v| !v.is_empty());
        var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("coil").join("envs"))
    }

    /// `python.env.max-age`.
    pub fn env_max_age(&self) -> Duration {
        Duration::from_millis(self.typed(ENV_MAX_AGE, parse_millis))
    }

    /// `python.fn-execution.on-error`.
    pub fn on_error(&self) -> OnError {
        self.typed(ON_ERROR, str::parse)
    }

    /// How executors call the UDF: `python.fn-execution.retry.*`,
    /// `python.fn-execution.async.max-concurrency`, the timeout (per call,
    /// for an async UDF) and `python.fn-execution.rate-limit[.burst]`.
    pub fn call_policy(&self) -> coil_proto::CallPolicy {
        let millis = |key| Duration::from_millis(self.typed(key, parse_millis));
        let count = |key| u32::try_from(self.typed(key, parse_count)).unwrap_or(u32::MAX);
        let rate = self.typed(RATE_LIMIT, parse_rate);
        coil_proto::CallPolicy {
            max_attempts: count(RETRY_MAX_ATTEMPTS),
            retry_on: self.typed(RETRY_ON, parse_exception_names),
            initial_delay: millis(RETRY_INITIAL_DELAY),
            max_delay: millis(RETRY_MAX_DELAY),
            max_concurrency: self
                .get(ASYNC_MAX_CONCURRENCY)
                .map(|_| count(ASYNC_MAX_CONCURRENCY)),
            timeout: self.timeout(),
            rate: (rate > 0.0).then(|| coil_proto::RateLimit {
                interval: Duration::from_secs_f64(1.0 / rate),
                burst: count(RATE_LIMIT_BURST),
            }),
        }
    }
}

/// A configuration's values, parsed once for a runner (the hot path never
/// parses a key).
#[derive(Debug, Clone)]
pub(crate) struct Tuning {
    pub strict: bool,
    pub workers: usize,
    pub bundle_size: usize,
    /// `python.fn-execution.arrow.batch.size`: the bound of column
    /// batches while `bundle.size` is not set.
    pub arrow_batch_size: usize,
    pub bundle_fixed: bool,
    /// `python.fn-execution.bundle.adaptive`; `None`: auto.
    pub bundle_adaptive: Option<bool>,
    pub bundle_target_time: Duration,
    pub bundle_time: Duration,
    pub ring_size: usize,
    /// `python.fn-execution.arena.size`, bytes (0: none).
    pub arena_size: usize,
    pub max_message: usize,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub start_timeout: Duration,
    /// `python.worker.memory-limit`, bytes.
    pub memory_limit: Option<u64>,
    /// `python.worker.idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// `python.worker.max-processes` (0: no limit).
    pub max_processes: usize,
    /// A row fails alone (`on-error` is `skip` or `dead-letter`).
    pub per_row: bool,
}

impl Tuning {
    pub fn of(c: &Config) -> Tuning {
        Tuning {
            strict: c.strict(),
            workers: c.worker_count(),
            bundle_size: c.bundle_size(),
            arrow_batch_size: c.arrow_batch_size(),
            bundle_fixed: c.bundle_size_is_fixed(),
            bundle_adaptive: c.bundle_adaptive(),
            bundle_target_time: c.bundle_target_time(),
            bundle_time: c.bundle_time(),
            ring_size: c.ring_size(),
            arena_size: c.arena_size(),
            max_message: c.max_message_size(),
            timeout: c.timeout(),
            retries: c.retries(),
            start_timeout: c.start_timeout(),
            memory_limit: c.memory_limit(),
            idle_timeout: c.idle_timeout(),
            max_processes: c.max_processes(),
            per_row: c.on_error() != OnError::Fail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_message_limit_is_the_one_a_worker_assumes() {
        // A worker started without --max-message assumes coil_proto's
        // default: the two must not drift apart.
        assert_eq!(
            Config::default().max_message_size(),
            coil_proto::DEFAULT_MAX_MESSAGE
        );
    }

    #[test]
    fn defaults_are_valid_and_typed() {
        for k in KEYS {
            (k.check)(k.default).unwrap_or_else(|e| panic!("{}: {e}", k.name));
        }
        let c = Config::default();
        assert_eq!(c.execution_mode(), ExecutionMode::Process);
        assert_eq!(c.bundle_size(), 1000);
        assert!(!c.bundle_size_is_fixed());
        assert_eq!(c.bundle_target_time(), Duration::from_millis(5));
        assert_eq!(c.ring_size(), 4 << 20);
        assert_eq!(c.timeout(), Some(Duration::from_secs(300)));
        assert!(c.worker_count() >= 1);
        assert!(c.files().is_empty());
    }

    #[test]
    fn modes_parse_case_insensitively_with_the_thread_alias() {
        for (v, m) in [
            ("process", ExecutionMode::Process),
            ("PROCESS", ExecutionMode::Process),
            ("Multi-Thread", ExecutionMode::MultiThread),
            ("thread", ExecutionMode::MultiThread),
            ("sub-interpreter", ExecutionMode::SubInterpreter),
        ] {
            let c = Config::builder().set(EXECUTION_MODE, v).unwrap().build();
            assert_eq!(c.execution_mode(), m, "{v}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_what_is_valid() {
        let e = Config::builder()
            .set("python.worker-cnt", "2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("python.worker-cnt") && e.contains("python.worker-count"),
            "{e}"
        );
        let e = Config::builder()
            .set(EXECUTION_MODE, "threads")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("threads") && e.contains("sub-interpreter"),
            "{e}"
        );
        for (k, v) in [
            (WORKER_COUNT, "0"),
            (BUNDLE_SIZE, "-1"),
            (RING_SIZE, "3000"),
            (RING_SIZE, "2g"),
            (TIMEOUT, "1.5"),
            (RETRIES, "2"),
            (MAX_MESSAGE_SIZE, "1k"),
            (MAX_MESSAGE_SIZE, "5g"),
            (EXECUTION_MODE_STRICT, "yes"),
            (BUNDLE_TARGET_TIME, "0"),
            (BUNDLE_TARGET_TIME, "2.5"),
        ] {
            assert!(Config::builder().set(k, v).is_err(), "{k}={v} accepted");
        }
        let mut c = Config::default();
        assert!(matches!(
            c.set_pair("python.files"),
            Err(ConfigError::NotAPair(_))
        ));
    }

    #[test]
    fn every_time_key_takes_a_unit_and_a_plain_number_is_milliseconds() {
        let time_keys = [TIMEOUT, START_TIMEOUT, BUNDLE_TIME, BUNDLE_TARGET_TIME];
        for key in time_keys {
            for (v, ms) in [
                ("2s", 2_000),
                ("500ms", 500),
                ("500 ms", 500),
                ("1min", 60_000),
                ("1h", 3_600_000),
                ("2S", 2_000),
                ("250", 250),
            ] {
                let c = Config::builder().set(key, v).unwrap().build();
                let got = match key {
                    TIMEOUT => c.timeout().unwrap(),
                    START_TIMEOUT => c.start_timeout(),
                    BUNDLE_TIME => c.bundle_time(),
                    _ => c.bundle_target_time(),
                };
                assert_eq!(got, Duration::from_millis(ms), "{key}={v}");
            }
            for junk in ["2 days", "1.5s", "s", "-2s", "2sec", "ten"] {
                let e = Config::builder().set(key, junk).unwrap_err().to_string();
                assert!(
                    e.contains(junk) && e.contains("500ms, 2s, 1min, 1h"),
                    "{key}={junk}: {e}"
                );
            }
        }
        let e = Config::builder()
            .set(BUNDLE_TARGET_TIME, "0s")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a positive duration"), "{e}");
    }

    #[test]
    fn worker_count_takes_cores_as_the_docs_show_its_default() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for v in ["cores", "Cores"] {
            let c = Config::builder().set(WORKER_COUNT, v).unwrap().build();
            assert_eq!(c.worker_count(), cores);
        }
        let e = Config::builder()
            .set(WORKER_COUNT, "all")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cores"), "{e}");
    }

    #[test]
    fn a_key_spelled_with_underscores_names_the_key_to_write() {
        let e = Config::builder()
            .set("python.execution_mode", "process")
            .unwrap_err()
            .to_string();
        assert!(e.contains("write python.execution-mode"), "{e}");
        let e = Config::default()
            .set_pair("python.fn_execution.on_error=skip")
            .unwrap_err()
            .to_string();
        assert!(e.contains("write python.fn-execution.on-error"), "{e}");
        // Not a key with '-' for '_': every valid key, as before.
        let e = Config::builder()
            .set("python.no_such_key", "1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("valid keys: python.execution-mode"), "{e}");
    }

    #[test]
    fn documented_keys_match_the_code() {
        let doc = include_str!("../../../docs/configuration.md");
        let rows: Vec<&str> = doc
            .lines()
            .filter(|l| l.starts_with("| `python."))
            .collect();
        assert_eq!(
            rows.len(),
            KEYS.len(),
            "docs/configuration.md lists every key once"
        );
        for k in KEYS {
            let row = format!("| `{}` | `{}` | {} |", k.name, k.default, k.doc);
            assert!(
                rows.contains(&row.as_str()),
                "docs/configuration.md lacks or differs on:\n{row}"
            );
        }
    }

    #[test]
    fn values_parse() {
        let mut c = Config::default();
        c.set_pair("python.fn-execution.ring.size=64k").unwrap();
        c.set_pair("python.files= a/b , c ").unwrap();
        c.set_pair("python.fn-execution.timeout=0").unwrap();
        assert_eq!(c.ring_size(), 65536);
        assert_eq!(c.files(), vec![PathBuf::from("a/b"), PathBuf::from("c")]);
        assert_eq!(c.timeout(), None);
        c.set_pair("python.fn-execution.max-message-size=3m")
            .unwrap();
        assert_eq!(c.max_message_size(), 3 << 20);
    }
}
