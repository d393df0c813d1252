//! `coil-executor`: a Ballista 55 executor that runs coil's Python UDFs,
//! whose definitions (and source) arrive in the plans it is sent. Their
//! workers are this program (`coil-executor worker ...`); a worker that
//! crashes or hangs is replaced inside the executor, as coil does anywhere.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::error::BallistaError;
use ballista_core::utils::GrpcServerConfig;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::shutdown::Shutdown;
use ballista_executor::ArrowFlightServerProvider;
use clap::Parser;

#[macro_use]
mod common;
use coil_ballista::{ClusterTls, PythonLogicalCodec, PythonPhysicalCodec};

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
    /// The address to listen on (beyond loopback only with --tls, or
    /// --insecure).
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
    #[command(flatten)]
    security: common::Security,
}

fn main() -> ExitCode {
    common::main_of("coil-executor", || run(Args::parse()))
}

fn run(args: Args) -> anyhow::Result<()> {
    let tls = args.security.load("coil-executor", &args.bind_host)?;
    let options = common::options(&args.conf)?;
    let producer_tls = tls.clone();
    let scheduler = format!("{}:{}", args.scheduler_host, args.scheduler_port);
    let mut executor = ExecutorProcessConfig {
        bind_host: args.bind_host.clone(),
        external_host: args.external_host.or(Some(args.bind_host.clone())),
        port: args.port,
        grpc_port: args.grpc_port,
        scheduler_host: args.scheduler_host,
        scheduler_port: args.scheduler_port,
        work_dir: args.work_dir,
        override_config_producer: Some(Arc::new(move || {
            common::session_config(options.clone(), producer_tls.as_ref())
        })),
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
    if let Some(tls) = &tls {
        // Pull tasks over mutual TLS rather than serve a port that takes
        // them: Ballista's task port cannot do TLS.
        executor.task_scheduling_policy = TaskSchedulingPolicy::PullStaged;
        executor.override_create_grpc_client_endpoint = Some(tls.endpoint_override());
        let sizes = (
            executor.grpc_max_decoding_message_size as usize,
            executor.grpc_max_encoding_message_size as usize,
        );
        executor.override_arrow_flight_service = Some(secure_flight(tls.clone(), sizes));
    }
    let runtime = common::runtime()?;
    runtime.block_on(async move {
        if tls.is_some() {
            no_task_port(&args.bind_host, args.grpc_port).await?;
        }
        say!(
            "coil-executor: Arrow Flight on {}:{}, tasks from the scheduler at {scheduler} ({})",
            args.bind_host,
            args.port,
            common::describe(tls.as_ref())
        );
        start_executor_process(Arc::new(executor)).await?;
        Ok(())
    })
}

/// The executor's Arrow Flight service (shuffles, results) over mutual
/// TLS: Ballista's own service, served with the cluster's identity.
fn secure_flight(
    tls: ClusterTls,
    (decoding, encoding): (usize, usize),
) -> Arc<ArrowFlightServerProvider> {
    Arc::new(
        move |work_dir: String,
              address: SocketAddr,
              mut shutdown: Shutdown,
              config: GrpcServerConfig| {
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = FlightServiceServer::new(BallistaFlightService::new(work_dir))
                    .max_decoding_message_size(decoding)
                    .max_encoding_message_size(encoding);
                ballista_core::utils::create_grpc_server(&config)
                    .tls_config(tls.server_config())
                    .map_err(BallistaError::TonicError)?
                    .add_service(service)
                    .serve_with_shutdown(address, async move { shutdown.recv().await })
                    .await
                    .map_err(BallistaError::TonicError)
            })
        },
    )
}

/// In pull mode an executor takes no tasks on its gRPC port, but
/// Ballista's scheduler still opens it (in plain gRPC) to check that a
/// registering executor is reachable: answer there with a server that
/// offers no service at all.
async fn no_task_port(host: &str, port: u16) -> anyhow::Result<()> {
    let address: SocketAddr = format!("{host}:{port}")
        .parse()
        .context("the gRPC address")?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(tonic::service::Routes::default())
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Ok(())
}
