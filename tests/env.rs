//! Python environments (issue 13): `python.requirements` made once into a
//! cached virtual environment (also when asked for at once), reused, made
//! again when deleted; every mode imports with exactly that environment's
//! `sys.path`; `python.executable`; the errors a user meets; `coil env`.

use std::path::{Path, PathBuf};
use std::process::Command;

use coil_host::{resolve_environment, ExecutionMode, Runner, StartError, UdfSpec};
use coil_ipc::Value;

use crate::util::{coil, config, modes, numpy, udfs, worker};

/// A scratch directory with a wheel of `coiltiny` (made here: no package
/// index needed) and a requirements file naming it.
fn scratch(name: &str) -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-envs")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/python");
    let out = Command::new(python)
        .arg(udfs().join("make_wheel.py"))
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wheel = String::from_utf8(out.stdout).unwrap();
    let req = dir.join("requirements.txt");
    std::fs::write(&req, format!("# a local wheel\n{}\n", wheel.trim())).unwrap();
    (dir, req)
}

fn pairs(req: &Path, cache: &Path, extra: &[&str]) -> Vec<String> {
    let mut p = vec![
        format!("python.requirements={}", req.display()),
        format!("python.env.cache-dir={}", cache.display()),
        "python.worker-count=1".into(),
    ];
    p.extend(extra.iter().map(|s| s.to_string()));
    p
}

fn runner(pairs: &[String], name: &str) -> Result<Runner, StartError> {
    let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
    let spec = UdfSpec::new(format!("{}:{name}", udfs().join("env_probe.py").display()));
    Runner::with_worker_command(&config(&pairs), spec, worker())
}

/// What `python -c 'import sys; print(sys.path)'` gives for `python`.
fn sys_path_of(python: &Path) -> Vec<String> {
    let out = Command::new(python)
        .args(["-c", "import json, sys; print(json.dumps(sys.path))"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The cache's entries other than lock files.
fn environments(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_none_or(|x| x != "lock"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_requirements_environment_is_made_once_reused_and_every_mode_imports_exactly_its_sys_path() {
    let (dir, req) = scratch("made-once");
    let cache = dir.join("cache");
    let p = pairs(&req, &cache, &[]);
    let c = config(&p.iter().map(String::as_str).collect::<Vec<_>>());
    // Two at once: one makes it, the other waits for it and reuses it.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| resolve_environment(&c));
        let b = s.spawn(|| resolve_environment(&c));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert_eq!(a, b);
    let made = environments(&cache);
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(a.executable.starts_with(&made[0]));
    assert!(made[0].join("coil-env.json").exists());
    // Every mode: the package of the environment, and its sys.path
    // exactly (after the UDF's own directory, which coil puts first).
    let mut want = vec![Value::Str(udfs().display().to_string())];
    want.extend(sys_path_of(&a.executable).into_iter().map(Value::Str));
    for mode in modes() {
        let r = runner(
            &pairs(&req, &cache, &[&format!("python.execution-mode={mode}")]),
            "where",
        )
        .unwrap();
        assert_eq!(r.mode().as_str(), mode);
        let out = r.call(&[vec![Value::Int(1)]]).unwrap();
        assert_eq!(
            out,
            vec![Value::List(vec![Value::Int(43), Value::List(want.clone())])],
            "{mode}"
        );
    }
    // python.executable of that environment: the same.
    let r = runner(
        &[
            format!("python.executable={}", a.executable.display()),
            "python.worker-count=1".into(),
        ],
        "where",
    )
    .unwrap();
    assert_eq!(
        r.call(&[vec![Value::Int(0)]]).unwrap(),
        vec![Value::List(vec![Value::Int(42), Value::List(want.clone())])]
    );
    // The environment's .pth files run, import lines too (as they do for
    // its python): one added to its site-packages now.
    let site = a
        .site_dirs
        .iter()
        .find(|d| d.starts_with(&made[0]) && d.exists())
        .expect("the environment's site-packages");
    std::fs::write(
        site.join("coil_test.pth"),
        "import os; os.environ['COIL_PTH_RAN'] = 'yes'\n",
    )
    .unwrap();
    let r = runner(&pairs(&req, &cache, &[]), "pth_ran").unwrap();
    assert_eq!(
        r.call(&[vec![Value::Int(0)]]).unwrap(),
        vec![Value::Str("yes".into())]
    );
    // Deleted while cached: made again.
    std::fs::remove_dir_all(&made[0]).unwrap();
    let again = resolve_environment(&c).unwrap().unwrap();
    assert_eq!(again.executable, a.executable);
    assert!(made[0].join("coil-env.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn environment_errors_name_the_setting_and_what_is_wrong() {
    let (dir, _) = scratch("errors");
    let cache = dir.join("cache");
    let start = |pairs: &[String]| runner(pairs, "where").map(drop).unwrap_err();
    let exe = |p: &str| vec![format!("python.executable={p}")];
    let e = start(&exe("/no/such/python"));
    assert!(matches!(e, StartError::Environment { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("python.executable /no/such/python: does not exist"),
        "{e}"
    );
    let e = start(&exe("/bin/true")).to_string();
    assert!(e.contains("/bin/true: is not a Python"), "{e}");
    // Another CPython version than the embedded one, when this machine
    // has one.
    let other = if coil_worker::EMBEDDED_VERSION == "3.13" {
        "3.12"
    } else {
        "3.13"
    };
    let root = std::env::var("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".pyenv"));
    let found = std::fs::read_dir(root.join("versions"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(format!("python{other}")))
        .find(|p| p.exists());
    if let Some(py) = found {
        let e = start(&exe(py.to_str().unwrap()));
        match &e {
            StartError::PythonVersion {
                found, embedded, ..
            } => {
                assert_eq!(
                    (found.as_str(), *embedded),
                    (other, coil_worker::EMBEDDED_VERSION)
                )
            }
            other => panic!("{other:?}"),
        }
        let m = e.to_string();
        assert!(
            m.contains("PYO3_PYTHON=") && m.contains(&format!("CPython {other}")),
            "{m}"
        );
    }
    let e = start(&[
        "python.requirements=/no/such/requirements.txt".into(),
        format!("python.env.cache-dir={}", cache.display()),
    ])
    .to_string();
    assert!(
        e.contains("python.requirements /no/such/requirements.txt: cannot read it"),
        "{e}"
    );
    // A package that does not exist: pip's own words, and nothing
    // half-made left in the cache.
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "coil-no-such-package-8c1f0e2a==1.0\n").unwrap();
    let e = start(&pairs(&bad, &cache, &[])).to_string();
    assert!(e.contains("pip install failed"), "{e}");
    assert!(e.contains("coil-no-such-package-8c1f0e2a"), "{e}");
    assert_eq!(environments(&cache), Vec::<PathBuf>::new());
    let e = start(&[
        "python.requirements=/a.txt".into(),
        "python.executable=/usr/bin/python3".into(),
    ])
    .to_string();
    assert!(e.contains("not both"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A coil built for the GIL given a free-threaded `python.executable`, or
/// the reverse: a clear error naming both builds. The free-threaded
/// interpreter is `COIL_TEST_PYTHON_FT` (CI sets it from `tools/python-ft`).
#[test]
fn a_python_of_the_other_build_gil_or_free_threaded_is_a_clear_error() {
    let Some(ft) = std::env::var_os("COIL_TEST_PYTHON_FT") else {
        eprintln!("skipped: set COIL_TEST_PYTHON_FT to a free-threaded python (tools/python-ft)");
        return;
    };
    let other = if coil_worker::FREE_THREADED {
        // tools/python: the GIL build the default coil embeds.
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/python")
    } else {
        PathBuf::from(ft)
    };
    let pairs = vec![format!("python.executable={}", other.display())];
    let e = runner(&pairs, "where").map(drop).unwrap_err();
    assert!(matches!(e, StartError::PythonVersion { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("(free-threaded)") && m.contains("(with the GIL)"),
        "{m}"
    );
    assert!(m.contains(&other.display().to_string()), "{m}");
    assert!(m.contains(coil_worker::EMBEDDED_PYTHON), "{m}");
}

#[test]
fn a_second_multi_thread_runner_with_another_environment_runs_in_process_mode_or_fails_when_strict()
{
    let (dir, req) = scratch("conflict");
    let cache = dir.join("cache");
    let plain = |name: &str, pairs: &[&str]| {
        let spec = UdfSpec::new(format!("{}:{name}", udfs().join("basic.py").display()));
        Runner::with_worker_command(&config(pairs), spec, worker())
    };
    let first = plain(
        "inc",
        &[
            "python.execution-mode=multi-thread",
            "python.worker-count=1",
        ],
    )
    .unwrap();
    assert_eq!(first.mode(), ExecutionMode::MultiThread);
    let second = runner(
        &pairs(&req, &cache, &["python.execution-mode=multi-thread"]),
        "where",
    )
    .unwrap();
    assert_eq!(second.mode(), ExecutionMode::Process);
    assert!(matches!(
        &second.call(&[vec![Value::Int(0)]]).unwrap()[0],
        Value::List(v) if v[0] == Value::Int(42)
    ));
    let strict = runner(
        &pairs(
            &req,
            &cache,
            &[
                "python.execution-mode=multi-thread",
                "python.execution-mode.strict=true",
            ],
        ),
        "where",
    );
    assert!(
        matches!(strict, Err(StartError::EnvironmentConflict { .. })),
        "{strict:?}"
    );
    // The first runner still imports from its own.
    assert_eq!(
        first.call(&[vec![Value::Int(1)]]).unwrap(),
        vec![Value::Int(2)]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn coil_env_shows_the_environment_and_whether_a_udf_can_run_in_a_sub_interpreter() {
    let np = numpy();
    let out = coil(
        &[
            "env",
            "--conf",
            &np[0],
            "--conf",
            &np[1],
            "--udf",
            "tests/udfs/uses_numpy.py:double",
        ],
        "",
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!(
        "embedded CPython {}",
        coil_worker::EMBEDDED_VERSION
    )));
    assert!(text.contains("target/coil-envs/py"), "{text}");
    assert!(text.contains("site-packages"), "{text}");
    assert!(
        text.contains("UDF tests/udfs/uses_numpy.py:double: loads"),
        "{text}"
    );
    if coil_worker::SUBINTERPRETERS {
        assert!(
            text.contains("it imports numpy, which cannot load in one"),
            "{text}"
        );
    }
    // Without the environment, the same UDF does not load, and says why.
    let out = coil(&["env", "--udf", "tests/udfs/uses_numpy.py:double"], "");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("No module named 'numpy'"), "{text}");
}

#[test]
fn without_a_package_index_the_error_says_what_pip_needs() {
    let (dir, _) = scratch("no-index");
    // This test's own process (nextest runs each test in one, and no other
    // thread reads the environment meanwhile): pip, run by coil from here,
    // finds no index and no local wheels.
    std::env::set_var("PIP_INDEX_URL", "http://127.0.0.1:9/simple");
    std::env::set_var("PIP_FIND_LINKS", "");
    std::env::set_var("PIP_RETRIES", "0");
    std::env::set_var("PIP_TIMEOUT", "2");
    let req = dir.join("req.txt");
    std::fs::write(&req, "coil-offline-check==1.0\n").unwrap();
    let cache = dir.join("cache");
    let e = runner(&pairs(&req, &cache, &[]), "where")
        .map(drop)
        .unwrap_err()
        .to_string();
    assert!(e.contains("pip install failed"), "{e}");
    assert!(e.contains("pip needs access to a package index"), "{e}");
    assert_eq!(environments(&cache), Vec::<PathBuf>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn coil_env_prune_removes_environments_no_runner_used_for_the_max_age() {
    let cache = std::env::temp_dir().join(format!("coil-prune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    // Two environments as coil lays them out: one last used 40 days ago,
    // one today.
    for (name, age) in [
        ("py3.13-00000000000000aa", "40 days ago"),
        ("py3.13-00000000000000bb", "now"),
    ] {
        let dir = cache.join(name);
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("lib/big.bin"), vec![0u8; 3 << 20]).unwrap();
        std::fs::write(dir.join(".coil-used"), "0").unwrap();
        let touched = std::process::Command::new("touch")
            .args(["-d", age])
            .arg(dir.join(".coil-used"))
            .status()
            .unwrap();
        assert!(touched.success());
    }
    let out = crate::util::coil(
        &[
            "env",
            "--prune",
            "--conf",
            &format!("python.env.cache-dir={}", cache.display()),
        ],
        "",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("py3.13-00000000000000aa (3 MiB, unused for 40 days)"),
        "{text}"
    );
    assert!(text.contains("1 environment removed"), "{text}");
    assert!(!cache.join("py3.13-00000000000000aa").exists());
    assert!(
        cache.join("py3.13-00000000000000bb").exists(),
        "used today: kept"
    );
    // A shorter max age takes the other one too.
    let out = crate::util::coil(
        &[
            "env",
            "--prune",
            "--conf",
            &format!("python.env.cache-dir={}", cache.display()),
            "--conf",
            "python.env.max-age=0",
        ],
        "",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 environment removed"));
    assert!(!cache.join("py3.13-00000000000000bb").exists());
    std::fs::remove_dir_all(&cache).unwrap();
}
