//! The result builder: whole arrays, and exactly the supported types.

use super::*;
use arrow_array::builder::{Int64Builder, MapBuilder, MapFieldNames, StringBuilder};
use std::sync::Arc;

fn map(keys: &str, values: &str) -> ArrayRef {
    let names = MapFieldNames {
        entry: "entries".into(),
        key: keys.into(),
        value: values.into(),
    };
    let mut m = MapBuilder::new(Some(names), StringBuilder::new(), Int64Builder::new());
    m.keys().append_value("a");
    m.values().append_value(1);
    m.append(true).unwrap();
    m.append(false).unwrap();
    Arc::new(m.finish())
}

#[test]
fn a_whole_array_is_taken_as_the_declared_type_whatever_its_fields_are_named() {
    let declared = map("keys", "values");
    let mut column = ResultColumn::new(declared.data_type()).unwrap();
    // pyarrow's names for a map's fields.
    assert!(column.take_whole(map("key", "value")));
    let got = column.finish().unwrap();
    assert_eq!(got.data_type(), declared.data_type());
    assert_eq!(got.to_data(), declared.to_data());
    // Another type is not taken.
    let mut column = ResultColumn::new(&DataType::Int32).unwrap();
    assert!(!column.take_whole(Arc::new(arrow_array::Int64Array::from(vec![1]))));
}

/// Types every shape of the Arrow type system, supported or not.
fn every_kind_of_type() -> Vec<DataType> {
    use arrow_schema::{Field, Fields, IntervalUnit, UnionFields, UnionMode};
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let map = |k: DataType, v: DataType| {
        DataType::Map(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("keys", k, false),
                    Field::new("values", v, true),
                ])),
                false,
            )),
            false,
        )
    };
    let units = [
        TimeUnit::Second,
        TimeUnit::Millisecond,
        TimeUnit::Microsecond,
        TimeUnit::Nanosecond,
    ];
    let mut types = vec![
        DataType::Null,
        DataType::Boolean,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::UInt8,
        DataType::UInt16,
        DataType::UInt32,
        DataType::UInt64,
        DataType::Float16,
        DataType::Float32,
        DataType::Float64,
        DataType::Utf8,
        DataType::LargeUtf8,
        DataType::Utf8View,
        DataType::Binary,
        DataType::LargeBinary,
        DataType::BinaryView,
        DataType::FixedSizeBinary(4),
        DataType::Date32,
        DataType::Date64,
        DataType::Time32(TimeUnit::Second),
        DataType::Time32(TimeUnit::Millisecond),
        DataType::Time64(TimeUnit::Microsecond),
        DataType::Time64(TimeUnit::Nanosecond),
        DataType::Interval(IntervalUnit::DayTime),
        DataType::Decimal128(38, 10),
        DataType::Decimal256(76, -2),
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        DataType::Union(UnionFields::empty(), UnionMode::Dense),
        list(DataType::Int64),
        list(DataType::Float16),
        DataType::LargeList(Arc::new(Field::new("item", DataType::Utf8, true))),
        DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Int8, true)), 3),
        DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", list(DataType::Date32), false),
        ])),
        DataType::Struct(Fields::from(vec![Field::new(
            "v",
            DataType::Utf8View,
            true,
        )])),
        map(DataType::Utf8, DataType::Int64),
        map(DataType::Utf8, DataType::Float16),
        DataType::Map(
            Arc::new(Field::new("entries", DataType::Int64, false)),
            false,
        ),
    ];
    for u in units {
        types.push(DataType::Timestamp(u, None));
        types.push(DataType::Timestamp(u, Some("UTC".into())));
        types.push(DataType::Duration(u));
    }
    types
}

#[test]
fn results_are_built_of_exactly_the_types_proto_calls_supported() {
    let types = every_kind_of_type();
    let mut supported = 0;
    for t in &types {
        let built = ResultColumn::new(t).is_ok();
        assert_eq!(
            built,
            coil_proto::arrow_type_supported(t),
            "the result builder and coil_proto disagree on {t}"
        );
        supported += usize::from(built);
    }
    // Both answers are exercised.
    assert!(supported > 20 && supported < types.len(), "{supported}");
}
