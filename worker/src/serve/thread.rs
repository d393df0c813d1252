//! The in-process modes' executor thread: it serves a region on a thread
//! of the host, in the host's main interpreter.

use coil_ipc::Region;
use std::sync::Arc;

use coil_proto::{Shelf, UdfSpec};
use pyo3::prelude::*;

use super::{rings, run_in_process, Job};
use crate::error::ServeError;
use crate::interp::InterruptTarget;

/// Serves `region` like [`serve`](super::serve) (with the rate limit in
/// `limiter`), on the calling thread of a process that
/// embeds Python itself (the in-process modes): no parent watch, output of
/// the interpreter routed to `tracing` (target `coil::worker`). `started`
/// receives, before the UDF loads, the [`InterruptTarget`] through which
/// the host raises `TimeoutError` in this thread; it is retired when this
/// returns. Column batches and their results are handed over on `shelf`
/// (see [`coil_proto::Shelf`]) when there is one.
///
/// # Errors
///
/// As [`serve`](super::serve).
pub fn serve_in_process(
    region: &Region,
    spec: &UdfSpec,
    max_message: usize,
    limiter: Option<&Region>,
    shelf: Option<Arc<Shelf>>,
    started: &dyn Fn(InterruptTarget),
) -> Result<(), ServeError> {
    let (mut rx, mut tx) = rings(region)?;
    Python::initialize();
    Python::attach(|py| {
        let target = InterruptTarget::current(py);
        started(target.clone());
        let mut job = Job::new(spec, max_message, Some(target.flag()), limiter);
        job.shelf = shelf;
        let result = run_in_process(py, region, &job, &mut rx, &mut tx, || {});
        // With the GIL released: see `interp`'s `# Deadlocks`.
        py.detach(|| target.retire());
        result
    })
}
