//! `coil sql`: SQL with Python UDFs, on DataFusion, over Parquet, CSV,
//! JSON Lines and Arrow files named in the query.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use coil_datafusion::datafusion;
use coil_datafusion::{python_session_with, register_python_udf, PythonOptions};
use coil_host::{Config, UdfSpec, WorkerCommand};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{DataFrame, SessionConfig};
use datafusion::sql::parser::DFParser;
use futures::StreamExt;

/// What `coil sql` runs.
#[derive(Debug, Clone)]
pub struct SqlJob {
    /// The statements, `;`-separated (`SET`, `CREATE FUNCTION`, queries).
    pub sql: String,
    /// Python UDFs to register first: SQL name and `file.py:function`;
    /// their types come from their annotations.
    pub udfs: Vec<(String, String)>,
    /// coil's configuration (`SET python.*` changes it from here).
    pub config: Config,
    /// Where the last statement's rows go (`.parquet`, `.csv`, `.jsonl`
    /// or `.json`, `.arrow`); `None`: printed as a table.
    pub output: Option<PathBuf>,
    /// The worker program for process mode.
    pub worker: WorkerCommand,
    /// DataFusion's target partitions (`None`: one per core).
    pub partitions: Option<usize>,
}

/// Parses `NAME=FILE.py:FUNCTION`.
///
/// # Errors
///
/// When there is no `=` or either side is empty.
pub fn parse_udf(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((name, target)) if !name.trim().is_empty() && !target.trim().is_empty() => {
            Ok((name.trim().to_string(), target.trim().to_string()))
        }
        _ => bail!("--udf takes NAME=FILE.py:FUNCTION, got {s:?}"),
    }
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
    let ctx = python_session_with(options, session).enable_url_table();
    for (name, target) in &job.udfs {
        let (ctx2, name2, target2) = (ctx.clone(), name.clone(), target.clone());
        tokio::task::spawn_blocking(move || {
            register_python_udf(&ctx2, &name2, UdfSpec::new(target2), None, None)
        })
        .await
        .context("registering a UDF")?
        .with_context(|| format!("--udf {name}={target}"))?;
    }
    let dialect = ctx.state().config().options().sql_parser.dialect;
    let dialect = datafusion::sql::sqlparser::dialect::dialect_from_str(dialect.as_ref())
        .with_context(|| format!("the SQL dialect {:?}", dialect.as_ref()))?;
    let statements =
        DFParser::parse_sql_with_dialect(&job.sql, dialect.as_ref()).context("parsing the SQL")?;
    if statements.is_empty() {
        bail!("no SQL statement to run");
    }
    let last = statements.len() - 1;
    for (i, statement) in statements.into_iter().enumerate() {
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
            (Some(path), true) => write(df, path).await?,
            _ => {
                if df.schema().fields().is_empty() {
                    // SET, CREATE FUNCTION...: nothing to show.
                    df.collect().await?;
                    continue;
                }
                let batches = collect(df).await?;
                writeln!(out, "{}", pretty_format_batches(&batches)?)?;
            }
        }
    }
    Ok(())
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

/// Writes `df`'s rows to `path`, in the format its extension names.
async fn write(df: DataFrame, path: &Path) -> anyhow::Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let name = path.to_str().context("an output path that is not UTF-8")?;
    let single = || DataFrameWriteOptions::new().with_single_file_output(true);
    match ext.as_str() {
        "parquet" => {
            df.write_parquet(name, single(), None).await?;
        }
        "csv" => {
            df.write_csv(name, single(), None).await?;
        }
        "jsonl" | "json" | "ndjson" => {
            df.write_json(name, single(), None).await?;
        }
        "arrow" | "arrows" | "ipc" => {
            let schema = df.schema().inner().clone();
            let mut stream = df.execute_stream().await?;
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut writer = datafusion::arrow::ipc::writer::StreamWriter::try_new(
                std::io::BufWriter::new(file),
                &schema,
            )?;
            let mut progress = Progress::new();
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                progress.add(batch.num_rows());
                writer.write(&batch)?;
            }
            writer.finish()?;
        }
        _ => bail!(
            "--output {}: the extension names the format: .parquet, .csv, .jsonl or .arrow",
            path.display()
        ),
    }
    Ok(())
}
