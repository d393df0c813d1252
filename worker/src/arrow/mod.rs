//! Arrow values to Python objects and back, for column batches: the
//! executor reads a decoded column frame's arrays row by row as Python
//! objects ([`ArrowColumn`]), and builds the UDF's results into one array of
//! its declared type ([`ResultColumn`]), each value checked to fit.
//!
//! The mapping (docs/python.md has it as a table): booleans, integers,
//! floats, `str`, `bytes`; `decimal.Decimal` for decimals, with the
//! column's scale; `datetime.date`, `datetime.time`, `datetime.datetime`
//! (naive, or in the column's time zone) and `datetime.timedelta` for the
//! temporal types; `list` for lists, `dict` for structs and maps.
//!
//! Python's `datetime` types hold microseconds: a nanosecond value that is
//! not a whole number of microseconds is an error, never rounded. Objects
//! are made and read through each interpreter's own `datetime` and
//! `decimal` modules (never a C API cached for the process, which would
//! hand one interpreter's types to another).
//!
//! Along a column batch's path: `read.rs` reads an argument column
//! ([`ArrowColumn`]); `build/` builds the results ([`ResultColumn`]:
//! the value rules in `build/push.rs`, the finished array in
//! `build/array.rs`); `temporal.rs` and `decimal.rs` hold the time-unit,
//! date, time and decimal arithmetic both directions share; `capsule.rs`
//! hands arrays to and from pyarrow through the Arrow C Data Interface
//! (the only `unsafe` here); `describe.rs` reads the name the loader
//! gives an annotated type, in `coil_proto`'s one type grammar. Which types travel at all is `coil_proto`'s
//! [`arrow_type_supported`](coil_proto::arrow_type_supported).

mod build;
mod capsule;
mod decimal;
mod describe;
mod read;
mod temporal;

use arrow_schema::DataType;
use pyo3::prelude::*;

pub(crate) use build::ResultColumn;
pub(crate) use capsule::{export_capsules, import_capsules, numpy_in_place};
pub(crate) use describe::type_of_name;
pub(crate) use read::ArrowColumn;

/// The Python types of one interpreter that Arrow values become.
pub(crate) struct PyKit {
    date: Py<PyAny>,
    time: Py<PyAny>,
    datetime: Py<PyAny>,
    timedelta: Py<PyAny>,
    decimal: Py<PyAny>,
    epoch_naive: Py<PyAny>,
    epoch_utc: Py<PyAny>,
    utc: Py<PyAny>,
    tzinfo: Py<PyAny>,
}

impl PyKit {
    /// Imports `datetime` and `decimal` in this interpreter, through the
    /// loader module `helper`.
    pub(crate) fn load(py: Python<'_>, helper: &Bound<'_, PyModule>) -> PyResult<PyKit> {
        let kit = helper.getattr("arrow_kit")?.call0()?;
        let (date, time, datetime, timedelta, decimal, epoch_naive, epoch_utc, utc) = kit
            .extract::<(
                Py<PyAny>,
                Py<PyAny>,
                Py<PyAny>,
                Py<PyAny>,
                Py<PyAny>,
                Py<PyAny>,
                Py<PyAny>,
                Py<PyAny>,
            )>()?;
        let _ = py;
        Ok(PyKit {
            date,
            time,
            datetime,
            timedelta,
            decimal,
            epoch_naive,
            epoch_utc,
            utc,
            tzinfo: helper.getattr("tzinfo")?.unbind(),
        })
    }
}

/// Whether `t` needs a [`PyKit`] to convert (temporal and decimal types,
/// also inside nested types).
pub(crate) fn needs_kit(t: &DataType) -> bool {
    match t {
        DataType::Date32
        | DataType::Date64
        | DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Timestamp(..)
        | DataType::Duration(_)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => needs_kit(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| needs_kit(f.data_type())),
        _ => false,
    }
}

fn py_err(e: PyErr) -> String {
    e.to_string()
}

/// The kit, or the error of a batch that needs one and has none.
fn kit_or(kit: Option<&PyKit>) -> Result<&PyKit, String> {
    kit.ok_or_else(|| "internal error: no datetime/decimal types loaded".to_string())
}

/// The name of `obj`'s type, for errors.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    crate::convert::type_name(obj)
}

/// Why `obj` does not fit `t`: "a str ('x') does not fit the declared type
/// Int64", then `why` as a clause of its own, when there is one.
fn refuse(t: &DataType, obj: &Bound<'_, PyAny>, why: &str) -> String {
    let value = obj
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into());
    let value = if value.chars().count() > 60 {
        format!("{}…", value.chars().take(60).collect::<String>())
    } else {
        value
    };
    format!(
        "a {} ({value}) does not fit the declared type {}{}{why}",
        type_name(obj),
        t,
        if why.is_empty() { "" } else { ": " }
    )
}
