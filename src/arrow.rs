//! Arrow IPC streams for the `coil` CLI (`--format arrow`): the names
//! `--returns` takes for a result column's type, reading a stream of
//! record batches, and cell values as JSON for the errors file and for
//! comparing results.
//!
//! The core crates move Arrow arrays in their own column frames; Arrow IPC
//! is only how the command line reads and writes them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use coil_host::arrow_array::{self, Array, RecordBatch};
use coil_host::arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use coil_ipc::Value;
use serde_json::Value as Json;

use crate::json::to_json;

/// The type names `--returns` takes, and the Arrow type each names.
const TYPE_NAMES: &[(&str, DataType)] = &[
    ("null", DataType::Null),
    ("bool", DataType::Boolean),
    ("int8", DataType::Int8),
    ("int16", DataType::Int16),
    ("int32", DataType::Int32),
    ("int64", DataType::Int64),
    ("uint8", DataType::UInt8),
    ("uint16", DataType::UInt16),
    ("uint32", DataType::UInt32),
    ("uint64", DataType::UInt64),
    ("float32", DataType::Float32),
    ("float64", DataType::Float64),
    ("utf8", DataType::Utf8),
    ("large_utf8", DataType::LargeUtf8),
    ("binary", DataType::Binary),
    ("large_binary", DataType::LargeBinary),
    ("date32", DataType::Date32),
    ("date64", DataType::Date64),
    ("timestamp[s]", DataType::Timestamp(TimeUnit::Second, None)),
    (
        "timestamp[ms]",
        DataType::Timestamp(TimeUnit::Millisecond, None),
    ),
    (
        "timestamp[us]",
        DataType::Timestamp(TimeUnit::Microsecond, None),
    ),
    (
        "timestamp[ns]",
        DataType::Timestamp(TimeUnit::Nanosecond, None),
    ),
];

/// A `--returns` name that names no type [`parse_type`] knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownType {
    /// The name given.
    pub name: String,
}

impl fmt::Display for UnknownType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown type {:?}; expected one of: {}",
            self.name,
            type_names()
        )
    }
}

impl std::error::Error for UnknownType {}

/// The type names [`parse_type`] takes, comma-separated.
pub fn type_names() -> String {
    TYPE_NAMES
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The Arrow type a `--returns` name names: `int64`, `utf8`,
/// `timestamp[us]`... (as [`type_names`] lists them; case does not
/// matter, and `boolean` is `bool`). Whether `Runner::call_arrow` returns
/// that type is its own to say when it runs.
///
/// # Errors
///
/// [`UnknownType`], whose message lists the names taken.
///
/// # Examples
///
/// ```
/// use coil_host::arrow_schema::{DataType, TimeUnit};
///
/// assert_eq!(coil::arrow::parse_type("Int64").unwrap(), DataType::Int64);
/// assert_eq!(
///     coil::arrow::parse_type("timestamp[us]").unwrap(),
///     DataType::Timestamp(TimeUnit::Microsecond, None)
/// );
/// assert!(coil::arrow::parse_type("decimal").unwrap_err().to_string().contains("int64"));
/// ```
pub fn parse_type(name: &str) -> Result<DataType, UnknownType> {
    let wanted = name.trim().to_ascii_lowercase();
    let wanted = match wanted.as_str() {
        "boolean" => "bool",
        other => other,
    };
    TYPE_NAMES
        .iter()
        .find(|(n, _)| *n == wanted)
        .map(|(_, t)| t.clone())
        .ok_or_else(|| UnknownType { name: name.into() })
}

/// The schema of `coil run --format arrow`'s output: one nullable column,
/// `result`, of the declared type.
pub fn result_schema(declared: &DataType) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "result",
        declared.clone(),
        true,
    )]))
}

/// Reads every record batch of the Arrow IPC stream in `path`.
///
/// # Errors
///
/// The file cannot be read, is not an Arrow IPC stream (naming the 1-based
/// batch that is broken), or holds no rows.
pub fn read_stream(path: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = arrow_ipc::reader::StreamReader::try_new_buffered(file, None)
        .with_context(|| format!("{} is not an Arrow IPC stream", path.display()))?;
    let mut batches = Vec::new();
    for (i, batch) in reader.enumerate() {
        batches.push(
            batch.with_context(|| {
                format!("{}: reading Arrow IPC batch {}", path.display(), i + 1)
            })?,
        );
    }
    if batches.iter().all(|b| b.num_rows() == 0) {
        bail!("{} holds no rows", path.display());
    }
    Ok(batches)
}

/// Row `row` of `array` as JSON, as `coil run` writes values (bytes as
/// `{"$bytes": "<hex>"}`, NaN and infinities as `null`); `None` for a type
/// coil does not take.
pub fn json_at(array: &dyn Array, row: usize) -> Option<Json> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    if array.is_null(row) {
        return Some(Json::Null);
    }
    macro_rules! int {
        ($t:ty) => {
            Value::Int(i64::from(array.as_primitive::<$t>().value(row)))
        };
    }
    let value = match array.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        // Beyond i64, which coil's values do not hold, but JSON does.
        DataType::UInt64 => return Some(Json::from(array.as_primitive::<UInt64Type>().value(row))),
        DataType::Float32 => {
            Value::Float(f64::from(array.as_primitive::<Float32Type>().value(row)))
        }
        DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::Str(array.as_string::<i32>().value(row).into()),
        DataType::LargeUtf8 => Value::Str(array.as_string::<i64>().value(row).into()),
        DataType::Binary => Value::Bytes(array.as_binary::<i32>().value(row).into()),
        DataType::LargeBinary => Value::Bytes(array.as_binary::<i64>().value(row).into()),
        _ => return None,
    };
    Some(to_json(&value))
}

/// Row `row` of `batch` (every column's value) as a JSON array; `None` if
/// a column is of a type coil does not take.
pub fn row_json(batch: &RecordBatch, row: usize) -> Option<Json> {
    batch
        .columns()
        .iter()
        .map(|c| json_at(c.as_ref(), row))
        .collect::<Option<Vec<_>>>()
        .map(Json::Array)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        BinaryArray, Float32Array, Int64Array, LargeStringArray, NullArray, UInt64Array,
    };

    #[test]
    fn every_listed_type_name_parses_to_its_type_whatever_its_case() {
        for (name, t) in TYPE_NAMES {
            assert_eq!(parse_type(name).as_ref(), Ok(t), "{name}");
            assert_eq!(
                parse_type(&name.to_ascii_uppercase()).as_ref(),
                Ok(t),
                "{name}"
            );
        }
        assert_eq!(parse_type("boolean"), Ok(DataType::Boolean));
    }

    #[test]
    fn an_unknown_type_name_is_refused_with_the_names_taken() {
        let e = parse_type("decimal128(10, 2)").unwrap_err();
        assert_eq!(e.name, "decimal128(10, 2)");
        let message = e.to_string();
        assert!(message.contains("\"decimal128(10, 2)\""), "{message}");
        for name in [
            "null",
            "bool",
            "int8",
            "uint64",
            "large_binary",
            "timestamp[us]",
        ] {
            assert!(message.contains(name), "{name} not in {message}");
        }
        assert!(parse_type("").is_err());
    }

    #[test]
    fn cells_are_json_as_coil_run_writes_values() {
        let ints = Int64Array::from(vec![Some(-3), None]);
        assert_eq!(json_at(&ints, 0), Some(Json::from(-3)));
        assert_eq!(json_at(&ints, 1), Some(Json::Null));
        let big = UInt64Array::from(vec![u64::MAX]);
        assert_eq!(json_at(&big, 0), Some(Json::from(u64::MAX)));
        let floats = Float32Array::from(vec![1.5, f32::NAN]);
        assert_eq!(json_at(&floats, 0), Some(Json::from(1.5)));
        assert_eq!(json_at(&floats, 1), Some(Json::Null));
        let text = LargeStringArray::from(vec!["é"]);
        assert_eq!(json_at(&text, 0), Some(Json::from("é")));
        let bytes = BinaryArray::from(vec![&[0u8, 255][..]]);
        assert_eq!(
            json_at(&bytes, 0),
            Some(serde_json::json!({"$bytes": "00ff"}))
        );
        assert_eq!(json_at(&NullArray::new(1), 0), Some(Json::Null));
        let dates = arrow_array::Date32Array::from(vec![1]);
        assert_eq!(json_at(&dates, 0), None);
    }
}
