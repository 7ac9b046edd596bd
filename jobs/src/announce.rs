//! Job State Change events (DESIGN.md, Events): every status change is
//! published once, after the write that made it, by whoever wrote it
//! (worker, launcher, monitor, dispatcher).
//!
//! [`Announcing`] wraps a [`JobStore`]: each `create_job`, each
//! `update_job_with` that changes `status`, and each `fail_unreadable` that
//! succeeds hands a [`StateChange`] to its [`Sink`] after the write. A sink
//! never fails the write it follows: it tries a few times, then logs.
//!
//! - [`EventBridge`]: `PutEvents` on `EVENT_BUS` (AWS backend), `source`
//!   [`SOURCE`], `detail-type` [`DETAIL_TYPE`], `detail` the
//!   [`StateChange`] as JSON.
//! - On the local backend the SQLite store keeps the last changes in a
//!   table of its own ([`crate::store::sqlite::SqliteStore::record_change`]),
//!   which `plus serve` streams as server-sent events.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use plus_proto::{Job, JobStatus, StreamEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    job::status_name,
    store::{Expect, JobStore, Object, Page, PutWhen, StoreError},
};

/// The events' `source`.
pub const SOURCE: &str = "plus-worker";
/// The events' `detail-type`.
pub const DETAIL_TYPE: &str = "Job State Change";

/// One status change: the `detail` of a Job State Change event.
/// Consumers de-duplicate on (`job_id`, `status`, `attempt`): delivery is at
/// least once.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    /// The job.
    pub job_id: String,
    /// Its user.
    pub username: String,
    /// Its label (`--name`), may be empty.
    pub name: String,
    /// The status it now has.
    pub status: String,
    /// The status it had (empty for a new job, or when not known).
    pub previous_status: String,
    /// The attempt (1 for the first).
    pub attempt: u32,
    /// The script's exit code, when it ended with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it failed, was interrupted or waits (empty otherwise).
    pub error: String,
    /// Why a QUEUED job waits.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub queue_reason: String,
    /// `created_at`.
    pub created_at: String,
    /// `started_at` (empty until a worker claimed it).
    pub started_at: String,
    /// `completed_at` (empty until it ended).
    pub completed_at: String,
    /// `updated_at`: when this change was written.
    pub updated_at: String,
    /// `usage` so far (vCPU-seconds, GiB-seconds, `cost_usd`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
}

impl StateChange {
    /// The change that made `job` what it is, from `previous`.
    pub fn of(job: &Job, previous: Option<JobStatus>) -> Self {
        Self {
            job_id: job.object_id.clone(),
            username: job.username.clone(),
            name: job.name.clone(),
            status: status_name(job.status()).to_owned(),
            previous_status: previous
                .map(|s| status_name(s).to_owned())
                .unwrap_or_default(),
            attempt: job.attempt.unwrap_or(1).max(1),
            exit_code: job.exit_code,
            error: job.error.clone(),
            queue_reason: job.queue_reason.clone(),
            created_at: job.created_at.clone(),
            started_at: job.started_at.clone(),
            completed_at: job.completed_at.clone(),
            updated_at: job.updated_at.clone(),
            usage: job
                .usage
                .as_ref()
                .and_then(|u| serde_json::to_value(u).ok()),
        }
    }
}

/// Where state changes go. Never fails: a sink retries what it can and logs
/// the rest, since a lost event must never cost the job.
#[async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Publishes `change`.
    async fn publish(&self, change: &StateChange);
}

/// A [`JobStore`] that announces every status change it writes.
#[derive(Debug)]
pub struct Announcing {
    inner: Arc<dyn JobStore>,
    sink: Arc<dyn Sink>,
}

impl Announcing {
    /// `inner`, announcing to `sink`.
    pub fn new(inner: Arc<dyn JobStore>, sink: Arc<dyn Sink>) -> Self {
        Self { inner, sink }
    }
}

#[async_trait]
impl JobStore for Announcing {
    async fn create_job(&self, job: &Job) -> Result<(), StoreError> {
        self.inner.create_job(job).await?;
        self.sink.publish(&StateChange::of(job, None)).await;
        Ok(())
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.inner.get_job(id).await
    }

    async fn update_job_with(
        &self,
        id: &str,
        expect: &Expect,
        patch: &Job,
        if_absent: &Job,
    ) -> Result<Job, StoreError> {
        let job = self
            .inner
            .update_job_with(id, expect, patch, if_absent)
            .await?;
        // Every transition names the one status it starts from.
        let previous = match expect.statuses.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        if patch.status != 0 && previous != Some(job.status()) {
            self.sink.publish(&StateChange::of(&job, previous)).await;
        }
        Ok(job)
    }

    async fn fail_unreadable(
        &self,
        id: &str,
        username: &str,
        lease: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        self.inner
            .fail_unreadable(id, username, lease, error)
            .await?;
        let now = crate::Timestamp::now().to_string();
        self.sink
            .publish(&StateChange {
                job_id: id.to_owned(),
                username: username.to_owned(),
                status: status_name(JobStatus::Failed).to_owned(),
                attempt: 1,
                error: error.to_owned(),
                completed_at: now.clone(),
                updated_at: now,
                ..StateChange::default()
            })
            .await;
        Ok(())
    }

    async fn list_jobs(
        &self,
        owner: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>, StoreError> {
        self.inner.list_jobs(owner, start, limit).await
    }

    async fn list_active(
        &self,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>, StoreError> {
        self.inner.list_active(start, limit).await
    }

    async fn put_objects(&self, objects: &[Object]) -> Result<(), StoreError> {
        self.inner.put_objects(objects).await
    }

    async fn import_items(&self, owner: &str, items: &[Object]) -> Result<Vec<String>, StoreError> {
        self.inner.import_items(owner, items).await
    }

    async fn put_object_if(&self, object: &Object, when: PutWhen) -> Result<(), StoreError> {
        self.inner.put_object_if(object, when).await
    }

    async fn delete_object(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.delete_object(id, owner).await
    }

    async fn get_object(&self, id: &str) -> Result<Option<Object>, StoreError> {
        self.inner.get_object(id).await
    }

    async fn query_owner(
        &self,
        owner: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Object>, StoreError> {
        self.inner.query_owner(owner, start, limit).await
    }

    async fn query_owner_until(
        &self,
        owner: &str,
        start: Option<&str>,
        until: &str,
        limit: usize,
    ) -> Result<Page<Object>, StoreError> {
        self.inner
            .query_owner_until(owner, start, until, limit)
            .await
    }

    async fn owner_id_bounds(&self, owner: &str) -> Result<Option<(String, String)>, StoreError> {
        self.inner.owner_id_bounds(owner).await
    }

    async fn append_events(&self, events: &[StreamEvent]) -> Result<(), StoreError> {
        self.inner.append_events(events).await
    }

    async fn events_after(
        &self,
        stream_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        self.inner.events_after(stream_id, after, limit).await
    }
}

/// How many times a refused or failed `PutEvents` is tried in all.
const PUT_TRIES: usize = 4;
/// The most one publish may take, retries included: an unreachable bus
/// must never hold up the job's end for long.
const PUBLISH_BUDGET: Duration = Duration::from_secs(5);

/// Publishes to an EventBridge bus.
#[derive(Clone, Debug)]
pub struct EventBridge {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridge {
    /// Publishes to `bus` (a name or an ARN) with `sdk`.
    pub fn new(sdk: &aws_config::SdkConfig, bus: &str) -> Self {
        Self {
            client: aws_sdk_eventbridge::Client::new(sdk),
            bus: bus.to_owned(),
        }
    }

    /// One `PutEvents`: `Ok` when the entry was accepted, else why not and
    /// whether trying again may help.
    async fn put(&self, detail: &str) -> Result<(), (String, bool)> {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(DETAIL_TYPE)
            .detail(detail)
            .build();
        match self.client.put_events().entries(entry).send().await {
            Ok(out) if out.failed_entry_count() == 0 => Ok(()),
            Ok(out) => {
                let entry = out.entries().first();
                let code = entry.and_then(|e| e.error_code()).unwrap_or("unknown");
                let message = entry.and_then(|e| e.error_message()).unwrap_or("");
                // Only an internal failure or throttling passes on a retry.
                let transient = matches!(code, "InternalFailure" | "ThrottlingException");
                Err((format!("{code}: {message}"), transient))
            }
            Err(e) => {
                use aws_sdk_eventbridge::error::ProvideErrorMetadata;
                // A refusal (no permission, no such bus, a bad entry) stays
                // a refusal; a dropped connection or a 5xx may pass later.
                let transient = match e.code() {
                    None => true,
                    Some(code) => {
                        code.contains("Throttl")
                            || code == "InternalException"
                            || code == "InternalFailure"
                    }
                };
                let why = match (e.code(), e.message()) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    _ => crate::error_chain(&e),
                };
                Err((why, transient))
            }
        }
    }
}

#[async_trait]
impl Sink for EventBridge {
    async fn publish(&self, change: &StateChange) {
        let detail = match serde_json::to_string(change) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(job_id = %change.job_id, error = %e, "a state change could not be encoded");
                return;
            }
        };
        let tries = async {
            let mut last = String::new();
            for n in 0..PUT_TRIES {
                if n > 0 {
                    tokio::time::sleep(Duration::from_millis(200 << n)).await;
                }
                match self.put(&detail).await {
                    Ok(()) => return Ok(()),
                    Err((why, transient)) => {
                        last = why;
                        if !transient {
                            break;
                        }
                    }
                }
            }
            Err(last)
        };
        let outcome = tokio::time::timeout(PUBLISH_BUDGET, tries)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {PUBLISH_BUDGET:?}")));
        if let Err(why) = outcome {
            tracing::warn!(
                job_id = %change.job_id,
                status = %change.status,
                bus = %self.bus,
                error = %why,
                "a Job State Change event could not be published (the job is not affected); check that EVENT_BUS names a bus and that this role may events:PutEvents on it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detail_names_what_changed() {
        let job = Job {
            object_id: "j1".into(),
            username: "alice".into(),
            name: "nightly".into(),
            status: JobStatus::Succeeded as i32,
            attempt: Some(2),
            exit_code: Some(0),
            created_at: "2026-01-01T00:00:00Z".into(),
            ..Job::default()
        };
        let change = StateChange::of(&job, Some(JobStatus::Running));
        let v = serde_json::to_value(&change).unwrap();
        assert_eq!(v["job_id"], "j1");
        assert_eq!(v["status"], "SUCCEEDED");
        assert_eq!(v["previous_status"], "RUNNING");
        assert_eq!(v["attempt"], 2);
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["name"], "nightly");
        assert!(v.get("usage").is_none());
        let first = StateChange::of(&Job::default(), None);
        assert_eq!(first.attempt, 1);
        assert_eq!(first.previous_status, "");
    }
}
