//! A job's later life: cancel, retry, and the relaunch of an interrupted
//! job as its next attempt (shared by `plus retry` and the monitor).

use plus_jobs::{
    job::{is_terminal, status_name},
    Expect, Job, JobStatus, StoreError, Timestamp,
};

use super::{
    shards::rules::{is_parent, shard_id},
    Launched, Launcher, LauncherError,
};
use crate::runner::WorkerRef;

/// Attempts a job gets when it does not say (`max_attempts`): an
/// interruption (SIGTERM, Spot) is not the job's fault, so it is relaunched.
pub use plus_jobs::retry::DEFAULT_MAX_ATTEMPTS;

/// Whether `job` may run another attempt (`max_attempts`, default
/// [`DEFAULT_MAX_ATTEMPTS`]). The one rule `plus retry` and the monitor share.
pub fn attempts_left(job: &Job) -> bool {
    job.attempt.unwrap_or(1) < job.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
}

/// The `error` of a job a person stopped: what happened and how to resume.
pub fn stopped_by_user_reason(id: &str) -> String {
    format!(
        "stopped by you (Ctrl-C on plus run); its state was saved: `plus retry {id}` resumes it"
    )
}

impl Launcher {
    /// Cancels a job: an INITIALIZING or INTERRUPTED job becomes CANCELLED
    /// at once; a RUNNING job gets `cancel_requested`, and its worker stops
    /// the script and writes CANCELLED.
    ///
    /// # Errors
    /// [`LauncherError::Conflict`] when the job already ended.
    pub async fn cancel(&self, username: &str, id: &str) -> Result<Job, LauncherError> {
        let first = self.status(username, id).await?;
        if is_parent(&first) && !is_terminal(first.status()) {
            // A sharded job is cancelled by cancelling every shard.
            for i in 0..first.shard_count {
                let shard = shard_id(id, i);
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
                let why = if status == JobStatus::Interrupted {
                    "cancelled on request while it was INTERRUPTED; it will not be resumed"
                } else {
                    "cancelled on request before it ran"
                };
                match self.transition(id, status, JobStatus::Cancelled, why).await {
                    Ok(done) => Ok(done),
                    Err(LauncherError::Store(e)) => Err(e),
                    Err(other) => return Err(other),
                }
            };
            match result {
                Ok(done) => {
                    if status == JobStatus::Running {
                        // A local worker reads the flag at once.
                        let holder = if done.lease.is_empty() {
                            &done.fargate_task_arn
                        } else {
                            &done.lease
                        };
                        self.runner.wake(&WorkerRef::parse(holder));
                    }
                    // RUNNING: the worker notices the flag within a heartbeat;
                    // StopTask's SIGTERM makes sure, and the worker records
                    // CANCELLED because the flag is set. Otherwise the task
                    // (if it started) has nothing to do.
                    self.stop_worker(&job, "cancelled on request (plus cancel)")
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

    /// Marks an INTERRUPTED `job` as stopped by a person (Ctrl-C on `plus
    /// run`), so the monitor leaves it for `plus retry` instead of
    /// relaunching it, and words its `error` so: one conditional write that
    /// expects INTERRUPTED.
    ///
    /// # Errors
    /// Store errors; a job that moved on meanwhile is returned as it is now.
    pub async fn stopped_by_user(&self, job: &Job) -> Result<Job, LauncherError> {
        let id = &job.object_id;
        let patch = Job {
            stopped_by_user: true,
            error: stopped_by_user_reason(id),
            ..Job::default()
        };
        match self
            .jobs()
            .update_job(id, &Expect::status([JobStatus::Interrupted]), &patch)
            .await
        {
            Ok(job) => Ok(job),
            Err(StoreError::Conflict { .. }) => Ok(self
                .jobs()
                .get_job(id)
                .await?
                .unwrap_or_else(|| job.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a job again. An INTERRUPTED job is relaunched as itself (the
    /// next attempt, resuming from its checkpoint); a finished job is copied
    /// into a new job (finished jobs never change).
    ///
    /// # Errors
    /// [`LauncherError::Conflict`] for a job that is still INITIALIZING or
    /// RUNNING, or out of attempts.
    pub async fn retry(&self, username: &str, id: &str) -> Result<Launched, LauncherError> {
        let job = self.status(username, id).await?;
        if is_parent(&job) {
            // A sharded job is retried through its shards: relaunch the
            // interrupted ones; finished shards never change.
            let mut relaunched = 0;
            for i in 0..job.shard_count {
                let shard = shard_id(id, i);
                if self.owned(username, &shard).await?.status() == JobStatus::Interrupted {
                    Box::pin(self.detached().retry(username, &shard)).await?;
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
            JobStatus::Interrupted => self.relaunch(job, JobStatus::Interrupted).await,
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
                    name: job.name,
                    secrets: job.secrets,
                    // A shard's copy runs that shard's items, not the
                    // whole collection; its parent_id keeps it from being
                    // read as a parent, and the parent (finished) is
                    // unchanged.
                    shard_index: job.shard_index,
                    shard_count: job.shard_count,
                    shard_after: job.shard_after,
                    shard_until: job.shard_until,
                    parent_id: job.parent_id,
                    ..fresh
                };
                // Its `env:` secrets come from this command's environment.
                self.runner
                    .check_env_secrets(&copy)
                    .map_err(super::InvalidRequest::Field)?;
                self.jobs().create_job(&copy).await?;
                let (job, worker) = self.start(copy).await?;
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
    ) -> Result<Launched, LauncherError> {
        let id = job.object_id.clone();
        let attempt = job.attempt.unwrap_or(1) + 1;
        if !attempts_left(&job) {
            let max = job.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
            let reason = format!(
                "the job was interrupted and its {max} attempt{} are used up (max_attempts)",
                if max == 1 { "" } else { "s" }
            );
            match self
                .write_status(&id, from, JobStatus::Failed, &reason, job.attempts.clone())
                .await
            {
                Ok(_) | Err(LauncherError::Store(StoreError::Conflict { .. })) => {}
                Err(e) => return Err(e),
            }
            return Err(LauncherError::Conflict(format!(
                "job {id} cannot be relaunched: {reason}"
            )));
        }
        // `attempts` as the caller has them: the monitor adds the entry of
        // an attempt whose task stopped before it was claimed.
        let patch = Job {
            status: JobStatus::Initializing as i32,
            attempt: Some(attempt),
            updated_at: Timestamp::now().to_string(),
            attempts: job.attempts.clone(),
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
        let (job, worker) = self.start(job).await?;
        Ok(Launched {
            job,
            worker,
            created: false,
        })
    }
}
