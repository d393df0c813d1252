//! `--conf KEY=VALUE` as a new user writes it: durations with units,
//! `cores`, directories that do not exist, keys spelled as SQL spells them.

use coil_host::{Runner, StartError, UdfSpec};

use crate::util::{coil, config, udfs, worker};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `coil run` of `tests/udfs/basic.py:inc` over three rows with `conf`.
fn run_inc(conf: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--udf", "tests/udfs/basic.py:inc", "--workers", "1"];
    for pair in conf {
        args.extend(["--conf", pair]);
    }
    coil(&args, "[1]\n[2]\n[3]\n")
}

#[test]
fn every_time_key_takes_a_duration_with_a_unit() {
    let out = run_inc(&[
        "python.fn-execution.timeout=2s",
        "python.worker.start-timeout=1min",
        "python.fn-execution.bundle.time=500ms",
        "python.fn-execution.bundle.target-time=5ms",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "2\n3\n4\n");
    // Plain numbers stay milliseconds.
    let out = run_inc(&["python.fn-execution.timeout=2000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_duration_that_is_not_one_names_the_forms_taken() {
    let out = run_inc(&["python.fn-execution.timeout=2 days"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("python.fn-execution.timeout") && err.contains("500ms, 2s, 1min, 1h"),
        "{err}"
    );
}

#[test]
fn worker_count_takes_cores_the_default_the_docs_show() {
    let out = run_inc(&["python.worker-count=cores"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "2\n3\n4\n");
}

#[test]
fn python_files_that_do_not_exist_are_refused_naming_the_path() {
    let out = run_inc(&["python.files=/no/such/dir"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("python.files /no/such/dir: does not exist"),
        "{err}"
    );
    // The second of two, too; and `coil env` says the same.
    let both = format!("python.files={},/no/such/dir", udfs().display());
    let out = coil(&["env", "--conf", &both], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("/no/such/dir"),
        "{}",
        text(&out.stderr)
    );
    // From the host API: a start error, in every mode.
    for mode in ["process", "multi-thread"] {
        let c = config(&[
            &format!("python.execution-mode={mode}"),
            "python.files=/no/such/dir",
        ]);
        let spec = UdfSpec::new(format!("{}:inc", udfs().join("basic.py").display()));
        match Runner::with_worker_command(&c, spec, worker()) {
            Err(e @ StartError::Environment { .. }) => {
                assert!(e.to_string().contains("/no/such/dir"), "{e}")
            }
            Err(e) => panic!("{mode}: another error: {e}"),
            Ok(_) => panic!("{mode}: started with python.files=/no/such/dir"),
        }
    }
}

#[test]
fn a_key_spelled_with_underscores_names_the_key_to_write() {
    let out = run_inc(&["python.execution_mode=process"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("\"python.execution_mode\"") && err.contains("write python.execution-mode"),
        "{err}"
    );
}
