//! The documented rules a service model cannot express, checked per
//! request: expression placeholders all defined and all used, batch sizes
//! and duplicate keys, no strongly consistent read of a global secondary
//! index, DynamoDB's number range and item size; RunTask's launch type
//! versus capacity providers, client token, tags and override size.

use std::collections::HashSet;

use serde_json::Value;

/// DynamoDB's documented limits.
const MAX_ITEM_BYTES: usize = 400 * 1024;
const MAX_BATCH_WRITE: usize = 25;
const MAX_BATCH_GET: usize = 100;
const MAX_TRANSACT: usize = 100;
/// RunTask: "A total of 8192 characters are allowed for overrides."
const MAX_OVERRIDES_CHARS: usize = 8192;

/// The rules of DynamoDB `operation` that `body` breaks.
pub fn dynamodb(operation: &str, body: &Value, problems: &mut Vec<String>) {
    placeholders(body, problems);
    if body["IndexName"].is_string() && body["ConsistentRead"] == Value::Bool(true) {
        problems.push(
            "ConsistentRead is not supported on a global secondary index (the tables here have only global ones)".into(),
        );
    }
    for (path, item) in items(operation, body) {
        let size = item_size(item);
        if size > MAX_ITEM_BYTES {
            problems.push(format!(
                "{path}: the item is {size} bytes, over DynamoDB's 400 KB"
            ));
        }
    }
    numbers(body, "", problems);
    match operation {
        "BatchWriteItem" => {
            let mut total = 0;
            for (table, requests) in body["RequestItems"].as_object().into_iter().flatten() {
                let requests = requests.as_array().map(Vec::as_slice).unwrap_or_default();
                total += requests.len();
                let keys = requests.iter().map(|r| {
                    let put = &r["PutRequest"]["Item"];
                    if put.is_object() {
                        key_of(put)
                    } else {
                        key_of(&r["DeleteRequest"]["Key"])
                    }
                });
                duplicates(table, keys, problems);
            }
            if total > MAX_BATCH_WRITE {
                problems.push(format!(
                    "BatchWriteItem has {total} requests, over the 25 allowed"
                ));
            }
        }
        "BatchGetItem" => {
            let mut total = 0;
            for (table, request) in body["RequestItems"].as_object().into_iter().flatten() {
                let keys = request["Keys"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                total += keys.len();
                duplicates(table, keys.iter().map(key_of), problems);
            }
            if total > MAX_BATCH_GET {
                problems.push(format!(
                    "BatchGetItem asks for {total} keys, over the 100 allowed"
                ));
            }
        }
        "TransactWriteItems" | "TransactGetItems" => {
            let n = body["TransactItems"].as_array().map_or(0, Vec::len);
            if n > MAX_TRANSACT {
                problems.push(format!("{operation} has {n} items, over the 100 allowed"));
            }
        }
        _ => {}
    }
}

/// The rules of ECS `operation` that `body` breaks.
pub fn ecs(operation: &str, body: &Value, problems: &mut Vec<String>) {
    if operation != "RunTask" {
        return;
    }
    if body["launchType"].is_string() && body["capacityProviderStrategy"].is_array() {
        problems
            .push("RunTask: launchType and capacityProviderStrategy cannot both be given".into());
    }
    if let Some(token) = body["clientToken"].as_str() {
        if token.len() > 64 || !token.bytes().all(|b| (33..=126).contains(&b)) {
            problems.push(format!(
                "RunTask: clientToken {token:?} must be at most 64 characters in the range 33-126"
            ));
        }
    }
    for tag in body["tags"].as_array().into_iter().flatten() {
        for part in ["key", "value"] {
            if let Some(text) = tag[part].as_str() {
                if text.to_ascii_lowercase().starts_with("aws:") {
                    problems.push(format!(
                        "RunTask: tag {part} {text:?} uses the reserved aws: prefix"
                    ));
                }
            }
        }
    }
    let overrides = body["overrides"].to_string().chars().count();
    if body["overrides"].is_object() && overrides > MAX_OVERRIDES_CHARS {
        problems.push(format!(
            "RunTask: the overrides are {overrides} characters, over the 8192 allowed"
        ));
    }
}

/// Every `#name` and `:value` an expression uses is defined, and every one
/// defined is used ("Value provided in ExpressionAttributeValues unused in
/// expressions"), for the request and for each item of a transaction.
fn placeholders(body: &Value, problems: &mut Vec<String>) {
    let check = |request: &Value, problems: &mut Vec<String>| {
        let expressions: String = [
            "UpdateExpression",
            "ConditionExpression",
            "KeyConditionExpression",
            "FilterExpression",
            "ProjectionExpression",
        ]
        .iter()
        .filter_map(|k| request[*k].as_str())
        .collect::<Vec<_>>()
        .join(" ");
        let used = |sigil: char| -> HashSet<String> {
            let mut out = HashSet::new();
            let chars: Vec<char> = expressions.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                if chars[i] == sigil {
                    let start = i;
                    i += 1;
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                    out.insert(chars[start..i].iter().collect());
                } else {
                    i += 1;
                }
            }
            out
        };
        for (sigil, field) in [
            ('#', "ExpressionAttributeNames"),
            (':', "ExpressionAttributeValues"),
        ] {
            let defined: HashSet<String> = request[field]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let used = used(sigil);
            for name in defined.difference(&used) {
                problems.push(format!("{field} defines {name}, which no expression uses"));
            }
            for name in used.difference(&defined) {
                problems.push(format!(
                    "an expression uses {name}, which {field} does not define"
                ));
            }
        }
    };
    check(body, problems);
    for item in body["TransactItems"].as_array().into_iter().flatten() {
        for (_, request) in item.as_object().into_iter().flatten() {
            check(request, problems);
        }
    }
}

/// The whole items a request writes, with where they are.
fn items<'a>(operation: &str, body: &'a Value) -> Vec<(String, &'a Value)> {
    let mut out = Vec::new();
    if operation == "PutItem" {
        out.push(("PutItem.Item".to_owned(), &body["Item"]));
    }
    for (table, requests) in body["RequestItems"].as_object().into_iter().flatten() {
        for (i, r) in requests.as_array().into_iter().flatten().enumerate() {
            if r["PutRequest"]["Item"].is_object() {
                out.push((
                    format!("RequestItems.{table}[{i}]"),
                    &r["PutRequest"]["Item"],
                ));
            }
        }
    }
    out
}

/// DynamoDB's item size: names plus values (numbers about 21 bytes at most,
/// a generous upper bound is fine here).
fn item_size(item: &Value) -> usize {
    item.as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &Value) -> usize {
    let Some((kind, v)) = value.as_object().and_then(|m| m.iter().next()) else {
        return 0;
    };
    match (kind.as_str(), v) {
        ("S" | "B", Value::String(s)) => s.len(),
        ("N", Value::String(s)) => s.len().div_ceil(2) + 1,
        ("BOOL" | "NULL", _) => 1,
        ("SS" | "NS" | "BS", Value::Array(a)) => {
            a.iter().map(|s| s.as_str().map_or(0, str::len)).sum()
        }
        ("L", Value::Array(a)) => 3 + a.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        ("M", Value::Object(m)) => {
            3 + m
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// Every `{"N": "..."}` under `value` is a number DynamoDB stores: at most
/// 38 significant digits, magnitude from 1E-130 to 9.9999999999999999999999999999999999999E+125.
fn numbers(value: &Value, path: &str, problems: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let (1, Some(Value::String(n))) = (map.len(), map.get("N")) {
                if let Some(why) = bad_number(n) {
                    problems.push(format!("{path}: the number {n} {why}"));
                }
                return;
            }
            for (k, v) in map {
                numbers(v, &format!("{path}.{k}"), problems);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                numbers(v, &format!("{path}[{i}]"), problems);
            }
        }
        _ => {}
    }
}

fn bad_number(text: &str) -> Option<String> {
    let unsigned = text.trim_start_matches(['-', '+']);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int}{frac}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some("is not a number".into());
    }
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    if significant.is_empty() {
        return None;
    }
    if significant.len() > 38 {
        return Some(format!(
            "has {} significant digits, over 38",
            significant.len()
        ));
    }
    // The position of the first significant digit as a power of ten.
    let leading_zeros = digits.len() - digits.trim_start_matches('0').len();
    let magnitude = exponent + int.len() as i64 - 1 - leading_zeros as i64;
    if magnitude > 125 {
        return Some("is over 9.99E+125".into());
    }
    if magnitude < -130 {
        return Some("is under 1E-130 in magnitude".into());
    }
    None
}

/// The key of an item of the jobs table (`object_id`) or the streams table
/// (`stream_id`, `seq`).
fn key_of(item: &Value) -> String {
    match (&item["object_id"], &item["stream_id"]) {
        (id @ Value::Object(_), _) => id.to_string(),
        (_, stream @ Value::Object(_)) => format!("{stream}{}", item["seq"]),
        _ => item.to_string(),
    }
}

fn duplicates(table: &str, keys: impl Iterator<Item = String>, problems: &mut Vec<String>) {
    let mut seen = HashSet::new();
    for key in keys {
        if !seen.insert(key.clone()) {
            problems.push(format!("{table}: the key {key} appears twice in one batch"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_and_out_of_range() {
        for ok in [
            "0",
            "1",
            "-3.5",
            "1e125",
            "9.99E+125",
            "1E-130",
            "0.000",
            "12345678901234567890123456789012345678",
        ] {
            assert_eq!(bad_number(ok), None, "{ok}");
        }
        for bad in [
            "1e126",
            "1e-131",
            "1e-300",
            "123456789012345678901234567890123456789",
            "x",
        ] {
            assert!(bad_number(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn unused_and_undefined_placeholders() {
        let mut p = Vec::new();
        placeholders(
            &serde_json::json!({
                "UpdateExpression": "SET #a = :a",
                "ExpressionAttributeNames": {"#a": "a", "#b": "b"},
                "ExpressionAttributeValues": {":a": {"S": "x"}},
                "ConditionExpression": "#c = :c"
            }),
            &mut p,
        );
        p.sort();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("#c") || p.iter().any(|m| m.contains("#b")));
    }

    #[test]
    fn run_task_cross_field_rules() {
        let mut p = Vec::new();
        ecs(
            "RunTask",
            &serde_json::json!({
                "launchType": "FARGATE",
                "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT"}],
                "clientToken": "x".repeat(65),
                "tags": [{"key": "aws:x", "value": "y"}]
            }),
            &mut p,
        );
        assert_eq!(p.len(), 3, "{p:?}");
    }
}
