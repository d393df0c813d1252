//! The `coil` command line: run a Python UDF over JSON Lines or an Arrow
//! IPC stream.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use coil::json;
use coil_host::arrow_array::{Array, RecordBatch};
use coil_host::arrow_schema::DataType;
use coil_host::{Config, OnError, RunError, Runner, UdfKind, UdfSpec, WorkerCommand};
use coil_proto::TypeName;

/// Run Python user-defined functions from Rust, in process, thread or
/// sub-interpreter mode.
#[derive(Parser)]
#[command(name = "coil", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a UDF over JSON Lines: each input line a JSON array of the UDF's
    /// arguments; one JSON result per line, in order. With --format arrow,
    /// over an Arrow IPC stream: each record batch's columns are the UDF's
    /// arguments; out comes an Arrow IPC stream of one batch per input
    /// batch, its one column `result` of the --returns type.
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
    /// and Arrow files named in the query (FROM 'data/*.parquet'). Needs a
    /// coil built with --features sql.
    Sql(SqlArgs),
    /// (internal) Serve as a worker process; spawned by `coil run`.
    #[command(hide = true, disable_help_flag = true)]
    Worker {
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
}

/// How `coil run` and `coil bench` read their input (and `coil run`
/// writes its results).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// JSON Lines: a JSON array of the UDF's arguments per line; a JSON
    /// result per line.
    Jsonl,
    /// Arrow IPC streams: a record batch's columns are the UDF's arguments;
    /// a batch of one column, `result`, per input batch. Needs --returns.
    Arrow,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The UDF: path/to/file.py:NAME or package.module:NAME.
    #[arg(long)]
    udf: String,
    /// scalar (one value per row), table (rows per row), vectorized (columns in, a column out).
    /// Table UDFs run over JSON Lines only.
    #[arg(long, default_value = "scalar")]
    kind: String,
    /// The input and output format.
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// The type of the result column, for --format arrow (required there).
    #[arg(long, value_name = "TYPE", value_parser = TypeName::from_str,
          required_if_eq("format", "arrow"), help = returns_help())]
    returns: Option<TypeName>,
    /// Execution mode; short for --conf python.execution-mode=MODE.
    #[arg(long)]
    mode: Option<String>,
    /// Worker processes; short for --conf python.worker-count=N.
    #[arg(long)]
    workers: Option<String>,
    /// A configuration key, KEY=VALUE; repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    conf: Vec<String>,
    /// Input file (default: standard input).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Output file (default: standard output).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write each failed row (its line, input and error) as a JSON line to
    /// FILE, and go on with the rest; short for --conf
    /// python.fn-execution.on-error=dead-letter. With --format arrow a
    /// failed row is named by its batch and row (both from 1), and its
    /// result is null.
    #[arg(long, value_name = "FILE")]
    errors: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SqlArgs {
    /// The SQL: statements separated by `;` (SET python.KEY = VALUE,
    /// CREATE FUNCTION ... LANGUAGE PYTHON, queries). Default: --file, or
    /// else standard input.
    query: Option<String>,
    /// Read the SQL from this file.
    #[arg(long, short = 'f', conflicts_with = "query")]
    file: Option<PathBuf>,
    /// A Python UDF, NAME=FILE.py:FUNCTION, typed by its annotations
    /// (def slug(title: str) -> str); repeatable.
    #[arg(long, value_name = "NAME=FILE.py:FUNCTION")]
    udf: Vec<String>,
    /// Execution mode; short for --conf python.execution-mode=MODE.
    #[arg(long)]
    mode: Option<String>,
    /// Workers; short for --conf python.worker-count=N.
    #[arg(long)]
    workers: Option<String>,
    /// A configuration key, KEY=VALUE; repeatable (SET changes them too).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    conf: Vec<String>,
    /// Write the last statement's rows here, in the format the extension
    /// names (.parquet, .csv, .jsonl, .arrow) instead of printing a table.
    #[arg(long)]
    output: Option<PathBuf>,
    /// DataFusion's target partitions (default: one per core).
    #[arg(long)]
    partitions: Option<usize>,
}

#[derive(clap::Args)]
struct EnvArgs {
    /// A configuration key, KEY=VALUE; repeatable (python.executable,
    /// python.requirements, python.files...).
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    conf: Vec<String>,
    /// Also check this UDF (path/to/file.py:NAME or package.module:NAME).
    #[arg(long)]
    udf: Option<String>,
    /// The UDF's kind: scalar, table or vectorized.
    #[arg(long, default_value = "scalar")]
    kind: String,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The UDF: path/to/file.py:NAME or package.module:NAME.
    #[arg(long)]
    udf: String,
    /// The input: JSON Lines, each line a JSON array of the UDF's
    /// arguments; or, with --format arrow, an Arrow IPC stream whose
    /// batches' columns are the UDF's arguments.
    #[arg(long)]
    input: PathBuf,
    /// scalar, table or vectorized (table over JSON Lines only).
    #[arg(long, default_value = "scalar")]
    kind: String,
    /// The input's format: jsonl (rows, measured on Runner::call) or arrow
    /// (record batches, measured on Runner::call_arrow).
    #[arg(long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// The type of the result column, for --format arrow (required there).
    #[arg(long, value_name = "TYPE", value_parser = TypeName::from_str,
          required_if_eq("format", "arrow"), help = returns_help())]
    returns: Option<TypeName>,
    /// The modes to compare, comma-separated.
    #[arg(
        long,
        default_value = "process,multi-thread,sub-interpreter",
        value_delimiter = ','
    )]
    modes: Vec<String>,
    /// Executors per mode; short for --conf python.worker-count=N.
    #[arg(long)]
    workers: Option<String>,
    /// A configuration key, KEY=VALUE; repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    conf: Vec<String>,
    /// Timed runs per mode; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also draw rows/s per mode as an SVG chart in this file.
    #[arg(long)]
    plot: Option<PathBuf>,
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let mut config = Config::default();
    for pair in &args.conf {
        config.set_pair(pair)?;
    }
    if let Some(n) = &args.workers {
        config.set(coil_host::WORKER_COUNT, n)?;
    }
    let modes = args
        .modes
        .iter()
        .map(|m| {
            m.parse::<coil_host::ExecutionMode>()
                .map_err(|valid| anyhow::anyhow!("unknown mode {m:?}: expected {valid}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let kind: UdfKind = args.kind.parse()?;
    let spec = udf_spec(
        &args.udf,
        kind,
        args.format,
        args.returns.as_ref().map(TypeName::data_type),
    )?;
    let input = match args.format {
        Format::Jsonl => coil::bench::BenchInput::Rows(coil::bench::read_rows(&args.input)?),
        Format::Arrow => coil::bench::BenchInput::Arrow(coil::arrow::read_stream(&args.input)?),
    };
    if config.get(coil_host::BUNDLE_SIZE).is_none() {
        let bundle = coil::bench::bundle_for(input.rows(), config.worker_count());
        config.set(coil_host::BUNDLE_SIZE, &bundle.to_string())?;
    }
    let mut spec = spec;
    // The direct run imports from the same environment as the runners.
    if let Some(env) = coil_host::resolve_environment(&config)? {
        spec.sys_path = env.sys_path;
        spec.site_dirs = env.site_dirs;
    }
    let plan = coil::bench::BenchPlan {
        spec,
        config,
        modes: modes.clone(),
        repeat: args.repeat,
        worker: WorkerCommand::new(std::env::current_exe().context("locating the coil program")?)
            .arg("worker"),
    };
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new((1 + modes.len() * args.repeat.max(1)) as u64).with_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs {msg}")
                .expect("a valid template"),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = coil::bench::run(&plan, &input, |what| {
        progress.set_message(what.to_string());
        progress.inc(1);
    })?;
    progress.finish_and_clear();
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report.to_json())? + "\n",
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        report
            .plot(path)
            .with_context(|| format!("drawing {}", path.display()))?;
    }
    Ok(())
}

/// An error and its causes on one line, as `{:#}` prints them, but
/// without a cause the message before it already says (DataFusion's
/// errors repeat their sources) and without DataFusion's "External error"
/// label.
fn one_message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let m = cause.to_string();
        let m = m.strip_prefix("External error: ").unwrap_or(&m).to_string();
        if !parts.last().is_some_and(|p| p.contains(&m)) {
            parts.push(m);
        }
    }
    parts.join(": ")
}

/// `coil sql`.
#[cfg(feature = "sql")]
fn sql(args: SqlArgs) -> anyhow::Result<()> {
    let mut config = Config::default();
    for pair in &args.conf {
        config.set_pair(pair)?;
    }
    if let Some(m) = &args.mode {
        config.set(coil_host::EXECUTION_MODE, m)?;
    }
    if let Some(n) = &args.workers {
        config.set(coil_host::WORKER_COUNT, n)?;
    }
    let sql = match (&args.query, &args.file) {
        (Some(q), _) => q.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        }
        (None, None) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the SQL from standard input")?;
            s
        }
    };
    let job = coil::sql::SqlJob {
        sql,
        udfs: args
            .udf
            .iter()
            .map(|u| coil::sql::parse_udf(u))
            .collect::<anyhow::Result<_>>()?,
        config,
        output: args.output,
        worker: WorkerCommand::new(std::env::current_exe().context("locating the coil program")?)
            .arg("worker"),
        partitions: args.partitions,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    coil::sql::run(&job, &mut out)
}

/// `coil sql` in a build without DataFusion.
#[cfg(not(feature = "sql"))]
fn sql(_args: SqlArgs) -> anyhow::Result<()> {
    bail!(
        "this coil was built without SQL (DataFusion takes 15-20 minutes to build); \
         build it with: cargo build --release --features sql --bin coil"
    )
}

/// `--returns`'s help: what it is for, and the type names it takes.
fn returns_help() -> String {
    format!(
        "The type of the result column, for --format arrow (required there): {}",
        TypeName::forms()
    )
}

/// The UDF's spec: its kind and, under `--format arrow`, its declared
/// return type.
fn udf_spec(
    udf: &str,
    kind: UdfKind,
    format: Format,
    returns: Option<&DataType>,
) -> anyhow::Result<UdfSpec> {
    let spec = UdfSpec::new(udf).kind(kind);
    match (format, returns) {
        (Format::Jsonl, None) => Ok(spec),
        (Format::Jsonl, Some(_)) => bail!(
            "--returns declares the type of --format arrow's result column; JSON Lines results need none"
        ),
        (Format::Arrow, _) if kind == UdfKind::Table => {
            bail!("table UDFs run over JSON Lines only (--format jsonl)")
        }
        (Format::Arrow, Some(t)) => Ok(spec.returns(t.clone())),
        (Format::Arrow, None) => bail!(
            "--format arrow needs --returns TYPE, the type of the result column: one of {}",
            TypeName::forms()
        ),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Worker { args } => coil_worker::worker_main(args),
        Cmd::Env(args) => {
            init_logging();
            match env(args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("coil: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Sql(args) => {
            init_logging();
            match sql(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("coil: {}", one_message(&e));
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Bench(args) => {
            init_logging();
            match bench(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("coil: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run(args) => {
            init_logging();
            match run(args) {
                Ok(()) => ExitCode::SUCCESS,
                // The reader went away (`coil run ... | head`): not an error.
                Err(e)
                    if e.chain().any(|c| {
                        c.downcast_ref::<std::io::Error>()
                            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                    }) =>
                {
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("coil: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// A `sys.path` entry as `coil env` prints it.
fn shown(entry: &str) -> String {
    if entry.is_empty() {
        "'' (the current directory)".into()
    } else {
        entry.to_string()
    }
}

/// `coil env`: prints what UDFs run with; with `--udf`, whether it loads
/// and can run in a sub-interpreter. `Ok(false)` if the UDF does not load.
fn env(args: EnvArgs) -> anyhow::Result<bool> {
    let mut config = Config::default();
    for pair in &args.conf {
        config.set_pair(pair)?;
    }
    let libpython = std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| {
            maps.lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .find(|p| p.contains("libpython"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "statically linked".into());
    println!("embedded CPython {}", coil_worker::EMBEDDED_VERSION);
    println!("  built against   {}", coil_worker::EMBEDDED_PYTHON);
    println!("  libpython       {libpython}");
    let modes = if coil_worker::SUBINTERPRETERS {
        "process, multi-thread, sub-interpreter"
    } else {
        "process, multi-thread (sub-interpreter needs a build against CPython >= 3.13)"
    };
    println!("modes             {modes}");
    match coil_host::resolve_environment(&config)? {
        Some(env) => {
            println!(
                "environment       {} (CPython {})",
                env.executable.display(),
                env.version
            );
            println!("sys.path");
            for p in &env.sys_path {
                println!("  {}", shown(&p.to_string_lossy()));
            }
        }
        None => {
            println!("environment       the embedded CPython's own (set python.executable or python.requirements for another)");
            let sys_path = std::process::Command::new(coil_worker::EMBEDDED_PYTHON)
                .args(["-c", "import sys; print('\\n'.join(sys.path))"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            if let Some(paths) = sys_path {
                println!("sys.path");
                for p in paths.lines() {
                    println!("  {}", shown(p));
                }
            }
        }
    }
    for p in config.files() {
        println!("python.files      {}", p.display());
    }
    let Some(udf) = &args.udf else {
        return Ok(true);
    };
    let kind: UdfKind = args.kind.parse()?;
    let command = WorkerCommand::new(std::env::current_exe().context("locating the coil program")?)
        .arg("worker");
    let mut process = config.clone();
    process.set(coil_host::EXECUTION_MODE, "process")?;
    process.set(coil_host::WORKER_COUNT, "1")?;
    let spec = UdfSpec::new(udf).kind(kind);
    match Runner::with_worker_command(&process, spec.clone(), command.clone()) {
        Ok(_) => println!("UDF {udf}: loads"),
        Err(e) => {
            println!("UDF {udf}: does not load: {e}");
            return Ok(false);
        }
    }
    if !coil_worker::SUBINTERPRETERS {
        println!("  in a sub-interpreter: not in this build (CPython < 3.13)");
        return Ok(true);
    }
    let mut sub = config;
    sub.set(coil_host::EXECUTION_MODE, "sub-interpreter")?;
    sub.set(coil_host::EXECUTION_MODE_STRICT, "true")?;
    sub.set(coil_host::WORKER_COUNT, "1")?;
    match Runner::with_worker_command(&sub, spec, command) {
        Ok(_) => println!(
            "  in a sub-interpreter: loads (imports made when it is called are checked then)"
        ),
        Err(coil_host::StartError::SubInterpreterIncompatible { module, .. }) => {
            println!("  in a sub-interpreter: no, it imports {module}, which cannot load in one: it would run in process mode")
        }
        Err(e) => println!("  in a sub-interpreter: no: {e}"),
    }
    Ok(true)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut config = Config::default();
    for pair in &args.conf {
        config.set_pair(pair)?;
    }
    if let Some(m) = &args.mode {
        config.set(coil_host::EXECUTION_MODE, m)?;
    }
    if let Some(n) = &args.workers {
        config.set(coil_host::WORKER_COUNT, n)?;
    }
    match (config.get(coil_host::ON_ERROR), &args.errors) {
        (None, Some(_)) => config.set(coil_host::ON_ERROR, "dead-letter")?,
        (Some(_), Some(_)) if config.on_error() != OnError::DeadLetter => bail!(
            "--errors FILE writes failed rows (python.fn-execution.on-error=dead-letter), but python.fn-execution.on-error={} was set",
            config.on_error()
        ),
        (Some(_), None) if config.on_error() == OnError::DeadLetter => {
            bail!("python.fn-execution.on-error=dead-letter needs --errors FILE to write failed rows to")
        }
        _ => {}
    }
    let kind: UdfKind = args.kind.parse()?;
    let spec = udf_spec(
        &args.udf,
        kind,
        args.format,
        args.returns.as_ref().map(TypeName::data_type),
    )?;
    let command = WorkerCommand::new(std::env::current_exe().context("locating the coil program")?)
        .arg("worker");
    let files = [
        ("--input", &args.input),
        ("--output", &args.output),
        ("--errors", &args.errors),
    ];
    for (i, (a, x)) in files.iter().enumerate() {
        for (b, y) in &files[i + 1..] {
            if let (Some(x), Some(y)) = (x, y) {
                if same_file(x, y) {
                    bail!(
                        "{a} {} and {b} {} are the same file: writing one would destroy the other",
                        x.display(),
                        y.display()
                    );
                }
            }
        }
    }
    let runner = Runner::with_worker_command(&config, spec, command)?;
    let failures = Failures::new(config.on_error(), args.errors.as_deref())?;

    let (input, size): (Box<dyn Read + Send>, Option<u64>) = match &args.input {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        }
        None => (Box::new(std::io::stdin()), None),
    };
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let progress = match size {
        Some(n) if std::io::stderr().is_terminal() => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}",
            )
            .expect("a valid template"),
        ),
        _ => indicatif::ProgressBar::hidden(),
    };

    let started = std::time::Instant::now();
    // Results to a pipe or a terminal go out as they come; to a file, in
    // large writes.
    let live = args.output.is_none() && !stdout_is_a_file();
    let output_name = args
        .output
        .as_ref()
        .map_or("standard output".into(), |p| p.display().to_string());
    if let (Format::Arrow, Some(declared)) =
        (args.format, args.returns.as_ref().map(TypeName::data_type))
    {
        let input = Counted {
            inner: input,
            progress: progress.clone(),
        };
        let input_name = args
            .input
            .as_ref()
            .map_or("standard input".into(), |p| p.display().to_string());
        let to = ArrowDelivery {
            input_name,
            output_name,
            live,
            failures,
        };
        return run_arrow(&runner, declared, input, out, to, progress, started);
    }
    let mut to = Delivery {
        out,
        written: 0,
        // The input line of each row not answered yet: kept only while the
        // row is in flight, so memory stays flat however long the input.
        lines: LineMap::default(),
        failures,
    };
    let mut pushed = 0u64;
    let mut stream = runner.stream();
    // Lines are read on a thread of their own, a bounded queue ahead, so
    // that while the input is idle (`tail -f`) the partial batch still goes
    // out after python.fn-execution.bundle.time and its results are written
    // and flushed as they come.
    let (lines_tx, lines_rx) = std::sync::mpsc::sync_channel::<std::io::Result<String>>(4096);
    std::thread::Builder::new()
        .name("coil-input".into())
        .spawn(move || {
            for line in BufReader::new(input).lines() {
                let failed = line.is_err();
                if lines_tx.send(line).is_err() || failed {
                    break;
                }
            }
        })
        .context("starting the input reader")?;
    let mut number = 0u64;
    loop {
        let line = match lines_rx.recv_timeout(IDLE_TICK) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // Idle input: send what waited long enough, deliver what
                // is back.
                let mut any = false;
                while let Some(r) = stream.try_pull() {
                    to.emit(r)?;
                    any = true;
                }
                if any {
                    to.out.flush().context("writing the results")?;
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        number += 1;
        let line = line.with_context(|| format!("reading input line {number}"))?;
        progress.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let row = match json::parse_args(&line) {
            Ok(row) => row,
            Err(e) if to.failures.per_row() => {
                to.failures.bad_line(number, &line, &e)?;
                continue;
            }
            Err(e) => {
                // The rows before this line are delivered first.
                while let Some(r) = stream.pull() {
                    to.emit(r)?;
                }
                to.out.flush().context("writing the results")?;
                bail!("line {number}: {e}");
            }
        };
        to.lines.pushed(number);
        pushed += 1;
        stream.push(row);
        let mut any = false;
        while let Some(r) = stream.try_pull() {
            to.emit(r)?;
            any = true;
        }
        if any && live {
            to.out.flush().context("writing the results")?;
        }
    }
    while let Some(r) = stream.pull() {
        to.emit(r)?;
    }
    progress.finish_and_clear();
    drop(stream);
    let Delivery {
        mut out,
        written,
        failures,
        ..
    } = to;
    // Every result is delivered only once the output has taken it: a
    // failed final write (a full disk, a closed stdout) is an error.
    out.flush().with_context(|| {
        format!(
            "writing the results to {output_name} ({written} rows may not have been delivered whole)",
        )
    })?;
    drop(out);
    let failed = failures.finish()?;
    if written + failed.rows != pushed {
        bail!(
            "{written} results and {} failed rows for {pushed} input rows",
            failed.rows
        );
    }
    log_rate(&runner, written, started);
    if failed.rows + failed.lines > 0 {
        bail!("{failed}");
    }
    Ok(())
}

/// Logs how many rows `runner` answered since `started`, how fast, and how.
fn log_rate(runner: &Runner, written: u64, started: std::time::Instant) {
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        "{written} rows in {:.3} s ({:.0} rows/s), {} mode, {} workers",
        secs,
        written as f64 / secs.max(1e-9),
        runner.mode(),
        runner.config().worker_count()
    );
}

/// A reader that moves a progress bar by the bytes read through it.
struct Counted<R> {
    inner: R,
    progress: indicatif::ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// Where `coil run --format arrow`'s results go, and what it says of its
/// input and output.
struct ArrowDelivery {
    input_name: String,
    output_name: String,
    /// Flush after every batch (the output is a pipe or a terminal).
    live: bool,
    failures: Failures,
}

/// `coil run --format arrow`: each record batch of the input stream
/// through `Runner::call_arrow`, its results out as a batch of one column,
/// `result`, of the `declared` type. On an error the batches before it
/// are delivered, and the output stream is ended, before the run fails.
/// Under `on-error` = `skip` or `dead-letter` a row that fails (or whose
/// result does not fit `declared`) is recorded as `coil run` records a
/// failed line, and its result is null (`Runner::call_arrow_each`): the
/// output's batches keep their input's rows.
fn run_arrow(
    runner: &Runner,
    declared: &DataType,
    input: impl Read,
    out: Box<dyn Write>,
    mut to: ArrowDelivery,
    progress: indicatif::ProgressBar,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::new(input), None)
        .with_context(|| format!("reading {} as an Arrow IPC stream", to.input_name))?;
    let schema = coil::arrow::result_schema(declared);
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(out, &schema)
        .with_context(|| format!("writing the results to {}", to.output_name))?;
    let mut written = 0u64;
    let mut failed = None;
    for (i, batch) in reader.enumerate() {
        let number = i as u64 + 1;
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                failed = Some(anyhow::Error::new(e).context(format!(
                    "reading batch {number} of the Arrow IPC stream {}",
                    to.input_name
                )));
                break;
            }
        };
        let rows = batch.num_rows() as u64;
        let called = if to.failures.per_row() {
            runner.call_arrow_each(&batch)
        } else {
            runner.call_arrow(&batch).map(|a| (a, Vec::new()))
        };
        let (array, row_errors) = match called {
            Ok((array, _)) if array.len() != batch.num_rows() => {
                failed = Some(anyhow::anyhow!(
                    "batch {number}: {} results for its {rows} rows",
                    array.len()
                ));
                break;
            }
            Ok(answered) => answered,
            Err(e) => {
                failed = Some(describe_batch(e, number, &batch));
                break;
            }
        };
        for e in row_errors {
            let at = At::Cell {
                batch: number,
                row: e.row + 1,
            };
            let input = usize::try_from(e.row)
                .ok()
                .filter(|&r| r < batch.num_rows())
                .and_then(|r| coil::arrow::row_json(&batch, r));
            to.failures.row(at, input, &e.error)?;
        }
        let results = RecordBatch::try_new(schema.clone(), vec![array])
            .context("the results of a batch as a record batch")?;
        writer
            .write(&results)
            .and_then(|()| if to.live { writer.flush() } else { Ok(()) })
            .with_context(|| {
                format!(
                    "writing the results of batch {number} to {} ({written} rows delivered before)",
                    to.output_name
                )
            })?;
        written += rows;
    }
    progress.finish_and_clear();
    // The batches before an error are delivered, in a stream ended as
    // usual, whatever comes next.
    let delivered = writer
        .finish()
        .and_then(|()| writer.flush())
        .with_context(|| {
            format!(
                "writing the results to {} ({written} rows may not have been delivered whole)",
                to.output_name
            )
        });
    if let Some(e) = failed {
        return Err(e);
    }
    delivered?;
    drop(writer);
    let failed = to.failures.finish()?;
    log_rate(runner, written, started);
    if failed.rows > 0 {
        bail!("{failed}");
    }
    Ok(())
}

/// Turns a `Runner::call_arrow` error on input batch `number` into a
/// message that names the batch, and its row (from 1) or column where
/// known.
fn describe_batch(e: RunError, number: u64, batch: &RecordBatch) -> anyhow::Error {
    let at = |row: u64| At::Cell {
        batch: number,
        row: row + 1,
    };
    match &e {
        RunError::Udf { row, error } => anyhow::anyhow!(
            "{}: the UDF raised {}: {}\n{}",
            at(*row),
            error.type_name,
            error.message,
            error.traceback.trim_end()
        ),
        RunError::BadRow {
            row: Some(row),
            message,
        } => anyhow::anyhow!("{}: {message}", at(*row)),
        RunError::Timeout { row: Some(row), .. } => anyhow::anyhow!("{}: {e}", at(*row)),
        RunError::UnsupportedColumn { column, .. } => match batch.schema().fields().get(*column) {
            Some(field) => anyhow::anyhow!("batch {number}, column {:?}: {e}", field.name()),
            None => anyhow::anyhow!("batch {number}: {e}"),
        },
        RunError::WorkerDied { rows, .. }
        | RunError::Protocol { rows, .. }
        | RunError::TooLarge { rows, .. }
        | RunError::Restart { rows, .. } => anyhow::anyhow!(
            "batch {number}, rows {}..={}: {e}",
            rows.start + 1,
            rows.end
        ),
        _ => anyhow::Error::new(e).context(format!("batch {number}")),
    }
}

/// Where `coil run`'s results go: the output, and the failed rows.
struct Delivery {
    out: Box<dyn Write>,
    /// Results written.
    written: u64,
    lines: LineMap,
    failures: Failures,
}

impl Delivery {
    /// Writes a result, or records a row that failed alone; any other
    /// error ends the run, naming its input lines.
    fn emit(&mut self, result: Result<coil_ipc::Value, RunError>) -> anyhow::Result<()> {
        match result {
            Ok(v) => {
                let out = &mut self.out;
                serde_json::to_writer(&mut *out, &json::to_json(&v))
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
                    .with_context(|| {
                        format!(
                            "writing the results ({} rows delivered before)",
                            self.written
                        )
                    })?;
                self.written += 1;
            }
            Err(RunError::Row(e)) => self.failures.row(
                At::Line(self.lines.line(e.row)),
                Some(json::to_json(&coil_ipc::Value::List(e.args.clone()))),
                &e.error,
            )?,
            Err(e) => return Err(describe(e, &self.lines)),
        }
        self.lines.answered();
        Ok(())
    }
}

/// Rows and input lines that failed alone (`on-error` = `skip` or
/// `dead-letter`): logged, and under `dead-letter` written as JSON Lines to
/// the `--errors` file.
struct Failures {
    policy: OnError,
    file: Option<(PathBuf, BufWriter<File>)>,
    /// Failed rows the UDF ran.
    rows: u64,
    /// Input lines that were not a row.
    lines: u64,
}

/// How many rows failed, for the final message.
struct Failed {
    rows: u64,
    lines: u64,
    file: Option<PathBuf>,
}

/// Where a failed row was in `coil run`'s input.
#[derive(Clone, Copy)]
enum At {
    /// A JSON Lines line, from 1.
    Line(u64),
    /// An Arrow IPC stream's batch, and a row in it, both from 1.
    Cell { batch: u64, row: u64 },
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Line(line) => write!(f, "line {line}"),
            At::Cell { batch, row } => write!(f, "batch {batch}, row {row}"),
        }
    }
}

impl At {
    /// The errors file's record for a failure here, beginning with where.
    fn record(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut record = serde_json::Map::new();
        match self {
            At::Line(line) => {
                record.insert("line".into(), (*line).into());
            }
            At::Cell { batch, row } => {
                record.insert("batch".into(), (*batch).into());
                record.insert("row".into(), (*row).into());
            }
        }
        record
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = Vec::new();
        if self.rows > 0 {
            parts.push(plural(self.rows, "row failed", "rows failed"));
        }
        if self.lines > 0 {
            parts.push(plural(
                self.lines,
                "input line was not a row",
                "input lines were not rows",
            ));
        }
        f.write_str(&parts.join(" and "))?;
        match &self.file {
            Some(p) => write!(f, ": written to {}", p.display())?,
            None => f.write_str(": skipped (python.fn-execution.on-error=skip)")?,
        }
        Ok(())
    }
}

/// Failures logged one by one before the rest are only counted.
const LOGGED_FAILURES: u64 = 10;

impl Failures {
    fn new(policy: OnError, file: Option<&std::path::Path>) -> anyhow::Result<Failures> {
        let file = match file {
            Some(p) => Some((
                p.to_path_buf(),
                BufWriter::new(
                    File::create(p).with_context(|| format!("creating {}", p.display()))?,
                ),
            )),
            None => None,
        };
        Ok(Failures {
            policy,
            file,
            rows: 0,
            lines: 0,
        })
    }

    /// Whether a row fails alone.
    fn per_row(&self) -> bool {
        self.policy != OnError::Fail
    }

    fn log(&self, at: At, what: &str) {
        let n = self.rows + self.lines;
        if n <= LOGGED_FAILURES {
            tracing::warn!("{at}: {what}");
        }
        if n == LOGGED_FAILURES {
            tracing::warn!("more failed rows are counted, not logged");
        }
    }

    fn write(&mut self, record: serde_json::Value) -> anyhow::Result<()> {
        if let Some((path, w)) = &mut self.file {
            serde_json::to_writer(&mut *w, &record)
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n"))
                .with_context(|| format!("writing failed rows to {}", path.display()))?;
        }
        Ok(())
    }

    /// The row at `at`, whose arguments are `input` (when they can be
    /// shown), failed in the UDF (or its worker) with `e`.
    fn row(
        &mut self,
        at: At,
        input: Option<serde_json::Value>,
        e: &RunError,
    ) -> anyhow::Result<()> {
        self.rows += 1;
        let mut error = serde_json::Map::new();
        let (kind, summary) = match e {
            RunError::Udf { error: py, .. } => {
                error.insert("type".into(), py.type_name.clone().into());
                error.insert("message".into(), py.message.clone().into());
                error.insert("traceback".into(), py.traceback.clone().into());
                (
                    "raised",
                    format!("the UDF raised {}: {}", py.type_name, py.message),
                )
            }
            RunError::Timeout { after, .. } => (
                "timeout",
                format!("timed out after {after:?} (python.fn-execution.timeout)"),
            ),
            RunError::WorkerDied { exit, stderr, .. } => {
                if !stderr.is_empty() {
                    error.insert("stderr".into(), stderr.clone().into());
                }
                ("worker-died", format!("its worker died ({exit})"))
            }
            RunError::BadRow { message, .. } => ("bad-value", message.clone()),
            other => ("other", other.to_string()),
        };
        error.insert("kind".into(), kind.into());
        if !error.contains_key("message") {
            error.insert("message".into(), summary.clone().into());
        }
        self.log(at, &summary);
        let mut record = at.record();
        if let Some(input) = input {
            record.insert("input".into(), input);
        }
        record.insert("error".into(), error.into());
        self.write(record.into())
    }

    /// Input line `line` is not a row of arguments.
    fn bad_line(&mut self, line: u64, text: &str, why: &str) -> anyhow::Result<()> {
        self.lines += 1;
        self.log(At::Line(line), why);
        self.write(serde_json::json!({
            "line": line,
            "text": text,
            "error": { "kind": "input", "message": why },
        }))
    }

    /// Flushes the errors file; what failed.
    fn finish(self) -> anyhow::Result<Failed> {
        let file = match self.file {
            Some((path, mut w)) => {
                w.flush()
                    .with_context(|| format!("writing failed rows to {}", path.display()))?;
                Some(path)
            }
            None => None,
        };
        Ok(Failed {
            rows: self.rows,
            lines: self.lines,
            file,
        })
    }
}

/// How long `coil run` waits for an input line before it looks for results
/// to deliver (and partial batches due to be sent).
const IDLE_TICK: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether standard output is a regular file.
fn stdout_is_a_file() -> bool {
    use std::os::fd::AsFd;
    std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| File::from(fd).metadata().ok())
        .is_some_and(|m| m.is_file())
}

/// Whether `a` and `b` name the same file (also through links), when both
/// exist.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// The 1-based input line of every row pushed and not answered yet (rows
/// are answered in order, so the oldest goes first).
#[derive(Default)]
struct LineMap {
    /// The first row still held.
    first: u64,
    /// Input lines of rows `first..`.
    lines: std::collections::VecDeque<u64>,
}

impl LineMap {
    fn pushed(&mut self, line: u64) {
        self.lines.push_back(line);
    }

    fn answered(&mut self) {
        if self.lines.pop_front().is_some() {
            self.first += 1;
        }
    }

    /// The input line of stream row `row` (row + 1 if no longer held).
    fn line(&self, row: u64) -> u64 {
        row.checked_sub(self.first)
            .and_then(|i| self.lines.get(i as usize))
            .copied()
            .unwrap_or(row + 1)
    }
}

/// Turns a run error into a message that names the input line.
fn describe(e: RunError, lines: &LineMap) -> anyhow::Error {
    let line = |row: u64| lines.line(row);
    match &e {
        RunError::Udf { row, error } => anyhow::anyhow!(
            "line {}: the UDF raised {}: {}\n{}",
            line(*row),
            error.type_name,
            error.message,
            error.traceback.trim_end()
        ),
        RunError::BadRow {
            row: Some(row),
            message,
        } => anyhow::anyhow!("line {}: {message}", line(*row)),
        RunError::Timeout { row: Some(row), .. } => anyhow::anyhow!("line {}: {e}", line(*row)),
        RunError::WorkerDied { rows, .. }
        | RunError::Protocol { rows, .. }
        | RunError::TooLarge { rows, .. }
        | RunError::Restart { rows, .. } => {
            anyhow::anyhow!(
                "lines {}..={}: {e}",
                line(rows.start),
                line(rows.end.saturating_sub(1))
            )
        }
        _ => anyhow::Error::new(e),
    }
}
