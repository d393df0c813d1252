//! `coil-scheduler`: a Ballista 55 scheduler that plans queries with coil's
//! Python UDFs (their definitions arrive in the plan) and `python.*`
//! settings. Also serves as its own coil worker processes (`coil-scheduler
//! worker ...`), for a UDF DataFusion evaluates while it plans.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use clap::Parser;

mod common;
use coil_ballista::{session_config, PythonLogicalCodec, PythonPhysicalCodec};

/// A Ballista scheduler for queries with coil's Python UDFs.
#[derive(Parser)]
#[command(name = "coil-scheduler", version)]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_host: String,
    /// The host name executors and clients reach this scheduler by.
    #[arg(long)]
    external_host: Option<String>,
    /// The port to listen on.
    #[arg(long, short = 'p', default_value_t = 50050)]
    port: u16,
    /// A coil configuration key, KEY=VALUE, every job starts from
    /// (clients' `SET python.*` override it); repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    conf: Vec<String>,
}

fn main() -> ExitCode {
    common::main_of("coil-scheduler", || run(Args::parse()))
}

fn run(args: Args) -> anyhow::Result<()> {
    let options = common::options(&args.conf)?;
    let runtime = common::runtime()?;
    runtime.block_on(async move {
        let scheduler = SchedulerConfig {
            bind_host: args.bind_host.clone(),
            external_host: args.external_host.unwrap_or_else(|| args.bind_host.clone()),
            bind_port: args.port,
            override_config_producer: Some(Arc::new(move || session_config(options.clone()))),
            override_logical_codec: Some(Arc::new(PythonLogicalCodec::with_worker(
                coil_ballista::this_program_as_worker()?,
            ))),
            override_physical_codec: Some(Arc::new(PythonPhysicalCodec::with_worker(
                coil_ballista::this_program_as_worker()?,
            ))),
            ..SchedulerConfig::default()
        };
        let address: SocketAddr = format!("{}:{}", args.bind_host, args.port)
            .parse()
            .context("the address to listen on")?;
        let cluster = BallistaCluster::new_from_config(&scheduler)
            .await
            .context("setting up the cluster state")?;
        start_server(cluster, address, Arc::new(scheduler))
            .await
            .context("serving")?;
        Ok(())
    })
}
