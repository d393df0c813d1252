//! What `coil-scheduler` and `coil-executor` share: serving as their own
//! coil workers, logging, error reporting and coil's options.

use std::process::ExitCode;

use coil_datafusion::PythonOptions;
use coil_host::Config;

/// Runs `run` as the program `name`, unless the arguments ask this program
/// to serve as a coil worker (`NAME worker ...`), which it then does.
pub fn main_of(name: &str, run: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = coil_ballista::serve_as_worker(&argv) {
        return code;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// coil's options from `--conf KEY=VALUE` pairs, its workers being this
/// program.
pub fn options(conf: &[String]) -> anyhow::Result<PythonOptions> {
    let mut config = Config::default();
    for pair in conf {
        config.set_pair(pair)?;
    }
    Ok(PythonOptions::new(config).with_worker(coil_ballista::this_program_as_worker()?))
}

/// A tokio runtime for the program.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
