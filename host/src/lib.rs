//! `coil-host`: the side of coil that a host engine embeds. It turns a
//! Flink-style [`Config`] (`python.execution-mode` and friends) into a
//! [`Runner`], feeds it rows and returns results in order, whichever
//! execution mode runs the Python.
//!
//! In `process` mode (the default) the runner keeps a pool of `coil-worker`
//! processes, each behind its own pair of shared-memory rings and driven by
//! one host thread. A worker that dies, hangs past its timeout or writes
//! garbage is replaced; the batch it held is reported as failed (or retried
//! once, by configuration), never dropped or duplicated. Workers' stdout and
//! stderr go to `tracing` (target `coil::worker`), never to the host's
//! stdout.
//!
//! # Examples
//!
//! ```no_run
//! use coil_host::{Config, Runner, UdfSpec, UdfKind};
//! use coil_host::ipc::Value;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = Config::default();
//! config.set_pair("python.execution-mode=process")?;
//! config.set_pair("python.fn-execution.bundle.size=500")?;
//! let runner = Runner::new(&config, UdfSpec::new("udfs/words.py:split").kind(UdfKind::Table))?;
//! let mut stream = runner.stream();
//! stream.push(vec![Value::Str("a b".into())]);
//! stream.flush();
//! let rows = stream.pull().expect("one result")?;
//! # Ok(()) }
//! ```

mod aggregate;
mod arrow;
mod capacity;
mod config;
mod crash;
mod env;
mod error;
mod inline;
mod link;
mod metrics;
mod pool;
mod private;
mod record;
mod rows;
mod runner;
mod sched;

pub use aggregate::{evaluate_lists, Accumulators, GroupError, GroupedValues, PENDING_ROWS};
pub use arrow::ArrowStream;
pub use arrow_array;
pub use arrow_schema;
pub use coil_ipc as ipc;
pub use coil_proto::{AggregateOp, PyErrorInfo, UdfKind, UdfSignature, UdfSpec};
pub use config::{Config, ConfigBuilder, ConfigError, ExecutionMode, Key, OnError, KEYS};
pub use config::{
    ASYNC_MAX_CONCURRENCY, BUNDLE_ADAPTIVE, BUNDLE_SIZE, BUNDLE_TARGET_TIME, BUNDLE_TIME,
    ENV_CACHE_DIR, ENV_MAX_AGE, EXECUTABLE, EXECUTION_MODE, EXECUTION_MODE_STRICT, FILES,
    IDLE_TIMEOUT, MAX_MESSAGE_SIZE, MAX_PROCESSES, MEMORY_LIMIT, ON_ERROR, RATE_LIMIT,
    RATE_LIMIT_BURST, REQUIREMENTS, RETRIES, RETRY_INITIAL_DELAY, RETRY_MAX_ATTEMPTS,
    RETRY_MAX_DELAY, RETRY_ON, RING_SIZE, START_TIMEOUT, TIMEOUT, WORKER_COUNT,
};
pub use env::{prune_environments, resolve as resolve_environment, PrunedEnv, PythonEnv};
pub use error::{ArrowError, Direction, ProtocolError, RowError, RunError, StartError, WorkerExit};
pub use inline::{inline_dir, udf_from_source, InlineError};
pub use link::WorkerCommand;
pub use metrics::{Histograms, Metrics};
pub use record::arrow_json::{cell_to_json, row_to_json};
pub use record::dead_letter::{DeadLetter, FailedAt};
pub use record::json::{args_from_json, value_from_json, value_to_json, ValueJsonError};
pub use rows::RowStream;
pub use runner::Runner;
