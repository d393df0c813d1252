//! The `coil` command line.

use std::path::Path;
use std::sync::Arc;

use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use coil_host::arrow_array::cast::AsArray;
use coil_host::arrow_array::types::Int64Type;
use coil_host::arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use coil_host::arrow_schema::{DataType, Field};

use crate::util::{coil, coil_bytes, modes, numpy, spawn_coil};

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

fn write_input(name: &str, lines: impl Iterator<Item = String>) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("coil-bench-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("input.jsonl");
    std::fs::write(&path, lines.map(|l| l + "\n").collect::<String>()).unwrap();
    path
}

#[test]
fn bench_prints_a_table_and_writes_json_and_svg() {
    let input = write_input("inc", (0..400).map(|i| format!("[{i}]")));
    let dir = input.parent().unwrap().to_path_buf();
    let (json_path, svg_path) = (dir.join("report.json"), dir.join("report.svg"));
    let out = coil(
        &[
            "bench",
            "--udf",
            "tests/udfs/basic.py:inc",
            "--input",
            input.to_str().unwrap(),
            "--workers",
            "2",
            "--repeat",
            "1",
            "--json",
            json_path.to_str().unwrap(),
            "--plot",
            svg_path.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for needle in [
        "direct",
        "process",
        "multi-thread",
        "sub-interpreter",
        "batch p50",
        "Advice: use",
    ] {
        assert!(table.contains(needle), "{needle:?} missing:\n{table}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["rows"], 400);
    let modes = report["modes"].as_array().unwrap();
    assert_eq!(modes.len(), 3);
    for m in modes {
        assert!(m["rows_per_sec"].as_f64().unwrap() > 0.0);
        // The runner's counters saw every row of every timed run, once.
        assert_eq!(
            m["rows_measured"].as_u64(),
            m["timed_runs"].as_u64().map(|r| 400 * r)
        );
        assert!(m["time_ns"]["python"].as_u64().unwrap() > 0);
    }
    assert!(report["advice"]["reasons"].as_array().unwrap().len() >= 3);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    assert!(svg.contains("sub-interpreter") && svg.contains("rows/s"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Which mode wins depends on the machine, so this checks only what does
/// not: numpy cannot load in a sub-interpreter, so the report names it and
/// never advises sub-interpreter mode. (The advice rules themselves are
/// tested with made-up measurements in `src/bench/advice.rs`.)
#[test]
fn bench_names_numpy_as_the_blocker_and_never_advises_sub_interpreter_for_it() {
    let input = write_input("numpy", (0..200).map(|i| format!("[{i}]")));
    let json_path = input.parent().unwrap().join("report.json");
    let np = numpy();
    let out = coil(
        &[
            "bench",
            "--conf",
            &np[0],
            "--conf",
            &np[1],
            "--udf",
            "tests/udfs/uses_numpy.py:double",
            "--input",
            input.to_str().unwrap(),
            "--workers",
            "2",
            "--repeat",
            "1",
            "--json",
            json_path.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("sub-interpreter ran as process: imports numpy"),
        "{table}"
    );
    assert!(
        table.contains("the UDF imports numpy, which cannot load in a sub-interpreter"),
        "{table}"
    );
    assert!(table.contains("Advice: use "), "{table}");
    assert!(!table.contains("Advice: use sub-interpreter"), "{table}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["subinterpreter_blocker"], "numpy");
    assert_ne!(report["advice"]["mode"], "sub-interpreter");
    let sub = report["modes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mode"] == "sub-interpreter")
        .unwrap();
    assert_eq!(sub["ran_as"], "process");
    std::fs::remove_dir_all(input.parent().unwrap()).unwrap();
}

#[test]
fn the_example_udfs_do_what_they_say() {
    let np = numpy();
    let run = |udf: &str, kind: &str, input: &str| {
        let out = coil(
            &[
                "run",
                "--udf",
                udf,
                "--kind",
                kind,
                "--workers",
                "1",
                "--conf",
                &np[0],
                "--conf",
                &np[1],
            ],
            input,
        );
        assert!(out.status.success(), "{udf}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(
        run(
            "examples/udfs/clean.py:clean",
            "scalar",
            "[\"  Ünïque   KETTLE \"]\n[\"Ｆｕｌｌ\\twidth\"]\n[null]\n"
        ),
        "\"ünïque kettle\"\n\"full width\"\nnull\n"
    );
    assert_eq!(
        run(
            "examples/udfs/extract.py:field",
            "scalar",
            "[\"{\\\"a\\\": {\\\"b\\\": [1, {\\\"c\\\": \\\"x\\\"}]}}\", \"a.b.1.c\"]\n[\"{\\\"a\\\": 1}\", \"a.z\"]\n[\"{\\\"a\\\": {\\\"k\\\": 2}}\", \"a\"]\n"
        ),
        "\"x\"\nnull\n\"{\\\"k\\\": 2}\"\n"
    );
    assert_eq!(
        run(
            "examples/udfs/stateful.py:FirstSeen",
            "scalar",
            "[\"a\"]\n[\"b\"]\n[\"a\"]\n"
        ),
        "true\ntrue\nfalse\n"
    );
    let z = run(
        "examples/udfs/vector.py:zscore",
        "vectorized",
        "[1]\n[2]\n[3]\n",
    );
    let z: Vec<f64> = z.lines().map(|l| l.parse().unwrap()).collect();
    assert!(
        (z[0] + 1.224_744_871_391_589).abs() < 1e-12
            && z[1] == 0.0
            && (z[2] - 1.224_744_871_391_589).abs() < 1e-12,
        "{z:?}"
    );
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Issue 12, part 3: `coil run` over an endless input runs in constant
/// memory. It used to keep every input line's number (8 bytes a row: 16 MB
/// over the 2,000,000 rows between the two samples here).
#[test]
fn run_keeps_flat_memory_on_a_long_input() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    /// Rows before the first sample (the host has warmed up), and in all.
    const WARM: u64 = 500_000;
    const ROWS: u64 = 2_500_000;
    /// Allowed growth between the samples: a generous bound, half of what
    /// keeping 8 bytes a row would take.
    const GROWTH_KIB: u64 = 8 * 1024;
    let mut child = spawn_coil(
        &["run", "--udf", "benches/udfs.py:inc", "--workers", "1"],
        Stdio::piped(),
        Stdio::null(),
    );
    let pid = child.id();
    let out = child.stdout.take().unwrap();
    // Results come back while the input stays open (idle input is flushed
    // after python.fn-execution.bundle.time), so each sample waits until
    // every row written so far has been answered: the host is in its steady
    // state then, however slow the machine.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = std::thread::spawn({
        let answered = answered.clone();
        move || {
            for line in BufReader::new(out).lines() {
                line.unwrap();
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            answered.load(std::sync::atomic::Ordering::Relaxed)
        }
    });
    let sample_after = |rows: u64| {
        let watchdog = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while answered.load(std::sync::atomic::Ordering::Relaxed) < rows {
            assert!(
                std::time::Instant::now() < watchdog,
                "only {} of {rows} rows answered after 120 s",
                answered.load(std::sync::atomic::Ordering::Relaxed)
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        rss_kib(pid)
    };
    let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
    let mut sample = None;
    for i in 0..ROWS {
        writeln!(stdin, "[{i}]").unwrap();
        if i + 1 == WARM {
            stdin.flush().unwrap();
            sample = Some(sample_after(WARM));
        }
    }
    stdin.flush().unwrap();
    let late = sample_after(ROWS);
    drop(stdin);
    let answered = reader.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(answered, ROWS);
    let early = sample.unwrap();
    assert!(
        late <= early + GROWTH_KIB,
        "RSS grew from {early} KiB to {late} KiB over {} rows",
        ROWS - WARM
    );
}

/// Issue 12, part 4: the CLI names the line of a value coil cannot hold
/// exactly, and of bytes that are not UTF-8.
#[test]
fn run_refuses_values_it_cannot_hold_exactly_naming_the_line() {
    let out = coil(
        &["run", "--udf", "tests/udfs/basic.py:inc"],
        "[1]\n[100000000000000000000]\n",
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("100000000000000000000 does not fit"),
        "{err}"
    );
    let deep = format!("[1]\n[{}{}]\n", "[".repeat(70), "]".repeat(70));
    let out = coil(&["run", "--udf", "tests/udfs/basic.py:inc"], &deep);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("line 2") && err.contains("nest deeper than 64"),
        "{err}"
    );
}

#[test]
fn run_names_the_line_that_is_not_utf8() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = spawn_coil(
        &["run", "--udf", "tests/udfs/basic.py:inc"],
        Stdio::null(),
        Stdio::piped(),
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"[1]\n[2]\n[\"\xff\"]\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("reading input line 3"), "{err}");
}

/// Issue 12, part 5: `coil run` never reports success for output it did not
/// deliver: a full disk is an error, not exit 0.
#[test]
fn run_fails_when_its_output_cannot_be_written() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = spawn_coil(
        &["run", "--udf", "tests/udfs/basic.py:inc"],
        std::fs::File::create("/dev/full").unwrap(),
        Stdio::piped(),
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"[1]\n[41]\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "exit 0 with nothing written");
    let err = text(&out.stderr);
    assert!(err.contains("writing the results"), "{err}");
}

/// Issue 12, part 5: `--input f --output f` (or through a link) would empty
/// the input: refused, and the input is left as it was.
#[test]
fn run_refuses_to_write_over_its_input() {
    let dir = std::env::temp_dir().join(format!("coil-same-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.jsonl");
    std::fs::write(&input, "[1]\n[2]\n").unwrap();
    let link = dir.join("link.jsonl");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&input, &link).unwrap();
    for output in [&input, &link] {
        let out = coil(
            &[
                "run",
                "--udf",
                "tests/udfs/basic.py:inc",
                "--input",
                input.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
            ],
            "",
        );
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("are the same file"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "[1]\n[2]\n");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 12, part 5: a process the UDF started, holding the worker's
/// output pipes, does not keep `coil run` waiting after its work is done.
#[test]
fn run_does_not_wait_for_a_process_the_udf_left_behind() {
    // A liveness bound: the sleeper lives 30 s; coil is done in well under.
    const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(20);
    let started = std::time::Instant::now();
    let out = coil(
        &[
            "run",
            "--udf",
            "tests/udfs/basic.py:starts_a_sleeper",
            "--workers",
            "1",
        ],
        "[1]\n[2]\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "2\n3\n");
    assert!(started.elapsed() < WATCHDOG);
}

/// Issue 12, part 5: in the in-process modes a UDF's `os._exit` would end
/// the host with exit 0 and nothing written; it is refused instead, as an
/// error naming the line.
#[test]
fn run_in_process_refuses_os_exit_naming_the_line() {
    let input: String = (0..1000).map(|i| format!("[{i}]\n")).collect();
    for mode in ["multi-thread", "sub-interpreter"] {
        let out = coil(
            &[
                "run",
                "--udf",
                "tests/udfs/basic.py:exits_on_500",
                "--mode",
                mode,
                "--workers",
                "1",
            ],
            &input,
        );
        assert!(!out.status.success(), "{mode}: exit 0");
        let err = text(&out.stderr);
        assert!(
            err.contains("line 501") && err.contains("os._exit(0) would end the host"),
            "{mode}: {err}"
        );
    }
}

/// Issue 12, part 5: on a live input (`tail -f`), a partial batch goes out
/// after `bundle.time` and its result is written at once, before the next
/// line comes.
#[test]
fn run_answers_a_live_stream_as_it_comes() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    // A liveness bound: the first answer is due after ~100 ms.
    const WATCHDOG: std::time::Duration = std::time::Duration::from_secs(20);
    let mut child = spawn_coil(
        &[
            "run",
            "--udf",
            "tests/udfs/basic.py:inc",
            "--workers",
            "1",
            "--conf",
            "python.fn-execution.bundle.time=100",
        ],
        Stdio::piped(),
        Stdio::null(),
    );
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    stdin.write_all(b"[1]\n").unwrap();
    stdin.flush().unwrap();
    // The answer to the first line arrives while its stdin stays open.
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), "2");
    stdin.write_all(b"[41]\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(rx.recv_timeout(WATCHDOG).unwrap(), "42");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// `batches` as an Arrow IPC stream.
fn ipc_stream(batches: &[RecordBatch]) -> Vec<u8> {
    let mut w = StreamWriter::try_new(Vec::new(), &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.into_inner().unwrap()
}

/// The record batches of the Arrow IPC stream `bytes`.
fn read_ipc(bytes: &[u8]) -> Vec<RecordBatch> {
    StreamReader::try_new(bytes, None)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// One record batch of `columns`, named `a`, `b`...
fn record_batch(columns: Vec<ArrayRef>) -> RecordBatch {
    let names = ["a", "b", "c"];
    RecordBatch::try_from_iter(names.iter().zip(columns)).unwrap()
}

/// A fresh directory for test `name`'s files.
fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("coil-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn run_format_arrow_answers_each_batch_with_a_result_batch_nulls_and_all() {
    let input = ipc_stream(&[
        record_batch(vec![Arc::new(Int64Array::from(vec![
            Some(1),
            None,
            Some(3),
        ]))]),
        record_batch(vec![Arc::new(Int64Array::from(vec![None, Some(41)]))]),
    ]);
    for mode in modes() {
        let out = coil_bytes(
            &[
                "run",
                "--udf",
                "tests/udfs/arrow_udfs.py:inc_or_none",
                "--format",
                "arrow",
                "--returns",
                "int64",
                "--mode",
                mode,
                "--workers",
                "2",
                "--conf",
                "python.fn-execution.bundle.size=2",
            ],
            input.clone(),
        );
        assert!(out.status.success(), "{mode}: {}", text(&out.stderr));
        let batches = read_ipc(&out.stdout);
        assert_eq!(batches.len(), 2, "{mode}: one result batch per input batch");
        for b in &batches {
            assert_eq!(
                b.schema().fields().to_vec(),
                vec![Arc::new(Field::new("result", DataType::Int64, true))]
            );
        }
        assert_eq!(
            batches[0].column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![Some(2), None, Some(4)]),
            "{mode}"
        );
        assert_eq!(
            batches[1].column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![None, Some(42)]),
            "{mode}"
        );
        assert!(
            text(&out.stderr).contains("5 rows in"),
            "{mode}: {}",
            text(&out.stderr)
        );
    }
    // Strings, from --input to --output.
    let dir = test_dir("arrow-files");
    let (input_file, output_file) = (dir.join("in.arrows"), dir.join("out.arrows"));
    std::fs::write(
        &input_file,
        ipc_stream(&[
            record_batch(vec![Arc::new(StringArray::from(vec![Some("hé"), None]))]),
            record_batch(vec![Arc::new(StringArray::from(vec!["x"]))]),
        ]),
    )
    .unwrap();
    let out = coil(
        &[
            "run",
            "--udf",
            "tests/udfs/arrow_udfs.py:upper",
            "--format",
            "arrow",
            "--returns",
            "utf8",
            "--input",
            input_file.to_str().unwrap(),
            "--output",
            output_file.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "results go to --output");
    let batches = read_ipc(&std::fs::read(&output_file).unwrap());
    assert_eq!(batches.len(), 2);
    assert_eq!(
        batches[0].column(0).as_string::<i32>(),
        &StringArray::from(vec![Some("HÉ"), None])
    );
    assert_eq!(
        batches[1].column(0).as_string::<i32>(),
        &StringArray::from(vec!["X"])
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `fails_on_three` over batches [1, 2], [4, 3, 5], [6].
fn three_batches() -> Vec<u8> {
    let ints = |v: Vec<i64>| record_batch(vec![Arc::new(Int64Array::from(v)) as ArrayRef]);
    ipc_stream(&[ints(vec![1, 2]), ints(vec![4, 3, 5]), ints(vec![6])])
}

/// Each batch's `result` column.
fn result_ints(stdout: &[u8]) -> Vec<Vec<Option<i64>>> {
    ints_of(read_ipc(stdout))
}

/// Each batch's first column, as int64s.
fn ints_of(batches: Vec<RecordBatch>) -> Vec<Vec<Option<i64>>> {
    batches
        .iter()
        .map(|b| {
            b.column(0)
                .as_primitive::<Int64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn run_format_arrow_names_the_batch_and_row_of_a_udf_error() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--udf",
            "tests/udfs/basic.py:fails_on_three",
            "--format",
            "arrow",
            "--returns",
            "int64",
            "--workers",
            "1",
        ];
        args.extend(extra);
        coil_bytes(&args, three_batches())
    };
    // The batches before it are delivered, in a stream ended as usual.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("batch 2, row 2: the UDF raised ValueError: three is not allowed (got 3)")
            && err.contains("raise ValueError"),
        "{err}"
    );
    assert_eq!(result_ints(&out.stdout), vec![vec![Some(2), Some(4)]]);

    // --errors: the row is recorded and its result is null; the rest run.
    let dir = test_dir("arrow-errors");
    let errors = dir.join("errors.jsonl");
    let out = run(&["--errors", errors.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        result_ints(&out.stdout),
        vec![
            vec![Some(2), Some(4)],
            vec![Some(8), None, Some(10)],
            vec![Some(12)]
        ]
    );
    let err = text(&out.stderr);
    assert!(err.contains("1 row failed: written to"), "{err}");
    let record: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&errors).unwrap().trim()).unwrap();
    assert_eq!(record["batch"], 2);
    assert_eq!(record["row"], 2);
    assert_eq!(record["input"], serde_json::json!([3]));
    assert_eq!(record["error"]["kind"], "raised");
    assert_eq!(record["error"]["type"], "ValueError");
    std::fs::remove_dir_all(&dir).unwrap();

    // A result that does not fit the declared type.
    let out = coil_bytes(
        &[
            "run",
            "--udf",
            "tests/udfs/arrow_udfs.py:wrong",
            "--format",
            "arrow",
            "--returns",
            "int64",
            "--workers",
            "1",
        ],
        three_batches(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("batch 1, row 1: result: a str ('nope') does not fit the declared type Int64"),
        "{err}"
    );
    assert!(read_ipc(&out.stdout).is_empty());
}

#[test]
fn run_format_arrow_refuses_input_that_is_not_an_arrow_ipc_stream() {
    let args = [
        "run",
        "--udf",
        "tests/udfs/basic.py:inc",
        "--format",
        "arrow",
        "--returns",
        "int64",
        "--workers",
        "1",
    ];
    for (what, input) in [
        ("JSON Lines", b"[1]\n[2]\n".to_vec()),
        ("nothing", Vec::new()),
    ] {
        let out = coil_bytes(&args, input);
        assert_eq!(out.status.code(), Some(1), "{what}");
        let err = text(&out.stderr);
        assert!(
            err.contains("reading standard input as an Arrow IPC stream"),
            "{what}: {err}"
        );
        assert!(out.stdout.is_empty(), "{what}");
    }
    // A stream cut short in its second batch: the first one's results are
    // delivered, the second named.
    let ints = |v: Vec<i64>| record_batch(vec![Arc::new(Int64Array::from(v)) as ArrayRef]);
    let whole = ipc_stream(&[ints(vec![1, 2]), ints(vec![4, 5, 6])]);
    // Without the end-of-stream marker (8 bytes) and 8 bytes of the last
    // batch's body.
    let out = coil_bytes(&args, whole[..whole.len() - 16].to_vec());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("reading batch 2 of the Arrow IPC stream standard input"),
        "{err}"
    );
    assert_eq!(result_ints(&out.stdout), vec![vec![Some(2), Some(3)]]);
    // A column of a type coil does not take: named.
    let months = RecordBatch::try_from_iter([(
        "months",
        Arc::new(coil_host::arrow_array::IntervalYearMonthArray::from(vec![
            1,
        ])) as ArrayRef,
    )])
    .unwrap();
    let out = coil_bytes(&args, ipc_stream(&[months]));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("batch 1, column \"months\": column 0 is Interval(YearMonth)"),
        "{err}"
    );
}

#[test]
fn run_format_arrow_needs_a_returns_type_it_knows() {
    let base = [
        "run",
        "--udf",
        "tests/udfs/basic.py:inc",
        "--format",
        "arrow",
    ];
    let usage = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        coil_bytes(&args, Vec::new())
    };
    let out = usage(&[]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = text(&out.stderr);
    assert!(err.contains("--returns <TYPE>"), "{err}");

    let out = usage(&["--returns", "decimal"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "unknown type \"decimal\" at character 1 of \"decimal\"; \
             the types taken: null, bool, int8"
        ) && err.contains("decimal128(P,S)")
            && err.contains("map<K,V>"),
        "{err}"
    );
    let out = usage(&["--returns", "list<time32[us]>"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = text(&out.stderr);
    assert!(
        err.contains("time32 takes the unit s or ms, not \"us\" at character 13"),
        "{err}"
    );

    let out = usage(&["--returns", "int64", "--kind", "table"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("table UDFs run over JSON Lines only"),
        "{}",
        text(&out.stderr)
    );

    // An aggregate groups rows: coil run points to coil sql, with the
    // command to run.
    let out = coil(
        &[
            "run",
            "--udf",
            "tests/udfs/aggregates.py:Sum",
            "--kind",
            "aggregate",
        ],
        "[1]\n",
    );
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = text(&out.stderr);
    assert!(
        err.contains("run it with coil sql")
            && err.contains("LANGUAGE PYTHON AS 'tests/udfs/aggregates.py:Sum'"),
        "{err}"
    );

    // --returns is for Arrow output only.
    let out = coil(
        &[
            "run",
            "--udf",
            "tests/udfs/basic.py:inc",
            "--returns",
            "int64",
        ],
        "[1]\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--returns declares the type of --format arrow's result column"),
        "{}",
        text(&out.stderr)
    );
}

/// A batch of three rows whose columns are of nested, temporal and
/// decimal types, each named as `pack` names its arguments (`f0`, `f1`...),
/// then a `utf8_view` column; with the `--returns` type of a struct of all
/// but that last one.
fn typed_batch() -> (RecordBatch, &'static str) {
    use coil_host::arrow_array::builder::{
        FixedSizeListBuilder, Int32Builder, Int64Builder, ListBuilder, MapBuilder, StringBuilder,
    };
    use coil_host::arrow_array::{
        Date32Array, Decimal128Array, DurationMillisecondArray, StringViewArray,
        Time64MicrosecondArray, TimestampMicrosecondArray,
    };
    let mut list = ListBuilder::new(Int64Builder::new());
    list.values().append_value(1);
    list.values().append_null();
    list.append(true);
    list.append(false);
    list.append(true);
    let mut map = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
    map.keys().append_value("k");
    map.values().append_value(2);
    map.append(true).unwrap();
    map.append(false).unwrap();
    map.keys().append_value("z");
    map.values().append_null();
    map.append(true).unwrap();
    let mut pairs = FixedSizeListBuilder::new(Int32Builder::new(), 2);
    pairs.values().append_slice(&[3, 4]);
    pairs.append(true);
    pairs.values().append_slice(&[0, 0]);
    pairs.append(false);
    pairs.values().append_slice(&[5, -6]);
    pairs.append(true);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            Decimal128Array::from(vec![Some(12345), None, Some(-5)])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        ),
        // 2024-05-01T12:30:00.000001Z, in Paris.
        Arc::new(
            TimestampMicrosecondArray::from(vec![Some(1_714_566_600_000_001), None, Some(0)])
                .with_timezone("Europe/Paris"),
        ),
        Arc::new(list.finish()),
        Arc::new(map.finish()),
        Arc::new(pairs.finish()),
        Arc::new(Time64MicrosecondArray::from(vec![
            Some(45_296_000_001),
            None,
            Some(0),
        ])),
        Arc::new(DurationMillisecondArray::from(vec![
            Some(90_500),
            None,
            Some(-1),
        ])),
        Arc::new(Date32Array::from(vec![Some(19_844), None, Some(0)])),
        // Last: a view is taken as a whole column only, not in a struct.
        Arc::new(StringViewArray::from(vec![Some("vue"), None, Some("")])),
    ];
    let names = (0..columns.len()).map(|i| format!("f{i}"));
    let batch = RecordBatch::try_from_iter(names.zip(columns)).unwrap();
    let returns = "struct<f0: decimal128(10,2), f1: timestamp[us, Europe/Paris], \
                   f2: list<int64>, f3: map<utf8,int64>, f4: fixed_size_list<int32,2>, \
                   f5: time64[us], f6: duration[ms], f7: date32>";
    (batch, returns)
}

#[test]
fn run_format_arrow_returns_nested_temporal_and_decimal_types_as_declared() {
    let (batch, returns) = typed_batch();
    let run = |udf: &str, returns: &str, batch: RecordBatch| {
        let out = coil_bytes(
            &[
                "run",
                "--udf",
                udf,
                "--format",
                "arrow",
                "--returns",
                returns,
                "--workers",
                "1",
            ],
            ipc_stream(&[batch]),
        );
        assert!(out.status.success(), "{returns}: {}", text(&out.stderr));
        let mut batches = read_ipc(&out.stdout);
        assert_eq!(batches.len(), 1, "{returns}");
        let result = batches.remove(0).column(0).clone();
        let declared = returns
            .parse::<coil_proto::TypeName>()
            .unwrap()
            .into_data_type();
        assert_eq!(result.data_type(), &declared, "{returns}");
        result
    };
    let last = batch.num_columns() - 1;
    let packed = run(
        "tests/udfs/arrow_udfs.py:pack",
        returns,
        batch.project(&(0..last).collect::<Vec<_>>()).unwrap(),
    );
    // Every value back as it went in, in a column of its declared type.
    let packed = packed.as_struct();
    for (i, column) in batch.columns()[..last].iter().enumerate() {
        assert_eq!(
            packed.column(i).to_data(),
            column.to_data(),
            "{}",
            batch.schema().field(i)
        );
    }
    let view = batch.column(last).clone();
    let same = run(
        "tests/udfs/arrow_udfs.py:same",
        "utf8_view",
        RecordBatch::try_from_iter([("a", view.clone())]).unwrap(),
    );
    assert_eq!(same.to_data(), view.to_data());
}

#[test]
fn run_format_arrow_errors_file_has_each_failed_row_s_input_as_json() {
    use coil_host::arrow_array::types::Int8Type;
    use coil_host::arrow_array::DictionaryArray;
    let (batch, _) = typed_batch();
    let colours: DictionaryArray<Int8Type> =
        vec![Some("red"), None, Some("red")].into_iter().collect();
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(colours));
    let names = (0..columns.len()).map(|i| format!("f{i}"));
    let batch = RecordBatch::try_from_iter(names.zip(columns)).unwrap();
    let dir = test_dir("arrow-typed-errors");
    let errors = dir.join("errors.jsonl");
    // A dict for an int64 column: every row fails.
    let out = coil_bytes(
        &[
            "run",
            "--udf",
            "tests/udfs/arrow_udfs.py:pack",
            "--format",
            "arrow",
            "--returns",
            "int64",
            "--workers",
            "1",
            "--errors",
            errors.to_str().unwrap(),
        ],
        ipc_stream(&[batch]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let inputs: Vec<serde_json::Value> = std::fs::read_to_string(&errors)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["input"].clone())
        .collect();
    assert_eq!(
        inputs,
        vec![
            serde_json::json!([
                "123.45",
                "2024-05-01T12:30:00.000001Z",
                [1, null],
                [["k", 2]],
                [3, 4],
                "12:34:56.000001",
                "PT90.5S",
                "2024-05-01",
                "vue",
                "red"
            ]),
            serde_json::json!([null, null, null, null, null, null, null, null, null, null]),
            serde_json::json!([
                "-0.05",
                "1970-01-01T00:00:00Z",
                [],
                [["z", null]],
                [5, -6],
                "00:00:00",
                "-PT0.001S",
                "1970-01-01",
                "",
                "red"
            ]),
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_format_arrow_measures_call_arrow_in_every_mode() {
    let dir = test_dir("arrow-bench");
    let (input, json_path) = (dir.join("in.arrows"), dir.join("report.json"));
    let batch = |from: i64| {
        record_batch(vec![Arc::new(Int64Array::from_iter(
            (from..from + 200).map(|i| (i % 7 != 0).then_some(i)),
        )) as ArrayRef])
    };
    std::fs::write(&input, ipc_stream(&[batch(0), batch(200)])).unwrap();
    // float64: the direct run's ints compare as the float column holds them.
    let out = coil(
        &[
            "bench",
            "--udf",
            "tests/udfs/arrow_udfs.py:inc_or_none",
            "--format",
            "arrow",
            "--returns",
            "float64",
            "--input",
            input.to_str().unwrap(),
            "--workers",
            "2",
            "--repeat",
            "1",
            "--json",
            json_path.to_str().unwrap(),
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for needle in ["coil bench: 400 rows", "direct", "Advice: use"] {
        assert!(table.contains(needle), "{needle:?} missing:\n{table}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(report["rows"], 400);
    let measured = report["modes"].as_array().unwrap();
    assert_eq!(measured.len(), 3);
    for m in measured {
        if m["mode"] == "sub-interpreter" && !coil_worker::SUBINTERPRETERS {
            continue;
        }
        assert!(m["failed"].is_null(), "{m}");
        assert!(m["rows_per_sec"].as_f64().unwrap() > 0.0);
        assert_eq!(
            m["rows_measured"].as_u64(),
            m["timed_runs"].as_u64().map(|r| 400 * r),
            "{m}"
        );
    }
    // Without --returns: a usage error for a UDF with no return
    // annotation...
    let bench = |udf: &str| {
        coil(
            &[
                "bench",
                "--udf",
                udf,
                "--format",
                "arrow",
                "--input",
                input.to_str().unwrap(),
                "--modes",
                "process",
                "--repeat",
                "1",
            ],
            "",
        )
    };
    let out = bench("tests/udfs/arrow_udfs.py:inc_or_none");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--returns"),
        "{}",
        text(&out.stderr)
    );
    // ...and (issue 21) the annotation's type for one that has one, as
    // `coil run --format arrow` and `coil sql` read it.
    let annotated = dir.join("annotated.py");
    std::fs::write(
        &annotated,
        "def inc_or_none(x) -> int:\n    return None if x is None else x + 1\n",
    )
    .unwrap();
    let out = bench(&format!("{}:inc_or_none", annotated.display()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("coil bench: 400 rows"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 21: `batches` as an Arrow IPC file (Feather v2), as pyarrow's
/// `ipc.new_file` writes one.
fn ipc_file(batches: &[RecordBatch]) -> Vec<u8> {
    let mut w = arrow_ipc::writer::FileWriter::try_new(Vec::new(), &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    w.into_inner().unwrap()
}

/// Each batch's `result` column of the Arrow IPC file `bytes`.
fn file_result_ints(bytes: Vec<u8>) -> Vec<Vec<Option<i64>>> {
    ints_of(
        arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap(),
    )
}

/// Issue 21, part 4: an IPC file given to `coil run --format arrow` is read
/// (it failed with "failed to fill whole buffer"), from a path and from
/// standard input; results go out as a file to `.arrow`/`.feather` and as
/// a stream to `.arrows` (Arrow's own convention).
#[test]
fn run_format_arrow_reads_arrow_ipc_files_and_writes_a_file_to_arrow_names() {
    let dir = test_dir("arrow-files");
    let ints = |v: Vec<i64>| record_batch(vec![Arc::new(Int64Array::from(v)) as ArrayRef]);
    let input = dir.join("in.arrow");
    std::fs::write(&input, ipc_file(&[ints(vec![1, 2]), ints(vec![3])])).unwrap();
    let expected = vec![vec![Some(2), Some(3)], vec![Some(4)]];
    let run = |output: &std::path::Path| {
        let args = [
            "run",
            "--udf",
            "tests/udfs/basic.py:inc",
            "--format",
            "arrow",
            "--returns",
            "int64",
            "--workers",
            "1",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ];
        let out = coil_bytes(&args, Vec::new());
        assert!(out.status.success(), "{}", text(&out.stderr));
        std::fs::read(output).unwrap()
    };
    for name in ["out.arrow", "out.feather"] {
        let written = run(&dir.join(name));
        assert!(written.starts_with(b"ARROW1"), "{name}: not an IPC file");
        assert_eq!(file_result_ints(written), expected, "{name}");
    }
    let stream = run(&dir.join("out.arrows"));
    assert_eq!(result_ints(&stream), expected);
    // From standard input, too; a stream to standard output.
    let out = coil_bytes(
        &[
            "run",
            "--udf",
            "tests/udfs/basic.py:inc",
            "--format",
            "arrow",
            "--returns",
            "int64",
            "--workers",
            "1",
        ],
        std::fs::read(&input).unwrap(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(result_ints(&out.stdout), expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 21, part 4: an Arrow stream or file given without `--format
/// arrow`, or JSON Lines given with it, is named in the error.
#[test]
fn run_names_the_other_format_when_given_the_wrong_one() {
    let ints = || record_batch(vec![Arc::new(Int64Array::from(vec![1])) as ArrayRef]);
    let jsonl = ["run", "--udf", "tests/udfs/basic.py:inc", "--workers", "1"];
    for (what, bytes) in [
        ("an Arrow IPC stream", ipc_stream(&[ints()])),
        ("an Arrow IPC file", ipc_file(&[ints()])),
    ] {
        let out = coil_bytes(&jsonl, bytes);
        assert_eq!(out.status.code(), Some(1), "{what}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "standard input is {what}, not JSON Lines: give --format arrow"
            )),
            "{what}: {err}"
        );
        assert!(out.stdout.is_empty(), "{what}");
    }
    let arrow = [
        "run",
        "--udf",
        "tests/udfs/basic.py:inc",
        "--format",
        "arrow",
        "--returns",
        "int64",
        "--workers",
        "1",
    ];
    let out = coil_bytes(&arrow, b"[1]\n".to_vec());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("it is JSON Lines, not Arrow IPC (leave out --format arrow"),
        "{err}"
    );
}

/// Issue 21, part 4: `coil run --format arrow` takes the result type from
/// the UDF's return annotation when `--returns` is not given, as SQL does.
#[test]
fn run_format_arrow_types_its_result_by_the_return_annotation() {
    let ints = |v: Vec<i64>| record_batch(vec![Arc::new(Int64Array::from(v)) as ArrayRef]);
    let out = coil_bytes(
        &[
            "run",
            "--udf",
            "tests/udfs/annotated.py:inc",
            "--format",
            "arrow",
            "--workers",
            "1",
        ],
        ipc_stream(&[ints(vec![1, 2]), ints(vec![41])]),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let batches = read_ipc(&out.stdout);
    assert_eq!(batches[0].schema().field(0).data_type(), &DataType::Int64);
    assert_eq!(
        result_ints(&out.stdout),
        vec![vec![Some(2), Some(3)], vec![Some(42)]]
    );
    // Without an annotation: still a usage error that asks for --returns.
    let out = coil_bytes(
        &[
            "run",
            "--udf",
            "tests/udfs/annotated.py:none",
            "--format",
            "arrow",
            "--workers",
            "1",
        ],
        ipc_stream(&[ints(vec![1])]),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--format arrow needs --returns <TYPE>")
            && err.contains("has no return annotation"),
        "{err}"
    );
}

/// Issue 21, part 4: a UDF annotated `np.ndarray` runs vectorized in
/// `coil run` without `--kind vectorized` (it got ints and failed with
/// "'int' object has no attribute 'std'"), as it does in SQL.
#[test]
fn run_honours_column_annotations_without_kind_vectorized() {
    let np = numpy();
    let out = coil(
        &[
            "run",
            "--udf",
            "examples/udfs/vector.py:zscore",
            "--workers",
            "1",
            "--conf",
            "python.fn-execution.bundle.size=3",
            "--conf",
            &np[0],
            "--conf",
            &np[1],
        ],
        "[1]\n[2]\n[3]\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let z: Vec<f64> = text(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(z.len(), 3);
    assert!(z[0] < 0.0 && z[1].abs() < 1e-9 && z[2] > 0.0, "{z:?}");
    assert!((z[0] + z[2]).abs() < 1e-9, "{z:?}");
}

/// Issue 21, part 4: a `coil` built without SQL runs `coil sql` through
/// the `coil-sql` beside it (docs/sql.md's build), and names that build
/// when it is missing, so the README's and docs/sql.md's builds do not
/// overwrite each other's `coil`.
#[test]
fn coil_without_sql_runs_the_coil_sql_beside_it_or_names_its_build() {
    if cfg!(feature = "sql") {
        return; // this coil runs SQL itself
    }
    let dir = test_dir("sql-delegation");
    let coil = dir.join("coil");
    // A link keeps the path coil finds itself at (a copy would do too).
    if std::fs::hard_link(env!("CARGO_BIN_EXE_coil"), &coil).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_coil"), &coil).unwrap();
    }
    let run = || {
        std::process::Command::new(&coil)
            .args(["sql", "--mode", "process", "SELECT 1"])
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("{} is missing", dir.join("coil-sql").display()))
            && err.contains("cargo build --release --features sql --bin coil-sql"),
        "{err}"
    );
    // A stand-in coil-sql gets the same arguments, in coil's place.
    let stand_in = dir.join("coil-sql");
    std::fs::write(&stand_in, "#!/bin/sh\necho \"coil-sql $*\"\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "coil-sql sql --mode process SELECT 1\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 21, part 1: every type of the shared fixture, named by
/// `TypeName`'s `Display`, is a `--returns` that `coil run --format arrow`
/// takes and answers with exactly that column.
#[test]
fn run_format_arrow_returns_every_fixture_type_by_its_printed_name() {
    for column in coil_testkit::arrow::every_type() {
        let name = coil_proto::TypeName::try_from(column.data_type().clone())
            .unwrap()
            .to_string();
        let out = coil_bytes(
            &[
                "run",
                "--udf",
                "tests/udfs/arrow_udfs.py:same",
                "--format",
                "arrow",
                "--returns",
                &name,
                "--mode",
                "multi-thread",
                "--workers",
                "1",
            ],
            ipc_stream(&[RecordBatch::try_from_iter([("a", column.clone())]).unwrap()]),
        );
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let batches = read_ipc(&out.stdout);
        assert_eq!(batches[0].column(0).to_data(), column.to_data(), "{name}");
    }
}

#[test]
fn a_vectorized_udf_sees_the_same_batches_run_after_run() {
    // The z-score of a batch depends on which rows it holds: with batch
    // boundaries from measured times, 1..6 came back as 4 + 2 on one run
    // and 6 on another. A vectorized UDF's batches are bundle.size rows.
    let np = numpy();
    let input: String = (1..=2500).map(|i| format!("[{}]\n", i % 97)).collect();
    let mut first = None;
    for run in 0..20 {
        let out = coil(
            &[
                "run",
                "--udf",
                "examples/udfs/vector.py:zscore",
                "--workers",
                "2",
                "--conf",
                &np[0],
                "--conf",
                &np[1],
            ],
            &input,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let got = text(&out.stdout);
        assert_eq!(got.lines().count(), 2500);
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "run {run} differs from the first"),
        }
    }
    // Batches of 1,000: the first row is row 0's z-score within rows 0..1000.
    let first = first.unwrap();
    let xs: Vec<f64> = (1..=1000).map(|i| f64::from(i % 97)).collect();
    let mean = xs.iter().sum::<f64>() / 1000.0;
    let std = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 1000.0).sqrt();
    let z0: f64 = first.lines().next().unwrap().parse().unwrap();
    assert!((z0 - (xs[0] - mean) / std).abs() < 1e-9, "{z0}");
}

#[test]
fn a_failed_run_writes_every_row_before_the_failing_one_in_every_mode() {
    let dir = std::env::temp_dir().join(format!("coil-fail-prefix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let udf = dir.join("fails.py");
    std::fs::write(
        &udf,
        "def f(x):\n    if x == 1500:\n        raise ValueError('no 1500')\n    return x\n",
    )
    .unwrap();
    let input: String = (1..=2000).map(|i| format!("[{i}]\n")).collect();
    for mode in crate::util::modes() {
        let out = coil(
            &[
                "run",
                "--udf",
                &format!("{}:f", udf.display()),
                "--mode",
                mode,
                "--workers",
                "2",
            ],
            &input,
        );
        assert_eq!(out.status.code(), Some(1), "{mode}");
        let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
        assert_eq!(
            lines,
            (1..1500).map(|i| i.to_string()).collect::<Vec<_>>(),
            "{mode}: rows 1..1499 and nothing after"
        );
        assert!(
            text(&out.stderr).contains("line 1500: the UDF raised ValueError: no 1500"),
            "{mode}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
