//! A Python UDF as a DataFusion scalar function, backed by a coil runner.

use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema};
use coil_host::{OnError, RunError, Runner, UdfKind, UdfSpec};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::{Error, PythonOptions};

/// What a Python function is, as SQL sees it: enough to start it again in
/// another session (or process) and get the same function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PythonFunction {
    /// Its SQL name.
    pub name: String,
    /// The UDF: its target (`file.py:name`), kind and paths. Its
    /// `returns` is the SQL return type.
    pub spec: UdfSpec,
    /// Its argument types: `None` takes any number of arguments of any
    /// type coil takes; a `None` among them takes any type there.
    pub args: Option<Vec<Option<DataType>>>,
    /// Its parameters' names, as the Python function names them (empty
    /// when it takes `*args`): errors name a failed row's values by them.
    pub arg_names: Vec<String>,
    /// Its return type.
    pub returns: DataType,
    /// A window function (the definition says `coil_kind = "window"`):
    /// over a partition when its kind is [`UdfKind::Vectorized`], over
    /// frames when it is [`UdfKind::VectorizedAggregate`].
    pub window: bool,
    /// Whether DataFusion may fold a call with literal arguments at
    /// planning time ([`Volatility::Immutable`] / `Stable`) or must call
    /// it for every row ([`Volatility::Volatile`], the default).
    pub volatility: Volatility,
}

impl PythonFunction {
    /// The function `spec` is, typed from what is declared and, for what
    /// is not, from its annotations, which its executors read when it
    /// starts: parameter annotations (`def slug(title: str)`) give the
    /// argument types, the return annotation (`-> str`) the return type,
    /// and column annotations (`pd.Series`, `np.ndarray`, `pa.Array`)
    /// make it a vectorized UDF. Starts the UDF under `options` to read
    /// them (and to check it loads); returns that runner for reuse.
    ///
    /// # Errors
    ///
    /// [`Error::Start`] when the UDF does not start (with its traceback);
    /// [`Error::NoReturnType`] when neither a declaration nor an
    /// annotation gives the return type.
    pub fn describe(
        name: &str,
        spec: UdfSpec,
        args: Option<Vec<DataType>>,
        returns: Option<DataType>,
        volatility: Volatility,
        options: &PythonOptions,
    ) -> Result<(PythonFunction, Runner), Error> {
        let mut spec = spec;
        if let Some(r) = &returns {
            spec.returns = Some(r.clone());
        }
        let start = |spec: UdfSpec| {
            options.start(spec).map_err(|error| Error::Start {
                name: name.to_string(),
                error: Box::new(error),
            })
        };
        let mut runner = start(spec.clone())?;
        if spec.kind == UdfKind::Scalar {
            // What the definition says it is: an accumulator class, a
            // function of columns returning one value (an aggregate), a
            // generator (a table function), one written for whole columns
            // (a vectorized UDF, its return annotation naming the element
            // type then).
            let kind = match runner.signature().written_as {
                Some(k) => k,
                None if runner.signature().columnar => UdfKind::Vectorized,
                None => UdfKind::Scalar,
            };
            if kind != UdfKind::Scalar || runner.signature().window {
                drop(runner);
                spec.kind = kind;
                runner = start(spec.clone())?;
            }
        }
        let returns = match runner.spec().returns.clone() {
            Some(t) => t,
            None => {
                return Err(Error::NoReturnType {
                    name: name.to_string(),
                })
            }
        };
        spec.returns = Some(returns.clone());
        let args = match args {
            Some(types) => Some(types.into_iter().map(Some).collect()),
            None => runner
                .signature()
                .params
                .as_ref()
                .map(|ps| ps.iter().map(|(_, t)| t.clone()).collect()),
        };
        let arg_names = runner
            .signature()
            .params
            .iter()
            .flatten()
            .map(|(n, _)| n.clone())
            .collect();
        let window = runner.signature().window;
        let function = PythonFunction {
            name: name.to_string(),
            window,
            spec,
            args,
            arg_names,
            returns,
            volatility,
        };
        Ok((function, runner))
    }

    /// What it returns as a scalar function: its return type, or for a
    /// table function the list of the rows each input row emits.
    pub fn scalar_returns(&self) -> DataType {
        if self.spec.kind == UdfKind::Table {
            DataType::List(Arc::new(Field::new("item", self.returns.clone(), true)))
        } else {
            self.returns.clone()
        }
    }

    /// DataFusion's signature for it.
    pub(crate) fn signature(&self) -> Signature {
        match &self.args {
            None => Signature::variadic_any(self.volatility),
            Some(args) if args.is_empty() => Signature::nullary(self.volatility),
            Some(args) => match args.iter().cloned().collect::<Option<Vec<_>>>() {
                Some(types) => Signature::exact(types, self.volatility),
                None => Signature::any(args.len(), self.volatility),
            },
        }
    }
}

/// A Python UDF as a DataFusion [`ScalarUDFImpl`]: each batch's columns go
/// to a coil [`Runner`] as Arrow arrays and its results come back as one.
/// One runner (one pool of workers) serves every partition of every query
/// of the session, and calls from several partitions at once run on its
/// workers in parallel. It is started again when a query's `python.*`
/// options ([`PythonOptions`]) differ from the ones it runs with, and
/// stopped when the function is dropped (`DROP FUNCTION`, or the session
/// ends).
///
/// Literal arguments (`ColumnarValue::Scalar`) are repeated for every row:
/// a volatile UDF is called once per row. A zero-argument UDF is called
/// once per row too (`number_rows`).
pub struct PythonUdf {
    function: PythonFunction,
    signature: Signature,
    /// The runner it uses now, shared by every copy of this UDF.
    runner: SharedRunner,
}

/// Where a Python UDF keeps its runner: shared by every copy of the UDF,
/// and by UDFs made from the same definition when they are given the same
/// one (as an engine that decodes a plan per task gives them, so that one
/// pool serves every task of a process).
#[derive(Clone, Default)]
pub struct SharedRunner(Arc<Mutex<Option<Arc<Runner>>>>);

impl SharedRunner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Runner>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place holding `runner`, if any.
    pub(crate) fn with(runner: Option<Runner>) -> Self {
        SharedRunner(Arc::new(Mutex::new(runner.map(Arc::new))))
    }

    /// Whether anyone besides this handle holds the place (a function
    /// decoded from a plan that still runs): a registry that drops the
    /// handle then leaves the runner to them.
    pub fn is_shared(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }

    /// The runner it holds, if any.
    pub(crate) fn current(&self) -> Option<Arc<Runner>> {
        self.lock().clone()
    }

    /// The runner for `function` under `options`: the current one, or a
    /// new one if the current one runs with another configuration.
    pub(crate) fn get(
        &self,
        function: &PythonFunction,
        options: &PythonOptions,
    ) -> Result<Arc<Runner>, Error> {
        let mut current = self.lock();
        if let Some(r) = current.as_ref().filter(|r| r.config() == options.config()) {
            return Ok(Arc::clone(r));
        }
        // Stop the old one first (its workers finish the batches that
        // hold it and exit when the last call lets go of it).
        *current = None;
        let runner = options
            .start(function.spec.clone())
            .map_err(|error| Error::Start {
                name: function.name.clone(),
                error: Box::new(error),
            })?;
        let runner = Arc::new(runner);
        *current = Some(Arc::clone(&runner));
        Ok(runner)
    }
}

impl std::fmt::Debug for SharedRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedRunner").field(&*self.lock()).finish()
    }
}

crate::by_function!(PythonUdf);

impl PythonUdf {
    /// The UDF for `function`, with `runner` (started for it, e.g. by
    /// [`PythonFunction::describe`]) if there is one; otherwise the first
    /// call starts one.
    pub fn new(function: PythonFunction, runner: Option<Runner>) -> Self {
        PythonUdf::sharing(function, SharedRunner::with(runner))
    }

    /// The UDF for `function`, keeping its runner in `runner` (the first
    /// call starts one if it holds none).
    pub fn sharing(function: PythonFunction, runner: SharedRunner) -> Self {
        PythonUdf {
            signature: function.signature(),
            function,
            runner,
        }
    }

    /// What it is.
    pub fn function(&self) -> &PythonFunction {
        &self.function
    }

    /// The runner it calls now (`None` before its first call when it was
    /// made without one): for its metrics, or to call it directly.
    pub fn runner(&self) -> Option<Arc<Runner>> {
        self.runner.current()
    }

    /// The Python UDF `udf` is, if it is one.
    pub fn of(udf: &ScalarUDF) -> Option<&PythonUdf> {
        let inner: &dyn std::any::Any = udf.inner().as_ref();
        inner.downcast_ref::<PythonUdf>()
    }

    /// As a DataFusion [`ScalarUDF`].
    pub fn into_scalar_udf(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(self)
    }

    /// Runs the UDF over `columns` (`rows` long).
    fn run(
        &self,
        options: &PythonOptions,
        columns: Vec<ArrayRef>,
        rows: usize,
    ) -> Result<ArrayRef, Error> {
        let runner = self.runner.get(&self.function, options)?;
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("arg{i}"), c.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .map_err(|e| Error::Arrow(e.to_string()))?;
        let failed = |e: RunError| self.failed(&batch, e);
        if self.function.spec.kind == UdfKind::Table {
            return self.run_table(&runner, &batch).map_err(failed);
        }
        if runner.config().on_error() == OnError::Fail {
            return runner.call_arrow(&batch).map_err(failed);
        }
        let (results, errors) = runner.call_arrow_each(&batch).map_err(failed)?;
        for e in &errors {
            crate::log_failure(&self.function.name, || {
                format!(
                    "Python UDF {} failed on {} (its result is null): {}",
                    self.function.name,
                    crate::describe_row(&batch, &self.function.arg_names, e.row as usize),
                    e.error
                )
            });
        }
        Ok(results)
    }

    /// A table UDF's rows for each row of `batch`, as a list per input row
    /// (a null where the row failed alone): the form `unnest` makes rows
    /// of, each beside its input row.
    fn run_table(&self, runner: &Runner, batch: &RecordBatch) -> Result<ArrayRef, RunError> {
        let (rows, failed) = if runner.config().on_error() == OnError::Fail {
            (runner.call_arrow_table(batch)?, Vec::new())
        } else {
            let (rows, errors) = runner.call_arrow_table_each(batch)?;
            for e in &errors {
                crate::log_failure(&self.function.name, || {
                    format!(
                        "Python UDF {} failed on {} (its rows are null): {}",
                        self.function.name,
                        crate::describe_row(batch, &self.function.arg_names, e.row as usize),
                        e.error
                    )
                });
            }
            (rows, errors.into_iter().map(|e| e.row as usize).collect())
        };
        lists_of_rows(&rows, batch.num_rows(), &self.function.returns, &failed)
            .map_err(|e| RunError::Arrow(coil_host::ArrowError::Build(e)))
    }

    /// `e`, naming the UDF and the input row it failed on.
    fn failed(&self, batch: &RecordBatch, e: RunError) -> Error {
        let row = e
            .row()
            .map(|r| crate::describe_row(batch, &self.function.arg_names, r as usize));
        Error::Udf {
            name: self.function.name.clone(),
            row,
            error: Box::new(e),
        }
    }
}

impl ScalarUDFImpl for PythonUdf {
    fn name(&self) -> &str {
        &self.function.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.function.scalar_returns())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        // Borrowed, not cloned: this runs for every batch.
        let default;
        let options = match args.config_options.extensions.get::<PythonOptions>() {
            Some(o) => o,
            None => {
                default = PythonOptions::default();
                &default
            }
        };
        if rows == 0 {
            return Ok(ColumnarValue::Array(arrow_array::new_empty_array(
                args.return_field.data_type(),
            )));
        }
        let columns = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let results = self.run(options, columns, rows)?;
        if results.len() != rows {
            return Err(DataFusionError::Internal(format!(
                "Python UDF {} answered {} rows for {rows}",
                self.function.name,
                results.len()
            )));
        }
        Ok(ColumnarValue::Array(results))
    }
}

/// `rows` (a table UDF's emitted rows, the input row's index first) as a
/// list per input row, of `returns` (a struct of the other columns, or the
/// one `value`); null for the input rows in `failed`.
fn lists_of_rows(
    rows: &RecordBatch,
    inputs: usize,
    returns: &DataType,
    failed: &[usize],
) -> std::result::Result<ArrayRef, arrow_schema::ArrowError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt64Type;
    let index = rows.column(0).as_primitive::<UInt64Type>();
    let mut counts = vec![0i32; inputs];
    for r in index.values().iter() {
        if let Some(c) = counts.get_mut(*r as usize) {
            *c += 1;
        }
    }
    let offsets =
        datafusion::arrow::buffer::OffsetBuffer::from_lengths(counts.iter().map(|c| *c as usize));
    let values: ArrayRef = match returns {
        // Each column as declared (rows travel as their wire types, Utf8
        // for Utf8View...).
        DataType::Struct(fields) => Arc::new(arrow_array::StructArray::try_new(
            fields.clone(),
            rows.columns()[1..]
                .iter()
                .zip(fields.iter())
                .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
                .collect::<std::result::Result<Vec<_>, _>>()?,
            None,
        )?),
        t => datafusion::arrow::compute::cast(rows.column(1), t)?,
    };
    let nulls = (!failed.is_empty()).then(|| {
        let mut valid = vec![true; inputs];
        for &f in failed {
            if let Some(v) = valid.get_mut(f) {
                *v = false;
            }
        }
        datafusion::arrow::buffer::NullBuffer::from(valid)
    });
    Ok(Arc::new(arrow_array::ListArray::try_new(
        Arc::new(Field::new("item", returns.clone(), true)),
        offsets,
        values,
        nulls,
    )?))
}

/// The coil options of a query: its session's [`PythonOptions`], or the
/// defaults when the session has none.
pub(crate) fn options_of(options: &ConfigOptions) -> PythonOptions {
    options
        .extensions
        .get::<PythonOptions>()
        .cloned()
        .unwrap_or_default()
}
