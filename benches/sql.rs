//! Python UDFs in DataFusion SQL (coil-datafusion), against DataFusion's own
//! arithmetic and against calling the same runner directly, in one run. See
//! `benches/README.md`.
//!
//! - `sql/native`: `SELECT sum(x + 1)` over a Parquet file of
//!   `COIL_SQL_ROWS` int64 rows (default 10,000,000), 2 target partitions.
//! - `sql/scalar`: `SELECT sum(py_inc(x))`, `py_inc` a scalar Python UDF
//!   (`x + 1`), process mode, 2 workers.
//! - `sql/vectorized`: `SELECT sum(py_inc_np(x))`, a numpy UDF;
//!   `sql/vectorized-64k` with DataFusion's batches of 65,536 rows rather
//!   than 8,192 (`SET datafusion.execution.batch_size = 65536`).
//! - `adapter/{sql,direct}/{scalar,vectorized}`: the same batches, in
//!   memory in 2 partitions: through SQL (`SELECT sum(f(x)) FROM t`), and
//!   through the UDF's own runner called directly from 2 threads (one per
//!   partition) and summed: what the adapter adds.
//! - `aggregate/{builtin,accumulator,pandas}`: the same rows into 1,000
//!   groups (`GROUP BY x % 1000`): DataFusion's `avg`, an accumulator
//!   class's sum (PyFlink's methods) and a pandas `v.mean()` aggregate,
//!   process mode, 2 workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coil_datafusion::datafusion;
use coil_datafusion::{python_session_with, register_python_udf, PythonOptions, PythonUdf};
use coil_host::{Config, Runner, UdfSpec, WorkerCommand};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::sum;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

fn rows() -> i64 {
    std::env::var("COIL_SQL_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// coil's options: process mode, 2 workers, numpy from the tests'
/// requirements (installed once under target/coil-envs).
fn options() -> PythonOptions {
    let mut c = Config::default();
    for pair in [
        "python.execution-mode=process".to_string(),
        "python.worker-count=2".to_string(),
        format!(
            "python.requirements={}",
            root().join("tests/requirements.txt").display()
        ),
        format!(
            "python.env.cache-dir={}",
            root().join("target/coil-envs").display()
        ),
    ] {
        c.set_pair(&pair).unwrap();
    }
    // `COIL_BENCH_ARENA=0` measures the rings alone (no arena).
    if let Ok(size) = std::env::var("COIL_BENCH_ARENA") {
        c.set_pair(&format!("python.fn-execution.arena.size={size}"))
            .unwrap();
    }
    PythonOptions::new(c).with_worker(WorkerCommand::new(env!("CARGO_BIN_EXE_coil")).arg("worker"))
}

/// The Parquet file of `x` = 0..rows (made once, under target/).
fn parquet(rt: &tokio::runtime::Runtime) -> PathBuf {
    let n = rows();
    let dir = root().join("target/coil-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("sql-{n}.parquet"));
    if !file.exists() {
        let tmp = dir.join(format!("sql-{n}.parquet.tmp"));
        rt.block_on(async {
            let ctx = SessionContext::new();
            ctx.sql(&format!(
                "COPY (SELECT value AS x FROM range({n})) TO '{}' STORED AS PARQUET",
                tmp.display()
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        });
        std::fs::rename(&tmp, &file).unwrap();
    }
    file
}

/// A session with `py_inc` (scalar) and `py_inc_np` (numpy) registered.
fn session(rt: &tokio::runtime::Runtime) -> SessionContext {
    let ctx = python_session_with(options(), SessionConfig::new().with_target_partitions(2));
    let udfs = root().join("benches/udfs.py");
    let _guard = rt.enter();
    for (name, func) in [("py_inc", "inc"), ("py_inc_np", "np_inc")] {
        register_python_udf(
            &ctx,
            name,
            UdfSpec::new(format!("{}:{func}", udfs.display())),
            Some(vec![DataType::Int64]),
            Some(DataType::Int64),
        )
        .unwrap();
    }
    ctx
}

fn set(rt: &tokio::runtime::Runtime, ctx: &SessionContext, sql: &str) {
    rt.block_on(async { ctx.sql(sql).await?.collect().await })
        .unwrap();
}

fn query_sum(rt: &tokio::runtime::Runtime, ctx: &SessionContext, sql: &str) -> i64 {
    let batches = rt
        .block_on(async { ctx.sql(sql).await?.collect().await })
        .unwrap();
    batches[0].column(0).as_primitive::<Int64Type>().value(0)
}

/// The runner behind UDF `name` of `ctx`.
fn runner_of(ctx: &SessionContext, name: &str) -> Arc<Runner> {
    let udf = ctx.state().scalar_functions()[name].clone();
    PythonUdf::of(&udf).unwrap().runner().unwrap()
}

/// Sums `runner`'s results over `parts`, one thread per partition.
fn direct_sum(runner: &Runner, parts: &[Vec<RecordBatch>]) -> i64 {
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|b| {
                            let out = runner.call_arrow(b).unwrap();
                            sum(out.as_primitive::<Int64Type>()).unwrap_or(0)
                        })
                        .sum::<i64>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let n = rows();
    let file = parquet(&rt);
    let ctx = session(&rt);
    let expected = n * (n + 1) / 2;
    rt.block_on(ctx.register_parquet("data", file.to_str().unwrap(), Default::default()))
        .unwrap();
    let from = "data";

    let mut g = c.benchmark_group("sql");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(n as u64));
    for (name, call) in [
        ("native", "x + 1"),
        ("scalar", "py_inc(x)"),
        ("vectorized", "py_inc_np(x)"),
    ] {
        let sql = format!("SELECT sum({call}) FROM {from}");
        assert_eq!(query_sum(&rt, &ctx, &sql), expected, "{sql}");
        g.bench_function(name, |b| b.iter(|| query_sum(&rt, &ctx, &sql)));
    }
    // The same session with larger batches: fewer calls, each worth more.
    set(&rt, &ctx, "SET datafusion.execution.batch_size = 65536");
    let sql = format!("SELECT sum(py_inc_np(x)) FROM {from}");
    assert_eq!(query_sum(&rt, &ctx, &sql), expected, "{sql}");
    g.bench_function("vectorized-64k", |b| b.iter(|| query_sum(&rt, &ctx, &sql)));
    set(&rt, &ctx, "SET datafusion.execution.batch_size = 8192");
    g.finish();

    // The same batches in memory, in 2 partitions.
    let batches = rt
        .block_on(async {
            ctx.sql(&format!("SELECT x FROM {from}"))
                .await?
                .collect()
                .await
        })
        .unwrap();
    let mut parts = vec![Vec::new(), Vec::new()];
    for (i, b) in batches.into_iter().enumerate() {
        parts[i % 2].push(b);
    }
    let schema = parts[0][0].schema();
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema, parts.clone()).unwrap()),
    )
    .unwrap();
    let mut g = c.benchmark_group("adapter");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(n as u64));
    for (kind, udf) in [("scalar", "py_inc"), ("vectorized", "py_inc_np")] {
        let sql = format!("SELECT sum({udf}(x)) FROM t");
        assert_eq!(query_sum(&rt, &ctx, &sql), expected, "{sql}");
        g.bench_function(format!("sql/{kind}"), |b| {
            b.iter(|| query_sum(&rt, &ctx, &sql))
        });
        let runner = runner_of(&ctx, udf);
        assert_eq!(direct_sum(&runner, &parts), expected, "{udf} direct");
        g.bench_function(format!("direct/{kind}"), |b| {
            b.iter(|| direct_sum(&runner, &parts))
        });
    }
    g.finish();

    // Aggregates into 1,000 groups.
    let udfs = root().join("benches/udfs.py");
    for (name, func) in [("py_sum", "PySum"), ("pd_mean", "pd_mean")] {
        let _guard = rt.enter();
        coil_datafusion::register_python_udaf(
            &ctx,
            name,
            UdfSpec::new(format!("{}:{func}", udfs.display())),
            Some(vec![DataType::Int64]),
            None,
        )
        .unwrap();
    }
    let grouped = |agg: &str| {
        format!("SELECT sum(a) FROM (SELECT {agg}(x) AS a FROM {from} GROUP BY x % 1000)")
    };
    let float = |sql: &str| -> f64 {
        let batches = rt
            .block_on(async { ctx.sql(sql).await?.collect().await })
            .unwrap();
        batches[0].column(0).as_primitive::<Float64Type>().value(0)
    };
    let mean_sum = float(&grouped("avg"));
    assert!((float(&grouped("pd_mean")) - mean_sum).abs() < 1e-6 * mean_sum);
    assert_eq!(query_sum(&rt, &ctx, &grouped("py_sum")), n * (n - 1) / 2);
    let mut g = c.benchmark_group("aggregate");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(n as u64));
    g.bench_function("builtin", |b| b.iter(|| float(&grouped("avg"))));
    g.bench_function("accumulator", |b| {
        b.iter(|| query_sum(&rt, &ctx, &grouped("py_sum")))
    });
    g.bench_function("pandas", |b| b.iter(|| float(&grouped("pd_mean"))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
