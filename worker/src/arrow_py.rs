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

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{make_array, Array, ArrayRef};
use arrow_buffer::{i256, Buffer, NullBuffer};
use arrow_data::ArrayDataBuilder;
use arrow_schema::{DataType, TimeUnit};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};

/// Days from 0001-01-01 (ordinal 1) to 1970-01-01.
const EPOCH_ORDINAL: i64 = 719_163;
/// The largest ordinal `datetime.date` holds (9999-12-31).
const MAX_ORDINAL: i64 = 3_652_059;
const MICROS_PER_DAY: i128 = 86_400_000_000;

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

/// Ticks of `unit` per second.
fn per_second(unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// `ticks` of `unit` as whole microseconds, or why not.
fn to_micros(ticks: i64, unit: &TimeUnit) -> Result<i128, String> {
    let t = i128::from(ticks);
    match unit {
        TimeUnit::Nanosecond if ticks % 1000 != 0 => Err(format!(
            "{ticks} ns is not a whole number of microseconds, which is all Python's datetime types hold"
        )),
        TimeUnit::Nanosecond => Ok(t / 1000),
        u => Ok(t * i128::from(1_000_000 / per_second(u))),
    }
}

/// Microseconds as ticks of `unit`, exactly, or why not.
fn from_micros(us: i128, unit: &TimeUnit) -> Result<i64, String> {
    let ticks = match unit {
        TimeUnit::Nanosecond => us.checked_mul(1000),
        u => {
            let per = i128::from(1_000_000 / per_second(u));
            if us % per != 0 {
                return Err(format!("{us} µs is not a whole number of {}", unit_name(u)));
            }
            Some(us / per)
        }
    };
    ticks
        .and_then(|t| i64::try_from(t).ok())
        .ok_or_else(|| format!("{us} µs is out of range for {}", unit_name(unit)))
}

fn unit_name(u: &TimeUnit) -> &'static str {
    match u {
        TimeUnit::Second => "seconds",
        TimeUnit::Millisecond => "milliseconds",
        TimeUnit::Microsecond => "microseconds",
        TimeUnit::Nanosecond => "nanoseconds",
    }
}

fn py_err(e: PyErr) -> String {
    e.to_string()
}

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

fn kit_or(kit: Option<&PyKit>) -> Result<&PyKit, String> {
    kit.ok_or_else(|| "internal error: no datetime/decimal types loaded".to_string())
}

impl<'a, 'py> ArrowColumn<'a, 'py> {
    /// The column `a`, or why the executor does not take it. `kit` is
    /// needed for the types [`needs_kit`] names.
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
            } => {
                let us = to_micros(ticks[row], unit)?;
                let (days, rest) = (us.div_euclid(MICROS_PER_DAY), us.rem_euclid(MICROS_PER_DAY));
                let ordinal = days + i128::from(EPOCH_ORDINAL);
                let date = chrono::NaiveDate::from_num_days_from_ce_opt(
                    i32::try_from(ordinal).unwrap_or(i32::MAX),
                )
                .filter(|_| (1..=i128::from(MAX_ORDINAL)).contains(&ordinal))
                .ok_or_else(|| {
                    format!(
                        "timestamp {} {} is outside datetime.datetime's range",
                        ticks[row],
                        unit_name(unit)
                    )
                })?;
                use chrono::Datelike;
                let secs = (rest / 1_000_000) as u32;
                let args = (
                    date.year(),
                    date.month(),
                    date.day(),
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60,
                    (rest % 1_000_000) as u32,
                );
                match zone {
                    None => datetime.call1(args).map_err(py_err)?,
                    Some(zone) => {
                        let at = datetime
                            .call1((args.0, args.1, args.2, args.3, args.4, args.5, args.6, utc))
                            .map_err(py_err)?;
                        at.call_method1("astimezone", (zone,)).map_err(py_err)?
                    }
                }
            }
            InKind::Duration(v, unit, timedelta) => {
                let us = to_micros(v[row], unit)?;
                let (days, rest) = (us.div_euclid(MICROS_PER_DAY), us.rem_euclid(MICROS_PER_DAY));
                timedelta
                    .call1((
                        days as i64,
                        (rest / 1_000_000) as i64,
                        (rest % 1_000_000) as i64,
                    ))
                    .map_err(py_err)?
            }
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

fn date<'py>(fromordinal: &Bound<'py, PyAny>, days: i64) -> Result<Bound<'py, PyAny>, String> {
    let ordinal = days.saturating_add(EPOCH_ORDINAL);
    if !(1..=MAX_ORDINAL).contains(&ordinal) {
        return Err(format!(
            "{days} days from 1970-01-01 is outside datetime.date's range"
        ));
    }
    fromordinal.call1((ordinal,)).map_err(py_err)
}

fn make_time<'py>(
    time: &Bound<'py, PyAny>,
    ticks: i64,
    unit: &TimeUnit,
) -> Result<Bound<'py, PyAny>, String> {
    let us = to_micros(ticks, unit)?;
    if !(0..MICROS_PER_DAY).contains(&us) {
        return Err(format!("time {ticks} {} is outside a day", unit_name(unit)));
    }
    let secs = (us / 1_000_000) as u32;
    time.call1((
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        (us % 1_000_000) as u32,
    ))
    .map_err(py_err)
}

/// The name of `obj`'s type, for errors.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    crate::convert::type_name(obj)
}

/// The UDF's results, built into one array of the declared type; each
/// value is checked to fit, never converted into a different value.
pub(crate) struct ResultColumn {
    /// The whole column at once (a vectorized UDF's Arrow result of the
    /// declared type), instead of values pushed.
    whole: Option<ArrayRef>,
    t: DataType,
    valid: Vec<bool>,
    nullable: bool,
    values: Values,
}

enum Values {
    Null,
    Bool(Vec<bool>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Strings (`text`) or binary; offsets from 0, one per value plus one.
    Bytes {
        text: bool,
        offsets: Vec<usize>,
        data: Vec<u8>,
    },
    Date32(Vec<i32>),
    Date64(Vec<i64>),
    Time32(TimeUnit, Vec<i32>),
    Time64(TimeUnit, Vec<i64>),
    Timestamp {
        unit: TimeUnit,
        aware: bool,
        ticks: Vec<i64>,
    },
    Duration(TimeUnit, Vec<i64>),
    Decimal128(u8, i8, Vec<i128>),
    Decimal256(u8, i8, Vec<i256>),
    List {
        offsets: Vec<usize>,
        /// The size of a fixed-size list.
        fixed: Option<usize>,
        child: Box<ResultColumn>,
    },
    Struct(Vec<(String, ResultColumn)>),
    Map {
        offsets: Vec<usize>,
        keys: Box<ResultColumn>,
        values: Box<ResultColumn>,
    },
}

/// Where a [`ResultColumn`] stood: to go back to when a value fails half
/// way into a nested one.
#[derive(Clone, Copy)]
pub(crate) struct Mark(usize);

impl ResultColumn {
    /// An empty column of type `t`, or why results cannot be built as it.
    pub(crate) fn new(t: &DataType) -> Result<ResultColumn, String> {
        ResultColumn::with(t, true)
    }

    fn with(t: &DataType, nullable: bool) -> Result<ResultColumn, String> {
        use DataType as T;
        let child = |f: &arrow_schema::FieldRef| -> Result<Box<ResultColumn>, String> {
            Ok(Box::new(ResultColumn::with(
                f.data_type(),
                f.is_nullable(),
            )?))
        };
        let values = match t {
            T::Null => Values::Null,
            T::Boolean => Values::Bool(Vec::new()),
            T::Int8 => Values::I8(Vec::new()),
            T::Int16 => Values::I16(Vec::new()),
            T::Int32 => Values::I32(Vec::new()),
            T::Int64 => Values::I64(Vec::new()),
            T::UInt8 => Values::U8(Vec::new()),
            T::UInt16 => Values::U16(Vec::new()),
            T::UInt32 => Values::U32(Vec::new()),
            T::UInt64 => Values::U64(Vec::new()),
            T::Float32 => Values::F32(Vec::new()),
            T::Float64 => Values::F64(Vec::new()),
            T::Utf8 | T::LargeUtf8 | T::Binary | T::LargeBinary => Values::Bytes {
                text: matches!(t, T::Utf8 | T::LargeUtf8),
                offsets: vec![0],
                data: Vec::new(),
            },
            T::Date32 => Values::Date32(Vec::new()),
            T::Date64 => Values::Date64(Vec::new()),
            T::Time32(u) => Values::Time32(*u, Vec::new()),
            T::Time64(u) => Values::Time64(*u, Vec::new()),
            T::Timestamp(u, tz) => Values::Timestamp {
                unit: *u,
                aware: tz.is_some(),
                ticks: Vec::new(),
            },
            T::Duration(u) => Values::Duration(*u, Vec::new()),
            T::Decimal128(p, s) => Values::Decimal128(*p, *s, Vec::new()),
            T::Decimal256(p, s) => Values::Decimal256(*p, *s, Vec::new()),
            T::List(f) | T::LargeList(f) => Values::List {
                offsets: vec![0],
                fixed: None,
                child: child(f)?,
            },
            T::FixedSizeList(f, size) => Values::List {
                offsets: vec![0],
                fixed: Some((*size).max(0) as usize),
                child: child(f)?,
            },
            T::Struct(fields) => Values::Struct(
                fields
                    .iter()
                    .map(|f| Ok((f.name().clone(), *child(f)?)))
                    .collect::<Result<_, String>>()?,
            ),
            T::Map(f, _) => match f.data_type() {
                T::Struct(kv) if kv.len() == 2 => Values::Map {
                    offsets: vec![0],
                    keys: child(&kv[0])?,
                    values: child(&kv[1])?,
                },
                other => return Err(format!("a map whose entries are {other}")),
            },
            t => return Err(format!("results of type {t} are not supported")),
        };
        Ok(ResultColumn {
            whole: None,
            t: t.clone(),
            valid: Vec::new(),
            nullable,
            values,
        })
    }

    /// Makes room for `n` more values (of a flat type: nested types grow
    /// as they go).
    pub(crate) fn reserve(&mut self, n: usize) {
        self.valid.reserve(n);
        match &mut self.values {
            Values::I64(v) => v.reserve(n),
            Values::F64(v) => v.reserve(n),
            Values::I32(v) => v.reserve(n),
            Values::Bytes { offsets, .. } => offsets.reserve(n),
            _ => {}
        }
    }

    /// Values pushed so far.
    pub(crate) fn len(&self) -> usize {
        self.valid.len()
    }

    /// Where the column stands now.
    pub(crate) fn mark(&self) -> Mark {
        Mark(self.len())
    }

    /// Drops every value pushed since `mark`.
    pub(crate) fn rewind(&mut self, mark: Mark) {
        // Also when this column itself has no more than `n` values: a
        // nested value that failed half way may have left its children
        // longer (each truncation is a no-op when already short enough).
        let n = mark.0;
        self.valid.truncate(n);
        match &mut self.values {
            Values::Null => {}
            Values::Bool(v) => v.truncate(n),
            Values::I8(v) => v.truncate(n),
            Values::I16(v) => v.truncate(n),
            Values::I32(v) | Values::Date32(v) | Values::Time32(_, v) => v.truncate(n),
            Values::I64(v)
            | Values::Date64(v)
            | Values::Time64(_, v)
            | Values::Duration(_, v)
            | Values::Timestamp { ticks: v, .. } => v.truncate(n),
            Values::U8(v) => v.truncate(n),
            Values::U16(v) => v.truncate(n),
            Values::U32(v) => v.truncate(n),
            Values::U64(v) => v.truncate(n),
            Values::F32(v) => v.truncate(n),
            Values::F64(v) => v.truncate(n),
            Values::Bytes { offsets, data, .. } => {
                offsets.truncate(n + 1);
                if let Some(&end) = offsets.get(n) {
                    data.truncate(end);
                }
            }
            Values::Decimal128(_, _, v) => v.truncate(n),
            Values::Decimal256(_, _, v) => v.truncate(n),
            Values::List { offsets, child, .. } => {
                offsets.truncate(n + 1);
                if let Some(&end) = offsets.get(n) {
                    child.rewind(Mark(end));
                }
            }
            Values::Struct(children) => {
                for (_, c) in children {
                    c.rewind(Mark(n));
                }
            }
            Values::Map {
                offsets,
                keys,
                values,
            } => {
                offsets.truncate(n + 1);
                if let Some(&end) = offsets.get(n) {
                    keys.rewind(Mark(end));
                    values.rewind(Mark(end));
                }
            }
        }
    }

    /// Appends a null (a failed row's place).
    pub(crate) fn push_null(&mut self) {
        self.valid.push(false);
        match &mut self.values {
            Values::Null => {}
            Values::Bool(v) => v.push(false),
            Values::I8(v) => v.push(0),
            Values::I16(v) => v.push(0),
            Values::I32(v) | Values::Date32(v) | Values::Time32(_, v) => v.push(0),
            Values::I64(v)
            | Values::Date64(v)
            | Values::Time64(_, v)
            | Values::Duration(_, v)
            | Values::Timestamp { ticks: v, .. } => v.push(0),
            Values::U8(v) => v.push(0),
            Values::U16(v) => v.push(0),
            Values::U32(v) => v.push(0),
            Values::U64(v) => v.push(0),
            Values::F32(v) => v.push(0.0),
            Values::F64(v) => v.push(0.0),
            Values::Bytes { offsets, data, .. } => offsets.push(data.len()),
            Values::Decimal128(_, _, v) => v.push(0),
            Values::Decimal256(_, _, v) => v.push(i256::ZERO),
            Values::List {
                offsets,
                fixed,
                child,
            } => {
                // A fixed-size list's null still spans `size` child values.
                if let Some(size) = fixed {
                    for _ in 0..*size {
                        child.push_null();
                    }
                }
                offsets.push(child.len());
            }
            Values::Struct(children) => {
                for (_, c) in children {
                    c.push_null();
                }
            }
            Values::Map { offsets, keys, .. } => offsets.push(keys.len()),
        }
    }

    /// Appends `obj`, or says why it does not fit (the column is then as
    /// it was).
    pub(crate) fn push(
        &mut self,
        kit: Option<&PyKit>,
        obj: &Bound<'_, PyAny>,
    ) -> Result<(), String> {
        let mark = self.mark();
        let pushed = self.push_inner(kit, obj);
        if pushed.is_err() {
            self.rewind(mark);
        }
        pushed
    }

    fn push_inner(&mut self, kit: Option<&PyKit>, obj: &Bound<'_, PyAny>) -> Result<(), String> {
        match self.push_value(kit, obj) {
            // numpy scalars as the Python values they hold (looked at only
            // when the value does not fit as it is: the common types go
            // first).
            Err(_) if crate::convert::is_numpy_scalar(obj) => {
                let item = obj.call_method0("item").map_err(py_err)?;
                self.push_value(kit, &item)
            }
            pushed => pushed,
        }
    }

    fn push_value(&mut self, kit: Option<&PyKit>, obj: &Bound<'_, PyAny>) -> Result<(), String> {
        let t = &self.t;
        if obj.is_none() {
            if !self.nullable {
                return Err(format!(
                    "None where the declared type {} holds no nulls",
                    self.t
                ));
            }
            self.push_null();
            return Ok(());
        }
        let py = obj.py();
        macro_rules! int {
            ($v:expr, $t:ty) => {{
                if !obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyBool>() {
                    return Err(refuse(t, obj, ""));
                }
                let x: $t = obj.extract().map_err(|_| refuse(t, obj, "out of range"))?;
                $v.push(x);
            }};
        }
        match &mut self.values {
            Values::Null => return Err(refuse(t, obj, "only None")),
            Values::Bool(v) => match obj.cast::<PyBool>() {
                Ok(b) => v.push(b.is_true()),
                Err(_) => return Err(refuse(t, obj, "")),
            },
            Values::I8(v) => int!(v, i8),
            Values::I16(v) => int!(v, i16),
            Values::I32(v) => int!(v, i32),
            Values::I64(v) => int!(v, i64),
            Values::U8(v) => int!(v, u8),
            Values::U16(v) => int!(v, u16),
            Values::U32(v) => int!(v, u32),
            Values::U64(v) => int!(v, u64),
            Values::F32(_) | Values::F64(_) => {
                let f = if let Ok(f) = obj.cast::<PyFloat>() {
                    f.value()
                } else if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
                    // An int is exact in a float up to 2^53: beyond,
                    // refused rather than rounded.
                    let i: i64 = obj.extract().map_err(|_| refuse(t, obj, "out of range"))?;
                    if i.unsigned_abs() > 1 << 53 {
                        return Err(refuse(t, obj, "not exact as a float"));
                    }
                    i as f64
                } else {
                    return Err(refuse(t, obj, ""));
                };
                match &mut self.values {
                    Values::F32(v) => v.push(f as f32),
                    Values::F64(v) => v.push(f),
                    _ => unreachable!("matched above"),
                }
            }
            Values::Bytes {
                text,
                offsets,
                data,
            } => {
                if *text {
                    let s = obj
                        .cast::<PyString>()
                        .map_err(|_| refuse(t, obj, ""))?
                        .to_str()
                        .map_err(|e| format!("a str that is not valid UTF-8: {e}"))?;
                    data.extend_from_slice(s.as_bytes());
                } else if let Ok(b) = obj.cast::<PyBytes>() {
                    data.extend_from_slice(b.as_bytes());
                } else if let Ok(b) = obj.cast::<PyByteArray>() {
                    data.extend_from_slice(&b.to_vec());
                } else {
                    return Err(refuse(t, obj, ""));
                }
                offsets.push(data.len());
            }
            Values::Date32(_) | Values::Date64(_) => {
                let kit = kit_or(kit)?;
                if obj.is_instance(kit.datetime.bind(py)).map_err(py_err)?
                    || !obj.is_instance(kit.date.bind(py)).map_err(py_err)?
                {
                    return Err(refuse(t, obj, "a datetime.date is"));
                }
                let ordinal: i64 = obj
                    .call_method0("toordinal")
                    .and_then(|o| o.extract())
                    .map_err(py_err)?;
                let days = ordinal - EPOCH_ORDINAL;
                match &mut self.values {
                    Values::Date32(v) => v.push(days as i32),
                    Values::Date64(v) => v.push(days * 86_400_000),
                    _ => unreachable!("matched above"),
                }
            }
            Values::Time32(..) | Values::Time64(..) => {
                let kit = kit_or(kit)?;
                if !obj.is_instance(kit.time.bind(py)).map_err(py_err)? {
                    return Err(refuse(t, obj, "a datetime.time is"));
                }
                if !obj.getattr("tzinfo").map_err(py_err)?.is_none() {
                    return Err(refuse(t, obj, "a time with a time zone"));
                }
                let part = |name: &str| -> Result<i128, String> {
                    obj.getattr(name)
                        .and_then(|v| v.extract::<i64>())
                        .map(i128::from)
                        .map_err(py_err)
                };
                let us = ((part("hour")? * 60 + part("minute")?) * 60 + part("second")?)
                    * 1_000_000
                    + part("microsecond")?;
                match &mut self.values {
                    Values::Time32(u, v) => {
                        let t = from_micros(us, u)?;
                        v.push(t as i32);
                    }
                    Values::Time64(u, v) => v.push(from_micros(us, u)?),
                    _ => unreachable!("matched above"),
                }
            }
            Values::Timestamp { unit, aware, .. } => {
                let kit = kit_or(kit)?;
                if !obj.is_instance(kit.datetime.bind(py)).map_err(py_err)? {
                    return Err(refuse(t, obj, "a datetime.datetime is"));
                }
                let has_zone = !obj.call_method0("utcoffset").map_err(py_err)?.is_none();
                let (aware, unit) = (*aware, *unit);
                if has_zone != aware {
                    return Err(refuse(
                        t,
                        obj,
                        if aware {
                            "a naive datetime for a column with a time zone"
                        } else {
                            "a datetime with a time zone for a column without one"
                        },
                    ));
                }
                let epoch = if aware {
                    kit.epoch_utc.bind(py)
                } else {
                    kit.epoch_naive.bind(py)
                };
                let delta = obj.call_method1("__sub__", (epoch,)).map_err(py_err)?;
                let us = delta_micros(&delta)?;
                let t = from_micros(us, &unit).map_err(|e| refuse(t, obj, &e))?;
                if let Values::Timestamp { ticks, .. } = &mut self.values {
                    ticks.push(t);
                }
            }
            Values::Duration(unit, _) => {
                let kit = kit_or(kit)?;
                if !obj.is_instance(kit.timedelta.bind(py)).map_err(py_err)? {
                    return Err(refuse(t, obj, "a datetime.timedelta is"));
                }
                let unit = *unit;
                let t = from_micros(delta_micros(obj)?, &unit).map_err(|e| refuse(t, obj, &e))?;
                if let Values::Duration(_, v) = &mut self.values {
                    v.push(t);
                }
            }
            Values::Decimal128(p, s, _) | Values::Decimal256(p, s, _) => {
                let (p, s) = (*p, *s);
                let kit = kit_or(kit)?;
                let x = scaled(kit, obj, s).map_err(|e: String| refuse(t, obj, &e))?;
                if x.wrapping_abs() >= ten_pow(u32::from(p)) {
                    return Err(refuse(t, obj, &format!("more than {p} digits")));
                }
                match &mut self.values {
                    Values::Decimal128(_, _, v) => {
                        v.push(x.to_i128().ok_or_else(|| refuse(t, obj, "out of range"))?)
                    }
                    Values::Decimal256(_, _, v) => v.push(x),
                    _ => unreachable!("matched above"),
                }
            }
            Values::List {
                offsets,
                fixed,
                child,
            } => {
                if !(obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>()) {
                    return Err(refuse(t, obj, "a list is"));
                }
                let fixed = *fixed;
                let mut n = 0;
                for item in obj.try_iter().map_err(py_err)? {
                    let item = item.map_err(py_err)?;
                    child
                        .push_inner(kit, &item)
                        .map_err(|e| format!("item {n}: {e}"))?;
                    n += 1;
                }
                if let Some(size) = fixed.filter(|&s| s != n) {
                    return Err(format!(
                        "a list of {n} items where the declared type {t} holds {size}"
                    ));
                }
                offsets.push(child.len());
            }
            Values::Struct(children)
                if obj.is_instance_of::<PyTuple>() || obj.is_instance_of::<PyList>() =>
            {
                // Positional: one item per field, in order.
                let items: Vec<Bound<'_, PyAny>> = obj.extract().map_err(py_err)?;
                if items.len() != children.len() {
                    return Err(format!(
                        "{} values for a struct of {} fields",
                        items.len(),
                        children.len()
                    ));
                }
                for ((name, c), v) in children.iter_mut().zip(&items) {
                    c.push_inner(kit, v)
                        .map_err(|e| format!("field {name:?}: {e}"))?;
                }
            }
            Values::Struct(children) => {
                let d = obj.cast::<PyDict>().map_err(|_| {
                    "a struct's value must be a dict, or a tuple or list of its fields".to_string()
                })?;
                let mut found = 0;
                for (name, c) in children.iter_mut() {
                    match d.get_item(name.as_str()).map_err(py_err)? {
                        Some(v) => {
                            found += 1;
                            c.push_inner(kit, &v)
                                .map_err(|e| format!("field {name:?}: {e}"))?
                        }
                        None if c.nullable => c.push_null(),
                        None => return Err(format!("no field {name:?}, which holds no nulls")),
                    }
                }
                if found != d.len() {
                    let names: Vec<String> =
                        children.iter().map(|(n, _)| format!("{n:?}")).collect();
                    return Err(format!(
                        "a dict with keys other than the struct's fields ({})",
                        names.join(", ")
                    ));
                }
            }
            Values::Map {
                offsets,
                keys,
                values,
            } => {
                let d = obj
                    .cast::<PyDict>()
                    .map_err(|_| "a map's value must be a dict".to_string())?;
                for (k, v) in d.iter() {
                    keys.push_inner(kit, &k)
                        .map_err(|e| format!("a key: {e}"))?;
                    values
                        .push_inner(kit, &v)
                        .map_err(|e| format!("the value of a key: {e}"))?;
                }
                offsets.push(keys.len());
            }
        }
        self.valid.push(true);
        Ok(())
    }

    /// Appends every value of a numpy array whose dtype is this column's
    /// (a whole buffer copied at once); `false`, and nothing appended, for
    /// any other object.
    pub(crate) fn extend_from_buffer(&mut self, obj: &Bound<'_, PyAny>) -> bool {
        use pyo3::buffer::PyBuffer;
        fn copy<T: pyo3::buffer::Element + Copy>(
            obj: &Bound<'_, PyAny>,
            v: &mut Vec<T>,
        ) -> Option<usize> {
            let buf = PyBuffer::<T>::get(obj).ok()?;
            if buf.dimensions() != 1 || !buf.is_c_contiguous() {
                return None;
            }
            let got = buf.to_vec(obj.py()).ok()?;
            let n = got.len();
            // One copy out of Python: the vector itself when nothing was
            // pushed before (the common case: a whole batch's result).
            if v.is_empty() {
                *v = got;
            } else {
                v.extend_from_slice(&got);
            }
            Some(n)
        }
        let n = match &mut self.values {
            Values::I8(v) => copy(obj, v),
            Values::I16(v) => copy(obj, v),
            Values::I32(v) => copy(obj, v),
            Values::I64(v) => copy(obj, v),
            Values::U8(v) => copy(obj, v),
            Values::U16(v) => copy(obj, v),
            Values::U32(v) => copy(obj, v),
            Values::U64(v) => copy(obj, v),
            Values::F32(v) => copy(obj, v),
            Values::F64(v) => copy(obj, v),
            _ => None,
        };
        match n {
            Some(n) => {
                self.valid.resize(self.valid.len() + n, true);
                true
            }
            None => false,
        }
    }

    /// Takes `a` as the whole column, if nothing was pushed yet and it is
    /// of the declared type; `false` (and nothing taken) otherwise.
    /// Names of nested fields do not count (pyarrow names a map's fields
    /// `key` and `value`, arrow-rs `keys` and `values`): the array takes
    /// the declared type's.
    pub(crate) fn take_whole(&mut self, a: ArrayRef) -> bool {
        if self.len() != 0 || self.whole.is_some() || !a.data_type().equals_datatype(&self.t) {
            return false;
        }
        let a = if a.data_type() == &self.t {
            a
        } else {
            match retyped(a.to_data(), &self.t) {
                Ok(data) => make_array(data),
                Err(_) => return false,
            }
        };
        self.valid.resize(a.len(), true);
        self.whole = Some(a);
        true
    }

    /// The array, validated.
    ///
    /// # Errors
    ///
    /// A value too large for the declared type's offsets, or an array
    /// that does not validate.
    pub(crate) fn finish(mut self) -> Result<ArrayRef, String> {
        if let Some(a) = self.whole.take() {
            return Ok(a);
        }
        Ok(make_array(self.into_data()?))
    }

    fn into_data(self) -> Result<arrow_data::ArrayData, String> {
        let len = self.valid.len();
        // A null array's values are all null without a bitmap.
        let nulls = if self.valid.iter().all(|&v| v) || self.t == DataType::Null {
            None
        } else {
            Some(NullBuffer::from(self.valid))
        };
        let mut buffers = Vec::new();
        let mut children = Vec::new();
        let offsets = |o: Vec<usize>, large: bool| -> Result<Buffer, String> {
            if large {
                Ok(Buffer::from_vec(
                    o.into_iter().map(|x| x as i64).collect::<Vec<_>>(),
                ))
            } else {
                let o = o
                    .into_iter()
                    .map(i32::try_from)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        "the results hold more than 2 GiB of values: declare a large_ type"
                            .to_string()
                    })?;
                Ok(Buffer::from_vec(o))
            }
        };
        let large = matches!(
            self.t,
            DataType::LargeUtf8 | DataType::LargeBinary | DataType::LargeList(_)
        );
        match self.values {
            Values::Null => {}
            Values::Bool(v) => buffers.push(arrow_buffer::BooleanBuffer::from(v).into_inner()),
            Values::I8(v) => buffers.push(Buffer::from_vec(v)),
            Values::I16(v) => buffers.push(Buffer::from_vec(v)),
            Values::I32(v) | Values::Date32(v) | Values::Time32(_, v) => {
                buffers.push(Buffer::from_vec(v))
            }
            Values::I64(v)
            | Values::Date64(v)
            | Values::Time64(_, v)
            | Values::Duration(_, v)
            | Values::Timestamp { ticks: v, .. } => buffers.push(Buffer::from_vec(v)),
            Values::U8(v) => buffers.push(Buffer::from_vec(v)),
            Values::U16(v) => buffers.push(Buffer::from_vec(v)),
            Values::U32(v) => buffers.push(Buffer::from_vec(v)),
            Values::U64(v) => buffers.push(Buffer::from_vec(v)),
            Values::F32(v) => buffers.push(Buffer::from_vec(v)),
            Values::F64(v) => buffers.push(Buffer::from_vec(v)),
            Values::Bytes {
                offsets: o, data, ..
            } => {
                buffers.push(offsets(o, large)?);
                buffers.push(Buffer::from_vec(data));
            }
            Values::Decimal128(_, _, v) => buffers.push(Buffer::from_vec(v)),
            Values::Decimal256(_, _, v) => buffers.push(Buffer::from_vec(v)),
            Values::List {
                offsets: o,
                fixed,
                child,
            } => {
                if fixed.is_none() {
                    buffers.push(offsets(o, large)?);
                }
                children.push(child.into_data()?);
            }
            Values::Struct(fields) => {
                for (_, c) in fields {
                    children.push(c.into_data()?);
                }
            }
            Values::Map {
                offsets: o,
                keys,
                values,
            } => {
                buffers.push(offsets(o, false)?);
                let DataType::Map(entries, _) = &self.t else {
                    unreachable!("a map's values are a map's")
                };
                let entries = ArrayDataBuilder::new(entries.data_type().clone())
                    .len(keys.len())
                    .child_data(vec![keys.into_data()?, values.into_data()?])
                    .build()
                    .map_err(|e| e.to_string())?;
                children.push(entries);
            }
        }
        ArrayDataBuilder::new(self.t)
            .len(len)
            .nulls(nulls)
            .buffers(buffers)
            .child_data(children)
            .build()
            .map_err(|e| e.to_string())
    }
}

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

/// `data` as `t`, a type equal to its own but for nested fields' names
/// (and metadata): the same buffers, children retyped to `t`'s fields.
fn retyped(
    data: arrow_data::ArrayData,
    t: &DataType,
) -> Result<arrow_data::ArrayData, arrow_schema::ArrowError> {
    let fields = child_types(t);
    let children = data
        .child_data()
        .iter()
        .zip(fields.iter().chain(std::iter::repeat(&DataType::Null)))
        .map(|(c, ft)| {
            if fields.is_empty() {
                Ok(c.clone())
            } else {
                retyped(c.clone(), ft)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    data.into_builder()
        .data_type(t.clone())
        .child_data(children)
        .build()
}

/// A timedelta's (or a difference of datetimes') whole microseconds.
fn delta_micros(delta: &Bound<'_, PyAny>) -> Result<i128, String> {
    let part = |name: &str| -> Result<i128, String> {
        delta
            .getattr(name)
            .and_then(|v| v.extract::<i64>())
            .map(i128::from)
            .map_err(py_err)
    };
    Ok(part("days")? * MICROS_PER_DAY + part("seconds")? * 1_000_000 + part("microseconds")?)
}

/// 10^n (n ≤ 76).
fn ten_pow(n: u32) -> i256 {
    i256::from_i128(10).wrapping_pow(n)
}

/// `obj` (a `decimal.Decimal` or an `int`) as an integer count of
/// 10^-scale, exactly, or why not.
fn scaled(kit: &PyKit, obj: &Bound<'_, PyAny>, scale: i8) -> Result<i256, String> {
    let py = obj.py();
    let overflow = || "out of range".to_string();
    let (negative, digits, exponent): (bool, Vec<u8>, i64) =
        if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
            let text = obj.str().map_err(py_err)?.to_string();
            let (negative, digits) = match text.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, text.as_str()),
            };
            (negative, digits.bytes().map(|b| b - b'0').collect(), 0)
        } else if obj.is_instance(kit.decimal.bind(py)).map_err(py_err)? {
            let t = obj.call_method0("as_tuple").map_err(py_err)?;
            let sign: i64 = t.get_item(0).and_then(|v| v.extract()).map_err(py_err)?;
            let digits: Vec<u8> = t.get_item(1).and_then(|v| v.extract()).map_err(py_err)?;
            let exponent = t
                .get_item(2)
                .and_then(|v| v.extract::<i64>())
                .map_err(|_| "not a finite number".to_string())?;
            (sign == 1, digits, exponent)
        } else {
            return Err(String::new());
        };
    // value = digits × 10^exponent; wanted: value × 10^scale, an integer.
    let shift = exponent + i64::from(scale);
    let (keep, drop) = if shift >= 0 {
        (digits.len(), 0)
    } else {
        let drop = usize::try_from(-shift).unwrap_or(usize::MAX);
        (digits.len().saturating_sub(drop), drop.min(digits.len()))
    };
    if digits[keep..keep + drop].iter().any(|&d| d != 0) {
        return Err(format!("more decimal places than the scale {scale}"));
    }
    let mut x = i256::ZERO;
    let ten = i256::from_i128(10);
    for &d in &digits[..keep] {
        x = x
            .checked_mul(ten)
            .and_then(|x| x.checked_add(i256::from_i128(i128::from(d))))
            .ok_or_else(overflow)?;
    }
    if shift > 0 {
        let shift = u32::try_from(shift).map_err(|_| overflow())?;
        if shift > 76 {
            if x != i256::ZERO {
                return Err(overflow());
            }
        } else {
            x = x.checked_mul(ten_pow(shift)).ok_or_else(overflow)?;
        }
    }
    Ok(if negative { x.wrapping_neg() } else { x })
}

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

/// The type an executor builds results of the declared type `t` as: a
/// view type as its plain type (views do not travel in column frames; the
/// host makes them views again).
pub fn result_wire_type(t: &DataType) -> DataType {
    plain_type(t, false)
}

/// `t` with every view type (at any depth) as its plain type, and, if
/// `dictionaries`, every dictionary as its values' type.
pub fn plain_type(t: &DataType, dictionaries: bool) -> DataType {
    use arrow_schema::{Field, FieldRef, Fields};
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

/// Whether the executor takes Arrow columns of type `t` (and builds
/// results of it): the types the executor converts to Python objects and back (docs/python.md).
pub fn arrow_type_supported(t: &DataType) -> bool {
    ResultColumn::new(t).is_ok()
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn nanoseconds_and_units_convert_exactly_or_not_at_all() {
        assert_eq!(to_micros(3_000, &TimeUnit::Nanosecond), Ok(3));
        assert!(to_micros(3_001, &TimeUnit::Nanosecond).is_err());
        assert_eq!(to_micros(-2, &TimeUnit::Second), Ok(-2_000_000));
        assert_eq!(from_micros(5_000, &TimeUnit::Millisecond), Ok(5));
        assert!(from_micros(5_001, &TimeUnit::Millisecond).is_err());
        assert!(from_micros(i128::from(i64::MAX), &TimeUnit::Nanosecond).is_err());
    }
}
