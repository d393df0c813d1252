//! `coil run`: the runner started from the flags, then JSON Lines in and
//! out: each input line a JSON array of the UDF's arguments, each result a
//! JSON line, in order, as they come back. A failed row is named by its
//! input line ([`LineMap`], [`describe`]).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Read, Write};

use anyhow::{bail, Context};
use coil_host::arrow_schema::DataType;
use coil_host::{FailedAt, OnError, RunError, Runner, UdfKind, UdfSpec, WorkerCommand};
use coil_proto::TypeName;

use crate::cli::{Format, RunArgs};
use crate::failures::{Failed, Failures};
use crate::ipc_stream::Sniffed;
use crate::run_arrow::{run_arrow, ArrowDelivery, Counted};

/// `coil run`: starts the UDF's runner, then runs it over the input's
/// JSON Lines ([`run_lines`]) or Arrow record batches
/// ([`run_arrow`]).
///
/// # Errors
///
/// Flags that do not go together, a UDF that does not start, an input
/// that cannot be read, a result that cannot be written, a row that fails
/// (under `on-error=fail`); rows that failed alone, counted.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let mut config = args.common.config()?;
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
    let asked: Option<UdfKind> = args.kind.as_deref().map(str::parse).transpose()?;
    if let Some(k) = asked.filter(|k| k.is_aggregate()) {
        // Grouping is the engine's job: coil sql groups JSON Lines, CSV
        // and Parquet and runs the aggregate over each group.
        let (module, name) = args.udf.rsplit_once(':').unwrap_or((&args.udf, "f"));
        return Err(UsageError(format!(
            "coil run maps rows one by one, and a function of kind {k} aggregates groups of rows: \
             run it with coil sql, which reads JSON Lines too, e.g.\n  coil sql \"CREATE FUNCTION \
             {name}() LANGUAGE PYTHON AS '{module}:{name}'; SELECT key, {name}(value) FROM \
             'rows.jsonl' GROUP BY key\"\n(docs/sql.md, \"Kinds of functions\")"
        ))
        .into());
    }
    let kind = asked.unwrap_or(UdfKind::Scalar);
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
    let runner = start(&config, spec, asked, command)?;
    // The result column's type: declared, or else the return annotation.
    let declared = match (args.format, &args.returns) {
        (Format::Jsonl, _) => None,
        (Format::Arrow, Some(t)) => Some(t.data_type().clone()),
        (Format::Arrow, None) => match &runner.spec().returns {
            Some(t) => Some(t.clone()),
            None => {
                return Err(UsageError(format!(
                    "--format arrow needs --returns <TYPE>, the type of the result column, \
                     as {} has no return annotation coil reads: one of {}",
                    args.udf,
                    TypeName::forms()
                ))
                .into())
            }
        },
    };
    let failures = Failures::new(config.on_error(), args.errors.as_deref())?;

    let (input, size): (Box<dyn Read + Send>, Option<u64>) = match &args.input {
        Some(p) => {
            let f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f), size)
        }
        None => (Box::new(std::io::stdin()), None),
    };
    // An --output file appears whole or not at all (crate::output).
    let (pending, out): (Option<crate::output::Pending>, Box<dyn Write>) = match &args.output {
        Some(p) => {
            let (pending, file) = crate::output::Pending::new(p)?;
            (Some(pending), Box::new(BufWriter::new(file)))
        }
        None => (None, Box::new(BufWriter::new(crate::output::results()))),
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
    let live = args.output.is_none() && !crate::output::results_are_a_file();
    let output_name = args
        .output
        .as_ref()
        .map_or("standard output".into(), |p| p.display().to_string());
    let input_name = args
        .input
        .as_ref()
        .map_or("standard input".into(), |p| p.display().to_string());
    let (written, failed) = match &declared {
        Some(declared) => {
            let input = Counted {
                inner: input,
                progress: progress.clone(),
            };
            let to = ArrowDelivery {
                input_name,
                output_name,
                file: crate::ipc_stream::writes_a_file(args.output.as_deref()),
                live,
                failures,
            };
            run_arrow(&runner, declared, input, out, to, &progress)?
        }
        _ => {
            let to = Delivery {
                out,
                written: 0,
                // The input line of each row not answered yet: kept only
                // while the row is in flight, so memory stays flat however
                // long the input.
                lines: LineMap::default(),
                failures,
            };
            let from = Lines {
                input,
                input_name,
                output_name,
                live,
            };
            run_lines(&runner, from, to, &progress)?
        }
    };
    // Every row was answered (rows that failed alone are the error
    // policy's): the output is whole.
    if let Some(pending) = pending {
        pending.commit()?;
    }
    log_rate(&runner, written, started);
    if failed.rows + failed.lines > 0 {
        bail!("{failed}");
    }
    Ok(())
}

/// Where `coil run` reads JSON Lines, and what it says of its input and
/// output.
pub struct Lines {
    /// The input.
    pub input: Box<dyn Read + Send>,
    /// The input's name in messages.
    pub input_name: String,
    /// The output's name in messages.
    pub output_name: String,
    /// Flush after every result that comes back (the output is a pipe or a
    /// terminal).
    pub live: bool,
}

/// `coil run` over JSON Lines: each line of `from` a row of arguments
/// pushed to `runner`, each result written to `to` in order as it comes
/// back. The results before an error are delivered first. The number of
/// results written, and what failed alone.
///
/// # Errors
///
/// As [`run`].
pub fn run_lines(
    runner: &Runner,
    from: Lines,
    mut to: Delivery,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<(u64, Failed)> {
    let Lines {
        input,
        input_name,
        output_name,
        live,
    } = from;
    // An Arrow stream or file is named, not read as lines of bytes. One
    // read only: an idle input (`tail -f`) must not hold the first line.
    let (head, input) =
        crate::ipc_stream::peek_some(input).with_context(|| format!("reading {input_name}"))?;
    let sniffed = Sniffed::of(&head);
    if let (Sniffed::ArrowFile | Sniffed::ArrowStream, Some(arrow)) = (sniffed, sniffed.name()) {
        bail!("{input_name} is {arrow}, not JSON Lines: give --format arrow");
    }
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
        let row = match coil_host::args_from_json(&line) {
            Ok(row) => row,
            Err(e) if to.failures.per_row() => {
                to.failures.bad_line(number, &line, &e.to_string())?;
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
    Ok((written, failed))
}

/// The UDF's spec: its kind and, under `--format arrow`, its declared
/// return type.
///
/// # Errors
///
/// `--returns` without `--format arrow`, and a table UDF over Arrow.
pub fn udf_spec(
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
        // The runner reads the return annotation.
        (Format::Arrow, None) => Ok(spec),
    }
}

/// Starts the runner for `spec`. Without a kind `asked` for, a UDF whose
/// annotations name columns (`np.ndarray`, `pd.Series`, `pa.Array`) runs
/// as a vectorized UDF, as `coil sql` runs it.
///
/// # Errors
///
/// The runner does not start.
pub fn start(
    config: &coil_host::Config,
    spec: UdfSpec,
    asked: Option<UdfKind>,
    command: WorkerCommand,
) -> anyhow::Result<Runner> {
    let runner = Runner::with_worker_command(config, spec.clone(), command.clone())?;
    if asked.is_some() || spec.kind != UdfKind::Scalar || !runner.signature().columnar {
        return Ok(runner);
    }
    drop(runner);
    tracing::debug!(
        "{}: annotated for columns, run as a vectorized UDF",
        spec.target
    );
    Ok(Runner::with_worker_command(
        config,
        spec.kind(UdfKind::Vectorized),
        command,
    )?)
}

/// Flags that do not go together, found after clap's own checks: the
/// binary exits with 2, as for clap's usage errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

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

/// Where `coil run`'s results go: the output, and the failed rows.
pub struct Delivery {
    /// The output.
    pub out: Box<dyn Write>,
    /// Results written.
    pub written: u64,
    /// The input line of each row in flight.
    pub lines: LineMap,
    /// The rows that failed alone.
    pub failures: Failures,
}

impl Delivery {
    /// Writes a result, or records a row that failed alone; any other
    /// error ends the run, naming its input lines.
    ///
    /// # Errors
    ///
    /// The output or the errors file cannot be written, or `result` is an
    /// error of more than its row.
    pub fn emit(&mut self, result: Result<coil_ipc::Value, RunError>) -> anyhow::Result<()> {
        match result {
            Ok(v) => {
                let out = &mut self.out;
                serde_json::to_writer(&mut *out, &coil_host::value_to_json(&v))
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
                FailedAt::Line(self.lines.line(e.row)),
                Some(coil_host::value_to_json(&coil_ipc::Value::List(
                    e.args.clone(),
                ))),
                &e.error,
            )?,
            Err(e) => return Err(describe(e, &self.lines)),
        }
        self.lines.answered();
        Ok(())
    }
}

/// How long `coil run` waits for an input line before it looks for results
/// to deliver (and partial batches due to be sent).
const IDLE_TICK: std::time::Duration = std::time::Duration::from_millis(50);

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
#[derive(Debug, Default)]
pub struct LineMap {
    /// The first row still held.
    first: u64,
    /// Input lines of rows `first..`.
    lines: std::collections::VecDeque<u64>,
}

impl LineMap {
    /// A row from input line `line` was pushed.
    pub fn pushed(&mut self, line: u64) {
        self.lines.push_back(line);
    }

    /// The oldest row held was answered.
    pub fn answered(&mut self) {
        if self.lines.pop_front().is_some() {
            self.first += 1;
        }
    }

    /// The input line of stream row `row` (row + 1 if no longer held).
    pub fn line(&self, row: u64) -> u64 {
        row.checked_sub(self.first)
            .and_then(|i| self.lines.get(i as usize))
            .copied()
            .unwrap_or(row + 1)
    }
}

/// Turns a run error into a message that names the input line.
pub fn describe(e: RunError, lines: &LineMap) -> anyhow::Error {
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
        // A row's own error is written where it failed, not described.
        RunError::Row(_) => anyhow::Error::new(e),
        // A death names the batch it ended, whichever row was running.
        RunError::WorkerDied { rows, .. } => anyhow::anyhow!(
            "lines {}..={}: {e}",
            line(rows.start),
            line(rows.end.saturating_sub(1))
        ),
        _ => match (e.row(), e.rows()) {
            (Some(row), _) => anyhow::anyhow!("line {}: {e}", line(row)),
            (None, Some(rows)) => anyhow::anyhow!(
                "lines {}..={}: {e}",
                line(rows.start),
                line(rows.end.saturating_sub(1))
            ),
            (None, None) => anyhow::Error::new(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failures::tests::Shared;
    use coil_host::ipc::Value;
    use coil_host::PyErrorInfo;

    fn raised(row: u64) -> RunError {
        RunError::Udf {
            row,
            error: PyErrorInfo {
                type_name: "ZeroDivisionError".into(),
                message: "division by zero".into(),
                traceback: "Traceback (most recent call last):\n".into(),
            },
        }
    }

    #[test]
    fn a_row_is_named_by_its_input_line_while_it_is_held() {
        let mut lines = LineMap::default();
        // Lines 1 and 3 were rows, line 2 blank.
        lines.pushed(1);
        lines.pushed(3);
        assert_eq!(lines.line(0), 1);
        assert_eq!(lines.line(1), 3);
        lines.answered();
        assert_eq!(lines.line(1), 3);
        // Not held any more: row + 1.
        assert_eq!(lines.line(0), 1);
        assert_eq!(lines.line(7), 8);
    }

    #[test]
    fn errors_name_their_lines() {
        let mut lines = LineMap::default();
        for line in [2, 4, 6] {
            lines.pushed(line);
        }
        let e = describe(raised(1), &lines).to_string();
        assert!(
            e.starts_with("line 4: the UDF raised ZeroDivisionError: division by zero\n"),
            "{e}"
        );
        let died = RunError::WorkerDied {
            worker: 0,
            exit: coil_host::WorkerExit::Code(3),
            row: None,
            rows: 0..3,
            stderr: String::new(),
        };
        let e = describe(died, &lines).to_string();
        assert!(e.starts_with("lines 2..=6: "), "{e}");
        // What RunError::row/rows say, for errors that used to name no line.
        let stuck = RunError::Timeout {
            row: None,
            after: std::time::Duration::from_secs(1),
            rows: 1..3,
        };
        let e = describe(stuck, &lines).to_string();
        assert!(e.starts_with("lines 4..=6: "), "{e}");
        let blocked = RunError::SubInterpreterIncompatible {
            row: 2,
            module: "numpy".into(),
            error: PyErrorInfo {
                type_name: "ImportError".into(),
                message: "numpy cannot load".into(),
                traceback: String::new(),
            },
        };
        let e = describe(blocked, &lines).to_string();
        assert!(e.starts_with("line 6: "), "{e}");
    }

    #[test]
    fn results_are_json_lines_and_failed_rows_dead_letters() {
        let out = Shared::default();
        let errors = Shared::default();
        let mut to = Delivery {
            out: Box::new(out.clone()),
            written: 0,
            lines: LineMap::default(),
            failures: Failures::to(
                OnError::DeadLetter,
                Some(("errors".into(), Box::new(errors.clone()))),
            ),
        };
        to.lines.pushed(1);
        to.lines.pushed(2);
        to.emit(Ok(Value::Bytes(vec![0, 255]))).unwrap();
        to.emit(Err(RunError::Row(Box::new(coil_host::RowError {
            row: 1,
            args: vec![Value::Int(0)],
            error: raised(1),
        }))))
        .unwrap();
        assert_eq!(to.written, 1);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "{\"$bytes\":\"00ff\"}\n");
        to.failures.finish().unwrap();
        let record: serde_json::Value = serde_json::from_slice(&errors.0.lock().unwrap()).unwrap();
        assert_eq!(record["line"], 2);
        assert_eq!(record["input"], serde_json::json!([0]));
        assert_eq!(record["error"]["type"], "ZeroDivisionError");
    }

    #[test]
    fn returns_is_for_arrow_and_tables_are_for_json_lines() {
        let int = DataType::Int64;
        let e = udf_spec("f.py:f", UdfKind::Scalar, Format::Jsonl, Some(&int)).unwrap_err();
        assert!(e.to_string().starts_with("--returns declares"), "{e}");
        let e = udf_spec("f.py:f", UdfKind::Table, Format::Arrow, Some(&int)).unwrap_err();
        assert!(e.to_string().contains("JSON Lines only"), "{e}");
        let spec = udf_spec("f.py:f", UdfKind::Scalar, Format::Arrow, Some(&int)).unwrap();
        assert_eq!(spec.returns, Some(int));
    }
}
