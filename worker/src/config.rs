//! The worker's configuration: the Fargate container contract of DESIGN.md,
//! read once from the environment. Every missing or invalid variable is
//! named at once, by its exact name, with what was expected.

use std::{path::PathBuf, time::Duration};

use plus_jobs::{
    contract::WorkerEnv,
    pricing::{Prices, TaskSize},
    BackendConfig, JobId, RunMode,
};
use serde::Deserialize;

use crate::script::isolation::ScriptUser;

/// The worker's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// `RUN_MODE`.
    pub run_mode: RunMode,
    /// `JOB_ID`.
    pub job_id: JobId,
    /// `USERNAME`: must equal the job record's `username`.
    pub username: String,
    /// Where the job lives: DynamoDB + S3, or (with `PLUS_LOCAL_DIR`) the
    /// embedded store.
    pub backend: BackendConfig,
    /// `COLLECTION_OWNER` (RUN_COLLECTION).
    pub collection_owner: Option<String>,
    /// `ACTION_ID` (RUN_ACTION).
    pub action_id: Option<String>,
    /// `PLUS_HEARTBEAT_SECONDS` (default 10): how often the lease is
    /// refreshed and a cancel request is looked for.
    pub heartbeat: Duration,
    /// `PLUS_GRACE_SECONDS` (default 20): after SIGTERM, a cancel or a
    /// timeout, how long the script may take to exit before SIGKILL. Keep it
    /// well inside the task's `stopTimeout` (30 s by default, 120 s at most).
    pub grace: Duration,
    /// `PLUS_STORE_PATIENCE_SECONDS` (default 600): how long the end of a
    /// job (its log, last events and final write) keeps trying a store that
    /// cannot be reached, while no SIGTERM came (a SIGTERM bounds it by the
    /// grace period).
    pub store_patience: Duration,
    /// `PLUS_FLUSH_MILLIS` (default 500): how often output is written to the
    /// streams table.
    pub flush: Duration,
    /// `PLUS_CONCURRENCY`: scripts run at once in RUN_COLLECTION (default:
    /// the task's vCPUs, else the machine's cores).
    pub concurrency: Option<usize>,
    /// `PLUS_WORK_DIR` (default: the system temp dir): where each job's
    /// fresh working directory is made.
    pub work_root: PathBuf,
    /// `PLUS_EVENT_TTL_DAYS` (default 30): how long stream events are kept.
    pub event_ttl_days: u32,
    /// `ECS_CONTAINER_METADATA_URI_V4`, set by ECS in every task.
    pub metadata_uri: Option<String>,
    /// `PATH` handed to scripts.
    pub script_path: String,
    /// `PLUS_STREAM_MAX_BYTES` (default 16 MiB): output one attempt shows in
    /// the live stream at most; the full log is never cut.
    pub stream_max_bytes: u64,
    /// `PLUS_SCRIPT_USER` (`uid` or `uid:gid`): who scripts run as; `None`
    /// is the worker's own user. A root worker defaults to 65534:65534
    /// (see [`crate::script::isolation`]).
    pub script_user: Option<ScriptUser>,
    /// The task's size when the job's `resources` do not say:
    /// `PLUS_TASK_CPU` (CPU units, 1024 per vCPU) and `PLUS_TASK_MEMORY`
    /// (MiB), replaced by the ECS task metadata's limits when the worker
    /// can read them. `None`: the smallest task ([`TaskSize::SMALLEST`]).
    pub task_size: Option<TaskSize>,
    /// The Fargate prices a job's cost is estimated with: the table's for
    /// `REGION` with `PLUS_FARGATE_PRICES` over them. `None` on the local
    /// backend, where nothing is billed.
    pub prices: Option<Prices>,
    /// `PLUS_SECRETS_STDIN=1`: the local launcher passes the values of the
    /// job's `env:` secrets as a JSON object on the worker's stdin (never
    /// as variables of the worker, which a script could read); `main`
    /// reads them into [`Config::env_secrets`].
    pub secrets_on_stdin: bool,
    /// The values of `env:NAME` references, by NAME (see
    /// [`Config::secrets_on_stdin`]). Empty on AWS.
    pub env_secrets: EnvValues,
}

/// The values of `env:` secret references, by variable name; its `Debug`
/// shows the names only.
#[derive(Clone, Default)]
pub struct EnvValues(pub std::collections::HashMap<String, String>);

impl std::fmt::Debug for EnvValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl EnvValues {
    /// Reads the JSON object the local launcher wrote to `input` (the
    /// worker's stdin), to its end.
    ///
    /// # Errors
    /// A sentence when it cannot be read or is not an object of strings.
    pub fn read(mut input: impl std::io::Read) -> Result<EnvValues, String> {
        let mut text = String::new();
        input
            .read_to_string(&mut text)
            .map_err(|e| format!("the env: secrets on stdin cannot be read: {e}"))?;
        if text.trim().is_empty() {
            return Ok(EnvValues::default());
        }
        serde_json::from_str(&text).map(EnvValues).map_err(|_| {
            "the env: secrets on stdin are not a JSON object of strings (PLUS_SECRETS_STDIN is for the local launcher)".to_owned()
        })
    }
}

/// The raw environment, as envy reads it: every variable optional, so that
/// validation can name all the problems at once.
#[derive(Debug, Default, Deserialize)]
struct Raw {
    plus_local_dir: Option<String>,
    plus_heartbeat_seconds: Option<String>,
    plus_grace_seconds: Option<String>,
    plus_flush_millis: Option<String>,
    plus_store_patience_seconds: Option<String>,
    plus_concurrency: Option<String>,
    plus_work_dir: Option<String>,
    plus_event_ttl_days: Option<String>,
    plus_stream_max_bytes: Option<String>,
    plus_script_user: Option<String>,
    plus_task_cpu: Option<String>,
    plus_task_memory: Option<String>,
    plus_fargate_prices: Option<String>,
    plus_secrets_stdin: Option<String>,
    ecs_container_metadata_uri_v4: Option<String>,
    path: Option<String>,
}

/// Everything wrong with the environment, each problem a sentence that names
/// the variable and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the worker's environment is invalid ({} problem{}):\n  - {}", .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .problems.join("\n  - "))]
pub struct ConfigError {
    /// One sentence per bad variable.
    pub problems: Vec<String>,
}

impl Config {
    /// Reads the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] listing every missing or invalid variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the given variables (tests pass their own, never `set_var`).
    ///
    /// # Errors
    /// [`ConfigError`] listing every missing or invalid variable.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let raw: Raw = envy::from_iter(vars.iter().cloned()).map_err(|e| ConfigError {
            problems: vec![format!("the environment cannot be read: {e}")],
        })?;
        // The container contract (RUN_MODE, JOB_ID, USERNAME, the stores,
        // the mode's variable) is read by the one type launchers write.
        let mut problems = Vec::new();
        let contract = WorkerEnv::collect(vars, &mut problems);
        let heartbeat = seconds(
            &mut problems,
            "PLUS_HEARTBEAT_SECONDS",
            raw.plus_heartbeat_seconds,
            10.0,
            0.05,
            300.0,
        );
        let grace = seconds(
            &mut problems,
            "PLUS_GRACE_SECONDS",
            raw.plus_grace_seconds,
            20.0,
            0.0,
            115.0,
        );
        let store_patience = seconds(
            &mut problems,
            "PLUS_STORE_PATIENCE_SECONDS",
            raw.plus_store_patience_seconds,
            600.0,
            0.0,
            86_400.0,
        );
        let flush = seconds(
            &mut problems,
            "PLUS_FLUSH_MILLIS",
            raw.plus_flush_millis,
            500.0,
            10.0,
            60_000.0,
        ) / 1000;
        let concurrency = match non_empty(raw.plus_concurrency) {
            None => None,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => Some(n),
                _ => {
                    problems.push(format!(
                        "PLUS_CONCURRENCY is {v:?}: expected a whole number from 1 to 1024"
                    ));
                    None
                }
            },
        };
        let event_ttl_days = match non_empty(raw.plus_event_ttl_days) {
            None => plus_jobs::job::DEFAULT_EVENT_TTL_DAYS,
            Some(v) => v.parse::<u32>().ok().filter(|d| (1..=3650).contains(d)).unwrap_or_else(|| {
                problems.push(format!("PLUS_EVENT_TTL_DAYS is {v:?}: expected a whole number of days from 1 to 3650"));
                plus_jobs::job::DEFAULT_EVENT_TTL_DAYS
            }),
        };
        let stream_max_bytes = match non_empty(raw.plus_stream_max_bytes) {
            None => crate::output::events::DEFAULT_VIEW_BYTES,
            Some(v) => v.parse::<u64>().unwrap_or_else(|_| {
                problems.push(format!(
                    "PLUS_STREAM_MAX_BYTES is {v:?}: expected a whole number of bytes"
                ));
                0
            }),
        };
        let script_user = ScriptUser::from_setting(
            raw.plus_script_user.as_deref(),
            nix::unistd::geteuid().as_raw(),
        )
        .unwrap_or_else(|problem| {
            problems.push(problem);
            None
        });
        let task_size = task_size(
            &mut problems,
            non_empty(raw.plus_task_cpu),
            non_empty(raw.plus_task_memory),
        );
        let region = contract.as_ref().map(|c| c.aws.region.clone());
        let prices = prices(
            &mut problems,
            region.as_deref(),
            non_empty(raw.plus_fargate_prices),
        );
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let Some(contract) = contract else {
            return Err(ConfigError { problems });
        };
        let (backend, prices) = match non_empty(raw.plus_local_dir) {
            Some(dir) => (
                BackendConfig::Local {
                    dir: PathBuf::from(dir),
                    bucket: contract.aws.bucket.clone(),
                },
                None,
            ),
            None => (BackendConfig::Aws(contract.aws_config()), Some(prices)),
        };
        let WorkerEnv {
            run_mode,
            job_id,
            username,
            collection_owner,
            action_id,
            ..
        } = contract;
        Ok(Config {
            run_mode,
            job_id,
            username,
            backend,
            collection_owner,
            action_id,
            heartbeat,
            grace,
            store_patience,
            flush,
            concurrency,
            work_root: non_empty(raw.plus_work_dir)
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
            event_ttl_days,
            metadata_uri: non_empty(raw.ecs_container_metadata_uri_v4),
            script_path: non_empty(raw.path).unwrap_or_else(|| {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()
            }),
            stream_max_bytes,
            script_user,
            task_size,
            prices,
            secrets_on_stdin: non_empty(raw.plus_secrets_stdin).is_some_and(|v| v != "0"),
            env_secrets: EnvValues::default(),
        })
    }
}

/// `PLUS_TASK_CPU` and `PLUS_TASK_MEMORY`, either of them alone taking the
/// smallest task's value for the other.
fn task_size(
    problems: &mut Vec<String>,
    cpu: Option<String>,
    memory: Option<String>,
) -> Option<TaskSize> {
    let mut read = |name: &str, value: Option<String>, max: u32| {
        let v = value?;
        match v.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Some(n),
            _ => {
                problems.push(format!(
                    "{name} is {v:?}: expected a whole number from 1 to {max}"
                ));
                None
            }
        }
    };
    let cpu = read("PLUS_TASK_CPU", cpu, 16 * 1024);
    let memory = read("PLUS_TASK_MEMORY", memory, 120 * 1024);
    if cpu.is_none() && memory.is_none() {
        return None;
    }
    Some(TaskSize {
        vcpus: cpu.map_or(TaskSize::SMALLEST.vcpus, |c| f64::from(c) / 1024.0),
        gib: memory.map_or(TaskSize::SMALLEST.gib, |m| f64::from(m) / 1024.0),
    })
}

/// The table's prices for `region` (a region it lacks takes
/// [`plus_jobs::pricing::FALLBACK_REGION`]'s), with `PLUS_FARGATE_PRICES`
/// over them.
fn prices(problems: &mut Vec<String>, region: Option<&str>, over: Option<String>) -> Prices {
    let (table, _) = Prices::for_region_or_fallback(region.unwrap_or_default());
    match over {
        None => table,
        Some(text) => table.with_override(&text).unwrap_or_else(|problem| {
            problems.push(format!("PLUS_FARGATE_PRICES is {text:?}: {problem}"));
            table
        }),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A duration in (fractional) units from `name`, within `min..=max`.
fn seconds(
    problems: &mut Vec<String>,
    name: &str,
    value: Option<String>,
    default: f64,
    min: f64,
    max: f64,
) -> Duration {
    let Some(v) = non_empty(value) else {
        return Duration::from_secs_f64(default);
    };
    match v.parse::<f64>() {
        Ok(n) if n.is_finite() && (min..=max).contains(&n) => Duration::from_secs_f64(n),
        _ => {
            problems.push(format!(
                "{name} is {v:?}: expected a number from {min} to {max}"
            ));
            Duration::from_secs_f64(default)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("RUN_MODE", "RUN_SCRIPT"),
            ("JOB_ID", "job-1"),
            ("USERNAME", "alice"),
            ("REGION", "eu-west-1"),
            ("DYNAMO_TABLE", "jobs"),
            ("DYNAMO_STREAMS_TABLE", "streams"),
            ("PRIMARY_BUCKET", "bucket"),
        ]
    }

    #[test]
    fn a_complete_environment_is_accepted() {
        let config = Config::from_vars(env(&base())).unwrap();
        assert_eq!(config.run_mode, RunMode::RunScript);
        assert_eq!(config.job_id.as_str(), "job-1");
        assert_eq!(config.heartbeat, Duration::from_secs(10));
        let BackendConfig::Aws(aws) = config.backend else {
            panic!()
        };
        assert_eq!(aws.region, "eu-west-1");
        assert_eq!(aws.static_keys, None, "the task role is used by default");
    }

    #[test]
    fn every_missing_variable_is_named_at_once() {
        let err = Config::from_vars(env(&[("RUN_MODE", "RUN_SCRIPT")])).unwrap_err();
        let text = err.to_string();
        for name in [
            "JOB_ID",
            "USERNAME",
            "REGION",
            "DYNAMO_TABLE",
            "DYNAMO_STREAMS_TABLE",
            "PRIMARY_BUCKET",
        ] {
            assert!(
                text.contains(&format!("{name} is not set")),
                "{name} missing from: {text}"
            );
        }
        assert_eq!(err.problems.len(), 6);
    }

    /// Every tuning knob takes its bounds and refuses just past them (and
    /// what is not a finite number), naming itself and the range.
    #[test]
    fn every_tuning_knob_takes_its_range_and_refuses_past_it() {
        let knobs: [(&str, &[&str], &[&str], &str); 6] = [
            (
                "PLUS_HEARTBEAT_SECONDS",
                &["0.05", "300"],
                &["0.04", "301", "NaN", "inf", "-1"],
                "from 0.05 to 300",
            ),
            (
                "PLUS_GRACE_SECONDS",
                &["0", "115"],
                &["-0.1", "116"],
                "from 0 to 115",
            ),
            (
                "PLUS_STORE_PATIENCE_SECONDS",
                &["0", "86400"],
                &["86401", "soon"],
                "from 0 to 86400",
            ),
            (
                "PLUS_FLUSH_MILLIS",
                &["10", "60000"],
                &["9", "60001"],
                "from 10 to 60000",
            ),
            (
                "PLUS_CONCURRENCY",
                &["1", "1024"],
                &["0", "1025", "2.5"],
                "from 1 to 1024",
            ),
            (
                "PLUS_EVENT_TTL_DAYS",
                &["1", "3650"],
                &["0", "3651"],
                "from 1 to 3650",
            ),
        ];
        for (name, good, bad, range) in knobs {
            for v in good {
                let mut vars = base();
                vars.push((name, v));
                assert!(
                    Config::from_vars(env(&vars)).is_ok(),
                    "{name}={v} is accepted"
                );
            }
            for v in bad {
                let mut vars = base();
                vars.push((name, v));
                let text = Config::from_vars(env(&vars)).unwrap_err().to_string();
                assert!(
                    text.contains(&format!("{name} is {v:?}")) && text.contains(range),
                    "{name}={v}: {text}"
                );
            }
        }
        let mut vars = base();
        vars.push(("PLUS_STREAM_MAX_BYTES", "lots"));
        let text = Config::from_vars(env(&vars)).unwrap_err().to_string();
        assert!(text.contains("PLUS_STREAM_MAX_BYTES is \"lots\""), "{text}");
    }

    #[test]
    fn invalid_values_say_what_was_expected() {
        let mut vars = base();
        vars.retain(|(k, _)| *k != "RUN_MODE" && *k != "JOB_ID");
        vars.extend([
            ("RUN_MODE", "RUN_EVERYTHING"),
            ("JOB_ID", "a/b"),
            ("PLUS_HEARTBEAT_SECONDS", "soon"),
            ("ACCESS_KEY", "AKIA"),
        ]);
        let err = Config::from_vars(env(&vars)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "RUN_MODE is \"RUN_EVERYTHING\": expected RUN_SCRIPT, RUN_COLLECTION or RUN_ACTION"
            ),
            "{text}"
        );
        assert!(text.contains("JOB_ID is \"a/b\""), "{text}");
        assert!(
            text.contains("PLUS_HEARTBEAT_SECONDS is \"soon\""),
            "{text}"
        );
        assert!(
            text.contains("SECRET_KEY is not set but ACCESS_KEY is"),
            "{text}"
        );
    }

    #[test]
    fn mode_specific_variables_are_required() {
        let mut vars = base();
        vars[0] = ("RUN_MODE", "RUN_COLLECTION");
        let text = Config::from_vars(env(&vars)).unwrap_err().to_string();
        assert!(text.contains("COLLECTION_OWNER is not set"), "{text}");
        vars[0] = ("RUN_MODE", "RUN_ACTION");
        let text = Config::from_vars(env(&vars)).unwrap_err().to_string();
        assert!(text.contains("ACTION_ID is not set"), "{text}");
    }

    #[test]
    fn prices_follow_the_region_and_the_override() {
        use plus_jobs::pricing::Rate;
        let config = Config::from_vars(env(&base())).unwrap();
        assert_eq!(config.prices, Prices::for_region("eu-west-1"));
        assert_eq!(config.task_size, None);

        let mut vars = base();
        vars.extend([
            ("PLUS_FARGATE_PRICES", "vcpu_hour=0.05,gb_hour=0.005"),
            ("PLUS_TASK_CPU", "2048"),
        ]);
        let config = Config::from_vars(env(&vars)).unwrap();
        let prices = config.prices.unwrap();
        assert_eq!(
            prices.on_demand,
            Rate {
                vcpu_hour: 0.05,
                gb_hour: 0.005
            }
        );
        assert_eq!(
            config.task_size,
            Some(TaskSize {
                vcpus: 2.0,
                gib: 0.5
            })
        );

        vars.push(("PLUS_LOCAL_DIR", "/tmp/plus"));
        let config = Config::from_vars(env(&vars)).unwrap();
        assert_eq!(config.prices, None, "nothing is billed locally");

        let mut vars = base();
        vars.extend([
            ("PLUS_FARGATE_PRICES", "vcpu_hour=cheap"),
            ("PLUS_TASK_MEMORY", "lots"),
        ]);
        let text = Config::from_vars(env(&vars)).unwrap_err().to_string();
        assert!(
            text.contains("PLUS_FARGATE_PRICES is \"vcpu_hour=cheap\""),
            "{text}"
        );
        assert!(text.contains("PLUS_TASK_MEMORY is \"lots\""), "{text}");
    }

    #[test]
    fn plus_local_dir_selects_the_embedded_backend() {
        let mut vars = base();
        vars.push(("PLUS_LOCAL_DIR", "/tmp/plus"));
        let config = Config::from_vars(env(&vars)).unwrap();
        assert_eq!(
            config.backend,
            BackendConfig::Local {
                dir: "/tmp/plus".into(),
                bucket: "bucket".into()
            }
        );
    }
}
