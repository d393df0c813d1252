//! `coil env`: the embedded CPython, the Python environment a
//! configuration gives UDFs, the modes this build runs, and whether a UDF
//! loads (and can load in a sub-interpreter).

use std::io::Write;

use anyhow::Context;
use coil_host::{Runner, UdfKind, UdfSpec, WorkerCommand};

use crate::cli::{config_of, EnvArgs};

/// A `sys.path` entry as `coil env` prints it.
fn shown(entry: &str) -> String {
    if entry.is_empty() {
        "'' (the current directory)".into()
    } else {
        entry.to_string()
    }
}

/// What `python.worker.memory-limit` bounds, in words: `coil env` and
/// `coil bench` print it.
pub fn memory_limit(config: &coil_host::Config) -> String {
    match config.memory_limit() {
        Some(bytes) => format!(
            "{} MiB per worker process (python.worker.memory-limit); executor threads (multi-thread, sub-interpreter) share the host's memory and are not bounded",
            bytes >> 20
        ),
        None => "none (python.worker.memory-limit=0): a UDF may take all the memory it finds; executor threads are never bounded".into(),
    }
}

/// `coil env`: writes to `out` what UDFs run with; with `--udf`, whether it
/// loads and can run in a sub-interpreter. `Ok(false)` if the UDF does not
/// load.
///
/// # Errors
///
/// A configuration key refused, an environment that cannot be made, or
/// `out` cannot be written.
pub fn env(args: &EnvArgs, out: &mut impl Write) -> anyhow::Result<bool> {
    let config = config_of(&args.conf)?;
    if args.prune {
        let cache = config
            .env_cache_dir()
            .ok_or_else(|| anyhow::anyhow!("no cache directory: set python.env.cache-dir"))?;
        let max_age = config.env_max_age();
        let pruned = match coil_host::prune_environments(&cache, max_age) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", cache.display())),
        };
        for p in &pruned {
            writeln!(
                out,
                "removed {} ({} MiB, unused for {} days)",
                p.path.display(),
                p.bytes >> 20,
                p.unused.as_secs() / 86_400
            )?;
        }
        writeln!(
            out,
            "{} environment{} removed from {} (python.env.max-age = {} days)",
            pruned.len(),
            if pruned.len() == 1 { "" } else { "s" },
            cache.display(),
            max_age.as_secs() / 86_400
        )?;
        return Ok(true);
    }
    let libpython = std::fs::read_to_string("/proc/self/maps")
        .ok()
        .and_then(|maps| {
            maps.lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .find(|p| p.contains("libpython"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "statically linked".into());
    writeln!(out, "embedded CPython {}", coil_worker::EMBEDDED_VERSION)?;
    writeln!(
        out,
        "  free-threaded   {}",
        if coil_worker::FREE_THREADED {
            "yes: multi-thread executors run Python in parallel while the GIL stays off"
        } else {
            "no: multi-thread executors take turns holding the GIL (sub-interpreter or process mode run in parallel)"
        }
    )?;
    writeln!(out, "  built against   {}", coil_worker::EMBEDDED_PYTHON)?;
    writeln!(out, "  libpython       {libpython}")?;
    let modes = if coil_worker::SUBINTERPRETERS {
        "process, multi-thread, sub-interpreter"
    } else {
        "process, multi-thread (sub-interpreter needs a build against CPython >= 3.13)"
    };
    writeln!(out, "modes             {modes}")?;
    writeln!(out, "memory limit      {}", memory_limit(&config))?;
    match coil_host::resolve_environment(&config)? {
        Some(env) => {
            writeln!(
                out,
                "environment       {} (CPython {})",
                env.executable.display(),
                env.version
            )?;
            writeln!(out, "sys.path")?;
            for p in &env.sys_path {
                writeln!(out, "  {}", shown(&p.to_string_lossy()))?;
            }
        }
        None => {
            writeln!(
        out,
        "environment       the embedded CPython's own (set python.executable or python.requirements for another)")?;
            let sys_path = std::process::Command::new(coil_worker::EMBEDDED_PYTHON)
                .args(["-c", "import sys; print('\\n'.join(sys.path))"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
            if let Some(paths) = sys_path {
                writeln!(out, "sys.path")?;
                for p in paths.lines() {
                    writeln!(out, "  {}", shown(p))?;
                }
            }
        }
    }
    for p in config.files() {
        writeln!(out, "python.files      {}", p.display())?;
    }
    let Some(udf) = &args.udf else {
        return Ok(true);
    };
    let kind: UdfKind = args.kind.parse()?;
    let command = WorkerCommand::new(std::env::current_exe().context("locating the coil program")?)
        .arg("worker");
    let mut process = config.clone();
    process.set(coil_host::EXECUTION_MODE, "process")?;
    process.set(coil_host::WORKER_COUNT, "1")?;
    let spec = UdfSpec::new(udf).kind(kind);
    match Runner::with_worker_command(&process, spec.clone(), command.clone()) {
        Ok(runner) => {
            writeln!(out, "UDF {udf}: loads")?;
            if coil_worker::FREE_THREADED {
                match runner.gil_enabled_by() {
                    None => writeln!(
                        out,
                        "  the GIL:        stays off once it loads (multi-thread executors run in parallel)"
                    )?,
                    Some(module) => writeln!(
                        out,
                        "  the GIL:        {}",
                        coil_worker::gil_message(module, " when it loads")
                    )?,
                }
            }
        }
        Err(e) => {
            writeln!(out, "UDF {udf}: does not load: {e}")?;
            return Ok(false);
        }
    }
    if !coil_worker::SUBINTERPRETERS {
        writeln!(
            out,
            "  in a sub-interpreter: not in this build (CPython < 3.13)"
        )?;
        return Ok(true);
    }
    let mut sub = config;
    sub.set(coil_host::EXECUTION_MODE, "sub-interpreter")?;
    sub.set(coil_host::EXECUTION_MODE_STRICT, "true")?;
    sub.set(coil_host::WORKER_COUNT, "1")?;
    match Runner::with_worker_command(&sub, spec, command) {
        Ok(_) => writeln!(out,
            "  in a sub-interpreter: loads (imports made when it is called are checked then)"
        )?,
        Err(coil_host::StartError::SubInterpreterIncompatible { module, .. }) => {
            writeln!(
        out,
        "  in a sub-interpreter: no, it imports {module}, which cannot load in one: it would run in process mode")?
        }
        Err(e) => writeln!(
        out,
        "  in a sub-interpreter: no: {e}")?,
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_sys_path_entry_is_named_the_current_directory() {
        assert_eq!(shown(""), "'' (the current directory)");
        assert_eq!(shown("/usr/lib/python3"), "/usr/lib/python3");
    }

    #[test]
    fn without_a_udf_it_lists_the_embedded_python_and_the_modes() {
        let args = EnvArgs {
            conf: Vec::new(),
            udf: None,
            kind: "scalar".into(),
            prune: false,
        };
        let mut out = Vec::new();
        assert!(env(&args, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("embedded CPython "), "{text}");
        assert!(
            text.contains("modes             process, multi-thread"),
            "{text}"
        );
    }
}
