//! `coil-executor`: a Ballista 55 executor that runs coil's Python UDFs,
//! whose definitions (and source) arrive in the plans it is sent. Their
//! workers are this program (`coil-executor worker ...`); a worker that
//! crashes or hangs is replaced inside the executor, as coil does anywhere.

use std::process::ExitCode;
use std::sync::Arc;

use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use clap::Parser;

mod common;
use coil_ballista::{session_config, PythonLogicalCodec, PythonPhysicalCodec};

/// A Ballista executor for queries with coil's Python UDFs.
#[derive(Parser)]
#[command(name = "coil-executor", version)]
struct Args {
    /// The scheduler's host.
    #[arg(long, default_value = "127.0.0.1")]
    scheduler_host: String,
    /// The scheduler's port.
    #[arg(long, default_value_t = 50050)]
    scheduler_port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// The host name others reach this executor by.
    #[arg(long)]
    external_host: Option<String>,
    /// The Arrow Flight port (results and shuffles).
    #[arg(long, short = 'p', default_value_t = 50051)]
    port: u16,
    /// The gRPC port (tasks).
    #[arg(long, default_value_t = 50052)]
    grpc_port: u16,
    /// Partitions this executor runs at once (default: its cores).
    #[arg(long, short = 'c')]
    vcores: Option<usize>,
    /// Where shuffle files go (default: a temporary directory).
    #[arg(long)]
    work_dir: Option<String>,
    /// A coil configuration key, KEY=VALUE, tasks start from (the job's
    /// `SET python.*` override it); repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    conf: Vec<String>,
}

fn main() -> ExitCode {
    common::main_of("coil-executor", || run(Args::parse()))
}

fn run(args: Args) -> anyhow::Result<()> {
    let options = common::options(&args.conf)?;
    let mut executor = ExecutorProcessConfig {
        bind_host: args.bind_host.clone(),
        external_host: args.external_host.or(Some(args.bind_host)),
        port: args.port,
        grpc_port: args.grpc_port,
        scheduler_host: args.scheduler_host,
        scheduler_port: args.scheduler_port,
        work_dir: args.work_dir,
        override_config_producer: Some(Arc::new(move || session_config(options.clone()))),
        override_logical_codec: Some(Arc::new(PythonLogicalCodec::with_worker(
            coil_ballista::this_program_as_worker()?,
        ))),
        override_physical_codec: Some(Arc::new(PythonPhysicalCodec::with_worker(
            coil_ballista::this_program_as_worker()?,
        ))),
        ..ExecutorProcessConfig::default()
    };
    if let Some(n) = args.vcores {
        executor.vcores = n;
    }
    let runtime = common::runtime()?;
    runtime.block_on(start_executor_process(Arc::new(executor)))?;
    Ok(())
}
