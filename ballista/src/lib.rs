//! coil's Python UDFs on an Apache Ballista 55 cluster.
//!
//! Ballista plans a query in its scheduler and runs its stages on
//! executors, each decoding the plan it is sent. A Python UDF created by a
//! client (`CREATE FUNCTION ... LANGUAGE PYTHON`, or registered from Rust)
//! must run on executors that have never seen it, so its definition
//! travels in the plan: [`PythonLogicalCodec`] and [`PythonPhysicalCodec`]
//! wrap Ballista's own codecs and write each Python UDF's name, types,
//! kind, volatility and source (the file's text for a `file.py:name`
//! UDF, so executors need not share the client's file system). The
//! session's `python.*` options travel as Ballista ships every setting.
//!
//! Ballista's stock binaries cannot load these codecs: `coil-scheduler` and
//! `coil-executor` (this crate's programs) are Ballista's scheduler and
//! executor with them installed, and serve as their own coil worker
//! processes. docs/distributed.md says how to start a cluster.
//!
//! Whoever can submit a plan runs Python on every executor, so a cluster
//! reachable beyond loopback knows its members: [`ClusterTls`] is a
//! cluster's CA and member key pair, and with it every connection (the
//! programs' and [`remote_session`]'s) is mutual TLS.
//!
//! # Examples
//!
//! ```no_run
//! use coil_ballista::remote_session;
//! use coil_datafusion::PythonOptions;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A scheduler started with `coil-scheduler --port 50050`.
//! let ctx = remote_session("df://127.0.0.1:50050", PythonOptions::default(), None).await?;
//! ctx.sql("CREATE FUNCTION py_inc(BIGINT) RETURNS BIGINT LANGUAGE PYTHON AS $$\ndef py_inc(x):\n    return x + 1\n$$")
//!     .await?;
//! ctx.sql("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'data/'").await?;
//! let batches = ctx.sql("SELECT sum(py_inc(x)) FROM t").await?.collect().await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

mod secure;
pub use secure::{
    check_exposure, ClusterTls, TlsError, CA_FILE, CERT_FILE, CLUSTER_NAME, KEY_FILE,
};

use ballista::prelude::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use coil_datafusion::datafusion;
use coil_datafusion::{
    PythonFunction, PythonFunctionFactory, PythonOptions, PythonUdaf, PythonUdf, PythonUdwf,
    SharedRunner,
};
use coil_host::{UdfKind, UdfSpec};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    AggregateUDF, Extension, LogicalPlan, ScalarUDF, Volatility, WindowUDF,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};

/// Why a Python UDF's definition could not travel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The UDF's file could not be read to ship its source.
    #[error("Python UDF {name}: reading {path} to send it to the executors: {error}")]
    ReadSource {
        /// The SQL name.
        name: String,
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// A definition that is not one this version of coil wrote.
    #[error("Python UDF {name}: a definition coil cannot read: {reason}")]
    BadDefinition {
        /// The SQL name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// A type coil cannot write.
    #[error("Python UDF {name}: type {data_type} cannot travel")]
    Type {
        /// The SQL name.
        name: String,
        /// The type.
        data_type: DataType,
    },
    /// The shipped source could not be written on this side.
    #[error("Python UDF {name}: {error}")]
    Source {
        /// The SQL name.
        name: String,
        /// Why.
        error: coil_host::InlineError,
    },
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// What travels for one Python UDF (JSON, versioned).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Definition {
    /// The format's version.
    v: u32,
    name: String,
    /// `file.py:function` or `package.module:function`, as the client
    /// named it.
    target: String,
    /// The function's name in its module.
    function: String,
    /// The file's text, when the target is a file.
    source: Option<String>,
    kind: String,
    /// Each argument's type, named in coil's type grammar
    /// ([`coil_proto::TypeName`]: `int64`, `list<utf8>`), or null for
    /// any; null for any number of arguments. Names, not the ring frame's
    /// type bytes: a stored plan must not depend on the ring's tags.
    args: Option<Vec<Option<String>>>,
    arg_names: Vec<String>,
    /// The result type, named as the arguments are.
    returns: String,
    volatility: String,
    /// A window function (`coil_kind = "window"`).
    #[serde(default)]
    window: bool,
    /// The `python.*` settings an aggregate or window function runs with
    /// (DataFusion gives those no query options, so they travel with the
    /// definition); empty for scalar functions, which take the query's.
    #[serde(default)]
    options: Vec<(String, String)>,
}

/// 2: types travel as coil's type names (1 carried the ring frame's type
/// bytes).
const VERSION: u32 = 2;

fn type_name(name: &str, t: &DataType) -> Result<String, Error> {
    coil_proto::TypeName::try_from(t.clone())
        .map(|t| t.to_string())
        .map_err(|_| Error::Type {
            name: name.to_string(),
            data_type: t.clone(),
        })
}

fn bad(name: &str, reason: impl Into<String>) -> Error {
    Error::BadDefinition {
        name: name.to_string(),
        reason: reason.into(),
    }
}

impl Definition {
    fn of(f: &PythonFunction) -> Result<Definition, Error> {
        let target = &f.spec.target;
        let (module, function) = target
            .rsplit_once(':')
            .ok_or_else(|| bad(&f.name, format!("target {target:?} has no ':'")))?;
        let source = if module.ends_with(".py") {
            // Relative to this process's directory, as its own runner
            // loaded it.
            Some(
                std::fs::read_to_string(module).map_err(|error| Error::ReadSource {
                    name: f.name.clone(),
                    path: module.to_string(),
                    error,
                })?,
            )
        } else {
            None
        };
        let args = match &f.args {
            None => None,
            Some(args) => Some(
                args.iter()
                    .map(|t| t.as_ref().map(|t| type_name(&f.name, t)).transpose())
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Definition {
            v: VERSION,
            name: f.name.clone(),
            target: target.clone(),
            function: function.to_string(),
            source,
            kind: f.spec.kind.as_str().to_string(),
            args,
            arg_names: f.arg_names.clone(),
            returns: type_name(&f.name, &f.returns)?,
            volatility: match f.volatility {
                Volatility::Immutable => "immutable",
                Volatility::Stable => "stable",
                Volatility::Volatile => "volatile",
            }
            .to_string(),
            window: f.window,
            options: Vec::new(),
        })
    }

    /// As [`Definition::of`], with the settings of `options`.
    fn with_options(f: &PythonFunction, options: &PythonOptions) -> Result<Definition, Error> {
        let mut d = Definition::of(f)?;
        d.options = coil_host::KEYS
            .iter()
            .filter_map(|k| {
                options
                    .config()
                    .get(k.name)
                    .map(|v| (k.name.to_string(), v.to_string()))
            })
            .collect();
        Ok(d)
    }

    /// The settings that travelled, as options (with `worker` for process
    /// mode, if given).
    fn options(&self, worker: Option<&coil_host::WorkerCommand>) -> Result<PythonOptions, Error> {
        let mut config = coil_host::Config::default();
        for (k, v) in &self.options {
            config
                .set(k, v)
                .map_err(|e| bad(&self.name, format!("setting {k}: {e}")))?;
        }
        let options = PythonOptions::new(config);
        Ok(match worker {
            Some(w) => options.with_worker(w.clone()),
            None => options,
        })
    }

    fn function(&self) -> Result<PythonFunction, Error> {
        let name = &self.name;
        if self.v != VERSION {
            return Err(bad(
                name,
                format!("version {} (this coil reads {VERSION})", self.v),
            ));
        }
        let spec = match &self.source {
            Some(source) => {
                coil_host::udf_from_source(source, &self.function).map_err(|error| {
                    Error::Source {
                        name: name.clone(),
                        error,
                    }
                })?
            }
            None => UdfSpec::new(&self.target),
        };
        let kind: UdfKind = self.kind.parse().map_err(|e| bad(name, format!("{e}")))?;
        let ty = |t: &str| {
            t.parse::<coil_proto::TypeName>()
                .map(coil_proto::TypeName::into_data_type)
                .map_err(|e| bad(name, format!("a type: {e}")))
        };
        let returns = ty(&self.returns)?;
        let args = match &self.args {
            None => None,
            Some(args) => Some(
                args.iter()
                    .map(|t| t.as_deref().map(ty).transpose())
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let volatility = match self.volatility.as_str() {
            "immutable" => Volatility::Immutable,
            "stable" => Volatility::Stable,
            "volatile" => Volatility::Volatile,
            other => return Err(bad(name, format!("volatility {other:?}"))),
        };
        Ok(PythonFunction {
            name: name.clone(),
            spec: spec.kind(kind).returns(returns.clone()),
            args,
            arg_names: self.arg_names.clone(),
            returns,
            volatility,
            window: self.window,
        })
    }
}

/// Definitions whose runners an executor process keeps at most: past it,
/// decoding a new one drops the least recently decoded one that no plan
/// still holds (its workers end), so a long-running executor that sees
/// many `CREATE FUNCTION`s keeps a bounded number of pools.
pub const MAX_POOLS: usize = 64;

/// The runner places of the definitions decoded here, with when each was
/// last decoded.
#[derive(Debug, Default)]
struct Pools {
    places: HashMap<Vec<u8>, (SharedRunner, u64)>,
    tick: u64,
}

impl Pools {
    /// The place for definition `buf`: its own, or a new one, making room
    /// first (see [`MAX_POOLS`]).
    fn place(&mut self, buf: &[u8]) -> SharedRunner {
        self.tick += 1;
        let tick = self.tick;
        if let Some((place, used)) = self.places.get_mut(buf) {
            *used = tick;
            return place.clone();
        }
        if self.places.len() >= MAX_POOLS {
            let idle = self
                .places
                .iter()
                .filter(|(_, (place, _))| !place.is_shared())
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            match idle {
                Some(key) => {
                    self.places.remove(&key);
                }
                None => tracing::warn!(
                    "{} Python functions are in use at once in this executor, more than the {MAX_POOLS} it keeps pools for",
                    self.places.len() + 1
                ),
            }
        }
        let place = SharedRunner::default();
        self.places.insert(buf.to_vec(), (place.clone(), tick));
        place
    }
}

/// Python UDFs decoded in this process, by definition: every task's plan
/// that names the same UDF shares one runner (one pool of workers per
/// executor process, started by the first task that calls it), for up to
/// [`MAX_POOLS`] definitions.
#[derive(Debug, Default)]
struct Decoded {
    runners: Mutex<Pools>,
    /// The worker program of aggregates and window functions decoded
    /// here, in process mode; `None`: `coil-worker` as found.
    worker: Option<coil_host::WorkerCommand>,
}

impl Decoded {
    fn encode(&self, udf: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(python) = PythonUdf::of(udf) {
            let definition = Definition::of(python.function())?;
            let json = serde_json::to_vec(&definition)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            buf.extend_from_slice(&json);
        }
        // Any other function: nothing; the receiver finds it by name.
        Ok(())
    }

    fn decode(&self, name: &str, buf: &[u8]) -> Result<Option<Arc<ScalarUDF>>> {
        let Some((definition, shared)) = self.definition(name, buf)? else {
            return Ok(None);
        };
        let function = definition.function()?;
        Ok(Some(Arc::new(
            PythonUdf::sharing(function, shared).into_scalar_udf(),
        )))
    }

    /// The definition in `buf` and the runner place its process shares;
    /// `None` for an empty `buf` (not a Python function).
    fn definition(&self, name: &str, buf: &[u8]) -> Result<Option<(Definition, SharedRunner)>> {
        if buf.is_empty() {
            return Ok(None);
        }
        let definition: Definition =
            serde_json::from_slice(buf).map_err(|e| bad(name, e.to_string()))?;
        let shared = self
            .runners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .place(buf);
        Ok(Some((definition, shared)))
    }

    fn encode_udaf(&self, udaf: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(python) = PythonUdaf::of(udaf) {
            let definition = Definition::with_options(python.function(), python.options())?;
            let json = serde_json::to_vec(&definition)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            buf.extend_from_slice(&json);
        }
        Ok(())
    }

    fn decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Option<Arc<AggregateUDF>>> {
        let Some((definition, shared)) = self.definition(name, buf)? else {
            return Ok(None);
        };
        let options = definition.options(self.worker.as_ref())?;
        let function = definition.function()?;
        Ok(Some(Arc::new(
            PythonUdaf::sharing(function, shared, options).into_aggregate_udf(),
        )))
    }

    fn encode_udwf(&self, udwf: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(python) = PythonUdwf::of(udwf) {
            let definition = Definition::with_options(python.function(), python.options())?;
            let json = serde_json::to_vec(&definition)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            buf.extend_from_slice(&json);
        }
        Ok(())
    }

    fn decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Option<Arc<WindowUDF>>> {
        let Some((definition, shared)) = self.definition(name, buf)? else {
            return Ok(None);
        };
        let options = definition.options(self.worker.as_ref())?;
        let function = definition.function()?;
        Ok(Some(Arc::new(
            PythonUdwf::sharing(function, shared, options).into_window_udf(),
        )))
    }
}

/// Ballista's logical codec, plus Python UDFs' definitions.
#[derive(Debug, Default)]
pub struct PythonLogicalCodec {
    inner: BallistaLogicalExtensionCodec,
    decoded: Decoded,
}

impl PythonLogicalCodec {
    /// The codec, with aggregates and window functions it decodes running
    /// process-mode workers as `worker` (as `coil-executor` runs itself).
    pub fn with_worker(worker: coil_host::WorkerCommand) -> Self {
        PythonLogicalCodec {
            decoded: Decoded {
                worker: Some(worker),
                ..Decoded::default()
            },
            ..PythonLogicalCodec::default()
        }
    }
}

impl LogicalExtensionCodec for PythonLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        self.inner
            .try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match self.decoded.decode(name, buf)? {
            Some(udf) => Ok(udf),
            None => self.inner.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.decoded.encode(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match self.decoded.decode_udaf(name, buf)? {
            Some(udaf) => Ok(udaf),
            None => self.inner.try_decode_udaf(name, buf),
        }
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.decoded.encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        match self.decoded.decode_udwf(name, buf)? {
            Some(udwf) => Ok(udwf),
            None => self.inner.try_decode_udwf(name, buf),
        }
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.decoded.encode_udwf(node, buf)
    }
}

/// Ballista's physical codec, plus Python UDFs' definitions.
#[derive(Debug, Default)]
pub struct PythonPhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
    decoded: Decoded,
}

impl PythonPhysicalCodec {
    /// The codec, with aggregates and window functions it decodes running
    /// process-mode workers as `worker` (as `coil-executor` runs itself).
    pub fn with_worker(worker: coil_host::WorkerCommand) -> Self {
        PythonPhysicalCodec {
            decoded: Decoded {
                worker: Some(worker),
                ..Decoded::default()
            },
            ..PythonPhysicalCodec::default()
        }
    }
}

impl PhysicalExtensionCodec for PythonPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match self.decoded.decode(name, buf)? {
            Some(udf) => Ok(udf),
            None => self.inner.try_decode_udf(name, buf),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.decoded.encode(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match self.decoded.decode_udaf(name, buf)? {
            Some(udaf) => Ok(udaf),
            None => self.inner.try_decode_udaf(name, buf),
        }
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.decoded.encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        match self.decoded.decode_udwf(name, buf)? {
            Some(udwf) => Ok(udwf),
            None => self.inner.try_decode_udwf(name, buf),
        }
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.decoded.encode_udwf(node, buf)
    }
}

/// A Ballista session configuration with coil's `python.*` options
/// (`options`) and codecs: what the client, the scheduler and the
/// executors all start from.
pub fn session_config(options: PythonOptions) -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_option_extension(options)
        .with_ballista_logical_extension_codec(Arc::new(PythonLogicalCodec::default()))
        .with_ballista_physical_extension_codec(Arc::new(PythonPhysicalCodec::default()))
}

/// `config` with every connection Ballista makes from it (to the
/// scheduler, to executors for shuffles and results) over mutual TLS with
/// `tls`'s identity.
pub fn with_tls(config: SessionConfig, tls: &ClusterTls) -> SessionConfig {
    config
        .with_ballista_use_tls(true)
        .with_ballista_override_create_grpc_client_endpoint(tls.endpoint_override())
}

/// A client session on the Ballista cluster whose scheduler is at `url`
/// (`df://host:port`), with `CREATE FUNCTION ... LANGUAGE PYTHON`, `SET
/// python.*` (starting from `options`) and the codecs that ship Python
/// UDFs to the executors. `tls` is the cluster's membership, for a
/// cluster started with `--tls` (docs/distributed.md); without it the
/// session speaks plain gRPC, which such a cluster refuses.
///
/// # Errors
///
/// A `url` Ballista does not take.
pub async fn remote_session(
    url: &str,
    options: PythonOptions,
    tls: Option<&ClusterTls>,
) -> Result<SessionContext> {
    let mut config = session_config(options);
    if let Some(tls) = tls {
        config = with_tls(config, tls);
    }
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_function_factory(Some(Arc::new(PythonFunctionFactory)))
        .build();
    SessionContext::remote_with_state(url, state).await
}

/// Serves as a coil worker process when `args` (a program's own, after
/// its name) ask for it (`worker ...`): how `coil-scheduler` and
/// `coil-executor` run their UDFs' workers without another program.
/// `None` when they do not.
pub fn serve_as_worker(args: &[String]) -> Option<std::process::ExitCode> {
    match args.first().map(String::as_str) {
        Some("worker") => Some(coil_worker::worker_main(args[1..].to_vec())),
        _ => None,
    }
}

/// This program as a worker command (`<this program> worker`).
///
/// # Errors
///
/// When the running program cannot be found.
pub fn this_program_as_worker() -> std::io::Result<coil_host::WorkerCommand> {
    Ok(coil_host::WorkerCommand::new(std::env::current_exe()?).arg("worker"))
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn function(target: &str) -> PythonFunction {
        PythonFunction {
            name: "slug".into(),
            spec: UdfSpec::new(target)
                .kind(UdfKind::Vectorized)
                .returns(DataType::Utf8),
            args: Some(vec![Some(DataType::Utf8), None]),
            arg_names: vec!["title".into(), "n".into()],
            returns: DataType::Utf8,
            volatility: Volatility::Stable,
            window: false,
        }
    }

    #[test]
    fn a_definition_carries_the_types_kind_volatility_and_the_files_text() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/udfs/sql.py");
        let sent = function(&format!("{file}:slug"));
        let json = serde_json::to_vec(&Definition::of(&sent).unwrap()).unwrap();
        let definition: Definition = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            definition.source.as_deref(),
            Some(std::fs::read_to_string(file).unwrap().as_str())
        );
        let got = definition.function().unwrap();
        // The receiver loads the same text from its own copy.
        assert!(got.spec.target.contains("coil-udfs"), "{}", got.spec.target);
        assert!(got.spec.target.ends_with(":slug"), "{}", got.spec.target);
        assert_eq!(got.spec.kind, UdfKind::Vectorized);
        assert_eq!(got.spec.returns, Some(DataType::Utf8));
        assert_eq!(got.args, sent.args);
        assert_eq!(got.arg_names, sent.arg_names);
        assert_eq!(got.returns, sent.returns);
        assert_eq!(got.volatility, Volatility::Stable);
    }

    #[test]
    fn a_module_target_travels_as_named_and_a_bad_definition_is_refused() {
        let sent = function("mypkg.text:slug");
        let definition = Definition::of(&sent).unwrap();
        assert_eq!(definition.source, None);
        assert_eq!(
            definition.function().unwrap().spec.target,
            "mypkg.text:slug"
        );
        let missing = function("/no/such/file.py:slug");
        assert!(matches!(
            Definition::of(&missing),
            Err(Error::ReadSource { .. })
        ));
        let decoded = Decoded::default();
        let e = decoded
            .decode("slug", b"{not json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("slug") && e.contains("definition"), "{e}");
        let mut future = Definition::of(&sent).unwrap();
        future.v = 99;
        assert!(future
            .function()
            .unwrap_err()
            .to_string()
            .contains("version 99"));
    }

    #[test]
    fn tasks_decoding_the_same_udf_share_one_runner_slot() {
        let decoded = Decoded::default();
        let json =
            serde_json::to_vec(&Definition::of(&function("mypkg.text:slug")).unwrap()).unwrap();
        let a = decoded.decode("slug", &json).unwrap().unwrap();
        let b = decoded.decode("slug", &json).unwrap().unwrap();
        assert_eq!(decoded.runners.lock().unwrap().places.len(), 1);
        assert!(PythonUdf::of(&a).is_some() && PythonUdf::of(&b).is_some());
        assert!(decoded.decode("abs", b"").unwrap().is_none());
    }

    #[test]
    fn an_executor_keeps_a_bounded_number_of_pools_and_never_drops_one_in_use() {
        let decoded = Decoded::default();
        let json = |i: usize| {
            serde_json::to_vec(&Definition::of(&function(&format!("mypkg.text:f{i}"))).unwrap())
                .unwrap()
        };
        // The first definition stays in use (a plan holds its function).
        let held = decoded.decode("f0", &json(0)).unwrap().unwrap();
        for i in 1..MAX_POOLS + 40 {
            drop(decoded.decode("f", &json(i)).unwrap().unwrap());
        }
        let pools = decoded.runners.lock().unwrap();
        assert_eq!(pools.places.len(), MAX_POOLS);
        assert!(pools.places.contains_key(&json(0)), "the one in use stays");
        assert!(
            pools.places.contains_key(&json(MAX_POOLS + 39)),
            "the newest stays"
        );
        assert!(
            !pools.places.contains_key(&json(1)),
            "the oldest unused went"
        );
        drop(pools);
        drop(held);
    }
}
