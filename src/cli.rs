//! The `coil` command line's arguments: clap's types for every subcommand,
//! with the flags `run` and `sql` share ([`CommonArgs`]) written once.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use coil_host::Config;
use coil_proto::TypeName;

/// Run Python user-defined functions from Rust, in process, thread or
/// sub-interpreter mode.
#[derive(Parser)]
#[command(name = "coil", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// `coil`'s subcommands.
#[derive(Subcommand)]
pub enum Cmd {
    /// Run a UDF over JSON Lines: each input line a JSON array of the UDF's
    /// arguments; one JSON result per line, in order. With --format arrow,
    /// over Arrow IPC (a stream, or a file: Feather v2): each record batch's
    /// columns are the UDF's arguments; out come Arrow IPC record batches,
    /// one per input batch, their one column `result` of the UDF's return
    /// type.
    Run(RunArgs),
    /// Run a UDF over your input in each mode and directly, check that they
    /// agree, and advise which mode to use.
    Bench(BenchArgs),
    /// Show the embedded CPython, the Python environment a configuration
    /// gives UDFs (its sys.path), the modes this build runs, and whether a
    /// UDF loads and can run in a sub-interpreter: what to run first when
    /// an import fails.
    Env(EnvArgs),
    /// Run SQL with Python UDFs on DataFusion, over Parquet, CSV, JSON Lines
    /// and Arrow files named in the query (FROM 'data/*.parquet'). Runs the
    /// `coil-sql` program beside this one when this coil was built without
    /// SQL (cargo build --release --features sql --bin coil-sql).
    Sql(SqlArgs),
    /// (internal) Serve as a worker process; spawned by `coil run`.
    #[command(hide = true, disable_help_flag = true)]
    Worker {
        /// The worker's own arguments.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
}

/// How `coil run` and `coil bench` read their input (and `coil run`
/// writes its results).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// JSON Lines: a JSON array of the UDF's arguments per line; a JSON
    /// result per line.
    Jsonl,
    /// Arrow IPC, a stream or a file (Feather v2): a record batch's columns
    /// are the UDF's arguments; a batch of one column, `result`, per input
    /// batch.
    Arrow,
}

/// The configuration flags `coil run` and `coil sql` share.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct CommonArgs {
    /// Execution mode; short for --conf python.execution-mode=MODE.
    #[arg(long)]
    pub mode: Option<String>,
    /// Worker processes; short for --conf python.worker-count=N.
    #[arg(long)]
    pub workers: Option<String>,
    /// A configuration key, KEY=VALUE; repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
}

impl CommonArgs {
    /// The configuration: the `--conf` pairs in order, then `--mode` and
    /// `--workers`.
    ///
    /// # Errors
    ///
    /// A key or value the configuration refuses.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = config_of(&self.conf)?;
        if let Some(m) = &self.mode {
            config.set(coil_host::EXECUTION_MODE, m)?;
        }
        if let Some(n) = &self.workers {
            config.set(coil_host::WORKER_COUNT, n)?;
        }
        Ok(config)
    }
}

/// The configuration of `KEY=VALUE` pairs, set in order.
///
/// # Errors
///
/// A key or value the configuration refuses.
pub fn config_of(pairs: &[String]) -> anyhow::Result<Config> {
    let mut config = Config::default();
    for pair in pairs {
        config.set_pair(pair)?;
    }
    Ok(config)
}

/// `coil run`'s arguments.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The UDF: path/to/file.py:NAME or package.module:NAME.
    #[arg(long)]
    pub udf: String,
    /// scalar (one value per row), table (rows per row), vectorized (columns in, a column out).
    /// Table UDFs run over JSON Lines only. Aggregates (aggregate,
    /// vectorized-aggregate) group rows: coil sql runs them. Default: scalar, or vectorized
    /// when the UDF's annotations name columns (np.ndarray, pd.Series,
    /// pa.Array), as coil sql reads them.
    #[arg(long)]
    pub kind: Option<String>,
    /// The input and output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// The type of the result column, for --format arrow (default: the
    /// UDF's return annotation).
    #[arg(long, value_name = "TYPE", value_parser = parse_type_name, help = returns_help())]
    pub returns: Option<TypeName>,
    /// The configuration flags.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Input file (default: standard input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Output file (default: standard output). With --format arrow, a
    /// name ending in .arrow or .feather gets an Arrow IPC file, any other
    /// (.arrows, standard output) an Arrow IPC stream.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write each failed row (its line, input and error) as a JSON line to
    /// FILE, and go on with the rest; short for --conf
    /// python.fn-execution.on-error=dead-letter. With --format arrow a
    /// failed row is named by its batch and row (both from 1), and its
    /// result is null.
    #[arg(long, value_name = "FILE")]
    pub errors: Option<PathBuf>,
}

/// `coil sql`'s arguments.
#[derive(clap::Args)]
pub struct SqlArgs {
    /// The SQL: statements separated by `;` (SET python.KEY = VALUE,
    /// CREATE FUNCTION ... LANGUAGE PYTHON, queries). Default: --file, or
    /// else standard input.
    pub query: Option<String>,
    /// Read the SQL from this file.
    #[arg(long, short = 'f', conflicts_with = "query")]
    pub file: Option<PathBuf>,
    /// A Python UDF, NAME=FILE.py:FUNCTION, typed by its annotations
    /// (def slug(title: str) -> str) or by types stated after it:
    /// 'NAME=FILE.py:FUNCTION(int64, int64) -> float64' (either part may
    /// be left out; coil's type names, as --returns takes); repeatable.
    #[arg(long, value_name = "NAME=FILE.py:FUNCTION[(TYPES)][ -> TYPE]")]
    pub udf: Vec<String>,
    /// The configuration flags (SET changes them too).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Write the last statement's rows here, in the format the extension
    /// names instead of printing a table: .parquet, .csv, .json/.jsonl/
    /// .ndjson (JSON Lines), .arrow/.feather (an Arrow IPC file), .arrows
    /// (an Arrow IPC stream).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// DataFusion's target partitions (default: one per core).
    #[arg(long)]
    pub partitions: Option<usize>,
    /// Run the statements on a Ballista cluster of coil-scheduler and
    /// coil-executors (docs/distributed.md) instead of in this process;
    /// files the SQL names must be where the executors can read them,
    /// and --output is written here.
    #[arg(long, value_name = "df://HOST:PORT")]
    pub cluster: Option<String>,
    /// The cluster's TLS directory (`coil-scheduler make-tls`), for a
    /// cluster started with --tls (with --cluster).
    #[arg(long, env = "COIL_CLUSTER_TLS", value_name = "DIR")]
    pub tls: Option<PathBuf>,
}

/// `coil env`'s arguments.
#[derive(clap::Args)]
pub struct EnvArgs {
    /// A configuration key, KEY=VALUE; repeatable (python.executable,
    /// python.requirements, python.files...).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// Also check this UDF (path/to/file.py:NAME or package.module:NAME).
    #[arg(long)]
    pub udf: Option<String>,
    /// The UDF's kind: scalar, table or vectorized.
    #[arg(long, default_value = "scalar")]
    pub kind: String,
    /// Remove the cached python.requirements environments no runner
    /// started with for python.env.max-age (30 days unless set), and say
    /// what was removed; nothing else.
    #[arg(long)]
    pub prune: bool,
}

/// `coil bench`'s arguments.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// The UDF: path/to/file.py:NAME or package.module:NAME.
    #[arg(long)]
    pub udf: String,
    /// The input: JSON Lines, each line a JSON array of the UDF's
    /// arguments; or, with --format arrow, an Arrow IPC stream whose
    /// batches' columns are the UDF's arguments.
    #[arg(long)]
    pub input: PathBuf,
    /// scalar, table or vectorized (table over JSON Lines only). Default:
    /// vectorized when the UDF's annotations name columns (np.ndarray,
    /// pd.Series, pa.Array), else scalar, as `coil run` and `coil sql` read
    /// them.
    #[arg(long)]
    pub kind: Option<String>,
    /// The input's format: jsonl (rows, measured on Runner::call) or arrow
    /// (record batches, measured on Runner::call_arrow).
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    pub format: Format,
    /// The type of the result column, for --format arrow (default: the
    /// UDF's return annotation).
    #[arg(long, value_name = "TYPE", value_parser = parse_type_name,
          help = returns_help())]
    pub returns: Option<TypeName>,
    /// The modes to compare, comma-separated.
    #[arg(
        long,
        default_value = "process,multi-thread,sub-interpreter",
        value_delimiter = ','
    )]
    pub modes: Vec<String>,
    /// Executors per mode; short for --conf python.worker-count=N.
    #[arg(long)]
    pub workers: Option<String>,
    /// A configuration key, KEY=VALUE; repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// Timed runs per mode; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also draw rows/s per mode as an SVG chart in this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// `--returns`'s value parser: a [`TypeName`].
fn parse_type_name(given: &str) -> Result<TypeName, coil_proto::BadType> {
    given.parse()
}

/// `--returns`'s help: what it is for, whether it is `required` under
/// `--format arrow`, and the type names it takes.
fn returns_help() -> String {
    format!(
        "The type of the result column, for --format arrow (default: the UDF's return annotation): {}",
        TypeName::forms()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("coil").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn run_takes_the_shared_flags_and_a_type_name() {
        let cli = parse(&[
            "run",
            "--udf",
            "f.py:f",
            "--format",
            "arrow",
            "--returns",
            "list<int64>",
            "--mode",
            "multi-thread",
            "--workers",
            "2",
            "--conf",
            "python.fn-execution.bundle.size=10",
        ]);
        let Cmd::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.format, Format::Arrow);
        assert_eq!(run.returns.unwrap().to_string(), "list<int64>");
        let config = run.common.config().unwrap();
        assert_eq!(config.worker_count(), 2);
        assert_eq!(config.get(coil_host::EXECUTION_MODE), Some("multi-thread"));
    }

    #[test]
    fn a_bad_type_name_is_refused_with_the_forms_taken() {
        let e = Cli::try_parse_from(["coil", "run", "--udf", "f.py:f", "--returns", "list<x>"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("unknown type \"x\""), "{e}");
        assert!(e.contains("fixed_size_list<T,N>"), "{e}");
    }

    #[test]
    fn sql_takes_the_same_shared_flags() {
        let cli = parse(&["sql", "SELECT 1", "--mode", "process", "--conf", "a=b"]);
        let Cmd::Sql(sql) = cli.command else {
            panic!("not sql")
        };
        assert_eq!(sql.common.mode.as_deref(), Some("process"));
        assert_eq!(sql.common.conf, ["a=b"]);
    }
}
