//! A request body checked against its operation's input shape in AWS's own
//! service model (botocore's `service-2.json`): required members, types,
//! lengths, ranges, enums, patterns, and unions with exactly one member.

use std::{collections::HashMap, sync::OnceLock};

use serde_json::Value;

/// One service's model: its shapes and each operation's input shape.
#[derive(Debug)]
pub struct Model {
    shapes: serde_json::Map<String, Value>,
    inputs: HashMap<String, String>,
    patterns: std::sync::Mutex<HashMap<String, Option<regex::Regex>>>,
}

/// The models of the services the suite talks to, as botocore ships them.
#[derive(Debug)]
pub struct Models {
    pub dynamodb: Model,
    pub ecs: Model,
}

static MODELS: OnceLock<Models> = OnceLock::new();

/// The models, loaded once from the botocore that `python3` on PATH has
/// (`.venv-test/`, which `scripts/test.sh` makes, pins it).
///
/// # Panics
/// When botocore cannot be imported.
pub fn models() -> &'static Models {
    MODELS.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import json, sys, botocore.loaders\n\
                 l = botocore.loaders.Loader()\n\
                 json.dump({s: l.load_service_model(s, 'service-2') for s in ('dynamodb', 'ecs')}, sys.stdout)",
            ])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "the AWS service models could not be read from botocore ({}): run the tests with scripts/test.sh, which puts .venv-test/bin first on PATH",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut all: serde_json::Map<String, Value> =
            serde_json::from_slice(&out.stdout).expect("the models are JSON");
        let mut take = |name: &str| Model::new(all.remove(name).expect("the service's model"));
        Models {
            dynamodb: take("dynamodb"),
            ecs: take("ecs"),
        }
    })
}

impl Model {
    fn new(mut model: Value) -> Model {
        let shapes = match model.get_mut("shapes").map(Value::take) {
            Some(Value::Object(shapes)) => shapes,
            _ => panic!("a model without shapes"),
        };
        let inputs = model["operations"]
            .as_object()
            .expect("operations")
            .iter()
            .filter_map(|(name, op)| {
                Some((name.clone(), op["input"]["shape"].as_str()?.to_owned()))
            })
            .collect();
        Model {
            shapes,
            inputs,
            patterns: Default::default(),
        }
    }

    /// Every way `body` breaks the input shape of `operation`, each as
    /// `path: what`.
    pub fn check(&self, operation: &str, body: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        match self.inputs.get(operation) {
            Some(shape) => self.walk(shape, body, operation, &mut problems),
            None => problems.push(format!("{operation}: no such operation in the model")),
        }
        problems
    }

    fn walk(&self, name: &str, value: &Value, path: &str, problems: &mut Vec<String>) {
        let shape = &self.shapes[name];
        let mut bad = |what: String| problems.push(format!("{path}: {what}"));
        let length = |n: usize, problems: &mut Vec<String>| {
            if let Some(min) = shape["min"].as_u64() {
                if (n as u64) < min {
                    problems.push(format!("{path}: length {n} is under the minimum {min}"));
                }
            }
            if let Some(max) = shape["max"].as_u64() {
                if (n as u64) > max {
                    problems.push(format!("{path}: length {n} is over the maximum {max}"));
                }
            }
        };
        match (shape["type"].as_str().unwrap_or(""), value) {
            ("structure", Value::Object(members)) => {
                for required in shape["required"].as_array().into_iter().flatten() {
                    let required = required.as_str().unwrap_or("");
                    if !members.contains_key(required) {
                        bad(format!("required member {required} is missing"));
                    }
                }
                // DynamoDB's AttributeValue is a union in the documentation
                // ("exactly one data type") though botocore does not mark it.
                let union = shape["union"].as_bool() == Some(true) || name == "AttributeValue";
                if union && members.len() != 1 {
                    bad(format!(
                        "a union needs exactly one member, has {}",
                        members.len()
                    ));
                }
                for (member, v) in members {
                    match shape["members"][member]["shape"].as_str() {
                        Some(s) => self.walk(s, v, &format!("{path}.{member}"), problems),
                        None => problems.push(format!("{path}: unknown member {member}")),
                    }
                }
            }
            ("list", Value::Array(items)) => {
                length(items.len(), problems);
                let member = shape["member"]["shape"].as_str().unwrap_or("");
                for (i, v) in items.iter().enumerate() {
                    self.walk(member, v, &format!("{path}[{i}]"), problems);
                }
            }
            ("map", Value::Object(entries)) => {
                length(entries.len(), problems);
                let (key, val) = (
                    shape["key"]["shape"].as_str().unwrap_or(""),
                    shape["value"]["shape"].as_str().unwrap_or(""),
                );
                for (k, v) in entries {
                    self.walk(
                        key,
                        &Value::String(k.clone()),
                        &format!("{path}{{key {k:?}}}"),
                        problems,
                    );
                    self.walk(val, v, &format!("{path}.{k}"), problems);
                }
            }
            ("string", Value::String(s)) => {
                length(s.chars().count(), problems);
                if let Some(values) = shape["enum"].as_array() {
                    if !values.iter().any(|v| v == s) {
                        problems.push(format!("{path}: {s:?} is not one of {values:?}"));
                    }
                }
                if let Some(pattern) = shape["pattern"].as_str() {
                    if let Some(re) = self.pattern(pattern) {
                        if !re.is_match(s) {
                            problems.push(format!("{path}: {s:?} does not match {pattern}"));
                        }
                    }
                }
            }
            ("integer" | "long", Value::Number(n)) => match n.as_i64() {
                Some(n) => {
                    if shape["min"].as_i64().is_some_and(|min| n < min) {
                        bad(format!("{n} is under the minimum {}", shape["min"]));
                    }
                    if shape["max"].as_i64().is_some_and(|max| n > max) {
                        bad(format!("{n} is over the maximum {}", shape["max"]));
                    }
                }
                None => bad(format!("{n} is not an integer")),
            },
            ("boolean", Value::Bool(_))
            | ("double" | "float", Value::Number(_))
            | ("blob", Value::String(_))
            | ("timestamp", Value::Number(_) | Value::String(_)) => {}
            (kind, v) => bad(format!("a {kind} is expected, found {v}")),
        }
    }

    /// The shape's pattern as a whole-string regex; `None` for a Java
    /// pattern the `regex` crate cannot read (surrogate ranges), which is
    /// then not checked.
    fn pattern(&self, pattern: &str) -> Option<regex::Regex> {
        let mut cache = self.patterns.lock().unwrap();
        cache
            .entry(pattern.to_owned())
            .or_insert_with(|| {
                let inner = pattern.trim_start_matches('^').trim_end_matches('$');
                regex::Regex::new(&format!("^(?:{inner})$")).ok()
            })
            .clone()
    }
}
