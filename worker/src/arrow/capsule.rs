//! Arrays to and from Python without a copy, through the Arrow C Data
//! Interface and the Arrow PyCapsule protocol, and a numpy result's memory
//! taken as an Arrow buffer: the only `unsafe` of the Arrow conversions.

use std::panic::AssertUnwindSafe;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::{make_array, Array, ArrayRef};
use arrow_buffer::Buffer;
use arrow_schema::DataType;
use pyo3::buffer::{Element, PyBuffer};
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

/// A numpy array a UDF returned, owned by the Arrow buffer over its
/// memory. Dropped on a thread attached to no interpreter, PyO3 defers the
/// decref to the next time one attaches (the host never waits for Python
/// to let go of a result).
struct HeldArray {
    _array: AssertUnwindSafe<Py<PyAny>>,
}

/// A vectorized UDF's numpy result as an Arrow array of `t` without a
/// copy, or `None` (copy it instead). Only for an array nothing else can
/// write: a 1-D, aligned, C-contiguous `numpy.ndarray` that owns its
/// memory (no base), whose dtype is `t`'s, and whose one reference is
/// `obj` (the UDF keeps none: a UDF that reuses an output array across
/// calls gets copied, or the host's results would change under it). The
/// Arrow buffer holds the array, so its memory lives and stays put until
/// the result is dropped.
///
/// Only in the main interpreter: the deferred decref of a sub-interpreter's
/// object could run in another interpreter.
pub(crate) fn numpy_in_place(obj: &Bound<'_, PyAny>, t: &DataType) -> Option<ArrayRef> {
    fn typed<T: Element>(obj: &Bound<'_, PyAny>) -> Option<(NonNull<u8>, usize, usize)> {
        let buf = PyBuffer::<T>::get(obj).ok()?;
        if buf.dimensions() != 1 || !buf.is_c_contiguous() || buf.readonly() {
            return None;
        }
        let at = NonNull::new(buf.buf_ptr().cast::<u8>())?;
        Some((at, buf.len_bytes(), buf.item_count()))
    }
    let ty = obj.get_type();
    if ty.name().ok()? != "ndarray" || ty.module().ok()? != "numpy" {
        return None;
    }
    // SAFETY: `obj` is a live object (the caller's reference) and this
    // thread is attached to its interpreter (`Bound`).
    let refs = unsafe { pyo3::ffi::Py_REFCNT(obj.as_ptr()) };
    // `obj` alone: no variable, container or view of the UDF's holds it.
    if refs != 1 || !obj.getattr("base").ok()?.is_none() {
        return None;
    }
    let flags = obj.getattr("flags").ok()?;
    let flag = |name: &str| {
        flags
            .getattr(name)
            .and_then(|f| f.extract::<bool>())
            .unwrap_or(false)
    };
    if !flag("owndata") || !flag("aligned") {
        return None;
    }
    let (at, bytes, rows) = match t {
        DataType::Int8 => typed::<i8>(obj),
        DataType::Int16 => typed::<i16>(obj),
        DataType::Int32 => typed::<i32>(obj),
        DataType::Int64 => typed::<i64>(obj),
        DataType::UInt8 => typed::<u8>(obj),
        DataType::UInt16 => typed::<u16>(obj),
        DataType::UInt32 => typed::<u32>(obj),
        DataType::UInt64 => typed::<u64>(obj),
        DataType::Float32 => typed::<f32>(obj),
        DataType::Float64 => typed::<f64>(obj),
        _ => None,
    }?;
    let owner = Arc::new(HeldArray {
        _array: AssertUnwindSafe(obj.clone().unbind()),
    });
    // SAFETY: `at` and `bytes` are the memory of the ndarray `owner` holds
    // (read through the buffer protocol just now, with the array's format
    // checked to be `t`'s values). The array owns that memory (no base)
    // and keeps it, unmoved, while it lives: only a call on the array
    // could resize or free it, and nothing but `owner` refers to it (the
    // refcount was 1: `obj`, which goes when the caller's call ends). The
    // buffer keeps `owner` alive as long as any array over it.
    let buffer = unsafe { Buffer::from_custom_allocation(at, bytes, owner) };
    let data =
        arrow_data::ArrayData::try_new(t.clone(), rows, None, 0, vec![buffer], vec![]).ok()?;
    Some(make_array(data))
}
