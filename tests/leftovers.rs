//! Nothing half-written, nothing left behind, no crash on bad bytes: a
//! failed `coil run --output` leaves the old file as it was; damaged Arrow
//! input is an error, never a panic or an abort; a log stderr cannot take
//! changes neither the results nor the exit code; what a UDF forks ends
//! with coil, and a child it starts cannot hold coil's output open; an
//! install killed half way leaves no installer running and the next run
//! succeeds.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{coil, scratch, text};

const PATIENCE: Duration = Duration::from_secs(60);

/// The pids of live processes whose command line contains `marker`.
fn running(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            !zombie && text(&cmd).contains(marker)
        })
        .collect()
}

/// Waits until no live process's command line contains `marker`; the
/// ones still running after the wait.
fn gone(marker: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = running(marker);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_failed_run_leaves_the_old_output_byte_for_byte_and_nothing_else() {
    let dir = scratch("atomic-run");
    let udf = dir.join("u.py");
    std::fs::write(
        &udf,
        "def picky(x):\n    if x == 1500:\n        raise ValueError('no 1500')\n    return x\n",
    )
    .unwrap();
    let input: String = (1..=2000).map(|i| format!("[{i}]\n")).collect();
    for mode in crate::util::modes() {
        let out_file = dir.join("out.jsonl");
        std::fs::write(&out_file, "the good results of yesterday\n").unwrap();
        let target = format!("{}:picky", udf.display());
        let args = [
            "run",
            "--udf",
            &target,
            "--mode",
            mode,
            "--output",
            out_file.to_str().unwrap(),
        ];
        let out = coil(&args, &input);
        eprintln!(
            "{mode}: exit {:?}; {}",
            out.status.code(),
            text(&out.stderr).lines().next().unwrap_or("")
        );
        assert_eq!(out.status.code(), Some(1), "{mode}: {}", text(&out.stderr));
        assert_eq!(
            std::fs::read_to_string(&out_file).unwrap(),
            "the good results of yesterday\n",
            "{mode}"
        );
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names.len(),
            2,
            "{mode}: only the UDF and the old output: {names:?}"
        );

        // A run that ends replaces it whole.
        let good = coil(&args, &input.replace("[1500]\n", "[-1]\n"));
        assert!(good.status.success(), "{mode}: {}", text(&good.stderr));
        let written = std::fs::read_to_string(&out_file).unwrap();
        assert_eq!(written.lines().count(), 2000, "{mode}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small Arrow IPC stream of `x` (int64), in two batches.
fn arrow_stream() -> Vec<u8> {
    use coil_host::arrow_array::{ArrayRef, Int64Array, RecordBatch};
    use std::sync::Arc;
    let batch = |base: i64| {
        let x: ArrayRef = Arc::new(Int64Array::from(vec![base, base + 1, base + 2]));
        RecordBatch::try_from_iter([("x", x)]).unwrap()
    };
    let first = batch(1);
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &first.schema()).unwrap();
    w.write(&first).unwrap();
    w.write(&batch(10)).unwrap();
    w.finish().unwrap();
    w.into_inner().unwrap()
}

#[test]
fn damaged_arrow_input_is_an_error_never_a_panic_or_an_abort() {
    let good = arrow_stream();
    let run = |bytes: Vec<u8>| {
        crate::util::coil_bytes(
            &[
                "run",
                "--udf",
                "tests/udfs/basic.py:inc",
                "--format",
                "arrow",
                "--returns",
                "int64",
                "--mode",
                "multi-thread",
                "--workers",
                "1",
            ],
            bytes,
        )
    };
    let out = run(good.clone());
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Every 23rd byte, two ways: every byte, five ways, runs in-process
    // (ipc_stream's own tests); here each case is a whole coil.
    let (mut ok, mut refused) = (0, 0);
    for at in (0..good.len()).step_by(23) {
        for value in [0xff, good[at] ^ 0x80] {
            let mut bad = good.clone();
            bad[at] = value;
            let out = run(bad);
            let code = out.status.code();
            assert!(
                matches!(code, Some(0 | 1)),
                "byte {at} = {value:#x}: exit {code:?} (a panic is 101, an abort a signal)\n{}",
                text(&out.stderr)
            );
            let err = text(&out.stderr);
            assert!(!err.contains("panicked"), "byte {at} = {value:#x}: {err}");
            if code == Some(0) {
                ok += 1;
            } else {
                refused += 1;
            }
        }
    }
    eprintln!(
        "{} bytes: {ok} changed streams ran, {refused} refused with an error",
        good.len()
    );
    assert!(refused > 0);
}

#[test]
fn a_log_stderr_cannot_take_changes_neither_the_results_nor_the_exit_code() {
    let dir = scratch("dev-full");
    let udf = dir.join("u.py");
    std::fs::write(
        &udf,
        "def loud(x):\n    print('row', x)\n    return x + 1\n",
    )
    .unwrap();
    let input = dir.join("in.jsonl");
    std::fs::write(
        &input,
        (1..=300).map(|i| format!("[{i}]\n")).collect::<String>(),
    )
    .unwrap();
    for mode in crate::util::modes() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_coil"))
            .args([
                "run",
                "--udf",
                &format!("{}:loud", udf.display()),
                "--mode",
                mode,
            ])
            .arg("--input")
            .arg(&input)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(full)
            .output()
            .unwrap();
        let lines = text(&out.stdout).lines().count();
        eprintln!(
            "{mode}: exit {:?}, {lines} results with stderr on /dev/full",
            out.status.code()
        );
        assert_eq!(out.status.code(), Some(0), "{mode}");
        assert_eq!(lines, 300, "{mode}");
        // A failing run still exits 1, not a panic's 101.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_coil"))
            .args(["run", "--udf", "/no/such/file.py:f", "--mode", mode])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(full)
            .status()
            .unwrap();
        assert_eq!(out.code(), Some(1), "{mode}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_a_udf_forks_or_starts_never_outlives_coil_nor_holds_its_output() {
    let dir = scratch("forks");
    let marker = format!("coil-fork-marker-{}", std::process::id());
    let udf = dir.join("u.py");
    std::fs::write(
        &udf,
        format!(
            "import os, subprocess, sys, time\n\
             def forks(x):\n    if os.fork() == 0:\n        os.execvp('sleep', ['sleep', '30', '{marker}'])\n    return x\n\
             def starts(x):\n    subprocess.Popen(['sleep', '30', '{marker}'])\n    return x\n"
        ),
    )
    .unwrap();
    let input = "[1]\n[2]\n[3]\n";
    for mode in crate::util::modes() {
        // os.fork: a worker's forks end with it; in-process, refused.
        let out = coil(
            &[
                "run",
                "--udf",
                &format!("{}:forks", udf.display()),
                "--mode",
                mode,
            ],
            input,
        );
        let err = text(&out.stderr);
        eprintln!("{mode}: forks: exit {:?}", out.status.code());
        if mode == "process" {
            assert!(out.status.success(), "{err}");
            assert_eq!(text(&out.stdout).lines().count(), 3);
        } else {
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(err.contains("refused in coil's in-process modes"), "{err}");
        }
        let left = gone(&marker);
        assert!(left.is_empty(), "{mode}: forks still running: {left:?}");

        // A program started with subprocess: coil's output ends with coil
        // (a reader sees the end at once), whatever the program does.
        let started = Instant::now();
        let mut child = crate::util::spawn_coil(
            &[
                "run",
                "--udf",
                &format!("{}:starts", udf.display()),
                "--mode",
                mode,
            ],
            Stdio::piped(),
            Stdio::null(),
        );
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let mut results = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut results)
            .unwrap();
        let waited = started.elapsed();
        assert!(child.wait().unwrap().success());
        eprintln!(
            "{mode}: starts: output ended after {:.1} s",
            waited.as_secs_f64()
        );
        assert_eq!(results.lines().count(), 3);
        assert!(
            waited < Duration::from_secs(25),
            "{mode}: the reader waited for the child"
        );
        if mode == "process" {
            let left = gone(&marker);
            assert!(left.is_empty(), "{mode}: children still running: {left:?}");
        }
        for pid in running(&marker) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A wheel of one module, `coilprobe`, built by hand into `dir`: an
/// install that needs no package index.
fn probe_wheel(dir: &Path) {
    let script = format!(
        "import zipfile\n\
         with zipfile.ZipFile({:?}, 'w') as z:\n\
         \x20   z.writestr('coilprobe.py', 'ANSWER = 42\\n')\n\
         \x20   z.writestr('coilprobe-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: coilprobe\\nVersion: 1.0\\n')\n\
         \x20   z.writestr('coilprobe-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: coil-tests\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
         \x20   z.writestr('coilprobe-1.0.dist-info/RECORD', '')\n",
        dir.join("coilprobe-1.0-py3-none-any.whl").display().to_string()
    );
    let ok = Command::new("python3")
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn an_install_killed_half_way_leaves_no_installer_and_the_next_run_succeeds() {
    let dir = scratch("install-kill");
    probe_wheel(&dir);
    let req = dir.join("requirements.txt");
    std::fs::write(
        &req,
        format!("--no-index\n--find-links {}\ncoilprobe\n", dir.display()),
    )
    .unwrap();
    let cache = dir.join("envs");
    let udf = dir.join("u.py");
    std::fs::write(
        &udf,
        "import coilprobe\ndef answer(x):\n    return coilprobe.ANSWER + x\n",
    )
    .unwrap();
    let target = format!("{}:answer", udf.display());
    let req_conf = format!("python.requirements={}", req.display());
    let cache_conf = format!("python.env.cache-dir={}", cache.display());
    let args = [
        "run",
        "--udf",
        &target,
        "--conf",
        &req_conf,
        "--conf",
        &cache_conf,
    ];
    let marker = cache.to_string_lossy().into_owned();

    // Kill coil once an installer of its runs.
    let mut child = crate::util::spawn_coil(&args, Stdio::null(), Stdio::null());
    let deadline = Instant::now() + PATIENCE;
    let installers = loop {
        let seen = running(&marker);
        let seen: Vec<u32> = seen.into_iter().filter(|&p| p != child.id()).collect();
        if !seen.is_empty() {
            break seen;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "coil ended before it installed"
        );
        assert!(Instant::now() < deadline, "no installer started");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let left = gone(&marker);
    eprintln!("killed coil while {installers:?} ran: left running {left:?}");
    assert!(left.is_empty(), "installers outlived coil: {left:?}");

    // The next run makes the environment and runs.
    let out = coil(&args, "[1]\n[2]\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "43\n44\n");
    let names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with('.')),
        "leftovers: {names:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_crash_in_an_in_process_mode_names_the_udf_and_the_row_before_the_host_dies() {
    let dir = scratch("segfault");
    let udf = dir.join("u.py");
    std::fs::write(
        &udf,
        "import ctypes\ndef crashy(x):\n    if x == 3:\n        ctypes.string_at(0)\n    return x\n",
    )
    .unwrap();
    for mode in ["multi-thread", "sub-interpreter"] {
        let out = coil(
            &[
                "run",
                "--udf",
                &format!("{}:crashy", udf.display()),
                "--mode",
                mode,
                "--conf",
                "python.execution-mode.strict=true",
            ],
            "[1]\n[2]\n[3]\n[4]\n",
        );
        let err = text(&out.stderr);
        eprintln!("{mode}: {:?}: {}", out.status, err.trim());
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(11), "{mode}: {err}");
        assert!(
            err.contains("the Python UDF crashy crashed the process (signal 11) on row 2 (from 0) of its input"),
            "{mode}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
