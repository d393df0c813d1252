//! The `coil` command line: parses the arguments, runs the subcommand's
//! library function (`coil::run`, `coil::run_arrow`, `coil::env`,
//! `coil::bench_command`, `coil::sql_command`), and maps its error to a
//! message and an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use coil::cli::{Cli, Cmd};

/// Runs the command line; also `coil-sql`'s `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Worker { args } => coil_worker::worker_main(args),
        Cmd::Env(args) => {
            init_logging();
            match coil::env::env(&args, &mut std::io::stdout().lock()) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    say(format_args!("coil: {e:#}"));
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Sql(args) => {
            init_logging();
            // Without SQL this coil runs coil-sql in its place, which
            // claims its own.
            #[cfg(feature = "sql")]
            claim_stdout();
            match coil::sql_command::sql(args, std::env::args_os().skip(1)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    say(format_args!("coil: {}", one_message(&e)));
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Bench(args) => {
            init_logging();
            match coil::bench_command::bench(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.is::<coil::run::UsageError>() => {
                    say(format_args!("coil: {e}"));
                    ExitCode::from(2)
                }
                Err(e) => {
                    say(format_args!("coil: {e:#}"));
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run(args) => {
            init_logging();
            claim_stdout();
            match coil::run::run(&args) {
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
                Err(e) if e.is::<coil::run::UsageError>() => {
                    say(format_args!("coil: {e}"));
                    ExitCode::from(2)
                }
                Err(e) => {
                    say(format_args!("coil: {e:#}"));
                    ExitCode::FAILURE
                }
            }
        }
    }
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

/// Keeps standard output for the results (`coil::output::claim_stdout`);
/// if it cannot, results still go to standard output.
fn claim_stdout() {
    if let Err(e) = coil::output::claim_stdout() {
        tracing::warn!("standard output stays shared with what UDFs start: {e}");
    }
}

/// Writes `message` and a newline to standard error, or nothing when it
/// cannot be written (`2>/dev/full`, a closed pipe): a message is never
/// worth the run's exit code, which `eprintln!`'s panic would change.
fn say(message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Logs to standard error, filtered by `COIL_LOG` (default `info` for
/// coil; Ballista's client, under `coil sql --cluster`, only warns).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COIL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,ballista=warn,ballista_core=warn")
    });
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // A log line stderr cannot take is dropped: the default prints
        // about it with eprintln!, whose panic would end the run.
        .log_internal_errors(false)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
