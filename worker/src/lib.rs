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
mod interp;
mod log;
mod serve;
mod subinterp;
mod timing;

pub use coil_ipc as ipc;
pub use coil_proto as proto;
pub use coil_proto::{arrow_type_supported, child_types, plain_type, result_wire_type};
pub use coil_proto::{incompatible_module, INCOMPATIBLE};
pub use coil_proto::{PyErrorInfo, Times, UdfKind, UdfSpec, UnknownKind};
pub use error::{BatchError, LoadError, ServeError};
pub use executor::Executor;
pub use interp::InterruptTarget;
#[cfg(Py_3_13)]
pub use interp::SubInterpreter;
pub use log::route_output_to_log;
pub use serve::{serve, serve_in_process, watch_parent};
pub use subinterp::{serve_in_subinterpreter, IMPORTED_IN_MAIN_FIRST, SUBINTERPRETERS};

/// The CPython this build embeds, as the interpreter it was built against
/// reported its `sys.executable` (`PYO3_PYTHON`, see `tools/python`).
pub const EMBEDDED_PYTHON: &str = env!("COIL_PYTHON_EXECUTABLE");

/// The embedded CPython's `major.minor`.
pub const EMBEDDED_VERSION: &str = env!("COIL_PYTHON_VERSION");

/// The largest batch or answer, in bytes, unless `--max-message` says
/// otherwise (256 MiB).
pub const DEFAULT_MAX_MESSAGE: usize = 256 << 20;

/// The usage of the `coil-worker` program.
pub const USAGE: &str = "usage: coil-worker --fd FD --udf FILE.py:NAME|package.module:NAME [--kind scalar|table|vectorized] [--path DIR]... [--sys-path DIR]... [--site-dir DIR]... [--returns TYPE] [--max-message BYTES]";

/// The `coil-worker` program: parses `args` (without the program name),
/// opens the inherited region and serves it. Returns the exit code.
///
/// The host spawns workers with this; the `coil` CLI runs it as
/// `coil worker ...` so that it needs no second binary.
pub fn worker_main(args: impl IntoIterator<Item = String>) -> std::process::ExitCode {
    use std::process::ExitCode;
    let mut fd = None;
    let mut max_message = DEFAULT_MAX_MESSAGE;
    let mut spec = UdfSpec::new("");
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let parsed: Result<(), String> = (|| {
            match arg.as_str() {
                "--fd" => {
                    fd = Some(
                        value("--fd")?
                            .parse::<i32>()
                            .map_err(|e| format!("--fd: {e}"))?,
                    )
                }
                "--udf" => spec.target = value("--udf")?,
                "--kind" => {
                    spec.kind = value("--kind")?
                        .parse()
                        .map_err(|e: UnknownKind| e.to_string())?
                }
                "--path" => spec.paths.push(value("--path")?.into()),
                "--sys-path" => spec.sys_path.push(value("--sys-path")?.into()),
                "--site-dir" => spec.site_dirs.push(value("--site-dir")?.into()),
                "--returns" => {
                    let hex = value("--returns")?;
                    let bytes = (0..hex.len())
                        .step_by(2)
                        .map(|i| {
                            hex.get(i..i + 2)
                                .and_then(|b| u8::from_str_radix(b, 16).ok())
                        })
                        .collect::<Option<Vec<u8>>>()
                        .ok_or("--returns: not hexadecimal bytes")?;
                    spec.returns = Some(
                        coil_proto::Columns::type_from_bytes(&bytes)
                            .map_err(|e| format!("--returns: {e}"))?,
                    );
                }
                "--max-message" => {
                    max_message = value("--max-message")?
                        .parse()
                        .map_err(|e| format!("--max-message: {e}"))?
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
            Ok(())
        })();
        if let Err(e) = parsed {
            eprintln!("coil-worker: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let Some(fd) = fd.filter(|_| !spec.target.is_empty()) else {
        eprintln!("coil-worker: --fd and --udf are required\n{USAGE}");
        return ExitCode::from(2);
    };
    watch_parent(
        std::env::var("COIL_HOST_PID")
            .ok()
            .and_then(|p| p.parse().ok()),
    );
    // SAFETY: the host passed this descriptor down with
    // `Region::inherit_into`, and nothing else in this process owns it.
    let region = match unsafe { coil_ipc::Region::from_inherited_fd(fd) } {
        Ok(r) => r,
        Err(e) => {
            eprintln!("coil-worker: opening the region on fd {fd}: {e}");
            return ExitCode::from(3);
        }
    };
    match serve(&region, &spec, max_message) {
        Ok(()) => ExitCode::SUCCESS,
        // Already reported to the host, with its traceback.
        Err(ServeError::Load(_)) => ExitCode::from(4),
        Err(e) => {
            eprintln!("coil-worker: {e}");
            ExitCode::FAILURE
        }
    }
}
