//! The executor: loads a UDF into the current interpreter and runs batches
//! through it, converting rows to Python objects straight from the input
//! frame and results straight into the answer's bytes.

use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use coil_proto::{PyErrorInfo, RowFailure, RowFault, Times, UdfKind, UdfSpec};

use coil_ipc::{BatchDecoder, BatchEncoder, ByteSource};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use smallvec::SmallVec;

use crate::error::{bad_batch, bad_row, decode_err, enc_err, BatchError, LoadError};
use crate::timing::Sampler;

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
    kit: Option<crate::arrow_py::PyKit>,
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
                .map(|(name, t)| (name, crate::arrow_py::type_of_description(&t)))
                .collect()
        }),
        columnar,
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
                    blocker: None,
                }
            })?;
        let fail = |e: PyErr| LoadError {
            target: spec.target.clone(),
            error: error_info(py, &helper, e),
            blocker: None,
        };
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
                ))
            })
            .map_err(fail)?;
        let (func, instance, wants_numpy): (Py<PyAny>, Option<Py<PyAny>>, bool) =
            loaded.extract().map_err(fail)?;
        let adapter = if spec.kind == UdfKind::Vectorized {
            helper
                .getattr("vector_adapter")
                .and_then(|a| a.call1((func.bind(py), wants_numpy)))
                .and_then(|a| a.extract::<Option<Py<PyAny>>>().map_err(Into::into))
                .map_err(fail)?
        } else {
            None
        };
        // The declared type, or else the one the return annotation names.
        let declared = match &spec.returns {
            Some(t) => Some(t.clone()),
            None => helper
                .getattr("return_type")
                .and_then(|r| r.call1((func.bind(py), spec.kind.as_str())))
                .ok()
                .and_then(|d| crate::arrow_py::type_of_description(&d)),
        };
        let signature = helper
            .getattr("signature")
            .and_then(|f| f.call1((func.bind(py), wants_numpy)))
            .ok()
            .map(|d| signature_of_description(&d))
            .unwrap_or_default();
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
                let t = crate::arrow_py::result_wire_type(t);
                if spec.kind == UdfKind::Table {
                    arrow_schema::DataType::List(Arc::new(arrow_schema::Field::new(
                        "item", t, true,
                    )))
                } else {
                    t
                }
            }),
            kit: None,
        })
    }

    /// What the UDF's signature says: its parameters and the types their
    /// annotations name, and whether it is written for whole columns.
    pub fn signature(&self) -> &coil_proto::UdfSignature {
        &self.signature
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
    /// `[result]` per input row) to `out`. With `per_row`, a row that
    /// raises (or whose result coil cannot hold) does not stop the batch:
    /// it gets a null, and [`Executor::take_failures`] says why; a
    /// vectorized UDF whose call fails is then called again one row at a
    /// time, to find the rows that fail.
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
        per_row: bool,
    ) -> Result<(), BatchError> {
        self.failures.clear();
        let result = self.run_batch_inner(py, input, out, per_row);
        self.mark(None);
        // An interrupt that landed in a batch that ended on its error (or
        // one too late to land at all) is spent.
        self.was_interrupted();
        result
    }

    /// Runs a batch of Arrow columns (a decoded column frame) as
    /// [`Executor::run_batch`] runs rows: each row's arguments are the
    /// columns' values at that row, as Python objects; a vectorized UDF
    /// gets each column whole. The results are one Arrow column of the
    /// UDF's declared return type ([`UdfSpec::returns`]), written to `out`
    /// as a column frame's body; a result that does not fit that type is
    /// its row's error.
    ///
    /// # Errors
    ///
    /// [`BatchError`], as for [`Executor::run_batch`]; a column of a type
    /// the executor does not take, or a UDF without a declared return
    /// type, is the batch's `BadRow`.
    pub fn run_columns(
        &mut self,
        py: Python<'_>,
        batch: &coil_proto::Decoded,
        out: &mut Vec<u8>,
        per_row: bool,
    ) -> Result<(), BatchError> {
        self.failures.clear();
        let result = self.run_columns_inner(py, batch, out, per_row);
        self.mark(None);
        self.was_interrupted();
        result
    }

    fn run_columns_inner(
        &mut self,
        py: Python<'_>,
        batch: &coil_proto::Decoded,
        out: &mut Vec<u8>,
        per_row: bool,
    ) -> Result<(), BatchError> {
        use crate::arrow_py::{needs_kit, ArrowColumn, PyKit, ResultColumn};
        let t0 = Instant::now();
        let declared = self
            .returns
            .clone()
            .ok_or_else(|| bad_batch("a column batch for a UDF without a declared return type"))?;
        let rows = u32::try_from(batch.rows)
            .map_err(|_| bad_batch(format!("{} rows are more than a batch holds", batch.rows)))?;
        if self.kit.is_none()
            && (needs_kit(&declared) || batch.columns.iter().any(|c| needs_kit(c.data_type())))
        {
            let kit = PyKit::load(py, self.helper.bind(py))
                .map_err(|e| bad_batch(format!("importing datetime and decimal: {e}")))?;
            self.kit = Some(kit);
        }
        // Out of `self` while the batch runs (rows that fail are recorded
        // in `self`); put back below whatever happens.
        let kit = self.kit.take();
        let mut results = ResultColumn::new(&declared).map_err(bad_batch)?;
        results.reserve(rows as usize);
        let ran = (|| {
            let columns = batch
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    ArrowColumn::of(py, c.as_ref(), kit.as_ref())
                        .map_err(|m| bad_batch(format!("argument {i}: {m}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            match self.kind {
                UdfKind::Scalar | UdfKind::Table => {
                    // Every SAMPLE-th row timed in three parts, as the row
                    // path does.
                    let mut sampler = Sampler::since(t0);
                    let table = self.kind == UdfKind::Table;
                    // A table UDF's emitted row of a one-field struct may
                    // be the bare value.
                    let one_field = matches!(&declared,
                        arrow_schema::DataType::List(f)
                            if matches!(f.data_type(), arrow_schema::DataType::Struct(fs) if fs.len() == 1));
                    for row in 0..rows {
                        let at = row as usize;
                        sampler.start(row);
                        // A plain loop, not a `collect` into a `Result`:
                        // this is the per-row hot path.
                        let mut args = Args::new();
                        let mut bad = None;
                        for c in &columns {
                            match c.get(py, at) {
                                Ok(v) => args.push(v),
                                Err(m) => {
                                    bad = Some(bad_row(row, format!("argument: {m}")));
                                    break;
                                }
                            }
                        }
                        sampler.mark();
                        let called = match bad {
                            Some(e) => Err(e),
                            None => self.call_row(py, args, row),
                        };
                        let called = if table {
                            called.and_then(|r| self.emitted_list(py, &r, row, one_field))
                        } else {
                            called
                        };
                        sampler.mark();
                        let done = called.and_then(|result| {
                            results
                                .push(kit.as_ref(), &result)
                                .map_err(|m| bad_row(row, format!("result: {m}")))
                        });
                        sampler.finish();
                        if let Err(e) = done {
                            self.fail_in_column(&mut results, row, e, per_row)?;
                        }
                    }
                    Ok(sampler.times())
                }
                UdfKind::Vectorized => {
                    // A numeric column without nulls reaches a UDF that
                    // asked for containers as a numpy array over a copy of
                    // its buffer (writable), not as one Python object per
                    // value.
                    // A column a parameter annotated for pyarrow takes goes
                    // whole, through the Arrow C Data Interface.
                    let numpy = self.adapter.as_ref().and_then(|_| py.import("numpy").ok());
                    let wants_arrow = self.wants_arrow(py, batch.columns.len());
                    let mut lists = Vec::with_capacity(columns.len());
                    for (i, (array, c)) in batch.columns.iter().zip(&columns).enumerate() {
                        let direct = if wants_arrow[i] {
                            let helper = self.helper.bind(py);
                            Some(
                                crate::arrow_py::export_capsules(helper, array.as_ref())
                                    .map_err(|e| bad_batch(format!("argument {i}: {e}")))?,
                            )
                        } else {
                            numpy.as_ref().and_then(|np| {
                                crate::convert::numpy_from_buffer(py, np, array.as_ref())
                            })
                        };
                        let column = match direct {
                            Some(a) => a,
                            None => {
                                let mut items = Vec::with_capacity(rows as usize);
                                for row in 0..rows {
                                    items.push(
                                        c.get(py, row as usize)
                                            .map_err(|m| bad_row(row, format!("argument: {m}")))?,
                                    );
                                }
                                PyList::new(py, items)
                                    .map_err(|e| bad_batch(e.to_string()))?
                                    .into_any()
                            }
                        };
                        lists.push(column);
                    }
                    let t1 = Instant::now();
                    let python = self.vectorized_into(
                        py,
                        &lists,
                        &mut results,
                        kit.as_ref(),
                        rows,
                        per_row,
                    )?;
                    Ok(Times {
                        decode: t1 - t0,
                        python,
                        encode: t1.elapsed().saturating_sub(python),
                    })
                }
            }
        })();
        self.kit = kit;
        let mut times = ran?;
        let t2 = Instant::now();
        let array = results
            .finish()
            .map_err(|m| bad_batch(format!("results: {m}")))?;
        coil_proto::Columns::encode_body(rows as usize, &[array], out)
            .map_err(|e| bad_batch(format!("results: {e}")))?;
        times.encode += t2.elapsed();
        self.times = times;
        Ok(())
    }

    /// Runs a vectorized UDF on `columns` and appends its results to
    /// `results`; under `per_row`, a batch whose call fails is called again
    /// row by row so that only the rows that fail are reported. Returns the
    /// time spent in the UDF's calls.
    fn vectorized_into<'py>(
        &mut self,
        py: Python<'py>,
        columns: &[Bound<'py, PyAny>],
        results: &mut crate::arrow_py::ResultColumn,
        kit: Option<&crate::arrow_py::PyKit>,
        rows: u32,
        per_row: bool,
    ) -> Result<std::time::Duration, BatchError> {
        let start = Instant::now();
        let called = self.call_vectorized(py, columns, rows, 0, "vector_out");
        let python = start.elapsed();
        match called {
            Ok(result) => {
                // An Arrow array of the declared type is taken whole; one
                // of another type goes value by value, each checked.
                if result.hasattr("__arrow_c_array__").unwrap_or(false) {
                    let array = crate::arrow_py::import_capsules(&result)
                        .map_err(|m| bad_batch(format!("the UDF's Arrow result: {m}")))?;
                    if array.len() != rows as usize {
                        return Err(bad_batch(format!(
                            "the vectorized UDF returned {} values for {rows} rows",
                            array.len()
                        )));
                    }
                    if results.take_whole(array) {
                        return Ok(python);
                    }
                    let list = result
                        .call_method0("to_pylist")
                        .map_err(|e| self.raised(py, 0, e))?;
                    return self.push_items(py, &list, results, kit, per_row, python);
                }
                if results.extend_from_buffer(&result) {
                    if results.len() != rows as usize {
                        return Err(bad_batch(format!(
                            "the vectorized UDF returned {} values for {rows} rows",
                            results.len()
                        )));
                    }
                    return Ok(python);
                }
                self.push_items(py, &result, results, kit, per_row, python)
            }
            Err(e @ BatchError::Incompatible { .. }) => Err(e),
            Err(e) if !per_row => Err(e),
            Err(_) => {
                for row in 0..rows {
                    let one = one_row(py, columns, row);
                    let put = self
                        .call_vectorized(py, &one, 1, row, "vector_result")
                        .and_then(|result| {
                            let item = result.get_item(0).map_err(|e| self.raised(py, row, e))?;
                            results
                                .push(kit, &item)
                                .map_err(|m| bad_row(row, format!("result: {m}")))
                        });
                    if let Err(e) = put {
                        let e = match e {
                            BatchError::Udf { error, .. } => BatchError::Udf { row, error },
                            BatchError::BadRow { message, .. } => bad_row(row, message),
                            e => e,
                        };
                        self.fail_in_column(results, row, e, true)?;
                    }
                }
                // Called again row by row: all of it counts as Python.
                Ok(start.elapsed())
            }
        }
    }

    /// The rows a table UDF's `result` (a generator or iterable) emits
    /// for input row `row`, as a list; with `one_field`, a bare value
    /// stands for a one-field row.
    fn emitted_list<'py>(
        &self,
        py: Python<'py>,
        result: &Bound<'py, PyAny>,
        row: u32,
        one_field: bool,
    ) -> Result<Bound<'py, PyAny>, BatchError> {
        let mut items = self.run_table(py, result, row)?;
        if one_field {
            for item in &mut items {
                if !(item.is_instance_of::<PyTuple>()
                    || item.is_instance_of::<PyList>()
                    || item.is_instance_of::<pyo3::types::PyDict>())
                {
                    *item = PyTuple::new(py, [item.clone()])
                        .map_err(|e| self.raised(py, row, e))?
                        .into_any();
                }
            }
        }
        Ok(PyList::new(py, items)
            .map_err(|e| self.raised(py, row, e))?
            .into_any())
    }

    /// Under `per_row`, records row `row` of a column batch as failed with
    /// `e` and puts a null in its place in `results`; otherwise (or if `e`
    /// is the batch's, not the row's) returns `e`.
    fn fail_in_column(
        &mut self,
        results: &mut crate::arrow_py::ResultColumn,
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

    /// Appends each item of a vectorized UDF's result to `results`, each
    /// checked to fit; under `per_row` an item that does not is its row's
    /// failure. Returns `python`.
    fn push_items<'py>(
        &mut self,
        py: Python<'py>,
        result: &Bound<'py, PyAny>,
        results: &mut crate::arrow_py::ResultColumn,
        kit: Option<&crate::arrow_py::PyKit>,
        per_row: bool,
        python: std::time::Duration,
    ) -> Result<std::time::Duration, BatchError> {
        let items = result.try_iter().map_err(|e| self.raised(py, 0, e))?;
        for (row, item) in items.enumerate() {
            let row = row as u32;
            let put = item.map_err(|e| self.raised(py, row, e)).and_then(|item| {
                results
                    .push(kit, &item)
                    .map_err(|m| bad_row(row, format!("result: {m}")))
            });
            if let Err(e) = put {
                self.fail_in_column(results, row, e, per_row)?;
            }
        }
        Ok(python)
    }

    /// Which of `n` columns the vectorized UDF's parameters ask to get as
    /// pyarrow arrays (the loader's adapter says, from the annotations).
    fn wants_arrow(&self, py: Python<'_>, n: usize) -> Vec<bool> {
        let Some(adapt) = &self.adapter else {
            return vec![false; n];
        };
        let adapt = adapt.bind(py);
        let kinds: Vec<Option<String>> = adapt
            .getattr("kinds")
            .and_then(|k| k.extract())
            .unwrap_or_default();
        let rest: Option<String> = adapt
            .getattr("rest")
            .and_then(|r| r.extract())
            .unwrap_or_default();
        (0..n)
            .map(|i| {
                kinds
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| rest.clone())
                    .as_deref()
                    == Some("arrow")
            })
            .collect()
    }

    /// Calls the UDF on one row's arguments and returns its result.
    fn call_row<'py>(
        &self,
        py: Python<'py>,
        args: Args<'py>,
        row: u32,
    ) -> Result<Bound<'py, PyAny>, BatchError> {
        self.mark(Some(row));
        crate::interp::call_vectored(self.func.bind(py), &args).map_err(|e| self.raised(py, row, e))
    }

    fn run_batch_inner<S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'_>,
        input: &S,
        out: &mut Vec<u8>,
        per_row: bool,
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
                let mut sampler = Sampler::new();
                for row in 0..rows {
                    sampler.start(row);
                    let args = self.read_args(py, &mut dec, row)?;
                    sampler.mark();
                    let mark = enc.written();
                    match self.run_row(py, args, row, &mut enc, &mut sampler) {
                        Ok(()) => {}
                        Err(e) if per_row => self.fail_row(&mut enc, mark, row, e)?,
                        Err(e) => return Err(e),
                    }
                    sampler.finish();
                }
                self.times = sampler.times();
            }
            UdfKind::Vectorized => self.run_vectorized(py, &mut dec, &mut enc, rows, per_row)?,
        }
        dec.finish().map_err(|e| decode_err(None, e))
    }

    /// Calls the UDF on one row's arguments (running a table UDF's
    /// generator) and encodes its result; marks in `sampler` when the
    /// Python part ended.
    fn run_row<'py>(
        &self,
        py: Python<'py>,
        args: Args<'py>,
        row: u32,
        enc: &mut BatchEncoder<'_, Vec<u8>>,
        sampler: &mut Sampler,
    ) -> Result<(), BatchError> {
        self.mark(Some(row));
        let result = crate::interp::call_vectored(self.func.bind(py), &args)
            .map_err(|e| self.raised(py, row, e))?;
        drop(args);
        let emitted = if self.kind == UdfKind::Table {
            Some(self.run_table(py, &result, row)?)
        } else {
            None
        };
        sampler.mark();
        enc.begin_row(1).map_err(|e| enc_err(Some(row), e))?;
        match &emitted {
            None => crate::convert::put_py(enc, &result, 0)
                .map_err(|m| bad_row(row, format!("result: {m}"))),
            Some(items) => crate::convert::put_emitted(enc, items, row),
        }
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
            .and_then(|message| coil_proto::incompatible_module(&message));
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

    fn run_vectorized<S: ByteSource + ?Sized>(
        &mut self,
        py: Python<'_>,
        dec: &mut BatchDecoder<'_, S>,
        enc: &mut BatchEncoder<'_, Vec<u8>>,
        rows: u32,
        per_row: bool,
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
        let columns: Vec<Bound<'_, PyAny>> = columns.into_iter().map(Bound::into_any).collect();
        self.vectorized_on(py, &columns, enc, rows, per_row, t0)
    }

    /// Runs a vectorized UDF on `columns` (lists, or numpy arrays; decoded
    /// since `t0`) and encodes its results.
    fn vectorized_on<'py>(
        &mut self,
        py: Python<'py>,
        columns: &[Bound<'py, PyAny>],
        enc: &mut BatchEncoder<'_, Vec<u8>>,
        rows: u32,
        per_row: bool,
        t0: Instant,
    ) -> Result<(), BatchError> {
        let t1 = Instant::now();
        let called = self.call_vectorized(py, columns, rows, 0, "vector_result");
        let t2 = Instant::now();
        match called {
            Ok(result) => {
                let items = result.try_iter().map_err(|e| self.raised(py, 0, e))?;
                for (row, item) in items.enumerate() {
                    let row = row as u32;
                    let mark = enc.written();
                    let put = item.map_err(|e| self.raised(py, row, e)).and_then(|item| {
                        enc.begin_row(1).map_err(|e| enc_err(Some(row), e))?;
                        crate::convert::put_py(enc, &item, 0)
                            .map_err(|m| bad_row(row, format!("result: {m}")))
                    });
                    match put {
                        Ok(()) => {}
                        Err(e) if per_row => self.fail_row(enc, mark, row, e)?,
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e @ BatchError::Incompatible { .. }) => return Err(e),
            Err(e) if !per_row => return Err(e),
            // The call failed for the batch: call again one row at a time,
            // so that only the rows that fail are reported.
            Err(_) => {
                for row in 0..rows {
                    let one = one_row(py, columns, row);
                    let mark = enc.written();
                    let put = self
                        .call_vectorized(py, &one, 1, row, "vector_result")
                        .and_then(|result| {
                            let item = result.get_item(0).map_err(|e| self.raised(py, row, e))?;
                            enc.begin_row(1).map_err(|e| enc_err(Some(row), e))?;
                            crate::convert::put_py(enc, &item, 0)
                                .map_err(|m| bad_row(row, format!("result: {m}")))
                        });
                    if let Err(e) = put {
                        let e = match e {
                            BatchError::Udf { error, .. } => BatchError::Udf { row, error },
                            BatchError::BadRow { message, .. } => bad_row(row, message),
                            e => e,
                        };
                        self.fail_row(enc, mark, row, e)?;
                    }
                }
            }
        }
        self.times = Times {
            decode: t1 - t0,
            python: t2 - t1,
            encode: t2.elapsed(),
        };
        Ok(())
    }

    /// Calls a vectorized UDF on `columns` (as the containers its
    /// annotations ask for) and returns its result shaped by the loader's
    /// `shaper` (unless it is a list already): `"vector_result"`, a list
    /// of `rows` items (a scalar result broadcast), or `"vector_out"`, the
    /// same but a numeric numpy array (or pandas Series over one) as that
    /// array, for an Arrow column to copy whole. Publishes `first`, the
    /// batch row the columns start at, as the row running.
    fn call_vectorized<'py>(
        &self,
        py: Python<'py>,
        columns: &[Bound<'py, PyAny>],
        rows: u32,
        first: u32,
        shaper: &str,
    ) -> Result<Bound<'py, PyAny>, BatchError> {
        let args = match &self.adapter {
            Some(adapt) => adapt
                .bind(py)
                .call1((PyList::new(py, columns).map_err(|e| self.raised(py, 0, e))?,))
                .and_then(|a| a.cast_into::<PyTuple>().map_err(Into::into))
                .map_err(|e| self.raised(py, 0, e))?,
            None => PyTuple::new(py, columns).map_err(|e| self.raised(py, 0, e))?,
        };
        self.mark(Some(first));
        let mut result = self
            .func
            .bind(py)
            .call1(args)
            .map_err(|e| self.raised(py, 0, e))?;
        if !result.is_exact_instance_of::<PyList>() {
            result = self
                .helper
                .bind(py)
                .getattr(shaper)
                .and_then(|v| v.call1((&result, rows)))
                .map_err(|e| self.raised(py, 0, e))?;
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
        Ok(result)
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

/// Row `row` of a vectorized batch's `columns`, as one-item columns.
fn one_row<'py>(
    py: Python<'py>,
    columns: &[Bound<'py, PyAny>],
    row: u32,
) -> Vec<Bound<'py, PyAny>> {
    columns
        .iter()
        .map(|c| {
            let item = c.get_item(row as usize).expect("a row of the batch");
            PyList::new(py, [item]).expect("a one-item list").into_any()
        })
        .collect()
}

/// A row's arguments: on the stack for up to eight.
type Args<'py> = SmallVec<[Bound<'py, PyAny>; 8]>;
