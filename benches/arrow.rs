//! The columnar path (`Runner::call_arrow`) against memcpy and the row
//! API, in one run. See `benches/README.md`.
//!
//! - `arrow/memcpy/int64`: copying the int64 column's bytes once: the
//!   physical floor the numpy UDF is reported against.
//! - `arrow/numpy-inc/int64`, `arrow/pandas-inc/int64`: a vectorized
//!   `x + 1` (numpy `np.ndarray`, pandas `pd.Series`) over 16 batches of
//!   65,536 int64 rows, one process worker.
//! - `arrow/{numpy-inc,pyarrow-inc}/{process,multi-thread}/int64`: numpy
//!   and pyarrow `x + 1` in each mode, one 65,536-row batch per call as an
//!   engine calls coil, 16 calls (issue 25: columns without copies).
//! - `arrow/memcpy/utf8`, `arrow/pyarrow-upper/{process,multi-thread}/utf8`:
//!   `pc.utf8_upper` over 262,144 32-byte strings, and a copy of the
//!   column's offsets and bytes.
//! - `arrow/scalar/{inc,upper}` and `arrow/rows/{inc,upper}`: the scalar
//!   `x + 1` over an int64 column and `s.upper()` over a utf8 column through
//!   `call_arrow`, and the same values as rows through `Runner::call`,
//!   batches of 1,000 rows, one process worker.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coil_host::arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use coil_host::arrow_schema::{DataType, Field, Schema};
use coil_host::{Config, Runner, UdfKind, UdfSpec, WorkerCommand};
use coil_ipc::{Row, Value};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Rows per vectorized batch, as the issue sets it.
const BATCH: usize = 65_536;
/// Rows per measured call of the vectorized benches.
const VECTOR_ROWS: usize = 16 * BATCH;
/// Rows per measured call of the scalar benches.
const SCALAR_ROWS: usize = 100_000;

fn runner(udf: &str, kind: UdfKind, returns: DataType, pairs: &[String]) -> Runner {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = Config::default();
    config.set_pair("python.worker-count=1").unwrap();
    for p in pairs {
        config.set_pair(p).unwrap();
    }
    let spec = UdfSpec::new(format!("{}:{udf}", root.join("benches/udfs.py").display()))
        .kind(kind)
        .returns(returns);
    Runner::with_worker_command(
        &config,
        spec,
        WorkerCommand::new(env!("CARGO_BIN_EXE_coil")).arg("worker"),
    )
    .unwrap()
}

/// numpy, pandas and pyarrow, as the tests get them: an environment made
/// once from `tests/requirements.txt`, cached under `target/coil-envs`.
fn packages() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![
        format!(
            "python.requirements={}",
            root.join("tests/requirements.txt").display()
        ),
        format!(
            "python.env.cache-dir={}",
            root.join("target/coil-envs").display()
        ),
    ]
}

fn batch_of(column: ArrayRef) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "x",
        column.data_type().clone(),
        true,
    )]));
    RecordBatch::try_new(schema, vec![column]).unwrap()
}

fn words(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            (0..32)
                .map(|k| (b'a' + ((i + k) % 26) as u8) as char)
                .collect()
        })
        .collect()
}

fn vectorized(c: &mut Criterion) {
    let mut g = c.benchmark_group("arrow");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(VECTOR_ROWS as u64));
    let ints = Int64Array::from_iter_values(0..VECTOR_ROWS as i64);
    let want = Int64Array::from_iter_values(1..=VECTOR_ROWS as i64);
    let input = batch_of(Arc::new(ints.clone()));

    let source: &[i64] = ints.values();
    let mut copy = vec![0i64; source.len()];
    g.bench_function(BenchmarkId::new("memcpy", "int64"), |b| {
        b.iter(|| copy.copy_from_slice(black_box(source)))
    });
    black_box(&copy);

    let mut pairs = packages();
    pairs.push(format!("python.fn-execution.bundle.size={BATCH}"));
    for (name, udf) in [("numpy-inc", "np_inc"), ("pandas-inc", "pd_inc")] {
        let r = runner(udf, UdfKind::Vectorized, DataType::Int64, &pairs);
        assert_eq!(
            r.call_arrow(&input).unwrap().as_ref(),
            &want as &dyn Array,
            "{udf}"
        );
        g.bench_function(BenchmarkId::new(name, "int64"), |b| {
            b.iter(|| r.call_arrow(black_box(&input)).unwrap())
        });
    }
    // Issue 25: numpy and pyarrow `x + 1` in process mode and in
    // multi-thread mode (columns handed over without copies there; numpy
    // and pyarrow do not load in sub-interpreters, which fall back to
    // process mode), called as an engine calls coil: one 65,536-row batch
    // per call (no results to join), 16 calls per iteration.
    let slices: Vec<RecordBatch> = (0..VECTOR_ROWS / BATCH)
        .map(|i| input.slice(i * BATCH, BATCH))
        .collect();
    for mode in ["process", "multi-thread"] {
        let mut pairs = pairs.clone();
        pairs.push(format!("python.execution-mode={mode}"));
        for (name, udf) in [("numpy-inc", "np_inc"), ("pyarrow-inc", "pa_inc")] {
            let r = runner(udf, UdfKind::Vectorized, DataType::Int64, &pairs);
            assert_eq!(r.mode().as_str(), mode);
            assert_eq!(
                r.call_arrow(&input).unwrap().as_ref(),
                &want as &dyn Array,
                "{udf}"
            );
            g.bench_function(BenchmarkId::new(format!("{name}/{mode}"), "int64"), |b| {
                b.iter(|| {
                    for s in &slices {
                        black_box(r.call_arrow(black_box(s)).unwrap());
                    }
                })
            });
        }
    }
    g.finish();
    strings(c, &pairs);
}

/// Issue 25: `s.upper()` over a utf8 column of 32-byte strings, vectorized
/// by pyarrow.compute, in process and multi-thread mode, against a memcpy
/// of the column's offsets and bytes.
fn strings(c: &mut Criterion, pairs: &[String]) {
    let mut g = c.benchmark_group("arrow");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(VECTOR_ROWS as u64 / 4));
    let words = words(VECTOR_ROWS / 4);
    let strings = StringArray::from(words.clone());
    let want = StringArray::from(words.iter().map(|w| w.to_uppercase()).collect::<Vec<_>>());
    let input = batch_of(Arc::new(strings.clone()));
    let (offsets, bytes) = (strings.offsets().inner().inner(), strings.values());
    let (mut o, mut v) = (vec![0u8; offsets.len()], vec![0u8; bytes.len()]);
    g.bench_function(BenchmarkId::new("memcpy", "utf8"), |b| {
        b.iter(|| {
            o.copy_from_slice(black_box(offsets));
            v.copy_from_slice(black_box(bytes));
        })
    });
    black_box((&o, &v));
    for mode in ["process", "multi-thread"] {
        let mut pairs = pairs.to_vec();
        pairs.push(format!("python.execution-mode={mode}"));
        let r = runner("pa_upper", UdfKind::Vectorized, DataType::Utf8, &pairs);
        assert_eq!(
            r.call_arrow(&input).unwrap().as_ref(),
            &want as &dyn Array,
            "pa_upper"
        );
        g.bench_function(
            BenchmarkId::new(format!("pyarrow-upper/{mode}"), "utf8"),
            |b| b.iter(|| r.call_arrow(black_box(&input)).unwrap()),
        );
    }
    g.finish();
}

/// A scalar bench's UDF, its input as a column and as rows, and its
/// expected results.
type Case = (&'static str, ArrayRef, DataType, Vec<Row>, Vec<Value>);

fn scalar(c: &mut Criterion) {
    let mut g = c.benchmark_group("arrow");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(SCALAR_ROWS as u64));
    let pairs = ["python.fn-execution.bundle.size=1000".to_string()];
    let text = words(SCALAR_ROWS);
    let cases: [Case; 2] = [
        (
            "inc",
            Arc::new(Int64Array::from_iter_values(0..SCALAR_ROWS as i64)),
            DataType::Int64,
            (0..SCALAR_ROWS as i64)
                .map(|i| vec![Value::Int(i)])
                .collect(),
            (1..=SCALAR_ROWS as i64).map(Value::Int).collect(),
        ),
        (
            "upper",
            Arc::new(StringArray::from_iter_values(&text)),
            DataType::Utf8,
            text.iter().map(|s| vec![Value::Str(s.clone())]).collect(),
            text.iter().map(|s| Value::Str(s.to_uppercase())).collect(),
        ),
    ];
    for (udf, column, returns, rows, want) in cases {
        let input = batch_of(column);
        let r = runner(udf, UdfKind::Scalar, returns, &pairs);
        let got = r.call_arrow(&input).unwrap();
        assert_eq!(got.len(), SCALAR_ROWS);
        assert_eq!(r.call(&rows).unwrap(), want);
        g.bench_function(BenchmarkId::new("scalar", udf), |b| {
            b.iter(|| r.call_arrow(black_box(&input)).unwrap())
        });
        g.bench_function(BenchmarkId::new("rows", udf), |b| {
            b.iter(|| r.call(black_box(&rows)).unwrap())
        });
    }
    g.finish();
}

/// Rows and batch of the threads bench's numpy UDF.
const NUMPY_ROWS: usize = 64 * 4096;
const NUMPY_BATCH: usize = 4096;

/// Issue 26: a numpy-heavy vectorized UDF (`np_heavy`: 20 rounds of small
/// array operations per 4,096-row batch) in `multi-thread` with 1 and 2
/// executors. Target on a free-threaded build: 2 ≥ 1.7x 1 (sub-interpreters
/// cannot run numpy at all). Every multi-thread runner of this bench uses
/// the one numpy environment, which the main interpreter imports from.
fn threads(c: &mut Criterion) {
    use coil_host::arrow_array::Float64Array;
    let mut g = c.benchmark_group("arrow");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(NUMPY_ROWS as u64));
    let xs = Float64Array::from_iter_values((0..NUMPY_ROWS).map(|i| (i % 1000) as f64));
    let want = Float64Array::from_iter_values(xs.values().iter().map(|&x| {
        let mut y = x;
        for _ in 0..20 {
            y = (y * y + 1.0).sqrt() - 0.5;
        }
        y
    }));
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
    let input = RecordBatch::try_new(schema, vec![Arc::new(xs)]).unwrap();
    for executors in [1, 2] {
        let mut pairs = packages();
        pairs.extend([
            "python.execution-mode=multi-thread".to_string(),
            format!("python.worker-count={executors}"),
            format!("python.fn-execution.bundle.size={NUMPY_BATCH}"),
        ]);
        let r = runner("np_heavy", UdfKind::Vectorized, DataType::Float64, &pairs);
        assert_eq!(r.mode().as_str(), "multi-thread");
        let got = r.call_arrow(&input).unwrap();
        assert_eq!(got.as_ref(), &want as &dyn Array, "np_heavy");
        g.bench_function(
            BenchmarkId::new("threads/numpy/multi-thread", executors),
            |b| b.iter(|| r.call_arrow(black_box(&input)).unwrap()),
        );
    }
    g.finish();
    eprintln!(
        "arrow/threads: CPython {}, free-threaded: {}, GIL back on by: {:?}",
        coil_worker::EMBEDDED_VERSION,
        coil_worker::FREE_THREADED,
        coil_worker::main_gil_enabled_by()
    );
}

criterion_group!(benches, vectorized, scalar, threads);
criterion_main!(benches);
