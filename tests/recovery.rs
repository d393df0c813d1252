//! Recovery that survives faults during recovery (issue 12, part 2): a
//! replacement worker that dies while it starts is retried with a bounded
//! back-off, and so is a first worker (issue 24); a limit of failed
//! starts ends in a clear error.

use std::path::PathBuf;

use coil_host::{RunError, Runner, StartError, UdfKind, UdfSpec, WorkerExit};
use coil_ipc::Value;

use crate::util::{config, ints, worker};

/// A UDF whose worker kills itself on row 50 (once), and whose module,
/// loaded by every worker that starts, exits during loading for the starts
/// numbered in `dying_starts` (0 is the first worker). Starts are counted
/// with files created atomically, so concurrent starts cannot collide.
fn udf(dying_starts: &str) -> (PathBuf, UdfSpec) {
    let dir = std::env::temp_dir().join(format!(
        "coil-recovery-{}-{}",
        std::process::id(),
        dying_starts.len()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let code = format!(
        r#"import os
DIR = {dir:?}

def _take(prefix):
    i = 0
    while True:
        try:
            os.close(os.open(os.path.join(DIR, f"{{prefix}}-{{i}}"), os.O_CREAT | os.O_EXCL))
            return i
        except FileExistsError:
            i += 1

if _take("start") in {dying_starts}:
    os._exit(3)

def f(x):
    if x == 50 and _take("death") == 0:
        os.kill(os.getpid(), 9)
    return x + 1
"#,
        dir = dir.display().to_string()
    );
    let file = dir.join("dies.py");
    std::fs::write(&file, code).unwrap();
    let spec = UdfSpec::new(format!("{}:f", file.display())).kind(UdfKind::Scalar);
    (dir, spec)
}

fn runner(spec: UdfSpec) -> Runner {
    let config = config(&[
        "python.worker-count=1",
        "python.fn-execution.bundle.size=10",
        "python.fn-execution.retries=1",
    ]);
    Runner::with_worker_command(&config, spec, worker()).unwrap()
}

#[test]
fn a_replacement_that_dies_while_starting_is_started_again() {
    // The worker dies on row 50; its first three replacements die while
    // starting; the fourth serves the retried batch and the rest.
    let (dir, spec) = udf("(1, 2, 3)");
    let runner = runner(spec);
    let got = runner.call(&ints(0..200)).unwrap();
    assert_eq!(got, (1..=200).map(Value::Int).collect::<Vec<_>>());
    assert_eq!(runner.restarts(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn replacements_that_never_start_end_in_a_clear_error() {
    let (dir, spec) = udf("range(1, 1000)");
    let runner = runner(spec);
    match runner.call(&ints(0..200)) {
        Err(RunError::Restart {
            rows,
            attempts,
            source,
        }) => {
            assert_eq!(attempts, 5);
            // Row 50 killed its worker; its batch (bundle 10) found none.
            assert_eq!(rows, 50..60);
            assert!(
                matches!(
                    *source,
                    StartError::Exited {
                        exit: WorkerExit::Code(3),
                        ..
                    }
                ),
                "{source:?}"
            );
        }
        other => panic!("expected a restart error, got {other:?}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_first_worker_that_dies_while_starting_is_started_again() {
    // The first worker (and the next) die while loading: the runner still
    // starts, and the run is exact, as after a replacement's failed start.
    let (dir, spec) = udf("(0, 1)");
    let runner = runner(spec);
    let got = runner.call(&ints(0..200)).unwrap();
    assert_eq!(got, (1..=200).map(Value::Int).collect::<Vec<_>>());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn first_starts_that_never_succeed_say_how_many_were_made() {
    let (dir, spec) = udf("range(0, 1000)");
    let config = config(&["python.worker-count=1"]);
    match Runner::with_worker_command(&config, spec, worker()) {
        Err(e @ StartError::Attempts { attempts: 5, .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("worker exited while starting (exited with code 3)")
                    && text.contains("(5 attempts to start it, with back-off)"),
                "{text}"
            );
        }
        other => panic!("expected a start error after 5 attempts, got {other:?}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}
