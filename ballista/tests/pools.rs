//! An executor sent 1,000 distinct inline Python functions, each used by
//! one plan (what 1,000 `CREATE FUNCTION`s and queries from clients send
//! it), keeps at most `MAX_POOLS` pools of workers: the number of its
//! worker processes stays under that bound all along, and every function
//! answers exactly.
//!
//! The executor's side runs in this process: the codec it decodes plans
//! with, and a DataFusion session that runs each plan's query and then
//! forgets the function, as a finished task does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use coil_ballista::{PythonPhysicalCodec, MAX_POOLS};
use coil_datafusion::datafusion;
use coil_datafusion::{PythonFunction, PythonOptions, PythonUdf};
use coil_host::{Config, UdfKind, WorkerCommand};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::logical_expr::Volatility;
use datafusion::prelude::SessionContext;
use datafusion_proto::physical_plan::PhysicalExtensionCodec;

const FUNCTIONS: i64 = 1_000;

/// This process's live children (a zombie has exited already).
fn workers() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            fields.next() == Some(me.as_str()) && state != Some("Z")
        })
        .count()
}

#[test]
fn a_thousand_inline_functions_used_once_each_keep_the_executors_workers_bounded() {
    let worker = WorkerCommand::new(env!("CARGO_BIN_EXE_coil-executor")).arg("worker");
    let mut config = Config::default();
    config.set("python.worker-count", "1").unwrap();
    let options = PythonOptions::new(config).with_worker(worker.clone());
    let codec = PythonPhysicalCodec::with_worker(worker);
    let ctx = SessionContext::new_with_config(coil_ballista::session_config(options));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let mut most = 0;
    for i in 0..FUNCTIONS {
        let name = format!("f{i}");
        // The client's side: an inline source, and the definition its
        // plan carries.
        let source = format!("def {name}(x):\n    return x + {i}\n");
        let spec = coil_host::udf_from_source(&source, &name).unwrap();
        let sent = PythonUdf::new(
            PythonFunction {
                name: name.clone(),
                spec: spec.kind(UdfKind::Scalar).returns(DataType::Int64),
                args: Some(vec![Some(DataType::Int64)]),
                arg_names: vec!["x".into()],
                returns: DataType::Int64,
                window: false,
                volatility: Volatility::Volatile,
            },
            None,
        )
        .into_scalar_udf();
        let mut plan = Vec::new();
        codec.try_encode_udf(&sent, &mut plan).unwrap();

        // The executor's: decode, run the task, forget the function.
        let udf = codec.try_decode_udf(&name, &plan).unwrap();
        ctx.register_udf(Arc::unwrap_or_clone(udf));
        let batches = rt
            .block_on(async {
                ctx.sql(&format!("SELECT {name}(x) FROM (VALUES (1), (2)) AS t(x)"))
                    .await?
                    .collect()
                    .await
            })
            .unwrap();
        let got: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(got, vec![1 + i, 2 + i], "{name}");
        ctx.deregister_udf(&name);

        // An evicted pool's worker is told to stop: wait for it to go.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut live = workers();
        while live > MAX_POOLS && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            live = workers();
        }
        assert!(
            live <= MAX_POOLS,
            "{live} worker processes after {} functions (bound {MAX_POOLS})",
            i + 1
        );
        most = most.max(live);
    }
    eprintln!(
        "{FUNCTIONS} functions in {:.1} s: at most {most} worker processes (bound {MAX_POOLS})",
        start.elapsed().as_secs_f64()
    );
    // The pools were kept up to the bound, not ended after each use.
    assert_eq!(most, MAX_POOLS);
}
