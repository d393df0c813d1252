//! Sub-interpreter mode under load (issue 10): two or more own-GIL
//! sub-interpreters using the standard library at once, through several
//! runner start/stop cycles, never crash the host and never answer
//! differently from plain Python.
//!
//! A crash here kills the test process, which nextest reports as a failure.

use std::process::Command;

use coil_host::{ExecutionMode, RunError, UdfKind};
use coil_ipc::Value;

use crate::util::{as_json, coil, ints, reference, start, udfs};

/// Runner start/stop cycles (every cycle creates and ends the interpreters;
/// the crashes of issue 10 came at the end of a run).
const CYCLES: usize = 4;
/// Rows of the every-module UDF per cycle (~150 us a row).
const MIX_ROWS: i64 = 2_000;
/// Rows of the datetime-only UDF per cycle.
const DT_ROWS: i64 = 20_000;

#[test]
fn issue_10_stdlib_modules_in_concurrent_subinterpreters_never_crash_or_answer_wrong() {
    let mix_rows = ints(0..MIX_ROWS);
    let dt_rows = ints(0..DT_ROWS);
    let mix_want = reference("stdlib_mix.py", "mix", UdfKind::Scalar, &mix_rows);
    let dt_want = reference("stdlib_mix.py", "dt_only", UdfKind::Scalar, &dt_rows);
    for workers in [2, 3] {
        for cycle in 0..CYCLES {
            let pairs = [
                "python.execution-mode=sub-interpreter",
                &format!("python.worker-count={workers}"),
                "python.fn-execution.bundle.size=25",
            ];
            let mix = start("stdlib_mix.py", "mix", UdfKind::Scalar, &pairs);
            let dt = start("stdlib_mix.py", "dt_only", UdfKind::Scalar, &pairs);
            assert_eq!(mix.mode(), ExecutionMode::SubInterpreter);
            // Two runners, each with its own interpreters, at once.
            let (got_mix, got_dt) = std::thread::scope(|s| {
                let m = s.spawn(|| mix.call(&mix_rows));
                let d = s.spawn(|| dt.call(&dt_rows));
                (m.join().unwrap(), d.join().unwrap())
            });
            let got_mix = got_mix.unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            let got_dt = got_dt.unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
            let wrong = |got: &serde_json::Value, want: &serde_json::Value| {
                got.as_array()
                    .unwrap()
                    .iter()
                    .zip(want.as_array().unwrap())
                    .filter(|(a, b)| a != b)
                    .count()
            };
            let (gm, gd) = (as_json(&got_mix), as_json(&got_dt));
            assert_eq!(
                wrong(&gm, &mix_want),
                0,
                "{workers} workers, cycle {cycle}: wrong rows of mix"
            );
            assert_eq!(gm, mix_want, "{workers} workers, cycle {cycle}");
            assert_eq!(
                wrong(&gd, &dt_want),
                0,
                "{workers} workers, cycle {cycle}: wrong rows of dt_only"
            );
            assert_eq!(gd, dt_want, "{workers} workers, cycle {cycle}");
            // Dropping the runners ends their interpreters, one at a time.
        }
    }
}

/// `coil run` of `target` (`FILE.py:NAME`) over JSON Lines `input` in two
/// sub-interpreters, with batches of `bundle` rows.
fn coil_run_in_two_subinterpreters(
    target: &str,
    bundle: usize,
    input: &str,
) -> std::process::Output {
    let bundle = format!("python.fn-execution.bundle.size={bundle}");
    coil(
        &[
            "run",
            "--udf",
            target,
            "--mode",
            "sub-interpreter",
            "--workers",
            "2",
            "--conf",
            &bundle,
        ],
        input,
    )
}

/// `runs` runs of [`coil_run_in_two_subinterpreters`], each of which must
/// exit 0 with the output `want`.
fn exits_cleanly_in_two_subinterpreters(
    target: &str,
    bundle: usize,
    input: &str,
    want: &str,
    runs: usize,
) {
    for run in 0..runs {
        let out = coil_run_in_two_subinterpreters(target, bundle, input);
        assert!(
            out.status.success(),
            "run {run}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout) == want,
            "run {run}: wrong output"
        );
    }
}

/// The command line of issue 10, which died with `munmap_chunk(): invalid
/// pointer` after writing every row: now exit 0 and every row right.
#[test]
fn issue_10_coil_run_with_datetime_in_two_subinterpreters_exits_cleanly() {
    let udf = udfs().join("stdlib_mix.py");
    let input: String = (0..DT_ROWS).map(|i| format!("[{i}]\n")).collect();
    let want = reference(
        "stdlib_mix.py",
        "dt_only",
        UdfKind::Scalar,
        &ints(0..DT_ROWS),
    );
    let want: String = want
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{v}\n"))
        .collect();
    let target = format!("{}:dt_only", udf.display());
    exits_cleanly_in_two_subinterpreters(&target, 100, &input, &want, 3);
}

/// Rows of the call-time fallback tests.
const LAZY_ROWS: i64 = 2_000;

#[test]
fn an_import_that_fails_only_at_call_time_moves_the_runner_to_process_mode() {
    let pairs = [
        "python.execution-mode=sub-interpreter",
        "python.worker-count=2",
        "python.fn-execution.bundle.size=10",
    ];
    // Every row needs the module: the first batch fails in a sub-interpreter
    // and everything runs in process mode.
    let runner = start("lazy_import.py", "lazy", UdfKind::Scalar, &pairs);
    assert_eq!(runner.mode(), ExecutionMode::SubInterpreter);
    let got = runner.call(&ints(0..LAZY_ROWS)).unwrap();
    assert_eq!(got, (1..=LAZY_ROWS).map(Value::Int).collect::<Vec<_>>());
    assert_eq!(runner.mode(), ExecutionMode::Process);
    let m = runner.metrics();
    assert_eq!(
        (m.rows_in, m.rows_out, m.errors),
        (LAZY_ROWS as u64, LAZY_ROWS as u64, 0)
    );
    // And it stays there.
    assert_eq!(runner.call(&ints([7])).unwrap(), vec![Value::Int(8)]);
    assert_eq!(runner.mode(), ExecutionMode::Process);

    // Some rows from 500 on need it: the batches that succeeded in
    // sub-interpreters are kept, the rest run in process mode; each row
    // answered once, in order, through a stream.
    let runner = start("lazy_import.py", "lazy_some", UdfKind::Scalar, &pairs);
    let mut stream = runner.stream();
    let mut got = Vec::new();
    for x in 0..LAZY_ROWS {
        stream.push(vec![Value::Int(x)]);
        while let Some(v) = stream.try_pull() {
            got.push(v.unwrap());
        }
    }
    for v in stream.by_ref() {
        got.push(v.unwrap());
    }
    drop(stream);
    assert_eq!(
        got,
        (0..LAZY_ROWS)
            .map(|x| Value::Int(2 * x))
            .collect::<Vec<_>>()
    );
    assert_eq!(runner.mode(), ExecutionMode::Process);
    let m = runner.metrics();
    assert_eq!(
        (m.rows_in, m.rows_out),
        (LAZY_ROWS as u64, LAZY_ROWS as u64)
    );
}

#[test]
fn in_strict_mode_a_call_time_incompatibility_names_the_module_and_the_row() {
    let runner = start(
        "lazy_import.py",
        "lazy_late",
        UdfKind::Scalar,
        &[
            "python.execution-mode=sub-interpreter",
            "python.execution-mode.strict=true",
            "python.worker-count=1",
            "python.fn-execution.bundle.size=100",
        ],
    );
    match runner.call(&ints(0..LAZY_ROWS)) {
        Err(RunError::SubInterpreterIncompatible { row, module, error }) => {
            assert_eq!((row, module.as_str()), (500, "_testsinglephase"));
            assert_eq!(error.type_name, "ImportError");
            assert!(error.traceback.contains("lazy_late"), "{}", error.traceback);
        }
        other => panic!("expected an incompatibility error, got {other:?}"),
    }
    assert_eq!(runner.mode(), ExecutionMode::SubInterpreter);
}

#[test]
fn coil_run_falls_back_at_call_time_with_one_warning() {
    let udf = udfs().join("lazy_import.py");
    let input: String = (0..LAZY_ROWS).map(|i| format!("[{i}]\n")).collect();
    let target = format!("{}:lazy_some", udf.display());
    let out = coil_run_in_two_subinterpreters(&target, 10, &input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let want: String = (0..LAZY_ROWS).map(|x| format!("{}\n", 2 * x)).collect();
    assert!(String::from_utf8_lossy(&out.stdout) == want, "wrong output");
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("imports _testsinglephase, which cannot load in a sub-interpreter"))
        .count();
    assert_eq!(warnings, 1, "{stderr}");
}

#[test]
fn coil_bench_reports_a_call_time_incompatibility_and_never_advises_that_mode() {
    let dir = std::env::temp_dir().join(format!("coil-lazy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("ints.jsonl");
    let lines: String = (0..400).map(|i| format!("[{i}]\n")).collect();
    std::fs::write(&input, lines).unwrap();
    let json = dir.join("report.json");
    let udf = udfs().join("lazy_import.py");
    let out = Command::new(env!("CARGO_BIN_EXE_coil"))
        .args(["bench", "--udf"])
        .arg(format!("{}:lazy", udf.display()))
        .arg("--input")
        .arg(&input)
        .args(["--workers", "2", "--repeat", "1", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("sub-interpreter*"), "{stdout}");
    assert!(
        stdout.contains("sub-interpreter ran as process: imports _testsinglephase, which cannot load in a sub-interpreter"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["subinterpreter_blocker"], "_testsinglephase");
    assert_ne!(report["advice"]["mode"], "sub-interpreter");
    let sub = report["modes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mode"] == "sub-interpreter")
        .unwrap();
    assert_eq!(sub["ran_as"], "process");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `coil run`s of the readline test: before coil serialised extension
/// inits, 19 runs of 60 crashed a free-threaded 3.14 host.
const READLINE_RUNS: usize = 16;

#[test]
fn extension_inits_in_concurrent_subinterpreters_run_one_at_a_time_and_never_crash() {
    // Every sub-interpreter's extension loader takes coil's lock.
    let runner = start(
        "lazy_import.py",
        "extension_loader_serialised",
        UdfKind::Scalar,
        &[
            "python.execution-mode=sub-interpreter",
            "python.worker-count=2",
            "python.fn-execution.bundle.size=10",
        ],
    );
    assert_eq!(runner.mode(), ExecutionMode::SubInterpreter);
    assert_eq!(
        runner.call(&ints(0..100)).unwrap(),
        vec![Value::Int(1); 100]
    );
    drop(runner);

    // Two sub-interpreters importing readline on their first batch: its
    // single-phase init runs before CPython refuses the module, and two of
    // them at once crashed the host about one run in three on 3.14t. Each
    // run falls back to process mode (or, where readline loads, stays) and
    // answers every row.
    let udf = udfs().join("lazy_import.py");
    let target = format!("{}:readline_first", udf.display());
    let input: String = (0..1000).map(|i| format!("[{i}]\n")).collect();
    let want: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    exits_cleanly_in_two_subinterpreters(&target, 10, &input, &want, READLINE_RUNS);
}
