//! How a host starts a `coil-worker` process: the command line and the
//! environment it passes, written by the host ([`Launch::to_args`],
//! [`Launch::env`]) and read by the worker ([`Launch::from_args`],
//! [`Launch::read_env`]) from one definition.
//!
//! ```text
//! coil-worker --fd FD --udf TARGET --kind KIND --max-message BYTES
//!             [--path DIR]... [--sys-path DIR]... [--site-dir DIR]...
//!             [--returns HEX]
//! COIL_HOST_PID=<the host's pid>
//! ```
//!
//! `--returns` is the declared result type as a column frame writes it
//! ([`Columns::type_to_bytes`]), in hexadecimal.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;

use crate::{Columns, ProtoError, UdfSpec, UnknownKind};

/// The largest batch or answer, in bytes, unless `--max-message` says
/// otherwise (256 MiB).
pub const DEFAULT_MAX_MESSAGE: usize = 256 << 20;

/// The environment variable that carries the host's pid, for the worker to
/// tell its host from a parent it was re-parented to.
pub const HOST_PID: &str = "COIL_HOST_PID";

/// The usage of the `coil-worker` program.
pub const USAGE: &str = "usage: coil-worker --fd FD --udf FILE.py:NAME|package.module:NAME [--kind scalar|table|vectorized] [--path DIR]... [--sys-path DIR]... [--site-dir DIR]... [--returns TYPE] [--max-message BYTES] [--calls POLICY] [--limiter-fd FD] [--arena-fd FD]";

/// Everything a host passes to a `coil-worker` process it starts.
///
/// # Examples
///
/// ```
/// use coil_proto::{Launch, UdfSpec};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let launch = Launch::new(7, UdfSpec::new("udfs/inc.py:inc"));
/// let args: Vec<String> = launch
///     .to_args()
///     .into_iter()
///     .map(|a| a.into_string().unwrap())
///     .collect();
/// assert_eq!(&args[..4], ["--fd", "7", "--udf", "udfs/inc.py:inc"]);
/// assert_eq!(Launch::from_args(args)?, launch);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The inherited descriptor of the shared region.
    pub fd: RawFd,
    /// The UDF (its `args` do not travel: the worker learns them from the
    /// batches).
    pub spec: UdfSpec,
    /// The largest batch or answer, in bytes.
    pub max_message: usize,
    /// The host's pid, when it said ([`HOST_PID`]).
    pub host_pid: Option<u32>,
    /// The inherited descriptor of the region whose first word is the
    /// rate limit every executor of the UDF shares, if it has one.
    pub limiter_fd: Option<RawFd>,
    /// The inherited descriptor of the link's arena (`coil_ipc::Arena`),
    /// where column buffers are placed instead of copied through the
    /// rings, if it has one.
    pub arena_fd: Option<RawFd>,
}

/// Why a `coil-worker` command line cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// A flag came last, without its value.
    #[error("{flag} needs a value")]
    NoValue {
        /// The flag.
        flag: &'static str,
    },
    /// `--fd` is not a descriptor number.
    #[error("--fd: {value:?} is not a descriptor number")]
    Fd {
        /// What was given.
        value: String,
    },
    /// `--calls` is not a call policy.
    #[error("--calls: {value:?} is not a call policy")]
    Calls {
        /// What was given.
        value: String,
    },
    /// `--kind` names no UDF kind.
    #[error("--kind: {0}")]
    Kind(#[from] UnknownKind),
    /// `--max-message` is not a number of bytes.
    #[error("--max-message: {value:?} is not a number of bytes")]
    MaxMessage {
        /// What was given.
        value: String,
    },
    /// `--returns` is not hexadecimal bytes.
    #[error("--returns: {value:?} is not hexadecimal bytes")]
    ReturnsNotHex {
        /// What was given.
        value: String,
    },
    /// `--returns` holds bytes that are not one type.
    #[error("--returns: {0}")]
    Returns(ProtoError),
    /// An argument no worker takes.
    #[error("unknown argument {0:?}")]
    Unknown(String),
    /// `--fd` or `--udf` was not given.
    #[error("{flag} is required")]
    Missing {
        /// The flag.
        flag: &'static str,
    },
}

impl Launch {
    /// A launch of `spec` on descriptor `fd`, with the default message
    /// limit and no host pid.
    pub fn new(fd: RawFd, spec: UdfSpec) -> Launch {
        Launch {
            fd,
            spec,
            max_message: DEFAULT_MAX_MESSAGE,
            host_pid: None,
            limiter_fd: None,
            arena_fd: None,
        }
    }

    /// The command line, without the program name, in the order hosts
    /// have always written it: `--fd`, `--udf`, `--kind`,
    /// `--max-message`, then each `--path`, `--sys-path` and `--site-dir`,
    /// then `--returns` (the declared type as it travels,
    /// [`result_wire_type`](crate::result_wire_type); left out for a type
    /// without a frame encoding).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--fd".into(),
            self.fd.to_string().into(),
            "--udf".into(),
            self.spec.target.clone().into(),
            "--kind".into(),
            self.spec.kind.as_str().into(),
            "--max-message".into(),
            self.max_message.to_string().into(),
        ];
        let dirs = [
            ("--path", &self.spec.paths),
            ("--sys-path", &self.spec.sys_path),
            ("--site-dir", &self.spec.site_dirs),
        ];
        for (flag, paths) in dirs {
            for p in paths {
                args.push(flag.into());
                args.push(p.clone().into_os_string());
            }
        }
        if let Some(bytes) = self
            .spec
            .returns
            .as_ref()
            .map(crate::result_wire_type)
            .and_then(|t| Columns::type_to_bytes(&t))
        {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            args.push("--returns".into());
            args.push(hex.into());
        }
        if self.spec.calls != crate::CallPolicy::default() {
            args.push("--calls".into());
            args.push(self.spec.calls.to_arg().into());
        }
        if let Some(fd) = self.limiter_fd {
            args.push("--limiter-fd".into());
            args.push(fd.to_string().into());
        }
        if let Some(fd) = self.arena_fd {
            args.push("--arena-fd".into());
            args.push(fd.to_string().into());
        }
        args
    }

    /// The environment variables to set for the worker: the host's pid,
    /// this process's unless [`Launch::host_pid`] says otherwise.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        let pid = self.host_pid.unwrap_or_else(std::process::id);
        vec![(HOST_PID.into(), pid.to_string().into())]
    }

    /// Reads the host's pid from the environment, through `var` (e.g.
    /// `|k| std::env::var(k).ok()`); an absent or malformed value leaves
    /// it unknown.
    pub fn read_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        self.host_pid = var(HOST_PID).and_then(|p| p.parse().ok());
    }

    /// Reads a command line written by [`Launch::to_args`] (without the
    /// program name). Flags may come in any order; `--kind` defaults to
    /// scalar and `--max-message` to [`DEFAULT_MAX_MESSAGE`].
    ///
    /// # Errors
    ///
    /// [`LaunchError`]: each malformed or missing argument has its own.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Launch, LaunchError> {
        let mut fd = None;
        let mut limiter_fd = None;
        let mut arena_fd = None;
        let mut max_message = DEFAULT_MAX_MESSAGE;
        let mut spec = UdfSpec::new("");
        let mut udf = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let flag: &'static str = match arg.as_str() {
                "--fd" => "--fd",
                "--udf" => "--udf",
                "--kind" => "--kind",
                "--path" => "--path",
                "--sys-path" => "--sys-path",
                "--site-dir" => "--site-dir",
                "--returns" => "--returns",
                "--max-message" => "--max-message",
                "--calls" => "--calls",
                "--limiter-fd" => "--limiter-fd",
                "--arena-fd" => "--arena-fd",
                _ => return Err(LaunchError::Unknown(arg)),
            };
            let value = args.next().ok_or(LaunchError::NoValue { flag })?;
            match flag {
                "--fd" => {
                    fd = Some(value.parse().map_err(|_| LaunchError::Fd { value })?);
                }
                "--udf" => {
                    spec.target = value;
                    udf = true;
                }
                "--kind" => spec.kind = value.parse()?,
                "--path" => spec.paths.push(PathBuf::from(value)),
                "--sys-path" => spec.sys_path.push(PathBuf::from(value)),
                "--site-dir" => spec.site_dirs.push(PathBuf::from(value)),
                "--returns" => {
                    let bytes = from_hex(&value).ok_or(LaunchError::ReturnsNotHex { value })?;
                    spec.returns =
                        Some(Columns::type_from_bytes(&bytes).map_err(LaunchError::Returns)?);
                }
                "--calls" => {
                    spec.calls =
                        crate::CallPolicy::from_arg(&value).ok_or(LaunchError::Calls { value })?;
                }
                "--limiter-fd" => {
                    limiter_fd = Some(value.parse().map_err(|_| LaunchError::Fd { value })?);
                }
                "--arena-fd" => {
                    arena_fd = Some(value.parse().map_err(|_| LaunchError::Fd { value })?);
                }
                _ => {
                    max_message = value
                        .parse()
                        .map_err(|_| LaunchError::MaxMessage { value })?;
                }
            }
        }
        let fd = fd.ok_or(LaunchError::Missing { flag: "--fd" })?;
        if !udf || spec.target.is_empty() {
            return Err(LaunchError::Missing { flag: "--udf" });
        }
        Ok(Launch {
            fd,
            spec,
            max_message,
            host_pid: None,
            limiter_fd,
            arena_fd,
        })
    }
}

/// `hex` (two digits a byte) as bytes.
fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::{DataType, Field, TimeUnit};

    use super::*;
    use crate::UdfKind;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|a| a.into_string().expect("UTF-8"))
            .collect()
    }

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    fn full() -> Launch {
        let mut spec = UdfSpec::new("udfs/words.py:split")
            .kind(UdfKind::Table)
            .path("lib")
            .returns(DataType::List(Arc::new(Field::new(
                "item",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ))));
        spec.paths.push("more".into());
        spec.sys_path.push("/env/lib/python3.13".into());
        spec.site_dirs.push("/env/site-packages".into());
        spec.calls.max_attempts = 4;
        spec.calls.retry_on = vec!["ConnectionError".into()];
        Launch {
            fd: 9,
            spec,
            max_message: 1 << 20,
            host_pid: None,
            limiter_fd: Some(11),
            arena_fd: Some(12),
        }
    }

    #[test]
    fn a_launch_survives_its_command_line() {
        let launch = full();
        assert_eq!(Launch::from_args(strings(launch.to_args())), Ok(launch));
        let plain = Launch::new(3, UdfSpec::new("m:f"));
        assert_eq!(Launch::from_args(strings(plain.to_args())), Ok(plain));
    }

    #[test]
    fn the_command_line_is_the_one_hosts_write() {
        let launch = full();
        let returns: String = Columns::type_to_bytes(launch.spec.returns.as_ref().unwrap())
            .unwrap()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            strings(launch.to_args()),
            args(&format!(
                "--fd 9 --udf udfs/words.py:split --kind table --max-message 1048576 \
                 --path lib --path more --sys-path /env/lib/python3.13 \
                 --site-dir /env/site-packages --returns {returns} \
                 --calls attempts=4;on=ConnectionError;initial=100000;max=60000000 \
                 --limiter-fd 11 --arena-fd 12"
            ))
        );
    }

    #[test]
    fn a_declared_view_type_travels_as_its_plain_type() {
        let launch = Launch::new(3, UdfSpec::new("m:f").returns(DataType::Utf8View));
        let read = Launch::from_args(strings(launch.to_args())).unwrap();
        assert_eq!(read.spec.returns, Some(DataType::Utf8));
    }

    #[test]
    fn the_host_pid_travels_in_the_environment() {
        let mut launch = Launch::new(3, UdfSpec::new("m:f"));
        launch.host_pid = Some(4242);
        let env = launch.env();
        assert_eq!(env, [(OsString::from(HOST_PID), OsString::from("4242"))]);
        let mut read = Launch::new(3, UdfSpec::new("m:f"));
        read.read_env(|k| (k == HOST_PID).then(|| "4242".to_string()));
        assert_eq!(read.host_pid, Some(4242));
        read.read_env(|_| Some("not a pid".into()));
        assert_eq!(read.host_pid, None);
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let launch = Launch::from_args(args("--udf m:f --fd 4")).unwrap();
        assert_eq!(launch.spec.kind, UdfKind::Scalar);
        assert_eq!(launch.max_message, DEFAULT_MAX_MESSAGE);
        assert_eq!(launch.fd, 4);
    }

    #[test]
    fn each_bad_argument_has_its_own_error() {
        let bad = |line: &str| Launch::from_args(args(line)).unwrap_err();
        assert_eq!(bad("--udf m:f --fd"), LaunchError::NoValue { flag: "--fd" });
        assert_eq!(
            bad("--fd x --udf m:f"),
            LaunchError::Fd { value: "x".into() }
        );
        assert_eq!(
            bad("--fd 3 --udf m:f --kind nope"),
            LaunchError::Kind(UnknownKind("nope".into()))
        );
        assert_eq!(
            bad("--fd 3 --udf m:f --max-message lots"),
            LaunchError::MaxMessage {
                value: "lots".into()
            }
        );
        assert_eq!(
            bad("--fd 3 --udf m:f --returns 0g"),
            LaunchError::ReturnsNotHex { value: "0g".into() }
        );
        assert_eq!(
            bad("--fd 3 --udf m:f --returns 050"),
            LaunchError::ReturnsNotHex {
                value: "050".into()
            }
        );
        assert!(matches!(
            bad("--fd 3 --udf m:f --returns 0505"),
            LaunchError::Returns(_)
        ));
        assert_eq!(
            bad("--fd 3 --udf m:f --verbose"),
            LaunchError::Unknown("--verbose".into())
        );
        assert_eq!(bad("--udf m:f"), LaunchError::Missing { flag: "--fd" });
        assert_eq!(bad("--fd 3"), LaunchError::Missing { flag: "--udf" });
        assert_eq!(
            bad("--fd 3 --udf m:f --max-message lots").to_string(),
            "--max-message: \"lots\" is not a number of bytes"
        );
    }
}
