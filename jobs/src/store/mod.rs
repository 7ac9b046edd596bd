//! The job store port and its two adapters.
//!
//! [`JobStore`] is shaped like the domain: it takes and returns [`Job`],
//! [`StreamEvent`] and JSON objects, never a DynamoDB or SQL type. The
//! adapters ([`dynamodb`], [`sqlite`]) are the only places that know how a
//! record is stored, and both pass the same conformance suite.

pub mod dynamodb;
mod expect;
pub mod sqlite;

pub use expect::Expect;

use crate::Cause;
use async_trait::async_trait;
use plus_proto::{Job, JobStatus, StreamEvent};
use serde_json::{Map, Value};

use crate::job::JOB_OBJECT_TYPE;

/// A stored object that is not a job: an action or a collection item, as the
/// JSON object of its attributes (always with `object_id` and `owner`).
pub type Object = Map<String, Value>;

/// Errors from a [`JobStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A conditional write lost: the job was not in the expected state, or
    /// the caller no longer holds its lease. Nothing was changed.
    #[error("job {id} was not changed: {reason}")]
    Conflict {
        /// The job id.
        id: String,
        /// What the write expected and, when known, what it found.
        reason: String,
    },
    /// The record exists but cannot be read as what it should be.
    #[error("record {id} is malformed: {reason}")]
    Malformed {
        /// The object id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request was rejected because it can never succeed (bad table name,
    /// missing permission, item too large): retrying will not help. The
    /// cause keeps the SDK's or SQLite's error.
    #[error("{0}")]
    Rejected(#[source] Cause),
    /// The store could not be reached or answered with a transient error
    /// (throttling, 5xx, dropped connection). Retrying may help.
    #[error("the job store is unreachable: {0}")]
    Unavailable(#[source] Cause),
}

impl StoreError {
    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// Whether this is a lost conditional write.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page<T> {
    /// The items, in key order (newest first for jobs).
    pub items: Vec<T>,
    /// Pass to the next call to continue; `None` at the end.
    pub next: Option<String>,
}

/// The name of the sparse index over unfinished jobs (partition key
/// `active`, sort key `object_id`, keys only).
pub const ACTIVE_INDEX: &str = "active-index";
/// How many partitions `active` spreads unfinished jobs over, so one hot
/// partition of the index (about 1,000 writes/s) does not cap launches.
pub const ACTIVE_BUCKETS: u32 = 8;
/// The attribute that is present exactly while a job is not terminal.
pub const ACTIVE: &str = "active";

/// The `active` value of job `id`: one of [`ACTIVE_BUCKETS`] partitions,
/// chosen by a stable hash (FNV-1a) of the id.
pub fn active_bucket(id: &str) -> String {
    let hash = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{}", hash % ACTIVE_BUCKETS)
}

/// What a write of `status` does to `active`: `Some(true)` sets it (not
/// terminal), `Some(false)` removes it, `None` (no status in the patch)
/// leaves it.
pub(crate) fn active_after(status: i32) -> Option<bool> {
    match JobStatus::try_from(status) {
        Ok(JobStatus::Unspecified) | Err(_) => None,
        Ok(s) => Some(!crate::job::is_terminal(s)),
    }
}

/// The attributes that describe how an attempt ended: a write that starts
/// a new attempt (status INITIALIZING or RUNNING) removes those it does not
/// set itself, so the record never shows an earlier attempt's error as the
/// current one (earlier attempts live on in `attempts`). Any write of a
/// status other than QUEUED also removes `queue_reason` unless it sets it:
/// the job no longer waits.
pub(crate) fn cleared_by(status: i32) -> &'static [&'static str] {
    match JobStatus::try_from(status) {
        Ok(JobStatus::Initializing | JobStatus::Running) => {
            &["error", "exit_code", "stopped_by_user", "queue_reason"]
        }
        Ok(JobStatus::Queued | JobStatus::Unspecified) | Err(_) => &[],
        Ok(_) => &["queue_reason"],
    }
}

/// The job store: jobs, actions and collection items (the jobs table) and
/// each job's event stream (the streams table).
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// Writes a new job, only if no object with its id exists.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the id is taken.
    async fn create_job(&self, job: &Job) -> Result<(), StoreError>;

    /// Reads a job with a strongly consistent read. `Ok(None)` when there is
    /// no object with that id.
    ///
    /// # Errors
    /// [`StoreError::Malformed`] when the object is not a readable job.
    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError>;

    /// Applies `patch` (every field of it that is not the default value) to
    /// job `id` in one conditional write, and returns the job as written.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when `expect` does not hold; nothing changed.
    async fn update_job(&self, id: &str, expect: &Expect, patch: &Job) -> Result<Job, StoreError> {
        self.update_job_with(id, expect, patch, &Job::default())
            .await
    }

    /// As [`JobStore::update_job`], and also sets the fields of `if_absent`
    /// that the record does not have yet (a claim's `started_at` keeps the
    /// first attempt's time), in the same conditional write.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when `expect` does not hold; nothing changed.
    async fn update_job_with(
        &self,
        id: &str,
        expect: &Expect,
        patch: &Job,
        if_absent: &Job,
    ) -> Result<Job, StoreError>;

    /// Ends a job whose record cannot be read as a job (an engine wrote an
    /// attribute with the wrong type): FAILED with `error`, written on the
    /// raw attributes so the unreadable ones do not stop it. Only when the
    /// record is `username`'s and INITIALIZING, or RUNNING held by `lease`
    /// (a claim that wrote before the record could be read).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the condition does not hold; nothing
    /// changed.
    async fn fail_unreadable(
        &self,
        id: &str,
        username: &str,
        lease: &str,
        error: &str,
    ) -> Result<(), StoreError>;

    /// The jobs whose `owner` is `owner`, newest first.
    ///
    /// # Errors
    /// When the store fails.
    async fn list_jobs(
        &self,
        owner: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>, StoreError>;

    /// Jobs that have not ended (QUEUED, INITIALIZING, RUNNING, INTERRUPTED), of
    /// every user: what the monitor looks after. A full scan of the jobs
    /// table on DynamoDB (filtered server-side), so run it on a schedule, not
    /// per request.
    ///
    /// # Errors
    /// When the store fails.
    async fn list_active(&self, start: Option<&str>, limit: usize)
        -> Result<Page<Job>, StoreError>;

    /// Writes objects (actions, collection items) by id, replacing any with
    /// the same id. Each must have `object_id` and `owner`.
    ///
    /// # Errors
    /// When the store fails; no partial success is hidden.
    async fn put_objects(&self, objects: &[Object]) -> Result<(), StoreError>;

    /// Writes `items` as items of the collection `owner` (each already has
    /// `object_id` and `owner` = `owner`), each by a conditional write: only
    /// where its id is free or is already an item of `owner`, never over a
    /// job, an action, a schedule or another owner's object. Returns the
    /// ids that were refused (nothing was written for them); the others are
    /// written.
    ///
    /// # Errors
    /// When the store fails.
    async fn import_items(&self, owner: &str, items: &[Object]) -> Result<Vec<String>, StoreError>;

    /// Writes one object of the system's own (a schedule) by a conditional
    /// write: with [`PutWhen::Absent`] only if no object has its id, with
    /// [`PutWhen::SameOwner`] only if the stored one has the same `owner`
    /// and `object_type` (an update never takes another user's object).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the condition does not hold; nothing
    /// was written.
    async fn put_object_if(&self, object: &Object, when: PutWhen) -> Result<(), StoreError>;

    /// Deletes object `id` only if its `owner` is `owner`.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when there is no such object of `owner`;
    /// nothing was deleted.
    async fn delete_object(&self, id: &str, owner: &str) -> Result<(), StoreError>;

    /// Reads any object by id (strongly consistent).
    ///
    /// # Errors
    /// When the store fails.
    async fn get_object(&self, id: &str) -> Result<Option<Object>, StoreError>;

    /// The objects whose `owner` is `owner`, in ascending `object_id` order,
    /// starting after `start`.
    ///
    /// # Errors
    /// When the store fails.
    async fn query_owner(
        &self,
        owner: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Object>, StoreError>;

    /// As [`JobStore::query_owner`], but only the objects whose id is at most
    /// `until`: one range of a collection split by id (a shard), read
    /// without reading past its end.
    ///
    /// # Errors
    /// When the store fails.
    async fn query_owner_until(
        &self,
        owner: &str,
        start: Option<&str>,
        until: &str,
        limit: usize,
    ) -> Result<Page<Object>, StoreError>;

    /// The smallest and the largest id among the objects whose `owner` is
    /// `owner` (keys only: two items read), `None` when there are none.
    ///
    /// # Errors
    /// When the store fails.
    async fn owner_id_bounds(&self, owner: &str) -> Result<Option<(String, String)>, StoreError>;

    /// Appends events to their streams.
    ///
    /// # Errors
    /// When any event could not be written.
    async fn append_events(&self, events: &[StreamEvent]) -> Result<(), StoreError>;

    /// The events of stream `stream_id` with `seq > after`, in order.
    ///
    /// # Errors
    /// When the store fails.
    async fn events_after(
        &self,
        stream_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, StoreError>;
}

/// When [`JobStore::put_object_if`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutWhen {
    /// Only if no object has the id (a create).
    Absent,
    /// Only if the stored object has the same `owner` and `object_type`
    /// (an update of one's own object).
    SameOwner,
}

/// The `owner` and `object_type` of `object` (empty when missing).
pub(crate) fn owner_and_type(object: &Object) -> (String, String) {
    let get = |k: &str| {
        object
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (get("owner"), get("object_type"))
}

/// The JSON object (proto3 JSON mapping, snake_case names) of a job: the
/// single conversion both adapters store. A job that is not terminal also
/// carries `active` (see [`ACTIVE_INDEX`]).
pub(crate) fn job_to_object(job: &Job) -> Result<Object, StoreError> {
    match serde_json::to_value(job) {
        Ok(Value::Object(mut map)) => {
            map.values_mut().for_each(crate::job::normalize_numbers);
            Ok(map)
        }
        Ok(_) => unreachable!("a message serializes to an object"),
        Err(e) => Err(StoreError::Rejected(
            format!("job {} cannot be serialized: {e}", job.object_id).into(),
        )),
    }
}

/// Reads a job from its JSON object, checking it is a job record.
pub(crate) fn object_to_job(id: &str, object: Object) -> Result<Job, StoreError> {
    let object_type = object
        .get("object_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if object_type != JOB_OBJECT_TYPE {
        return Err(StoreError::Malformed {
            id: id.to_owned(),
            reason: format!(
                "object_type is {object_type:?}, not {JOB_OBJECT_TYPE:?}: the id names something that is not a job"
            ),
        });
    }
    match serde_json::from_value(Value::Object(object.clone())) {
        Ok(job) => Ok(job),
        Err(e) => Err(StoreError::Malformed {
            id: id.to_owned(),
            reason: match unreadable_attribute(&object) {
                Some((name, why)) => format!(
                    "attribute {name} cannot be read ({why}): write it as DESIGN.md's Records section types it"
                ),
                None => format!("it is not a valid job record ({e})"),
            },
        }),
    }
}

/// The first attribute of `object` that does not read as a job's, and why:
/// each is tried on its own, so the sentence names the one to fix.
fn unreadable_attribute(object: &Object) -> Option<(String, String)> {
    object.iter().find_map(|(name, value)| {
        let alone = Object::from_iter([(name.clone(), value.clone())]);
        serde_json::from_value::<Job>(Value::Object(alone))
            .err()
            .map(|e| (name.clone(), e.to_string()))
    })
}

/// The job in `object`, or `None` (and a warning naming the record and the
/// attribute) when it does not read: listings of every user's jobs skip
/// a malformed record instead of failing for all of them.
pub(crate) fn readable_job(id: &str, object: Object) -> Option<Job> {
    match object_to_job(id, object) {
        Ok(job) => Some(job),
        Err(e) => {
            tracing::warn!(job_id = id, error = %e, "skipping a job record that cannot be read");
            None
        }
    }
}

/// The conflict [`JobStore::fail_unreadable`] answers when its condition
/// does not hold (the one sentence both adapters use).
pub(crate) fn unreadable_conflict(id: &str, username: &str, lease: &str) -> StoreError {
    StoreError::Conflict {
        id: id.to_owned(),
        reason: format!(
            "expected an INITIALIZING job of user {username}, or a RUNNING one held by {lease}"
        ),
    }
}

/// The object a new job is stored as: [`job_to_object`] plus `active`
/// while it is not terminal.
pub(crate) fn new_job_object(job: &Job) -> Result<Object, StoreError> {
    let mut map = job_to_object(job)?;
    if active_after(job.status) == Some(true) {
        map.insert(
            ACTIVE.to_owned(),
            Value::String(active_bucket(&job.object_id)),
        );
    }
    Ok(map)
}

/// The attributes a patch sets: its JSON object without the key.
pub(crate) fn patch_attributes(patch: &Job) -> Result<Object, StoreError> {
    let mut map = job_to_object(patch)?;
    map.remove("object_id");
    Ok(map)
}

/// Merges a patch into a stored object (top-level attributes replace).
pub(crate) fn merge(into: &mut Object, patch: Object) {
    for (k, v) in patch {
        into.insert(k, v);
    }
}
