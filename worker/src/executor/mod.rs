//! The executor: loads a UDF into the current interpreter and runs batches
//! through it, converting rows to Python objects straight from the input
//! frame and results straight into the answer's bytes.
//!
//! This file holds what every path shares: loading, closing, the
//! accessors and the per-row failure policy (a row that fails gets a null
//! and a [`RowFailure`] when the batch runs per row). The paths a batch
//! takes are one file each: `rows.rs` (a row batch through a scalar or
//! table UDF), `columns.rs` (a column batch through one), `vectorized.rs`
//! (a vectorized UDF over either).

mod asynchronous;
mod columns;
mod grouped;
mod rows;
mod vectorized;

pub(crate) use asynchronous::batch_kind;
pub use asynchronous::Started;

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use coil_ipc::BatchEncoder;
use coil_proto::{PyErrorInfo, RowFailure, RowFault, Times, UdfKind, UdfSpec};
use pyo3::prelude::*;
use smallvec::SmallVec;

use crate::arrow::ResultColumn;
use crate::error::{enc_err, BatchError, LoadError};

/// Describes `err` with the loader module's `describe`.
fn error_info(py: Python<'_>, helper: &Bound<'_, PyModule>, err: PyErr) -> PyErrorInfo {
    let described = helper
        .getattr("describe")
        .and_then(|d| d.call1((err.value(py),)))
        .and_then(|t| t.extract::<(String, String, String)>());
    match described {
        Ok((type_name, message, traceback)) => PyErrorInfo {
            type_name,
            message,
            traceback,
        },
        Err(_) => bare_error_info(py, &err),
    }
}

/// The top-level package that cannot load in a sub-interpreter, if an
/// `ImportError` saying so is in `err`'s chain (the loader's `blocker`
/// finds it).
fn blocker(py: Python<'_>, helper: &Bound<'_, PyModule>, err: &PyErr) -> Option<String> {
    helper
        .getattr("blocker")
        .and_then(|b| b.call1((err.value(py),)))
        .and_then(|m| m.extract::<Option<String>>())
        .ok()
        .flatten()
        .and_then(|message| coil_proto::incompatible_module(&message))
}

/// Type and message only: when the formatter itself is unavailable.
fn bare_error_info(py: Python<'_>, err: &PyErr) -> PyErrorInfo {
    PyErrorInfo {
        type_name: err
            .get_type(py)
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default(),
        message: err.value(py).to_string(),
        traceback: String::new(),
    }
}

/// A loaded UDF, ready to run batches in the interpreter that loaded it.
pub struct Executor {
    helper: Py<PyModule>,
    func: Py<PyAny>,
    instance: Option<Py<PyAny>>,
    kind: UdfKind,
    /// A vectorized UDF's argument maker (numpy arrays, pandas Series or
    /// pyarrow Arrays, as its annotations or `coil_numpy` ask); `None`:
    /// plain lists.
    adapter: Option<Py<PyAny>>,
    scratch: Vec<u8>,
    progress: Option<coil_ipc::UserWord>,
    times: Times,
    /// The rows of the last per-row batch that failed.
    failures: Vec<RowFailure>,
    /// Set by the host's interrupt (an in-process timeout) when it raised
    /// `TimeoutError` in this executor's thread.
    interrupted: Option<Arc<AtomicBool>>,
    /// The Arrow type of the UDF's results: declared, or read from its
    /// return annotation.
    declared: Option<arrow_schema::DataType>,
    /// The Arrow type of the results of column batches (for a table UDF,
    /// a list of the declared rows per input row).
    returns: Option<arrow_schema::DataType>,
    /// What the UDF's signature says (its parameters' annotations).
    signature: coil_proto::UdfSignature,
    /// This interpreter's `datetime` and `decimal` types, loaded with the
    /// first column batch that needs them.
    kit: Option<crate::arrow::PyKit>,
    /// The call policy (`coil._Calls`): counts attempts and retries.
    calls: Py<PyAny>,
    /// An async UDF's event loop (`coil._Loop`); `None` for a sync UDF.
    looper: Option<Py<PyAny>>,
    /// Where the counts of attempts and retries are published.
    counters: Option<(coil_ipc::UserWord, coil_ipc::UserWord)>,
    /// On a free-threaded CPython whose GIL is on: the module that turned
    /// it on ("" if none did); `None` while it is off, and on a GIL build.
    gil: Option<String>,
    /// An in-process executor's hand-off of column batches and results
    /// (see [`coil_proto::Shelf`]).
    shelf: Option<Arc<coil_proto::Shelf>>,
    /// Whether a vectorized UDF's numpy result may become its results'
    /// buffer without a copy (main interpreter only: see
    /// `arrow::numpy_in_place`).
    results_in_place: bool,
    /// A worker process's arena: batches' placed values are claimed from
    /// its requests half, results' placed in its answers half.
    arena: Option<coil_ipc::Arena>,
}

/// What [`Executor::call_policy`] makes of a UDF: the callable to call,
/// the call policy (`coil._Calls`), an async UDF's event loop.
type CallPolicy = (Py<PyAny>, Py<PyAny>, Option<Py<PyAny>>);

/// This interpreter's `coil` module (`worker/src/calls.py`): what `import
/// coil` gives a UDF, made once per interpreter before any UDF loads.
fn coil_module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let modules = py.import("sys")?.getattr("modules")?;
    if let Ok(m) = modules.get_item("coil") {
        if m.hasattr("_coil_runtime")? {
            return Ok(m.cast_into::<PyModule>()?);
        }
    }
    let code = CString::new(include_str!("../calls.py")).expect("no NUL in calls.py");
    let m = PyModule::from_code(py, &code, c"<coil>/coil.py", c"coil")?;
    // On a free-threaded CPython executors load at once: the first module
    // placed wins, in one atomic dict operation, so every UDF of this
    // interpreter shares one `coil`. A module of the user's that is
    // named coil is replaced, as it always was.
    let placed = modules.call_method1("setdefault", ("coil", &m))?;
    if placed.hasattr("_coil_runtime")? {
        return Ok(placed.cast_into::<PyModule>()?);
    }
    modules.set_item("coil", &m)?;
    Ok(m)
}

/// The signature the loader's `signature` described: `(params, columnar)`,
/// params a tuple of `(name, type description or None)` or `None`.
fn signature_of_description(d: &Bound<'_, PyAny>) -> coil_proto::UdfSignature {
    let Ok((params, columnar)) = d.extract::<(Option<Vec<(String, Bound<'_, PyAny>)>>, bool)>()
    else {
        return coil_proto::UdfSignature::default();
    };
    coil_proto::UdfSignature {
        params: params.map(|ps| {
            ps.into_iter()
                .map(|(name, t)| (name, crate::arrow::type_of_name(&t)))
                .collect()
        }),
        columnar,
        written_as: None,
        window: false,
        asynchronous: false,
    }
}

impl Executor {
    /// Imports the UDF, instantiates a class UDF and calls its `open()`.
    ///
    /// # Errors
    ///
    /// [`LoadError`] with the Python exception (missing file or module,
    /// missing name, not callable, an error in `open()`...).
    pub fn load(py: Python<'_>, spec: &UdfSpec) -> Result<Executor, LoadError> {
        Executor::load_with(py, spec, None)
    }

    /// [`Executor::load`], with the rate limit the UDF's executors share
    /// (`spec.calls.rate`) kept in `limiter`.
    ///
    /// # Errors
    ///
    /// As [`Executor::load`]; also a call policy this UDF cannot have (an
    /// unknown exception name to retry on, async keys for a sync UDF).
    pub fn load_with(
        py: Python<'_>,
        spec: &UdfSpec,
        limiter: Option<coil_ipc::RateLimiter>,
    ) -> Result<Executor, LoadError> {
        let helper = crate::helper::udf_helper(py).map_err(|e| LoadError {
            target: spec.target.clone(),
            error: bare_error_info(py, &e),
            blocker: None,
        })?;
        let fail = |e: PyErr| {
            let module = blocker(py, &helper, &e);
            let error = error_info(py, &helper, e);
            // Also a blocker only the traceback's text names (as hosts
            // used to find it).
            let blocker = module.or_else(|| {
                coil_proto::incompatible_module(&format!("{}\n{}", error.message, error.traceback))
            });
            LoadError {
                target: spec.target.clone(),
                error,
                blocker,
            }
        };
        let coil = coil_module(py).map_err(fail)?;
        let paths: Vec<String> = spec
            .paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let strings = |v: &[std::path::PathBuf]| -> Vec<String> {
            v.iter().map(|p| p.to_string_lossy().into_owned()).collect()
        };
        let loaded = helper
            .getattr("load")
            .and_then(|l| {
                l.call1((
                    &spec.target,
                    paths,
                    strings(&spec.sys_path),
                    strings(&spec.site_dirs),
                    spec.kind.as_str(),
                ))
            })
            .map_err(fail)?;
        type Loaded = (
            Py<PyAny>,
            Option<Py<PyAny>>,
            bool,
            Py<PyAny>,
            Option<String>,
            Option<String>,
        );
        let (func, instance, wants_numpy, described, written_as, gil): Loaded =
            loaded.extract().map_err(fail)?;
        let (func, calls, looper) =
            Self::call_policy(py, &coil, spec, limiter, func, instance.as_ref()).map_err(fail)?;
        let adapter = if matches!(
            spec.kind,
            UdfKind::Vectorized | UdfKind::VectorizedAggregate
        ) {
            helper
                .getattr("vector_adapter")
                .and_then(|a| a.call1((described.bind(py), wants_numpy)))
                .and_then(|a| a.extract::<Option<Py<PyAny>>>().map_err(Into::into))
                .map_err(fail)?
        } else {
            None
        };
        // The declared type, or else the one the return annotation names
        // (an aggregate's: one value per group, as a scalar's).
        let annotated_as = match spec.kind {
            UdfKind::Aggregate | UdfKind::VectorizedAggregate => UdfKind::Scalar,
            k => k,
        };
        let declared = match &spec.returns {
            Some(t) => Some(t.clone()),
            None => helper
                .getattr("return_type")
                .and_then(|r| r.call1((described.bind(py), annotated_as.as_str())))
                .ok()
                .and_then(|d| crate::arrow::type_of_name(&d)),
        };
        let mut signature = helper
            .getattr("signature")
            .and_then(|f| f.call1((described.bind(py), wants_numpy)))
            .ok()
            .map(|d| signature_of_description(&d))
            .unwrap_or_default();
        // "window": a window function, over a partition or over frames
        // as its return annotation says (a column, or one value).
        if written_as.as_deref() == Some("window") {
            signature.window = true;
            let over_partition = helper
                .getattr("returns_column")
                .and_then(|r| r.call1((described.bind(py),)))
                .and_then(|t| t.extract::<bool>())
                .unwrap_or(false);
            signature.written_as = Some(if over_partition {
                UdfKind::Vectorized
            } else {
                UdfKind::VectorizedAggregate
            });
        } else {
            signature.written_as = written_as.and_then(|k| k.parse().ok());
        }
        signature.asynchronous = looper.is_some();
        Ok(Executor {
            signature,
            helper: helper.unbind(),
            func,
            instance,
            kind: spec.kind,
            adapter,
            scratch: Vec::new(),
            progress: None,
            times: Times::default(),
            failures: Vec::new(),
            interrupted: None,
            declared: declared.clone(),
            returns: declared.as_ref().map(|t| {
                // A table UDF's results over columns: for each input row,
                // the list of the rows it emitted (each of the declared
                // type); the host flattens them.
                let t = coil_proto::result_wire_type(t);
                match spec.kind {
                    UdfKind::Table => arrow_schema::DataType::List(Arc::new(
                        arrow_schema::Field::new("item", t, true),
                    )),
                    UdfKind::Aggregate => coil_proto::aggregate_result_type(&t),
                    _ => t,
                }
            }),
            kit: None,
            calls,
            looper,
            counters: None,
            gil,
            shelf: None,
            results_in_place: false,
            arena: None,
        })
    }

    /// The UDF's call policy, and the callable its executor calls: `func`
    /// itself, wrapped with retries and the rate limit when a sync UDF
    /// needs them; with an async UDF's event loop.
    fn call_policy(
        py: Python<'_>,
        coil: &Bound<'_, PyModule>,
        spec: &UdfSpec,
        limiter: Option<coil_ipc::RateLimiter>,
        func: Py<PyAny>,
        instance: Option<&Py<PyAny>>,
    ) -> PyResult<CallPolicy> {
        let p = &spec.calls;
        let reserve = match limiter {
            Some(l) => Some(pyo3::types::PyCFunction::new_closure(
                py,
                Some(c"coil_reserve"),
                None,
                move |_: &Bound<'_, pyo3::types::PyTuple>,
                      _: Option<&Bound<'_, pyo3::types::PyDict>>|
                      -> PyResult<f64> { Ok(l.reserve().as_secs_f64()) },
            )?),
            None => None,
        };
        let calls = coil.getattr("calls")?.call1((
            func.bind(py),
            p.max_attempts,
            p.retry_on.clone(),
            p.initial_delay.as_secs_f64(),
            p.max_delay.as_secs_f64(),
            reserve,
        ))?;
        let asynchronous: bool = coil
            .getattr("is_async")?
            .call1((func.bind(py),))?
            .extract()?;
        let name = func
            .bind(py)
            .getattr("__qualname__")
            .map(|n| n.to_string())
            .unwrap_or_else(|_| spec.target.clone());
        if asynchronous {
            if spec.kind != UdfKind::Scalar {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "{name} is async: an async UDF runs as a scalar function (one row \
                     in, one value out), not as a {} one",
                    spec.kind.as_str()
                )));
            }
            let looper = coil.getattr("event_loop")?.call1((
                func.bind(py),
                &calls,
                p.concurrency(),
                p.timeout.map(|t| t.as_secs_f64()),
                instance.map(|i| i.bind(py)),
                asynchronous::row_runner(py)?,
            ))?;
            return Ok((func, calls.unbind(), Some(looper.unbind())));
        }
        if p.max_concurrency.is_some() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "python.fn-execution.async.max-concurrency is set, but {name} is not \
                 async (an `async def`, or a class whose eval is one)"
            )));
        }
        let wraps = matches!(spec.kind, UdfKind::Scalar | UdfKind::Vectorized);
        if wraps && calls.call_method0("needed")?.extract::<bool>()? {
            let wrapped = calls.call_method1("wrap", (func.bind(py),))?;
            return Ok((wrapped.unbind(), calls.unbind(), None));
        }
        Ok((func, calls.unbind(), None))
    }

    /// Publishes the counts of attempts and retries in these two words
    /// after every batch (the host reads them for its metrics).
    pub fn set_counters(&mut self, attempts: coil_ipc::UserWord, retries: coil_ipc::UserWord) {
        self.counters = Some((attempts, retries));
    }

    /// Stores the counts of attempts and retries so far in the words
    /// [`Executor::set_counters`] gave.
    fn publish_counts(&self, py: Python<'_>) {
        if let Some((attempts, retries)) = &self.counters {
            let calls = self.calls.bind(py);
            let count = |name: &str| {
                calls
                    .getattr(name)
                    .and_then(|n| n.extract::<u64>())
                    .unwrap_or(0)
            };
            attempts.store(count("attempts"));
            retries.store(count("retries"));
        }
    }

    /// What the UDF's signature says: its parameters and the types their
    /// annotations name, and whether it is written for whole columns.
    pub fn signature(&self) -> &coil_proto::UdfSignature {
        &self.signature
    }

    /// On a free-threaded CPython whose GIL is on once the UDF loaded: the
    /// module whose import turned it on ("" if no import did); `None`
    /// while it is off, and always on a CPython with a GIL.
    pub fn gil_enabled_by(&self) -> Option<&str> {
        self.gil.as_deref()
    }

    /// On a free-threaded CPython: whether the GIL came back on since the
    /// UDF loaded (an extension module imported at call time), said once
    /// per process in the log. Costs one call of `sys._is_gil_enabled()`
    /// per batch until then; nothing on a GIL build.
    pub(crate) fn check_gil(&mut self, py: Python<'_>) {
        if !crate::FREE_THREADED || self.gil.is_some() {
            return;
        }
        let now = self
            .helper
            .bind(py)
            .getattr("gil_enabled_by")
            .and_then(|f| f.call0())
            .and_then(|m| m.extract::<Option<String>>());
        let Ok(Some(module)) = now else { return };
        static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{}",
                crate::gil_message(
                    &module,
                    " while the UDF ran (an extension module it imported when called)"
                )
            );
        }
        self.gil = Some(module);
    }

    /// The Arrow type of the UDF's results: the one its spec declares, or
    /// else the one its return annotation names (`-> int`, `-> str`,
    /// `-> list[int]`, `-> pd.Series[float]`...; docs/python.md), if any.
    pub fn returns(&self) -> Option<&arrow_schema::DataType> {
        self.declared.as_ref()
    }

    /// Shares the flag the host's interrupt sets when it raises
    /// `TimeoutError` in this executor's thread: a row of a per-row batch
    /// that raises while it is set failed by timing out.
    pub fn set_interrupt_flag(&mut self, flag: Arc<AtomicBool>) {
        self.interrupted = Some(flag);
    }

    /// Hands column batches and results over on `shelf` (an in-process
    /// executor's, shared with its host link): shelved batches are taken
    /// off it and results left on it, instead of their bytes travelling.
    pub fn set_shelf(&mut self, shelf: Arc<coil_proto::Shelf>) {
        self.shelf = Some(shelf);
    }

    /// Lets a vectorized UDF's numpy result become the results' buffer
    /// without a copy. Only for an executor of the main interpreter: the
    /// buffer may be dropped on a thread attached to none, and PyO3 then
    /// releases the array the next time some thread attaches, which must
    /// not be another interpreter's.
    pub fn set_results_in_place(&mut self, yes: bool) {
        self.results_in_place = yes;
    }

    /// Places the fixed-width values of column batches and results in
    /// `arena` (a worker process's, shared with its host link) instead of
    /// copying them through the rings.
    pub fn set_arena(&mut self, arena: coil_ipc::Arena) {
        self.arena = Some(arena);
    }

    /// What a batch's frame may refer to besides its bytes: this
    /// executor's shelf, and its arena's requests half.
    pub fn refs(&self) -> coil_proto::Refs<'_> {
        coil_proto::Refs {
            shelf: self.shelf.as_deref(),
            arena: self.arena.as_ref().map(|a| (a, coil_ipc::Half::Requests)),
        }
    }

    /// Whether the host interrupted this executor since last asked.
    fn was_interrupted(&self) -> bool {
        self.interrupted
            .as_ref()
            .is_some_and(|f| f.swap(false, Ordering::AcqRel))
    }

    /// The rows of the last batch run with `per_row` that failed, in order.
    pub fn take_failures(&mut self) -> Vec<RowFailure> {
        std::mem::take(&mut self.failures)
    }

    /// How a row failed, when its error is the row's alone (not the
    /// batch's: a malformed batch, a module that cannot load here).
    fn row_fault(&self, e: BatchError) -> Result<RowFault, BatchError> {
        match e {
            BatchError::Udf { error, .. } if self.was_interrupted() => {
                Ok(RowFault::TimedOut(error))
            }
            BatchError::Udf { error, .. } => Ok(RowFault::Raised(error)),
            BatchError::TimedOut { error, .. } => Ok(RowFault::TimedOut(error)),
            BatchError::BadRow {
                row: Some(_),
                message,
            } => Ok(RowFault::BadValue(message)),
            e => Err(e),
        }
    }

    /// Records row `row` as failed with `e` and writes a null in its place,
    /// over whatever part of its result was written after `mark`; or
    /// returns `e` if it is the batch's error.
    fn fail_row(
        &mut self,
        enc: &mut BatchEncoder<'_, Vec<u8>>,
        mark: usize,
        row: u32,
        e: BatchError,
    ) -> Result<(), BatchError> {
        let fault = self.row_fault(e)?;
        enc.rewind(mark);
        enc.begin_row(1)
            .and_then(|()| enc.put_null())
            .map_err(|e| enc_err(Some(row), e))?;
        self.failures.push(RowFailure { row, fault });
        Ok(())
    }

    /// Publishes, in `word`, the row being run: `row + 1` while the UDF
    /// runs on row `row` of a batch, 0 between batches. A host that gives up
    /// on a hung worker reads it to name the row.
    pub fn set_progress(&mut self, word: coil_ipc::UserWord) {
        self.progress = Some(word);
    }

    #[inline]
    fn mark(&self, row: Option<u32>) {
        if let Some(w) = &self.progress {
            w.store(row.map_or(0, |r| u64::from(r) + 1));
        }
    }

    /// Clears what a batch that failed in an unexpected way (a panic) may
    /// have left: the progress word, and a Python exception still set.
    pub fn after_failure(&mut self, py: Python<'_>) {
        self.mark(None);
        drop(PyErr::take(py));
    }

    /// Where the time of the last successful batch went.
    pub fn last_times(&self) -> Times {
        self.times
    }

    /// The UDF's kind.
    pub fn kind(&self) -> UdfKind {
        self.kind
    }

    /// Under `per_row`, records row `row` of a column batch as failed with
    /// `e` and puts a null in its place in `results`; otherwise (or if `e`
    /// is the batch's, not the row's) returns `e`.
    fn fail_in_column(
        &mut self,
        results: &mut ResultColumn,
        row: u32,
        e: BatchError,
        per_row: bool,
    ) -> Result<(), BatchError> {
        if !per_row {
            return Err(e);
        }
        let fault = self.row_fault(e)?;
        self.failures.push(RowFailure { row, fault });
        results.push_null();
        Ok(())
    }

    fn raised(&self, py: Python<'_>, row: u32, e: PyErr) -> BatchError {
        let helper = self.helper.bind(py);
        // An import inside the UDF that cannot run in a sub-interpreter
        // (found only now, at call time): its own answer, so the host can
        // fall back to process mode.
        let module = blocker(py, helper, &e);
        let error = error_info(py, helper, e);
        match module {
            Some(module) => BatchError::Incompatible { row, module, error },
            None => BatchError::Udf { row, error },
        }
    }

    /// Calls a class UDF's `close()`, once.
    ///
    /// # Errors
    ///
    /// The exception `close()` raised.
    pub fn close(&mut self, py: Python<'_>) -> Result<(), PyErrorInfo> {
        if let Some(looper) = self.looper.take() {
            if let Err(e) = looper.bind(py).call_method0("close") {
                return Err(error_info(py, self.helper.bind(py), e));
            }
        }
        if let Some(instance) = self.instance.take() {
            let helper = self.helper.bind(py);
            helper
                .getattr("close")
                .and_then(|c| c.call1((instance,)))
                .map_err(|e| error_info(py, helper, e))?;
        }
        Ok(())
    }
}

/// A row's arguments: on the stack for up to eight.
type Args<'py> = SmallVec<[Bound<'py, PyAny>; 8]>;

#[cfg(test)]
pub(crate) mod tests;
