//! Async UDFs (issue 23): an I/O-bound UDF written with `async def`
//! against the same UDF written synchronously, and what async costs a UDF
//! that never awaits. See `benches/README.md`.
//!
//! - `async/http20ms/{async,sync}`: rows that each wait for a 20 ms
//!   response from the test server (`tests/udfs/http_server.py`, on
//!   127.0.0.1), 2 worker processes; async with aiohttp and
//!   `python.fn-execution.async.max-concurrency` 64 over 10,000 rows, sync
//!   with `http.client` over 200 (it manages ~100 rows/s). Throughput is
//!   rows; the ideal for async is 2 × 64 / 20 ms = 6,400 rows/s.
//! - `async/noawait/{async,sync}`: `x + 1` over 100,000 rows, one worker
//!   process, `async def` against `def`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use coil_host::{Config, Runner, UdfKind, UdfSpec, WorkerCommand};
use coil_ipc::{Row, Value};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The test server, stopped on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(latency_ms: u32) -> Server {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(root.join("tools/python"))
            .arg(root.join("tests/udfs/http_server.py"))
            .args(["--latency-ms", &latency_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the test server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the server prints its port");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn rows(&self, n: i64) -> Vec<Row> {
        (0..n)
            .map(|x| {
                vec![
                    Value::Str(self.base.clone()),
                    Value::Str("double".into()),
                    Value::Int(x),
                ]
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runner(file: &str, udf: &str, pairs: &[String]) -> Runner {
    let mut config = Config::default();
    for p in pairs {
        config.set_pair(p).unwrap();
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let spec = UdfSpec::new(format!("{}:{udf}", file.display())).kind(UdfKind::Scalar);
    Runner::with_worker_command(
        &config,
        spec,
        WorkerCommand::new(env!("CARGO_BIN_EXE_coil")).arg("worker"),
    )
    .unwrap_or_else(|e| panic!("{udf}: {e}"))
}

fn http(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env = [
        format!(
            "python.requirements={}",
            root.join("tests/requirements-http.txt").display()
        ),
        format!(
            "python.env.cache-dir={}",
            root.join("target/coil-envs").display()
        ),
        "python.execution-mode=process".to_string(),
        "python.worker-count=2".to_string(),
    ];
    let server = Server::start(20);
    let mut g = c.benchmark_group("async/http20ms");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    let mut concurrent = env.to_vec();
    concurrent.push("python.fn-execution.async.max-concurrency=64".into());
    for (name, udf, rows, pairs) in [
        ("async", "Double", 10_000, concurrent),
        ("sync", "DoubleSync", 200, env.to_vec()),
    ] {
        let r = runner("tests/udfs/http_udfs.py", udf, &pairs);
        let rows = server.rows(rows);
        let want: Vec<Value> = (0..rows.len() as i64).map(|x| Value::Int(2 * x)).collect();
        assert_eq!(r.call(&rows).unwrap(), want, "{name}");
        g.throughput(Throughput::Elements(rows.len() as u64));
        g.bench_function(name, |b| b.iter(|| r.call(&rows).unwrap()));
    }
    g.finish();
}

fn noawait(c: &mut Criterion) {
    let pairs = [
        "python.execution-mode=process".to_string(),
        "python.worker-count=1".to_string(),
    ];
    let rows: Vec<Row> = (0..100_000).map(|x| vec![Value::Int(x)]).collect();
    let want: Vec<Value> = (1..=100_000).map(Value::Int).collect();
    let mut g = c.benchmark_group("async/noawait");
    g.sample_size(20)
        .throughput(Throughput::Elements(rows.len() as u64));
    for (name, udf) in [("async", "async_inc"), ("sync", "inc")] {
        let r = runner("benches/udfs.py", udf, &pairs);
        assert_eq!(r.call(&rows).unwrap(), want, "{name}");
        g.bench_function(name, |b| b.iter(|| r.call(&rows).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, http, noawait);
criterion_main!(benches);
