//! `coil sql`: SQL with Python UDFs, on DataFusion, over Parquet, CSV,
//! JSON Lines and Arrow files named in the query.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use coil_datafusion::datafusion;
use coil_datafusion::{python_session_with, register_python_udf, PythonOptions};
use coil_host::arrow_schema::DataType;
use coil_host::{Config, UdfSpec, WorkerCommand};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::catalog::Session;
use datafusion::common::GetExt;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::file_format::arrow::ArrowFormatFactory;
use datafusion::datasource::file_format::json::JsonFormatFactory;
use datafusion::datasource::file_format::{FileFormat, FileFormatFactory};
use datafusion::prelude::{DataFrame, SessionConfig};
use datafusion::sql::parser::DFParser;
use futures::StreamExt;

/// What `coil sql` runs.
#[derive(Debug, Clone)]
pub struct SqlJob {
    /// The statements, `;`-separated (`SET`, `CREATE FUNCTION`, queries).
    pub sql: String,
    /// Python UDFs to register first (`--udf`).
    pub udfs: Vec<SqlUdf>,
    /// coil's configuration (`SET python.*` changes it from here).
    pub config: Config,
    /// Where the last statement's rows go (`.parquet`, `.csv`, `.jsonl`,
    /// `.ndjson` or `.json`, `.arrow` or `.feather` (an Arrow IPC file),
    /// `.arrows` or `.ipc` (an Arrow IPC stream)); `None`: printed as a
    /// table.
    pub output: Option<PathBuf>,
    /// The worker program for process mode.
    pub worker: WorkerCommand,
    /// DataFusion's target partitions (`None`: one per core).
    pub partitions: Option<usize>,
    /// The Ballista cluster to run on (`None`: this process).
    pub cluster: Option<Cluster>,
}

/// A Ballista cluster of coil's programs (`coil sql --cluster`).
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The scheduler, `df://HOST:PORT`.
    pub url: String,
    /// The cluster's TLS directory, for a cluster started with `--tls`.
    pub tls: Option<PathBuf>,
}

/// A Python UDF `coil sql` registers before the statements run
/// (`--udf`): its SQL name, its target, and the types it states; types not
/// stated come from the function's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlUdf {
    /// The name SQL calls it by.
    pub name: String,
    /// `file.py:function` or `package.module:function`.
    pub target: String,
    /// The argument types, when stated (`Some(vec![])`: no arguments).
    pub args: Option<Vec<DataType>>,
    /// The return type, when stated.
    pub returns: Option<DataType>,
}

/// How `--udf` is written, for error messages.
const UDF_FORM: &str = "NAME=FILE.py:FUNCTION, optionally typed: \
                        NAME=FILE.py:FUNCTION(TYPE, ...) -> TYPE or NAME=FILE.py:FUNCTION -> TYPE";

/// Parses `--udf`: `NAME=FILE.py:FUNCTION`, typed by the function's
/// annotations, or with the types stated after it:
/// `NAME=FILE.py:FUNCTION(TYPE, ...) -> TYPE` (arguments and return),
/// `NAME=FILE.py:FUNCTION(TYPE, ...)` (arguments only) or
/// `NAME=FILE.py:FUNCTION -> TYPE` (the return only), each `TYPE` a name
/// `--returns` takes (`int64`, `float64`, `list<utf8>`...).
///
/// # Errors
///
/// When there is no `=`, either side is empty, or the types are not
/// written as above (naming the type that is not one).
///
/// # Examples
///
/// ```
/// use coil_host::arrow_schema::DataType;
///
/// let udf = coil::sql::parse_udf("zscore=vector.py:zscore(float64) -> float64").unwrap();
/// assert_eq!(udf.target, "vector.py:zscore");
/// assert_eq!(udf.args, Some(vec![DataType::Float64]));
/// assert_eq!(udf.returns, Some(DataType::Float64));
/// assert_eq!(coil::sql::parse_udf("slug=sql.py:slug").unwrap().returns, None);
/// ```
pub fn parse_udf(s: &str) -> anyhow::Result<SqlUdf> {
    let Some((name, target)) = s
        .split_once('=')
        .filter(|(n, t)| !n.trim().is_empty() && !t.trim().is_empty())
    else {
        bail!("--udf takes {UDF_FORM}, got {s:?}");
    };
    let target = target.trim();
    let open = target.find('(');
    let arrow = target.find("->");
    let (function, args, returns) = match (open, arrow) {
        (Some(open), arrow) if arrow.is_none_or(|a| open < a) => {
            let close = matching_paren(target, open)
                .with_context(|| format!("--udf {s:?}: a '(' without its ')'"))?;
            let rest = target[close + 1..].trim();
            let returns = match rest.strip_prefix("->") {
                Some(t) => Some(t),
                None if rest.is_empty() => None,
                None => bail!("--udf {s:?}: expected -> TYPE after the arguments, got {rest:?}"),
            };
            (&target[..open], Some(&target[open + 1..close]), returns)
        }
        (_, Some(arrow)) => (&target[..arrow], None, Some(&target[arrow + 2..])),
        _ => (target, None, None),
    };
    let function = function.trim();
    if function.is_empty() {
        bail!("--udf takes {UDF_FORM}, got {s:?}");
    }
    let args = args
        .map(|list| {
            top_level_items(list)
                .into_iter()
                .map(|t| type_named(t).with_context(|| format!("--udf {s:?}: an argument type")))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .transpose()?;
    let returns = returns
        .map(|t| type_named(t).with_context(|| format!("--udf {s:?}: the return type")))
        .transpose()?;
    Ok(SqlUdf {
        name: name.trim().to_string(),
        target: function.to_string(),
        args,
        returns,
    })
}

/// The Arrow type a `--udf` type name names, in the grammar of
/// `--returns`.
fn type_named(name: &str) -> anyhow::Result<DataType> {
    name.trim()
        .parse::<coil_proto::TypeName>()
        .map(coil_proto::TypeName::into_data_type)
        .map_err(anyhow::Error::new)
}

/// The index of the `)` closing the `(` at `open`.
fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices().skip_while(|&(i, _)| i < open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `list`'s comma-separated items, splitting only at commas outside
/// brackets (`decimal128(10,2), map<utf8,int64>` is two items); none for a
/// blank list.
fn top_level_items(list: &str) -> Vec<&str> {
    if list.trim().is_empty() {
        return Vec::new();
    }
    let mut items = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' | '>' | ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    items
}

/// Runs `job`: registers its UDFs, runs its statements in order, prints
/// the rows of each query (or writes the last one's to the output file).
/// A progress line on stderr (when it is a terminal) counts the rows of a
/// query that runs longer than a second.
///
/// # Errors
///
/// A statement that does not parse or plan, a UDF that does not start or
/// fails (naming the UDF, the row's values and the traceback), a file
/// that cannot be read or written.
pub fn run(job: &SqlJob, out: &mut dyn Write) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the query runtime")?;
    runtime.block_on(run_async(job, out))
}

async fn run_async(job: &SqlJob, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut session = SessionConfig::new();
    if let Some(n) = job.partitions {
        session = session.with_target_partitions(n);
    }
    let options = PythonOptions::new(job.config.clone()).with_worker(job.worker.clone());
    let ctx = match &job.cluster {
        None => python_session_with(options, session),
        Some(cluster) => {
            let tls = cluster
                .tls
                .as_deref()
                .map(coil_ballista::ClusterTls::load)
                .transpose()
                .context("--tls")?;
            let ctx = coil_ballista::remote_session(&cluster.url, options, tls.as_ref())
                .await
                .with_context(|| format!("--cluster {}", cluster.url))?;
            if let Some(n) = job.partitions {
                ctx.state_ref()
                    .write()
                    .config_mut()
                    .options_mut()
                    .execution
                    .target_partitions = n;
            }
            ctx
        }
    }
    .enable_url_table();
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        for alias in FileAlias::all() {
            state.register_file_format(Arc::new(alias), false)?;
        }
    }
    for udf in &job.udfs {
        let (ctx2, udf2) = (ctx.clone(), udf.clone());
        tokio::task::spawn_blocking(move || {
            register_python_udf(
                &ctx2,
                &udf2.name,
                UdfSpec::new(udf2.target),
                udf2.args,
                udf2.returns,
            )
        })
        .await
        .context("registering a UDF")?
        .with_context(|| format!("--udf {}={}", udf.name, udf.target))?;
    }
    let dialect = ctx.state().config().options().sql_parser.dialect;
    let dialect = datafusion::sql::sqlparser::dialect::dialect_from_str(dialect.as_ref())
        .with_context(|| format!("the SQL dialect {:?}", dialect.as_ref()))?;
    let statements = match DFParser::parse_sql_with_dialect(&job.sql, dialect.as_ref()) {
        Ok(statements) => statements,
        Err(e) => {
            let e = anyhow::Error::new(e).context("parsing the SQL");
            return Err(match dashed_set_key(&job.sql) {
                Some(key) => e.context(format!(
                    "SQL cannot write '-' in an unquoted name: write SET {} = ... \
                     (a '_' for each '-'), or quote the key: SET \"{key}\" = ...",
                    key.replace('-', "_")
                )),
                None => e,
            });
        }
    };
    if statements.is_empty() {
        bail!("no SQL statement to run");
    }
    let last = statements.len() - 1;
    for (i, mut statement) in statements.into_iter().enumerate() {
        coil_datafusion::prepare_statement(&mut statement);
        let created = coil_datafusion::created_function(&statement);
        let text = statement.to_string();
        let plan = ctx
            .state()
            .statement_to_plan(statement)
            .await
            .with_context(|| format!("planning {}", short(&text)))?;
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .with_context(|| format!("running {}", short(&text)))?;
        match (&job.output, i == last) {
            (Some(path), true) => {
                let df = match &job.cluster {
                    // The cluster's rows, written here, not by an executor.
                    Some(_) => here(df).await?,
                    None => df,
                };
                write(df, path).await.map_err(|e| reached(e, job))?
            }
            _ => {
                if df.schema().fields().is_empty() {
                    // SET, CREATE FUNCTION...: nothing to show.
                    df.collect().await.map_err(|e| reached(e.into(), job))?;
                    // A table function is also its row form, for unnest.
                    if let Some(name) = &created {
                        coil_datafusion::register_row_form(&ctx, name);
                    }
                    continue;
                }
                let batches = collect(df).await.map_err(|e| reached(e, job))?;
                writeln!(out, "{}", pretty_format_batches(&batches)?)?;
            }
        }
    }
    Ok(())
}

/// `df`, run on the cluster, as a frame of this process reading the
/// cluster's rows as they arrive: what writes it runs here.
async fn here(df: DataFrame) -> anyhow::Result<DataFrame> {
    use datafusion::physical_plan::streaming::PartitionStream;
    use datafusion::physical_plan::SendableRecordBatchStream;

    /// The cluster's stream, read once.
    struct Once {
        schema: datafusion::arrow::datatypes::SchemaRef,
        stream: std::sync::Mutex<Option<SendableRecordBatchStream>>,
    }
    impl std::fmt::Debug for Once {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Once").finish_non_exhaustive()
        }
    }
    impl PartitionStream for Once {
        fn schema(&self) -> &datafusion::arrow::datatypes::SchemaRef {
            &self.schema
        }
        fn execute(
            &self,
            _ctx: Arc<datafusion::execution::TaskContext>,
        ) -> SendableRecordBatchStream {
            let taken = self.stream.lock().map(|mut s| s.take()).ok().flatten();
            taken.unwrap_or_else(|| {
                Box::pin(
                    datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                        self.schema.clone(),
                        futures::stream::once(async {
                            Err(datafusion::error::DataFusionError::Internal(
                                "the cluster's rows were read already".into(),
                            ))
                        }),
                    ),
                )
            })
        }
    }

    let schema = df.schema().inner().clone();
    let stream = df.execute_stream().await?;
    let table = datafusion::catalog::streaming::StreamingTable::try_new(
        schema.clone(),
        vec![Arc::new(Once {
            schema,
            stream: std::sync::Mutex::new(Some(stream)),
        })],
    )?;
    Ok(datafusion::prelude::SessionContext::new().read_table(Arc::new(table))?)
}

/// `e`, with a hint when it is a cluster that could not be reached the
/// way it was asked.
fn reached(e: anyhow::Error, job: &SqlJob) -> anyhow::Error {
    let Some(cluster) = &job.cluster else {
        return e;
    };
    let text = format!("{e:#}");
    if !(text.contains("Transport") || text.contains("transport error")) {
        return e;
    }
    let hint = match &cluster.tls {
        None => "a cluster started with --tls takes only clients with its key: pass --tls DIR",
        Some(_) => "check the scheduler's address, and that --tls names this cluster's directory",
    };
    e.context(format!("reaching the cluster at {} ({hint})", cluster.url))
}

/// The key of a `SET` whose unquoted key holds a `-` (`SET
/// python.execution-mode = ...`), which SQL reads as a minus.
fn dashed_set_key(sql: &str) -> Option<String> {
    let mut words = sql.split(|c: char| c.is_whitespace() || c == ';');
    while let Some(word) = words.next() {
        if !word.eq_ignore_ascii_case("set") {
            continue;
        }
        let key = words.find(|w| !w.is_empty())?;
        let key: String = key
            .chars()
            .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .collect();
        if key.contains('-') {
            return Some(key);
        }
    }
    None
}

/// A file extension DataFusion does not know, read as a format it does:
/// `.jsonl` and `.ndjson` as JSON Lines, `.arrows`, `.feather` and `.ipc`
/// as Arrow IPC (a file or a stream), so `FROM 'out.jsonl'` reads what
/// `--output out.jsonl` wrote.
#[derive(Debug)]
struct FileAlias {
    ext: &'static str,
    format: Arc<dyn FileFormatFactory>,
}

impl FileAlias {
    fn all() -> Vec<FileAlias> {
        let json = Arc::new(JsonFormatFactory::new()) as Arc<dyn FileFormatFactory>;
        let arrow = Arc::new(ArrowFormatFactory::new()) as Arc<dyn FileFormatFactory>;
        [
            ("jsonl", &json),
            ("ndjson", &json),
            ("arrows", &arrow),
            ("feather", &arrow),
            ("ipc", &arrow),
        ]
        .into_iter()
        .map(|(ext, format)| FileAlias {
            ext,
            format: format.clone(),
        })
        .collect()
    }
}

impl GetExt for FileAlias {
    fn get_ext(&self) -> String {
        self.ext.to_string()
    }
}

impl FileFormatFactory for FileAlias {
    fn create(
        &self,
        state: &dyn Session,
        options: &HashMap<String, String>,
    ) -> datafusion::error::Result<Arc<dyn FileFormat>> {
        self.format.create(state, options)
    }

    fn default(&self) -> Arc<dyn FileFormat> {
        self.format.default()
    }
}

/// The start of a statement, for error messages.
fn short(sql: &str) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

/// A spinner on stderr counting rows, shown after a second on a terminal.
struct Progress {
    bar: indicatif::ProgressBar,
    start: Instant,
    rows: u64,
}

impl Progress {
    fn new() -> Self {
        let bar = if std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg}")
                    .expect("a valid template"),
            )
        } else {
            indicatif::ProgressBar::hidden()
        };
        Progress {
            bar,
            start: Instant::now(),
            rows: 0,
        }
    }

    fn add(&mut self, rows: usize) {
        self.rows += rows as u64;
        let elapsed = self.start.elapsed();
        if elapsed > Duration::from_secs(1) {
            self.bar.set_message(format!(
                "{} rows out, {:.1} s",
                self.rows,
                elapsed.as_secs_f64()
            ));
            self.bar.tick();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

async fn collect(df: DataFrame) -> anyhow::Result<Vec<RecordBatch>> {
    let mut stream = df.execute_stream().await?;
    let mut progress = Progress::new();
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        progress.add(batch.num_rows());
        batches.push(batch);
    }
    Ok(batches)
}

/// Writes `df`'s rows to `path`, in the format its extension names: whole
/// or not at all (written beside it and renamed into place when every row
/// is written; see `crate::output`).
async fn write(df: DataFrame, path: &Path) -> anyhow::Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !matches!(
        ext.as_str(),
        "parquet" | "csv" | "jsonl" | "json" | "ndjson" | "arrow" | "feather" | "arrows" | "ipc"
    ) {
        bail!(
            "--output {}: the extension names the format: .parquet, .csv, .jsonl (or .ndjson, .json), \
             .arrow (or .feather: an Arrow IPC file) or .arrows (an Arrow IPC stream)",
            path.display()
        );
    }
    path.to_str().context("an output path that is not UTF-8")?;
    let (pending, file) = crate::output::Pending::new(path)?;
    let name = pending
        .path()
        .to_str()
        .context("an output path that is not UTF-8")?
        .to_owned();
    let single = || DataFrameWriteOptions::new().with_single_file_output(true);
    match ext.as_str() {
        "parquet" => {
            drop(file);
            df.write_parquet(&name, single(), None).await?;
        }
        "csv" => {
            drop(file);
            df.write_csv(&name, single(), None).await?;
        }
        "jsonl" | "json" | "ndjson" => {
            drop(file);
            df.write_json(&name, single(), None).await?;
        }
        // Arrow's convention: `.arrow` (and Feather v2) is the IPC file
        // format, which `pyarrow.ipc.open_file` and readers that seek want;
        // `.arrows` (and `.ipc`) the stream format: `coil run`'s writer.
        _ => {
            let schema = df.schema().inner().clone();
            let writer = crate::ipc_stream::BatchWriter::new(
                std::io::BufWriter::new(file),
                &schema,
                crate::ipc_stream::writes_a_file(Some(path)),
            )?;
            write_batches(df, writer, |w, b| w.write(b), |w| w.finish()).await?;
        }
    }
    pending.commit()
}

/// Writes `df`'s batches with `writer`, counting them on the progress line.
async fn write_batches<W>(
    df: DataFrame,
    mut writer: W,
    write: impl Fn(&mut W, &RecordBatch) -> Result<(), datafusion::arrow::error::ArrowError>,
    finish: impl FnOnce(&mut W) -> Result<(), datafusion::arrow::error::ArrowError>,
) -> anyhow::Result<()> {
    let mut stream = df.execute_stream().await?;
    let mut progress = Progress::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        progress.add(batch.num_rows());
        write(&mut writer, &batch)?;
    }
    finish(&mut writer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udf_states_its_types_after_the_function_or_takes_its_annotations() {
        let udf =
            parse_udf("f = a/b.py:f(int64, decimal128(10,2), map<utf8,int64>) -> list<float64>")
                .unwrap();
        assert_eq!(udf.name, "f");
        assert_eq!(udf.target, "a/b.py:f");
        assert_eq!(
            udf.args.unwrap(),
            vec![
                DataType::Int64,
                DataType::Decimal128(10, 2),
                type_named("map<utf8,int64>").unwrap()
            ]
        );
        assert_eq!(udf.returns, Some(type_named("list<float64>").unwrap()));
        let udf = parse_udf("f=pkg.mod:f()").unwrap();
        assert_eq!((udf.args, udf.returns), (Some(vec![]), None));
        let udf = parse_udf("f=b.py:f->utf8").unwrap();
        assert_eq!((udf.args, udf.returns), (None, Some(DataType::Utf8)));
        let udf = parse_udf("f=b.py:f").unwrap();
        assert_eq!(
            (udf.target.as_str(), udf.args, udf.returns),
            ("b.py:f", None, None)
        );
    }

    #[test]
    fn a_udf_written_wrong_says_what_is_wrong() {
        for (given, says) in [
            ("b.py:f", "NAME=FILE.py:FUNCTION"),
            ("f=b.py:f(int64", "without its ')'"),
            ("f=b.py:f(int64) float64", "expected -> TYPE"),
            ("f=b.py:f(intt) -> float64", "an argument type"),
            ("f=b.py:f -> flot", "the return type"),
            ("f=(int64)", "NAME=FILE.py:FUNCTION"),
        ] {
            let e = format!("{:#}", parse_udf(given).unwrap_err());
            assert!(e.contains(says), "{given}: {e}");
        }
    }

    #[test]
    fn a_set_key_with_a_dash_is_found_and_one_without_is_not() {
        assert_eq!(
            dashed_set_key("SELECT 1;\nset  python.execution-mode='process'"),
            Some("python.execution-mode".into())
        );
        assert_eq!(dashed_set_key("SET python.execution_mode = 'x'"), None);
        assert_eq!(dashed_set_key("SELECT 1 - 2"), None);
    }
}
