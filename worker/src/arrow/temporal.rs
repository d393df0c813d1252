//! Time in Arrow and in Python: units, dates, times, timestamps and
//! durations, converted exactly or refused (Python's `datetime` types hold
//! microseconds; a nanosecond value that is not a whole number of them is
//! an error, never rounded).

use arrow_schema::{DataType, TimeUnit};
use pyo3::prelude::*;

use super::{py_err, refuse, PyKit};

/// Days from 0001-01-01 (ordinal 1) to 1970-01-01.
const EPOCH_ORDINAL: i64 = 719_163;
/// The largest ordinal `datetime.date` holds (9999-12-31).
const MAX_ORDINAL: i64 = 3_652_059;
const MICROS_PER_DAY: i128 = 86_400_000_000;

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

/// The plural name of `u`, for messages.
fn unit_name(u: &TimeUnit) -> &'static str {
    match u {
        TimeUnit::Second => "seconds",
        TimeUnit::Millisecond => "milliseconds",
        TimeUnit::Microsecond => "microseconds",
        TimeUnit::Nanosecond => "nanoseconds",
    }
}

/// The date `days` after 1970-01-01 through `fromordinal`
/// (`datetime.date.fromordinal`), or why Python has none.
pub(super) fn date<'py>(
    fromordinal: &Bound<'py, PyAny>,
    days: i64,
) -> Result<Bound<'py, PyAny>, String> {
    let ordinal = days.saturating_add(EPOCH_ORDINAL);
    if !(1..=MAX_ORDINAL).contains(&ordinal) {
        return Err(format!(
            "{days} days from 1970-01-01 is outside datetime.date's range"
        ));
    }
    fromordinal.call1((ordinal,)).map_err(py_err)
}

/// The time of day `ticks` `unit`s after midnight as a
/// `datetime.time`, or why Python has none.
pub(super) fn make_time<'py>(
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

/// A timestamp of `ticks` `unit`s since the epoch as a `datetime.datetime`
/// (through this interpreter's `datetime` type): naive, or at `utc` and
/// then in `zone` for a column with a time zone.
pub(super) fn timestamp_of<'py>(
    ticks: i64,
    unit: &TimeUnit,
    datetime: &Bound<'py, PyAny>,
    utc: &Bound<'py, PyAny>,
    zone: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>, String> {
    use chrono::Datelike;
    let us = to_micros(ticks, unit)?;
    let (days, rest) = (us.div_euclid(MICROS_PER_DAY), us.rem_euclid(MICROS_PER_DAY));
    let ordinal = days + i128::from(EPOCH_ORDINAL);
    let date =
        chrono::NaiveDate::from_num_days_from_ce_opt(i32::try_from(ordinal).unwrap_or(i32::MAX))
            .filter(|_| (1..=i128::from(MAX_ORDINAL)).contains(&ordinal))
            .ok_or_else(|| {
                format!(
                    "timestamp {ticks} {} is outside datetime.datetime's range",
                    unit_name(unit)
                )
            })?;
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
        None => datetime.call1(args).map_err(py_err),
        Some(zone) => {
            let at = datetime
                .call1((args.0, args.1, args.2, args.3, args.4, args.5, args.6, utc))
                .map_err(py_err)?;
            at.call_method1("astimezone", (zone,)).map_err(py_err)
        }
    }
}

/// A duration of `ticks` `unit`s as a `datetime.timedelta`.
pub(super) fn timedelta_of<'py>(
    ticks: i64,
    unit: &TimeUnit,
    timedelta: &Bound<'py, PyAny>,
) -> Result<Bound<'py, PyAny>, String> {
    let us = to_micros(ticks, unit)?;
    let (days, rest) = (us.div_euclid(MICROS_PER_DAY), us.rem_euclid(MICROS_PER_DAY));
    timedelta
        .call1((
            days as i64,
            (rest / 1_000_000) as i64,
            (rest % 1_000_000) as i64,
        ))
        .map_err(py_err)
}

/// `obj`, a `datetime.date` for a column of declared type `t`, as days
/// since 1970-01-01. A `datetime.datetime` is refused: it is a date too in
/// Python, but its time of day would be lost.
pub(super) fn date_days(kit: &PyKit, t: &DataType, obj: &Bound<'_, PyAny>) -> Result<i64, String> {
    let py = obj.py();
    if obj.is_instance(kit.datetime.bind(py)).map_err(py_err)? {
        return Err(refuse(
            t,
            obj,
            "a datetime.datetime is refused where a datetime.date is declared, as its time of day would be lost (call .date() on it)",
        ));
    }
    if !obj.is_instance(kit.date.bind(py)).map_err(py_err)? {
        return Err(refuse(t, obj, "a datetime.date is expected"));
    }
    let ordinal: i64 = obj
        .call_method0("toordinal")
        .and_then(|o| o.extract())
        .map_err(py_err)?;
    Ok(ordinal - EPOCH_ORDINAL)
}

/// `obj`, a naive `datetime.time` for a column of declared type `t`, as
/// ticks of `unit` since midnight, exactly.
pub(super) fn time_ticks(
    kit: &PyKit,
    t: &DataType,
    obj: &Bound<'_, PyAny>,
    unit: &TimeUnit,
) -> Result<i64, String> {
    let py = obj.py();
    if !obj.is_instance(kit.time.bind(py)).map_err(py_err)? {
        return Err(refuse(t, obj, "a datetime.time is expected"));
    }
    if !obj.getattr("tzinfo").map_err(py_err)?.is_none() {
        return Err(refuse(
            t,
            obj,
            "a time with a time zone is refused, as the type holds times of day without one",
        ));
    }
    let part = |name: &str| -> Result<i128, String> {
        obj.getattr(name)
            .and_then(|v| v.extract::<i64>())
            .map(i128::from)
            .map_err(py_err)
    };
    let us = ((part("hour")? * 60 + part("minute")?) * 60 + part("second")?) * 1_000_000
        + part("microsecond")?;
    from_micros(us, unit)
}

/// `obj`, a `datetime.datetime` for a column of declared type `t`, as
/// ticks of `unit` since the epoch, exactly: naive for a column without a
/// time zone, aware for one with (`aware`).
pub(super) fn timestamp_ticks(
    kit: &PyKit,
    t: &DataType,
    obj: &Bound<'_, PyAny>,
    unit: &TimeUnit,
    aware: bool,
) -> Result<i64, String> {
    let py = obj.py();
    if !obj.is_instance(kit.datetime.bind(py)).map_err(py_err)? {
        return Err(refuse(t, obj, "a datetime.datetime is expected"));
    }
    let has_zone = !obj.call_method0("utcoffset").map_err(py_err)?.is_none();
    if has_zone != aware {
        return Err(refuse(
            t,
            obj,
            if aware {
                "a naive datetime is refused for a column with a time zone"
            } else {
                "a datetime with a time zone is refused for a column without one"
            },
        ));
    }
    let epoch = if aware {
        kit.epoch_utc.bind(py)
    } else {
        kit.epoch_naive.bind(py)
    };
    let delta = obj.call_method1("__sub__", (epoch,)).map_err(py_err)?;
    from_micros(delta_micros(&delta)?, unit).map_err(|e| refuse(t, obj, &e))
}

/// `obj`, a `datetime.timedelta` for a column of declared type `t`, as
/// ticks of `unit`, exactly.
pub(super) fn duration_ticks(
    kit: &PyKit,
    t: &DataType,
    obj: &Bound<'_, PyAny>,
    unit: &TimeUnit,
) -> Result<i64, String> {
    if !obj
        .is_instance(kit.timedelta.bind(obj.py()))
        .map_err(py_err)?
    {
        return Err(refuse(t, obj, "a datetime.timedelta is expected"));
    }
    from_micros(delta_micros(obj)?, unit).map_err(|e| refuse(t, obj, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

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
