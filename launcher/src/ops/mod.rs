//! # The operations
//!
//! The one place the launcher's logic lives: launch, status, events,
//! cancel, list, retry, logs and the monitor, as methods of [`Launcher`].
//! The CLI, the JSON operations and the HTTP API are thin faces over it;
//! nothing here prints.
//!
//! - [`admission`]: limits, the queue and the dispatcher (work waits as
//!   QUEUED instead of failing).
//! - [`request`]: the launch request and its validation.
//! - [`resources`]: Fargate's task-size rules.
//! - [`lifecycle`]: cancel, retry and relaunch.
//! - [`shards`]: one collection job fanned out across N tasks.
//! - [`monitor`]: settling jobs whose worker died without a word.
//! - [`data`]: collections and actions as data.
//! - [`schedules`]: launches on a cron or rate expression.
//! - [`views`]: what a job shows: attempts and logs, outputs, results.

pub mod admission;
pub mod data;
mod error;
pub mod lifecycle;
pub mod monitor;
pub mod request;
pub mod resources;
pub mod schedules;
pub mod shards;
pub mod views;

use std::sync::Arc;

use plus_jobs::{
    contract::OwnerPath,
    job::{is_terminal, jobs_owner, status_name, DEFAULT_EVENT_TTL_DAYS},
    Backend, Expect, Job, JobStatus, JobStore, Page, StoreError, StreamEvent, Timestamp,
};

pub use error::LauncherError;
pub use request::{InvalidRequest, LaunchRequest};

use crate::runner::{LocalWorker, Runner, WorkerRef};

/// A launched job, and its worker process when it runs locally.
#[derive(Debug)]
pub struct Launched {
    /// The job as written.
    pub job: Job,
    /// The local worker, when the job runs on this machine.
    pub worker: Option<LocalWorker>,
    /// Whether this call created the job (false: a retried launch found it).
    pub created: bool,
}

/// A job's events after a sequence number, and its record as read just
/// before them (for a sharded parent: as last aggregated).
#[derive(Debug)]
pub struct JobEvents {
    /// The record, read first.
    pub job: Job,
    /// The events, in sequence order.
    pub events: Vec<StreamEvent>,
}

/// The `attempts` entry of `job`'s current attempt, ended now as `status`
/// with `error`, written by whoever settles an attempt its worker left
/// without a word. An attempt no worker claimed has no `started_at`.
pub fn ended_attempt(job: &Job, status: JobStatus, error: &str) -> plus_proto::Attempt {
    let attempt = job.attempt.unwrap_or(1);
    let started_at = match job.status() {
        JobStatus::Initializing | JobStatus::Unspecified => String::new(),
        // Later attempts began after the one before ended.
        _ => job
            .attempts
            .iter()
            .rev()
            .find(|a| a.attempt + 1 == attempt)
            .map(|a| a.ended_at.clone())
            .filter(|_| attempt > 1)
            .unwrap_or_else(|| job.started_at.clone()),
    };
    plus_proto::Attempt {
        attempt,
        task: job.fargate_task_arn.clone(),
        started_at,
        ended_at: Timestamp::now().to_string(),
        status: status as i32,
        exit_code: None,
        error: error.to_owned(),
        log_key: String::new(),
        // Its worker died without a word: nothing measured it.
        usage: None,
    }
}

/// What [`Launcher::create`] found.
enum Created {
    /// The record was written.
    New(Job),
    /// A job with that id exists already (a retried launch).
    Existing(Job),
}

/// The launcher: the stores, and where workers run.
#[derive(Clone, Debug)]
pub struct Launcher {
    backend: Backend,
    runner: Runner,
    limits: admission::Limits,
    scheduler: schedules::Scheduler,
}

impl Launcher {
    /// A launcher over `backend` whose workers run on `runner`, with no
    /// limit on what runs at once (see [`Launcher::with_limits`]).
    pub fn new(backend: Backend, runner: Runner) -> Self {
        Self {
            backend,
            runner,
            limits: admission::Limits::default(),
            scheduler: schedules::Scheduler::Local,
        }
    }

    /// The same launcher, admitting work within `limits`.
    #[must_use]
    pub fn with_limits(mut self, limits: admission::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits it admits work within.
    pub fn limits(&self) -> &admission::Limits {
        &self.limits
    }

    /// The job store.
    pub(crate) fn jobs(&self) -> &Arc<dyn JobStore> {
        &self.backend.jobs
    }

    /// The local backend's feed of Job State Change events (`None` on AWS,
    /// where they go to `EVENT_BUS`).
    pub fn state_changes(&self) -> Option<&plus_jobs::store::sqlite::SqliteStore> {
        self.backend.changes.as_ref()
    }

    /// The same launcher, with local workers kept in this process's group
    /// (Ctrl-C reaches them and they save their job as INTERRUPTED): for a
    /// caller that follows the job it launches to its end.
    #[must_use]
    pub fn following(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            runner: self.runner.attached(true),
            limits: self.limits.clone(),
            scheduler: self.scheduler.clone(),
        }
    }

    /// The same launcher, with local workers in their own process group
    /// (they outlive this process): for work this call does not follow.
    fn detached(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            runner: self.runner.attached(false),
            limits: self.limits.clone(),
            scheduler: self.scheduler.clone(),
        }
    }

    /// Validates `req`, writes the record (only if no job has its id), and
    /// starts its worker; when a limit says wait, the record is QUEUED with
    /// its `queue_reason` and no worker starts (the dispatcher starts it).
    /// A worker that cannot be started leaves the job FAILED with the
    /// reason, never INITIALIZING; one refused for capacity, quota or
    /// throttling leaves it QUEUED.
    ///
    /// # Errors
    /// [`LauncherError::Invalid`] before any write; store errors; and
    /// [`LauncherError::Runner`] after recording the failure.
    pub async fn launch(&self, req: &LaunchRequest) -> Result<Launched, LauncherError> {
        match self.create(req, |_| {}).await? {
            Created::Existing(job) => Ok(Launched {
                job,
                worker: None,
                created: false,
            }),
            Created::New(job) if job.status() == JobStatus::Queued => Ok(Launched {
                job,
                worker: None,
                created: true,
            }),
            Created::New(job) => self.start(job).await.map(|(job, worker)| Launched {
                job,
                worker,
                created: true,
            }),
        }
    }

    /// Validates `req`, stores a large script, and writes the record
    /// (shaped by `shape`) unless a job has its id: then a retried launch
    /// finds that job (the first launch started, or failed to start, its
    /// worker).
    async fn create(
        &self,
        req: &LaunchRequest,
        shape: impl FnOnce(&mut Job),
    ) -> Result<Created, LauncherError> {
        let mut prepared = request::prepare(req)?;
        if req.run_mode == plus_jobs::RunMode::RunAction {
            // Only the user's own action runs; anything else reads as missing.
            let id = prepared.job.action_id.as_str();
            let action = data::get_action(self.jobs().as_ref(), &req.username, id)
                .await
                .map_err(|e| match e {
                    data::DataError::Store(e) => LauncherError::Store(e),
                    _ => InvalidRequest::NotFound(request::action_not_found(id, &req.username))
                        .into(),
                })?;
            // A job of an action gets the action's retry rules unless it
            // has its own.
            if prepared.job.retry.is_empty() {
                prepared.job.retry = action.retry;
            }
            // And the action's secrets, the job's own over them by name.
            prepared.job.secrets =
                plus_jobs::secrets::merged(&action.secrets, &prepared.job.secrets);
            request::check_secrets(&prepared.job.secrets, &req.username)?;
        }
        self.runner
            .check_env_secrets(&prepared.job)
            .map_err(InvalidRequest::Field)?;
        if let Some((key, bytes)) = &prepared.upload {
            self.backend
                .blobs
                .put_bytes(key, bytes.clone(), "text/plain")
                .await?;
        }
        let mut job = prepared.job;
        shape(&mut job);
        // The hold on admission lasts until the record is written.
        let (admission, dispatch_due) = self.admit(&mut job).await?;
        match self.jobs().create_job(&job).await {
            Ok(()) => {
                drop(admission);
                if dispatch_due {
                    // Jobs were waiting while capacity was free (their
                    // dispatcher did not run): start them now.
                    if let Err(e) = self.detached().dispatch().await {
                        tracing::warn!(error = %e, "dispatch after a launch failed");
                    }
                }
                Ok(Created::New(job))
            }
            Err(StoreError::Conflict { .. }) => {
                match self.status(&req.username, &job.object_id).await {
                    Err(LauncherError::NotFound(id)) => Err(LauncherError::Conflict(format!(
                        "the job id {id} is taken: choose another id, or leave it out for a new one"
                    ))),
                    other => other.map(Created::Existing),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Starts the worker of a written job and records which worker it is.
    /// A worker that cannot be started leaves the job FAILED with the
    /// runner's reason.
    pub(crate) async fn start(
        &self,
        job: Job,
    ) -> Result<(Job, Option<LocalWorker>), LauncherError> {
        let started = match self.runner.start(&job).await {
            Ok(started) => started,
            // Capacity, quota or throttling after the runner's retries: the
            // job waits for the dispatcher instead of failing.
            Err(e) if e.is_retryable() => {
                let patch = Job {
                    status: JobStatus::Queued as i32,
                    queue_reason: format!("the task could not start yet: {e}"),
                    updated_at: Timestamp::now().to_string(),
                    ..Job::default()
                };
                let expect = Expect::status([JobStatus::Initializing]);
                let job = match self
                    .jobs()
                    .update_job(&job.object_id, &expect, &patch)
                    .await
                {
                    Ok(job) => {
                        self.append_status(&job.object_id, JobStatus::Queued).await;
                        job
                    }
                    Err(StoreError::Conflict { .. }) => {
                        self.jobs().get_job(&job.object_id).await?.unwrap_or(job)
                    }
                    Err(e) => return Err(e.into()),
                };
                return Ok((job, None));
            }
            Err(e) => {
                self.fail(&job.object_id, JobStatus::Initializing, &e.to_string())
                    .await?;
                return Err(e.into());
            }
        };
        let patch = Job {
            fargate_task_arn: started.worker.to_string(),
            updated_at: if started.provisional {
                String::new()
            } else {
                Timestamp::now().to_string()
            },
            ..Job::default()
        };
        let written = self
            .jobs()
            .update_job(
                &job.object_id,
                &Expect::status([JobStatus::Initializing]),
                &patch,
            )
            .await;
        let job = match written {
            Ok(job) => job,
            // Best effort: the worker overwrites a provisional id when it
            // claims.
            Err(_) if started.provisional => job,
            // The worker may already have claimed it (and written the same
            // task ARN): then the record is right as it is.
            Err(StoreError::Conflict { .. }) => {
                self.jobs().get_job(&job.object_id).await?.unwrap_or(job)
            }
            Err(e) => return Err(e.into()),
        };
        Ok((job, started.process))
    }

    /// Stops the job's worker, if the runner can (best effort: a task that
    /// already stopped is fine).
    pub async fn stop_worker(&self, job: &Job, reason: &str) {
        let worker = WorkerRef::parse(&job.fargate_task_arn);
        if let Err(e) = self.runner.stop(&worker, reason).await {
            tracing::warn!(error = %e, job_id = %job.object_id, "StopTask failed");
        }
    }

    /// Settles a job whose local worker process ended (`how`: "exited with
    /// code 3", "was killed") while the job was `status` with no end
    /// recorded: FAILED, with the worker's last error line when its log has
    /// one.
    ///
    /// # Errors
    /// Store errors.
    pub async fn worker_ended(
        &self,
        id: &str,
        status: JobStatus,
        how: &str,
    ) -> Result<(), LauncherError> {
        let last_words = self.runner.last_words(id);
        let reason = format!(
            "the worker {how} while the job was {} without recording an end{}",
            status_name(status),
            last_words.map(|w| format!(": {w}")).unwrap_or_default()
        );
        match self.jobs().get_job(id).await? {
            Some(job) if job.status() == status => self.settle_failed(&job, &reason).await,
            _ => self.fail(id, status, &reason).await,
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
        self.write_status(id, from, to, error, Vec::new()).await
    }

    /// Settles `job`, whose worker ended its attempt without a word (it
    /// died, its task stopped, it never started): the conditional write
    /// from its status to `to` with `error` also appends that attempt's
    /// entry to `attempts`.
    ///
    /// # Errors
    /// As [`Launcher::transition`].
    pub(crate) async fn settle(
        &self,
        job: &Job,
        to: JobStatus,
        error: &str,
    ) -> Result<Job, LauncherError> {
        let mut attempts = job.attempts.clone();
        attempts.push(ended_attempt(job, to, error));
        self.write_status(&job.object_id, job.status(), to, error, attempts)
            .await
    }

    /// [`Launcher::settle`] to FAILED; a lost race is not an error (the
    /// other writer wins).
    ///
    /// # Errors
    /// Store errors.
    pub(crate) async fn settle_failed(&self, job: &Job, reason: &str) -> Result<(), LauncherError> {
        match self.settle(job, JobStatus::Failed, reason).await {
            Ok(_) | Err(LauncherError::Store(StoreError::Conflict { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// [`Launcher::transition`] that also writes `attempts` (when not
    /// empty) in the same conditional write.
    pub(crate) async fn write_status(
        &self,
        id: &str,
        from: JobStatus,
        to: JobStatus,
        error: &str,
        attempts: Vec<plus_proto::Attempt>,
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
            attempts,
            ..Job::default()
        };
        let job = self
            .jobs()
            .update_job(id, &Expect::status([from]), &patch)
            .await?;
        self.append_status(id, to).await;
        Ok(job)
    }

    pub(crate) async fn append_status(&self, id: &str, status: JobStatus) {
        let event = plus_jobs::event::stream_event(
            id,
            plus_jobs::EventKind::Status,
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
        if shards::rules::is_parent(&job) {
            return self.aggregate(job).await;
        }
        Ok(job)
    }

    /// The job record `id` as stored (a parent's shards are not read), if
    /// `username` owns it (its `owner` path is the user's and so is its
    /// `username`): one read.
    ///
    /// # Errors
    /// As [`Launcher::status`].
    pub async fn owned(&self, username: &str, id: &str) -> Result<Job, LauncherError> {
        let mine = |job: &Job| {
            job.username == username
                && OwnerPath::parse(&job.owner).is_ok_and(|o| o.belongs_to(username))
        };
        match self.jobs().get_job(id).await {
            Ok(Some(job)) if mine(&job) => Ok(job),
            Ok(_) | Err(StoreError::Malformed { .. }) => {
                Err(LauncherError::NotFound(id.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The job's events after sequence number `after`, with its record as
    /// stored, read just before them. Only the owner check: polling a
    /// sharded parent reads and writes none of its shards.
    ///
    /// # Errors
    /// As [`Launcher::status`].
    pub async fn events(
        &self,
        username: &str,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<JobEvents, LauncherError> {
        let job = self.owned(username, id).await?;
        let events = self.jobs().events_after(id, after, limit).await?;
        Ok(JobEvents { job, events })
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
}
