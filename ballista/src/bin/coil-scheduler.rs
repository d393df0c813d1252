//! `coil-scheduler`: a Ballista 55 scheduler that plans queries with coil's
//! Python UDFs (their definitions arrive in the plan) and `python.*`
//! settings. Also serves as its own coil worker processes (`coil-scheduler
//! worker ...`), for a UDF DataFusion evaluates while it plans, and makes a
//! cluster's TLS material (`coil-scheduler make-tls DIR`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_scheduler::cluster::{BallistaCluster, ClusterStateEvent};
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use ballista_scheduler::scheduler_server::SchedulerServer;
use clap::{Parser, Subcommand};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use futures::StreamExt;

#[macro_use]
mod common;
use coil_ballista::{ClusterTls, PythonLogicalCodec, PythonPhysicalCodec};

/// A Ballista scheduler for queries with coil's Python UDFs.
#[derive(Parser)]
#[command(
    name = "coil-scheduler",
    version,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The address to listen on (beyond loopback only with --tls, or
    /// --insecure).
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
    #[command(flatten)]
    security: common::Security,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a new cluster CA and member key pair into DIR (for --tls on
    /// every program and client of one cluster) and exits.
    MakeTls {
        /// The directory to write (created mode 0700; must not hold a
        /// cluster's files already).
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    common::main_of("coil-scheduler", || run(Args::parse()))
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(Command::MakeTls { dir }) = args.command {
        ClusterTls::generate(&dir)?;
        say!(
            "coil-scheduler: wrote a cluster CA and member key pair to {}; copy the directory \
             (privately: its member.key lets its holder run code on the cluster) to every \
             machine, and pass --tls {} to coil-scheduler, each coil-executor and each client",
            dir.display(),
            dir.display()
        );
        return Ok(());
    }
    let tls = args.security.load("coil-scheduler", &args.bind_host)?;
    let options = common::options(&args.conf)?;
    let runtime = common::runtime()?;
    runtime.block_on(async move {
        let producer_tls = tls.clone();
        let mut scheduler = SchedulerConfig {
            bind_host: args.bind_host.clone(),
            external_host: args.external_host.unwrap_or_else(|| args.bind_host.clone()),
            bind_port: args.port,
            override_config_producer: Some(Arc::new(move || {
                common::session_config(options.clone(), producer_tls.as_ref())
            })),
            override_logical_codec: Some(Arc::new(PythonLogicalCodec::with_worker(
                coil_ballista::this_program_as_worker()?,
            ))),
            override_physical_codec: Some(Arc::new(PythonPhysicalCodec::with_worker(
                coil_ballista::this_program_as_worker()?,
            ))),
            ..SchedulerConfig::default()
        };
        if let Some(tls) = &tls {
            // Executors ask for work over mutual TLS: an executor serves
            // no port that takes tasks (docs/distributed.md).
            scheduler.scheduling_policy = TaskSchedulingPolicy::PullStaged;
            scheduler.use_tls = true;
            scheduler.override_create_grpc_client_endpoint = Some(tls.endpoint_override());
        }
        scheduler.validate()?;
        let address: SocketAddr = format!("{}:{}", args.bind_host, args.port)
            .parse()
            .context("the address to listen on")?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        let config = Arc::new(scheduler);
        let cluster = BallistaCluster::new_from_config(&config)
            .await
            .context("setting up the cluster state")?;
        let server = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config.clone())
            .await
            .context("starting the scheduler")?;
        announce_executors(&server).await?;
        say!(
            "coil-scheduler: listening on {address} ({})",
            common::describe(tls.as_ref())
        );
        match tls {
            None => start_grpc_service_with_listener(listener, server)
                .await
                .context("serving")?,
            Some(tls) => {
                let service = SchedulerGrpcServer::new(server)
                    .max_encoding_message_size(
                        config.grpc_server_max_encoding_message_size as usize,
                    )
                    .max_decoding_message_size(
                        config.grpc_server_max_decoding_message_size as usize,
                    );
                tonic::transport::Server::builder()
                    .tls_config(tls.server_config())
                    .context("the cluster's TLS material")?
                    .add_service(service)
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                    .await
                    .context("serving")?
            }
        }
        Ok(())
    })
}

/// Says on stderr, whatever `RUST_LOG` says, each executor that registers
/// or leaves, so who is in the cluster is never a guess.
async fn announce_executors(
    server: &SchedulerServer<LogicalPlanNode, PhysicalPlanNode>,
) -> anyhow::Result<()> {
    let state = server.state.clone();
    let mut events = state
        .executor_manager
        .cluster_state_events()
        .await
        .context("watching executors")?;
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                ClusterStateEvent::RegisteredExecutor { executor_id } => {
                    match state
                        .executor_manager
                        .get_executor_metadata(&executor_id)
                        .await
                    {
                        Ok(m) => say!(
                            "coil-scheduler: executor {executor_id} registered from {}:{} \
                             ({} cores)",
                            m.host,
                            m.port,
                            m.specification.vcores
                        ),
                        Err(_) => say!("coil-scheduler: executor {executor_id} registered"),
                    }
                }
                ClusterStateEvent::RemovedExecutor { executor_id } => {
                    say!("coil-scheduler: executor {executor_id} left")
                }
            }
        }
    });
    Ok(())
}
