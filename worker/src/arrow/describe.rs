//! The Arrow type a UDF's annotation names, as the loader (`udf.py`)
//! describes it.

use std::sync::Arc;

use arrow_schema::{DataType, TimeUnit};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// The Arrow type the loader's `return_type` described (a nested tuple:
/// `("int64",)`, `("list", item)`, `("map", key, value)`, `("struct",
/// ((name, type), ...))`, `("timestamp", "us")`, `("decimal128", p, s)`),
/// or `None` for anything else.
pub(crate) fn type_of_description(d: &Bound<'_, PyAny>) -> Option<DataType> {
    use arrow_schema::{Field, Fields};
    let t = d.cast::<PyTuple>().ok()?;
    let head: String = t.get_item(0).ok()?.extract().ok()?;
    let item = |i: usize| t.get_item(i).ok().and_then(|x| type_of_description(&x));
    Some(match head.as_str() {
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "utf8" => DataType::Utf8,
        "binary" => DataType::Binary,
        "bool" => DataType::Boolean,
        "date32" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "time64" => DataType::Time64(TimeUnit::Microsecond),
        "duration" => DataType::Duration(TimeUnit::Microsecond),
        "decimal128" => {
            let p: u8 = t.get_item(1).ok()?.extract().ok()?;
            let s: i8 = t.get_item(2).ok()?.extract().ok()?;
            DataType::Decimal128(p, s)
        }
        "list" => DataType::List(Arc::new(Field::new("item", item(1)?, true))),
        "map" => {
            let entries = Fields::from(vec![
                Field::new("keys", item(1)?, false),
                Field::new("values", item(2)?, true),
            ]);
            DataType::Map(
                Arc::new(Field::new("entries", DataType::Struct(entries), false)),
                false,
            )
        }
        "struct" => {
            let mut fields = Vec::new();
            for f in t.get_item(1).ok()?.try_iter().ok()? {
                let f = f.ok()?;
                let name: String = f.get_item(0).ok()?.extract().ok()?;
                fields.push(Field::new(
                    name,
                    type_of_description(&f.get_item(1).ok()?)?,
                    true,
                ));
            }
            DataType::Struct(Fields::from(fields))
        }
        _ => return None,
    })
}
