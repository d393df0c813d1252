//! Process mode end to end: `coil-host` runners over `coil worker`
//! processes, against plain Python and under faults.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coil_host::{
    Direction, ProtocolError, RunError, Runner, StartError, UdfKind, UdfSpec, WorkerExit,
};
use coil_ipc::{Row, Value};

use crate::util::{
    assert_same_as_python, children, children_of, config, ints, is_gone, modes, numpy,
    ring_descriptors, start, udfs, with_numpy, worker,
};

#[test]
fn scalar_udfs_match_plain_python() {
    let s = |x: &str| Value::Str(x.into());
    let cases: Vec<(&str, Vec<Row>)> = vec![
        ("inc", ints([-5, 0, 1, i64::MAX - 1, i64::MIN])),
        (
            "scale",
            vec![
                vec![Value::Float(1.5), Value::Float(-2.0)],
                vec![Value::Float(1e300), Value::Int(3)],
                vec![Value::Int(7), Value::Float(0.1)],
            ],
        ),
        (
            "shout",
            vec![
                vec![s("grüße")],
                vec![s("日本語")],
                vec![s("")],
                vec![Value::Null],
                vec![s("emoji 🎉")],
            ],
        ),
        (
            "reverse_bytes",
            vec![
                vec![Value::Bytes(vec![0, 1, 255])],
                vec![Value::Bytes(vec![])],
                vec![Value::Bytes(vec![0; 1000])],
            ],
        ),
        (
            "describe",
            vec![
                vec![Value::Null],
                vec![Value::Bool(true)],
                vec![Value::Float(f64::MIN_POSITIVE)],
                vec![s("ß")],
            ],
        ),
        (
            "sum_list",
            vec![
                vec![Value::List(vec![
                    Value::Int(1),
                    Value::Int(2),
                    Value::Int(3),
                ])],
                vec![Value::List(vec![])],
                vec![Value::List(vec![Value::Float(0.5), Value::Int(2)])],
            ],
        ),
    ];
    for (name, rows) in cases {
        assert_same_as_python(
            "basic.py",
            name,
            UdfKind::Scalar,
            rows,
            &["python.worker-count=1"],
        );
    }
}

#[test]
fn table_vectorized_and_class_udfs_match_plain_python() {
    let s = |x: &str| Value::Str(x.into());
    assert_same_as_python(
        "basic.py",
        "split_words",
        UdfKind::Table,
        vec![
            vec![s("the quick  brown")],
            vec![s("")],
            vec![s("ünï cödé")],
        ],
        &["python.worker-count=1"],
    );
    assert_same_as_python(
        "basic.py",
        "repeat",
        UdfKind::Table,
        vec![
            vec![s("x"), Value::Int(3)],
            vec![Value::Int(1), Value::Int(0)],
        ],
        &["python.worker-count=1"],
    );
    let rows: Vec<Row> = (0..250)
        .map(|i| vec![Value::Int(i), Value::Int(i * 10)])
        .collect();
    assert_same_as_python(
        "basic.py",
        "add_columns",
        UdfKind::Vectorized,
        rows,
        &[
            "python.worker-count=1",
            "python.fn-execution.bundle.size=1000",
        ],
    );
    assert_same_as_python(
        "basic.py",
        "Stateful",
        UdfKind::Scalar,
        ints(0..50),
        &["python.worker-count=2"],
    );
}

#[test]
fn vectorized_udfs_get_numpy_arrays_when_they_ask_and_numpy_scalars_convert() {
    let np = numpy();
    let rows: Vec<Row> = (0..300)
        .map(|i| vec![Value::Int(i), Value::Int(1)])
        .collect();
    let runner = start(
        "basic.py",
        "np_add",
        UdfKind::Vectorized,
        &with_numpy(
            &[
                "python.worker-count=1",
                "python.fn-execution.bundle.size=128",
            ],
            &np,
        ),
    );
    let out = runner.call(&rows).unwrap();
    assert_eq!(
        out,
        (0..300).map(|i| Value::Int(i * 2 + 1)).collect::<Vec<_>>()
    );
    let runner = start(
        "basic.py",
        "np_scalar",
        UdfKind::Scalar,
        &with_numpy(&["python.worker-count=1"], &np),
    );
    assert_eq!(
        runner.call(&ints([2])).unwrap(),
        vec![Value::List(vec![Value::Int(6), Value::Float(0.5)])]
    );
}

#[test]
fn a_udf_loads_as_package_module_name_from_python_files() {
    let files = format!("python.files={}", udfs().join("pkgroot").display());
    let spec = UdfSpec::new("mypkg.text:tag");
    let runner =
        Runner::with_worker_command(&config(&["python.worker-count=1", &files]), spec, worker())
            .unwrap();
    assert_eq!(
        runner.call(&[vec![Value::Str("x".into())]]).unwrap(),
        vec![Value::Str("<x>".into())]
    );
    // Without python.files the module is not found, and the error says so.
    let spec = UdfSpec::new("mypkg.text:tag");
    match Runner::with_worker_command(&config(&["python.worker-count=1"]), spec, worker()) {
        Err(StartError::Load { error, .. }) => assert_eq!(error.type_name, "ModuleNotFoundError"),
        other => panic!("expected a load error, got {other:?}"),
    }
}

#[test]
fn a_partial_batch_is_sent_after_bundle_time() {
    let runner = start(
        "basic.py",
        "inc",
        UdfKind::Scalar,
        &[
            "python.worker-count=1",
            "python.fn-execution.bundle.size=1000",
            "python.fn-execution.bundle.time=50",
        ],
    );
    let mut stream = runner.stream();
    for x in 0..3 {
        stream.push(vec![Value::Int(x)]);
    }
    assert!(
        stream.try_pull().is_none(),
        "a partial batch waits for bundle.time"
    );
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the partial batch was never sent"
        );
        match stream.try_pull() {
            Some(v) => got.push(v.unwrap()),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    assert!(start.elapsed() >= Duration::from_millis(40));
    assert_eq!(got, vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
}

#[test]
fn many_batches_on_many_workers_come_back_in_order() {
    let runner = start(
        "basic.py",
        "inc",
        UdfKind::Scalar,
        &["python.worker-count=3", "python.fn-execution.bundle.size=7"],
    );
    let out = runner.call(&ints(0..10_000)).unwrap();
    assert_eq!(out, (1..=10_000).map(Value::Int).collect::<Vec<_>>());
}

#[test]
fn a_python_exception_names_its_row_and_carries_the_traceback() {
    let runner = start(
        "basic.py",
        "fails_on_three",
        UdfKind::Scalar,
        &[
            "python.worker-count=1",
            "python.fn-execution.bundle.size=100",
        ],
    );
    match runner.call(&ints(0..10)) {
        Err(RunError::Udf { row, error }) => {
            assert_eq!(row, 3);
            assert_eq!(error.type_name, "ValueError");
            assert_eq!(error.message, "three is not allowed (got 3)");
            assert!(
                error.traceback.contains("basic.py") && error.traceback.contains("fails_on_three")
            );
            assert!(error
                .traceback
                .trim_end()
                .ends_with("ValueError: three is not allowed (got 3)"));
        }
        other => panic!("expected a UDF error, got {other:?}"),
    }
    // The worker survives its UDF's exceptions.
    assert_eq!(runner.call(&ints([4])).unwrap(), vec![Value::Int(8)]);
    assert_eq!(runner.restarts(), 0);
}

#[test]
fn values_outside_the_row_model_are_errors_naming_the_row() {
    for (name, needle) in [("too_big", "64-bit"), ("unsupported", "dict")] {
        let runner = start(
            "basic.py",
            name,
            UdfKind::Scalar,
            &["python.worker-count=1"],
        );
        match runner.call(&ints([1, 2])) {
            Err(RunError::BadRow {
                row: Some(0),
                message,
            }) => assert!(message.contains(needle), "{message}"),
            other => panic!("{name}: expected a bad row error, got {other:?}"),
        }
    }
}

#[test]
fn a_udf_that_does_not_load_is_a_start_error_with_its_traceback() {
    let spec = UdfSpec::new(format!("{}:missing", udfs().join("basic.py").display()));
    match Runner::with_worker_command(&config(&["python.worker-count=1"]), spec, worker()) {
        Err(StartError::Load { error, .. }) => {
            assert_eq!(error.type_name, "AttributeError");
            assert!(error.message.contains("missing"));
        }
        other => panic!("expected a load error, got {other:?}"),
    }
    let spec = UdfSpec::new("no/such/file.py:f");
    assert!(matches!(
        Runner::with_worker_command(&config(&["python.worker-count=1"]), spec, worker()),
        Err(StartError::Load { .. })
    ));
}

/// Runs 0..40 in batches of 4 through a UDF that breaks its worker on 13:
/// the batch holding 13 (rows 12..16) fails, every other row is answered.
fn survive(name: &str, extra: &[&str], check: impl Fn(&RunError)) {
    let mut pairs = vec!["python.worker-count=2", "python.fn-execution.bundle.size=4"];
    pairs.extend_from_slice(extra);
    let runner = start("faults.py", name, UdfKind::Scalar, &pairs);
    let mut stream = runner.stream();
    for x in 0..40 {
        stream.push(vec![Value::Int(x)]);
    }
    stream.flush();
    let mut answered = Vec::new();
    let mut errors = 0;
    for r in stream.by_ref() {
        match r {
            Ok(v) => answered.push(v),
            Err(e) => {
                check(&e);
                errors += 1;
            }
        }
    }
    drop(stream);
    assert_eq!(errors, 1, "{name}: one failed batch");
    let expected: Vec<Value> = (0..40)
        .filter(|x| !(12..16).contains(x))
        .map(|x| Value::Int(x + 1))
        .collect();
    assert_eq!(
        answered, expected,
        "{name}: every other row, once, in order"
    );
    assert!(runner.restarts() >= 1, "{name}: the worker was replaced");
    // The replacement serves the next call.
    assert_eq!(runner.call(&ints([1])).unwrap(), vec![Value::Int(2)]);
}

fn died(e: &RunError) {
    match e {
        RunError::WorkerDied { rows, .. } => assert_eq!(*rows, 12..16),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
}

#[test]
fn a_worker_that_exits_is_replaced_and_its_batch_reported() {
    survive("exits", &[], |e| {
        died(e);
        assert!(
            matches!(
                e,
                RunError::WorkerDied {
                    exit: WorkerExit::Code(3),
                    ..
                }
            ),
            "{e:?}"
        );
    });
}

#[test]
fn a_sigkilled_worker_is_replaced_and_its_batch_reported() {
    survive("sigkill", &[], |e| {
        died(e);
        assert!(
            matches!(
                e,
                RunError::WorkerDied {
                    exit: WorkerExit::Signal {
                        number: 9,
                        name: "SIGKILL"
                    },
                    ..
                }
            ),
            "{e:?}"
        );
    });
}

#[test]
fn a_segfaulting_worker_is_replaced_and_its_batch_reported() {
    survive("segfault", &[], |e| {
        died(e);
        assert!(
            matches!(
                e,
                RunError::WorkerDied {
                    exit: WorkerExit::Signal { number: 11, .. },
                    ..
                }
            ),
            "{e:?}"
        );
        // faulthandler's report reaches the error, with the Python frame.
        assert!(e.to_string().contains("segfault"), "{e}");
    });
}

#[test]
fn a_hung_udf_times_out_naming_its_row_and_its_worker_is_replaced() {
    let start = Instant::now();
    survive(
        "hangs",
        &["python.fn-execution.timeout=1000"],
        |e| match e {
            RunError::Timeout { row, after, rows } => {
                assert_eq!(*row, Some(13));
                assert_eq!(*after, Duration::from_secs(1));
                assert_eq!(*rows, 12..16);
            }
            other => panic!("expected a timeout, got {other:?}"),
        },
    );
    // A liveness bound (the timeout is 1 s), not a speed.
    const WATCHDOG: Duration = Duration::from_secs(60);
    assert!(start.elapsed() < WATCHDOG);
}

#[test]
fn a_worker_writing_garbage_into_its_ring_is_an_error_not_a_crash() {
    survive("garbage", &[], |e| match e {
        RunError::Protocol { rows, error, .. } => {
            assert_eq!(*rows, 12..16);
            // Garbage in the ring is caught by the ring's frame checks, or
            // by the answer's decoding: either way a typed error.
            assert!(
                matches!(error, ProtocolError::Recv(_) | ProtocolError::Answer(_)),
                "{error:?}"
            );
        }
        other => panic!("expected a protocol error, got {other:?}"),
    });
}

#[test]
fn a_batch_whose_worker_died_is_retried_once_when_configured() {
    let marker = std::env::temp_dir().join(format!("coil-retry-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let runner = start(
        "faults.py",
        "exits_once",
        UdfKind::Scalar,
        &[
            "python.worker-count=1",
            "python.fn-execution.bundle.size=4",
            "python.fn-execution.retries=1",
        ],
    );
    let m = Value::Str(marker.display().to_string());
    let rows: Vec<Row> = (0..20).map(|x| vec![Value::Int(x), m.clone()]).collect();
    let out = runner.call(&rows).unwrap();
    assert_eq!(out, (1..=20).map(Value::Int).collect::<Vec<_>>());
    assert_eq!(runner.restarts(), 1);
    let _ = std::fs::remove_file(&marker);
}

#[test]
fn values_larger_than_the_ring_travel_in_pieces_up_to_the_limit() {
    let runner = start(
        "basic.py",
        "shout",
        UdfKind::Scalar,
        &[
            "python.worker-count=1",
            "python.fn-execution.ring.size=64k",
            "python.fn-execution.max-message-size=4m",
            "python.fn-execution.bundle.size=3",
        ],
    );
    // 1 MiB each way through a 64 KiB ring, between ordinary rows.
    let big = "ä".repeat(512 * 1024);
    let rows = vec![
        vec![Value::Str("a".into())],
        vec![Value::Str(big.clone())],
        vec![Value::Str("b".into())],
        vec![Value::Str("c".into())],
    ];
    let out = runner.call(&rows).unwrap();
    assert_eq!(out.len(), 4);
    assert_eq!(out[1], Value::Str(big.to_uppercase() + "¡"));
    assert_eq!(out[3], Value::Str("C¡".into()));
    // Past the limit: a clear error, and the runner goes on.
    let huge = vec![vec![Value::Str("x".repeat(5 << 20))]];
    match runner.call(&huge) {
        Err(RunError::TooLarge { bytes, limit, .. }) => assert!(bytes > limit && limit == 4 << 20),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let runner = start(
        "basic.py",
        "grow",
        UdfKind::Scalar,
        &[
            "python.worker-count=1",
            "python.fn-execution.ring.size=64k",
            "python.fn-execution.max-message-size=1m",
        ],
    );
    let ok = runner
        .call(&[vec![Value::Str("ab".into()), Value::Int(300_000)]])
        .unwrap();
    assert_eq!(ok, vec![Value::Str("ab".repeat(300_000))]);
    match runner.call(&[vec![Value::Str("ab".into()), Value::Int(1_000_000)]]) {
        Err(
            e @ RunError::TooLarge {
                direction: Direction::Results,
                ..
            },
        ) => {
            assert!(e.to_string().contains("max-message-size (1048576)"), "{e}")
        }
        other => panic!("expected a too-large result error, got {other:?}"),
    }
    assert_eq!(
        runner
            .call(&[vec![Value::Str("z".into()), Value::Int(2)]])
            .unwrap(),
        vec![Value::Str("zz".into())]
    );
}

#[test]
fn a_stream_mixing_large_and_small_batches_on_small_rings_neither_hangs_nor_reorders() {
    let runner = start(
        "basic.py",
        "shout",
        UdfKind::Scalar,
        &[
            "python.worker-count=2",
            "python.fn-execution.ring.size=64k",
            "python.fn-execution.bundle.size=2",
            "python.fn-execution.timeout=60000",
        ],
    );
    let input: Vec<String> = (0..60)
        .map(|i| {
            if i % 3 == 0 {
                format!("{i}-").repeat(40_000)
            } else {
                format!("row {i}")
            }
        })
        .collect();
    let mut stream = runner.stream();
    let mut out = Vec::new();
    for s in &input {
        stream.push(vec![Value::Str(s.clone())]);
        while let Some(v) = stream.try_pull() {
            out.push(v.unwrap());
        }
    }
    stream.flush();
    for v in stream.by_ref() {
        out.push(v.unwrap());
    }
    let want: Vec<Value> = input
        .iter()
        .map(|s| Value::Str(s.to_uppercase() + "¡"))
        .collect();
    assert_eq!(out, want);
}

#[test]
fn many_host_threads_share_one_runner() {
    let runner = start(
        "basic.py",
        "inc",
        UdfKind::Scalar,
        &[
            "python.worker-count=2",
            "python.fn-execution.bundle.size=50",
        ],
    );
    std::thread::scope(|s| {
        for t in 0..8i64 {
            let runner = &runner;
            s.spawn(move || {
                for round in 0..5 {
                    let base = t * 1_000_000 + round * 1000;
                    let out = runner.call(&ints(base..base + 333)).unwrap();
                    assert_eq!(
                        out,
                        (base + 1..base + 334).map(Value::Int).collect::<Vec<_>>()
                    );
                }
            });
        }
    });
}

#[test]
fn shutdown_runs_close_and_leaves_no_processes_or_shared_memory() {
    let before = ring_descriptors();
    {
        let runner = start(
            "faults.py",
            "sigkill",
            UdfKind::Scalar,
            &["python.worker-count=2", "python.fn-execution.bundle.size=1"],
        );
        assert_eq!(children().len(), 2);
        assert!(runner.call(&ints([13])).is_err());
        assert_eq!(
            runner.call(&ints([1, 2, 3])).unwrap(),
            vec![Value::Int(2), Value::Int(3), Value::Int(4)]
        );
        assert!(ring_descriptors() > before);
    }
    assert_eq!(
        children(),
        Vec::<u32>::new(),
        "no child processes or zombies left"
    );
    assert_eq!(
        ring_descriptors(),
        before,
        "no ring memory left mapped or open"
    );
}

#[test]
fn workers_do_not_outlive_a_killed_host() {
    // The host is a `coil run` process waiting on its input.
    let mut host = Command::new(env!("CARGO_BIN_EXE_coil"))
        .args([
            "run",
            "--udf",
            &format!("{}:inc", udfs().join("basic.py").display()),
            "--workers",
            "2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let workers = loop {
        let kids = children_of(host.id());
        if kids.len() == 2 {
            break kids;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "workers did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    host.kill().unwrap();
    host.wait().unwrap();
    let killed = Instant::now();
    while !workers.iter().all(|&w| is_gone(w)) {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "workers outlived their host"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn shutdown_runs_close_of_class_udfs_once_per_worker() {
    let marker = std::env::temp_dir().join(format!("coil-close-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    {
        let runner = start(
            "basic.py",
            "Closes",
            UdfKind::Scalar,
            &["python.worker-count=1"],
        );
        let m = Value::Str(marker.display().to_string());
        let rows: Vec<Row> = (0..7).map(|x| vec![Value::Int(x), m.clone()]).collect();
        assert_eq!(runner.call(&rows).unwrap().len(), 7);
        assert!(!marker.exists(), "close() runs at shutdown, not before");
    }
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "7\n");
    let _ = std::fs::remove_file(&marker);
}

/// Issue 12, part 4: a list subclass whose `len()` and iteration disagree
/// is encoded as it iterates, so every row keeps its own answer.
#[test]
fn a_list_whose_len_lies_is_encoded_as_it_iterates() {
    let runner = start(
        "basic.py",
        "lying_list",
        UdfKind::Scalar,
        &["python.worker-count=1"],
    );
    let got = runner.call(&ints([1, 10, 100])).unwrap();
    let list = |x: i64| Value::List(vec![Value::Int(x), Value::Int(x + 1), Value::Int(x + 2)]);
    assert_eq!(got, vec![list(1), list(10), list(100)]);
}

#[test]
fn vectorized_udfs_get_the_containers_their_annotations_ask_for_in_every_mode() {
    let np = numpy();
    let ints5 = || ints(0..5);
    for mode in modes() {
        let conf = format!("python.execution-mode={mode}");
        let pairs = with_numpy(&["python.worker-count=1", &conf], &np);
        let run = |name: &str, rows: &[Row]| {
            start("hints.py", name, UdfKind::Vectorized, &pairs)
                .call(rows)
                .unwrap_or_else(|e| panic!("{mode} {name}: {e}"))
        };
        // A PySpark pandas UDF body, unchanged.
        assert_eq!(
            run("pandas_inc", &ints5()),
            (1..6).map(Value::Int).collect::<Vec<_>>()
        );
        let pairs2: Vec<Row> = (0..4).map(|i| vec![Value::Int(i), Value::Int(7)]).collect();
        assert_eq!(
            run("numpy_mix", &pairs2),
            (0..4).map(|i| Value::Int(i * 10 + 7)).collect::<Vec<_>>()
        );
        let words: Vec<Row> = ["a", "bé", "c"]
            .iter()
            .map(|w| vec![Value::Str(w.to_string())])
            .collect();
        assert_eq!(
            run("arrow_upper", &words),
            ["A", "BÉ", "C"]
                .iter()
                .map(|w| Value::Str(w.to_string()))
                .collect::<Vec<_>>()
        );
        let three: Vec<Row> = (0..3)
            .map(|i| {
                vec![
                    Value::Int(i),
                    Value::Int(100),
                    Value::Int(1000),
                    Value::Int(1),
                ]
            })
            .collect();
        assert_eq!(
            run("mixed", &three),
            (0..3).map(|i| Value::Int(i + 1101)).collect::<Vec<_>>()
        );
        // A scalar result is broadcast to every row of the batch.
        assert_eq!(run("pandas_mean", &ints(1..4)), vec![Value::Float(2.0); 3]);
    }
}

#[test]
fn a_vectorized_udf_annotated_for_a_missing_package_fails_at_load_naming_it() {
    // No environment: the embedded CPython has no pandas.
    let spec = coil_host::UdfSpec::new(format!(
        "{}:needs_pandas",
        udfs().join("hints_missing.py").display()
    ))
    .kind(UdfKind::Vectorized);
    match coil_host::Runner::with_worker_command(
        &config(&["python.worker-count=1"]),
        spec,
        worker(),
    ) {
        Err(coil_host::StartError::Load { error, .. }) => {
            assert_eq!(error.type_name, "ImportError");
            assert!(
                error.message.contains("annotated for pandas"),
                "{}",
                error.message
            );
        }
        other => panic!("{other:?}"),
    }
    // No container asked for: lists; a scalar is broadcast; an annotation
    // coil does not know leaves the argument a list.
    let r = start(
        "hints_missing.py",
        "scalar_broadcast",
        UdfKind::Vectorized,
        &["python.worker-count=1", "python.fn-execution.bundle.size=3"],
    );
    assert_eq!(r.call(&ints(0..3)).unwrap(), vec![Value::Int(3); 3]);
    let r = start(
        "hints_missing.py",
        "other_series",
        UdfKind::Vectorized,
        &["python.worker-count=1"],
    );
    assert_eq!(
        r.call(&ints(0..3)).unwrap(),
        vec![Value::Int(0), Value::Int(2), Value::Int(4)]
    );
}
