//! # Schedules
//!
//! A schedule launches the same request on an EventBridge Scheduler
//! expression (DESIGN.md, Schedules). Its record (`object_type`
//! `Schedule`, `owner` `{username}/schedules`) holds the launch request,
//! the expression, the time zone, its state and its last firing. A firing
//! is exactly a launch ([`Launcher::launch`]: the same validation, secrets,
//! priority and admission) whose job id derives from the schedule and the
//! scheduled time ([`firing_job_id`]), so a repeated delivery finds the job
//! and launches nothing.
//!
//! - [`expr`]: the expressions and time zones, checked before anything is
//!   written; the local backend's firing times.
//! - [`aws`]: the EventBridge Scheduler adapter (group `plus-worker`,
//!   target the launcher Lambda).
//! - Locally, `plus serve` calls [`Launcher::fire_due`] on a tick.

pub mod aws;
pub mod expr;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use plus_jobs::{
    job::SCHEDULE_OBJECT_TYPE, store::Object, PutWhen, RunMode, StoreError, TaskResources,
    Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    request::{self, INLINE_SCRIPT_BYTES},
    InvalidRequest, LaunchRequest, Launched, Launcher, LauncherError,
};
pub use expr::Expression;

/// `state` of a schedule that fires.
pub const ENABLED: &str = "ENABLED";
/// `state` of a paused schedule.
pub const DISABLED: &str = "DISABLED";
/// The longest schedule name.
pub const MAX_SCHEDULE_NAME: usize = 64;

/// The `owner` of `username`'s schedules.
pub fn schedules_owner(username: &str) -> String {
    format!("{username}/schedules")
}

/// A stored schedule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// `schedule-{uuid v5 of username/name}`: one per user and name.
    pub object_id: String,
    /// `Schedule`.
    pub object_type: String,
    /// `{username}/schedules`.
    pub owner: String,
    /// Whose it is.
    pub username: String,
    /// The name its owner gave it (`[A-Za-z0-9._-]`, at most 64).
    pub name: String,
    /// The expression as EventBridge Scheduler reads it (`rate(5 minutes)`).
    pub expression: String,
    /// The IANA time zone the expression is read in.
    pub timezone: String,
    /// `ENABLED` or `DISABLED` (paused).
    pub state: String,
    /// RFC 3339 UTC; a rate counts from here.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// The scheduled time of the last firing (RFC 3339 UTC), empty before.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_fired_for: String,
    /// The job the last firing launched.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_job_id: String,
    /// On AWS: the EventBridge Scheduler schedule's name (group
    /// `plus-worker`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub aws_name: String,
    /// What each firing launches.
    pub launch: ScheduledLaunch,
}

/// The launch request a schedule stores: a [`LaunchRequest`] without a job
/// id (each firing has its own).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScheduledLaunch {
    /// `RUN_SCRIPT`, `RUN_COLLECTION` or `RUN_ACTION`.
    pub run_mode: String,
    /// The script's text, when it is at most 32 KiB of UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// A larger script, in the blob store (`schedules/{object_id}/script`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script_key: Option<String>,
    /// Where the script came from, for messages.
    pub script_name: String,
    /// `interpreter`.
    pub interpreter: String,
    /// `args`.
    pub args: Vec<String>,
    /// `params`.
    pub params: Map<String, Value>,
    /// RUN_COLLECTION's owner path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection_owner: Option<String>,
    /// RUN_COLLECTION: one streaming process.
    pub streaming: bool,
    /// RUN_ACTION's action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// Each job's `name` (default: the schedule's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `priority`.
    pub priority: i32,
    /// `secrets` (references only).
    pub secrets: HashMap<String, String>,
    /// `timeout_seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// `max_attempts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Retry rules.
    pub retry: Vec<plus_jobs::retry::RetryRule>,
    /// CPU units, memory MiB, storage GiB, Spot, image.
    pub cpu: u32,
    /// Memory in MiB.
    pub memory: u32,
    /// Ephemeral storage in GiB.
    pub storage: u32,
    /// Fargate Spot.
    pub spot: bool,
    /// Another worker image.
    pub image: String,
}

/// What `plus schedule create` asks for.
#[derive(Clone, Debug)]
pub struct NewSchedule {
    /// The name (`[A-Za-z0-9._-]`, at most 64).
    pub name: String,
    /// `rate(...)`, `cron(...)` or `at(...)`.
    pub expression: String,
    /// An IANA time zone; UTC when empty.
    pub timezone: String,
    /// What each firing launches (its `job_id` must be `None`).
    pub request: LaunchRequest,
}

/// Why a schedule operation failed, each a sentence that says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A bad argument; nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// No schedule of this user has the name.
    #[error("schedule {0} was not found among yours: `plus schedule list` shows them")]
    NotFound(String),
    /// The name is taken.
    #[error("{0}")]
    Conflict(String),
    /// The action or collection to schedule is not among the user's.
    #[error("{0}")]
    NotFoundAction(String),
    /// The launch of a firing, or the store, failed.
    #[error(transparent)]
    Launcher(#[from] LauncherError),
    /// EventBridge Scheduler refused or failed.
    #[error("{0}")]
    Scheduler(String),
}

impl From<StoreError> for ScheduleError {
    fn from(e: StoreError) -> Self {
        Self::Launcher(e.into())
    }
}

impl From<InvalidRequest> for ScheduleError {
    fn from(e: InvalidRequest) -> Self {
        match e {
            // Another user's collection or action reads as a missing one,
            // as it does for a launch (404 over HTTP).
            InvalidRequest::NotFound(why) => Self::NotFoundAction(why),
            e => Self::Invalid(e.to_string()),
        }
    }
}

/// Where schedules fire: the port, one adapter per backend.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Scheduler {
    /// `plus serve` fires them ([`Launcher::fire_due`]); nothing to call.
    Local,
    /// EventBridge Scheduler.
    Aws(aws::AwsScheduler),
    /// The AWS backend without the scheduler's settings: schedules can be
    /// read, not created or changed.
    Unconfigured {
        /// Which settings are missing.
        why: String,
    },
}

/// Checks a schedule name: 1 to 64 of `[A-Za-z0-9._-]`.
///
/// # Errors
/// A sentence with the rule.
pub fn check_name(name: &str) -> Result<(), ScheduleError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SCHEDULE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ScheduleError::Invalid(format!(
            "the schedule name {name:?} is not valid: use 1 to {MAX_SCHEDULE_NAME} letters, digits, '.', '_' or '-', e.g. nightly-report"
        )))
    }
}

fn name_uuid(username: &str, name: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("plus-worker:schedule:{username}/{name}").as_bytes(),
    )
}

/// The record id of `username`'s schedule `name`.
pub fn schedule_object_id(username: &str, name: &str) -> String {
    format!("schedule-{}", name_uuid(username, name))
}

/// The job id of the firing of `username`'s schedule `name` for
/// `scheduled`: a UUIDv7 whose time is the scheduled time (so it sorts
/// with the user's other jobs) and whose other bits come from the
/// schedule, so a repeated delivery of one firing names the same job.
pub fn firing_job_id(username: &str, name: &str, scheduled: DateTime<Utc>) -> String {
    let hash = name_uuid(username, name);
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&hash.as_bytes()[6..16]);
    let millis = u64::try_from(scheduled.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes)
        .into_uuid()
        .to_string()
}

/// Reads a scheduled time as EventBridge Scheduler passes it
/// (`2030-01-31T09:00:00Z`).
///
/// # Errors
/// A sentence naming the value.
pub fn parse_scheduled_time(s: &str) -> Result<DateTime<Utc>, ScheduleError> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ScheduleError::Invalid(format!(
                "scheduled_time {s:?} is not an RFC 3339 time: EventBridge Scheduler passes <aws.scheduler.scheduled-time>, e.g. 2030-01-31T09:00:00Z"
            ))
        })
}

/// `--rate 5 minutes` and `--cron 0 9 ? * MON-FRI *` as full expressions
/// (`rate(...)`, `cron(...)`); already wrapped ones are kept.
pub fn wrap(kind: &str, text: &str) -> String {
    let t = text.trim();
    if t.starts_with(&format!("{kind}(")) {
        t.to_owned()
    } else {
        format!("{kind}({t})")
    }
}

impl Schedule {
    fn from_object(object: Object) -> Result<Self, StoreError> {
        let id = object
            .get("object_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        serde_json::from_value(Value::Object(object)).map_err(|e| StoreError::Malformed {
            id,
            reason: format!("it is not a readable schedule ({e})"),
        })
    }

    fn to_object(&self) -> Result<Object, ScheduleError> {
        match serde_json::to_value(self) {
            Ok(Value::Object(o)) => Ok(o),
            _ => Err(ScheduleError::Invalid(
                "the schedule cannot be serialized".into(),
            )),
        }
    }

    /// Whether it fires.
    pub fn enabled(&self) -> bool {
        self.state == ENABLED
    }

    /// The checked expression and time zone.
    ///
    /// # Errors
    /// When the stored expression no longer parses.
    pub fn parsed(&self) -> Result<(Expression, chrono_tz::Tz), ScheduleError> {
        let e = Expression::parse(&self.expression).map_err(ScheduleError::Invalid)?;
        let tz = expr::parse_timezone(&self.timezone).map_err(ScheduleError::Invalid)?;
        Ok((e, tz))
    }

    /// The next firing after now (for `show` and `list`), RFC 3339 UTC.
    pub fn next_firing(&self, rate_override: Option<chrono::Duration>) -> Option<String> {
        if !self.enabled() {
            return None;
        }
        let (e, tz) = self.parsed().ok()?;
        let anchor = parse_scheduled_time(&self.created_at).ok()?;
        e.next_after(tz, anchor, Utc::now(), rate_override)
            .map(|t| {
                Timestamp::parse(&t.to_rfc3339()).map_or_else(|_| t.to_rfc3339(), |t| t.to_string())
            })
    }

    /// The JSON a face shows: the record and its next firing.
    pub fn view(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(next) = self.next_firing(None) {
            v["next_firing"] = Value::String(next);
        }
        v
    }
}

/// The stored launch of `req`, with the script inline or (larger) as a
/// blob to write at `key`.
fn stored_launch(req: &LaunchRequest, key: &str) -> (ScheduledLaunch, Option<Vec<u8>>) {
    let mut upload = None;
    let (script, script_key) = match (&req.script, &req.script_key) {
        (Some(bytes), _) => match std::str::from_utf8(bytes) {
            Ok(text) if bytes.len() <= INLINE_SCRIPT_BYTES => (Some(text.to_owned()), None),
            _ => {
                upload = Some(bytes.clone());
                (None, Some(key.to_owned()))
            }
        },
        (None, key) => (None, key.clone()),
    };
    let launch = ScheduledLaunch {
        run_mode: req.run_mode.as_str_name().to_owned(),
        script,
        script_key,
        script_name: req.script_name.clone(),
        interpreter: req.interpreter.clone(),
        args: req.args.clone(),
        params: req.params.clone(),
        collection_owner: req.collection_owner.clone(),
        streaming: req.streaming,
        action_id: req.action_id.clone(),
        name: req.name.clone(),
        priority: req.priority,
        secrets: req.secrets.clone(),
        timeout_seconds: req.timeout_seconds,
        max_attempts: req.max_attempts,
        retry: req.retry.clone(),
        cpu: req.resources.cpu,
        memory: req.resources.memory,
        storage: req.resources.ephemeral_storage_gib,
        spot: req.resources.spot,
        image: req.resources.image.clone(),
    };
    (launch, upload)
}

/// One firing `plus serve` made (or skipped).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Firing {
    /// The schedule's name.
    pub schedule: String,
    /// The scheduled time, RFC 3339 UTC.
    pub scheduled_for: String,
    /// The job launched (or found, for a repeated firing).
    pub job_id: String,
    /// Whether this firing created the job.
    pub created: bool,
    /// Firings that were due while nothing fired (`plus serve` was not
    /// running) and were skipped: only the latest of them fires.
    pub missed: u64,
    /// Why it did not launch, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The firing interval that replaces every `rate(...)` period locally, from
/// the test-only `PLUS_SCHEDULE_TEST_RATE_MS` (unset: none).
pub fn test_rate_override() -> Option<chrono::Duration> {
    std::env::var("PLUS_SCHEDULE_TEST_RATE_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|ms| *ms > 0)
        .map(chrono::Duration::milliseconds)
}

impl Launcher {
    /// The same launcher, whose schedules fire through `scheduler`.
    #[must_use]
    pub fn with_scheduler(mut self, scheduler: Scheduler) -> Self {
        self.scheduler = scheduler;
        self
    }

    /// Whether `plus serve` fires this launcher's schedules (the local
    /// backend); on AWS, EventBridge Scheduler does.
    pub fn fires_schedules_locally(&self) -> bool {
        matches!(self.scheduler, Scheduler::Local)
    }

    async fn read_schedule(&self, username: &str, name: &str) -> Result<Schedule, ScheduleError> {
        let not_found = || ScheduleError::NotFound(name.to_owned());
        let object = self
            .jobs()
            .get_object(&schedule_object_id(username, name))
            .await?
            .ok_or_else(not_found)?;
        let mine = object.get("owner").and_then(Value::as_str) == Some(&schedules_owner(username))
            && object.get("object_type").and_then(Value::as_str) == Some(SCHEDULE_OBJECT_TYPE);
        if !mine {
            return Err(not_found());
        }
        Ok(Schedule::from_object(object)?)
    }

    fn aws_scheduler(&self) -> Result<Option<&aws::AwsScheduler>, ScheduleError> {
        match &self.scheduler {
            Scheduler::Local => Ok(None),
            Scheduler::Aws(a) => Ok(Some(a)),
            Scheduler::Unconfigured { why } => Err(ScheduleError::Scheduler(why.clone())),
        }
    }

    /// Checks `new` (name, expression, time zone and the launch request,
    /// exactly as a launch checks it), then writes the schedule, only if
    /// the user has none of that name, and on AWS creates its EventBridge
    /// Scheduler schedule.
    ///
    /// # Errors
    /// [`ScheduleError::Invalid`] before anything is written;
    /// [`ScheduleError::Conflict`] when the name is taken; store and
    /// scheduler errors (a schedule EventBridge refused is not kept).
    pub async fn create_schedule(&self, new: NewSchedule) -> Result<Schedule, ScheduleError> {
        let username = new.request.username.clone();
        check_name(&new.name)?;
        let expression = new.expression.trim().to_owned();
        Expression::parse(&expression).map_err(ScheduleError::Invalid)?;
        let tz = expr::parse_timezone(&new.timezone).map_err(ScheduleError::Invalid)?;
        if new.request.job_id.is_some() {
            return Err(ScheduleError::Invalid(
                "a schedule's jobs get their ids from the schedule and the scheduled time: leave out the job id (--id, object_id, job_id)".into(),
            ));
        }
        request::refuse_env_secrets(&new.request.secrets).map_err(|_| {
            ScheduleError::Invalid("a schedule fires without your shell: reference a Secrets Manager secret (plus/USER/...) or an SSM parameter (ssm:/plus/USER/...) instead of env: (nothing was written)".into())
        })?;
        // The same checks as a launch, on a copy with a job id.
        let mut probe = new.request.clone();
        probe.job_id = Some(firing_job_id(&username, &new.name, Utc::now()));
        request::prepare(&probe)?;
        if let (RunMode::RunAction, Some(id)) = (probe.run_mode, probe.action_id.as_deref()) {
            // Only the user's own action runs; a missing one is said now,
            // not at the first firing.
            super::data::get_action(self.jobs().as_ref(), &username, id.trim())
                .await
                .map_err(|e| match e {
                    super::data::DataError::Store(e) => ScheduleError::from(e),
                    other => ScheduleError::NotFoundAction(other.to_string()),
                })?;
        }
        let scheduler = self.aws_scheduler()?;
        let object_id = schedule_object_id(&username, &new.name);
        let (mut launch, upload) =
            stored_launch(&new.request, &format!("schedules/{object_id}/script"));
        if launch.name.is_none() {
            launch.name = Some(new.name.clone());
        }
        let now = Timestamp::now().to_string();
        let schedule = Schedule {
            object_id,
            object_type: SCHEDULE_OBJECT_TYPE.to_owned(),
            owner: schedules_owner(&username),
            username: username.clone(),
            name: new.name.clone(),
            expression,
            timezone: tz.name().to_owned(),
            state: ENABLED.to_owned(),
            created_at: now.clone(),
            updated_at: now,
            last_fired_for: String::new(),
            last_job_id: String::new(),
            aws_name: scheduler
                .map(|_| aws::aws_name(&username, &new.name))
                .unwrap_or_default(),
            launch,
        };
        if let Some(bytes) = upload {
            if let Some(key) = &schedule.launch.script_key {
                self.backend
                    .blobs
                    .put_bytes(key, bytes, "text/plain")
                    .await
                    .map_err(LauncherError::from)?;
            }
        }
        match self
            .jobs()
            .put_object_if(&schedule.to_object()?, PutWhen::Absent)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(ScheduleError::Conflict(format!(
                    "a schedule named {} exists already: delete it first (plus schedule delete {}) or choose another name",
                    new.name, new.name
                )))
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(a) = scheduler {
            if let Err(e) = a.create(&schedule).await {
                // Not kept: the record without its EventBridge schedule
                // would never fire.
                let _ = self
                    .jobs()
                    .delete_object(&schedule.object_id, &schedule.owner)
                    .await;
                return Err(e);
            }
        }
        Ok(schedule)
    }

    /// `username`'s schedules, by id.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list_schedules(&self, username: &str) -> Result<Vec<Schedule>, ScheduleError> {
        let owner = schedules_owner(username);
        let mut out = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let page = self
                .jobs()
                .query_owner(&owner, start.as_deref(), 500)
                .await?;
            for object in page.items {
                if object.get("object_type").and_then(Value::as_str) == Some(SCHEDULE_OBJECT_TYPE) {
                    match Schedule::from_object(object) {
                        Ok(s) => out.push(s),
                        Err(e) => tracing::warn!(error = %e, "skipping an unreadable schedule"),
                    }
                }
            }
            match page.next {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `username`'s schedule `name`.
    ///
    /// # Errors
    /// [`ScheduleError::NotFound`] when the user has none of that name.
    pub async fn show_schedule(
        &self,
        username: &str,
        name: &str,
    ) -> Result<Schedule, ScheduleError> {
        self.read_schedule(username, name).await
    }

    /// Pauses (`enabled` false) or resumes a schedule, here and on AWS.
    ///
    /// # Errors
    /// [`ScheduleError::NotFound`]; store and scheduler errors.
    pub async fn set_schedule_state(
        &self,
        username: &str,
        name: &str,
        enabled: bool,
    ) -> Result<Schedule, ScheduleError> {
        let scheduler = self.aws_scheduler()?;
        let mut schedule = self.read_schedule(username, name).await?;
        schedule.state = if enabled { ENABLED } else { DISABLED }.to_owned();
        schedule.updated_at = Timestamp::now().to_string();
        if let Some(a) = scheduler {
            a.update(&schedule).await?;
        }
        self.jobs()
            .put_object_if(&schedule.to_object()?, PutWhen::SameOwner)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => ScheduleError::NotFound(name.to_owned()),
                e => e.into(),
            })?;
        Ok(schedule)
    }

    /// Deletes a schedule: on AWS its EventBridge schedule first, then the
    /// record (and a large script's blob stays for the jobs that ran it).
    ///
    /// # Errors
    /// [`ScheduleError::NotFound`]; store and scheduler errors.
    pub async fn delete_schedule(
        &self,
        username: &str,
        name: &str,
    ) -> Result<Schedule, ScheduleError> {
        let scheduler = self.aws_scheduler()?;
        let schedule = self.read_schedule(username, name).await?;
        if let Some(a) = scheduler {
            a.delete(&schedule).await?;
        }
        self.jobs()
            .delete_object(&schedule.object_id, &schedule.owner)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => ScheduleError::NotFound(name.to_owned()),
                e => e.into(),
            })?;
        Ok(schedule)
    }

    /// One firing of `username`'s schedule `name` for `scheduled`: the
    /// stored request launched with the firing's job id. A repeated
    /// delivery finds the job (`created` false) and launches nothing; a
    /// paused schedule launches nothing (`Ok(None)`).
    ///
    /// # Errors
    /// [`ScheduleError::NotFound`] for a schedule that is gone; the
    /// launch's own errors.
    pub async fn fire_schedule(
        &self,
        username: &str,
        name: &str,
        scheduled: DateTime<Utc>,
    ) -> Result<Option<Launched>, ScheduleError> {
        let schedule = self.read_schedule(username, name).await?;
        if !schedule.enabled() {
            return Ok(None);
        }
        let req = self.firing_request(&schedule, scheduled).await?;
        let launched = self.detached().launch(&req).await?;
        let fired_for = Timestamp::parse(&scheduled.to_rfc3339())
            .map(|t| t.to_string())
            .unwrap_or_default();
        if launched.created {
            self.record_firing(username, name, &fired_for, &launched.job.object_id)
                .await;
        }
        Ok(Some(launched))
    }

    /// Best effort: notes a firing on the schedule's record (the job is
    /// what counts). Read again just before the write, and only these two
    /// fields changed, so a pause or resume meanwhile is kept.
    async fn record_firing(&self, username: &str, name: &str, fired_for: &str, job_id: &str) {
        let Ok(mut fresh) = self.read_schedule(username, name).await else {
            return;
        };
        if fired_for <= fresh.last_fired_for.as_str() {
            return;
        }
        fresh.last_fired_for = fired_for.to_owned();
        if !job_id.is_empty() {
            fresh.last_job_id = job_id.to_owned();
        }
        if let Ok(object) = fresh.to_object() {
            if let Err(e) = self.jobs().put_object_if(&object, PutWhen::SameOwner).await {
                tracing::warn!(error = %e, schedule = name, "the schedule's last firing was not recorded");
            }
        }
    }

    async fn firing_request(
        &self,
        schedule: &Schedule,
        scheduled: DateTime<Utc>,
    ) -> Result<LaunchRequest, ScheduleError> {
        let l = &schedule.launch;
        let script = match (&l.script, &l.script_key) {
            (Some(text), _) => Some(text.clone().into_bytes()),
            (None, Some(key)) if key.starts_with("schedules/") => Some(
                self.backend
                    .blobs
                    .get_bytes(key)
                    .await
                    .map_err(LauncherError::from)?
                    .ok_or_else(|| {
                        ScheduleError::Invalid(format!(
                            "schedule {}'s script ({key}) is gone from the bucket: delete the schedule and create it again",
                            schedule.name
                        ))
                    })?,
            ),
            _ => None,
        };
        Ok(LaunchRequest {
            username: schedule.username.clone(),
            run_mode: RunMode::from_str_name(&l.run_mode).unwrap_or(RunMode::RunScript),
            script,
            script_key: None,
            script_name: l.script_name.clone(),
            interpreter: l.interpreter.clone(),
            args: l.args.clone(),
            params: l.params.clone(),
            collection_owner: l.collection_owner.clone(),
            streaming: l.streaming,
            action_id: l.action_id.clone(),
            timeout_seconds: l.timeout_seconds,
            max_attempts: l.max_attempts,
            resources: TaskResources {
                cpu: l.cpu,
                memory: l.memory,
                ephemeral_storage_gib: l.storage,
                spot: l.spot,
                image: l.image.clone(),
            },
            job_id: Some(firing_job_id(&schedule.username, &schedule.name, scheduled)),
            name: l.name.clone(),
            retry: l.retry.clone(),
            priority: l.priority,
            secrets: l.secrets.clone(),
            ..LaunchRequest::default()
        })
    }

    /// One pass of the local scheduler (`plus serve`) over `username`'s
    /// schedules at `now`: each enabled schedule with a firing due since
    /// its last one (or its creation) fires once, for the latest due time;
    /// earlier due times (missed while nothing fired) are counted in
    /// `missed`, not fired. `rate_override` replaces every rate's period
    /// (test-only).
    ///
    /// # Errors
    /// Store errors reading the schedules; a firing's own failure is in
    /// its [`Firing::error`].
    pub async fn fire_due(
        &self,
        username: &str,
        now: DateTime<Utc>,
        rate_override: Option<chrono::Duration>,
    ) -> Result<Vec<Firing>, ScheduleError> {
        let mut fired = Vec::new();
        for schedule in self.list_schedules(username).await? {
            if !schedule.enabled() {
                continue;
            }
            let Ok((e, tz)) = schedule.parsed() else {
                continue;
            };
            let Ok(anchor) = parse_scheduled_time(&schedule.created_at) else {
                continue;
            };
            let since = if schedule.last_fired_for.is_empty() {
                anchor
            } else {
                parse_scheduled_time(&schedule.last_fired_for).unwrap_or(anchor)
            };
            let Some(mut due) = e.next_after(tz, anchor, since, rate_override) else {
                continue;
            };
            if due > now {
                continue;
            }
            let mut missed = 0u64;
            while let Some(later) = e.next_after(tz, anchor, due, rate_override) {
                if later > now || missed >= 1_000_000 {
                    break;
                }
                missed += 1;
                due = later;
            }
            let scheduled_for = Timestamp::parse(&due.to_rfc3339())
                .map(|t| t.to_string())
                .unwrap_or_default();
            let firing = match self.fire_schedule(username, &schedule.name, due).await {
                Ok(Some(l)) => Firing {
                    schedule: schedule.name.clone(),
                    scheduled_for,
                    job_id: l.job.object_id,
                    created: l.created,
                    missed,
                    error: None,
                },
                Ok(None) => continue,
                Err(e) => Firing {
                    schedule: schedule.name.clone(),
                    scheduled_for,
                    job_id: firing_job_id(username, &schedule.name, due),
                    created: false,
                    missed,
                    error: Some(e.to_string()),
                },
            };
            if firing.error.is_some() {
                // Record the firing as done, so a refused launch is not
                // tried again on every tick.
                self.record_firing(username, &schedule.name, &firing.scheduled_for, "")
                    .await;
            }
            fired.push(firing);
        }
        Ok(fired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firing_id_is_time_sortable_and_stable() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let a = firing_job_id("alice", "nightly", t("2030-01-01T09:00:00Z"));
        assert_eq!(
            a,
            firing_job_id("alice", "nightly", t("2030-01-01T09:00:00Z"))
        );
        let b = firing_job_id("alice", "nightly", t("2030-01-02T09:00:00Z"));
        assert!(a < b, "{a} < {b}");
        assert_ne!(
            a,
            firing_job_id("bob", "nightly", t("2030-01-01T09:00:00Z"))
        );
        plus_jobs::JobId::parse(a).unwrap();
    }

    #[test]
    fn names_follow_eventbridge_rules() {
        check_name("nightly-report.v2_x").unwrap();
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("e.g. nightly-report"), "{e}");
        }
    }
}
