//! The executor: loads a UDF into the current interpreter and runs batches
//! through it, converting rows to Python objects straight from the input
//! frame and results straight into the answer's bytes.

use std::ffi::CString;
use std::time::{Duration, Instant};

use coil_proto::{PyErrorInfo, Times, UdfKind, UdfSpec};

use coil_ipc::{
    BatchDecoder, BatchEncoder, ByteSink, ByteSource, DecodeError, EncodeError, ValueHeader,
    MAX_DEPTH,
};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use smallvec::SmallVec;

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

/// Why a batch produced no results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The UDF raised on row `row` (0-based within the batch; for a
    /// vectorized UDF the batch's first row).
    #[error("the UDF raised on row {row}: {error}")]
    Udf {
        /// Index of the row in the batch.
        row: u32,
        /// The exception.
        error: PyErrorInfo,
    },
    /// The UDF raised on row `row` because something it imports cannot
    /// load in a sub-interpreter (an `ImportError` saying so is in the
    /// exception's chain): the batch can run in a worker process instead.
    #[error("row {row}: {module} cannot load in a sub-interpreter: {error}")]
    Incompatible {
        /// Index of the row in the batch.
        row: u32,
        /// The top-level package that cannot load.
        module: String,
        /// The exception.
        error: PyErrorInfo,
    },
    /// A value of row `row` could not be converted to or from Python.
    #[error("row {}: {message}", row.map(|r| r.to_string()).unwrap_or_else(|| "?".into()))]
    BadRow {
        /// Index of the row in the batch, when one row is to blame.
        row: Option<u32>,
        /// What was wrong with it.
        message: String,
    },
}

/// Why a UDF could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("loading UDF {target}: {error}")]
pub struct LoadError {
    /// What was being loaded.
    pub target: String,
    /// The exception that loading raised.
    pub error: PyErrorInfo,
}

/// A loaded UDF, ready to run batches in the interpreter that loaded it.
#[derive(Debug)]
pub struct Executor {
    helper: Py<PyModule>,
    func: Py<PyAny>,
    instance: Option<Py<PyAny>>,
    kind: UdfKind,
    numpy: Option<Py<PyAny>>,
    scratch: Vec<u8>,
    progress: Option<coil_ipc::UserWord>,
    times: Times,
}

/// Every how many rows the executor times the parts of a row.
const SAMPLE: u32 = 64;

/// A cheap timestamp for proportions: the CPU's time-stamp counter (a few
/// ns, where `Instant::now` costs tens on these VMs); a monotonic clock
/// elsewhere. Only ratios of differences are used.
#[inline]
fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` exists on every x86_64 CPU and only reads the
        // time-stamp counter.
        unsafe { std::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Splits a measured `total` in the proportions of sampled `parts`
/// (decode, Python, encode; in any unit).
fn split_times(total: Duration, parts: [u64; 3]) -> Times {
    let sum = u128::from(parts.iter().sum::<u64>()).max(1);
    let share = |p: u64| Duration::from_nanos((total.as_nanos() * u128::from(p) / sum) as u64);
    Times {
        decode: share(parts[0]),
        python: share(parts[1]),
        encode: share(parts[2]),
    }
}

fn bad_row(row: u32, message: impl Into<String>) -> BatchError {
    BatchError::BadRow {
        row: Some(row),
        message: message.into(),
    }
}

fn decode_err(row: Option<u32>, e: DecodeError) -> BatchError {
    BatchError::BadRow {
        row,
        message: format!("malformed batch: {e}"),
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
        let code = CString::new(include_str!("udf.py")).expect("no NUL in udf.py");
        let helper =
            PyModule::from_code(py, &code, c"<coil>/udf.py", c"_coil_udf").map_err(|e| {
                LoadError {
                    target: spec.target.clone(),
                    error: bare_error_info(py, &e),
                }
            })?;
        let fail = |e: PyErr| LoadError {
            target: spec.target.clone(),
            error: error_info(py, &helper, e),
        };
        let paths: Vec<String> = spec
            .paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let loaded = helper
            .getattr("load")
            .and_then(|l| l.call1((&spec.target, paths)))
            .map_err(fail)?;
        let (func, instance, wants_numpy): (Py<PyAny>, Option<Py<PyAny>>, bool) =
            loaded.extract().map_err(fail)?;
        let numpy = if spec.kind == UdfKind::Vectorized && wants_numpy {
            Some(
                py.import("numpy")
                    .map_err(fail)?
                    .getattr("asarray")
                    .map_err(fail)?
                    .unbind(),
            )
        } else {
            None
        };
        Ok(Executor {
            helper: helper.unbind(),
            func,
            instance,
            kind: spec.kind,
            numpy,
            scratch: Vec::new(),
            progress: None,
            times: Times::default(),
        })
    }

    /// Publishes, in `word`, the row being run: `row + 1` while the UDF
    /// runs on row `row` of a batch, 0 between batches. A host that gives up
    /// on a hung worker reads it to name the row.
    pub fn set_progress(&mut self, word: coil_ipc::UserWord) {
        self.progress = Some(word);
    }

    fn mark(&self, row: Option<u32>) {
        if let Some(w) = &self.progress {
            w.store(row.map_or(0, |r| u64::from(r) + 1));
        }
    }

    /// Where the time of the last successful batch went.
    pub fn last_times(&self) -> Times {
        self.times
    }

    /// The UDF's kind.
    pub fn kind(&self) -> UdfKind {
        self.kind
    }

    /// Runs the batch in `input` and appends the encoded results (one row
    /// `[result]` per input row) to `out`.
    ///
    /// # Errors
    ///
    /// [`BatchError`]; `out` then holds unspecified bytes after its original
    /// length.
    pub fn run_batch<S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'_>,
        input: &S,
        out: &mut Vec<u8>,
    ) -> Result<(), BatchError> {
        let result = self.run_batch_inner(py, input, out);
        self.mark(None);
        result
    }

    fn run_batch_inner<S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'_>,
        input: &S,
        out: &mut Vec<u8>,
    ) -> Result<(), BatchError> {
        let mut dec = BatchDecoder::new(input).map_err(|e| decode_err(None, e))?;
        let rows = dec.rows_remaining();
        let mut enc = BatchEncoder::new(out, rows as usize).map_err(|e| enc_err(None, e))?;
        match self.kind {
            UdfKind::Scalar | UdfKind::Table => {
                // Row by row, so each Python object is freed (and its memory
                // reused, still in cache) before the next is made. Every
                // SAMPLE-th row is timed in three parts; the batch's measured
                // total is split in their proportions.
                let start = Instant::now();
                let mut parts = [0u64; 3];
                for row in 0..rows {
                    let sampled = row % SAMPLE == 0;
                    let t0 = sampled.then(ticks);
                    let args = self.read_args(py, &mut dec, row)?;
                    let t1 = sampled.then(ticks);
                    self.mark(Some(row));
                    let result = call_vectored(self.func.bind(py), &args)
                        .map_err(|e| self.raised(py, row, e))?;
                    drop(args);
                    let emitted = if self.kind == UdfKind::Table {
                        Some(self.run_table(py, &result, row)?)
                    } else {
                        None
                    };
                    let t2 = sampled.then(ticks);
                    enc.begin_row(1).map_err(|e| enc_err(Some(row), e))?;
                    match &emitted {
                        None => put_py(&mut enc, &result, 0)
                            .map_err(|m| bad_row(row, format!("result: {m}")))?,
                        Some(items) => put_emitted(&mut enc, items, row)?,
                    }
                    if let (Some(t0), Some(t1), Some(t2)) = (t0, t1, t2) {
                        let t3 = ticks();
                        parts[0] += t1.wrapping_sub(t0);
                        parts[1] += t2.wrapping_sub(t1);
                        parts[2] += t3.wrapping_sub(t2);
                    }
                }
                self.times = split_times(start.elapsed(), parts);
            }
            UdfKind::Vectorized => self.run_vectorized(py, &mut dec, &mut enc, rows)?,
        }
        dec.finish().map_err(|e| decode_err(None, e))
    }

    fn raised(&self, py: Python<'_>, row: u32, e: PyErr) -> BatchError {
        let helper = self.helper.bind(py);
        // An import inside the UDF that cannot run in a sub-interpreter
        // (found only now, at call time): its own answer, so the host can
        // fall back to process mode.
        let module = helper
            .getattr("blocker")
            .and_then(|b| b.call1((e.value(py),)))
            .and_then(|m| m.extract::<Option<String>>())
            .ok()
            .flatten()
            .and_then(|message| crate::subinterp::incompatible_module(&message));
        let error = error_info(py, helper, e);
        match module {
            Some(module) => BatchError::Incompatible { row, module, error },
            None => BatchError::Udf { row, error },
        }
    }

    fn read_args<'py, S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'py>,
        dec: &mut BatchDecoder<'_, S>,
        row: u32,
    ) -> Result<Args<'py>, BatchError> {
        let n = dec.begin_row().map_err(|e| decode_err(Some(row), e))?;
        let mut args = Args::new();
        for _ in 0..n {
            args.push(
                self.read_py(py, dec, 0)
                    .map_err(|e| decode_err(Some(row), e))?,
            );
        }
        Ok(args)
    }

    /// Reads one value of the batch as a Python object.
    fn read_py<'py, S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'py>,
        dec: &mut BatchDecoder<'_, S>,
        depth: usize,
    ) -> Result<Bound<'py, PyAny>, DecodeError> {
        let at = dec.position();
        Ok(match dec.next_value()? {
            ValueHeader::Null => py.None().into_bound(py),
            ValueHeader::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
            ValueHeader::Int(i) => PyInt::new(py, i).into_any(),
            ValueHeader::Float(f) => PyFloat::new(py, f).into_any(),
            ValueHeader::Str { len } => {
                self.scratch.clear();
                dec.append_bytes(len, &mut self.scratch)?;
                let s = std::str::from_utf8(&self.scratch).map_err(|_| DecodeError {
                    offset: at,
                    kind: coil_ipc::DecodeErrorKind::InvalidUtf8,
                })?;
                PyString::new(py, s).into_any()
            }
            ValueHeader::Bytes { len } => {
                self.scratch.clear();
                dec.append_bytes(len, &mut self.scratch)?;
                PyBytes::new(py, &self.scratch).into_any()
            }
            ValueHeader::List { len } => {
                if depth >= MAX_DEPTH {
                    return Err(DecodeError {
                        offset: at,
                        kind: coil_ipc::DecodeErrorKind::TooDeep {
                            max: MAX_DEPTH as u32,
                        },
                    });
                }
                let list = PyList::empty(py);
                for _ in 0..len {
                    let item = self.read_py(py, dec, depth + 1)?;
                    list.append(item).expect("appending to a new list");
                }
                list.into_any()
            }
        })
    }

    /// Runs a table UDF's result (a generator or iterable) to the end.
    fn run_table<'py>(
        &self,
        py: Python<'py>,
        result: &Bound<'py, PyAny>,
        row: u32,
    ) -> Result<Vec<Bound<'py, PyAny>>, BatchError> {
        let iter = result.try_iter().map_err(|_| {
            bad_row(
                row,
                format!(
                    "a table UDF must return an iterable, got {}",
                    type_name(result)
                ),
            )
        })?;
        let mut emitted = Vec::new();
        for item in iter {
            emitted.push(item.map_err(|e| self.raised(py, row, e))?);
        }
        Ok(emitted)
    }

    fn run_vectorized<S: ByteSource + ?Sized, O: ByteSink + ?Sized>(
        &mut self,
        py: Python<'_>,
        dec: &mut BatchDecoder<'_, S>,
        enc: &mut BatchEncoder<'_, O>,
        rows: u32,
    ) -> Result<(), BatchError> {
        let t0 = Instant::now();
        let mut columns: Vec<Bound<'_, PyList>> = Vec::new();
        for row in 0..rows {
            let n = dec.begin_row().map_err(|e| decode_err(Some(row), e))? as usize;
            if row == 0 {
                columns = (0..n).map(|_| PyList::empty(py)).collect();
            } else if n != columns.len() {
                return Err(bad_row(
                    row,
                    format!("has {n} values, row 0 has {}", columns.len()),
                ));
            }
            for col in &columns {
                let v = self
                    .read_py(py, dec, 0)
                    .map_err(|e| decode_err(Some(row), e))?;
                col.append(v).expect("appending to a new list");
            }
        }
        let args: Vec<Bound<'_, PyAny>> = match &self.numpy {
            Some(asarray) => columns
                .into_iter()
                .map(|c| asarray.bind(py).call1((c,)))
                .collect::<PyResult<_>>()
                .map_err(|e| self.raised(py, 0, e))?,
            None => columns.into_iter().map(Bound::into_any).collect(),
        };
        let args = PyTuple::new(py, args).map_err(|e| self.raised(py, 0, e))?;
        let t1 = Instant::now();
        self.mark(Some(0));
        let mut result = self
            .func
            .bind(py)
            .call1(args)
            .map_err(|e| self.raised(py, 0, e))?;
        if let Ok(tolist) = result.getattr("tolist") {
            result = tolist.call0().map_err(|e| self.raised(py, 0, e))?;
        }
        let got = result.len().map_err(|_| {
            bad_row(
                0,
                format!(
                    "a vectorized UDF must return a sequence, got {}",
                    type_name(&result)
                ),
            )
        })?;
        if got != rows as usize {
            return Err(BatchError::BadRow {
                row: None,
                message: format!("the vectorized UDF returned {got} values for {rows} rows"),
            });
        }
        let t2 = Instant::now();
        for (row, item) in result
            .try_iter()
            .map_err(|e| self.raised(py, 0, e))?
            .enumerate()
        {
            let row = row as u32;
            let item = item.map_err(|e| self.raised(py, row, e))?;
            enc.begin_row(1).map_err(|e| enc_err(Some(row), e))?;
            put_py(enc, &item, 0).map_err(|m| bad_row(row, format!("result: {m}")))?;
        }
        self.times = Times {
            decode: t1 - t0,
            python: t2 - t1,
            encode: t2.elapsed(),
        };
        Ok(())
    }

    /// Calls a class UDF's `close()`, once.
    ///
    /// # Errors
    ///
    /// The exception `close()` raised.
    pub fn close(&mut self, py: Python<'_>) -> Result<(), PyErrorInfo> {
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

/// Calls `func(*args)` through the vectorcall protocol: no argument tuple
/// is built (10–25 % faster than a tuple call for small functions).
fn call_vectored<'py>(
    func: &Bound<'py, PyAny>,
    args: &[Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    let py = func.py();
    if let [one] = args {
        // The common case, without building an array.
        let ptr = one.as_ptr();
        // SAFETY: as below, with an array of exactly one live argument.
        return unsafe {
            let ret = ffi::PyObject_Vectorcall(func.as_ptr(), &ptr, 1, std::ptr::null_mut());
            Bound::from_owned_ptr_or_err(py, ret)
        };
    }
    let ptrs: SmallVec<[*mut ffi::PyObject; 8]> = args.iter().map(Bound::as_ptr).collect();
    // SAFETY: we hold the GIL (`py`); `func` and every argument are live
    // objects borrowed for the call (CPython does not keep the array), the
    // array holds exactly `args.len()` pointers, and no keyword names are
    // passed. The result is a new reference, or NULL with an exception set,
    // which `from_owned_ptr_or_err` turns into the `PyErr`.
    unsafe {
        let ret = ffi::PyObject_Vectorcall(
            func.as_ptr(),
            ptrs.as_ptr(),
            args.len(),
            std::ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, ret)
    }
}

/// Routes the current interpreter's `sys.stdout` and `sys.stderr` to
/// `tracing` (target `coil::worker`, tagged with the executor thread), once
/// per interpreter: in the in-process modes a UDF's `print` must never reach
/// the host's own stdout.
///
/// # Errors
///
/// The Python error if the writers cannot be installed.
pub fn route_output_to_log(py: Python<'_>) -> PyResult<()> {
    let code = CString::new(include_str!("udf.py")).expect("no NUL in udf.py");
    let helper = PyModule::from_code(py, &code, c"<coil>/udf.py", c"_coil_udf")?;
    let sink = pyo3::types::PyCFunction::new_closure(
        py,
        Some(c"coil_log_sink"),
        None,
        |args: &Bound<'_, PyTuple>,
         _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>|
         -> PyResult<()> {
            let (stream, line): (String, String) = args.extract()?;
            let thread = std::thread::current();
            let worker = thread.name().unwrap_or("?");
            if stream == "stderr" {
                tracing::warn!(target: "coil::worker", worker, stream, "{line}");
            } else {
                tracing::info!(target: "coil::worker", worker, stream, "{line}");
            }
            Ok(())
        },
    )?;
    helper.getattr("route_output")?.call1((sink,))?;
    Ok(())
}

/// Encodes the rows a table UDF emitted for one input row: each a tuple or
/// list, or a single value for a one-column row.
fn put_emitted<S: ByteSink + ?Sized>(
    enc: &mut BatchEncoder<'_, S>,
    emitted: &[Bound<'_, PyAny>],
    row: u32,
) -> Result<(), BatchError> {
    enc.begin_list(emitted.len())
        .map_err(|e| enc_err(Some(row), e))?;
    for item in emitted {
        if item.is_instance_of::<PyTuple>() || item.is_instance_of::<PyList>() {
            put_py(enc, item, 1).map_err(|m| bad_row(row, format!("emitted row: {m}")))?;
        } else {
            enc.begin_list(1).map_err(|e| enc_err(Some(row), e))?;
            put_py(enc, item, 2).map_err(|m| bad_row(row, format!("emitted row: {m}")))?;
        }
    }
    Ok(())
}

fn enc_err(row: Option<u32>, e: EncodeError) -> BatchError {
    BatchError::BadRow {
        row,
        message: format!("result: {e}"),
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Encodes a Python object as a row-model value: `None`, `bool`, `int`
/// (within i64), `float`, `str`, `bytes`/`bytearray`, and lists or tuples of
/// these; numpy scalars through `.item()`.
fn put_py<S: ByteSink + ?Sized>(
    enc: &mut BatchEncoder<'_, S>,
    obj: &Bound<'_, PyAny>,
    depth: usize,
) -> Result<(), String> {
    let full = |e: EncodeError| e.to_string();
    // The common exact types first: one pointer comparison each.
    if obj.is_exact_instance_of::<PyInt>() {
        let i: i64 = obj.extract().map_err(|_| too_big(obj))?;
        return enc.put_int(i).map_err(full);
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        let s = s
            .to_str()
            .map_err(|e| format!("str is not valid UTF-8: {e}"))?;
        return enc.put_str(s).map_err(full);
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return enc.put_float(f.value()).map_err(full);
    }
    if obj.is_none() {
        enc.put_null().map_err(full)
    } else if let Ok(b) = obj.cast::<PyBool>() {
        enc.put_bool(b.is_true()).map_err(full)
    } else if obj.is_instance_of::<PyInt>() {
        let i: i64 = obj.extract().map_err(|_| too_big(obj))?;
        enc.put_int(i).map_err(full)
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        enc.put_float(f.value()).map_err(full)
    } else if let Ok(s) = obj.cast::<PyString>() {
        let s = s
            .to_str()
            .map_err(|e| format!("str is not valid UTF-8: {e}"))?;
        enc.put_str(s).map_err(full)
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        enc.put_bytes(b.as_bytes()).map_err(full)
    } else if let Ok(b) = obj.cast::<PyByteArray>() {
        enc.put_bytes(&b.to_vec()).map_err(full)
    } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        if depth >= MAX_DEPTH {
            return Err(format!("lists nest deeper than {MAX_DEPTH}"));
        }
        let n = obj.len().map_err(|e| e.to_string())?;
        enc.begin_list(n).map_err(full)?;
        for item in obj.try_iter().map_err(|e| e.to_string())? {
            put_py(enc, &item.map_err(|e| e.to_string())?, depth + 1)?;
        }
        Ok(())
    } else if is_numpy_scalar(obj) {
        let item = obj.call_method0("item").map_err(|e| e.to_string())?;
        put_py(enc, &item, depth)
    } else {
        Err(format!(
            "a value of type {} is not supported (None, bool, int, float, str, bytes, list, tuple)",
            type_name(obj)
        ))
    }
}

fn too_big(obj: &Bound<'_, PyAny>) -> String {
    format!(
        "int {} does not fit in a 64-bit integer",
        obj.str().map(|s| s.to_string()).unwrap_or_default()
    )
}

fn is_numpy_scalar(obj: &Bound<'_, PyAny>) -> bool {
    obj.get_type()
        .module()
        .map(|m| m == "numpy")
        .unwrap_or(false)
        && obj.hasattr("item").unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_measured_total_is_split_in_the_sampled_proportions() {
        let t = split_times(Duration::from_micros(100), [1, 3, 1]);
        assert_eq!(t.decode, Duration::from_micros(20));
        assert_eq!(t.python, Duration::from_micros(60));
        assert_eq!(t.encode, Duration::from_micros(20));
        // Nothing sampled: nothing attributed, and no division by zero.
        assert_eq!(
            split_times(Duration::from_micros(5), [0, 0, 0]),
            Times::default()
        );
        // The parts never add up to more than the total.
        let t = split_times(Duration::from_nanos(1000), [1, 1, 1]);
        assert!(t.total() <= Duration::from_nanos(1000));
        assert!(t.total() >= Duration::from_nanos(997));
    }
}
