//! What the test modules share: runners over the `coil` binary's worker
//! mode, plain Python's answers to compare them with, and scans of `/proc`
//! for child processes and ring descriptors.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use coil_host::value_to_json as to_json;
use coil_host::{Config, Runner, UdfKind, UdfSpec, WorkerCommand};
use coil_ipc::{Row, Value};

/// The test UDFs' directory, `tests/udfs`.
pub(crate) fn udfs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/udfs")
}

/// Worker processes are `coil worker`, from the binary this test was built
/// with.
pub(crate) fn worker() -> WorkerCommand {
    WorkerCommand::new(env!("CARGO_BIN_EXE_coil")).arg("worker")
}

/// A configuration from `KEY=VALUE` pairs.
pub(crate) fn config(pairs: &[&str]) -> Config {
    let mut c = Config::default();
    for p in pairs {
        c.set_pair(p).unwrap();
    }
    c
}

/// A runner for `name` in `tests/udfs/<file>`, configured by `pairs`.
pub(crate) fn start(file: &str, name: &str, kind: UdfKind, pairs: &[&str]) -> Runner {
    let spec = UdfSpec::new(format!("{}:{name}", udfs().join(file).display())).kind(kind);
    Runner::with_worker_command(&config(pairs), spec, worker()).unwrap_or_else(|e| panic!("{e}"))
}

/// The configuration that gives a runner numpy (pinned in
/// `tests/requirements.txt`): a `python.requirements` environment, made
/// once and cached under `target/coil-envs`, never the interpreter's own
/// site-packages.
pub(crate) fn numpy() -> [String; 2] {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        format!(
            "python.requirements={}",
            root.join("tests/requirements.txt").display()
        ),
        format!(
            "python.env.cache-dir={}",
            root.join("target/coil-envs").display()
        ),
    ]
}

/// The configuration that gives a runner httpx (pinned in
/// `tests/requirements-http.txt`), as [`numpy`] gives numpy.
pub(crate) fn http_client() -> [String; 2] {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        format!(
            "python.requirements={}",
            root.join("tests/requirements-http.txt").display()
        ),
        format!(
            "python.env.cache-dir={}",
            root.join("target/coil-envs").display()
        ),
    ]
}

/// `pairs` and [`numpy`]'s.
pub(crate) fn with_numpy<'a>(pairs: &[&'a str], np: &'a [String; 2]) -> Vec<&'a str> {
    let mut all = pairs.to_vec();
    all.extend(np.iter().map(String::as_str));
    all
}

/// Every mode this build runs (sub-interpreter only when built against
/// CPython >= 3.13).
pub(crate) fn modes() -> Vec<&'static str> {
    let mut m = vec!["process", "multi-thread"];
    if coil_worker::SUBINTERPRETERS {
        m.push("sub-interpreter");
    }
    m
}

/// Rows of one integer each.
pub(crate) fn ints(xs: impl IntoIterator<Item = i64>) -> Vec<Row> {
    xs.into_iter().map(|x| vec![Value::Int(x)]).collect()
}

/// Results as a JSON array, as `coil run` writes them.
pub(crate) fn as_json(values: &[Value]) -> serde_json::Value {
    serde_json::Value::Array(values.iter().map(to_json).collect())
}

/// What plain Python (the interpreter coil embeds) returns for `rows`.
pub(crate) fn reference(file: &str, name: &str, kind: UdfKind, rows: &[Row]) -> serde_json::Value {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/python");
    let input: Vec<serde_json::Value> = rows.iter().map(|r| as_json(r)).collect();
    let mut child = Command::new(python)
        .arg(udfs().join("reference.py"))
        .arg(udfs().join(file))
        .arg(name)
        .arg(kind.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "reference run failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `rows` through a runner configured by `pairs` and checks the
/// results against plain Python's.
pub(crate) fn assert_same_as_python(
    file: &str,
    name: &str,
    kind: UdfKind,
    rows: Vec<Row>,
    pairs: &[&str],
) {
    let runner = start(file, name, kind, pairs);
    let got = runner.call(&rows).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(as_json(&got), reference(file, name, kind, &rows), "{name}");
}

/// This process's children, zombies included.
pub(crate) fn children() -> Vec<u32> {
    children_of(std::process::id())
}

/// The children of `parent`, zombies included.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let mut kids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command's closing parenthesis: state, ppid, ...
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        if after.split(' ').nth(1).unwrap().parse::<u32>().unwrap() == parent {
            kids.push(pid);
        }
    }
    kids
}

/// Whether `pid` has exited (gone, or a zombie).
pub(crate) fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'),
    }
}

/// Descriptors this process holds on ring memory (`memfd:coil-ring`).
pub(crate) fn ring_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .map(|l| l.to_string_lossy().contains("memfd:coil-ring"))
                .unwrap_or(false)
        })
        .count()
}

/// Runs the `coil` command line in the repository root with `args`, feeding
/// `stdin` from another thread (so a large input and a large output cannot
/// block each other on full pipes).
pub(crate) fn coil(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = spawn_coil(args, Stdio::piped(), Stdio::piped());
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_string();
    let writer = std::thread::spawn(move || {
        // A coil that exits early (a bad line) closes its end: not ours to
        // report here, the caller checks the exit status.
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Runs the `coil` command line with `stdin` as its input.
pub(crate) fn coil_bytes(args: &[&str], stdin: Vec<u8>) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = spawn_coil(args, Stdio::piped(), Stdio::piped());
    let mut pipe = child.stdin.take().unwrap();
    // A coil that exits early closes its end: the exit status says so.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Starts the `coil` command line in the repository root with `args`, its
/// stdin a pipe, its stdout and stderr as given.
pub(crate) fn spawn_coil(
    args: &[&str],
    stdout: impl Into<std::process::Stdio>,
    stderr: impl Into<std::process::Stdio>,
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_coil"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// A fresh, empty directory for test `name`'s files.
pub(crate) fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("coil-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Bytes a program wrote, as text.
pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Plants, as another user would (uid 54321 when the tests run as root,
/// as in CI), the module coil once wrote for the inline source `body` of
/// `function`: `tmp/coil-udfs/coil_udf_<sha256>.py` in a world-writable
/// directory, whose `function` touches `mark` when imported and answers -1.
/// The name's hash part, for checking where coil did write the source.
#[cfg(feature = "sql")]
pub(crate) fn plant_old_inline_source(
    tmp: &std::path::Path,
    body: &str,
    function: &str,
    mark: &std::path::Path,
) -> String {
    use std::os::unix::fs::PermissionsExt;
    let digest = std::process::Command::new("python3")
        .args([
            "-c",
            &format!("import hashlib; print(hashlib.sha256({body:?}.encode()).hexdigest()[:32])"),
        ])
        .output()
        .unwrap();
    let hex = String::from_utf8(digest.stdout).unwrap().trim().to_string();
    let old = tmp.join("coil-udfs");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o777)).unwrap();
    let planted = old.join(format!("coil_udf_{hex}.py"));
    std::fs::write(
        &planted,
        format!(
            "open({:?}, 'w').close()\ndef {function}(x):\n    return -1\n",
            mark.display().to_string()
        ),
    )
    .unwrap();
    if nix::unistd::geteuid().is_root() {
        for path in [&old, &planted] {
            std::os::unix::fs::chown(path, Some(54321), Some(54321)).unwrap();
        }
    }
    hex
}
