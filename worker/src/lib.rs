//! `coil-worker`: the executor side of coil. It takes frames off a ring,
//! decodes the batch of rows in place into Python objects, calls the Python
//! UDF on them and encodes the answers into the reply frame. The same
//! [`Executor`] runs in every execution mode: in a separate `coil-worker`
//! process (`process` mode, [`serve`]) or on a host thread (the in-process
//! modes).
//!
//! coil embeds CPython ≥ 3.12 with a shared libpython (the build picks the
//! newest one it finds, see `tools/python`; `PYO3_PYTHON` overrides), and
//! links an rpath to it so binaries run without `LD_LIBRARY_PATH`.
//!
//! # Examples
//!
//! Run a batch through a UDF in this process:
//!
//! ```
//! use coil_worker::{Executor, UdfSpec};
//! use coil_worker::ipc::{decode_batch, encode_batch, Value};
//! use pyo3::Python;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("coil-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("inc.py"), "def inc(x):\n    return x + 1\n")?;
//! let spec = UdfSpec::new(format!("{}:inc", dir.join("inc.py").display()));
//!
//! let mut input = Vec::new();
//! encode_batch(&[vec![Value::Int(1)], vec![Value::Int(41)]], &mut input)?;
//! Python::initialize();
//! let out = Python::attach(|py| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
//!     let mut exec = Executor::load(py, &spec)?;
//!     let mut out = Vec::new();
//!     exec.run_batch(py, &input[..], &mut out, false)?;
//!     Ok(out)
//! })?;
//! assert_eq!(decode_batch(&out[..])?, vec![vec![Value::Int(2)], vec![Value::Int(42)]]);
//! # Ok(()) }
//! ```

mod arrow;
mod convert;
mod error;
mod executor;
mod helper;
mod interp;
mod log;
mod serve;
mod timing;

pub use coil_ipc as ipc;
pub use coil_proto as proto;
pub use coil_proto::{Launch, LaunchError, DEFAULT_MAX_MESSAGE, USAGE};
pub use coil_proto::{PyErrorInfo, Times, UdfKind, UdfSpec, UnknownKind};
pub use error::{BatchError, LoadError, ServeError};
pub use executor::Executor;
pub use interp::InterruptTarget;
#[cfg(Py_3_13)]
pub use interp::SubInterpreter;
pub use log::route_output_to_log;
pub use serve::{
    serve, serve_in_process, serve_in_subinterpreter, watch_parent, FIXED_IN_3_14,
    IMPORTED_IN_MAIN_FIRST, SUBINTERPRETERS,
};

/// The CPython this build embeds, as the interpreter it was built against
/// reported its `sys.executable` (`PYO3_PYTHON`, see `tools/python`).
pub const EMBEDDED_PYTHON: &str = env!("COIL_PYTHON_EXECUTABLE");

/// The embedded CPython's `major.minor`, with a `t` when it is the
/// free-threaded build ("3.14t").
pub const EMBEDDED_VERSION: &str = env!("COIL_PYTHON_VERSION");

/// Whether the embedded CPython is a free-threaded build (`--disable-gil`,
/// PEP 703): `multi-thread` executors then run Python in parallel, unless
/// an extension module that does not declare support turns the GIL back
/// on when it is imported.
pub const FREE_THREADED: bool = cfg!(Py_GIL_DISABLED);

/// On a free-threaded CPython whose main interpreter (the one
/// `multi-thread` executors share) has the GIL on now: the module whose
/// import turned it back on, as coil's loader noted it ("" if unknown).
/// `None` while the GIL is off, and always on a CPython with a GIL, where
/// the question does not arise.
pub fn main_gil_enabled_by() -> Option<String> {
    use pyo3::types::PyAnyMethods as _;
    if !FREE_THREADED {
        return None;
    }
    pyo3::Python::initialize();
    pyo3::Python::attach(|py| {
        let sys = py.import("sys").ok()?;
        let on = sys
            .getattr("_is_gil_enabled")
            .and_then(|f| f.call0())
            .and_then(|on| on.extract::<bool>())
            .ok()?;
        on.then(|| {
            sys.getattr("_coil_gil_module")
                .and_then(|m| m.extract::<String>())
                .unwrap_or_default()
        })
    })
}

/// What to say when a free-threaded CPython's GIL is on again: `module`
/// is the one whose import turned it on ("" if unknown), `when` says when
/// it happened (" when it loaded"; "" to leave it out).
pub fn gil_message(module: &str, when: &str) -> String {
    let culprit = if module.is_empty() {
        "the GIL is on (PYTHON_GIL=1 or -X gil=1, or a module imported before the UDF loaded)"
            .to_string()
    } else {
        format!(
            "importing {module} turned the GIL back on{when}: it has not declared that it can run without the GIL"
        )
    };
    format!(
        "{culprit}; multi-thread executors now take turns instead of running in parallel: use process mode for parallelism, a build of {} that supports free-threading, or PYTHON_GIL=0 to keep the GIL off at your own risk",
        if module.is_empty() { "the module" } else { module }
    )
}

/// Keeps the memory of a batch's freed buffers for the next batch: with
/// glibc's defaults a worker gives a 512 KiB result back to the kernel
/// (`brk` trims, or `munmap`) after every batch and faults in fresh zeroed
/// pages for the next one, which cost more than the UDF's `x + 1` on
/// them. Up to 64 MiB of freed heap is kept; buffers of 32 MiB and more
/// are still mapped on their own. Only in worker processes: the host's
/// allocator is its own business.
fn keep_freed_batch_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc allocator parameters; it is called
    // before Python or any other thread of this process starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// The `coil-worker` program: reads its command line `args` (without the
/// program name) and environment as [`Launch`] says, opens the inherited
/// region and serves it. Returns the exit code.
///
/// The host spawns workers with this; the `coil` CLI runs it as
/// `coil worker ...` so that it needs no second binary.
pub fn worker_main(args: impl IntoIterator<Item = String>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut launch = match Launch::from_args(args) {
        Ok(launch) => launch,
        Err(e) => {
            eprintln!("coil-worker: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    launch.read_env(|k| std::env::var(k).ok());
    keep_freed_batch_memory();
    let Launch {
        fd,
        spec,
        max_message,
        host_pid,
        limiter_fd,
        arena_fd,
    } = launch;
    watch_parent(host_pid);
    // SAFETY: the host passed this descriptor down with
    // `Region::inherit_into`, and nothing else in this process owns it.
    let region = match unsafe { coil_ipc::Region::from_inherited_fd(fd) } {
        Ok(r) => r,
        Err(e) => {
            eprintln!("coil-worker: opening the region on fd {fd}: {e}");
            return ExitCode::from(3);
        }
    };
    let limiter = match limiter_fd {
        // SAFETY: as for `fd`: the host passed it down with
        // `Region::inherit_into`, and nothing else here owns it.
        Some(fd) => match unsafe { coil_ipc::Region::from_inherited_fd(fd) } {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("coil-worker: opening the rate limit's region on fd {fd}: {e}");
                return ExitCode::from(3);
            }
        },
        None => None,
    };
    let arena = match arena_fd {
        // SAFETY: as for `fd`: the host passed it down with
        // `Arena::inherit_into`, and nothing else here owns it.
        Some(fd) => match unsafe { coil_ipc::Arena::from_inherited_fd(fd) } {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("coil-worker: opening the arena on fd {fd}: {e}");
                return ExitCode::from(3);
            }
        },
        None => None,
    };
    match serve(&region, &spec, max_message, limiter.as_ref(), arena) {
        Ok(()) => ExitCode::SUCCESS,
        // Already reported to the host, with its traceback.
        Err(ServeError::Load(_)) => ExitCode::from(4),
        Err(e) => {
            eprintln!("coil-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
