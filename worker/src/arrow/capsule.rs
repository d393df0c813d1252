//! Arrays to and from Python without a copy, through the Arrow C Data
//! Interface and the Arrow PyCapsule protocol: the only `unsafe` of the
//! Arrow conversions.

use arrow_array::{make_array, Array, ArrayRef};
use pyo3::prelude::*;

use super::py_err;

/// `a` handed to Python without a copy, through the Arrow C Data
/// Interface: the loader's `ArrowCapsules` over two PyCapsules
/// (`arrow_schema`, `arrow_array`), which pyarrow (or any consumer of the
/// Arrow PyCapsule protocol, `__arrow_c_array__`) imports. The buffers stay
/// alive until the consumer releases them.
pub(crate) fn export_capsules<'py>(
    helper: &Bound<'py, PyModule>,
    a: &dyn Array,
) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::types::PyCapsule;
    let py = helper.py();
    let (array, schema) = arrow_array::ffi::to_ffi(&a.to_data())
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    // A consumer moves each struct out (leaving its `release` null); a
    // capsule never consumed drops its struct, which releases it.
    let schema = PyCapsule::new_with_value(py, schema, c"arrow_schema")?;
    let array = PyCapsule::new_with_value(py, array, c"arrow_array")?;
    helper.getattr("ArrowCapsules")?.call1((schema, array))
}

/// Imports `obj`, an object of the Arrow PyCapsule protocol (a
/// `pyarrow.Array`, or anything with `__arrow_c_array__`), as an Arrow
/// array, validated in full.
///
/// The arrays come from this process's own Python (the UDF's libraries),
/// as trusted as the UDF's code that runs here anyway; still, every offset
/// and value is checked (`validate_full`) before anything reads them.
pub(crate) fn import_capsules(obj: &Bound<'_, PyAny>) -> Result<ArrayRef, String> {
    use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
    use pyo3::types::PyCapsule;
    let pair = obj.call_method0("__arrow_c_array__").map_err(py_err)?;
    let (schema, array): (Bound<'_, PyCapsule>, Bound<'_, PyCapsule>) =
        pair.extract().map_err(py_err)?;
    let schema_ptr = schema
        .pointer_checked(Some(c"arrow_schema"))
        .map_err(py_err)?
        .cast::<FFI_ArrowSchema>();
    let array_ptr = array
        .pointer_checked(Some(c"arrow_array"))
        .map_err(py_err)?
        .cast::<FFI_ArrowArray>();
    // SAFETY: the capsules are named `arrow_schema` and `arrow_array` (just
    // checked), which the protocol reserves for pointers to initialised C
    // Data Interface structs, alive as long as the capsules (held above).
    // `from_raw` moves each struct out and leaves a released one in its
    // place, so the producer's capsule destructor does not release it
    // again, and no other reference to them is used meanwhile (the GIL is
    // held).
    let (schema, array) = unsafe {
        (
            FFI_ArrowSchema::from_raw(schema_ptr.as_ptr()),
            FFI_ArrowArray::from_raw(array_ptr.as_ptr()),
        )
    };
    // SAFETY: `array` and `schema` are a producer's export of one array
    // (the protocol's pair); `from_ffi` takes the buffers' lengths from
    // the array's type and length, and the data is validated in full below
    // before any value is read.
    let data = unsafe { arrow_array::ffi::from_ffi(array, &schema) }.map_err(|e| e.to_string())?;
    data.validate_full().map_err(|e| e.to_string())?;
    Ok(make_array(data))
}
