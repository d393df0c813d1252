//! Python environments: the packages a UDF imports, from another
//! installation's `python` (`python.executable`) or from a requirements
//! file installed once into a cached virtual environment
//! (`python.requirements`).
//!
//! Either way the runner asks that `python` for its `sys.path` and its
//! site-packages directories, and every executor (a worker process, an
//! executor thread, a sub-interpreter) imports with exactly that `sys.path`,
//! running the directories' `.pth` files as that `python` does.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{Config, StartError};

/// Another environment's `python`, as it reported itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonEnv {
    /// The `python` asked.
    pub executable: PathBuf,
    /// Its `major.minor`, with a `t` when it is free-threaded ("3.14t").
    pub version: String,
    /// Its `sys.path`.
    pub sys_path: Vec<PathBuf>,
    /// Its site-packages directories.
    pub site_dirs: Vec<PathBuf>,
}

/// What the probe prints: one JSON object.
/// The version is `major.minor`, with a `t` for a free-threaded build
/// ("3.14t"), as coil-worker's `EMBEDDED_VERSION` is written.
const PROBE: &str = r#"import json, site, sys, sysconfig
dirs = list(site.getsitepackages())
if site.ENABLE_USER_SITE:
    dirs.append(site.getusersitepackages())
tag = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
print(json.dumps({"version": "%d.%d%s" % (*sys.version_info[:2], tag), "path": sys.path, "site": dirs}))
"#;

/// The file a cached environment keeps its probe in, written last: its
/// presence says the environment is complete.
const PROBED: &str = "coil-env.json";

/// The environment `config` asks for (`python.executable`, or
/// `python.requirements` made or found in the cache), if any: what a
/// runner imports from; `coil env` prints it.
///
/// # Errors
///
/// [`StartError::Environment`]: a `python` that does not exist or is not a
/// Python, a requirements file that does not exist or does not install
/// (with pip's own words), a `python.files` directory that does not exist;
/// [`StartError::PythonVersion`]: a `python` of another version than the
/// embedded one.
pub fn resolve(config: &Config) -> Result<Option<PythonEnv>, StartError> {
    // Checked here, where the UDF runs, rather than when the key is set: a
    // client may set directories that exist only on a cluster's executors.
    if let Some(missing) = config.files().into_iter().find(|dir| !dir.exists()) {
        return Err(StartError::Environment {
            setting: crate::FILES,
            path: missing,
            reason: "does not exist".into(),
        });
    }
    match (config.executable(), config.requirements()) {
        (None, None) => Ok(None),
        (Some(exe), Some(req)) => Err(StartError::Environment {
            setting: crate::REQUIREMENTS,
            path: req,
            reason: format!("set it or python.executable ({}), not both", exe.display()),
        }),
        (Some(exe), None) => probe(&exe).map(Some),
        (None, Some(req)) => {
            let cache = config
                .env_cache_dir()
                .ok_or_else(|| StartError::Environment {
                    setting: crate::REQUIREMENTS,
                    path: req.clone(),
                    reason: "needs a cache directory: set python.env.cache-dir (neither XDG_CACHE_HOME nor HOME is set)".into(),
                })?;
            from_requirements(&req, &cache).map(Some)
        }
    }
}

/// Asks `exe` for its version, `sys.path` and site directories.
fn probe(exe: &Path) -> Result<PythonEnv, StartError> {
    let fail = |reason: String| StartError::Environment {
        setting: crate::EXECUTABLE,
        path: exe.to_path_buf(),
        reason,
    };
    if !exe.exists() {
        return Err(fail("does not exist".into()));
    }
    let out = Command::new(exe)
        .arg("-c")
        .arg(PROBE)
        .output()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let parsed = out
        .status
        .success()
        .then(|| serde_json::from_str::<serde_json::Value>(text.trim()).ok())
        .flatten();
    let Some(json) = parsed else {
        return Err(fail(format!(
            "is not a Python (asked for its sys.path, it {}{})",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr))
        )));
    };
    let env = from_json(exe, &json)
        .ok_or_else(|| fail("is not a Python (its answer did not parse)".into()))?;
    check_version(&env)?;
    Ok(env)
}

fn from_json(exe: &Path, json: &serde_json::Value) -> Option<PythonEnv> {
    let paths = |key: &str| -> Option<Vec<PathBuf>> {
        json.get(key)?
            .as_array()?
            .iter()
            .map(|p| p.as_str().map(PathBuf::from))
            .collect()
    };
    Some(PythonEnv {
        executable: exe.to_path_buf(),
        version: json.get("version")?.as_str()?.to_string(),
        sys_path: paths("path")?,
        site_dirs: paths("site")?,
    })
}

fn check_version(env: &PythonEnv) -> Result<(), StartError> {
    let ours = coil_worker::EMBEDDED_VERSION;
    if env.version == ours {
        return Ok(());
    }
    Err(StartError::PythonVersion {
        executable: env.executable.clone(),
        found: env.version.clone(),
        embedded: ours,
        embedded_python: coil_worker::EMBEDDED_PYTHON,
    })
}

/// The last lines of `s`, after a separator, or nothing.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.trim_end().lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(20);
    format!(":\n{}", lines[start..].join("\n"))
}

/// The cached environment for requirements file `req` under `cache`:
/// made (and its requirements installed) the first time, under a lock so
/// that runners and processes asking at once make it once; reused at no
/// more cost than reading one small file afterwards.
fn from_requirements(req: &Path, cache: &Path) -> Result<PythonEnv, StartError> {
    let fail = |reason: String| StartError::Environment {
        setting: crate::REQUIREMENTS,
        path: req.to_path_buf(),
        reason,
    };
    let content = std::fs::read(req).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let ours = coil_worker::EMBEDDED_VERSION;
    let mut hash = Sha256::new();
    hash.update(ours.as_bytes());
    hash.update([0]);
    hash.update(coil_worker::EMBEDDED_PYTHON.as_bytes());
    hash.update([0]);
    hash.update(&content);
    let key: String = hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = cache.join(format!("py{ours}-{key}"));
    // Environments are code coil runs: their cache must be no one else's
    // to write.
    crate::private::owned_dir(cache).map_err(|why| {
        fail(format!(
            "the cache directory {} (python.env.cache-dir) will not be used: {why}",
            cache.display()
        ))
    })?;
    let lock_path = cache.join(format!("py{ours}-{key}.lock"));
    let lock_file = File::create(&lock_path)
        .map_err(|e| fail(format!("cannot create {}: {e}", lock_path.display())))?;
    // Held until this returns: whoever comes second waits, then finds the
    // environment made.
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| fail(format!("cannot lock {}: {e}", lock_path.display())))?;
    let python = dir.join("bin").join("python");
    if let Some(env) = cached(&dir, &python) {
        mark_used(&dir);
        return Ok(env);
    }
    // Nothing, or something half-made or damaged (a deleted file): start
    // again from scratch. What is there is moved aside first, so removing
    // it (which an installer a killed run left behind may still be
    // writing into) can fail without failing this run.
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    clear_leftovers(cache, &name);
    if dir.exists() {
        let aside = cache.join(format!(".{name}.damaged-{}", std::process::id()));
        std::fs::rename(&dir, &aside).map_err(|e| {
            fail(format!(
                "cannot move the damaged {} aside: {e}",
                dir.display()
            ))
        })?;
        let _ = std::fs::remove_dir_all(&aside);
    }
    let base = coil_worker::EMBEDDED_PYTHON;
    if base.is_empty() || !Path::new(base).exists() {
        return Err(fail(format!(
            "making its environment needs the CPython coil was built against ({base:?}), which is not on this machine"
        )));
    }
    let wanted = String::from_utf8_lossy(&content)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(", ");
    tracing::info!(
        "python.requirements: installing {wanted} for CPython {ours} into {}",
        dir.display()
    );
    let started = Instant::now();
    // Made under a temporary name and renamed into place whole: a run
    // killed half way leaves only a `.NAME.building-PID` the next one
    // clears, never a half-made environment under the real name.
    let building = cache.join(format!(".{name}.building-{}", std::process::id()));
    let made = (|| {
        let _ = std::fs::remove_dir_all(&building);
        install(Path::new(base), &building, req)?;
        std::fs::rename(&building, &dir)
            .map_err(|e| format!("moving the new environment into place: {e}"))?;
        let env = probe(&python).map_err(|e| e.to_string())?;
        let json = serde_json::json!({
            "version": env.version,
            "path": env.sys_path,
            "site": env.site_dirs,
        });
        let tmp = dir.join(format!("{PROBED}.tmp"));
        File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(json.to_string().as_bytes())
                    .and_then(|()| f.sync_all())
            })
            .and_then(|()| std::fs::rename(&tmp, dir.join(PROBED)))
            .map_err(|e| format!("writing {PROBED}: {e}"))?;
        Ok::<PythonEnv, String>(env)
    })();
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    if made.is_ok() {
        mark_used(&dir);
    }
    match made {
        Ok(env) => {
            tracing::info!(
                "python.requirements: installed {wanted} in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(env)
        }
        Err(why) => {
            // Nothing half-made stays in the cache.
            let _ = std::fs::remove_dir_all(&dir);
            Err(fail(why))
        }
    }
}

/// The environment in `dir`, if it is complete: its probe file is there
/// and parses, and its `python` and every site directory still exist.
fn cached(dir: &Path, python: &Path) -> Option<PythonEnv> {
    let text = std::fs::read_to_string(dir.join(PROBED)).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let env = from_json(python, &json)?;
    let whole = python.exists()
        && env
            .site_dirs
            .iter()
            .all(|d| !d.starts_with(dir) || d.exists());
    (whole && env.version == coil_worker::EMBEDDED_VERSION).then_some(env)
}

/// The file whose time says when an environment was last used.
const USED: &str = ".coil-used";

/// Records that a runner starts with environment `dir` now (what
/// [`prune_environments`] goes by).
fn mark_used(dir: &Path) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let _ = std::fs::write(dir.join(USED), now.to_string());
}

/// A cached environment that [`prune_environments`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedEnv {
    /// Where it was.
    pub path: PathBuf,
    /// Bytes it held.
    pub bytes: u64,
    /// How long no runner had started with it.
    pub unused: Duration,
}

/// Bytes of the files under `path`.
fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes the environments under `cache` (`python.env.cache-dir`) that no
/// runner started with for `max_age` (`python.env.max-age`): what `coil
/// env --prune` does. An environment being made (its lock held) is left
/// alone. A runner that started with one earlier and still runs is not
/// seen: keep `max_age` longer than hosts live.
///
/// # Errors
///
/// The cache directory cannot be read.
pub fn prune_environments(cache: &Path, max_age: Duration) -> std::io::Result<Vec<PrunedEnv>> {
    let mut pruned = Vec::new();
    let now = std::time::SystemTime::now();
    for entry in std::fs::read_dir(cache)?.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_env = name.starts_with("py")
            && name.contains('-')
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_env {
            continue;
        }
        let used = std::fs::metadata(path.join(USED))
            .or_else(|_| std::fs::metadata(&path))
            .and_then(|m| m.modified())
            .unwrap_or(now);
        let unused = now.duration_since(used).unwrap_or_default();
        if unused < max_age {
            continue;
        }
        let lock_path = cache.join(format!("{name}.lock"));
        let Ok(lock_file) = File::create(&lock_path) else {
            continue;
        };
        let Ok(_lock) =
            nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        else {
            continue; // being made or checked right now
        };
        let bytes = disk_usage(&path);
        if std::fs::remove_dir_all(&path).is_ok() {
            let _ = std::fs::remove_file(&lock_path);
            pruned.push(PrunedEnv {
                path,
                bytes,
                unused,
            });
        }
    }
    Ok(pruned)
}

/// Makes a virtual environment of CPython `base` in `dir` and installs
/// requirements file `req` into it. Every installer is a child of this
/// process that dies with it (see [`run`]) and starts no installer of its
/// own: the venv is made without pip (`ensurepip` would run pip in a
/// grandchild), and pip runs from the wheel `base` bundles, in the
/// environment's interpreter, installing into it. A `base` without that
/// wheel gets the venv's own pip.
fn install(base: &Path, dir: &Path, req: &Path) -> Result<(), String> {
    let python = dir.join("bin").join("python");
    let pip = bundled_pip(base);
    let mut venv = Command::new(base);
    venv.args(["-m", "venv"]);
    if pip.is_some() {
        venv.arg("--without-pip");
    }
    run(venv.arg(dir), "making a virtual environment")?;
    let mut install = Command::new(&python);
    match &pip {
        Some(wheel) => install.arg(wheel.join("pip")),
        None => install.args(["-m", "pip"]),
    };
    run(
        install
            .args(["install", "--disable-pip-version-check", "--no-input", "-r"])
            .arg(req),
        "pip install",
    )
}

/// The pip wheel CPython `base` bundles for `ensurepip`, if it has one.
fn bundled_pip(base: &Path) -> Option<PathBuf> {
    let out = Command::new(base)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('stdlib'))",
        ])
        .output()
        .ok()?;
    let stdlib = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    std::fs::read_dir(stdlib.join("ensurepip").join("_bundled"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("pip-") && n.ends_with(".whl"))
        })
}

/// Removes what killed runs left in `cache` for environment `name`
/// (`.NAME.building-PID`, `.NAME.damaged-PID`), as far as it can: an
/// installer of such a run may still be writing there.
fn clear_leftovers(cache: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Runs `cmd`, an installer, as a child that dies with this process (a
/// parent-death signal, its own process group); its output on failure.
fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    cmd.process_group(0);
    let hook = move || {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(std::io::Error::from)?;
        // The parent may have died before the signal was asked for.
        if nix::unistd::getppid().as_raw() as u32 != parent {
            return Err(std::io::Error::from(nix::errno::Errno::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: `prctl` and `getppid` are plain
    // system calls, and its errors are raw OS error codes: it allocates
    // nothing and takes no lock.
    unsafe { cmd.pre_exec(hook) };
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run it: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    let hint = if what.starts_with("pip") {
        "\n(pip needs access to a package index: PyPI, or PIP_INDEX_URL / PIP_FIND_LINKS)"
    } else {
        ""
    };
    Err(format!(
        "{what} failed ({}){}{hint}",
        out.status,
        tail(&text)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_of_the_other_build_of_the_same_version_is_refused_naming_both() {
        let ours = coil_worker::EMBEDDED_VERSION;
        // The same major.minor, the other build: free-threaded for a GIL
        // coil, with the GIL for a free-threaded one.
        let other = match ours.strip_suffix('t') {
            Some(gil) => gil.to_string(),
            None => format!("{ours}t"),
        };
        let env = PythonEnv {
            executable: PathBuf::from("/opt/other/bin/python"),
            version: other.clone(),
            sys_path: Vec::new(),
            site_dirs: Vec::new(),
        };
        let e = check_version(&env).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains(&format!("/opt/other/bin/python is CPython {other} ("))
                && m.contains(&format!("this coil embeds CPython {ours} (")),
            "{m}"
        );
        assert!(
            m.contains("(free-threaded)") && m.contains("(with the GIL)"),
            "{m}"
        );
        assert!(check_version(&PythonEnv {
            version: ours.to_string(),
            ..env
        })
        .is_ok());
    }
}
