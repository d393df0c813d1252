//! The far end of a ring pair for tests and benchmarks.
//!
//! ```text
//! coil-ring-peer sink|echo|hold|close FD
//! coil-ring-peer verify FD N MAX
//! coil-ring-peer sock-sink|sock-echo      (the socket is standard input)
//! ```

use std::process::ExitCode;

use anyhow::{bail, Context};
use coil_ipc::Region;
use coil_testkit::peer::{serve, serve_socket, Mode};

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .with_context(|| format!("missing argument {i}; see the usage in the source"))
    };
    match arg(0)?.as_str() {
        m @ ("sock-sink" | "sock-echo") => {
            use std::os::fd::FromRawFd;
            // SAFETY: the parent made our standard input a Unix socket, and
            // nothing else in this process uses fd 0.
            let sock = unsafe { std::os::unix::net::UnixStream::from_raw_fd(0) };
            serve_socket(sock, m == "sock-echo").map_err(|e| anyhow::anyhow!(e))
        }
        m => {
            let fd: i32 = arg(1)?.parse().context("FD must be a number")?;
            let mode = match m {
                "sink" => Mode::Sink,
                "echo" => Mode::Echo,
                "hold" => Mode::Hold,
                "close" => Mode::Close,
                "verify" => Mode::Verify {
                    n: arg(2)?.parse().context("N must be a number")?,
                    max: arg(3)?.parse().context("MAX must be a number")?,
                },
                other => bail!("unknown mode {other:?}"),
            };
            // SAFETY: the parent passed this descriptor down with
            // `Region::inherit_into`; nothing else in this process owns it.
            let region =
                unsafe { Region::from_inherited_fd(fd) }.context("opening the inherited region")?;
            serve(&region, mode).map_err(|e| anyhow::anyhow!(e))
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coil-ring-peer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
