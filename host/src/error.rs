//! What can go wrong when starting a runner or running rows.

use std::ops::Range;
use std::time::Duration;

use coil_worker::PyErrorInfo;

/// Why a runner could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The worker program was not found.
    #[error("cannot find the coil-worker program ({0}); set COIL_WORKER to its path")]
    WorkerNotFound(String),
    /// The worker could not be spawned.
    #[error("spawning worker {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The shared-memory region could not be created.
    #[error("creating a worker's rings: {0}")]
    Region(#[from] coil_ipc::RegionCreateError),
    /// The UDF could not be loaded; carries the Python exception.
    #[error("loading UDF {target}: {error}\n{}", error.traceback)]
    Load {
        /// What was being loaded.
        target: String,
        /// The exception loading raised.
        error: PyErrorInfo,
    },
    /// The worker exited before it was ready.
    #[error("worker exited while starting ({status}){}", stderr_tail(.stderr))]
    Exited {
        /// How it exited.
        status: String,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// The worker did not report ready in time.
    #[error("worker did not start within {0:?}")]
    Timeout(Duration),
    /// The worker said something other than ready.
    #[error("worker protocol error while starting: {0}")]
    Protocol(String),
    /// The mode cannot run here (yet).
    #[error("{0}")]
    Unsupported(String),
    /// The UDF imports a module that cannot load in a sub-interpreter, and
    /// `python.execution-mode.strict` forbids falling back to process mode.
    #[error("UDF {target} imports {module}, which cannot load in a sub-interpreter (python.execution-mode.strict=true); use process mode")]
    SubInterpreterIncompatible {
        /// The UDF.
        target: String,
        /// The top-level package that cannot load.
        module: String,
    },
}

pub(crate) fn stderr_tail(s: &str) -> String {
    if s.trim().is_empty() {
        String::new()
    } else {
        format!("; its last stderr lines:\n{}", s.trim_end())
    }
}

/// Why rows produced no results. Row numbers count from 0 across one
/// [`Runner::call`](crate::Runner::call) or one stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The UDF raised on a row (for a vectorized UDF: on its batch, which
    /// starts at `row`).
    #[error("the UDF raised on row {row}: {error}\n{}", error.traceback)]
    Udf {
        /// The row.
        row: u64,
        /// The exception, with its traceback.
        error: PyErrorInfo,
    },
    /// The UDF raised on a row because something it imports (only when it
    /// is called) cannot load in a sub-interpreter, and
    /// `python.execution-mode.strict` forbids falling back to process mode.
    /// (Without strict, the runner re-runs the batch in process mode and
    /// stays there.)
    #[error("the UDF imports {module} on row {row}, which cannot load in a sub-interpreter (python.execution-mode.strict=true); use process mode\n{}", error.traceback)]
    SubInterpreterIncompatible {
        /// The row.
        row: u64,
        /// The top-level package that cannot load.
        module: String,
        /// The exception, with its traceback.
        error: PyErrorInfo,
    },
    /// The UDF needs process mode (it imports `module`, which cannot load in
    /// a sub-interpreter) but worker processes could not be started.
    #[error("falling back to process mode (the UDF imports {module}, which cannot load in a sub-interpreter): {source}")]
    Fallback {
        /// The module that cannot load.
        module: String,
        /// Why the workers could not start.
        #[source]
        source: Box<StartError>,
    },
    /// A value could not be converted to or from Python.
    #[error("{}: {message}", row.map(|r| format!("row {r}")).unwrap_or_else(|| "a batch".into()))]
    BadRow {
        /// The row, when one row is to blame.
        row: Option<u64>,
        /// What was wrong.
        message: String,
    },
    /// The worker running these rows died; they produced no results.
    #[error("worker {worker} died ({status}) while running rows {}..{}{}", rows.start, rows.end, stderr_tail(.stderr))]
    WorkerDied {
        /// The worker's slot.
        worker: usize,
        /// How it exited.
        status: String,
        /// The rows it held.
        rows: Range<u64>,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// The rows ran past `python.fn-execution.timeout`; the worker was
    /// killed and replaced.
    #[error("timed out after {after:?} {}", match row { Some(r) => format!("on row {r}"), None => format!("on rows {}..{}", rows.start, rows.end) })]
    Timeout {
        /// The row the UDF was running, when known.
        row: Option<u64>,
        /// The timeout.
        after: Duration,
        /// The rows of the batch.
        rows: Range<u64>,
    },
    /// A worker broke the protocol (wrote garbage into its ring); it was
    /// killed and replaced.
    #[error("worker {worker} sent a malformed answer for rows {}..{}: {message}", rows.start, rows.end)]
    Protocol {
        /// The worker's slot.
        worker: usize,
        /// The rows of the batch.
        rows: Range<u64>,
        /// What was wrong.
        message: String,
    },
    /// A batch is larger than a ring.
    #[error("rows {}..{} encode to {bytes} bytes, more than a ring holds ({limit}); raise python.fn-execution.ring.size or lower python.fn-execution.bundle.size", rows.start, rows.end)]
    TooLarge {
        /// The rows of the batch.
        rows: Range<u64>,
        /// Their encoded size.
        bytes: usize,
        /// The most a frame can hold.
        limit: usize,
    },
    /// A replacement worker could not be started.
    #[error("restarting a worker: {0}")]
    Restart(#[source] Box<StartError>),
    /// The runner was shut down.
    #[error("the runner is shut down")]
    Closed,
}
