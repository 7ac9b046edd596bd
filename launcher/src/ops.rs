//! The launcher's operations, the one place their logic lives: launch,
//! status, events, cancel, list, retry. The CLI, the Lambda handler and the
//! HTTP API are thin faces over [`Launcher`].

use std::sync::Arc;

use plus_jobs::{
    job::{is_terminal, jobs_owner, status_name, DEFAULT_EVENT_TTL_DAYS},
    Backend, BlobError, Expect, Job, JobStatus, JobStore, Page, StoreError, StreamEvent, Timestamp,
};
use tokio::process::Child;

use crate::{
    launch::{prepare, InvalidRequest, LaunchRequest},
    local::LocalRunner,
};

/// Errors from launcher operations, each a sentence that says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LauncherError {
    /// No job with that id is visible to this user.
    #[error("job {0} was not found (or belongs to another user)")]
    NotFound(String),
    /// The request was refused before anything was written.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The job is not in a state that allows the operation.
    #[error("{0}")]
    Conflict(String),
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The task or process could not be started; the job is FAILED with the
    /// same reason.
    #[error("{0}")]
    Start(String),
}

/// Attempts a job gets when it does not say (`max_attempts`): an
/// interruption (SIGTERM, Spot) is not the job's fault, so it is relaunched.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Whether `job` may run another attempt (`max_attempts`, default
/// [`DEFAULT_MAX_ATTEMPTS`]). The one rule `plus retry` and the monitor share.
pub fn attempts_left(job: &Job) -> bool {
    job.attempt.unwrap_or(1) < job.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
}

/// Where jobs run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Runner {
    /// Child processes on this machine.
    Local(LocalRunner),
    /// ECS Fargate tasks.
    Ecs(crate::ecs::EcsRunner),
}

/// A launched job, and its worker process when it runs locally.
#[derive(Debug)]
pub struct Launched {
    /// The job as written.
    pub job: Job,
    /// The local worker, when the job runs on this machine.
    pub worker: Option<Child>,
    /// Whether this call created the job (false: a retried launch found it).
    pub created: bool,
}

/// The launcher: a backend and a runner.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// The stores.
    pub backend: Backend,
    /// Where workers run.
    pub runner: Runner,
}

impl Launcher {
    /// The job store.
    pub fn jobs(&self) -> &Arc<dyn JobStore> {
        &self.backend.jobs
    }

    /// Validates `req`, writes the record (only if no job has its id), and
    /// starts its worker. A worker that cannot be started leaves the job
    /// FAILED with the reason, never INITIALIZING.
    ///
    /// # Errors
    /// [`LauncherError::Invalid`] before any write; store errors; and
    /// [`LauncherError::Start`] after recording the failure.
    pub async fn launch(
        &self,
        req: &LaunchRequest,
        detach: bool,
    ) -> Result<Launched, LauncherError> {
        let prepared = prepare(req)?;
        if let Some((key, bytes)) = &prepared.upload {
            self.backend
                .blobs
                .put_bytes(key, bytes.clone(), "text/plain")
                .await?;
        }
        let job = prepared.job;
        match self.jobs().create_job(&job).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                // A retried launch: the first one wrote the record and
                // started (or failed to start) its worker.
                let existing = match self.status(&req.username, &job.object_id).await {
                    Err(LauncherError::NotFound(id)) => {
                        return Err(LauncherError::Conflict(format!(
                            "the job id {id} is taken: choose another id, or leave it out for a new one"
                        )))
                    }
                    other => other?,
                };
                return Ok(Launched {
                    job: existing,
                    worker: None,
                    created: false,
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.start(job, detach).await.map(|(job, worker)| Launched {
            job,
            worker,
            created: true,
        })
    }

    /// Starts the worker (local process or ECS task) of a written job.
    pub(crate) async fn start(
        &self,
        job: Job,
        detach: bool,
    ) -> Result<(Job, Option<Child>), LauncherError> {
        match &self.runner {
            Runner::Local(local) => match local.start(&job, detach) {
                Ok(child) => {
                    let arn = format!("local:pid/{}", child.id().unwrap_or_default());
                    let patch = Job {
                        fargate_task_arn: arn,
                        ..Job::default()
                    };
                    // Best effort: the worker overwrites it when it claims.
                    let job = self
                        .jobs()
                        .update_job(
                            &job.object_id,
                            &Expect::status([JobStatus::Initializing]),
                            &patch,
                        )
                        .await
                        .unwrap_or(job);
                    Ok((job, Some(child)))
                }
                Err(e) => {
                    let reason = format!(
                        "the worker could not be started ({}: {e}): build it with `cargo build --release` or set PLUS_WORKER_BIN",
                        local.worker.join(" ")
                    );
                    self.fail(&job.object_id, JobStatus::Initializing, &reason)
                        .await?;
                    Err(LauncherError::Start(reason))
                }
            },
            Runner::Ecs(ecs) => match ecs.run_task(&job).await {
                Ok(task_arn) => {
                    let patch = Job {
                        fargate_task_arn: task_arn,
                        updated_at: Timestamp::now().to_string(),
                        ..Job::default()
                    };
                    // The worker may already have claimed it (and written the
                    // same ARN): then the record is right as it is.
                    let job = match self
                        .jobs()
                        .update_job(
                            &job.object_id,
                            &Expect::status([JobStatus::Initializing]),
                            &patch,
                        )
                        .await
                    {
                        Ok(job) => job,
                        Err(StoreError::Conflict { .. }) => {
                            self.jobs().get_job(&job.object_id).await?.unwrap_or(job)
                        }
                        Err(e) => return Err(e.into()),
                    };
                    Ok((job, None))
                }
                Err(e) => {
                    self.fail(&job.object_id, JobStatus::Initializing, &e.0)
                        .await?;
                    Err(LauncherError::Start(e.0))
                }
            },
        }
    }

    /// Stops the job's ECS task, if it has one (best effort: a task that
    /// already stopped is fine).
    pub async fn stop_task(&self, job: &Job, reason: &str) {
        if let Runner::Ecs(ecs) = &self.runner {
            if job.fargate_task_arn.starts_with("arn:") {
                if let Err(e) = ecs.stop(&job.fargate_task_arn, reason).await {
                    tracing::warn!(error = %e, job_id = %job.object_id, "StopTask failed");
                }
            }
        }
    }

    /// Records a launch-side failure: FAILED with `reason`, if the job is
    /// still in `from`.
    ///
    /// # Errors
    /// Store errors; a lost race is not an error (the other writer wins).
    pub async fn fail(&self, id: &str, from: JobStatus, reason: &str) -> Result<(), LauncherError> {
        match self.transition(id, from, JobStatus::Failed, reason).await {
            Ok(_) | Err(LauncherError::Store(StoreError::Conflict { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One launcher-side status change: a conditional write from `from` to
    /// `to` with `error` (and `completed_at` when `to` is final), then the
    /// status event followers see.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] (as [`LauncherError::Store`]) when the job
    /// is no longer in `from`; nothing changed.
    pub(crate) async fn transition(
        &self,
        id: &str,
        from: JobStatus,
        to: JobStatus,
        error: &str,
    ) -> Result<Job, LauncherError> {
        debug_assert!(
            plus_jobs::job::can_transition(from, to),
            "{from:?} -> {to:?}"
        );
        let now = Timestamp::now().to_string();
        let patch = Job {
            status: to as i32,
            error: error.to_owned(),
            updated_at: now.clone(),
            completed_at: if is_terminal(to) { now } else { String::new() },
            ..Job::default()
        };
        let job = self
            .jobs()
            .update_job(id, &Expect::status([from]), &patch)
            .await?;
        self.append_status(id, to).await;
        Ok(job)
    }

    async fn append_status(&self, id: &str, status: JobStatus) {
        let event = plus_jobs::job::stream_event(
            id,
            "status",
            status_name(status).into(),
            DEFAULT_EVENT_TTL_DAYS,
            0,
        );
        let _ = self.jobs().append_events(&[event]).await;
    }

    /// The job `id`, if `username` owns it.
    ///
    /// # Errors
    /// [`LauncherError::NotFound`] when there is no such job or another user
    /// owns it (the two are not told apart).
    pub async fn status(&self, username: &str, id: &str) -> Result<Job, LauncherError> {
        let job = self.owned(username, id).await?;
        // A fanned-out collection's parent: its status comes from its shards.
        if crate::shards::is_parent(&job) {
            return crate::shards::aggregate(self, job).await;
        }
        Ok(job)
    }

    /// The job record `id` as stored (a parent's shards are not read), if
    /// `username` owns it: one read.
    ///
    /// # Errors
    /// As [`Launcher::status`].
    pub async fn owned(&self, username: &str, id: &str) -> Result<Job, LauncherError> {
        match self.jobs().get_job(id).await {
            Ok(Some(job)) if job.username == username => Ok(job),
            Ok(_) | Err(StoreError::Malformed { .. }) => {
                Err(LauncherError::NotFound(id.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The job's events after sequence number `after`.
    ///
    /// # Errors
    /// As [`Launcher::status`].
    pub async fn events(
        &self,
        username: &str,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StreamEvent>, LauncherError> {
        // Only the owner check: following a parent must not read its
        // shards on every poll.
        self.owned(username, id).await?;
        Ok(self.jobs().events_after(id, after, limit).await?)
    }

    /// The user's jobs, newest first, optionally only those in `status`.
    ///
    /// # Errors
    /// Store errors.
    pub async fn list(
        &self,
        username: &str,
        status: Option<JobStatus>,
        start: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>, LauncherError> {
        let owner = jobs_owner(username);
        let Some(wanted) = status else {
            return Ok(self.jobs().list_jobs(&owner, start, limit).await?);
        };
        // Filter while paging, so a page holds `limit` matching jobs (or the
        // rest of them), not the matches among the newest `limit`.
        let mut items = Vec::new();
        let mut cursor = start.map(str::to_owned);
        loop {
            let page = self
                .jobs()
                .list_jobs(&owner, cursor.as_deref(), limit)
                .await?;
            let end = page.next.is_none();
            for job in page.items {
                if items.len() == limit {
                    // Full: continue after the last job looked at.
                    return Ok(Page {
                        items,
                        next: cursor,
                    });
                }
                cursor = Some(job.object_id.clone());
                if job.status() == wanted {
                    items.push(job);
                }
            }
            if end {
                return Ok(Page { items, next: None });
            }
            if items.len() == limit {
                return Ok(Page {
                    items,
                    next: cursor,
                });
            }
        }
    }

    /// Cancels a job: an INITIALIZING or INTERRUPTED job becomes CANCELLED
    /// at once; a RUNNING job gets `cancel_requested`, and its worker stops
    /// the script and writes CANCELLED.
    ///
    /// # Errors
    /// [`LauncherError::Conflict`] when the job already ended.
    pub async fn cancel(&self, username: &str, id: &str) -> Result<Job, LauncherError> {
        let first = self.status(username, id).await?;
        if crate::shards::is_parent(&first) && !is_terminal(first.status()) {
            // A sharded job is cancelled by cancelling every shard.
            for i in 0..first.shard_count {
                let shard = crate::shards::shard_id(id, i);
                match Box::pin(self.cancel(username, &shard)).await {
                    Ok(_) | Err(LauncherError::Conflict(_)) | Err(LauncherError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            return self.status(username, id).await;
        }
        let mut job = first;
        for _ in 0..5 {
            let status = job.status();
            if is_terminal(status) {
                return Err(LauncherError::Conflict(format!(
                    "job {id} already ended ({}); there is nothing to cancel",
                    status_name(status)
                )));
            }
            let now = Timestamp::now().to_string();
            let result = if status == JobStatus::Running {
                let patch = Job {
                    cancel_requested: true,
                    updated_at: now,
                    ..Job::default()
                };
                self.jobs()
                    .update_job(id, &Expect::status([JobStatus::Running]), &patch)
                    .await
            } else {
                match self
                    .transition(
                        id,
                        status,
                        JobStatus::Cancelled,
                        "cancelled on request before it ran",
                    )
                    .await
                {
                    Ok(done) => Ok(done),
                    Err(LauncherError::Store(e)) => Err(e),
                    Err(other) => return Err(other),
                }
            };
            match result {
                Ok(done) => {
                    // RUNNING: the worker notices the flag within a heartbeat;
                    // StopTask's SIGTERM makes sure, and the worker records
                    // CANCELLED because the flag is set. Otherwise the task
                    // (if it started) has nothing to do.
                    self.stop_task(&job, "cancelled on request (plus cancel)")
                        .await;
                    return Ok(done);
                }
                // It moved on between the read and the write: look again.
                Err(StoreError::Conflict { .. }) => job = self.status(username, id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LauncherError::Conflict(format!(
            "job {id} kept changing; try the cancel again"
        )))
    }

    /// Runs a job again. An INTERRUPTED job is relaunched as itself (the
    /// next attempt, resuming from its checkpoint); a finished job is copied
    /// into a new job (finished jobs never change).
    ///
    /// # Errors
    /// [`LauncherError::Conflict`] for a job that is still INITIALIZING or
    /// RUNNING, or out of attempts.
    pub async fn retry(
        &self,
        username: &str,
        id: &str,
        detach: bool,
    ) -> Result<Launched, LauncherError> {
        let job = self.status(username, id).await?;
        if crate::shards::is_parent(&job) {
            // A sharded job is retried through its shards: relaunch the
            // interrupted ones; finished shards never change.
            let mut relaunched = 0;
            for i in 0..job.shard_count {
                let shard = crate::shards::shard_id(id, i);
                if self.owned(username, &shard).await?.status() == JobStatus::Interrupted {
                    Box::pin(self.retry(username, &shard, true)).await?;
                    relaunched += 1;
                }
            }
            if relaunched == 0 {
                return Err(LauncherError::Conflict(format!(
                    "job {id} is sharded and none of its shards is INTERRUPTED: retry a finished shard on its own (plus retry {id}-s0 ...)"
                )));
            }
            let job = self.status(username, id).await?;
            return Ok(Launched {
                job,
                worker: None,
                created: false,
            });
        }
        match job.status() {
            JobStatus::Interrupted => self.relaunch(job, JobStatus::Interrupted, detach).await,
            status if is_terminal(status) => {
                let fresh = plus_jobs::job::new_job(
                    &plus_jobs::JobId::generate(),
                    &job.username,
                    job.run_mode(),
                    Timestamp::now(),
                );
                let copy = Job {
                    script: job.script,
                    params: job.params,
                    collection_owner: job.collection_owner,
                    action_id: job.action_id,
                    timeout_seconds: job.timeout_seconds,
                    max_attempts: job.max_attempts,
                    tolerated_failures: job.tolerated_failures,
                    tolerated_failure_percent: job.tolerated_failure_percent,
                    resources: job.resources,
                    ..fresh
                };
                self.jobs().create_job(&copy).await?;
                let (job, worker) = self.start(copy, detach).await?;
                Ok(Launched {
                    job,
                    worker,
                    created: true,
                })
            }
            status => Err(LauncherError::Conflict(format!(
                "job {id} is {}: only an INTERRUPTED or finished job can be retried",
                status_name(status)
            ))),
        }
    }

    /// The job's full log.
    ///
    /// # Errors
    /// As [`Launcher::status`]; blob store errors.
    pub async fn logs(&self, username: &str, id: &str) -> Result<Option<Vec<u8>>, LauncherError> {
        let job = self.status(username, id).await?;
        if job.log_key.is_empty() {
            return Ok(None);
        }
        Ok(self.backend.blobs.get_bytes(&job.log_key).await?)
    }

    /// Relaunches `job`, which is in `from` (INTERRUPTED, or INITIALIZING
    /// whose task stopped before any worker claimed it), as its next attempt
    /// while [`attempts_left`] allows; otherwise fails it with the reason.
    ///
    /// # Errors
    /// [`LauncherError::Conflict`] when the attempts are used up or the job
    /// moved on meanwhile.
    pub(crate) async fn relaunch(
        &self,
        job: Job,
        from: JobStatus,
        detach: bool,
    ) -> Result<Launched, LauncherError> {
        let id = job.object_id.clone();
        let attempt = job.attempt.unwrap_or(1) + 1;
        if !attempts_left(&job) {
            let max = job.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
            let reason = format!(
                "the job was interrupted and its {max} attempt{} are used up (max_attempts)",
                if max == 1 { "" } else { "s" }
            );
            self.fail(&id, from, &reason).await?;
            return Err(LauncherError::Conflict(format!(
                "job {id} cannot be relaunched: {reason}"
            )));
        }
        let patch = Job {
            status: JobStatus::Initializing as i32,
            attempt: Some(attempt),
            updated_at: Timestamp::now().to_string(),
            ..Job::default()
        };
        let job = self
            .jobs()
            .update_job(&id, &Expect::status([from]), &patch)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { reason, .. } => {
                    LauncherError::Conflict(format!("job {id} was not relaunched: {reason}"))
                }
                other => other.into(),
            })?;
        self.append_status(&id, JobStatus::Initializing).await;
        let (job, worker) = self.start(job, detach).await?;
        Ok(Launched {
            job,
            worker,
            created: false,
        })
    }
}
