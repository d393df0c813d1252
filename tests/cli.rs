//! The `coil` command line.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn coil(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coil"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_writes_one_json_line_per_input_line_in_order() {
    let input: String = (0..2500).map(|i| format!("[{i}]\n")).collect();
    let out = coil(
        &[
            "run",
            "--udf",
            "tests/udfs/basic.py:inc",
            "--workers",
            "2",
            "--conf",
            "python.fn-execution.bundle.size=100",
        ],
        &input,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected: String = (1..=2500).map(|i| format!("{i}\n")).collect();
    assert_eq!(text(&out.stdout), expected);
}

#[test]
fn table_udf_lines_are_arrays_of_rows() {
    let out = coil(
        &[
            "run",
            "--udf",
            "tests/udfs/basic.py:split_words",
            "--kind",
            "table",
            "--workers",
            "1",
        ],
        "[\"a bb\"]\n[\"\"]\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "[[0,\"a\"],[1,\"bb\"]]\n[]\n");
}

#[test]
fn udf_output_goes_to_the_log_never_to_stdout() {
    let out = coil(
        &[
            "run",
            "--udf",
            "tests/udfs/basic.py:noisy",
            "--workers",
            "1",
        ],
        "[1]\n[2]\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "1\n2\n");
    let err = text(&out.stderr);
    for needle in ["noisy saw 1", "noisy warns 2", "noisy logged 2", "worker"] {
        assert!(err.contains(needle), "{needle:?} not in the log:\n{err}");
    }
}

#[test]
fn a_bad_json_line_names_its_line_and_fails() {
    let out = coil(
        &["run", "--udf", "tests/udfs/basic.py:inc", "--workers", "1"],
        "[1]\n\n[2\n[3]\n",
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("invalid JSON"),
        "{err}"
    );
}

#[test]
fn a_udf_error_names_its_line_with_the_traceback() {
    let out = coil(
        &[
            "run",
            "--udf",
            "tests/udfs/basic.py:fails_on_three",
            "--workers",
            "1",
        ],
        "[1]\n[2]\n\n[3]\n[4]\n",
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("line 4: the UDF raised ValueError"), "{err}");
    assert!(
        err.contains("Traceback") && err.contains("fails_on_three"),
        "{err}"
    );
}

#[test]
fn bad_configuration_and_udf_paths_are_clear_errors() {
    let out = coil(
        &[
            "run",
            "--udf",
            "tests/udfs/basic.py:inc",
            "--conf",
            "python.nope=1",
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown configuration key"),
        "{}",
        text(&out.stderr)
    );
    let out = coil(
        &["run", "--udf", "tests/udfs/basic.py:inc", "--mode", "fast"],
        "",
    );
    assert!(
        text(&out.stderr).contains("process, multi-thread"),
        "{}",
        text(&out.stderr)
    );
    let out = coil(&["run", "--udf", "tests/udfs/nothing.py:inc"], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
    assert!(Path::new(env!("CARGO_BIN_EXE_coil")).exists());
}

#[test]
fn the_readme_demo_runs_over_its_shipped_input() {
    let dir = std::env::temp_dir().join(format!("coil-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_file = dir.join("slugs.jsonl");
    let out = coil(
        &[
            "run",
            "--udf",
            "examples/udfs/demo.py:slug",
            "--input",
            "examples/data/titles.jsonl",
            "--output",
            out_file.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "results go to --output");
    let lines: Vec<String> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 1000);
    assert_eq!(lines[0], r#"["cafe-backpack-model-51","★"]"#);
    assert!(
        text(&out.stderr).contains("1000 rows in"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
