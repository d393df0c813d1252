//! Arrow → Python: an argument column of a column batch read row by row
//! as Python objects, its type resolved once per batch.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::Array;
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, TimeUnit};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};

use super::temporal::{date, make_time, timedelta_of, timestamp_of};
use super::{kit_or, py_err, PyKit};

/// A column's values as Python objects, its type resolved once.
pub(crate) struct ArrowColumn<'a, 'py> {
    /// Its validity, if it has nulls.
    nulls: Option<NullBuffer>,
    kind: InKind<'a, 'py>,
}

enum InKind<'a, 'py> {
    Null,
    Bool(&'a arrow_array::BooleanArray),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    F32(&'a [f32]),
    F64(&'a [f64]),
    Str(&'a arrow_array::StringArray),
    LargeStr(&'a arrow_array::LargeStringArray),
    Bin(&'a arrow_array::BinaryArray),
    LargeBin(&'a arrow_array::LargeBinaryArray),
    /// Days (date32) or milliseconds (date64) since the epoch.
    Date32(&'a [i32], Bound<'py, PyAny>),
    Date64(&'a [i64], Bound<'py, PyAny>),
    Time32(&'a [i32], TimeUnit, Bound<'py, PyAny>),
    Time64(&'a [i64], TimeUnit, Bound<'py, PyAny>),
    Timestamp {
        ticks: &'a [i64],
        unit: TimeUnit,
        datetime: Bound<'py, PyAny>,
        utc: Bound<'py, PyAny>,
        zone: Option<Bound<'py, PyAny>>,
    },
    Duration(&'a [i64], TimeUnit, Bound<'py, PyAny>),
    Decimal128(&'a arrow_array::Decimal128Array, u8, i8, Bound<'py, PyAny>),
    Decimal256(&'a arrow_array::Decimal256Array, u8, i8, Bound<'py, PyAny>),
    /// Offsets (rows + 1, absolute into the child) and the child.
    List(Vec<usize>, Box<ArrowColumn<'a, 'py>>),
    Struct(Vec<(Bound<'py, PyString>, ArrowColumn<'a, 'py>)>),
    Map(
        Vec<usize>,
        Box<ArrowColumn<'a, 'py>>,
        Box<ArrowColumn<'a, 'py>>,
    ),
}

impl<'a, 'py> ArrowColumn<'a, 'py> {
    /// The column `a`, or why the executor does not take it. `kit` is
    /// needed for the types [`needs_kit`](super::needs_kit) names.
    pub(crate) fn of(
        py: Python<'py>,
        a: &'a dyn Array,
        kit: Option<&PyKit>,
    ) -> Result<ArrowColumn<'a, 'py>, String> {
        use DataType as T;
        let kind = match a.data_type() {
            T::Null => InKind::Null,
            T::Boolean => InKind::Bool(a.as_boolean()),
            T::Int8 => InKind::I8(a.as_primitive::<Int8Type>().values()),
            T::Int16 => InKind::I16(a.as_primitive::<Int16Type>().values()),
            T::Int32 => InKind::I32(a.as_primitive::<Int32Type>().values()),
            T::Int64 => InKind::I64(a.as_primitive::<Int64Type>().values()),
            T::UInt8 => InKind::U8(a.as_primitive::<UInt8Type>().values()),
            T::UInt16 => InKind::U16(a.as_primitive::<UInt16Type>().values()),
            T::UInt32 => InKind::U32(a.as_primitive::<UInt32Type>().values()),
            T::UInt64 => InKind::U64(a.as_primitive::<UInt64Type>().values()),
            T::Float32 => InKind::F32(a.as_primitive::<Float32Type>().values()),
            T::Float64 => InKind::F64(a.as_primitive::<Float64Type>().values()),
            T::Utf8 => InKind::Str(a.as_string::<i32>()),
            T::LargeUtf8 => InKind::LargeStr(a.as_string::<i64>()),
            T::Binary => InKind::Bin(a.as_binary::<i32>()),
            T::LargeBinary => InKind::LargeBin(a.as_binary::<i64>()),
            T::Date32 => InKind::Date32(
                a.as_primitive::<Date32Type>().values(),
                kit_or(kit)?
                    .date
                    .bind(py)
                    .getattr("fromordinal")
                    .map_err(py_err)?,
            ),
            T::Date64 => InKind::Date64(
                a.as_primitive::<Date64Type>().values(),
                kit_or(kit)?
                    .date
                    .bind(py)
                    .getattr("fromordinal")
                    .map_err(py_err)?,
            ),
            T::Time32(u) => {
                let v = match u {
                    TimeUnit::Second => a.as_primitive::<Time32SecondType>().values(),
                    _ => a.as_primitive::<Time32MillisecondType>().values(),
                };
                InKind::Time32(v, *u, kit_or(kit)?.time.bind(py).clone())
            }
            T::Time64(u) => {
                let v = match u {
                    TimeUnit::Microsecond => a.as_primitive::<Time64MicrosecondType>().values(),
                    _ => a.as_primitive::<Time64NanosecondType>().values(),
                };
                InKind::Time64(v, *u, kit_or(kit)?.time.bind(py).clone())
            }
            T::Timestamp(u, tz) => {
                let kit = kit_or(kit)?;
                let ticks = match u {
                    TimeUnit::Second => a.as_primitive::<TimestampSecondType>().values(),
                    TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().values(),
                    TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().values(),
                    TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().values(),
                };
                let zone = match tz {
                    None => None,
                    Some(name) => Some(
                        kit.tzinfo
                            .bind(py)
                            .call1((name.as_ref(),))
                            .map_err(|e| format!("time zone {name:?}: {e}"))?,
                    ),
                };
                InKind::Timestamp {
                    ticks,
                    unit: *u,
                    datetime: kit.datetime.bind(py).clone(),
                    utc: kit.utc.bind(py).clone(),
                    zone,
                }
            }
            T::Duration(u) => {
                let ticks = match u {
                    TimeUnit::Second => a.as_primitive::<DurationSecondType>().values(),
                    TimeUnit::Millisecond => a.as_primitive::<DurationMillisecondType>().values(),
                    TimeUnit::Microsecond => a.as_primitive::<DurationMicrosecondType>().values(),
                    TimeUnit::Nanosecond => a.as_primitive::<DurationNanosecondType>().values(),
                };
                InKind::Duration(ticks, *u, kit_or(kit)?.timedelta.bind(py).clone())
            }
            T::Decimal128(p, s) => InKind::Decimal128(
                a.as_primitive::<Decimal128Type>(),
                *p,
                *s,
                kit_or(kit)?.decimal.bind(py).clone(),
            ),
            T::Decimal256(p, s) => InKind::Decimal256(
                a.as_primitive::<Decimal256Type>(),
                *p,
                *s,
                kit_or(kit)?.decimal.bind(py).clone(),
            ),
            T::List(_) => {
                let l = a.as_list::<i32>();
                let o: Vec<usize> = l.value_offsets().iter().map(|&o| o as usize).collect();
                InKind::List(o, Box::new(ArrowColumn::of(py, l.values().as_ref(), kit)?))
            }
            T::LargeList(_) => {
                let l = a.as_list::<i64>();
                let o: Vec<usize> = l.value_offsets().iter().map(|&o| o as usize).collect();
                InKind::List(o, Box::new(ArrowColumn::of(py, l.values().as_ref(), kit)?))
            }
            T::FixedSizeList(_, size) => {
                let l = a.as_fixed_size_list();
                let size = (*size).max(0) as usize;
                let o: Vec<usize> = (0..=a.len()).map(|i| i * size).collect();
                InKind::List(o, Box::new(ArrowColumn::of(py, l.values().as_ref(), kit)?))
            }
            T::Struct(fields) => {
                let s = a.as_struct();
                let mut children = Vec::with_capacity(fields.len());
                for (f, c) in fields.iter().zip(s.columns()) {
                    children.push((
                        PyString::new(py, f.name()),
                        ArrowColumn::of(py, c.as_ref(), kit)?,
                    ));
                }
                InKind::Struct(children)
            }
            T::Map(..) => {
                let m = a.as_map();
                let o: Vec<usize> = m.value_offsets().iter().map(|&o| o as usize).collect();
                InKind::Map(
                    o,
                    Box::new(ArrowColumn::of(py, m.keys().as_ref(), kit)?),
                    Box::new(ArrowColumn::of(py, m.values().as_ref(), kit)?),
                )
            }
            t => {
                return Err(format!(
                    "a column of type {t}, which the executor does not take"
                ))
            }
        };
        Ok(ArrowColumn {
            nulls: a.logical_nulls().filter(|n| n.null_count() > 0),
            kind,
        })
    }

    /// Row `row`'s value as a Python object (`None` for a null), or why it
    /// has none (a date or time out of Python's range, nanoseconds that are
    /// not whole microseconds).
    #[inline]
    pub(crate) fn get(&self, py: Python<'py>, row: usize) -> Result<Bound<'py, PyAny>, String> {
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return Ok(py.None().into_bound(py));
        }
        fn int<T: Into<i64>>(py: Python<'_>, v: T) -> Bound<'_, PyAny> {
            PyInt::new(py, v.into()).into_any()
        }
        Ok(match &self.kind {
            InKind::Null => py.None().into_bound(py),
            InKind::Bool(a) => PyBool::new(py, a.value(row)).to_owned().into_any(),
            InKind::I8(v) => int(py, v[row]),
            InKind::I16(v) => int(py, v[row]),
            InKind::I32(v) => int(py, v[row]),
            InKind::I64(v) => PyInt::new(py, v[row]).into_any(),
            InKind::U8(v) => int(py, v[row]),
            InKind::U16(v) => int(py, v[row]),
            InKind::U32(v) => int(py, v[row]),
            InKind::U64(v) => PyInt::new(py, v[row]).into_any(),
            InKind::F32(v) => PyFloat::new(py, f64::from(v[row])).into_any(),
            InKind::F64(v) => PyFloat::new(py, v[row]).into_any(),
            InKind::Str(a) => PyString::new(py, a.value(row)).into_any(),
            InKind::LargeStr(a) => PyString::new(py, a.value(row)).into_any(),
            InKind::Bin(a) => PyBytes::new(py, a.value(row)).into_any(),
            InKind::LargeBin(a) => PyBytes::new(py, a.value(row)).into_any(),
            InKind::Date32(v, fromordinal) => date(fromordinal, i64::from(v[row]))?,
            InKind::Date64(v, fromordinal) => date(fromordinal, v[row].div_euclid(86_400_000))?,
            InKind::Time32(v, unit, time) => make_time(time, i64::from(v[row]), unit)?,
            InKind::Time64(v, unit, time) => make_time(time, v[row], unit)?,
            InKind::Timestamp {
                ticks,
                unit,
                datetime,
                utc,
                zone,
            } => timestamp_of(ticks[row], unit, datetime, utc, zone.as_ref())?,
            InKind::Duration(v, unit, timedelta) => timedelta_of(v[row], unit, timedelta)?,
            InKind::Decimal128(a, p, s, decimal) => decimal
                .call1((Decimal128Type::format_decimal(a.value(row), *p, *s),))
                .map_err(py_err)?,
            InKind::Decimal256(a, p, s, decimal) => decimal
                .call1((Decimal256Type::format_decimal(a.value(row), *p, *s),))
                .map_err(py_err)?,
            InKind::List(offsets, child) => {
                let items = (offsets[row]..offsets[row + 1])
                    .map(|i| child.get(py, i))
                    .collect::<Result<Vec<_>, _>>()?;
                PyList::new(py, items).map_err(py_err)?.into_any()
            }
            InKind::Struct(children) => {
                let d = PyDict::new(py);
                for (name, c) in children {
                    d.set_item(name, c.get(py, row)?).map_err(py_err)?;
                }
                d.into_any()
            }
            InKind::Map(offsets, keys, values) => {
                let d = PyDict::new(py);
                for i in offsets[row]..offsets[row + 1] {
                    d.set_item(keys.get(py, i)?, values.get(py, i)?)
                        .map_err(|e| format!("a map key: {e}"))?;
                }
                d.into_any()
            }
        })
    }
}
