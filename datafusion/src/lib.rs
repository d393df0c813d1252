//! Python UDFs in Apache DataFusion SQL, run by coil.
//!
//! A Python function becomes a DataFusion scalar function ([`PythonUdf`])
//! whose batches go to a coil [`Runner`](coil_host::Runner) as Arrow
//! arrays, in the execution mode the session's `python.*` options choose.
//! Three ways to register one:
//!
//! - from Rust, [`register_python_udf`], with types declared or read from
//!   the function's annotations (`def slug(title: str) -> str`);
//! - from SQL, `CREATE FUNCTION slug(VARCHAR) RETURNS VARCHAR LANGUAGE
//!   PYTHON AS 'examples/udfs/demo.py:slug'`, or with the source inline
//!   (`AS $$ def slug(title): ... $$`), through [`PythonFunctionFactory`];
//!   `DROP FUNCTION` stops its workers;
//! - coil's keys are session options ([`PythonOptions`]): `SET
//!   python.worker-count = 4`, checked as [`coil_host::Config`] checks them.
//!
//! [`python_session`] makes a session with all of it installed.
//!
//! Python UDFs are `VOLATILE` unless declared otherwise: DataFusion calls
//! an `IMMUTABLE` or `STABLE` function with literal arguments once, while
//! it plans the query (in the client, on a cluster), and uses its answer.
//!
//! # Examples
//!
//! ```no_run
//! use coil_datafusion::{python_session, register_python_udf};
//! use coil_host::{Config, UdfSpec};
//! use datafusion::prelude::SessionConfig;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ctx = python_session(&Config::default(), SessionConfig::new());
//! // Typed from `def slug(title: str) -> str`.
//! register_python_udf(&ctx, "slug", UdfSpec::new("examples/udfs/demo.py:slug"), None, None)?;
//! ctx.sql("SET python.worker-count = 2").await?;
//! ctx.sql("CREATE FUNCTION py_inc(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\ndef py_inc(x):\n    return x + 1\n$$")
//!     .await?;
//! let batches = ctx.sql("SELECT slug('Hello World') AS s, py_inc(41) AS n").await?.collect().await?;
//! # Ok(()) }
//! ```

/// `Debug`, `PartialEq`, `Eq` and `Hash` for a type that is its Python
/// function (field `function`) and a runner: the runner is not part of
/// what the function is.
macro_rules! by_function {
    ($t:ident) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("function", &self.function)
                    .finish()
            }
        }

        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.function == other.function
            }
        }

        impl Eq for $t {}

        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.function.hash(state);
            }
        }
    };
}
pub(crate) use by_function;

/// How many of a function's failed rows (groups, frames) are each logged
/// under `skip` or `dead-letter`; past them, a count at every power of ten.
pub(crate) const LOGGED_FAILURES: u64 = 5;

/// Logs one failure of Python function `function` under a policy that
/// goes on (`what` says which row and why): each of the first
/// [`LOGGED_FAILURES`], then only a count at 10, 100, 1,000... so a query
/// where a million rows fail logs a few lines, not a million.
pub(crate) fn log_failure(function: &str, what: impl FnOnce() -> String) {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static FAILED: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let count = {
        let mut failed = FAILED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = failed.entry(function.to_owned()).or_insert(0);
        *n += 1;
        *n
    };
    if count <= LOGGED_FAILURES {
        tracing::warn!("{}", what());
        if count == LOGGED_FAILURES {
            tracing::warn!(
                "Python function {function}: further failures are counted, not logged one by one"
            );
        }
    } else if is_power_of_ten(count) {
        tracing::warn!(
            "Python function {function}: {count} failures so far (each one's result is NULL)"
        );
    }
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

mod factory;
mod options;
mod udaf;
mod udf;
mod udtf;
mod udwf;

use std::sync::Arc;

use arrow_array::{Array as _, RecordBatch};
use arrow_schema::DataType;
use coil_host::{Config, RunError, UdfSpec};
use datafusion::error::DataFusionError;
use datafusion::execution::context::RegisterFunction;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF, Volatility};
use datafusion::prelude::{SessionConfig, SessionContext};

/// The DataFusion this crate is built against (55), for callers that want
/// the same version without naming it.
pub use datafusion;
pub use factory::PythonFunctionFactory;
pub use options::PythonOptions;
pub use udaf::PythonUdaf;
pub use udf::{PythonFunction, PythonUdf, SharedRunner};
pub use udtf::PythonUdtf;
pub use udwf::PythonUdwf;

/// Why a Python function could not be registered or called.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The UDF did not start: it did not load (with its traceback), its
    /// worker program is missing, its environment failed to build...
    #[error("Python UDF {name} did not start: {error}")]
    Start {
        /// The SQL name.
        name: String,
        /// Why (its message is part of this one's).
        error: Box<coil_host::StartError>,
    },
    /// Neither the statement nor the function's return annotation gives
    /// its return type.
    #[error("Python UDF {name} has no return type: declare it (RETURNS type) or annotate the function (-> type)")]
    NoReturnType {
        /// The SQL name.
        name: String,
    },
    /// A plain `CREATE FUNCTION` over a function the session has.
    #[error(
        "CREATE FUNCTION {name}: a function named {name} exists already; \
         CREATE OR REPLACE FUNCTION {name} replaces it (or DROP FUNCTION {name} first)"
    )]
    Exists {
        /// The SQL name.
        name: String,
    },
    /// `CREATE FUNCTION` without `LANGUAGE PYTHON`.
    #[error("CREATE FUNCTION {name}: coil runs LANGUAGE PYTHON functions, not {}", language.as_deref().unwrap_or("functions without a LANGUAGE"))]
    NotPython {
        /// The SQL name.
        name: String,
        /// The language given.
        language: Option<String>,
    },
    /// `CREATE FUNCTION` without a string body.
    #[error("CREATE FUNCTION {name}: the body must be a string: AS 'file.py:function' or AS $$ python source $$")]
    NoBody {
        /// The SQL name.
        name: String,
    },
    /// A `CREATE FUNCTION` body that is Python source could not be used.
    #[error("CREATE FUNCTION {name}: {error}")]
    Source {
        /// The SQL name.
        name: String,
        /// Why (its message is part of this one's).
        error: coil_host::InlineError,
    },
    /// The UDF failed on a batch: on a row (named by its values), or on
    /// the whole batch.
    #[error("Python UDF {name} failed{}: {}", row.as_ref().map(|r| format!(" on {r}")).unwrap_or_default(), cause(error))]
    Udf {
        /// The SQL name.
        name: String,
        /// The input row it failed on, as `(title => "Hello", n => 3)`.
        row: Option<String>,
        /// Why, with the Python traceback for an exception (its message
        /// is part of this one's).
        error: Box<RunError>,
    },
    /// A function registered as a kind it is not.
    #[error("Python function {name} is a {kind} function, not {wanted}: declare its kind (docs/sql.md, \"Kinds of functions\")")]
    WrongKind {
        /// The SQL name.
        name: String,
        /// What it is.
        kind: coil_host::UdfKind,
        /// What it was registered as.
        wanted: &'static str,
    },
    /// An Arrow error putting a batch together.
    #[error("Python UDF: {0}")]
    Arrow(String),
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// A session with coil installed: `python.*` options starting from
/// `config` (changed with `SET`) and `CREATE FUNCTION ... LANGUAGE
/// PYTHON`. [`python_session_with`] takes [`PythonOptions`] (to choose the
/// worker program, too).
pub fn python_session(config: &Config, session: SessionConfig) -> SessionContext {
    python_session_with(PythonOptions::new(config.clone()), session)
}

/// [`python_session`] with `options`.
pub fn python_session_with(options: PythonOptions, session: SessionConfig) -> SessionContext {
    SessionContext::new_with_config(session.with_option_extension(options))
        .with_function_factory(Arc::new(PythonFunctionFactory))
}

/// Registers the Python function `spec` as the scalar function `name` in
/// `ctx`, with argument types `args` and return type `returns`, or, where
/// they are `None`, the types the function's annotations name (and a
/// function annotated with `pd.Series`, `np.ndarray` or `pa.Array`
/// becomes a vectorized UDF). The function is `VOLATILE`. Starts its
/// workers under the session's `python.*` options (blocking: from async
/// code, call it where blocking is allowed).
///
/// # Errors
///
/// [`Error::Start`] when it does not start, [`Error::NoReturnType`].
pub fn register_python_udf(
    ctx: &SessionContext,
    name: &str,
    spec: UdfSpec,
    args: Option<Vec<DataType>>,
    returns: Option<DataType>,
) -> Result<Arc<ScalarUDF>, Error> {
    let options = udf::options_of(ctx.state().config().options());
    let (function, runner) =
        PythonFunction::describe(name, spec, args, returns, Volatility::Volatile, &options)?;
    let udf = Arc::new(PythonUdf::new(function, Some(runner)).into_scalar_udf());
    ctx.register_udf(udf.as_ref().clone());
    Ok(udf)
}

/// Registers the Python function `spec` as what it is: a scalar function,
/// an aggregate (an accumulator class, or a function of columns that
/// returns one value), a table function (a generator); see
/// [`register_python_udf`] for the types. Starts its workers under the
/// session's `python.*` options (an aggregate keeps running with them:
/// DataFusion gives aggregates no query options).
///
/// # Errors
///
/// [`Error::Start`] when it does not start, [`Error::NoReturnType`].
pub fn register_python_function(
    ctx: &SessionContext,
    name: &str,
    spec: UdfSpec,
    args: Option<Vec<DataType>>,
    returns: Option<DataType>,
) -> Result<(), Error> {
    let options = udf::options_of(ctx.state().config().options());
    let (function, runner) =
        PythonFunction::describe(name, spec, args, returns, Volatility::Volatile, &options)?;
    match registered(function, Some(runner), options).map_err(|e| Error::Arrow(e.to_string()))? {
        RegisterFunction::Scalar(f) => {
            ctx.register_udf(f.as_ref().clone());
        }
        RegisterFunction::Aggregate(f) => ctx.register_udaf(f.as_ref().clone()),
        RegisterFunction::Window(f) => ctx.register_udwf(f.as_ref().clone()),
        RegisterFunction::Table(name, f) => {
            ctx.register_udtf(&name, f);
            register_row_form(ctx, &name);
        }
        RegisterFunction::HigherOrder(_) => {}
    }
    Ok(())
}

/// Registers the Python aggregate `spec` (an accumulator class, kind
/// [`UdfKind::Aggregate`](coil_host::UdfKind::Aggregate), or a function of
/// columns returning one value, [`UdfKind::VectorizedAggregate`](coil_host::UdfKind::VectorizedAggregate);
/// a `spec` of kind `Scalar` is read from its definition) as the
/// aggregate function `name`.
///
/// # Errors
///
/// As [`register_python_function`]; [`Error::WrongKind`] when `spec` is
/// not an aggregate.
pub fn register_python_udaf(
    ctx: &SessionContext,
    name: &str,
    spec: UdfSpec,
    args: Option<Vec<DataType>>,
    returns: Option<DataType>,
) -> Result<Arc<AggregateUDF>, Error> {
    let options = udf::options_of(ctx.state().config().options());
    let (function, runner) =
        PythonFunction::describe(name, spec, args, returns, Volatility::Volatile, &options)?;
    if !function.spec.kind.is_aggregate() {
        return Err(Error::WrongKind {
            name: name.to_string(),
            kind: function.spec.kind,
            wanted: "an aggregate",
        });
    }
    let udaf = Arc::new(PythonUdaf::new(function, Some(runner), options).into_aggregate_udf());
    ctx.register_udaf(udaf.as_ref().clone());
    Ok(udaf)
}

/// Makes `statement` one DataFusion plans, where coil takes what its SQL
/// planner refuses: `CREATE FUNCTION ... RETURNS TABLE (name type, ...)`
/// (a table function's rows) becomes `RETURNS STRUCT<name type, ...>`,
/// the type of each row the function emits. `coil sql` prepares every
/// statement so; a host that plans statements itself can too.
pub fn prepare_statement(statement: &mut datafusion::sql::parser::Statement) {
    use datafusion::sql::parser::Statement;
    use datafusion::sql::sqlparser::ast::{
        DataType as Sql, FunctionReturnType, Statement as Ast, StructBracketKind, StructField,
    };
    let Statement::Statement(ast) = statement else {
        return;
    };
    let Ast::CreateFunction(create) = ast.as_mut() else {
        return;
    };
    if let Some(FunctionReturnType::DataType(Sql::Table(Some(columns)))) = &create.return_type {
        let fields = columns
            .iter()
            .map(|c| StructField {
                field_name: Some(c.name.clone()),
                field_type: c.data_type.clone(),
                options: None,
            })
            .collect();
        create.return_type = Some(FunctionReturnType::DataType(Sql::Struct(
            fields,
            StructBracketKind::AngleBrackets,
        )));
    }
}

/// The function a `CREATE FUNCTION` statement creates, if it is one.
pub fn created_function(statement: &datafusion::sql::parser::Statement) -> Option<String> {
    use datafusion::sql::parser::Statement;
    use datafusion::sql::sqlparser::ast::Statement as Ast;
    match statement {
        Statement::Statement(ast) => match ast.as_ref() {
            Ast::CreateFunction(create) => Some(create.name.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// When `name` is a Python table function of `ctx` (a generator, as
/// `CREATE FUNCTION` registers one for `FROM`), registers its row form
/// too: the scalar function `name` that returns, for each input row, the
/// list of rows the generator emits, which `unnest` makes rows beside
/// their input row (`SELECT id, unnest(words(title)) FROM t`). Returns
/// whether it did.
pub fn register_row_form(ctx: &SessionContext, name: &str) -> bool {
    let state = ctx.state();
    let Some(table) = state
        .table_functions()
        .get(name)
        .or_else(|| state.table_functions().get(&name.to_lowercase()))
    else {
        return false;
    };
    let inner: &dyn std::any::Any = table.function().as_ref();
    let Some(udtf) = inner.downcast_ref::<PythonUdtf>() else {
        return false;
    };
    let udf = PythonUdf::sharing(udtf.function().clone(), udtf.shared_runner());
    ctx.register_udf(udf.into_scalar_udf());
    true
}

/// What DataFusion registers for `function`, by its kind.
pub(crate) fn registered(
    function: PythonFunction,
    runner: Option<coil_host::Runner>,
    options: PythonOptions,
) -> datafusion::error::Result<RegisterFunction> {
    use coil_host::UdfKind;
    if function.window {
        return Ok(RegisterFunction::Window(Arc::new(
            PythonUdwf::new(function, runner, options).into_window_udf(),
        )));
    }
    Ok(match function.spec.kind {
        UdfKind::Scalar | UdfKind::Vectorized => {
            RegisterFunction::Scalar(Arc::new(PythonUdf::new(function, runner).into_scalar_udf()))
        }
        UdfKind::Aggregate | UdfKind::VectorizedAggregate => RegisterFunction::Aggregate(Arc::new(
            PythonUdaf::new(function, runner, options).into_aggregate_udf(),
        )),
        UdfKind::Table => RegisterFunction::Table(
            function.name.clone(),
            Arc::new(PythonUdtf::new(function, runner, options)),
        ),
    })
}

/// What went wrong, without the row number of the batch DataFusion gave
/// (the row's values name it): the exception and its traceback, or the
/// runner's error.
fn cause(e: &RunError) -> String {
    match e {
        RunError::Udf { error, .. } => {
            format!(
                "{}: {}\n{}",
                error.type_name,
                error.message,
                error.traceback.trim_end()
            )
        }
        RunError::Row(r) => cause(&r.error),
        RunError::Arrow(coil_host::ArrowError::InGroup { error, .. }) => cause(error),
        e => e.to_string(),
    }
}

/// Row `row` of `batch` as `(name => value, ...)`: strings quoted, nulls
/// as NULL; columns named by `names` where there are as many.
pub(crate) fn describe_row(batch: &RecordBatch, names: &[String], row: usize) -> String {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    if row >= batch.num_rows() {
        return format!("row {row}");
    }
    let options = FormatOptions::default().with_null("NULL");
    let values: Vec<String> = batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = match ArrayFormatter::try_new(column.as_ref(), &options) {
                Ok(f) if column.is_valid(row) && is_text(column.data_type()) => {
                    format!("{:?}", f.value(row).to_string())
                }
                Ok(f) => f.value(row).to_string(),
                Err(_) => "?".to_string(),
            };
            match names.get(i).filter(|_| names.len() == batch.num_columns()) {
                Some(n) => format!("{n} => {value}"),
                None => value,
            }
        })
        .collect();
    format!("({})", values.join(", "))
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if is_text(v))
}
