//! The three execution modes against the direct-call floor, in one run.
//! See `benches/README.md`.
//!
//! `modes/<udf>/<mode>/<executors>` runs `Runner::call` over the rows with
//! `python.fn-execution.bundle.size` = 1000; `modes/<udf>/direct` is a pyo3
//! call loop in this process (no ring, no codec). UDFs: `inc` (`x + 1`),
//! `upper` (`s.upper()` on 32-char strings), `spin` (a pure-Python loop of
//! about 10 µs a call).
//!
//! `modes/balance/<mode>/<executors>` (issue 10): 1,500 rows of `spin` at
//! about 1 ms a row with the default, adaptive batch sizes (bundle.size not
//! set): 2 executors must be ≥ 1.7x as fast as 1 in `process` and
//! `sub-interpreter`; `.../b1000` is the same with a fixed bundle of 1,000
//! rows, where one executor gets two thirds of the work.
//!
//! `modes/threads/...` (issue 26): `cpu/<mode>/<executors>`, 600 rows of
//! `spin` at about 1 ms (adaptive batches) in `multi-thread` 1 and 2 and
//! `sub-interpreter` 2. Target on a free-threaded build
//! (`PYO3_PYTHON=$(tools/python-ft)`): multi-thread 2 ≥ 1.8x 1. The numpy
//! half is `arrow/threads` (benches/arrow.rs).

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use coil_host::{Config, Runner, UdfKind, UdfSpec, WorkerCommand};
use coil_ipc::{Row, Value};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pyo3::prelude::*;

#[path = "common.rs"]
mod common;
use common::{bench_udf, direct};

/// Iterations of `spin` per call: about 10 µs on these machines.
const SPIN: i64 = 280;

fn rows(udf: &str) -> Vec<Row> {
    match udf {
        "inc" => (0..100_000).map(|i| vec![Value::Int(i)]).collect(),
        "upper" => (0..50_000)
            .map(|i: usize| {
                vec![Value::Str(
                    (0..32)
                        .map(|k| (b'a' + ((i + k) % 26) as u8) as char)
                        .collect(),
                )]
            })
            .collect(),
        _ => (0..2_000).map(|_| vec![Value::Int(SPIN)]).collect(),
    }
}

fn runner(udf: &str, mode: &str, executors: usize) -> Runner {
    runner_with(udf, mode, executors, Some(1000))
}

fn runner_with(udf: &str, mode: &str, executors: usize, bundle: Option<usize>) -> Runner {
    let mut config = Config::default();
    config
        .set_pair(&format!("python.execution-mode={mode}"))
        .unwrap();
    config
        .set_pair(&format!("python.worker-count={executors}"))
        .unwrap();
    if let Some(bundle) = bundle {
        config
            .set_pair(&format!("python.fn-execution.bundle.size={bundle}"))
            .unwrap();
    }
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/udfs.py");
    let spec = UdfSpec::new(format!("{}:{udf}", file.display())).kind(UdfKind::Scalar);
    let r = Runner::with_worker_command(
        &config,
        spec,
        WorkerCommand::new(env!("CARGO_BIN_EXE_coil")).arg("worker"),
    )
    .unwrap();
    assert_eq!(r.mode().as_str(), mode, "{udf} must run in {mode} mode");
    r
}

fn modes(c: &mut Criterion) {
    Python::initialize();
    let mut splits = Vec::new();
    for udf in ["inc", "upper", "spin"] {
        let data = rows(udf);
        let mut g = c.benchmark_group(format!("modes/{udf}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        g.throughput(Throughput::Elements(data.len() as u64));
        let want = Python::attach(|py| {
            let func = bench_udf(py, udf);
            let want = direct(py, &func, &data);
            g.bench_function("direct", |b| b.iter(|| direct(py, &func, black_box(&data))));
            want
        });
        for mode in ["multi-thread", "sub-interpreter", "process"] {
            for executors in [1, 2] {
                let r = runner(udf, mode, executors);
                assert_eq!(r.call(&data).unwrap(), want, "{udf} in {mode}");
                let before = r.metrics();
                g.bench_function(BenchmarkId::new(mode, executors), |b| {
                    b.iter(|| r.call(black_box(&data)).unwrap())
                });
                splits.push(split(
                    &format!("{udf}/{mode}/{executors}"),
                    &r.metrics().since(&before),
                ));
            }
        }
        g.finish();
    }
    let report = format!("[\n{}\n]\n", splits.join(",\n"));
    eprintln!("modes split (per row, from the runners' counters):\n{report}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("modes-split.json"), report);
}

/// Nanoseconds per row spent in each part, from the difference of two
/// metrics snapshots, as a JSON object.
fn split(name: &str, m: &coil_host::Metrics) -> String {
    let per = |d: Duration| d.as_nanos() as f64 / m.rows_out.max(1) as f64;
    format!(
        "  {{\"bench\": \"{name}\", \"host_encode_ns\": {:.1}, \"host_decode_ns\": {:.1}, \"executor_decode_ns\": {:.1}, \"python_ns\": {:.1}, \"executor_encode_ns\": {:.1}, \"transport_ns\": {:.1}}}",
        per(m.encode),
        per(m.decode),
        per(m.worker_decode),
        per(m.python),
        per(m.worker_encode),
        per(m.transport),
    )
}

/// Iterations of `spin` for about 1 ms a call.
const SPIN_1MS: i64 = 7_500;
/// Rows of the balance bench.
const BALANCE_ROWS: usize = 1_500;

/// Every worker busy whatever the input size: a small input of a slow UDF
/// with adaptive batch sizes, 1 and 2 executors.
fn balance(c: &mut Criterion) {
    Python::initialize();
    let data: Vec<Row> = (0..BALANCE_ROWS)
        .map(|_| vec![Value::Int(SPIN_1MS)])
        .collect();
    let want = Python::attach(|py| direct(py, &bench_udf(py, "spin"), &data[..1]));
    let mut g = c.benchmark_group("modes/balance");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(data.len() as u64));
    for mode in ["process", "sub-interpreter"] {
        for (executors, bundle, name) in [
            (1, None, "1".to_string()),
            (2, None, "2".to_string()),
            (2, Some(1000), "2/b1000".to_string()),
        ] {
            let r = runner_with("spin", mode, executors, bundle);
            let got = r.call(&data).unwrap();
            assert_eq!(got.len(), data.len());
            assert!(got.iter().all(|v| *v == want[0]), "spin in {mode}");
            g.bench_function(BenchmarkId::new(mode, name), |b| {
                b.iter(|| r.call(black_box(&data)).unwrap())
            });
        }
    }
    g.finish();
}

/// Rows of the threads bench's CPU-bound UDF (`spin`, about 1 ms each).
const THREAD_ROWS: usize = 600;

/// Issue 26: what threads gain when CPython has no GIL. CPU-bound pure
/// Python (`spin`, ~1 ms a row) in `multi-thread` with 1 and 2 executors
/// and in `sub-interpreter` with 2. On a GIL build the same group shows
/// the GIL's ~1.0x. (The numpy half is `arrow/threads` in the arrow bench:
/// a process's multi-thread runners share one interpreter and so one
/// environment, and this bench's run without numpy's.)
fn threads(c: &mut Criterion) {
    Python::initialize();
    let mut g = c.benchmark_group("modes/threads");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(THREAD_ROWS as u64));
    let data: Vec<Row> = (0..THREAD_ROWS)
        .map(|_| vec![Value::Int(SPIN_1MS)])
        .collect();
    let want = Python::attach(|py| direct(py, &bench_udf(py, "spin"), &data[..1]));
    for (mode, executors) in [
        ("multi-thread", 1),
        ("multi-thread", 2),
        ("sub-interpreter", 2),
    ] {
        let r = runner_with("spin", mode, executors, None);
        let got = r.call(&data).unwrap();
        assert!(got.iter().all(|v| *v == want[0]), "spin in {mode}");
        g.bench_function(BenchmarkId::new(format!("cpu/{mode}"), executors), |b| {
            b.iter(|| r.call(black_box(&data)).unwrap())
        });
    }
    g.finish();
    eprintln!(
        "modes/threads: CPython {}, free-threaded: {}, GIL back on by: {:?}",
        coil_worker::EMBEDDED_VERSION,
        coil_worker::FREE_THREADED,
        coil_worker::main_gil_enabled_by()
    );
}

criterion_group!(benches, modes, balance, threads);
criterion_main!(benches);
