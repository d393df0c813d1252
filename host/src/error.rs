//! What can go wrong when starting a runner or running rows. Variants carry
//! data (rows, sizes, exit status, module), and an error that wraps another
//! names it as its source instead of repeating it in its own message.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use coil_proto::{MessageError, ProtoError, PyErrorInfo};

use crate::ExecutionMode;

/// How an executor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerExit {
    /// The process exited with this code.
    Code(i32),
    /// The process was killed by this signal.
    Signal {
        /// The signal number.
        number: i32,
        /// Its name (`SIGKILL`), or `?` if unknown.
        name: &'static str,
    },
    /// The process did not exit in time after it broke off; it was killed.
    Killed,
    /// An in-process executor's thread stopped.
    ThreadStopped,
    /// Its status could not be read.
    Unknown,
}

impl WorkerExit {
    /// From a reaped child's status.
    pub(crate) fn from_status(status: std::process::ExitStatus) -> WorkerExit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => WorkerExit::Code(code),
            (None, Some(number)) => WorkerExit::Signal {
                number,
                name: nix::sys::signal::Signal::try_from(number).map_or("?", |s| s.as_str()),
            },
            _ => WorkerExit::Unknown,
        }
    }
}

impl fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerExit::Code(c) => write!(f, "exited with code {c}"),
            WorkerExit::Signal { number, name } => write!(f, "killed by signal {number} ({name})"),
            WorkerExit::Killed => f.write_str("still running; killed"),
            WorkerExit::ThreadStopped => f.write_str("its executor thread stopped"),
            WorkerExit::Unknown => f.write_str("exit status unknown"),
        }
    }
}

/// What broke the conversation with an executor: it wrote something no
/// executor would, or its ring failed in a way a live executor cannot
/// cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An answer that does not decode or does not match its batch.
    #[error("a malformed answer")]
    Answer(#[from] ProtoError),
    /// The ring refused or corrupted a frame.
    #[error("the answer ring failed")]
    Recv(#[from] coil_ipc::RingRecvError),
    /// The request ring refused a batch.
    #[error("the request ring failed")]
    Push(#[from] coil_ipc::RingPushError),
    /// A message in pieces could not be sent or reassembled.
    #[error("a message in pieces failed")]
    Message(#[from] MessageError),
}

/// Which way a message too large to send was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Rows to an executor.
    Batch,
    /// Results from an executor.
    Results,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Batch => "encode",
            Direction::Results => "produce results of",
        })
    }
}

/// Why a runner could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The worker program was not found.
    #[error("cannot find the coil-worker program (looked at {}); set COIL_WORKER to its path", looked.join(", "))]
    WorkerNotFound {
        /// The places looked at.
        looked: Vec<String>,
    },
    /// The worker (a process or a thread) could not be spawned.
    #[error("spawning {program}")]
    Spawn {
        /// The program, or "an executor thread".
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The rings could not be created.
    #[error("creating a worker's rings")]
    Region(#[from] coil_ipc::RegionCreateError),
    /// The UDF could not be loaded; carries the Python exception.
    #[error("loading UDF {target}: {error}\n{}", error.traceback)]
    Load {
        /// What was being loaded.
        target: String,
        /// The exception loading raised.
        error: PyErrorInfo,
        /// The package that cannot load in a sub-interpreter, when the
        /// executor found that to be the cause (it classifies its own
        /// exception; the host never parses a traceback).
        blocker: Option<String>,
    },
    /// The worker exited before it was ready.
    #[error("worker exited while starting ({exit}){}", stderr_tail(.stderr))]
    Exited {
        /// How it exited.
        exit: WorkerExit,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// `python.worker.max-processes` worker processes were all busy for
    /// the whole start timeout.
    #[error(
        "python.worker.max-processes ({cap}) worker processes are all busy, and none \
         was given back within python.worker.start-timeout ({waited:?}): raise the limit, \
         or lower python.worker-count"
    )]
    Capacity {
        /// The limit.
        cap: usize,
        /// How long the start waited.
        waited: std::time::Duration,
    },
    /// Every attempt to start a worker failed; the last one's error.
    #[error("{last} ({attempts} attempts to start it, with back-off)")]
    Attempts {
        /// Attempts made.
        attempts: u32,
        /// Why the last one failed.
        #[source]
        last: Box<StartError>,
    },
    /// The worker did not report ready in time.
    #[error("worker did not start within {0:?} (python.worker.start-timeout)")]
    Timeout(Duration),
    /// The worker said something other than ready.
    #[error("worker broke the protocol while starting")]
    Protocol(#[source] ProtocolError),
    /// The mode cannot run in this build.
    #[error("python.execution-mode={mode} is not available: {reason}")]
    ModeUnavailable {
        /// The mode asked for.
        mode: ExecutionMode,
        /// Why not.
        reason: &'static str,
    },
    /// The Python environment asked for (`python.executable`,
    /// `python.requirements`, `python.files`) cannot be used.
    #[error("{setting} {}: {reason}", path.display())]
    Environment {
        /// The key: `python.executable`, `python.requirements` or
        /// `python.files`.
        setting: &'static str,
        /// Its value.
        path: std::path::PathBuf,
        /// What is wrong, with the tool's own words where one failed.
        reason: String,
    },
    /// `python.executable` is another CPython version than the one coil
    /// embeds: its packages' compiled modules would not load.
    #[error("python.executable {} is CPython {found}{}, but this coil embeds CPython {embedded}{} ({embedded_python}): use an environment made with CPython {embedded}, or build coil against that Python (PYO3_PYTHON={} cargo build --release)", executable.display(), build_kind(found), build_kind(embedded), executable.display())]
    PythonVersion {
        /// The `python` given.
        executable: std::path::PathBuf,
        /// Its `major.minor`.
        found: String,
        /// The embedded CPython's `major.minor`.
        embedded: &'static str,
        /// The embedded CPython's interpreter.
        embedded_python: &'static str,
    },
    /// Two runners of the `multi-thread` mode in one host ask for different
    /// Python environments, and `python.execution-mode.strict` forbids
    /// running the second in process mode: the main interpreter has one
    /// `sys.path`.
    #[error("this host's embedded interpreter already imports from {first}; a multi-thread runner cannot import from {asked} too (python.execution-mode.strict=true): use process or sub-interpreter mode")]
    EnvironmentConflict {
        /// The environment the first runner set.
        first: String,
        /// The one asked for now.
        asked: String,
    },
    /// An argument type declared with `UdfSpec::args` is not one coil
    /// takes (the types are in docs/python.md).
    #[error("argument {column} is declared {data_type}, which coil does not take (see docs/python.md for the Arrow types it maps to Python)")]
    UnsupportedArgument {
        /// The argument's index.
        column: usize,
        /// Its declared type.
        data_type: arrow_schema::DataType,
    },
    /// The return type declared with `UdfSpec::returns` is not one coil
    /// builds results of (the types are in docs/python.md).
    #[error("the declared return type {0} is not one coil builds results of (see docs/python.md for the Arrow types it maps to Python)")]
    UnsupportedReturnType(arrow_schema::DataType),
    /// The UDF imports a module that cannot load in a sub-interpreter, and
    /// `python.execution-mode.strict` forbids falling back to process mode.
    #[error("UDF {target} imports {module}, which cannot load in a sub-interpreter (python.execution-mode.strict=true); use process mode")]
    SubInterpreterIncompatible {
        /// The UDF.
        target: String,
        /// The top-level package that cannot load.
        module: String,
    },
    /// On a free-threaded CPython, loading a `multi-thread` UDF turned the
    /// GIL back on (an extension module that has not declared
    /// free-threading support), and `python.execution-mode.strict`
    /// forbids running its executors one at a time.
    #[error(
        "UDF {target}: {} (python.execution-mode.strict=true)",
        coil_worker::gil_message(module, " when it loaded")
    )]
    GilEnabled {
        /// The UDF.
        target: String,
        /// The module whose import turned the GIL on ("" if none did).
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
    #[error("falling back to process mode (the UDF imports {module}, which cannot load in a sub-interpreter)")]
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
    #[error("worker {worker} died ({exit}) {}{}", match row { Some(r) => format!("on row {r} of rows {}..{}", rows.start, rows.end), None => format!("holding rows {}..{}", rows.start, rows.end) }, stderr_tail(.stderr))]
    WorkerDied {
        /// The worker's slot.
        worker: usize,
        /// How it ended.
        exit: WorkerExit,
        /// The row it was running, when it had started one (`None`: it
        /// died before it started the batch, or after it finished it).
        row: Option<u64>,
        /// The rows it held.
        rows: Range<u64>,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// The rows ran past `python.fn-execution.timeout`; the worker was
    /// killed and replaced (or, in-process, interrupted).
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
    #[error("worker {worker} broke the protocol while running rows {}..{}", rows.start, rows.end)]
    Protocol {
        /// The worker's slot.
        worker: usize,
        /// The rows of the batch.
        rows: Range<u64>,
        /// What was wrong.
        #[source]
        error: ProtocolError,
    },
    /// A batch, or its results, larger than
    /// `python.fn-execution.max-message-size`.
    #[error("rows {}..{} {direction} {bytes} bytes, more than python.fn-execution.max-message-size ({limit}); raise it or lower python.fn-execution.bundle.size", rows.start, rows.end)]
    TooLarge {
        /// The rows or their results.
        direction: Direction,
        /// The rows of the batch.
        rows: Range<u64>,
        /// Their encoded size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// An Arrow column of a type the columnar path does not take (the
    /// types it takes are in docs/python.md).
    #[error("column {column} is {data_type}, which coil does not take (see docs/python.md for the Arrow types it maps to Python)")]
    UnsupportedColumn {
        /// The column's index.
        column: usize,
        /// Its type.
        data_type: arrow_schema::DataType,
    },
    /// `Runner::call_arrow` cannot run: no or an unsupported return type,
    /// or a table UDF; or its results could not be put together.
    #[error("call_arrow: {0}")]
    Arrow(ArrowError),
    /// One row failed, and only it (`python.fn-execution.on-error` =
    /// `skip` or `dead-letter`): its input and why. Takes that row's place
    /// in a stream; the rows around it are answered as usual.
    #[error("{}", .0.error)]
    Row(Box<RowError>),
    /// No replacement worker started, after `attempts` tries in a row, to
    /// run these rows.
    #[error("no replacement worker started after {attempts} attempts to run rows {}..{}", rows.start, rows.end)]
    Restart {
        /// The rows that had no worker to run them.
        rows: Range<u64>,
        /// Consecutive failed starts.
        attempts: u32,
        /// Why the last one failed.
        #[source]
        source: Box<StartError>,
    },
}

impl RunError {
    /// The failed row, if this is one row's error
    /// ([`RunError::Row`]).
    pub fn row_error(&self) -> Option<&RowError> {
        match self {
            RunError::Row(e) => Some(e),
            _ => None,
        }
    }

    /// The one input row this error is about, when it names one: the row
    /// the UDF raised on, whose value could not be converted, or that was
    /// running when its worker died or timed out; a failed row's own
    /// ([`RunError::Row`]). Rows count from 0 across the call or stream.
    ///
    /// # Examples
    ///
    /// ```
    /// use coil_host::RunError;
    /// let e = RunError::BadRow { row: Some(7), message: "not a str".into() };
    /// assert_eq!(e.row(), Some(7));
    /// assert_eq!(e.rows(), Some(7..8));
    /// ```
    pub fn row(&self) -> Option<u64> {
        match self {
            RunError::Udf { row, .. } | RunError::SubInterpreterIncompatible { row, .. } => {
                Some(*row)
            }
            RunError::BadRow { row, .. }
            | RunError::WorkerDied { row, .. }
            | RunError::Timeout { row, .. } => *row,
            RunError::Row(r) => Some(r.row),
            _ => None,
        }
    }

    /// The input rows this error is about: the batch's rows when the error
    /// holds them (a worker that died or timed out or broke the protocol,
    /// a batch too large, no replacement worker), else the one row it
    /// names ([`RunError::row`]), else `None` (the error is not about
    /// rows, or its batch is not known).
    pub fn rows(&self) -> Option<Range<u64>> {
        match self {
            RunError::WorkerDied { rows, .. }
            | RunError::Timeout { rows, .. }
            | RunError::Protocol { rows, .. }
            | RunError::TooLarge { rows, .. }
            | RunError::Restart { rows, .. } => Some(rows.clone()),
            e => e.row().map(|r| r..r + 1),
        }
    }
}

/// Why the column path ([`Runner::call_arrow`](crate::Runner::call_arrow)
/// and friends) cannot run a batch, or could not put its results together.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArrowError {
    /// The UDF declares no return type and annotates none.
    #[error("the UDF's Arrow return type is unknown: declare it with UdfSpec::returns (--returns), or annotate the UDF's return (`-> int`, `-> list[str]`, `-> \"pd.Series[float]\"`: docs/python.md)")]
    NoReturnType,
    /// The declared return type cannot be built by an executor.
    #[error("the return type {0} is not supported")]
    UnsupportedReturnType(arrow_schema::DataType),
    /// A table UDF given to `call_arrow`.
    #[error("a table UDF runs with call_arrow_table")]
    TableUdf,
    /// Another kind of UDF given to `call_arrow_table`.
    #[error("call_arrow_table runs table UDFs, not {0} ones")]
    NotTableUdf(coil_proto::UdfKind),
    /// The batch's column types are not the UDF's declared argument types.
    #[error("the batch's columns are {got:?}, the UDF's arguments are declared {declared:?} (UdfSpec::args)")]
    ArgumentTypes {
        /// The batch's column types.
        got: Vec<arrow_schema::DataType>,
        /// The declared ones.
        declared: Vec<arrow_schema::DataType>,
    },
    /// An executor answered with an array of another type than declared.
    #[error("an executor answered with {got} for the declared type {declared}")]
    ResultType {
        /// What it answered.
        got: arrow_schema::DataType,
        /// What the UDF declares.
        declared: arrow_schema::DataType,
    },
    /// An aggregate's group failed (under `on-error = fail`): the group's
    /// index among the aggregate's groups, and the error (its row is the
    /// group's place in the message that carried it).
    #[error("in group {group}: {error}")]
    InGroup {
        /// The group.
        group: usize,
        /// What failed.
        error: Box<RunError>,
    },
    /// An aggregate was driven in a way it cannot be: a UDF that is not
    /// one, states that are not binary, an answer of the wrong shape.
    #[error("{0}")]
    Aggregate(String),
    /// A batch's results could not be joined into one array.
    #[error("putting the results together: {0}")]
    Join(arrow_schema::ArrowError),
    /// Arrow refused to build an array (a column turned into the type it
    /// travels as, or back; a table UDF's rows).
    #[error("{0}")]
    Build(arrow_schema::ArrowError),
    /// As many results as rows were expected.
    #[error("internal error: {results} results for a batch of {rows} rows")]
    ResultCount {
        /// Results.
        results: usize,
        /// Rows.
        rows: usize,
    },
    /// A table UDF's results are not lists.
    #[error("internal error: table results of type {0}")]
    TableResults(arrow_schema::DataType),
    /// The scheduler's bookkeeping of column batches went wrong: what.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<ArrowError> for RunError {
    fn from(e: ArrowError) -> RunError {
        RunError::Arrow(e)
    }
}

/// A row that failed alone (`python.fn-execution.on-error` = `skip` or
/// `dead-letter`).
#[derive(Debug)]
pub struct RowError {
    /// The row: its index in the call or the stream, from 0.
    pub row: u64,
    /// Its input values.
    pub args: coil_ipc::Row,
    /// Why it failed: [`RunError::Udf`] (with the traceback),
    /// [`RunError::Timeout`], [`RunError::WorkerDied`] (the worker died
    /// running it, also after `retries`) or [`RunError::BadRow`] (a result
    /// coil cannot hold); each names this row.
    pub error: RunError,
}

impl RowError {
    /// Row `row`'s error, as a stream yields it.
    pub(crate) fn boxed(row: u64, args: coil_ipc::Row, error: RunError) -> RunError {
        RunError::Row(Box::new(RowError { row, args, error }))
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for RowError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

/// " (free-threaded)" for a version tag such as "3.14t", " (with the GIL)"
/// otherwise: a free-threaded CPython and a GIL build of one version cannot
/// load each other's compiled modules.
fn build_kind(version: &str) -> &'static str {
    if version.ends_with('t') {
        " (free-threaded)"
    } else {
        " (with the GIL)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py() -> PyErrorInfo {
        PyErrorInfo {
            type_name: "ValueError".into(),
            message: "m".into(),
            traceback: String::new(),
        }
    }

    #[test]
    fn an_error_names_the_row_to_blame_and_the_rows_it_cost() {
        let died = |row| RunError::WorkerDied {
            worker: 0,
            exit: WorkerExit::Killed,
            row,
            rows: 10..20,
            stderr: String::new(),
        };
        let timeout = |row| RunError::Timeout {
            row,
            after: Duration::from_secs(1),
            rows: 10..20,
        };
        let cases: Vec<(RunError, Option<u64>, Option<Range<u64>>)> = vec![
            (
                RunError::Udf {
                    row: 12,
                    error: py(),
                },
                Some(12),
                Some(12..13),
            ),
            (
                RunError::SubInterpreterIncompatible {
                    row: 3,
                    module: "numpy".into(),
                    error: py(),
                },
                Some(3),
                Some(3..4),
            ),
            (
                RunError::BadRow {
                    row: None,
                    message: "x".into(),
                },
                None,
                None,
            ),
            (died(Some(15)), Some(15), Some(10..20)),
            (died(None), None, Some(10..20)),
            (timeout(Some(11)), Some(11), Some(10..20)),
            (timeout(None), None, Some(10..20)),
            (
                RunError::TooLarge {
                    direction: Direction::Batch,
                    rows: 0..5,
                    bytes: 10,
                    limit: 5,
                },
                None,
                Some(0..5),
            ),
            (
                RunError::UnsupportedColumn {
                    column: 0,
                    data_type: arrow_schema::DataType::Null,
                },
                None,
                None,
            ),
            (
                RowError::boxed(
                    42,
                    Vec::new(),
                    RunError::Udf {
                        row: 42,
                        error: py(),
                    },
                ),
                Some(42),
                Some(42..43),
            ),
        ];
        for (e, row, rows) in cases {
            assert_eq!(e.row(), row, "{e}");
            assert_eq!(e.rows(), rows, "{e}");
        }
    }

    #[test]
    fn column_path_errors_read_as_the_strings_they_replace() {
        let says = |e: ArrowError| RunError::from(e).to_string();
        assert_eq!(
            says(ArrowError::NotTableUdf(coil_proto::UdfKind::Scalar)),
            "call_arrow: call_arrow_table runs table UDFs, not scalar ones"
        );
        assert_eq!(
            says(ArrowError::TableUdf),
            "call_arrow: a table UDF runs with call_arrow_table"
        );
        assert_eq!(
            says(ArrowError::ResultCount {
                results: 3,
                rows: 4
            }),
            "call_arrow: internal error: 3 results for a batch of 4 rows"
        );
        assert_eq!(
            says(ArrowError::ArgumentTypes {
                got: vec![arrow_schema::DataType::Utf8],
                declared: vec![arrow_schema::DataType::Int64],
            }),
            "call_arrow: the batch's columns are [Utf8], the UDF's arguments are declared [Int64] (UdfSpec::args)"
        );
        assert!(says(ArrowError::NoReturnType).contains("declare it with UdfSpec::returns"));
    }

    #[test]
    fn run_errors_stay_small() {
        // Errors travel in every stream's queue of answers (boxed there);
        // keep the type itself from growing unnoticed. The largest today: a
        // row, a module name and a Python exception.
        assert!(
            std::mem::size_of::<RunError>() <= 104,
            "{}",
            std::mem::size_of::<RunError>()
        );
    }

    #[test]
    fn a_wrapping_error_does_not_repeat_its_source() {
        let e = RunError::Restart {
            rows: 10..20,
            attempts: 5,
            source: Box::new(StartError::Timeout(Duration::from_secs(3))),
        };
        assert_eq!(
            e.to_string(),
            "no replacement worker started after 5 attempts to run rows 10..20"
        );
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert!(source.contains("did not start within 3s"), "{source}");
    }

    #[test]
    fn too_large_names_the_limit_that_applies() {
        let e = RunError::TooLarge {
            direction: Direction::Results,
            rows: 0..10,
            bytes: 9000,
            limit: 4096,
        };
        let m = e.to_string();
        assert!(
            m.contains("python.fn-execution.max-message-size (4096)"),
            "{m}"
        );
        assert!(!m.contains("ring.size"), "{m}");
        assert_eq!(
            WorkerExit::Signal {
                number: 9,
                name: "SIGKILL"
            }
            .to_string(),
            "killed by signal 9 (SIGKILL)"
        );
    }
}
