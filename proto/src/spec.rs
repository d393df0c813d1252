//! What a UDF is, and how a Python exception travels.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// How a UDF maps input rows to output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UdfKind {
    /// One row in, one value out.
    #[default]
    Scalar,
    /// One row in, zero or more rows out (a generator or an iterable; each
    /// item a tuple or list, or a single value for a one-column row).
    Table,
    /// A whole batch in as columns (Python lists, or numpy arrays when the
    /// UDF sets `coil_numpy = True`), one column out.
    Vectorized,
    /// An aggregate written as a class with PyFlink's accumulator methods
    /// (`create_accumulator`, `accumulate`, `get_value`; `merge` and
    /// `retract` where a host needs them). Each row of a batch is one
    /// group: `[op, state, values...]` in, `(state, value)` out; the
    /// accumulator's state travels pickled, so the host holds it between
    /// batches (see [`AggregateOp`](crate::AggregateOp)).
    Aggregate,
    /// An aggregate written as a function of whole columns (PySpark's
    /// grouped-aggregate pandas UDF: `def f(v: pd.Series) -> float`).
    /// Each row of a batch is one group, each argument a list of the
    /// group's values; the function is called once per group, with a
    /// numpy array, pandas Series or pyarrow Array of them.
    VectorizedAggregate,
}

impl UdfKind {
    /// The name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            UdfKind::Scalar => "scalar",
            UdfKind::Table => "table",
            UdfKind::Vectorized => "vectorized",
            UdfKind::Aggregate => "aggregate",
            UdfKind::VectorizedAggregate => "vectorized-aggregate",
        }
    }
}

impl UdfKind {
    /// Whether a batch's rows are groups (the aggregate kinds).
    pub fn is_aggregate(self) -> bool {
        matches!(self, UdfKind::Aggregate | UdfKind::VectorizedAggregate)
    }
}

/// What one row (one group) of an [`UdfKind::Aggregate`] batch asks of the
/// accumulator: the batch's first column, an `Int8`. The second column is
/// the group's state so far (pickled bytes; null: a new accumulator from
/// `create_accumulator()`), the rest the op's arguments; the result is a
/// struct of the new state (`state`, binary) and the value (`value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum AggregateOp {
    /// `accumulate(acc, *row)` for each row of the argument lists; answers
    /// the state.
    Accumulate = 0,
    /// `retract(acc, *row)` for each row of the argument lists; answers the
    /// state.
    Retract = 1,
    /// `merge(acc, states)` with the one argument, a list of other states;
    /// answers the state.
    Merge = 2,
    /// `get_value(acc)` after accumulating the argument lists (often empty):
    /// answers the value.
    Value = 3,
}

impl AggregateOp {
    /// The op column's value.
    pub fn code(self) -> i8 {
        self as i8
    }
}

/// The Arrow type of an [`UdfKind::Aggregate`] executor's results, for
/// values of type `value`: a struct of `state` (the pickled accumulator,
/// null when the op answers a value) and `value` (null when it answers a
/// state).
pub fn aggregate_result_type(value: &arrow_schema::DataType) -> arrow_schema::DataType {
    arrow_schema::DataType::Struct(
        vec![
            arrow_schema::Field::new("state", arrow_schema::DataType::Binary, true),
            arrow_schema::Field::new("value", value.clone(), true),
        ]
        .into(),
    )
}

impl fmt::Display for UdfKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A UDF kind that is not `scalar`, `table`, `vectorized`, `aggregate` or
/// `vectorized-aggregate`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown UDF kind {0:?}: expected scalar, table, vectorized, aggregate or vectorized-aggregate"
)]
pub struct UnknownKind(pub String);

impl FromStr for UdfKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        match s.to_ascii_lowercase().as_str() {
            "scalar" => Ok(UdfKind::Scalar),
            "table" => Ok(UdfKind::Table),
            "vectorized" | "vectorised" | "pandas" => Ok(UdfKind::Vectorized),
            "aggregate" | "accumulator" => Ok(UdfKind::Aggregate),
            "vectorized-aggregate" | "vectorised-aggregate" | "pandas-aggregate" => {
                Ok(UdfKind::VectorizedAggregate)
            }
            _ => Err(UnknownKind(s.to_string())),
        }
    }
}

/// What to load: `path/to/file.py:name` or `package.module:name`, its kind,
/// and directories to put on `sys.path` first (PyFlink's `python.files`).
///
/// # Examples
///
/// ```
/// use coil_proto::{UdfKind, UdfSpec};
/// let spec = UdfSpec::new("udfs/words.py:split").kind(UdfKind::Table).path("lib");
/// assert_eq!(spec.kind, UdfKind::Table);
/// assert_eq!("vectorized".parse::<UdfKind>(), Ok(UdfKind::Vectorized));
/// assert_eq!("pandas-aggregate".parse::<UdfKind>(), Ok(UdfKind::VectorizedAggregate));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UdfSpec {
    /// `path/to/file.py:name` or `package.module:name`; `name` may be
    /// dotted (`module:Class.method`).
    pub target: String,
    /// Scalar, table or vectorized.
    pub kind: UdfKind,
    /// Extra `sys.path` entries, in order.
    pub paths: Vec<PathBuf>,
    /// The `sys.path` of another Python environment (`python.executable`),
    /// to use instead of the embedded interpreter's own; empty: its own.
    /// `paths` still go first.
    pub sys_path: Vec<PathBuf>,
    /// That environment's site-packages directories, whose `.pth` files
    /// run as that environment's `python` runs them.
    pub site_dirs: Vec<PathBuf>,
    /// The Arrow type of the UDF's results, for hosts that run it over
    /// Arrow columns (`Runner::call_arrow`).
    pub returns: Option<arrow_schema::DataType>,
    /// The Arrow types of the UDF's arguments, when the host knows them
    /// up front: checked when the runner starts, and against every batch.
    pub args: Option<Vec<arrow_schema::DataType>>,
    /// How its executors call it: retries, async concurrency, the
    /// per-call timeout, the shared rate limit.
    pub calls: crate::CallPolicy,
}

impl UdfSpec {
    /// A scalar UDF with no extra paths.
    pub fn new(target: impl Into<String>) -> Self {
        UdfSpec {
            target: target.into(),
            kind: UdfKind::Scalar,
            paths: Vec::new(),
            sys_path: Vec::new(),
            site_dirs: Vec::new(),
            returns: None,
            args: None,
            calls: crate::CallPolicy::default(),
        }
    }

    /// Sets the kind.
    pub fn kind(mut self, kind: UdfKind) -> Self {
        self.kind = kind;
        self
    }

    /// Declares the Arrow type of the UDF's results.
    pub fn returns(mut self, data_type: arrow_schema::DataType) -> Self {
        self.returns = Some(data_type);
        self
    }

    /// Declares the Arrow types of the UDF's arguments (one per column of
    /// the batches a host will pass).
    pub fn args(mut self, types: impl IntoIterator<Item = arrow_schema::DataType>) -> Self {
        self.args = Some(types.into_iter().collect());
        self
    }

    /// Adds a `sys.path` entry.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.paths.push(path.into());
        self
    }
}

/// What a UDF's Python signature says, as its executor read it when the
/// UDF loaded: what an engine that plans with types (SQL) needs to know
/// about a UDF nobody declared types for.
///
/// # Examples
///
/// ```
/// use coil_proto::UdfSignature;
/// let any = UdfSignature::default();
/// assert_eq!(any.params, None);
/// assert!(!any.columnar);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UdfSignature {
    /// Its positional parameters in order: each one's name and the Arrow
    /// type its annotation names (for a column annotation such as
    /// `pd.Series[int]`, the element's), `None` where there is no
    /// annotation coil reads. `None` when it takes `*args`.
    pub params: Option<Vec<(String, Option<arrow_schema::DataType>)>>,
    /// An annotation names a column type (`pd.Series`, `np.ndarray`,
    /// `pa.Array`) or the UDF sets `coil_numpy = True`: it is written as
    /// a vectorized UDF.
    pub columnar: bool,
    /// The kind its definition says it is, where that is unambiguous: an
    /// accumulator class is an [`UdfKind::Aggregate`], a function of
    /// columns that returns a plain value a
    /// [`UdfKind::VectorizedAggregate`], a generator function a
    /// [`UdfKind::Table`]; `None` otherwise (a scalar or vectorized
    /// function, as `columnar` says).
    pub written_as: Option<UdfKind>,
    /// Its definition asks to be a window function (`coil_kind =
    /// "window"`): called over a partition's columns when `written_as`
    /// is [`UdfKind::Vectorized`] (it returns a column), over each row's
    /// frame when it is [`UdfKind::VectorizedAggregate`].
    pub window: bool,
    /// It is a coroutine function (`async def`, a class whose `eval` is
    /// one, or a callable that sets `coil_async = True`): its executor
    /// keeps many rows in flight on an event loop.
    pub asynchronous: bool,
}

impl UdfSignature {
    /// As one Arrow type (a struct, a field per parameter, `Null` where
    /// the type is unknown), for the wire; `None` for `*args`.
    fn params_type(&self) -> Option<arrow_schema::DataType> {
        let params = self.params.as_ref()?;
        Some(arrow_schema::DataType::Struct(
            params
                .iter()
                .map(|(name, t)| {
                    arrow_schema::Field::new(
                        name,
                        t.clone().unwrap_or(arrow_schema::DataType::Null),
                        true,
                    )
                })
                .collect(),
        ))
    }

    /// The parameters [`UdfSignature::params_type`] described.
    fn params_of(
        t: &arrow_schema::DataType,
    ) -> Option<Vec<(String, Option<arrow_schema::DataType>)>> {
        match t {
            arrow_schema::DataType::Struct(fields) => Some(
                fields
                    .iter()
                    .map(|f| {
                        let t = match f.data_type() {
                            arrow_schema::DataType::Null => None,
                            t => Some(t.clone()),
                        };
                        (f.name().clone(), t)
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The wire form: `[params type as bytes, or null; columnar; the kind
    /// it is written as, or null]`.
    pub(crate) fn to_values(&self) -> [coil_ipc::Value; 4] {
        // The window flag travels in the kind's name.
        use coil_ipc::Value;
        let params = match self
            .params_type()
            .as_ref()
            .and_then(crate::Columns::type_to_bytes)
        {
            Some(bytes) => Value::Bytes(bytes),
            None => Value::Null,
        };
        let written_as = match (self.written_as, self.window) {
            (Some(k), true) => Value::Str(format!("window:{k}")),
            (Some(k), false) => Value::Str(k.as_str().to_string()),
            (None, _) => Value::Null,
        };
        [
            params,
            Value::Bool(self.columnar),
            written_as,
            Value::Bool(self.asynchronous),
        ]
    }

    /// Reads the wire form; `None` when it is not one.
    pub(crate) fn from_values(
        params: &coil_ipc::Value,
        columnar: &coil_ipc::Value,
        written_as: &coil_ipc::Value,
        asynchronous: &coil_ipc::Value,
    ) -> Option<Self> {
        use coil_ipc::Value;
        let params = match params {
            Value::Null => None,
            Value::Bytes(b) => Some(Self::params_of(&crate::Columns::type_from_bytes(b).ok()?)?),
            _ => return None,
        };
        let Value::Bool(columnar) = columnar else {
            return None;
        };
        let (written_as, window) = match written_as {
            Value::Null => (None, false),
            Value::Str(k) => match k.strip_prefix("window:") {
                Some(k) => (Some(k.parse().ok()?), true),
                None => (Some(k.parse().ok()?), false),
            },
            _ => return None,
        };
        let Value::Bool(asynchronous) = asynchronous else {
            return None;
        };
        Some(UdfSignature {
            params,
            columnar: *columnar,
            written_as,
            window,
            asynchronous: *asynchronous,
        })
    }
}

/// A Python exception, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyErrorInfo {
    /// The exception's type, qualified by its module unless built in.
    pub type_name: String,
    /// `str(exception)`.
    pub message: String,
    /// The formatted traceback, ending with the exception line.
    pub traceback: String,
}

impl fmt::Display for PyErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.type_name, self.message)
    }
}
