//! coil's own Python helpers (`udf.py`), as one module per interpreter.

use std::ffi::{CStr, CString};

use pyo3::prelude::*;
use pyo3::types::PyModule;

/// The module name `udf.py` is loaded under (in `sys.modules`).
const NAME: &CStr = c"_coil_udf";

/// `udf.py` as loaded in this interpreter: compiled on the first call in an
/// interpreter (about 10 ms) and found in `sys.modules` after that, so the
/// executor, the output routing and the sub-interpreter set-up share it.
/// It holds constants and functions only, no state.
pub(crate) fn udf_helper(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let modules = py.import("sys")?.getattr("modules")?;
    if let Ok(m) = modules.get_item(NAME.to_str().expect("an ASCII name")) {
        if let Ok(m) = m.cast_into::<PyModule>() {
            return Ok(m);
        }
    }
    let code = CString::new(include_str!("udf.py")).expect("no NUL in udf.py");
    PyModule::from_code(py, &code, c"<coil>/udf.py", NAME)
}
