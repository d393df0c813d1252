//! Arrow cells as JSON: how `coil run --format arrow` writes a failed
//! row's input, and how `coil bench` compares results. The flat types are
//! written as [`value_to_json`](super::json::value_to_json) writes coil's
//! values; the rest as strings in ISO 8601 (dates, times, timestamps,
//! durations) or decimal digits, and nested types as arrays and objects.

use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use coil_ipc::Value;
use serde_json::Value as Json;

use super::json::value_to_json;

/// Row `row` of `array` as JSON, as `coil run` writes values (bytes as
/// `{"$bytes": "<hex>"}`, NaN and infinities as `null`), and for the other
/// types:
///
/// - a decimal as a string of its digits at the column's scale,
///   `"123.40"`;
/// - a date as `"YYYY-MM-DD"`, a time as `"HH:MM:SS"` with as many digits
///   of fraction (3, 6 or 9) as its value needs;
/// - a timestamp as ISO 8601: `"2024-05-01T12:30:00"` without a time zone;
///   with a fixed offset (`+02:00`) the local time and that offset,
///   `"2024-05-01T14:30:00+02:00"`; with a named zone (`UTC`,
///   `Europe/Paris`, whose rules coil's Arrow build does not carry) the
///   UTC instant, `"2024-05-01T12:30:00Z"`;
/// - a duration as an ISO 8601 duration in seconds, `"PT90.5S"`,
///   `"-PT0.000001S"`;
/// - a list as an array, a struct as an object of its fields, a map as an
///   array of `[key, value]` pairs in its order;
/// - a view and a dictionary's cell as its value.
///
/// `None` for a type coil does not take, and for a value with no such form
/// (a date beyond chrono's years, a time of day past midnight).
pub fn cell_to_json(array: &dyn Array, row: usize) -> Option<Json> {
    use arrow_array::cast::AsArray;
    use arrow_array::temporal_conversions as tc;
    use arrow_array::types::*;
    if array.is_null(row) {
        return Some(Json::Null);
    }
    macro_rules! int {
        ($t:ty) => {
            Value::Int(i64::from(array.as_primitive::<$t>().value(row)))
        };
    }
    macro_rules! at {
        ($t:ty) => {
            array.as_primitive::<$t>().value(row)
        };
    }
    let text = |s: Option<String>| s.map(Json::String);
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
        DataType::UInt64 => return Some(Json::from(at!(UInt64Type))),
        DataType::Float32 => Value::Float(f64::from(at!(Float32Type))),
        DataType::Float64 => Value::Float(at!(Float64Type)),
        DataType::Utf8 => Value::Str(array.as_string::<i32>().value(row).into()),
        DataType::LargeUtf8 => Value::Str(array.as_string::<i64>().value(row).into()),
        DataType::Utf8View => Value::Str(array.as_string_view().value(row).into()),
        DataType::Binary => Value::Bytes(array.as_binary::<i32>().value(row).into()),
        DataType::LargeBinary => Value::Bytes(array.as_binary::<i64>().value(row).into()),
        DataType::BinaryView => Value::Bytes(array.as_binary_view().value(row).into()),
        DataType::Decimal128(_, scale) => {
            return text(Some(decimal(&at!(Decimal128Type).to_string(), *scale)))
        }
        DataType::Decimal256(_, scale) => {
            return text(Some(decimal(&at!(Decimal256Type).to_string(), *scale)))
        }
        DataType::Date32 => {
            return text(tc::date32_to_datetime(at!(Date32Type)).map(|d| d.date().to_string()))
        }
        DataType::Date64 => {
            return text(tc::date64_to_datetime(at!(Date64Type)).map(|d| d.date().to_string()))
        }
        DataType::Time32(TimeUnit::Second) => {
            return text(tc::time32s_to_time(at!(Time32SecondType)).map(|t| t.to_string()))
        }
        DataType::Time32(TimeUnit::Millisecond) => {
            return text(tc::time32ms_to_time(at!(Time32MillisecondType)).map(|t| t.to_string()))
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            return text(tc::time64us_to_time(at!(Time64MicrosecondType)).map(|t| t.to_string()))
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            return text(tc::time64ns_to_time(at!(Time64NanosecondType)).map(|t| t.to_string()))
        }
        DataType::Timestamp(unit, zone) => {
            let zone = zone.as_deref();
            return text(match unit {
                TimeUnit::Second => {
                    timestamp::<TimestampSecondType>(at!(TimestampSecondType), zone)
                }
                TimeUnit::Millisecond => {
                    timestamp::<TimestampMillisecondType>(at!(TimestampMillisecondType), zone)
                }
                TimeUnit::Microsecond => {
                    timestamp::<TimestampMicrosecondType>(at!(TimestampMicrosecondType), zone)
                }
                TimeUnit::Nanosecond => {
                    timestamp::<TimestampNanosecondType>(at!(TimestampNanosecondType), zone)
                }
            });
        }
        DataType::Duration(unit) => {
            let v = match unit {
                TimeUnit::Second => at!(DurationSecondType),
                TimeUnit::Millisecond => at!(DurationMillisecondType),
                TimeUnit::Microsecond => at!(DurationMicrosecondType),
                TimeUnit::Nanosecond => at!(DurationNanosecondType),
            };
            return text(Some(duration(v, *unit)));
        }
        DataType::List(_) => return cells(array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => return cells(array.as_list::<i64>().value(row).as_ref()),
        DataType::FixedSizeList(..) => {
            return cells(array.as_fixed_size_list().value(row).as_ref())
        }
        DataType::Struct(fields) => {
            let columns = array.as_struct().columns();
            return fields
                .iter()
                .zip(columns)
                .map(|(f, c)| Some((f.name().clone(), cell_to_json(c.as_ref(), row)?)))
                .collect::<Option<serde_json::Map<_, _>>>()
                .map(Json::Object);
        }
        DataType::Map(..) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            return (0..entries.len())
                .map(|i| {
                    let pair = vec![
                        cell_to_json(keys.as_ref(), i)?,
                        cell_to_json(values.as_ref(), i)?,
                    ];
                    Some(Json::Array(pair))
                })
                .collect::<Option<Vec<_>>>()
                .map(Json::Array);
        }
        DataType::Dictionary(keys, _) => {
            macro_rules! entry {
                ($k:ty) => {{
                    let d = array.as_dictionary::<$k>();
                    (d.values(), d.key(row)?)
                }};
            }
            let (values, key) = match keys.as_ref() {
                DataType::Int8 => entry!(Int8Type),
                DataType::Int16 => entry!(Int16Type),
                DataType::Int32 => entry!(Int32Type),
                DataType::Int64 => entry!(Int64Type),
                DataType::UInt8 => entry!(UInt8Type),
                DataType::UInt16 => entry!(UInt16Type),
                DataType::UInt32 => entry!(UInt32Type),
                DataType::UInt64 => entry!(UInt64Type),
                _ => return None,
            };
            return (key < values.len())
                .then(|| cell_to_json(values.as_ref(), key))
                .flatten();
        }
        _ => return None,
    };
    Some(value_to_json(&value))
}

/// Every cell of `values` as a JSON array; `None` if one has no JSON.
fn cells(values: &dyn Array) -> Option<Json> {
    (0..values.len())
        .map(|i| cell_to_json(values, i))
        .collect::<Option<Vec<_>>>()
        .map(Json::Array)
}

/// The decimal whose unscaled value has the decimal `digits` (perhaps
/// after a minus), at `scale`: `("12340", 2)` is `"123.40"`, `("-5", 3)`
/// is `"-0.005"`, `("12", -2)` is `"1200"`.
fn decimal(digits: &str, scale: i8) -> String {
    let (sign, digits) = match digits.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", digits),
    };
    match usize::try_from(scale) {
        Ok(0) => format!("{sign}{digits}"),
        Ok(scale) => {
            let padded = format!("{digits:0>width$}", width = scale + 1);
            let (whole, fraction) = padded.split_at(padded.len() - scale);
            format!("{sign}{whole}.{fraction}")
        }
        Err(_) if digits == "0" => "0".into(),
        Err(_) => format!("{sign}{digits}{}", "0".repeat(scale.unsigned_abs().into())),
    }
}

/// The timestamp `ticks` (of `T`'s unit since the epoch) in ISO 8601: the
/// local time and offset for a fixed offset `zone`, the UTC instant with
/// `Z` for a named zone, a naive date and time without one.
fn timestamp<T: arrow_array::ArrowPrimitiveType>(ticks: i64, zone: Option<&str>) -> Option<String> {
    use arrow_array::temporal_conversions::{as_datetime, as_datetime_with_timezone};
    use arrow_array::timezone::Tz;
    // chrono's types are arrow-array's to name: a date and time as ISO 8601.
    macro_rules! iso {
        ($t:expr) => {{
            let t = $t;
            format!("{}T{}", t.date(), t.time())
        }};
    }
    let Some(zone) = zone else {
        return as_datetime::<T>(ticks).map(|t| iso!(t));
    };
    // Only fixed offsets: whether arrow parses named zones depends on its
    // chrono-tz feature, which another crate in the build (DataFusion) may
    // turn on; the output must not change with it.
    let fixed = zone.starts_with(['+', '-']);
    match zone.parse::<Tz>() {
        Ok(tz) if fixed => as_datetime_with_timezone::<T>(ticks, tz)
            .map(|t| format!("{}{}", iso!(t.naive_local()), t.offset())),
        _ => as_datetime::<T>(ticks).map(|t| format!("{}Z", iso!(t))),
    }
}

/// `ticks` of `unit` as an ISO 8601 duration in seconds: `"PT90S"`,
/// `"PT0.25S"`, `"-PT1.000001S"` (the fraction without trailing zeros).
fn duration(ticks: i64, unit: TimeUnit) -> String {
    let digits = match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    };
    let sign = if ticks < 0 { "-" } else { "" };
    let per_second = 10u64.pow(digits);
    let magnitude = ticks.unsigned_abs();
    let (seconds, fraction) = (magnitude / per_second, magnitude % per_second);
    if fraction == 0 {
        return format!("{sign}PT{seconds}S");
    }
    let fraction = format!("{fraction:0width$}", width = digits as usize);
    format!("{sign}PT{seconds}.{}S", fraction.trim_end_matches('0'))
}

/// Row `row` of `batch` (every column's value) as a JSON array, each as
/// [`cell_to_json`] has it; `None` if a column's value has no JSON.
pub fn row_to_json(batch: &RecordBatch, row: usize) -> Option<Json> {
    batch
        .columns()
        .iter()
        .map(|c| cell_to_json(c.as_ref(), row))
        .collect::<Option<Vec<_>>>()
        .map(Json::Array)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{
        FixedSizeListBuilder, Int32Builder, Int64Builder, LargeListBuilder, ListBuilder,
        MapBuilder, StringBuilder,
    };
    use arrow_array::types::Int8Type;
    use arrow_array::{
        ArrayRef, BinaryArray, BinaryViewArray, Date32Array, Date64Array, Decimal128Array,
        Decimal256Array, DictionaryArray, DurationMicrosecondArray, DurationMillisecondArray,
        DurationNanosecondArray, DurationSecondArray, Float32Array, Int32Array, Int64Array,
        LargeStringArray, NullArray, StringArray, StringViewArray, StructArray,
        Time32MillisecondArray, Time32SecondArray, Time64MicrosecondArray, Time64NanosecondArray,
        TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray,
        TimestampSecondArray, UInt64Array,
    };
    use serde_json::json;

    use arrow_schema::Field;
    use std::sync::Arc;

    /// Every cell of `array` as [`cell_to_json`] has it.
    fn column(array: &dyn Array) -> Vec<Option<Json>> {
        (0..array.len()).map(|i| cell_to_json(array, i)).collect()
    }

    /// `values` as JSON cells.
    fn cells_of(values: Vec<Json>) -> Vec<Option<Json>> {
        values.into_iter().map(Some).collect()
    }

    #[test]
    fn flat_cells_are_json_as_coil_run_writes_values() {
        let ints = Int64Array::from(vec![Some(-3), None]);
        assert_eq!(column(&ints), cells_of(vec![json!(-3), Json::Null]));
        let big = UInt64Array::from(vec![u64::MAX]);
        assert_eq!(cell_to_json(&big, 0), Some(Json::from(u64::MAX)));
        let floats = Float32Array::from(vec![1.5, f32::NAN]);
        assert_eq!(column(&floats), cells_of(vec![json!(1.5), Json::Null]));
        let text = LargeStringArray::from(vec!["é"]);
        assert_eq!(cell_to_json(&text, 0), Some(json!("é")));
        let view = StringViewArray::from(vec![Some("a string longer than twelve bytes"), None]);
        assert_eq!(
            column(&view),
            cells_of(vec![json!("a string longer than twelve bytes"), Json::Null])
        );
        let bytes = BinaryArray::from(vec![&[0u8, 255][..]]);
        assert_eq!(cell_to_json(&bytes, 0), Some(json!({"$bytes": "00ff"})));
        let bytes = BinaryViewArray::from(vec![&[1u8][..]]);
        assert_eq!(cell_to_json(&bytes, 0), Some(json!({"$bytes": "01"})));
        assert_eq!(cell_to_json(&NullArray::new(1), 0), Some(Json::Null));
    }

    #[test]
    fn decimals_are_strings_at_their_scale() {
        let d = Decimal128Array::from(vec![12345, -5, 0, 100, i128::MAX])
            .with_precision_and_scale(38, 2)
            .unwrap();
        assert_eq!(
            column(&d),
            cells_of(vec![
                json!("123.45"),
                json!("-0.05"),
                json!("0.00"),
                json!("1.00"),
                json!("1701411834604692317316873037158841057.27"),
            ])
        );
        let whole = Decimal128Array::from(vec![7, -7])
            .with_precision_and_scale(5, 0)
            .unwrap();
        assert_eq!(column(&whole), cells_of(vec![json!("7"), json!("-7")]));
        let tens = Decimal128Array::from(vec![12, 0, -3])
            .with_precision_and_scale(5, -2)
            .unwrap();
        assert_eq!(
            column(&tens),
            cells_of(vec![json!("1200"), json!("0"), json!("-300")])
        );
        // i256, which arrow-array does not export by name.
        type Wide = <arrow_array::types::Decimal256Type as arrow_array::ArrowPrimitiveType>::Native;
        let wide = Decimal256Array::from(vec![
            Wide::from_string("-123456789012345678901234567890123456789012345678"),
            None,
        ])
        .with_precision_and_scale(76, 45)
        .unwrap();
        assert_eq!(
            column(&wide),
            cells_of(vec![
                json!("-123.456789012345678901234567890123456789012345678"),
                Json::Null
            ])
        );
    }

    #[test]
    fn dates_and_times_are_iso_8601() {
        let days = Date32Array::from(vec![0, 19_844, -719_162]);
        assert_eq!(
            column(&days),
            cells_of(vec![
                json!("1970-01-01"),
                json!("2024-05-01"),
                json!("0001-01-01")
            ])
        );
        let millis = Date64Array::from(vec![86_400_000]);
        assert_eq!(cell_to_json(&millis, 0), Some(json!("1970-01-02")));
        let out_of_range = Date32Array::from(vec![i32::MAX]);
        assert_eq!(cell_to_json(&out_of_range, 0), None);

        let s = Time32SecondArray::from(vec![45_296, 0]);
        assert_eq!(
            column(&s),
            cells_of(vec![json!("12:34:56"), json!("00:00:00")])
        );
        let ms = Time32MillisecondArray::from(vec![45_296_500]);
        assert_eq!(cell_to_json(&ms, 0), Some(json!("12:34:56.500")));
        let us = Time64MicrosecondArray::from(vec![45_296_000_001, 1_000]);
        assert_eq!(
            column(&us),
            cells_of(vec![json!("12:34:56.000001"), json!("00:00:00.001")])
        );
        let ns = Time64NanosecondArray::from(vec![1]);
        assert_eq!(cell_to_json(&ns, 0), Some(json!("00:00:00.000000001")));
        let past_midnight = Time32SecondArray::from(vec![86_400]);
        assert_eq!(cell_to_json(&past_midnight, 0), None);
    }

    #[test]
    fn timestamps_are_iso_8601_with_their_zone_offset() {
        // 2024-05-01T12:30:00Z.
        let second = 1_714_566_600;
        let naive = TimestampSecondArray::from(vec![second, -1]);
        assert_eq!(
            column(&naive),
            cells_of(vec![
                json!("2024-05-01T12:30:00"),
                json!("1969-12-31T23:59:59")
            ])
        );
        let ms = TimestampMillisecondArray::from(vec![second * 1_000 + 250]);
        assert_eq!(cell_to_json(&ms, 0), Some(json!("2024-05-01T12:30:00.250")));
        let us =
            TimestampMicrosecondArray::from(vec![second * 1_000_000 + 1]).with_timezone("+02:00");
        assert_eq!(
            cell_to_json(&us, 0),
            Some(json!("2024-05-01T14:30:00.000001+02:00"))
        );
        let ns =
            TimestampNanosecondArray::from(vec![second * 1_000_000_000]).with_timezone("-0930");
        assert_eq!(
            cell_to_json(&ns, 0),
            Some(json!("2024-05-01T03:00:00-09:30"))
        );
        for named in ["UTC", "Europe/Paris"] {
            let t = TimestampSecondArray::from(vec![second]).with_timezone(named);
            assert_eq!(
                cell_to_json(&t, 0),
                Some(json!("2024-05-01T12:30:00Z")),
                "{named}"
            );
        }
    }

    #[test]
    fn durations_are_iso_8601_seconds() {
        let s = DurationSecondArray::from(vec![90, 0, -5, i64::MIN]);
        assert_eq!(
            column(&s),
            cells_of(vec![
                json!("PT90S"),
                json!("PT0S"),
                json!("-PT5S"),
                json!("-PT9223372036854775808S")
            ])
        );
        let ms = DurationMillisecondArray::from(vec![90_500, -250]);
        assert_eq!(
            column(&ms),
            cells_of(vec![json!("PT90.5S"), json!("-PT0.25S")])
        );
        let us = DurationMicrosecondArray::from(vec![1_000_001]);
        assert_eq!(cell_to_json(&us, 0), Some(json!("PT1.000001S")));
        let ns = DurationNanosecondArray::from(vec![-1, 3_000_000_000]);
        assert_eq!(
            column(&ns),
            cells_of(vec![json!("-PT0.000000001S"), json!("PT3S")])
        );
    }

    #[test]
    fn nested_cells_are_arrays_objects_and_pairs() {
        let mut list = ListBuilder::new(Int64Builder::new());
        list.values().append_value(1);
        list.values().append_null();
        list.append(true);
        list.append(false);
        list.append(true);
        let list = list.finish();
        assert_eq!(
            column(&list),
            cells_of(vec![json!([1, null]), Json::Null, json!([])])
        );
        let mut large = LargeListBuilder::new(StringBuilder::new());
        large.values().append_value("x");
        large.append(true);
        assert_eq!(cell_to_json(&large.finish(), 0), Some(json!(["x"])));
        let mut fixed = FixedSizeListBuilder::new(Int32Builder::new(), 2);
        fixed.values().append_slice(&[3, 4]);
        fixed.append(true);
        assert_eq!(cell_to_json(&fixed.finish(), 0), Some(json!([3, 4])));

        let dates: ArrayRef = Arc::new(Date32Array::from(vec![Some(0), None]));
        let names: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        let structs = StructArray::from(vec![
            (Arc::new(Field::new("when", DataType::Date32, true)), dates),
            (Arc::new(Field::new("name", DataType::Utf8, true)), names),
        ]);
        assert_eq!(
            column(&structs),
            cells_of(vec![
                json!({"when": "1970-01-01", "name": "a"}),
                json!({"when": null, "name": "b"})
            ])
        );

        let mut map = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
        map.keys().append_value("b");
        map.values().append_value(2);
        map.keys().append_value("a");
        map.values().append_null();
        map.append(true).unwrap();
        map.append(false).unwrap();
        map.append(true).unwrap();
        assert_eq!(
            column(&map.finish()),
            cells_of(vec![json!([["b", 2], ["a", null]]), Json::Null, json!([])])
        );
    }

    #[test]
    fn a_dictionary_cell_is_its_value() {
        let dictionary: DictionaryArray<Int8Type> =
            vec![Some("red"), None, Some("blue"), Some("red")]
                .into_iter()
                .collect();
        assert_eq!(
            column(&dictionary),
            cells_of(vec![json!("red"), Json::Null, json!("blue"), json!("red")])
        );
        let decimals = Arc::new(
            Decimal128Array::from(vec![Some(150), None])
                .with_precision_and_scale(5, 2)
                .unwrap(),
        );
        let keys = arrow_array::UInt32Array::from(vec![Some(1), Some(0), None]);
        let over_decimals = DictionaryArray::try_new(keys, decimals).unwrap();
        assert_eq!(
            column(&over_decimals),
            cells_of(vec![Json::Null, json!("1.50"), Json::Null])
        );
    }

    #[test]
    fn a_row_is_every_column_s_cell_or_none() {
        let batch = RecordBatch::try_from_iter([
            ("n", Arc::new(Int32Array::from(vec![7])) as ArrayRef),
            (
                "d",
                Arc::new(
                    Decimal128Array::from(vec![5])
                        .with_precision_and_scale(3, 1)
                        .unwrap(),
                ) as ArrayRef,
            ),
        ])
        .unwrap();
        assert_eq!(row_to_json(&batch, 0), Some(json!([7, "0.5"])));
        let months = RecordBatch::try_from_iter([(
            "months",
            Arc::new(arrow_array::IntervalYearMonthArray::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        assert_eq!(row_to_json(&months, 0), None);
    }
}
