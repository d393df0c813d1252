//! Process mode against its floor, in one run. See `benches/README.md`.
//!
//! - `process/direct/<udf>`: a pyo3 call loop in this process over the same
//!   rows (convert, call, convert back): the floor.
//! - `process/executor/<udf>`: the worker's executor in this process, over
//!   the same rows encoded as batches of 1,000 (decode, call, encode each
//!   row): the floor plus the executor's own work, without a ring, a
//!   wake-up or the host's codec.
//! - `process/w<workers>/b<bundle>/<udf>`: `Runner::call` over the rows,
//!   `python.worker-count` = 1 or 2, `python.fn-execution.bundle.size` = 1,
//!   100 or 1000.
//! - `process/w1/adaptive/<udf>`: the same with the default configuration
//!   (bundle.size not set: batches sized from the measured time per row, at
//!   most 1,000 rows).
//! - Paired, not timed by criterion: 40 rounds of one direct loop and one
//!   `w1/b1000` call each, the median ratio and its quartiles printed and
//!   written to `target/criterion/process-paired.json`.
//! - `process/latency/{row,socketpair}`: one single-row call; one 64-byte
//!   ping-pong over a Unix socketpair to a peer process (this bench's own
//!   executable, run again with `COIL_BENCH_SOCKET_ECHO` set). The p50 and
//!   p99 of both are also printed and written to
//!   `target/criterion/process-latency.json`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use coil_host::arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use coil_host::arrow_schema::{DataType, Field, Schema};
use coil_host::{Config, Runner, UdfKind, UdfSpec, WorkerCommand};
use coil_ipc::{Row, Value};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use pyo3::prelude::*;

#[path = "common.rs"]
mod common;
use common::{bench_udf, direct};

/// Set in the environment of this bench's executable when it runs again as
/// the far end of the socketpair baseline.
const SOCKET_ECHO: &str = "COIL_BENCH_SOCKET_ECHO";

/// Rows per measured call: enough batches that filling and draining the
/// pipeline (host encoding the first batch, decoding the last) is noise.
const ROWS: usize = 100_000;

fn udf_file() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/udfs.py")
        .display()
        .to_string()
}

fn rows(udf: &str, n: usize) -> Vec<Row> {
    (0..n as i64)
        .map(|i| match udf {
            "inc" => vec![Value::Int(i)],
            _ => vec![Value::Str(
                (0..32)
                    .map(|k| (b'a' + ((i as usize + k) % 26) as u8) as char)
                    .collect(),
            )],
        })
        .collect()
}

fn expected(udf: &str, rows: &[Row]) -> Vec<Value> {
    rows.iter()
        .map(|r| match &r[0] {
            Value::Int(i) => Value::Int(i + 1),
            Value::Str(s) => Value::Str(s.to_uppercase()),
            _ => unreachable!("{udf}"),
        })
        .collect()
}

fn runner(udf: &str, workers: usize, bundle: usize) -> Runner {
    runner_with(udf, workers, Some(bundle), &[])
}

/// The same rows as one Arrow column, and a runner that returns `udf`'s
/// results as an array of that column's type.
fn arrow_case(udf: &str, rows: &[Row]) -> (RecordBatch, Runner) {
    let (column, returns): (ArrayRef, DataType) = match udf {
        "inc" => (
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| {
                match r[0] {
                    Value::Int(i) => i,
                    _ => unreachable!(),
                }
            }))),
            DataType::Int64,
        ),
        _ => (
            Arc::new(StringArray::from_iter_values(rows.iter().map(
                |r| match &r[0] {
                    Value::Str(s) => s.clone(),
                    _ => unreachable!(),
                },
            ))),
            DataType::Utf8,
        ),
    };
    let schema = Arc::new(Schema::new(vec![Field::new("x", returns.clone(), false)]));
    let batch = RecordBatch::try_new(schema, vec![column]).unwrap();
    let mut config = Config::default();
    config.set_pair("python.worker-count=1").unwrap();
    config
        .set_pair("python.fn-execution.bundle.size=1000")
        .unwrap();
    let spec = UdfSpec::new(format!("{}:{udf}", udf_file())).returns(returns);
    let r = Runner::with_worker_command(
        &config,
        spec,
        WorkerCommand::new(env!("CARGO_BIN_EXE_coil")).arg("worker"),
    )
    .unwrap();
    (batch, r)
}

/// `bundle` `None`: the default, batches sized from the measured time per
/// row (up to 1,000 rows); `extra`: more `KEY=VALUE` pairs.
fn runner_with(udf: &str, workers: usize, bundle: Option<usize>, extra: &[&str]) -> Runner {
    let mut config = Config::default();
    for pair in extra {
        config.set_pair(pair).unwrap();
    }
    config
        .set_pair(&format!("python.worker-count={workers}"))
        .unwrap();
    if let Some(bundle) = bundle {
        config
            .set_pair(&format!("python.fn-execution.bundle.size={bundle}"))
            .unwrap();
    }
    let spec = UdfSpec::new(format!("{}:{udf}", udf_file())).kind(UdfKind::Scalar);
    Runner::with_worker_command(
        &config,
        spec,
        WorkerCommand::new(env!("CARGO_BIN_EXE_coil")).arg("worker"),
    )
    .unwrap()
}

fn throughput(c: &mut Criterion) {
    Python::initialize();
    let mut g = c.benchmark_group("process");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for udf in ["inc", "upper"] {
        let data = rows(udf, ROWS);
        let want = expected(udf, &data);
        g.throughput(Throughput::Elements(ROWS as u64));
        Python::attach(|py| {
            let func = bench_udf(py, udf);
            assert_eq!(direct(py, &func, &data), want);
            g.bench_function(BenchmarkId::new("direct", udf), |b| {
                b.iter(|| direct(py, &func, black_box(&data)))
            });
            let spec = UdfSpec::new(format!("{}:{udf}", udf_file())).kind(UdfKind::Scalar);
            let mut exec = coil_worker::Executor::load(py, &spec).unwrap();
            let batches: Vec<Vec<u8>> = data
                .chunks(1000)
                .map(|rows| {
                    let mut bytes = Vec::new();
                    coil_ipc::encode_batch(rows, &mut bytes).unwrap();
                    bytes
                })
                .collect();
            let mut out = Vec::new();
            let run = |exec: &mut coil_worker::Executor, out: &mut Vec<u8>| {
                let mut answers = 0;
                for batch in &batches {
                    out.clear();
                    exec.run_batch(py, &batch[..], out, false).unwrap();
                    answers += out.len();
                }
                answers
            };
            run(&mut exec, &mut out);
            assert_eq!(
                coil_ipc::decode_batch(&out[..]).unwrap().concat(),
                want[ROWS - 1000..]
            );
            g.bench_function(BenchmarkId::new("executor", udf), |b| {
                b.iter(|| run(&mut exec, &mut out))
            });
        });
        for workers in [1, 2] {
            for bundle in [1, 100, 1000] {
                let n = if bundle == 1 { ROWS / 50 } else { ROWS };
                let data = &data[..n];
                let r = runner(udf, workers, bundle);
                assert_eq!(r.call(data).unwrap(), want[..n]);
                g.throughput(Throughput::Elements(n as u64));
                g.bench_function(
                    BenchmarkId::new(format!("w{workers}/b{bundle}"), udf),
                    |b| b.iter(|| r.call(black_box(data)).unwrap()),
                );
            }
        }
        // The same rows as an Arrow column, results as an array: column
        // frames in, the row codec back.
        let (batch, r) = arrow_case(udf, &data);
        let got = r.call_arrow(&batch).unwrap();
        assert_eq!(got.len(), want.len());
        g.throughput(Throughput::Elements(ROWS as u64));
        g.bench_function(BenchmarkId::new("w1/b1000/arrow", udf), |b| {
            b.iter(|| r.call_arrow(black_box(&batch)).unwrap())
        });
        // Rows failing alone (on-error=skip): every batch runs row by row
        // with its failures collected; nothing fails here, so this is what
        // the policy costs when all goes well.
        let r = runner_with(udf, 1, Some(1000), &["python.fn-execution.on-error=skip"]);
        assert_eq!(r.call(&data).unwrap(), want);
        g.throughput(Throughput::Elements(ROWS as u64));
        g.bench_function(BenchmarkId::new("w1/b1000/skip", udf), |b| {
            b.iter(|| r.call(black_box(&data)).unwrap())
        });
        // The default configuration: adaptive batch sizes.
        let r = runner_with(udf, 1, None, &[]);
        assert_eq!(r.call(&data).unwrap(), want);
        g.throughput(Throughput::Elements(ROWS as u64));
        g.bench_function(BenchmarkId::new("w1/adaptive", udf), |b| {
            b.iter(|| r.call(black_box(&data)).unwrap())
        });
    }
    g.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn latency(c: &mut Criterion) {
    let r = runner("inc", 1, 1);
    let one = vec![vec![Value::Int(41)]];
    assert_eq!(r.call(&one).unwrap(), vec![Value::Int(42)]);

    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(SOCKET_ECHO, "1")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .spawn()
        .unwrap();
    let mut frame = Vec::new();
    frame.extend_from_slice(&64u32.to_le_bytes());
    frame.extend_from_slice(&1u16.to_le_bytes());
    frame.extend_from_slice(&[7u8; 64]);
    let mut back = vec![0u8; frame.len()];
    ours.write_all(&frame).unwrap();
    ours.read_exact(&mut back).unwrap();
    assert_eq!(back, frame);
    let mut ping = |ours: &mut UnixStream| {
        ours.write_all(&frame).unwrap();
        ours.read_exact(&mut back).unwrap();
    };

    let mut g = c.benchmark_group("process/latency");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("row", |b| b.iter(|| r.call(black_box(&one)).unwrap()));
    g.bench_function("socketpair", |b| b.iter(|| ping(&mut ours)));
    g.finish();

    // Percentiles, from individually timed round trips.
    let sample = |f: &mut dyn FnMut()| {
        let mut t: Vec<Duration> = (0..20_000)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed()
            })
            .collect();
        t.sort();
        (percentile(&t, 0.5), percentile(&t, 0.99))
    };
    let (row50, row99) = sample(&mut || {
        r.call(&one).unwrap();
    });
    let (sock50, sock99) = sample(&mut || ping(&mut ours));
    let report = format!(
        "{{\"row_p50_ns\": {}, \"row_p99_ns\": {}, \"socketpair_p50_ns\": {}, \"socketpair_p99_ns\": {}}}\n",
        row50.as_nanos(),
        row99.as_nanos(),
        sock50.as_nanos(),
        sock99.as_nanos()
    );
    eprintln!("process latency: {report}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("process-latency.json"), report);
    drop(ours);
    let _ = child.wait();
}

/// Resident set size of `pid` in KiB.
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Not timed: an idle worker's RSS, and the host's and worker's RSS after
/// 1 M and 10 M rows of `x + 1` (w1, b1000), written to
/// `target/criterion/process-memory.json`.
fn memory(_: &mut Criterion) {
    let r = runner("inc", 1, 1000);
    let worker = r.worker_pids()[0].to_string();
    let idle_worker = rss_kib(&worker);
    let chunk = rows("inc", 100_000);
    let mut at_1m = (0, 0);
    for i in 1..=100 {
        let out = r.call(&chunk).unwrap();
        assert_eq!(out.len(), chunk.len());
        if i == 10 {
            at_1m = (rss_kib("self"), rss_kib(&worker));
        }
    }
    let at_10m = (rss_kib("self"), rss_kib(&worker));
    let report = format!(
        "{{\"idle_worker_kib\": {idle_worker}, \"host_1m_kib\": {}, \"host_10m_kib\": {}, \"worker_1m_kib\": {}, \"worker_10m_kib\": {}}}\n",
        at_1m.0, at_10m.0, at_1m.1, at_10m.1
    );
    eprintln!("process memory: {report}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("process-memory.json"), report);
}

/// Not timed by criterion: `x + 1` and `s.upper()` with one worker and
/// batches of 1,000 against the direct floor, paired: each of 40 rounds
/// times one direct loop and then one `Runner::call` over the same 100,000
/// rows, so both sides of every ratio see the same moment of this shared
/// machine. The median ratio and its quartiles are printed and written to
/// `target/criterion/process-paired.json`.
fn paired(_: &mut Criterion) {
    Python::initialize();
    let mut report = Vec::new();
    for udf in ["inc", "upper"] {
        let data = rows(udf, ROWS);
        let r = runner(udf, 1, 1000);
        let mut ratios: Vec<f64> = Python::attach(|py| {
            let func = bench_udf(py, udf);
            assert_eq!(direct(py, &func, &data), r.call(&data).unwrap());
            for _ in 0..3 {
                py.detach(|| black_box(r.call(&data).unwrap()));
            }
            (0..40)
                .map(|_| {
                    let started = Instant::now();
                    black_box(direct(py, &func, &data));
                    let floor = started.elapsed();
                    let started = Instant::now();
                    py.detach(|| black_box(r.call(&data).unwrap()));
                    floor.as_secs_f64() / started.elapsed().as_secs_f64()
                })
                .collect()
        });
        ratios.sort_by(f64::total_cmp);
        let at = |p: f64| ratios[((ratios.len() - 1) as f64 * p).round() as usize];
        report.push(format!(
            "\"{udf}\": {{\"median\": {:.3}, \"p25\": {:.3}, \"p75\": {:.3}}}",
            at(0.5),
            at(0.25),
            at(0.75)
        ));
    }
    let report = format!("{{{}}}\n", report.join(", "));
    eprintln!("process paired (direct / w1/b1000, per round): {report}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("process-paired.json"), report);
}

criterion_group!(benches, throughput, latency, memory, paired);

/// `criterion_main!`, except that with [`SOCKET_ECHO`] set this executable
/// is the socketpair baseline's peer process: it echoes every frame on the
/// socket that is its standard input (the loop `coil-ring-peer sock-echo`
/// runs) until the bench hangs up.
fn main() {
    if std::env::var_os(SOCKET_ECHO).is_some() {
        let sock = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .expect("standard input is the socket");
        coil_testkit::peer::serve_socket(UnixStream::from(sock), true)
            .expect("the socket echo peer");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
