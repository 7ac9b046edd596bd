//! A job's `params`: how `--param key=value` is read (DESIGN.md's rule: a
//! value is JSON only when it reads back unchanged, else the exact string),
//! and the limits of what DynamoDB can store.

use serde_json::{Map, Value};

/// The smallest magnitude DynamoDB stores other than zero (`1E-130`).
pub const DYNAMODB_MIN_MAGNITUDE: f64 = 1e-130;
/// Every magnitude DynamoDB stores is below this (its largest is
/// `9.9999999999999999999999999999999999999E+125`).
pub const DYNAMODB_MAGNITUDE_BOUND: f64 = 1e126;

/// The value of one `--param`: JSON when it reads back unchanged after it
/// is stored (`n=3`, `ok=true`, `r=1.5`, `s="quoted"`, `{"a": [1, 2]}`),
/// otherwise the exact text as a string (`id=0012`, `v=1.10`, `c=1e5`,
/// `h= 5`, `big=9007199254740993`: a double cannot hold it).
pub fn param_value(raw: &str) -> Value {
    let Ok(parsed) = serde_json::from_str::<Value>(raw) else {
        return Value::String(raw.to_owned());
    };
    if raw.trim() != raw {
        return Value::String(raw.to_owned());
    }
    let mut stored = parsed.clone();
    as_stored(&mut stored);
    let unchanged = match &parsed {
        // A scalar must read back as the very text typed.
        Value::Number(_) | Value::Bool(_) | Value::Null | Value::String(_) => {
            serde_json::to_string(&stored).is_ok_and(|back| back == raw)
        }
        // A document reads back as the same value (spacing aside).
        Value::Array(_) | Value::Object(_) => stored == parsed,
    };
    if unchanged {
        parsed
    } else {
        Value::String(raw.to_owned())
    }
}

/// `key=value` pairs as a params object, each value by [`param_value`].
///
/// # Errors
/// A sentence naming the pair: no `=`, an empty key, or a key given twice.
pub fn parse_pairs(pairs: &[String]) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "--param {pair:?} has no '=': write it as key=value"
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!(
                "--param {pair:?} has no name before '=': write it as key=value"
            ));
        }
        if map.insert(key.to_owned(), param_value(value)).is_some() {
            return Err(format!(
                "--param {key} is given twice: give each parameter once"
            ));
        }
    }
    Ok(map)
}

/// How a value reads back after it is stored: numbers are doubles (a
/// protobuf `Struct`), and whole ones are written as integers.
fn as_stored(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(d) = n.as_f64().and_then(serde_json::Number::from_f64) {
                *n = d;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(as_stored),
        Value::Object(map) => map.values_mut().for_each(as_stored),
        _ => {}
    }
    crate::job::normalize_numbers(value);
}

/// The first number in `value` that DynamoDB cannot store (a magnitude
/// below 1E-130 or above 9.99E+125), as `path = number`; `root` names the
/// value (`params.threshold`).
pub fn dynamodb_number_problem(value: &Value, root: &str) -> Option<String> {
    match value {
        Value::Number(n) => {
            let f = n.as_f64()?;
            let m = f.abs();
            (m != 0.0 && !(DYNAMODB_MIN_MAGNITUDE..DYNAMODB_MAGNITUDE_BOUND).contains(&m))
                .then(|| format!("{root} = {n}"))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| dynamodb_number_problem(v, &format!("{root}[{i}]"))),
        Value::Object(map) => map
            .iter()
            .find_map(|(k, v)| dynamodb_number_problem(v, &format!("{root}.{k}"))),
        _ => None,
    }
}

/// `params` as stored on a job or action: a protobuf `Struct` (`None` when
/// empty). Its numbers are doubles, so integers too large for a double to
/// hold exactly become the nearest double rather than being refused.
///
/// # Errors
/// A sentence when the params cannot be stored.
pub fn params_struct(
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<plus_proto::pbjson_types::Struct>, String> {
    use serde_json::Value;
    fn as_doubles(value: &mut Value) {
        const EXACT: u64 = 1 << 53;
        match value {
            Value::Number(n)
                if n.as_u64().is_some_and(|u| u > EXACT)
                    || n.as_i64().is_some_and(|i| i.unsigned_abs() > EXACT) =>
            {
                if let Some(d) = n.as_f64().and_then(serde_json::Number::from_f64) {
                    *n = d;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(as_doubles),
            Value::Object(map) => map.values_mut().for_each(as_doubles),
            _ => {}
        }
    }
    if params.is_empty() {
        return Ok(None);
    }
    let mut value = Value::Object(params.clone());
    if let Some(bad) = dynamodb_number_problem(&value, "params") {
        return Err(format!(
            "{bad} cannot be stored: DynamoDB keeps numbers from 1E-130 to 9.99E+125 (and 0); pass it as a string (quote it: '\"...\"') or scale it"
        ));
    }
    as_doubles(&mut value);
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| format!("the params cannot be stored: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_json_only_when_they_read_back_unchanged() {
        for (raw, want) in [
            ("3", json!(3)),
            ("-7", json!(-7)),
            ("1.5", json!(1.5)),
            ("true", json!(true)),
            ("null", json!(null)),
            ("\"quoted\"", json!("quoted")),
            (r#"{"a": [1, 2.5]}"#, json!({"a": [1, 2.5]})),
            ("9007199254740993", json!("9007199254740993")),
            ("12345678901234567890", json!("12345678901234567890")),
            ("1.10", json!("1.10")),
            (" 5", json!(" 5")),
            ("1e5", json!("1e5")),
            ("0012", json!("0012")),
            ("-0", json!("-0")),
            ("", json!("")),
            ("hello world", json!("hello world")),
            (
                r#"{"big": 9007199254740993}"#,
                json!(r#"{"big": 9007199254740993}"#),
            ),
        ] {
            assert_eq!(param_value(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn empty_and_repeated_keys_are_refused() {
        let pairs = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(parse_pairs(&pairs(&["=v"]))
            .unwrap_err()
            .contains("no name"));
        assert!(parse_pairs(&pairs(&["a=1", "a=2"]))
            .unwrap_err()
            .contains("twice"));
        assert!(parse_pairs(&pairs(&["oops"]))
            .unwrap_err()
            .contains("no '='"));
        let map = parse_pairs(&pairs(&["a=1", "b=x=y"])).unwrap();
        assert_eq!(map["b"], "x=y");
    }

    #[test]
    fn numbers_dynamodb_cannot_store_are_named_with_their_path() {
        let v = json!({"ok": 1e-100, "deep": {"p_value": [0, 1e-300]}});
        assert_eq!(
            dynamodb_number_problem(&v, "result").as_deref(),
            Some("result.deep.p_value[1] = 1e-300")
        );
        assert_eq!(
            dynamodb_number_problem(&json!({"a": 1e200}), "p").as_deref(),
            Some("p.a = 1e+200")
        );
        assert_eq!(
            dynamodb_number_problem(&json!({"a": 0.0, "b": 9e125}), "p"),
            None
        );
    }
}
