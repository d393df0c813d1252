//! Free-threaded CPython (issue 26). On a coil built against a
//! free-threaded interpreter (`tools/python-ft`; CI's second build):
//! multi-thread executors run with the GIL off; the standard library used
//! from 2 and 4 executor threads at once answers exactly as plain Python;
//! faults and races in the UDF never corrupt coil's own state; an extension
//! module that has not declared free-threading support, imported when the
//! UDF loads or when it is called, is named, and refused under
//! `python.execution-mode.strict`. On a build with a GIL the tests that
//! need a free-threaded interpreter say so and return; the stress tests run
//! on both.

use std::path::{Path, PathBuf};
use std::process::Command;

use coil_host::{ExecutionMode, RunError, Runner, StartError, UdfKind, UdfSpec};
use coil_ipc::Value;

use crate::util::{as_json, coil, config, ints, reference, scratch, start, text, udfs, worker};

/// Whether this build embeds a free-threaded CPython; says why a test
/// returns early when it does not.
fn free_threaded(test: &str) -> bool {
    if !coil_worker::FREE_THREADED {
        eprintln!("{test}: needs coil built against a free-threaded CPython (tools/python-ft)");
    }
    coil_worker::FREE_THREADED
}

/// Builds, in a fresh directory, `legacy_ext`: an extension module for
/// the embedded CPython that does not declare free-threading support
/// (no `Py_mod_gil` slot), so importing it turns the GIL back on. Returns
/// the directory, for `python.files`.
fn legacy_extension(name: &str) -> PathBuf {
    let dir = scratch(name);
    let include = Command::new(coil_worker::EMBEDDED_PYTHON)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['include'])",
        ])
        .output()
        .unwrap();
    assert!(include.status.success(), "{}", text(&include.stderr));
    let include = text(&include.stdout).trim().to_string();
    let source = dir.join("legacy_ext.c");
    std::fs::write(
        &source,
        "#include <Python.h>\n\
         static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, \"legacy_ext\", NULL, 0, NULL};\n\
         PyMODINIT_FUNC PyInit_legacy_ext(void) { return PyModuleDef_Init(&def); }\n",
    )
    .unwrap();
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(dir.join("legacy_ext.so"))
        .arg(format!("-I{include}"))
        .arg(&source)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built.stderr));
    dir
}

/// A UDF file in `dir` that imports `legacy_ext` when it loads.
fn loads_legacy(dir: &Path) -> String {
    let udf = dir.join("loads_legacy.py");
    std::fs::write(
        &udf,
        "import legacy_ext\n\ndef plus_one(x):\n    return x + 1\n",
    )
    .unwrap();
    format!("{}:plus_one", udf.display())
}

fn runner(target: &str, pairs: &[&str]) -> Result<Runner, StartError> {
    Runner::with_worker_command(
        &config(pairs),
        UdfSpec::new(target).kind(UdfKind::Scalar),
        worker(),
    )
}

#[test]
fn multi_thread_executors_run_with_the_gil_off() {
    if !free_threaded("multi_thread_executors_run_with_the_gil_off") {
        return;
    }
    let pairs = [
        "python.execution-mode=multi-thread",
        "python.worker-count=4",
        "python.fn-execution.bundle.size=16",
    ];
    let r = start("free_threaded.py", "gil_on", UdfKind::Scalar, &pairs);
    assert_eq!(r.mode(), ExecutionMode::MultiThread);
    assert_eq!(r.gil_enabled_by(), None);
    let out = r.call(&ints(0..256)).unwrap();
    assert!(out.iter().all(|v| *v == Value::Bool(false)), "{out:?}");
    // Four executor threads, each its own Python thread.
    let ids = start("free_threaded.py", "thread_id", UdfKind::Scalar, &pairs)
        .call(&ints(0..4096))
        .unwrap();
    let distinct: std::collections::BTreeSet<_> = ids.iter().map(|v| format!("{v:?}")).collect();
    assert!(distinct.len() > 1, "one thread answered every batch");
    assert_eq!(coil_worker::main_gil_enabled_by(), None);
}

#[test]
fn an_extension_without_free_threading_support_is_named_and_refused_under_strict() {
    if !free_threaded("an_extension_without_free_threading_support_is_named") {
        return;
    }
    let dir = legacy_extension("ft-legacy-load");
    let target = loads_legacy(&dir);
    let files = format!("python.files={}", dir.display());
    // Process mode: the worker process's GIL, named, harms no one.
    let r = runner(&target, &["python.execution-mode=process", &files]).unwrap();
    assert_eq!(r.gil_enabled_by(), Some("legacy_ext"));
    assert_eq!(r.call(&ints([1])).unwrap(), vec![Value::Int(2)]);
    // `coil env --udf` says so, naming the module.
    let out = coil(&["env", "--conf", &files, "--udf", &target], "");
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("free-threaded   yes"), "{said}");
    assert!(
        said.contains("importing legacy_ext turned the GIL back on"),
        "{said}"
    );
    // Multi-thread, strict: refused, naming the module and the key.
    let strict = runner(
        &target,
        &[
            "python.execution-mode=multi-thread",
            "python.execution-mode.strict=true",
            &files,
        ],
    );
    let Err(e) = strict else {
        panic!("strict refuses a UDF that turns the GIL on")
    };
    assert!(
        matches!(&e, StartError::GilEnabled { module, .. } if module == "legacy_ext"),
        "{e:?}"
    );
    let m = e.to_string();
    assert!(
        m.contains("legacy_ext") && m.contains("python.execution-mode.strict=true"),
        "{m}"
    );
    // Without strict it runs, one thread at a time, and says so.
    let r = runner(&target, &["python.execution-mode=multi-thread", &files]).unwrap();
    assert_eq!(r.gil_enabled_by(), Some("legacy_ext"));
    assert_eq!(r.call(&ints(0..100)).unwrap().len(), 100);
    assert_eq!(
        coil_worker::main_gil_enabled_by().as_deref(),
        Some("legacy_ext")
    );
}

#[test]
fn an_extension_imported_when_called_is_reported_by_coil_bench() {
    if !free_threaded("an_extension_imported_when_called_is_reported") {
        return;
    }
    let dir = legacy_extension("ft-legacy-call");
    let files = format!("python.files={}", dir.display());
    let udf = format!(
        "{}:imports_legacy_when_called",
        udfs().join("free_threaded.py").display()
    );
    let input = dir.join("in.jsonl");
    let rows: String = (0..2000).map(|x| format!("[{x}]\n")).collect();
    std::fs::write(&input, rows).unwrap();
    let out = coil(
        &[
            "bench",
            "--udf",
            &udf,
            "--input",
            input.to_str().unwrap(),
            "--modes",
            "multi-thread,process",
            "--workers",
            "2",
            "--repeat",
            "1",
            "--conf",
            &files,
        ],
        "",
    );
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    assert!(report.contains("turned the GIL back on"), "{report}");
    assert!(
        !report.contains("the GIL stayed off"),
        "the GIL came back while the UDF ran: {report}"
    );
}

/// The sub-interpreter stress test of issue 10, in multi-thread mode: the
/// standard library from 2 and 4 executor threads of one interpreter at
/// once (with no GIL between them on a free-threaded build), through
/// start/stop cycles, answers exactly as plain Python.
#[test]
fn stdlib_modules_from_2_and_4_executor_threads_answer_as_plain_python() {
    let rows = ints(0..1_500);
    let want = reference("stdlib_mix.py", "mix", UdfKind::Scalar, &rows);
    for workers in [2, 4] {
        for cycle in 0..3 {
            let pairs = [
                "python.execution-mode=multi-thread",
                &format!("python.worker-count={workers}"),
                "python.fn-execution.bundle.size=25",
            ];
            let mix = start("stdlib_mix.py", "mix", UdfKind::Scalar, &pairs);
            let dt = start("stdlib_mix.py", "dt_only", UdfKind::Scalar, &pairs);
            assert_eq!(mix.mode(), ExecutionMode::MultiThread);
            // Two runners at once: 2 x workers threads in one interpreter.
            let (got, _) = std::thread::scope(|s| {
                let m = s.spawn(|| mix.call(&rows));
                let d = s.spawn(|| dt.call(&ints(0..20_000)));
                (m.join().unwrap(), d.join().unwrap().unwrap())
            });
            let got = as_json(&got.unwrap_or_else(|e| panic!("cycle {cycle}: {e}")));
            assert_eq!(got, want, "{workers} threads, cycle {cycle}");
        }
    }
}

/// Faults and races in a UDF on 2 and 4 executor threads: rows that raise,
/// spin past the timeout or ask to end the host fail alone with the right
/// error; every other row is exact, in order; the runner goes on.
#[test]
fn faults_and_races_on_2_and_4_executor_threads_leave_every_other_row_exact() {
    const ROWS: i64 = 3_000;
    let want = reference(
        "free_threaded.py",
        "answer",
        UdfKind::Scalar,
        &ints(0..ROWS),
    );
    let want = want.as_array().unwrap();
    for workers in [2, 4] {
        let pairs = [
            "python.execution-mode=multi-thread",
            &format!("python.worker-count={workers}"),
            "python.fn-execution.bundle.size=16",
            "python.fn-execution.on-error=skip",
            "python.fn-execution.timeout=200",
        ];
        let r = start("free_threaded.py", "chaos", UdfKind::Scalar, &pairs);
        let out = r.call_each(&ints(0..ROWS)).unwrap();
        assert_eq!(out.len(), ROWS as usize);
        for (x, got) in out.iter().enumerate() {
            let row = x as u64;
            match got {
                Ok(v) => {
                    assert!(
                        x % 101 != 7 && x % 257 != 11 && x % 53 != 5,
                        "row {x} should have failed"
                    );
                    assert_eq!(&as_json(std::slice::from_ref(v))[0], &want[x], "row {x}");
                }
                Err(e) => match &e.error {
                    RunError::Udf { row: r, error } if x % 101 == 7 => {
                        assert_eq!(*r, row);
                        assert!(
                            error.message.contains(&format!("row {x} raises")),
                            "{error:?}"
                        );
                    }
                    RunError::Timeout { row: Some(r), .. } if x % 101 != 7 && x % 257 == 11 => {
                        assert_eq!(*r, row)
                    }
                    RunError::Udf { row: r, error } if x % 53 == 5 => {
                        assert_eq!(*r, row);
                        assert!(error.message.contains("would end the host"), "{error:?}");
                    }
                    other => panic!("{workers} threads, row {x}: {other:?}"),
                },
            }
        }
        // Interrupted, never replaced; and it still answers.
        assert_eq!(r.restarts(), 0);
        let one = r.call(&ints([1])).unwrap();
        assert_eq!(as_json(&one)[0], want[1]);
    }
}

/// `print` from 4 executor threads at once (in parallel on a free-threaded
/// CPython), each line written in many pieces: every line reaches the log
/// once and whole, none lost, doubled or spliced with another thread's.
#[test]
fn prints_from_4_executor_threads_reach_the_log_whole_and_once() {
    const ROWS: usize = 4_000;
    let input: String = (0..ROWS).map(|x| format!("[{x}]\n")).collect();
    let udf = format!("{}:chatty", udfs().join("free_threaded.py").display());
    let out = coil(
        &[
            "run",
            "--udf",
            &udf,
            "--conf",
            "python.execution-mode=multi-thread",
            "--conf",
            "python.worker-count=4",
            "--conf",
            "python.fn-execution.bundle.size=10",
        ],
        &input,
    );
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    let mut seen = vec![0u32; ROWS];
    for line in log.lines().filter(|l| l.contains("stream=\"stdout\"")) {
        let (_, said) = line
            .split_once(" INFO ")
            .unwrap_or_else(|| panic!("{line}"));
        let rest = said
            .strip_prefix("row ")
            .unwrap_or_else(|| panic!("spliced: {line}"));
        let (n, tail) = rest.split_once(' ').unwrap();
        assert!(
            tail.starts_with(&format!("of the chatty UDF {} worker=", "=".repeat(40))),
            "spliced: {line}"
        );
        seen[n
            .parse::<usize>()
            .unwrap_or_else(|_| panic!("spliced: {line}"))] += 1;
    }
    let wrong: Vec<_> = (0..ROWS).filter(|&x| seen[x] != 1).collect();
    assert!(wrong.is_empty(), "rows not logged exactly once: {wrong:?}");
}
