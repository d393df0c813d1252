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
/// (`spec.calls.rate`). Column buffers are placed in `arena` (the link's,
/// see [`coil_ipc::Arena`]) when the host gave one.
///
/// # Errors
///
/// [`ServeError`]; a load failure has been reported to the host first.
pub fn serve(
    region: &Region,
    spec: &UdfSpec,
    max_message: usize,
    limiter: Option<&Region>,
    arena: Option<coil_ipc::Arena>,
) -> Result<(), ServeError> {
    let (mut rx, mut tx) = rings(region)?;
    rx.set_peer_watch(ParentWatch::new());
    tx.set_peer_watch(ParentWatch::new());
    Python::initialize();
    let mut job = Job::new(spec, max_message, None, limiter);
    job.arena = arena;
    Python::attach(|py| {
        python_stack_on_crash(py);
        run(py, region, &job, &mut rx, &mut tx, || {})
    })
}

/// A crash report that ends with the Python stack. The host starts workers
/// with `PYTHONFAULTHANDLER=1` and shows the last lines of a dead worker's
/// stderr; since CPython 3.14 faulthandler follows the Python frames with
/// the C stack, dozens of lines that push the UDF's own frame out of that
/// tail. So the C stack is turned off here (`c_stack=False`); before 3.14
/// there is none and nothing changes.
fn python_stack_on_crash(py: Python<'_>) {
    if py.version_info() < (3, 14) {
        return;
    }
    let enabled = py.import("faulthandler").and_then(|f| {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("all_threads", true)?;
        kwargs.set_item("c_stack", false)?;
        f.call_method("enable", (), Some(&kwargs))
    });
    if let Err(e) = enabled {
        tracing::debug!("faulthandler.enable(c_stack=False): {e}");
    }
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
