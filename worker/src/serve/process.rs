//! `process` mode: a `coil-worker` process serves the region its host
//! passed down, and exits when the host dies.

use std::time::Duration;

use coil_ipc::{ParentWatch, Region};
use coil_proto::UdfSpec;
use pyo3::prelude::*;

use super::{rings, run, Job};
use crate::error::ServeError;

/// Serves the request ring (batches in) and the answer ring (answers out)
/// of `region` ([`layout`](coil_proto::layout)) with the
/// UDF `spec` until the host closes the request ring, then runs the UDF's
/// `close()`.
/// Batches and answers larger than a frame travel in pieces, up to
/// `max_message` bytes. The first header word of `limiter`, a region the
/// host shares with all of the UDF's executors, holds the rate limit
/// (`spec.calls.rate`).
///
/// # Errors
///
/// [`ServeError`]; a load failure has been reported to the host first.
pub fn serve(
    region: &Region,
    spec: &UdfSpec,
    max_message: usize,
    limiter: Option<&Region>,
) -> Result<(), ServeError> {
    let (mut rx, mut tx) = rings(region)?;
    rx.set_peer_watch(ParentWatch::new());
    tx.set_peer_watch(ParentWatch::new());
    Python::initialize();
    let job = Job::new(spec, max_message, None, limiter);
    Python::attach(|py| run(py, region, &job, &mut rx, &mut tx, || {}))
}

/// Exits the process when its parent dies, even while a UDF runs and the
/// ring is not being waited on: children must not outlive the host.
///
/// `host` is the parent's pid as the parent itself said (the host passes
/// `COIL_HOST_PID`): comparing with it also catches a host that died before
/// this process got this far, whose orphan would otherwise take its new
/// parent for the host.
pub fn watch_parent(host: Option<u32>) {
    let parent = host.unwrap_or_else(std::os::unix::process::parent_id);
    if std::os::unix::process::parent_id() != parent {
        // SAFETY: `_exit` has no preconditions; it ends the process at once,
        // which is what we want: the host is already gone.
        unsafe { libc::_exit(70) };
    }
    std::thread::Builder::new()
        .name("coil-parent-watch".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            if std::os::unix::process::parent_id() != parent {
                // SAFETY: `_exit` ends the process without running
                // destructors or atexit handlers, which is what we want
                // when the host is gone; it has no preconditions.
                unsafe { libc::_exit(70) };
            }
        })
        .expect("spawning the parent watch thread");
}
