//! Sub-interpreter mode under load (issue 10): two or more own-GIL
//! sub-interpreters using the standard library at once, through several
//! runner start/stop cycles, never crash the host and never answer
//! differently from plain Python.
//!
//! A crash here kills the test process, which nextest reports as a failure.

use std::process::{Command, Stdio};

use coil_host::{ExecutionMode, UdfKind};
use coil_ipc::Value;

use crate::process::{ints, reference, start};

/// Runner start/stop cycles (every cycle creates and ends the interpreters;
/// the crashes of issue 10 came at the end of a run).
const CYCLES: usize = 4;
/// Rows of the every-module UDF per cycle (~150 us a row).
const MIX_ROWS: i64 = 2_000;
/// Rows of the datetime-only UDF per cycle.
const DT_ROWS: i64 = 20_000;

fn as_json(values: &[Value]) -> serde_json::Value {
    serde_json::Value::Array(values.iter().map(coil::json::to_json).collect())
}

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

/// The command line of issue 10, which died with `munmap_chunk(): invalid
/// pointer` after writing every row: now exit 0 and every row right.
#[test]
fn issue_10_coil_run_with_datetime_in_two_subinterpreters_exits_cleanly() {
    let udf = crate::process::udfs().join("stdlib_mix.py");
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
    for run in 0..3 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coil"))
            .args(["run", "--udf"])
            .arg(format!("{}:dt_only", udf.display()))
            .args(["--mode", "sub-interpreter", "--workers", "2"])
            .args(["--conf", "python.fn-execution.bundle.size=100"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feed = input.clone();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(feed.as_bytes()).unwrap();
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
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
