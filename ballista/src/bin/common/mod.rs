//! What `coil-scheduler` and `coil-executor` share: serving as their own
//! coil workers, logging, error reporting, coil's options and who may
//! connect.

use std::path::PathBuf;
use std::process::ExitCode;

use coil_ballista::ClusterTls;
use coil_datafusion::datafusion::prelude::SessionConfig;
use coil_datafusion::PythonOptions;
use coil_host::Config;

/// `eprintln!` that never panics: a line stderr cannot take is dropped
/// (a message is never worth the program).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// Who may connect: the flags both programs take.
#[derive(clap::Args)]
pub struct Security {
    /// The cluster's TLS directory (`coil-scheduler make-tls DIR` writes
    /// one): every connection, between the programs and from clients, is
    /// mutual TLS with its key pair, and nothing else is accepted.
    #[arg(long, env = "COIL_CLUSTER_TLS", value_name = "DIR")]
    pub tls: Option<PathBuf>,
    /// Listen beyond loopback without --tls: anyone who can reach the
    /// ports can run Python on the executors. For a network you trust
    /// completely.
    #[arg(long)]
    pub insecure: bool,
}

impl Security {
    /// The cluster's TLS material, after checking that `program` may
    /// listen on `host` with what it has.
    pub fn load(&self, program: &str, host: &str) -> anyhow::Result<Option<ClusterTls>> {
        let tls = self.tls.as_deref().map(ClusterTls::load).transpose()?;
        coil_ballista::check_exposure(program, host, tls.as_ref(), self.insecure)?;
        Ok(tls)
    }
}

/// Says what a listener accepts.
pub fn describe(tls: Option<&ClusterTls>) -> String {
    match tls {
        Some(tls) => format!(
            "mutual TLS: members holding {} only",
            tls.dir().join(coil_ballista::KEY_FILE).display()
        ),
        None => "plain gRPC: no authentication".to_owned(),
    }
}

/// The session configuration tasks start from, with the cluster's TLS
/// for the connections they make.
pub fn session_config(options: PythonOptions, tls: Option<&ClusterTls>) -> SessionConfig {
    let config = coil_ballista::session_config(options);
    match tls {
        Some(tls) => coil_ballista::with_tls(config, tls),
        None => config,
    }
}

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
        .log_internal_errors(false)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("{name}: {e:#}");
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
