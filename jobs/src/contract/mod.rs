//! The container contract of DESIGN.md, written once: the variables a
//! launcher sets on a worker ([`WorkerEnv::to_vars`]) and the worker reads
//! back ([`WorkerEnv::from_vars`]), the AWS settings every part reads the
//! same way ([`AwsSettings`]), and the owner paths that tie an object to
//! its user ([`OwnerPath`]).
//!
//! Every reader names all the problems at once, each by its exact variable
//! name with what was expected; envy reads the variables.

use std::fmt;

use serde::Deserialize;

use crate::{backend::AwsConfig, job::run_mode_name, Job, JobId, RunMode};

mod owner;
pub use owner::{InvalidOwnerPath, OwnerPath};

/// The variable names of the contract.
pub mod names {
    /// `RUN_SCRIPT`, `RUN_COLLECTION` or `RUN_ACTION`.
    pub const RUN_MODE: &str = "RUN_MODE";
    /// The job's `object_id`.
    pub const JOB_ID: &str = "JOB_ID";
    /// The user who launched the job.
    pub const USERNAME: &str = "USERNAME";
    /// The AWS region.
    pub const REGION: &str = "REGION";
    /// The jobs table.
    pub const DYNAMO_TABLE: &str = "DYNAMO_TABLE";
    /// The streams table.
    pub const DYNAMO_STREAMS_TABLE: &str = "DYNAMO_STREAMS_TABLE";
    /// The primary bucket.
    pub const PRIMARY_BUCKET: &str = "PRIMARY_BUCKET";
    /// The collection's owner path (RUN_COLLECTION).
    pub const COLLECTION_OWNER: &str = "COLLECTION_OWNER";
    /// The action's id (RUN_ACTION).
    pub const ACTION_ID: &str = "ACTION_ID";
    /// The EventBridge bus for Job State Change events (optional).
    pub const EVENT_BUS: &str = "EVENT_BUS";
    /// Static keys, for older engines (optional).
    pub const ACCESS_KEY: &str = "ACCESS_KEY";
    /// The secret of [`ACCESS_KEY`] (optional).
    pub const SECRET_KEY: &str = "SECRET_KEY";

    /// Every variable of the contract: none of them can be a secret's
    /// name (see [`crate::secrets::RESERVED_NAMES`]).
    pub const ALL: [&str; 12] = [
        RUN_MODE,
        JOB_ID,
        USERNAME,
        REGION,
        DYNAMO_TABLE,
        DYNAMO_STREAMS_TABLE,
        PRIMARY_BUCKET,
        COLLECTION_OWNER,
        ACTION_ID,
        EVENT_BUS,
        ACCESS_KEY,
        SECRET_KEY,
    ];
}

const LAUNCHER_SETS: &str = "the launcher sets it in the task's environment";
const SETUP_PRINTS: &str = "scripts/setup.sh writes it to .env.deploy";

/// Every problem with a set of variables, one sentence each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({} problem{}):\n  - {}", .what, .problems.len(), if .problems.len() == 1 { "" } else { "s" }, .problems.join("\n  - "))]
pub struct ContractError {
    /// What was being read ("the worker's environment is invalid").
    pub what: String,
    /// One sentence per bad variable.
    pub problems: Vec<String>,
}

/// The variables as envy reads them: all optional, so that every problem
/// can be named at once.
#[derive(Debug, Default, Deserialize)]
struct Raw {
    run_mode: Option<String>,
    job_id: Option<String>,
    username: Option<String>,
    region: Option<String>,
    aws_region: Option<String>,
    dynamo_table: Option<String>,
    dynamo_streams_table: Option<String>,
    primary_bucket: Option<String>,
    collection_owner: Option<String>,
    action_id: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    aws_endpoint_url: Option<String>,
    event_bus: Option<String>,
}

impl Raw {
    fn read(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        envy::from_iter(vars).map_err(|e| format!("the environment cannot be read: {e}"))
    }
}

/// A trimmed, non-empty value.
pub fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Where the AWS backend lives: the settings every part (worker, CLI,
/// Lambdas) reads with the same names and rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// `REGION`, or `AWS_REGION` when `REGION` is not set.
    pub region: String,
    /// `DYNAMO_TABLE`.
    pub table: String,
    /// `DYNAMO_STREAMS_TABLE`.
    pub streams_table: String,
    /// `PRIMARY_BUCKET`.
    pub bucket: String,
    /// `AWS_ENDPOINT_URL` (the emulator in tests).
    pub endpoint_url: Option<String>,
    /// `EVENT_BUS` (optional): where status changes are published.
    pub event_bus: Option<String>,
}

impl AwsSettings {
    /// The variables the settings are read from.
    pub const NAMES: [&'static str; 7] = [
        names::REGION,
        "AWS_REGION",
        names::DYNAMO_TABLE,
        names::DYNAMO_STREAMS_TABLE,
        names::PRIMARY_BUCKET,
        "AWS_ENDPOINT_URL",
        names::EVENT_BUS,
    ];

    /// Reads the settings, adding a sentence to `problems` for each missing
    /// one; `hint` says where the names come from.
    fn collect(raw: &Raw, problems: &mut Vec<String>, hint: &str) -> Self {
        let mut need = |name: &str, value: &Option<String>, what: &str| {
            non_empty(value.clone()).unwrap_or_else(|| {
                problems.push(format!("{name} is not set: {what} ({hint})"));
                String::new()
            })
        };
        let table = need(names::DYNAMO_TABLE, &raw.dynamo_table, "the jobs table");
        let streams_table = need(
            names::DYNAMO_STREAMS_TABLE,
            &raw.dynamo_streams_table,
            "the streams table",
        );
        let bucket = need(
            names::PRIMARY_BUCKET,
            &raw.primary_bucket,
            "the primary S3 bucket",
        );
        let region = non_empty(raw.region.clone())
            .or_else(|| non_empty(raw.aws_region.clone()))
            .unwrap_or_else(|| {
                problems.push(format!(
                    "REGION is not set: expected an AWS region such as us-east-1; AWS_REGION is read when REGION is not set ({hint})"
                ));
                String::new()
            });
        Self {
            region,
            table,
            streams_table,
            bucket,
            endpoint_url: non_empty(raw.aws_endpoint_url.clone()),
            event_bus: non_empty(raw.event_bus.clone()),
        }
    }

    /// Reads the AWS settings from `vars`.
    ///
    /// # Errors
    /// [`ContractError`] naming every missing variable.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ContractError> {
        let err = |problems| ContractError {
            what: "the AWS backend is not configured".into(),
            problems,
        };
        let raw = Raw::read(vars).map_err(|p| err(vec![p]))?;
        let mut problems = Vec::new();
        let settings = Self::collect(&raw, &mut problems, SETUP_PRINTS);
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(err(problems))
        }
    }

    /// The store configuration these settings name (no static keys: the
    /// standard credential chain is used).
    pub fn aws_config(&self) -> AwsConfig {
        AwsConfig {
            region: self.region.clone(),
            table: self.table.clone(),
            streams_table: self.streams_table.clone(),
            bucket: self.bucket.clone(),
            endpoint_url: self.endpoint_url.clone(),
            static_keys: None,
            event_bus: self.event_bus.clone(),
        }
    }

    /// The contract's store variables, in the order a task shows them.
    fn to_vars(&self, out: &mut Vec<(String, String)>) {
        for (k, v) in [
            (names::REGION, &self.region),
            (names::DYNAMO_TABLE, &self.table),
            (names::DYNAMO_STREAMS_TABLE, &self.streams_table),
            (names::PRIMARY_BUCKET, &self.bucket),
        ] {
            out.push((k.to_owned(), v.clone()));
        }
        if let Some(bus) = &self.event_bus {
            out.push((names::EVENT_BUS.to_owned(), bus.clone()));
        }
    }
}

/// The worker's environment: what a launcher sets on a task (or a local
/// worker process) and what the worker reads back. The one type both sides
/// use, so the two can never disagree.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkerEnv {
    /// `RUN_MODE`.
    pub run_mode: RunMode,
    /// `JOB_ID`.
    pub job_id: JobId,
    /// `USERNAME`.
    pub username: String,
    /// `REGION`, `DYNAMO_TABLE`, `DYNAMO_STREAMS_TABLE`, `PRIMARY_BUCKET`
    /// and `AWS_ENDPOINT_URL`.
    pub aws: AwsSettings,
    /// `COLLECTION_OWNER` (RUN_COLLECTION).
    pub collection_owner: Option<String>,
    /// `ACTION_ID` (RUN_ACTION).
    pub action_id: Option<String>,
    /// `ACCESS_KEY` / `SECRET_KEY`, accepted from older engines; never
    /// written by [`WorkerEnv::to_vars`].
    pub static_keys: Option<(String, String)>,
}

impl fmt::Debug for WorkerEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret key.
        f.debug_struct("WorkerEnv")
            .field("run_mode", &self.run_mode)
            .field("job_id", &self.job_id)
            .field("username", &self.username)
            .field("aws", &self.aws)
            .field("collection_owner", &self.collection_owner)
            .field("action_id", &self.action_id)
            .field(
                "static_keys",
                &self.static_keys.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl WorkerEnv {
    /// The environment that runs `job` against the stores `aws` names.
    ///
    /// # Errors
    /// When the job's id is not a valid [`JobId`].
    pub fn for_job(job: &Job, aws: &AwsSettings) -> Result<Self, crate::job::InvalidJobId> {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(Self {
            run_mode: job.run_mode(),
            job_id: JobId::parse(job.object_id.clone())?,
            username: job.username.clone(),
            aws: aws.clone(),
            collection_owner: some(&job.collection_owner),
            action_id: some(&job.action_id),
            static_keys: None,
        })
    }

    /// The variables, in the order a task shows them: `RUN_MODE`, `JOB_ID`,
    /// `USERNAME`, the stores, then the mode's own variable. No credentials
    /// and no endpoint: those come from where the worker runs.
    pub fn to_vars(&self) -> Vec<(String, String)> {
        let mut out = vec![
            (
                names::RUN_MODE.to_owned(),
                run_mode_name(self.run_mode).to_owned(),
            ),
            (names::JOB_ID.to_owned(), self.job_id.to_string()),
            (names::USERNAME.to_owned(), self.username.clone()),
        ];
        self.aws.to_vars(&mut out);
        if let Some(owner) = &self.collection_owner {
            out.push((names::COLLECTION_OWNER.to_owned(), owner.clone()));
        }
        if let Some(action) = &self.action_id {
            out.push((names::ACTION_ID.to_owned(), action.clone()));
        }
        out
    }

    /// Reads the environment, adding one sentence to `problems` per missing
    /// or invalid variable; `None` when any was found.
    pub fn collect(
        vars: impl IntoIterator<Item = (String, String)>,
        problems: &mut Vec<String>,
    ) -> Option<Self> {
        let raw = match Raw::read(vars) {
            Ok(raw) => raw,
            Err(p) => {
                problems.push(p);
                return None;
            }
        };
        let before = problems.len();
        let mut required = |name: &str, value: &Option<String>, what: &str| {
            non_empty(value.clone()).unwrap_or_else(|| {
                problems.push(format!("{name} is not set: {what}; {LAUNCHER_SETS}"));
                String::new()
            })
        };
        let run_mode = required(
            names::RUN_MODE,
            &raw.run_mode,
            "expected RUN_SCRIPT, RUN_COLLECTION or RUN_ACTION",
        );
        let job_id = required(names::JOB_ID, &raw.job_id, "expected the job's object_id");
        let username = required(
            names::USERNAME,
            &raw.username,
            "expected the user who launched the job",
        );
        let aws = AwsSettings::collect(&raw, problems, SETUP_PRINTS);
        let run_mode = match run_mode.as_str() {
            "" => RunMode::Unspecified,
            other => match RunMode::from_str_name(other) {
                Some(mode) if mode != RunMode::Unspecified => mode,
                _ => {
                    problems.push(format!(
                        "RUN_MODE is {other:?}: expected RUN_SCRIPT, RUN_COLLECTION or RUN_ACTION"
                    ));
                    RunMode::Unspecified
                }
            },
        };
        let job_id = match JobId::parse(job_id.clone()) {
            Ok(id) => Some(id),
            Err(_) if job_id.is_empty() => None,
            Err(e) => {
                problems.push(format!("JOB_ID is {job_id:?}: {e}"));
                None
            }
        };
        let collection_owner = non_empty(raw.collection_owner);
        let action_id = non_empty(raw.action_id);
        if run_mode == RunMode::RunCollection {
            match &collection_owner {
                None => problems.push("COLLECTION_OWNER is not set: RUN_COLLECTION needs the collection's owner path, e.g. alice/collections/photos".to_owned()),
                Some(owner) => match OwnerPath::parse(owner) {
                    Err(e) => problems.push(format!("COLLECTION_OWNER is {owner:?}: {e}")),
                    Ok(path) if !username.is_empty() && !path.belongs_to(&username) => {
                        problems.push(format!(
                            "COLLECTION_OWNER is {owner:?}, which is not {username}'s: a job may use only its own user's collections ({username}/collections/NAME)"
                        ))
                    }
                    Ok(_) => {}
                },
            }
        }
        if run_mode == RunMode::RunAction && action_id.is_none() {
            problems.push(
                "ACTION_ID is not set: RUN_ACTION needs the object_id of the Action to run"
                    .to_owned(),
            );
        }
        let static_keys = match (non_empty(raw.access_key), non_empty(raw.secret_key)) {
            (Some(k), Some(s)) => Some((k, s)),
            (None, None) => None,
            (Some(_), None) => {
                problems.push("SECRET_KEY is not set but ACCESS_KEY is: set both, or neither to use the task role (recommended)".to_owned());
                None
            }
            (None, Some(_)) => {
                problems.push("ACCESS_KEY is not set but SECRET_KEY is: set both, or neither to use the task role (recommended)".to_owned());
                None
            }
        };
        if problems.len() > before {
            return None;
        }
        Some(Self {
            run_mode,
            job_id: job_id?,
            username,
            aws,
            collection_owner,
            action_id,
            static_keys,
        })
    }

    /// Reads the environment.
    ///
    /// # Errors
    /// [`ContractError`] naming every missing or invalid variable.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ContractError> {
        let mut problems = Vec::new();
        Self::collect(vars, &mut problems).ok_or_else(|| ContractError {
            what: "the worker's environment is invalid".into(),
            problems,
        })
    }

    /// The store configuration for the AWS backend, with the static keys
    /// when an older engine passed them.
    pub fn aws_config(&self) -> AwsConfig {
        AwsConfig {
            static_keys: self.static_keys.clone(),
            ..self.aws.aws_config()
        }
    }
}

#[cfg(test)]
mod tests;
