//! coil's values as JSON, and JSON as coil's values: the mapping of
//! `coil run`'s JSON Lines.
//!
//! A JSON `null`, `true`/`false`, integer (within i64), other number, string
//! or array maps to the row model's null, bool, int, float, str or list.
//! JSON has no bytes: a bytes result is written as `{"$bytes": "<hex>"}`,
//! and NaN or infinite floats (which JSON cannot hold) as `null`.

use coil_ipc::Value;
use serde_json::Value as Json;

/// Why a JSON value or input line is not coil's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueJsonError {
    /// The line is not JSON.
    #[error("invalid JSON: {0}")]
    Invalid(String),
    /// The line is JSON, but not an array of arguments.
    #[error("expected a JSON array of the UDF's arguments, got {0}")]
    NotAnArray(&'static str),
    /// A JSON object, which coil's values do not hold.
    #[error("JSON objects are not supported as UDF arguments")]
    Object,
    /// An integer literal beyond i64, as written.
    #[error("integer {0} does not fit in a 64-bit signed integer")]
    TooBig(String),
    /// Lists nested deeper than [`coil_ipc::MAX_DEPTH`].
    #[error(
        "lists nest deeper than {}, the most coil's values hold",
        coil_ipc::MAX_DEPTH
    )]
    TooDeep,
}

/// Converts a JSON value to a row-model value.
///
/// # Errors
///
/// [`ValueJsonError`] for objects, integers beyond i64 and lists nested
/// deeper than coil's values hold ([`coil_ipc::MAX_DEPTH`]).
///
/// # Examples
///
/// ```
/// use coil_host::ipc::Value;
/// let v = coil_host::value_from_json(&serde_json::json!([1, "a", null]))?;
/// assert_eq!(v, Value::List(vec![Value::Int(1), Value::Str("a".into()), Value::Null]));
/// # Ok::<(), coil_host::ValueJsonError>(())
/// ```
pub fn value_from_json(j: &Json) -> Result<Value, ValueJsonError> {
    to_value_at(j, 0)
}

fn to_value_at(j: &Json, depth: usize) -> Result<Value, ValueJsonError> {
    Ok(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => return Err(ValueJsonError::TooBig(u.to_string())),
            (None, None) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(_) if depth >= coil_ipc::MAX_DEPTH => return Err(ValueJsonError::TooDeep),
        Json::Array(items) => Value::List(
            items
                .iter()
                .map(|i| to_value_at(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(_) => return Err(ValueJsonError::Object),
    })
}

/// Parses one input line of `coil run`: a JSON array of the UDF's
/// arguments. An integer literal beyond i64 is refused, never rounded to a
/// nearby float.
///
/// # Errors
///
/// [`ValueJsonError`]: what is wrong with the line.
///
/// # Examples
///
/// ```
/// use coil_host::ipc::Value;
/// let row = coil_host::args_from_json(r#"[41, "é", null]"#)?;
/// assert_eq!(row, vec![Value::Int(41), Value::Str("é".into()), Value::Null]);
/// # Ok::<(), coil_host::ValueJsonError>(())
/// ```
pub fn args_from_json(line: &str) -> Result<Vec<Value>, ValueJsonError> {
    match serde_json::from_str::<Json>(line) {
        Ok(Json::Array(items)) => {
            let row = items
                .iter()
                .map(value_from_json)
                .collect::<Result<Vec<_>, _>>()?;
            // serde_json reads an integer beyond 64 bits as the nearest
            // float: look at the text where a float could be one of those.
            if row.iter().any(maybe_a_big_integer) {
                refuse_big_integers(line)?;
            }
            Ok(row)
        }
        Ok(other) => Err(ValueJsonError::NotAnArray(match other {
            Json::Object(_) => "an object",
            Json::String(_) => "a string",
            Json::Number(_) => "a number",
            Json::Bool(_) => "a boolean",
            _ => "null",
        })),
        Err(e) => Err(ValueJsonError::Invalid(e.to_string())),
    }
}

/// 2^63: every integer literal below it in magnitude parses as an integer.
const BIG: f64 = 9_223_372_036_854_775_808.0;

/// Whether `v` holds a float that an integer literal beyond 64 bits could
/// have been parsed into.
fn maybe_a_big_integer(v: &Value) -> bool {
    match v {
        Value::Float(f) => f.fract() == 0.0 && f.abs() >= BIG,
        Value::List(items) => items.iter().any(maybe_a_big_integer),
        _ => false,
    }
}

/// Refuses the first integer literal in `json` (a valid JSON array) that
/// does not fit in an i64: coil would otherwise see a different number.
fn refuse_big_integers(json: &str) -> Result<(), ValueJsonError> {
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(json).map_err(|e| ValueJsonError::Invalid(e.to_string()))?;
    for item in items {
        let text = item.get().trim();
        if text.starts_with('[') {
            refuse_big_integers(text)?;
        } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit())
            && !text.contains(['.', 'e', 'E'])
            && text.parse::<i64>().is_err()
        {
            return Err(ValueJsonError::TooBig(text.into()));
        }
    }
    Ok(())
}

/// Converts a value to JSON: null, bool, int, float, str and list as
/// themselves, bytes as `{"$bytes": "<hex>"}`, and NaN or infinite floats
/// (which JSON cannot hold) as `null`.
///
/// # Examples
///
/// ```
/// use coil_host::ipc::Value;
/// let json = coil_host::value_to_json(&Value::Bytes(vec![0, 255]));
/// assert_eq!(json.to_string(), r#"{"$bytes":"00ff"}"#);
/// ```
pub fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Str(s) => Json::String(s.clone()),
        Value::Bytes(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            serde_json::json!({ "$bytes": hex })
        }
        Value::List(items) => Json::Array(items.iter().map(value_to_json).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_rows_and_results_become_json() {
        let row = args_from_json(r#"[1, 2.5, "é", null, true, [1, [2]]]"#).unwrap();
        assert_eq!(
            row,
            vec![
                Value::Int(1),
                Value::Float(2.5),
                Value::Str("é".into()),
                Value::Null,
                Value::Bool(true),
                Value::List(vec![Value::Int(1), Value::List(vec![Value::Int(2)])]),
            ]
        );
        let back: Vec<Json> = row.iter().map(value_to_json).collect();
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            r#"[1,2.5,"é",null,true,[1,[2]]]"#
        );
        assert_eq!(
            value_to_json(&Value::Bytes(vec![0, 255])).to_string(),
            r#"{"$bytes":"00ff"}"#
        );
        assert_eq!(value_to_json(&Value::Float(f64::NAN)), Json::Null);
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(args_from_json("[1,")
            .unwrap_err()
            .to_string()
            .contains("invalid JSON"));
        assert!(args_from_json("{\"a\": 1}")
            .unwrap_err()
            .to_string()
            .contains("an object"));
        assert!(args_from_json("[{\"a\": 1}]")
            .unwrap_err()
            .to_string()
            .contains("objects"));
        assert!(args_from_json("[18446744073709551615]")
            .unwrap_err()
            .to_string()
            .contains("64-bit"));
    }

    /// Issue 12, part 4: a number reaches the UDF exactly as written, or
    /// the line is refused; never a nearby float.
    #[test]
    fn integers_beyond_64_bits_are_refused_not_rounded() {
        for line in [
            "[100000000000000000000]",
            "[-9223372036854775809]",
            "[1, [2, 18446744073709551616]]",
            "[9223372036854775808]",
        ] {
            let e = args_from_json(line).unwrap_err().to_string();
            assert!(
                e.contains("does not fit in a 64-bit signed integer"),
                "{line}: {e}"
            );
        }
        assert_eq!(
            args_from_json("[9223372036854775807]"),
            Ok(vec![Value::Int(i64::MAX)])
        );
        assert_eq!(
            args_from_json("[-9223372036854775808]"),
            Ok(vec![Value::Int(i64::MIN)])
        );
        // Written as floats, they stay floats.
        assert_eq!(
            args_from_json("[1e20, -1.0E19]"),
            Ok(vec![Value::Float(1e20), Value::Float(-1e19)])
        );
    }

    #[test]
    fn lists_deeper_than_coil_values_hold_are_refused_with_the_limit() {
        let nest = |k: usize| format!("[{}{}]", "[".repeat(k), "]".repeat(k));
        assert!(args_from_json(&nest(coil_ipc::MAX_DEPTH)).is_ok());
        let e = args_from_json(&nest(coil_ipc::MAX_DEPTH + 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lists nest deeper than 64"), "{e}");
    }
}
