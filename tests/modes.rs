//! The in-process modes against process mode: the same UDFs, the same
//! results, the same errors.

use std::time::{Duration, Instant};

use coil_host::{ExecutionMode, RunError, UdfKind};
use coil_ipc::{Row, Value};

use crate::util::{assert_same_as_python, config, ints, numpy, start, udfs, with_numpy, worker};

/// The modes this build runs in-process.
const IN_PROCESS: &[&str] = &["multi-thread", "sub-interpreter"];
/// Generous bound for anything that should end promptly (a liveness check,
/// never a speed: a UDF that is never interrupted runs forever).
const WATCHDOG: Duration = Duration::from_secs(60);

fn every_mode() -> Vec<&'static str> {
    let mut m = vec!["process"];
    m.extend_from_slice(IN_PROCESS);
    m
}

#[test]
fn every_mode_gives_plain_pythons_results() {
    let s = |x: &str| Value::Str(x.into());
    for mode in every_mode() {
        let conf = format!("python.execution-mode={mode}");
        let pairs = [
            "python.worker-count=2",
            "python.fn-execution.bundle.size=3",
            conf.as_str(),
        ];
        assert_same_as_python(
            "basic.py",
            "inc",
            UdfKind::Scalar,
            ints([-5, 0, 1, i64::MAX - 1]),
            &pairs,
        );
        assert_same_as_python(
            "basic.py",
            "shout",
            UdfKind::Scalar,
            vec![vec![s("grüße")], vec![s("日本語")], vec![Value::Null]],
            &pairs,
        );
        assert_same_as_python(
            "basic.py",
            "reverse_bytes",
            UdfKind::Scalar,
            vec![
                vec![Value::Bytes(vec![0, 1, 255])],
                vec![Value::Bytes(vec![])],
            ],
            &pairs,
        );
        assert_same_as_python(
            "basic.py",
            "sum_list",
            UdfKind::Scalar,
            vec![vec![Value::List(vec![Value::Int(1), Value::Float(2.5)])]],
            &pairs,
        );
        assert_same_as_python(
            "basic.py",
            "split_words",
            UdfKind::Table,
            vec![vec![s("a bb  ccc")], vec![s("")]],
            &pairs,
        );
        assert_same_as_python("basic.py", "Stateful", UdfKind::Scalar, ints(0..20), &pairs);
    }
}

#[test]
fn errors_are_the_same_in_every_mode() {
    for mode in every_mode() {
        let conf = format!("python.execution-mode={mode}");
        let runner = start(
            "basic.py",
            "fails_on_three",
            UdfKind::Scalar,
            &["python.worker-count=1", &conf],
        );
        match runner.call(&ints(0..10)) {
            Err(RunError::Udf { row, error }) => {
                assert_eq!(row, 3, "{mode}");
                assert_eq!(error.type_name, "ValueError", "{mode}");
                assert!(error.traceback.contains("fails_on_three"), "{mode}");
            }
            other => panic!("{mode}: expected a UDF error, got {other:?}"),
        }
        let runner = start(
            "basic.py",
            "too_big",
            UdfKind::Scalar,
            &["python.worker-count=1", &conf],
        );
        assert!(
            matches!(
                runner.call(&ints([1])),
                Err(RunError::BadRow { row: Some(0), .. })
            ),
            "{mode}"
        );
    }
}

#[test]
fn vectorized_udfs_run_in_process_too_and_numpy_ones_fall_back_from_sub_interpreters() {
    let rows: Vec<Row> = (0..5)
        .map(|i| vec![Value::Int(i), Value::Int(10)])
        .collect();
    let np = numpy();
    for &mode in IN_PROCESS {
        let conf = format!("python.execution-mode={mode}");
        // Both with numpy's environment: one main interpreter, one sys.path
        // for every multi-thread runner of this process.
        let runner = start(
            "basic.py",
            "add_columns",
            UdfKind::Vectorized,
            &with_numpy(&["python.worker-count=1", &conf], &np),
        );
        assert_eq!(runner.mode().as_str(), mode, "a list-based vectorized UDF");
        assert_eq!(
            runner.call(&rows).unwrap(),
            (10..15).map(Value::Int).collect::<Vec<_>>()
        );
        // numpy arrays: in the main interpreter in multi-thread mode; numpy
        // cannot load in a sub-interpreter, so process mode there.
        let runner = start(
            "basic.py",
            "np_add",
            UdfKind::Vectorized,
            &with_numpy(&["python.worker-count=1", &conf], &np),
        );
        let expected = if mode == "multi-thread" {
            ExecutionMode::MultiThread
        } else {
            ExecutionMode::Process
        };
        assert_eq!(runner.mode(), expected, "{mode}");
        assert_eq!(
            runner.call(&rows).unwrap(),
            (0..5).map(|i| Value::Int(2 * i + 10)).collect::<Vec<_>>(),
            "{mode}"
        );
    }
}

#[test]
fn a_runaway_udf_in_process_is_interrupted_and_its_executor_freed() {
    for mode in IN_PROCESS {
        let conf = format!("python.execution-mode={mode}");
        let runner = start(
            "faults.py",
            "spins",
            UdfKind::Scalar,
            &[
                "python.worker-count=1",
                "python.fn-execution.bundle.size=4",
                "python.fn-execution.timeout=500",
                &conf,
            ],
        );
        let started = Instant::now();
        match runner.call(&ints(10..20)) {
            Err(RunError::Timeout { row, rows, .. }) => {
                assert_eq!(row, Some(3), "{mode}: row 3 holds 13");
                // Rows 0..3 of its batch were answered: the error is row
                // 3's alone.
                assert_eq!(rows, 3..4);
            }
            other => panic!("{mode}: expected a timeout, got {other:?}"),
        }
        assert!(started.elapsed() < WATCHDOG, "{mode}: never interrupted");
        // The same executor serves the next call: it was freed, not replaced.
        assert_eq!(
            runner.call(&ints([1, 2])).unwrap(),
            vec![Value::Int(2), Value::Int(3)]
        );
        assert_eq!(runner.restarts(), 0, "{mode}");
    }
}

#[test]
fn a_udf_stuck_in_c_is_abandoned_and_replaced() {
    for mode in IN_PROCESS {
        let conf = format!("python.execution-mode={mode}");
        let runner = start(
            "faults.py",
            "hangs",
            UdfKind::Scalar,
            &[
                "python.worker-count=1",
                "python.fn-execution.bundle.size=1",
                "python.fn-execution.timeout=300",
                &conf,
            ],
        );
        match runner.call(&ints([13])) {
            Err(RunError::Timeout { row: Some(0), .. }) => {}
            other => panic!("{mode}: expected a timeout, got {other:?}"),
        }
        assert_eq!(
            runner.restarts(),
            1,
            "{mode}: a fresh executor took its place"
        );
        assert_eq!(runner.call(&ints([1])).unwrap(), vec![Value::Int(2)]);
    }
}

#[test]
fn many_host_threads_share_an_in_process_runner() {
    for mode in IN_PROCESS {
        let conf = format!("python.execution-mode={mode}");
        let runner = start(
            "basic.py",
            "inc",
            UdfKind::Scalar,
            &[
                "python.worker-count=2",
                "python.fn-execution.bundle.size=64",
                &conf,
            ],
        );
        std::thread::scope(|s| {
            for t in 0..6i64 {
                let runner = &runner;
                s.spawn(move || {
                    for round in 0..4 {
                        let base = t * 1_000_000 + round * 1000;
                        let out = runner.call(&ints(base..base + 300)).unwrap();
                        assert_eq!(
                            out,
                            (base + 1..base + 301).map(Value::Int).collect::<Vec<_>>()
                        );
                    }
                });
            }
        });
    }
}

#[test]
fn in_process_runners_start_and_stop_repeatedly() {
    for mode in IN_PROCESS {
        let conf = format!("python.execution-mode={mode}");
        for i in 0..20 {
            let runner = start(
                "basic.py",
                "inc",
                UdfKind::Scalar,
                &["python.worker-count=2", &conf],
            );
            assert_eq!(runner.call(&ints([i])).unwrap(), vec![Value::Int(i + 1)]);
        }
        // Every executor thread ended with its runner.
        let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
        assert!(threads < 20, "{threads} threads left after 20 runners");
    }
}

#[test]
fn a_udf_importing_numpy_falls_back_to_process_mode_or_fails_when_strict() {
    let np = numpy();
    let runner = start(
        "uses_numpy.py",
        "double",
        UdfKind::Scalar,
        &with_numpy(&["python.execution-mode=sub-interpreter"], &np),
    );
    assert_eq!(
        runner.mode(),
        ExecutionMode::Process,
        "numpy cannot load in a sub-interpreter"
    );
    assert_eq!(runner.call(&ints([21])).unwrap(), vec![Value::Int(42)]);
    let spec =
        coil_host::UdfSpec::new(format!("{}:double", udfs().join("uses_numpy.py").display()));
    let strict = config(&with_numpy(
        &[
            "python.execution-mode=sub-interpreter",
            "python.execution-mode.strict=true",
        ],
        &np,
    ));
    match coil_host::Runner::with_worker_command(&strict, spec, worker()) {
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("numpy") && e.contains("sub-interpreter"), "{e}");
        }
        Ok(_) => panic!("strict mode must refuse"),
    }
    // multi-thread runs it in-process: numpy loads in the main interpreter.
    let runner = start(
        "uses_numpy.py",
        "double",
        UdfKind::Scalar,
        &with_numpy(&["python.execution-mode=multi-thread"], &np),
    );
    assert_eq!(runner.mode(), ExecutionMode::MultiThread);
    assert_eq!(runner.call(&ints([2])).unwrap(), vec![Value::Int(4)]);
}

#[test]
fn sub_interpreters_are_separate_interpreters() {
    let runner = start(
        "basic.py",
        "interpreter_id",
        UdfKind::Scalar,
        &[
            "python.execution-mode=sub-interpreter",
            "python.worker-count=2",
            "python.fn-execution.bundle.size=1",
        ],
    );
    let ids: std::collections::BTreeSet<i64> = (0..40)
        .flat_map(|_| match runner.call(&ints([0, 1])).unwrap()[..] {
            [Value::Int(a), Value::Int(b)] => [a, b],
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert!(!ids.contains(&0), "never the main interpreter: {ids:?}");
    let runner = start(
        "basic.py",
        "interpreter_id",
        UdfKind::Scalar,
        &["python.execution-mode=multi-thread"],
    );
    assert_eq!(runner.call(&ints([0])).unwrap(), vec![Value::Int(0)]);
}

#[test]
fn metrics_count_what_ran_and_split_the_time() {
    for mode in every_mode() {
        let conf = format!("python.execution-mode={mode}");
        let runner = start(
            "cpu.py",
            "spin",
            UdfKind::Scalar,
            &[
                "python.worker-count=1",
                "python.fn-execution.bundle.size=10",
                &conf,
            ],
        );
        let rows: Vec<Row> = (0..95).map(|_| vec![Value::Int(2000)]).collect();
        let started = Instant::now();
        assert_eq!(runner.call(&rows).unwrap().len(), 95);
        let wall = started.elapsed();
        let m = runner.metrics();
        assert_eq!(
            (m.rows_in, m.rows_out, m.batches, m.errors),
            (95, 95, 10, 0),
            "{mode}"
        );
        // Python time is measured, and (one executor, one batch at a time)
        // fits inside the call: true at any speed, unlike comparing it with
        // the codec's time.
        assert!(m.python > Duration::ZERO, "{mode}: {m:?}");
        assert!(m.python <= wall, "{mode}: {m:?} in {wall:?}");
        let failing = start(
            "basic.py",
            "fails_on_three",
            UdfKind::Scalar,
            &["python.worker-count=1", &conf],
        );
        assert!(failing.call(&ints([3])).is_err());
        let m = failing.metrics();
        assert_eq!((m.rows_in, m.rows_out, m.errors), (1, 0, 1), "{mode}");
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn live_interpreters() -> usize {
    use pyo3::prelude::*;
    Python::attach(|py| {
        py.import("_interpreters")
            .unwrap()
            .call_method0("list_all")
            .unwrap()
            .len()
            .unwrap()
    })
}

#[test]
fn sub_interpreters_end_with_their_runner_and_batches_do_not_grow_memory() {
    pyo3::Python::initialize();
    assert_eq!(live_interpreters(), 1, "only the main interpreter at first");
    let rows = ints(0..1000);
    for _ in 0..3 {
        let runner = start(
            "basic.py",
            "inc",
            UdfKind::Scalar,
            &[
                "python.execution-mode=sub-interpreter",
                "python.worker-count=2",
            ],
        );
        assert_eq!(live_interpreters(), 3, "one interpreter per executor");
        runner.call(&rows).unwrap();
    }
    assert_eq!(
        live_interpreters(),
        1,
        "every sub-interpreter ended with its runner"
    );
    // What coil adds per batch on long-lived interpreters: nothing. (CPython
    // itself leaks ~1.7 MB per interpreter created, which is why coil keeps
    // them for the runner's life and this measures batches, not cycles.)
    let runner = start(
        "basic.py",
        "inc",
        UdfKind::Scalar,
        &[
            "python.execution-mode=sub-interpreter",
            "python.worker-count=2",
        ],
    );
    for _ in 0..100 {
        runner.call(&rows).unwrap();
    }
    let warm = rss_kib();
    for _ in 0..400 {
        runner.call(&rows).unwrap();
    }
    let grown = rss_kib().saturating_sub(warm);
    assert!(grown < 4096, "RSS grew {grown} KiB over 400,000 rows");
}

#[test]
fn metrics_reach_the_metrics_facade_and_the_histograms() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runner = start(
        "basic.py",
        "inc",
        UdfKind::Scalar,
        &[
            "python.worker-count=1",
            "python.fn-execution.bundle.size=10",
        ],
    );
    metrics::with_local_recorder(&recorder, || {
        assert_eq!(runner.call(&ints(0..55)).unwrap().len(), 55);
    });
    let mut seen = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let name = key.key().name().to_string();
        match value {
            DebugValue::Counter(n) => {
                seen.insert(name, n);
            }
            DebugValue::Histogram(v) => {
                *seen.entry(format!("{name} samples")).or_insert(0) += v.len() as u64;
            }
            DebugValue::Gauge(_) => {}
        }
    }
    assert_eq!(seen.get("coil_rows_in_total"), Some(&55), "{seen:?}");
    assert_eq!(seen.get("coil_rows_out_total"), Some(&55), "{seen:?}");
    assert_eq!(seen.get("coil_batches_total"), Some(&6), "{seen:?}");
    // 6 batches × (latency, decode, executor decode, python, executor
    // encode, transport, and encode).
    assert_eq!(
        seen.get("coil_batch_seconds samples"),
        Some(&42),
        "{seen:?}"
    );
    let h = runner.histograms();
    assert_eq!(h.latency.len(), 6);
    // Each batch's latency contains its Python time, so this holds at any
    // speed.
    assert!(h.latency.value_at_quantile(0.99) >= h.python.value_at_quantile(0.5));
}

/// Issue 10: a small input of a slow UDF, with the default batch size,
/// is spread over every executor (with fixed batches of 1,000 rows all 40
/// rows went to one).
#[test]
fn a_small_input_of_a_slow_udf_keeps_every_executor_busy() {
    for mode in every_mode() {
        let conf = format!("python.execution-mode={mode}");
        let runner = start(
            "basic.py",
            "where_and_slow",
            UdfKind::Scalar,
            &["python.worker-count=2", &conf],
        );
        let got = runner.call(&ints(0..40)).unwrap();
        let executors: std::collections::HashSet<String> = got
            .iter()
            .map(|v| match v {
                Value::Str(s) => s.clone(),
                other => panic!("{mode}: {other:?}"),
            })
            .collect();
        assert_eq!(executors.len(), 2, "{mode}: {got:?}");
        // Once the time per row is known, batches hold ~5 ms of it.
        let m = runner.metrics();
        assert!(m.batches >= 8, "{mode}: {} batches", m.batches);
    }
}

/// An interrupt that lands while the UDF sleeps in C is delivered only when
/// it returns; it must not then fire in the next, unrelated call.
#[test]
fn a_late_timeout_does_not_fire_in_the_next_call() {
    for mode in IN_PROCESS {
        let conf = format!("python.execution-mode={mode}");
        let runner = start(
            "basic.py",
            "sleeps_in_c",
            UdfKind::Scalar,
            &[
                "python.worker-count=1",
                "python.fn-execution.timeout=100",
                &conf,
            ],
        );
        assert!(
            matches!(runner.call(&ints([0])), Err(RunError::Timeout { .. })),
            "{mode}"
        );
        for _ in 0..3 {
            assert_eq!(
                runner
                    .call(&ints([1, 2]))
                    .unwrap_or_else(|e| panic!("{mode}: {e}")),
                vec![Value::Int(2), Value::Int(3)],
                "{mode}"
            );
        }
    }
}

#[test]
fn a_udf_given_by_its_source_runs_in_every_mode() {
    use coil_host::udf_from_source;
    let source = "import re\n\ndef slug(title):\n    return re.sub(r'\\W+', '-', title.lower()).strip('-')\n";
    let spec = udf_from_source(source, "slug").unwrap();
    // The same source is the same file; another is another.
    assert_eq!(udf_from_source(source, "slug").unwrap().target, spec.target);
    assert_ne!(
        udf_from_source("def slug(t):\n    return t\n", "slug")
            .unwrap()
            .target,
        spec.target
    );
    for mode in crate::util::modes() {
        let conf = format!("python.execution-mode={mode}");
        let r = coil_host::Runner::with_worker_command(
            &crate::util::config(&["python.worker-count=1", conf.as_str()]),
            spec.clone(),
            crate::util::worker(),
        )
        .unwrap();
        let out = r.call(&[vec![Value::Str("Hello, World!".into())]]).unwrap();
        assert_eq!(out, vec![Value::Str("hello-world".into())], "{mode}");
    }
    // A syntax error is the runner's load error, with its traceback.
    let broken = udf_from_source("def slug(title)\n    return title\n", "slug").unwrap();
    let e = coil_host::Runner::with_worker_command(
        &crate::util::config(&["python.worker-count=1"]),
        broken,
        crate::util::worker(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("SyntaxError"), "{e}");
    assert!(matches!(
        udf_from_source("def f(): pass", "not a name"),
        Err(coil_host::InlineError::BadName(_))
    ));
}

#[test]
fn every_mode_reports_what_the_udfs_signature_says() {
    use coil_host::arrow_schema::{DataType, Field};
    use std::sync::Arc;
    for mode in every_mode() {
        let pairs = [format!("python.execution-mode={mode}")];
        let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
        let r = start("signatures.py", "titled", UdfKind::Scalar, &pairs);
        let s = r.signature();
        assert_eq!(
            s.params,
            Some(vec![
                ("title".to_string(), Some(DataType::Utf8)),
                ("n".to_string(), None)
            ]),
            "{mode}"
        );
        assert!(!s.columnar, "{mode}");
        assert_eq!(r.spec().returns, Some(DataType::Utf8), "{mode}");
        // Column annotations (strings: pandas is not imported) mark a
        // vectorized UDF, and name the element types.
        let r = start("signatures.py", "column", UdfKind::Scalar, &pairs);
        assert!(r.signature().columnar, "{mode}");
        assert_eq!(
            r.signature().params,
            Some(vec![("x".to_string(), Some(DataType::Int64))]),
            "{mode}"
        );
        let r = start("signatures.py", "any_args", UdfKind::Scalar, &pairs);
        assert_eq!(r.signature().params, None, "{mode}");
        // A class UDF: eval's parameters, without self.
        let r = start("signatures.py", "Stateful", UdfKind::Scalar, &pairs);
        assert_eq!(
            r.signature().params,
            Some(vec![
                ("when".to_string(), Some(DataType::Date32)),
                (
                    "amount".to_string(),
                    Some(DataType::List(Arc::new(Field::new(
                        "item",
                        DataType::Int64,
                        true
                    ))))
                ),
            ]),
            "{mode}"
        );
    }
}
