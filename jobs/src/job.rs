//! The job record's rules: ids, timestamps, owners and the state machine.

use std::fmt;

use plus_proto::{Job, JobStatus, RunMode};
use serde::{Deserialize, Serialize};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// `object_type` of a job record.
pub const JOB_OBJECT_TYPE: &str = "PlusScriptJob";
/// `object_type` of a stored action.
pub const ACTION_OBJECT_TYPE: &str = "Action";
/// `object_type` of a stored schedule.
pub const SCHEDULE_OBJECT_TYPE: &str = "Schedule";
/// The object types the system itself writes: an import may never replace
/// or create one of them.
pub const SYSTEM_OBJECT_TYPES: [&str; 3] =
    [JOB_OBJECT_TYPE, ACTION_OBJECT_TYPE, SCHEDULE_OBJECT_TYPE];

/// The longest job id accepted (DynamoDB allows 2048 bytes for a key; ids also
/// become S3 key segments and ECS tag values, which allow 256 characters).
pub const MAX_JOB_ID_LEN: usize = 200;

/// A validated job id: 1 to 200 characters of `[A-Za-z0-9._-]`, neither `.`
/// nor `..`, so it is safe as a DynamoDB key, an S3 key segment, an ECS tag
/// and a file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(String);

/// Why a string is not a valid [`JobId`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidJobId {
    /// The id is empty.
    #[error("a job id must not be empty")]
    Empty,
    /// The id is too long.
    #[error("a job id is at most {MAX_JOB_ID_LEN} characters, this one has {0}")]
    TooLong(usize),
    /// The id has a character outside `[A-Za-z0-9._-]`.
    #[error("a job id may only contain letters, digits, '.', '_' and '-'; found {0:?}")]
    BadChar(char),
    /// The id is `.` or `..`, which name folders, not a job, in S3 keys and
    /// file paths (`jobs/../log.txt`).
    #[error(
        "a job id cannot be {0:?}: it would name a folder in S3 keys and paths; pick another id"
    )]
    DotSegment(String),
}

impl JobId {
    /// A new time-sortable id (UUIDv7): newer jobs sort after older ones, so a
    /// user's jobs list newest first through `owner-index`.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Validates `id`.
    ///
    /// # Errors
    /// [`InvalidJobId`] names the rule the id breaks.
    pub fn parse(id: impl Into<String>) -> Result<Self, InvalidJobId> {
        let id = id.into();
        if id.is_empty() {
            return Err(InvalidJobId::Empty);
        }
        if id.len() > MAX_JOB_ID_LEN {
            return Err(InvalidJobId::TooLong(id.len()));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(InvalidJobId::BadChar(c));
        }
        if id == "." || id == ".." {
            return Err(InvalidJobId::DotSegment(id));
        }
        Ok(Self(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JobId {
    type Error = InvalidJobId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<JobId> for String {
    fn from(value: JobId) -> Self {
        value.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 3339 UTC timestamps with millisecond precision, the one format every
/// `*_at` attribute uses (so they also sort as strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    /// Parses an RFC 3339 timestamp.
    ///
    /// # Errors
    /// When `s` is not RFC 3339.
    pub fn parse(s: &str) -> Result<Self, time::error::Parse> {
        OffsetDateTime::parse(s, &Rfc3339).map(Self)
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i128 {
        self.0.unix_timestamp_nanos() / 1_000
    }

    /// Time elapsed from `earlier` to `self`.
    pub fn since(self, earlier: Timestamp) -> std::time::Duration {
        (self.0 - earlier.0).try_into().unwrap_or_default()
    }

    /// The time `d` before `self` (the Unix epoch when that is earlier).
    pub fn minus(self, d: std::time::Duration) -> Timestamp {
        Self(
            self.0
                .checked_sub(time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
                .filter(|t| *t > OffsetDateTime::UNIX_EPOCH)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0.to_offset(time::UtcOffset::UTC);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

/// How long stream events are kept by default (`expires_at`, DynamoDB TTL).
pub const DEFAULT_EVENT_TTL_DAYS: u32 = 30;

/// The `owner` of a user's jobs: `{username}/jobs`.
pub fn jobs_owner(username: &str) -> String {
    format!("{username}/jobs")
}

/// The `owner` of a user's actions: `{username}/actions`.
pub fn actions_owner(username: &str) -> String {
    format!("{username}/actions")
}

/// Whether a status is terminal: it never changes again.
pub fn is_terminal(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
    )
}

/// The state machine of DESIGN.md: may a job go from `from` to `to`?
pub fn can_transition(from: JobStatus, to: JobStatus) -> bool {
    use JobStatus::*;
    matches!(
        (from, to),
        (Initializing, Running)
            | (Running, Succeeded | Failed | Interrupted)
            | (Interrupted, Initializing | Queued | Failed)
            | (Initializing, Failed)
            // Admitted; or sent back to wait when RunTask was refused for
            // capacity, quota or throttling.
            | (Queued, Initializing)
            | (Initializing, Queued)
            | (Initializing | Running | Interrupted | Queued, Cancelled)
    )
}

/// The statuses a job may be in for a transition to `to` to be allowed.
pub fn sources_of(to: JobStatus) -> Vec<JobStatus> {
    [
        JobStatus::Initializing,
        JobStatus::Running,
        JobStatus::Interrupted,
        JobStatus::Queued,
    ]
    .into_iter()
    .filter(|from| can_transition(*from, to))
    .collect()
}

/// The name DESIGN.md uses for a status (`RUNNING`, ...).
pub fn status_name(status: JobStatus) -> &'static str {
    status.as_str_name()
}

/// The name DESIGN.md uses for a run mode (`RUN_SCRIPT`, ...).
pub fn run_mode_name(mode: RunMode) -> &'static str {
    mode.as_str_name()
}

/// A fresh job record as the launcher writes it: INITIALIZING, attempt 1.
pub fn new_job(id: &JobId, username: &str, run_mode: RunMode, now: Timestamp) -> Job {
    Job {
        object_id: id.to_string(),
        object_type: JOB_OBJECT_TYPE.to_owned(),
        owner: jobs_owner(username),
        username: username.to_owned(),
        status: JobStatus::Initializing as i32,
        run_mode: run_mode as i32,
        created_at: now.to_string(),
        updated_at: now.to_string(),
        attempt: Some(1),
        ..Job::default()
    }
}

/// Writes whole-valued floats as integers (`3.0` -> `3`) throughout a JSON
/// value. Protobuf's `Struct` keeps every number as a double; people and
/// scripts expect the integers they wrote.
pub fn normalize_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *n = serde_json::Number::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

/// Why a stored object is not a usable [`plus_proto::Action`].
#[derive(Debug, thiserror::Error)]
pub enum NotAnAction {
    /// It is some other kind of object.
    #[error("object {id} is not an Action (its object_type is {object_type:?})")]
    OtherType {
        /// The object's id.
        id: String,
        /// Its `object_type`.
        object_type: String,
    },
    /// It says it is an action but does not read as one.
    #[error("action {id} is malformed ({reason}): store it again with `plus action put`")]
    Malformed {
        /// The action's id.
        id: String,
        /// What does not read.
        reason: String,
    },
}

/// The object stored under `id` as an action.
///
/// # Errors
/// [`NotAnAction`] when it is another kind of object or does not read.
pub fn action_from_object(
    id: &str,
    object: serde_json::Map<String, serde_json::Value>,
) -> Result<plus_proto::Action, NotAnAction> {
    let object_type = object
        .get("object_type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    if object_type != ACTION_OBJECT_TYPE {
        return Err(NotAnAction::OtherType {
            id: id.to_owned(),
            object_type: object_type.to_owned(),
        });
    }
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| NotAnAction::Malformed {
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// The job as JSON for people and APIs: the proto3 JSON mapping with
/// snake_case names and whole numbers written as integers.
pub fn job_json(job: &Job) -> serde_json::Value {
    let mut v = serde_json::to_value(job).unwrap_or_default();
    normalize_numbers(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_lose_their_point() {
        let mut v = serde_json::json!({"a": 3.0, "b": [1.5, 2.0], "c": "3.0"});
        normalize_numbers(&mut v);
        assert_eq!(v, serde_json::json!({"a": 3, "b": [1.5, 2], "c": "3.0"}));
    }

    #[test]
    fn job_ids_are_validated() {
        assert!(JobId::parse("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").is_ok());
        assert_eq!(JobId::parse(""), Err(InvalidJobId::Empty));
        assert_eq!(JobId::parse("a/b"), Err(InvalidJobId::BadChar('/')));
        for dots in [".", ".."] {
            assert_eq!(
                JobId::parse(dots),
                Err(InvalidJobId::DotSegment(dots.into()))
            );
        }
        assert!(JobId::parse("...").is_ok() && JobId::parse(".a").is_ok());
        assert_eq!(
            JobId::parse("x".repeat(201)),
            Err(InvalidJobId::TooLong(201))
        );
    }

    #[test]
    fn generated_ids_sort_by_time() {
        let a = JobId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = JobId::generate();
        assert!(a < b);
    }

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        let t = Timestamp::parse("2026-01-02T03:04:05.678901Z").unwrap();
        assert_eq!(t.to_string(), "2026-01-02T03:04:05.678Z");
    }

    #[test]
    fn terminal_states_never_change() {
        use JobStatus::*;
        for from in [Succeeded, Failed, Cancelled] {
            for to in [
                Initializing,
                Running,
                Succeeded,
                Failed,
                Cancelled,
                Interrupted,
                Queued,
            ] {
                assert!(!can_transition(from, to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn the_state_machine_matches_the_design() {
        use JobStatus::*;
        assert!(can_transition(Initializing, Running));
        assert!(can_transition(Running, Interrupted));
        assert!(can_transition(Interrupted, Initializing));
        assert!(!can_transition(Running, Initializing));
        assert!(!can_transition(Initializing, Succeeded));
        assert_eq!(
            sources_of(Cancelled),
            vec![Initializing, Running, Interrupted, Queued]
        );
        assert_eq!(sources_of(Running), vec![Initializing]);
        assert_eq!(sources_of(Initializing), vec![Interrupted, Queued]);
        assert!(can_transition(Initializing, Queued));
        assert!(
            !can_transition(Queued, Running),
            "a queued job has no task to claim it"
        );
    }
}
