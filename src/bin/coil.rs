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
                    eprintln!("coil: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Sql(args) => {
            init_logging();
            match coil::sql_command::sql(args, std::env::args_os().skip(1)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("coil: {}", one_message(&e));
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Bench(args) => {
            init_logging();
            match coil::bench_command::bench(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.is::<coil::run::UsageError>() => {
                    eprintln!("coil: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("coil: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run(args) => {
            init_logging();
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
                    eprintln!("coil: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("coil: {e:#}");
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

/// Logs to standard error, filtered by `COIL_LOG` (default `info` for
/// coil; Ballista's client, under `coil sql --cluster`, only warns).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COIL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,ballista=warn,ballista_core=warn")
    });
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
