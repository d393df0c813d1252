//! Which Arrow types travel between host and executor, and as what: the
//! rules both sides apply to column batches.
//!
//! A column travels as its *wire type*: view types as their plain types
//! and dictionaries as their values' type, at any depth ([`plain_type`]).
//! Of those, an executor converts exactly the [supported](arrow_type_supported)
//! types to Python objects and back (docs/python.md has the mapping); the
//! host refuses any other before it starts a batch. Every supported type
//! has a column-frame encoding ([`Columns::supports`](crate::Columns::supports));
//! the frame codec also carries a few types no executor converts
//! (`float16`, maps whose entries are not a key and a value).

use std::sync::Arc;

use arrow_schema::{DataType, Field, FieldRef, Fields};

use crate::columns::MAX_NESTING;

/// The type a column of type `t` travels as ([`plain_type`] with
/// dictionaries), or `None` if an executor does not take it.
///
/// # Examples
///
/// ```
/// use arrow_schema::DataType;
/// assert_eq!(coil_proto::wire_type(&DataType::Utf8View), Some(DataType::Utf8));
/// assert_eq!(coil_proto::wire_type(&DataType::Float16), None);
/// ```
pub fn wire_type(t: &DataType) -> Option<DataType> {
    let plain = plain_type(t, true);
    arrow_type_supported(&plain).then_some(plain)
}

/// The type an executor builds results of the declared type `t` as: a
/// view type as its plain type (views do not travel in column frames; the
/// host makes them views again).
pub fn result_wire_type(t: &DataType) -> DataType {
    plain_type(t, false)
}

/// `t` with every view type (at any depth) as its plain type, and, if
/// `dictionaries`, every dictionary as its values' type.
pub fn plain_type(t: &DataType, dictionaries: bool) -> DataType {
    let field = |f: &FieldRef| -> FieldRef {
        Arc::new(
            Field::new(
                f.name(),
                plain_type(f.data_type(), dictionaries),
                f.is_nullable(),
            )
            .with_metadata(f.metadata().clone()),
        )
    };
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::Dictionary(_, v) if dictionaries => plain_type(v, dictionaries),
        DataType::List(f) => DataType::List(field(f)),
        DataType::LargeList(f) => DataType::LargeList(field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(field(f), *n),
        DataType::Map(f, sorted) => DataType::Map(field(f), *sorted),
        DataType::Struct(fs) => DataType::Struct(fs.iter().map(field).collect::<Fields>()),
        t => t.clone(),
    }
}

/// The types of a nested type's children, in the order of its child
/// arrays (a list's or map's one child, a struct's fields); none for other
/// types.
pub fn child_types(t: &DataType) -> Vec<DataType> {
    match t {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => vec![f.data_type().clone()],
        DataType::Struct(fs) => fs.iter().map(|f| f.data_type().clone()).collect(),
        _ => Vec::new(),
    }
}

/// Whether an executor takes Arrow columns of type `t` and builds results
/// of it: null, booleans, integers, `float32`/`float64`, strings and
/// binary (also large), dates, times, timestamps (with or without a time
/// zone), durations, decimals, and lists (also large and fixed-size),
/// structs and maps of these, nested at most as deep as a column frame
/// holds. The one answer to "is this type supported": coil-worker's result
/// builder accepts exactly these (its tests check it).
pub fn arrow_type_supported(t: &DataType) -> bool {
    supported_at(t, 0)
}

fn supported_at(t: &DataType, depth: usize) -> bool {
    use DataType as T;
    if depth > MAX_NESTING {
        return false;
    }
    let child = |f: &FieldRef| supported_at(f.data_type(), depth + 1);
    match t {
        T::Null
        | T::Boolean
        | T::Int8
        | T::Int16
        | T::Int32
        | T::Int64
        | T::UInt8
        | T::UInt16
        | T::UInt32
        | T::UInt64
        | T::Float32
        | T::Float64
        | T::Utf8
        | T::LargeUtf8
        | T::Binary
        | T::LargeBinary
        | T::Date32
        | T::Date64
        | T::Time32(_)
        | T::Time64(_)
        | T::Timestamp(..)
        | T::Duration(_)
        | T::Decimal128(..)
        | T::Decimal256(..) => true,
        T::List(f) | T::LargeList(f) | T::FixedSizeList(f, _) => child(f),
        T::Struct(fields) => u16::try_from(fields.len()).is_ok() && fields.iter().all(child),
        T::Map(f, _) => match f.data_type() {
            T::Struct(kv) if kv.len() == 2 => child(f),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Columns;
    use arrow_schema::TimeUnit;

    fn list(t: DataType) -> DataType {
        DataType::List(Arc::new(Field::new("item", t, true)))
    }

    #[test]
    fn every_supported_type_travels_in_a_column_frame() {
        let types = [
            DataType::Int64,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("Europe/Paris".into())),
            DataType::Decimal256(76, 10),
            list(list(DataType::Utf8)),
            DataType::Struct(Fields::from(vec![Field::new("a", DataType::Date64, true)])),
        ];
        for t in types {
            assert!(arrow_type_supported(&t), "{t}");
            assert!(Columns::supports(&t), "{t}");
        }
    }

    #[test]
    fn views_and_dictionaries_travel_as_their_plain_types() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8View));
        assert_eq!(wire_type(&list(dict.clone())), Some(list(DataType::Utf8)));
        // Results keep their dictionaries, as declared (the builder
        // refuses them).
        assert_eq!(result_wire_type(&dict), dict);
        assert_eq!(result_wire_type(&DataType::BinaryView), DataType::Binary);
        assert_eq!(wire_type(&dict), Some(DataType::Utf8));
    }

    #[test]
    fn types_no_executor_converts_are_refused_even_where_frames_carry_them() {
        assert!(Columns::supports(&DataType::Float16));
        assert!(!arrow_type_supported(&DataType::Float16));
        assert!(!arrow_type_supported(&DataType::Utf8View));
        assert!(!arrow_type_supported(&list(DataType::Float16)));
        let mut deep = DataType::Int64;
        for _ in 0..=MAX_NESTING + 1 {
            deep = list(deep);
        }
        assert!(!arrow_type_supported(&deep));
    }

    #[test]
    fn a_nested_types_children_are_listed_in_array_order() {
        let s = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int8, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        assert_eq!(child_types(&s), [DataType::Int8, DataType::Utf8]);
        assert_eq!(child_types(&list(DataType::Int8)), [DataType::Int8]);
        assert!(child_types(&DataType::Int8).is_empty());
    }
}
