//! `python.fn-execution.on-error` (issue 12, part 1): under `skip` and
//! `dead-letter` a row that fails — the UDF raised, timed out, killed its
//! worker, or returned a value coil cannot hold — fails alone, with its
//! input and its error, and every other row is answered, in order, in
//! every mode; `coil run` writes failed rows to `--errors FILE` and exits 1.

use coil_host::{RowError, RunError, Runner, UdfKind};
use coil_ipc::Value;

use crate::util::{coil, ints, modes, start};

/// Rows 0..ROWS; the fault UDFs fail on 13.
const ROWS: i64 = 60;

fn per_row(mode: &str, extra: &[&'static str]) -> Vec<String> {
    let mut pairs = vec![
        format!("python.execution-mode={mode}"),
        "python.worker-count=2".into(),
        "python.fn-execution.bundle.size=8".into(),
        "python.fn-execution.on-error=skip".into(),
    ];
    pairs.extend(extra.iter().map(|s| s.to_string()));
    pairs
}

fn runner(file: &str, name: &str, kind: UdfKind, pairs: &[String]) -> Runner {
    let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
    start(file, name, kind, &pairs)
}

/// Checks that every row but 13 was answered with `x + 1`, in order, and
/// returns row 13's error.
fn only_13_failed(out: Vec<Result<Value, RowError>>) -> RowError {
    assert_eq!(out.len(), ROWS as usize, "one answer per row");
    let mut failed = None;
    for (x, r) in out.into_iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(v, Value::Int(x as i64 + 1), "row {x}"),
            Err(e) if x == 13 => failed = Some(e),
            Err(e) => panic!("row {x} failed: {e}"),
        }
    }
    let e = failed.expect("row 13 failed");
    assert_eq!(e.row, 13);
    assert_eq!(e.args, vec![Value::Int(13)]);
    e
}

#[test]
fn a_raising_row_fails_alone_with_its_input_and_traceback_in_every_mode() {
    for mode in modes() {
        let r = runner(
            "basic.py",
            "fails_on_three",
            UdfKind::Scalar,
            &per_row(mode, &[]),
        );
        let out = r.call_each(&ints(0..ROWS)).unwrap();
        for (x, v) in out.iter().enumerate() {
            if x != 3 {
                assert_eq!(v.as_ref().unwrap(), &Value::Int(2 * x as i64), "{mode}");
            }
        }
        let e = out[3].as_ref().unwrap_err();
        assert_eq!((e.row, e.args.clone()), (3, vec![Value::Int(3)]), "{mode}");
        match &e.error {
            RunError::Udf { row: 3, error } => {
                assert_eq!(error.type_name, "ValueError");
                assert!(error.traceback.contains("three is not allowed"), "{mode}");
            }
            other => panic!("{mode}: {other:?}"),
        }
        // A stream yields the same, one item per row; the error's place
        // is row 3's.
        let mut stream = r.stream();
        for row in ints(0..10) {
            stream.push(row);
        }
        let items: Vec<_> = stream.by_ref().collect();
        assert_eq!(items.len(), 10, "{mode}");
        assert!(
            matches!(&items[3], Err(RunError::Row(e)) if e.row == 3),
            "{mode}"
        );
        assert_eq!(r.restarts(), 0, "{mode}: no executor was replaced");
    }
}

#[test]
fn under_fail_the_rows_batch_fails_and_call_stops_there() {
    let r = start(
        "basic.py",
        "fails_on_three",
        UdfKind::Scalar,
        &["python.worker-count=1", "python.fn-execution.bundle.size=8"],
    );
    assert!(matches!(
        r.call_each(&ints(0..ROWS)),
        Err(RunError::Udf { row: 3, .. })
    ));
    // Under skip, `call` stops at the first row error too (use call_each).
    let r = runner(
        "basic.py",
        "fails_on_three",
        UdfKind::Scalar,
        &per_row("process", &[]),
    );
    assert!(matches!(r.call(&ints(0..ROWS)), Err(RunError::Row(e)) if e.row == 3));
}

#[test]
fn a_row_past_the_timeout_fails_alone_in_every_mode() {
    for mode in modes() {
        let r = runner(
            "faults.py",
            "spins",
            UdfKind::Scalar,
            &per_row(mode, &["python.fn-execution.timeout=300"]),
        );
        let e = only_13_failed(r.call_each(&ints(0..ROWS)).unwrap());
        assert!(
            matches!(e.error, RunError::Timeout { row: Some(13), .. }),
            "{mode}: {:?}",
            e.error
        );
        if mode != "process" {
            // Interrupted, not replaced: the executor went on with the
            // batch's other rows.
            assert_eq!(r.restarts(), 0, "{mode}");
        }
        // And the runner still works.
        assert_eq!(r.call(&ints([1])).unwrap(), vec![Value::Int(2)], "{mode}");
    }
}

#[test]
fn a_row_that_kills_its_worker_fails_alone_and_the_rest_of_its_batch_runs_again() {
    for name in ["sigkill", "segfault", "exits"] {
        for retries in ["0", "1"] {
            let r = runner(
                "faults.py",
                name,
                UdfKind::Scalar,
                &per_row(
                    "process",
                    &[if retries == "0" {
                        "python.fn-execution.retries=0"
                    } else {
                        "python.fn-execution.retries=1"
                    }],
                ),
            );
            let e = only_13_failed(r.call_each(&ints(0..ROWS)).unwrap());
            assert!(
                matches!(e.error, RunError::WorkerDied { row: Some(13), .. }),
                "{name}: {:?}",
                e.error
            );
            // Killed once, or once more with a retry.
            let expected = if retries == "0" { 1 } else { 2 };
            assert_eq!(r.restarts(), expected, "{name} retries={retries}");
        }
    }
}

#[test]
fn vectorized_table_and_unholdable_results_fail_row_by_row() {
    let r = runner(
        "faults.py",
        "vector_fails_on_13",
        UdfKind::Vectorized,
        &per_row("process", &[]),
    );
    let e = only_13_failed(r.call_each(&ints(0..ROWS)).unwrap());
    assert!(
        matches!(&e.error, RunError::Udf { row: 13, error } if error.message.contains("13 is in"))
    );
    let r = runner(
        "faults.py",
        "odd_value_on_13",
        UdfKind::Scalar,
        &per_row("multi-thread", &[]),
    );
    let e = only_13_failed(r.call_each(&ints(0..ROWS)).unwrap());
    assert!(
        matches!(&e.error, RunError::BadRow { row: Some(13), message } if message.contains("set")),
        "{:?}",
        e.error
    );
    let r = runner(
        "faults.py",
        "table_fails_on_13",
        UdfKind::Table,
        &per_row("process", &[]),
    );
    let out = r.call_each(&ints(0..ROWS)).unwrap();
    assert_eq!(out.len(), ROWS as usize);
    assert!(matches!(&out[13], Err(e) if matches!(e.error, RunError::Udf { row: 13, .. })));
    let rows = |x: i64| {
        Value::List(vec![
            Value::List(vec![Value::Int(x)]),
            Value::List(vec![Value::Int(x + 1)]),
        ])
    };
    assert_eq!(out[12].as_ref().unwrap(), &rows(12));
    assert_eq!(out[14].as_ref().unwrap(), &rows(14));
}

/// Lines 1..=n, each `[x]`, with line `bad` not JSON.
fn input(n: i64, bad: Option<i64>) -> String {
    (1..=n)
        .map(|x| {
            if Some(x) == bad {
                "[oops\n".to_string()
            } else {
                format!("[{x}]\n")
            }
        })
        .collect()
}

#[test]
fn coil_run_writes_failed_rows_to_the_errors_file_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("coil-on-error-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let errors = dir.join("errors.jsonl");
    let errors_arg = errors.to_str().unwrap();
    // The case: a timeout on line 6 of 20 (value 13 on line 13
    // here), and a line that is not JSON.
    for mode in modes() {
        let out = coil(
            &[
                "run",
                "--udf",
                "tests/udfs/faults.py:spins",
                "--mode",
                mode,
                "--workers",
                "2",
                "--conf",
                "python.fn-execution.timeout=300",
                "--errors",
                errors_arg,
            ],
            &input(20, Some(5)),
        );
        assert_eq!(out.status.code(), Some(1), "{mode}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let want: String = (1..=20)
            .filter(|x| *x != 5 && *x != 13)
            .map(|x| format!("{}\n", x + 1))
            .collect();
        assert_eq!(stdout, want, "{mode}: every other row, in order");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains("1 row failed and 1 input line was not a row: written to"),
            "{mode}: {stderr}"
        );
        let mut records: Vec<serde_json::Value> = std::fs::read_to_string(&errors)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        records.sort_by_key(|r| r["line"].as_u64());
        assert_eq!(records.len(), 2, "{mode}");
        assert_eq!(records[0]["line"], 5);
        assert_eq!(records[0]["text"], "[oops");
        assert_eq!(records[0]["error"]["kind"], "input");
        assert_eq!(records[1]["line"], 13);
        assert_eq!(records[1]["input"], serde_json::json!([13]));
        assert_eq!(records[1]["error"]["kind"], "timeout", "{mode}");
    }
    // A raising row: its type, message and traceback.
    let out = coil(
        &[
            "run",
            "--udf",
            "tests/udfs/basic.py:fails_on_three",
            "--errors",
            errors_arg,
        ],
        &input(6, None),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "2\n4\n8\n10\n12\n");
    let record: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&errors).unwrap().trim()).unwrap();
    assert_eq!(record["line"], 3);
    assert_eq!(record["error"]["kind"], "raised");
    assert_eq!(record["error"]["type"], "ValueError");
    assert!(record["error"]["traceback"]
        .as_str()
        .unwrap()
        .contains("raise ValueError"));
    // skip: the same output, nothing written, the count on stderr.
    let out = coil(
        &[
            "run",
            "--udf",
            "tests/udfs/basic.py:fails_on_three",
            "--conf",
            "python.fn-execution.on-error=skip",
        ],
        &input(6, None),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "2\n4\n8\n10\n12\n");
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("line 3: the UDF raised ValueError"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn under_fail_coil_run_delivers_the_rows_before_a_bad_line_and_refuses_conflicting_flags() {
    let out = coil(
        &["run", "--udf", "tests/udfs/basic.py:inc"],
        &input(6, Some(3)),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "2\n3\n");
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("line 3: invalid JSON"));
    for (conf, message) in [
        (
            vec!["--conf", "python.fn-execution.on-error=dead-letter"],
            "needs --errors FILE",
        ),
        (
            vec![
                "--conf",
                "python.fn-execution.on-error=fail",
                "--errors",
                "/tmp/x.jsonl",
            ],
            "python.fn-execution.on-error=fail was set",
        ),
        (
            vec!["--input", "Cargo.toml", "--errors", "Cargo.toml"],
            "are the same file",
        ),
    ] {
        let mut args = vec!["run", "--udf", "tests/udfs/basic.py:inc"];
        args.extend(conf);
        let out = coil(&args, "");
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(message), "{stderr}");
    }
}
