//! JSON Lines ⇄ rows, for the `coil` CLI.
//!
//! A JSON `null`, `true`/`false`, integer (within i64), other number, string
//! or array maps to the row model's null, bool, int, float, str or list.
//! JSON has no bytes: a bytes result is written as `{"$bytes": "<hex>"}`,
//! and NaN or infinite floats (which JSON cannot hold) as `null`.

use coil_ipc::Value;
use serde_json::Value as Json;

/// Converts a JSON value to a row-model value.
///
/// # Errors
///
/// A message for objects and integers beyond i64.
pub fn to_value(j: &Json) -> Result<Value, String> {
    Ok(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => {
                return Err(format!(
                    "integer {u} does not fit in a 64-bit signed integer"
                ))
            }
            (None, None) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(items) => Value::List(items.iter().map(to_value).collect::<Result<_, _>>()?),
        Json::Object(_) => return Err("JSON objects are not supported as UDF arguments".into()),
    })
}

/// Parses one input line: a JSON array of the UDF's arguments.
///
/// # Errors
///
/// A message saying what is wrong with the line.
pub fn parse_args(line: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Json>(line) {
        Ok(Json::Array(items)) => items.iter().map(to_value).collect(),
        Ok(other) => Err(format!(
            "expected a JSON array of the UDF's arguments, got {}",
            match other {
                Json::Object(_) => "an object",
                Json::String(_) => "a string",
                Json::Number(_) => "a number",
                Json::Bool(_) => "a boolean",
                _ => "null",
            }
        )),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// Converts a result to JSON.
pub fn to_json(v: &Value) -> Json {
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
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_rows_and_results_become_json() {
        let row = parse_args(r#"[1, 2.5, "é", null, true, [1, [2]]]"#).unwrap();
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
        let back: Vec<Json> = row.iter().map(to_json).collect();
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            r#"[1,2.5,"é",null,true,[1,[2]]]"#
        );
        assert_eq!(
            to_json(&Value::Bytes(vec![0, 255])).to_string(),
            r#"{"$bytes":"00ff"}"#
        );
        assert_eq!(to_json(&Value::Float(f64::NAN)), Json::Null);
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(parse_args("[1,").unwrap_err().contains("invalid JSON"));
        assert!(parse_args("{\"a\": 1}").unwrap_err().contains("an object"));
        assert!(parse_args("[{\"a\": 1}]").unwrap_err().contains("objects"));
        assert!(parse_args("[18446744073709551615]")
            .unwrap_err()
            .contains("64-bit"));
    }
}
