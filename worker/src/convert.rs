//! Values between the row codec and Python: decoding a value of a frame
//! straight into a Python object, and encoding a Python object straight
//! into an answer, within the row model (`None`, `bool`, `int` within i64,
//! `float`, `str`, `bytes`, and lists of these; numpy scalars through
//! `.item()`).

use coil_ipc::{
    BatchDecoder, BatchEncoder, ByteSink, ByteSource, DecodeError, ValueHeader, MAX_DEPTH,
};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyModule, PyString, PyTuple,
};

use crate::error::{bad_row, enc_err, BatchError, ConvertError};

/// Reads one value of the batch as a Python object.
///
/// `scratch` is a buffer reused across values (strings and bytes are
/// copied out of the frame into it, then into a Python object).
pub(crate) fn read_py<'py, S: ByteSource + ?Sized>(
    py: Python<'py>,
    dec: &mut BatchDecoder<'_, S>,
    scratch: &mut Vec<u8>,
    depth: usize,
) -> Result<Bound<'py, PyAny>, DecodeError> {
    let at = dec.position();
    Ok(match dec.next_value()? {
        ValueHeader::Null => py.None().into_bound(py),
        ValueHeader::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
        ValueHeader::Int(i) => PyInt::new(py, i).into_any(),
        ValueHeader::Float(f) => PyFloat::new(py, f).into_any(),
        ValueHeader::Str { len } => {
            scratch.clear();
            dec.append_bytes(len, scratch)?;
            let s = std::str::from_utf8(scratch).map_err(|_| DecodeError {
                offset: at,
                kind: coil_ipc::DecodeErrorKind::InvalidUtf8,
            })?;
            PyString::new(py, s).into_any()
        }
        ValueHeader::Bytes { len } => {
            scratch.clear();
            dec.append_bytes(len, scratch)?;
            PyBytes::new(py, scratch).into_any()
        }
        ValueHeader::List { len } => {
            if depth >= MAX_DEPTH {
                return Err(DecodeError {
                    offset: at,
                    kind: coil_ipc::DecodeErrorKind::TooDeep {
                        max: MAX_DEPTH as u32,
                    },
                });
            }
            let list = PyList::empty(py);
            for _ in 0..len {
                let item = read_py(py, dec, scratch, depth + 1)?;
                list.append(item).expect("appending to a new list");
            }
            list.into_any()
        }
    })
}

/// Encodes the rows a table UDF emitted for one input row: each a tuple or
/// list, or a single value for a one-column row.
pub(crate) fn put_emitted<S: ByteSink + ?Sized>(
    enc: &mut BatchEncoder<'_, S>,
    emitted: &[Bound<'_, PyAny>],
    row: u32,
) -> Result<(), BatchError> {
    enc.begin_list(emitted.len())
        .map_err(|e| enc_err(Some(row), e))?;
    for item in emitted {
        if item.is_instance_of::<PyTuple>() || item.is_instance_of::<PyList>() {
            put_py(enc, item, 1).map_err(|m| bad_row(row, format!("emitted row: {m}")))?;
        } else {
            enc.begin_list(1).map_err(|e| enc_err(Some(row), e))?;
            put_py(enc, item, 2).map_err(|m| bad_row(row, format!("emitted row: {m}")))?;
        }
    }
    Ok(())
}

/// The name of `obj`'s Python type, for messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Encodes a Python object as a row-model value: `None`, `bool`, `int`
/// (within i64), `float`, `str`, `bytes`/`bytearray`, and lists or tuples of
/// these; numpy scalars through `.item()`.
pub(crate) fn put_py<S: ByteSink + ?Sized>(
    enc: &mut BatchEncoder<'_, S>,
    obj: &Bound<'_, PyAny>,
    depth: usize,
) -> Result<(), ConvertError> {
    let full = ConvertError::Encode;
    // The common exact types first: one pointer comparison each.
    if obj.is_exact_instance_of::<PyInt>() {
        let i: i64 = obj.extract().map_err(|_| too_big(obj))?;
        return enc.put_int(i).map_err(full);
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        let s = s.to_str().map_err(|e| ConvertError::NotUtf8 {
            reason: e.to_string(),
        })?;
        return enc.put_str(s).map_err(full);
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return enc.put_float(f.value()).map_err(full);
    }
    if obj.is_none() {
        enc.put_null().map_err(full)
    } else if let Ok(b) = obj.cast::<PyBool>() {
        enc.put_bool(b.is_true()).map_err(full)
    } else if obj.is_instance_of::<PyInt>() {
        let i: i64 = obj.extract().map_err(|_| too_big(obj))?;
        enc.put_int(i).map_err(full)
    } else if let Ok(f) = obj.cast::<PyFloat>() {
        enc.put_float(f.value()).map_err(full)
    } else if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_str().map_err(|e| ConvertError::NotUtf8 {
            reason: e.to_string(),
        })?;
        enc.put_str(s).map_err(full)
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        enc.put_bytes(b.as_bytes()).map_err(full)
    } else if let Ok(b) = obj.cast::<PyByteArray>() {
        enc.put_bytes(&b.to_vec()).map_err(full)
    } else if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        if depth >= MAX_DEPTH {
            return Err(ConvertError::TooDeep);
        }
        // Encode what iterating gives, counted as it comes: a subclass
        // whose `len()` disagrees with its iteration must not make the
        // answer claim one count and hold another.
        let items = obj
            .try_iter()
            .map_err(|e| ConvertError::Python(e.to_string()))?
            .collect::<PyResult<smallvec::SmallVec<[Bound<'_, PyAny>; 8]>>>()
            .map_err(|e| ConvertError::Python(e.to_string()))?;
        enc.begin_list(items.len()).map_err(full)?;
        for item in &items {
            put_py(enc, item, depth + 1)?;
        }
        Ok(())
    } else if is_numpy_scalar(obj) {
        let item = obj
            .call_method0("item")
            .map_err(|e| ConvertError::Python(e.to_string()))?;
        put_py(enc, &item, depth)
    } else {
        Err(ConvertError::Unsupported {
            type_name: type_name(obj),
        })
    }
}

fn too_big(obj: &Bound<'_, PyAny>) -> ConvertError {
    ConvertError::TooBig {
        value: obj.str().map(|s| s.to_string()).unwrap_or_default(),
    }
}

/// Whether `obj` is a numpy scalar (`numpy.int64(3)`...), which converts
/// through its `.item()`.
pub(crate) fn is_numpy_scalar(obj: &Bound<'_, PyAny>) -> bool {
    obj.get_type()
        .module()
        .map(|m| m == "numpy")
        .unwrap_or(false)
        && obj.hasattr("item").unwrap_or(false)
}

/// A read-only numpy array over `a`'s own values buffer, for a numeric
/// column without nulls (no copy, no Python object per value); `None` for
/// other columns, which go as lists. The array (through the loader's
/// `ColumnView`, its base) holds a reference to the Arrow buffer: a UDF
/// that keeps it keeps those bytes, and writing into it raises
/// `ValueError` (read-only) instead of changing the caller's data.
pub(crate) fn numpy_from_buffer<'py>(
    py: Python<'py>,
    numpy: &Bound<'py, PyModule>,
    helper: &Bound<'py, PyModule>,
    a: &dyn arrow_array::Array,
) -> Option<Bound<'py, PyAny>> {
    use arrow_schema::DataType as T;
    if a.null_count() > 0 {
        return None;
    }
    let dtype = match a.data_type() {
        T::Int8 => "<i1",
        T::Int16 => "<i2",
        T::Int32 => "<i4",
        T::Int64 => "<i8",
        T::UInt8 => "<u1",
        T::UInt16 => "<u2",
        T::UInt32 => "<u4",
        T::UInt64 => "<u8",
        T::Float32 => "<f4",
        T::Float64 => "<f8",
        _ => return None,
    };
    let data = a.to_data();
    let width = data.data_type().primitive_width()?;
    let buffer = data.buffers().first()?.clone();
    let values = buffer.get(data.offset() * width..(data.offset() + data.len()) * width)?;
    let address = values.as_ptr() as usize;
    // The capsule owns a reference to the buffer (dropped with it).
    let owner = pyo3::types::PyCapsule::new_with_value(py, buffer, c"coil.column").ok()?;
    let view = helper
        .getattr("ColumnView")
        .and_then(|v| v.call1((owner, address, data.len(), dtype)))
        .ok()?;
    numpy.call_method1("asarray", (view,)).ok()
}
