//! Python's output in the in-process modes: `sys.stdout` and `sys.stderr`
//! of each interpreter go to `tracing`, never to the host's own stdout.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// Routes the current interpreter's `sys.stdout` and `sys.stderr` to
/// `tracing` (target `coil::worker`, tagged with the executor thread), once
/// per interpreter: in the in-process modes a UDF's `print` must never reach
/// the host's own stdout.
///
/// # Errors
///
/// The Python error if the writers cannot be installed.
pub fn route_output_to_log(py: Python<'_>) -> PyResult<()> {
    let helper = crate::helper::udf_helper(py)?;
    let sink = pyo3::types::PyCFunction::new_closure(
        py,
        Some(c"coil_log_sink"),
        None,
        |args: &Bound<'_, PyTuple>,
         _kwargs: Option<&Bound<'_, pyo3::types::PyDict>>|
         -> PyResult<()> {
            let (stream, line): (String, String) = args.extract()?;
            let thread = std::thread::current();
            let worker = thread.name().unwrap_or("?");
            if stream == "stderr" {
                tracing::warn!(target: "coil::worker", worker, stream, "{line}");
            } else {
                tracing::info!(target: "coil::worker", worker, stream, "{line}");
            }
            Ok(())
        },
    )?;
    helper.getattr("route_output")?.call1((sink,))?;
    Ok(())
}
