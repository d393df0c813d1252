//! Arrow fixtures: one column of every type coil takes, for the tests of
//! every crate that moves Arrow arrays (the integration tests, the type
//! names' round trip), so that "every supported type" is written once.

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_schema::{DataType, Field};

/// One column of every type of docs/python.md's table, with a null in
/// each (where the type has nulls) and values at the edges of what Python
/// holds.
pub fn every_type() -> Vec<ArrayRef> {
    use arrow_array::builder::{Int64Builder, MapBuilder, StringBuilder};
    use arrow_array::types::{Int32Type, Int64Type};
    use arrow_array::*;
    use arrow_schema::Fields;
    let struct_fields = Fields::from(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Utf8, true),
    ]);
    let mut map = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
    map.keys().append_value("x");
    map.values().append_value(1);
    map.keys().append_value("y");
    map.values().append_null();
    map.append(true).unwrap();
    map.append(false).unwrap();
    map.append(true).unwrap();
    map.keys().append_value("z");
    map.values().append_value(-3);
    map.append(true).unwrap();
    type I256 = <types::Decimal256Type as ArrowPrimitiveType>::Native;
    vec![
        Arc::new(NullArray::new(4)),
        Arc::new(BooleanArray::from(vec![
            Some(true),
            None,
            Some(false),
            Some(true),
        ])),
        Arc::new(Int8Array::from(vec![
            Some(i8::MIN),
            None,
            Some(0),
            Some(i8::MAX),
        ])),
        Arc::new(Int16Array::from(vec![
            Some(i16::MIN),
            None,
            Some(1),
            Some(i16::MAX),
        ])),
        Arc::new(Int32Array::from(vec![
            Some(i32::MIN),
            None,
            Some(-1),
            Some(i32::MAX),
        ])),
        Arc::new(Int64Array::from(vec![
            Some(i64::MIN),
            None,
            Some(2),
            Some(i64::MAX),
        ])),
        Arc::new(UInt8Array::from(vec![
            Some(0),
            None,
            Some(7),
            Some(u8::MAX),
        ])),
        Arc::new(UInt16Array::from(vec![
            Some(0),
            None,
            Some(7),
            Some(u16::MAX),
        ])),
        Arc::new(UInt32Array::from(vec![
            Some(0),
            None,
            Some(7),
            Some(u32::MAX),
        ])),
        Arc::new(UInt64Array::from(vec![
            Some(0),
            None,
            Some(7),
            Some(u64::MAX),
        ])),
        Arc::new(Float32Array::from(vec![
            Some(0.5),
            None,
            Some(-2.25),
            Some(f32::MAX),
        ])),
        Arc::new(Float64Array::from(vec![
            Some(0.1),
            None,
            Some(-0.0),
            Some(f64::MIN_POSITIVE),
        ])),
        Arc::new(StringArray::from(vec![
            Some("é"),
            None,
            Some(""),
            Some("z"),
        ])),
        Arc::new(LargeStringArray::from(vec![
            Some("a"),
            None,
            Some("bb"),
            Some(""),
        ])),
        Arc::new(BinaryArray::from(vec![
            Some(&b"\x00\xff"[..]),
            None,
            Some(b""),
            Some(b"b"),
        ])),
        Arc::new(LargeBinaryArray::from(vec![
            Some(&b"x"[..]),
            None,
            Some(b""),
            Some(b"y"),
        ])),
        Arc::new(
            Decimal128Array::from(vec![Some(12345), None, Some(-1), Some(0)])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        ),
        Arc::new(
            Decimal256Array::from(vec![
                Some(I256::from_i128(10i128.pow(30))),
                None,
                Some(I256::from_i128(-5)),
                Some(I256::ZERO),
            ])
            .with_precision_and_scale(40, 5)
            .unwrap(),
        ),
        Arc::new(Date32Array::from(vec![
            Some(0),
            None,
            Some(19_723),
            Some(-719_162),
        ])),
        Arc::new(Date64Array::from(vec![
            Some(0),
            None,
            Some(86_400_000 * 3),
            Some(-86_400_000),
        ])),
        Arc::new(Time32SecondArray::from(vec![
            Some(0),
            None,
            Some(3_723),
            Some(86_399),
        ])),
        Arc::new(Time32MillisecondArray::from(vec![
            Some(1),
            None,
            Some(3_723_004),
            Some(0),
        ])),
        Arc::new(Time64MicrosecondArray::from(vec![
            Some(1),
            None,
            Some(86_399_999_999),
            Some(0),
        ])),
        Arc::new(Time64NanosecondArray::from(vec![
            Some(1_000),
            None,
            Some(5_000_000),
            Some(0),
        ])),
        Arc::new(TimestampSecondArray::from(vec![
            Some(0),
            None,
            Some(-1),
            Some(253_402_300_799),
        ])),
        Arc::new(TimestampMillisecondArray::from(vec![
            Some(1),
            None,
            Some(1_700_000_000_123),
            Some(-1),
        ])),
        Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1),
            None,
            Some(-62_135_596_800_000_000),
            Some(7),
        ])),
        Arc::new(TimestampNanosecondArray::from(vec![
            Some(1_000),
            None,
            Some(-1_000),
            Some(0),
        ])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![
                Some(1_700_000_000_000_000),
                None,
                Some(0),
                Some(-1),
            ])
            .with_timezone("Europe/Paris"),
        ),
        Arc::new(
            TimestampSecondArray::from(vec![Some(1_700_000_000), None, Some(0), Some(1)])
                .with_timezone("+05:30"),
        ),
        Arc::new(
            TimestampMillisecondArray::from(vec![Some(1_700_000_000_000), None, Some(0), Some(1)])
                .with_timezone("UTC"),
        ),
        Arc::new(DurationSecondArray::from(vec![
            Some(-1),
            None,
            Some(86_401),
            Some(0),
        ])),
        Arc::new(DurationMillisecondArray::from(vec![
            Some(1),
            None,
            Some(-86_400_001),
            Some(0),
        ])),
        Arc::new(DurationMicrosecondArray::from(vec![
            Some(i64::MAX),
            None,
            Some(-1),
            Some(0),
        ])),
        Arc::new(DurationNanosecondArray::from(vec![
            Some(1_000),
            None,
            Some(-2_000),
            Some(0),
        ])),
        Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), None]),
            None,
            Some(vec![]),
            Some(vec![Some(4)]),
        ])),
        Arc::new(LargeListArray::from_iter_primitive::<Int32Type, _, _>(
            vec![Some(vec![Some(1)]), None, Some(vec![None]), Some(vec![])],
        )),
        Arc::new(FixedSizeListArray::from_iter_primitive::<Int32Type, _, _>(
            vec![
                Some(vec![Some(1), Some(2)]),
                None,
                Some(vec![None, Some(3)]),
                Some(vec![Some(4), Some(5)]),
            ],
            2,
        )),
        Arc::new(StructArray::new(
            struct_fields,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, None, Some(4)])),
                Arc::new(StringArray::from(vec![Some("w"), None, Some("y"), None])),
            ],
            Some(vec![true, false, true, true].into()),
        )),
        Arc::new(map.finish()),
    ]
}

/// The types of [`every_type`]'s columns, in order.
pub fn every_data_type() -> Vec<DataType> {
    every_type().iter().map(|c| c.data_type().clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_has_four_rows_and_a_type_of_its_own() {
        let columns = every_type();
        assert!(columns.iter().all(|c| c.len() == 4));
        let types = every_data_type();
        for (i, t) in types.iter().enumerate() {
            assert!(!types[..i].contains(t), "{t} twice");
        }
    }
}
