//! The executor: loads a UDF into the current interpreter and runs batches
//! through it, converting rows to Python objects straight from the input
//! frame and results straight into the answer's bytes.

use std::ffi::CString;
use std::time::Instant;

use coil_proto::{PyErrorInfo, Times, UdfKind, UdfSpec};

use coil_ipc::{BatchDecoder, BatchEncoder, ByteSink, ByteSource, DecodeError, EncodeError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
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

pub(crate) fn bad_row(row: u32, message: impl Into<String>) -> BatchError {
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
                    let sampled = row % crate::timing::SAMPLE == 0;
                    let t0 = sampled.then(crate::timing::ticks);
                    let args = self.read_args(py, &mut dec, row)?;
                    let t1 = sampled.then(crate::timing::ticks);
                    self.mark(Some(row));
                    let result = crate::interp::call_vectored(self.func.bind(py), &args)
                        .map_err(|e| self.raised(py, row, e))?;
                    drop(args);
                    let emitted = if self.kind == UdfKind::Table {
                        Some(self.run_table(py, &result, row)?)
                    } else {
                        None
                    };
                    let t2 = sampled.then(crate::timing::ticks);
                    enc.begin_row(1).map_err(|e| enc_err(Some(row), e))?;
                    match &emitted {
                        None => crate::convert::put_py(&mut enc, &result, 0)
                            .map_err(|m| bad_row(row, format!("result: {m}")))?,
                        Some(items) => crate::convert::put_emitted(&mut enc, items, row)?,
                    }
                    if let (Some(t0), Some(t1), Some(t2)) = (t0, t1, t2) {
                        let t3 = crate::timing::ticks();
                        parts[0] += t1.wrapping_sub(t0);
                        parts[1] += t2.wrapping_sub(t1);
                        parts[2] += t3.wrapping_sub(t2);
                    }
                }
                self.times = crate::timing::split_times(start.elapsed(), parts);
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
                crate::convert::read_py(py, dec, &mut self.scratch, 0)
                    .map_err(|e| decode_err(Some(row), e))?,
            );
        }
        Ok(args)
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
                    crate::convert::type_name(result)
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
                let v = crate::convert::read_py(py, dec, &mut self.scratch, 0)
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
                    crate::convert::type_name(&result)
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
            crate::convert::put_py(enc, &item, 0)
                .map_err(|m| bad_row(row, format!("result: {m}")))?;
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

pub(crate) fn enc_err(row: Option<u32>, e: EncodeError) -> BatchError {
    BatchError::BadRow {
        row,
        message: format!("result: {e}"),
    }
}
