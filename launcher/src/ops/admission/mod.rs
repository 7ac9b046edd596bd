//! Admission: work beyond what may run at once waits as QUEUED instead of
//! failing, and starts, highest priority first, as soon as capacity frees.
//!
//! - [`limits`]: the [`Limits`] (read once from the environment).
//! - [`plan`](mod@plan): the pure planner, which jobs start now and why
//!   each other one waits.
//! - Here: the launch's admission ([`Launcher::admit`]) and the
//!   dispatcher ([`Launcher::dispatch`]).
//!
//! Running jobs are the unfinished ones that hold capacity (INITIALIZING,
//! RUNNING), read with the waiting ones through the store's
//! [`plus_jobs::JobStore::list_active`] (the sparse `active-index` on
//! DynamoDB: no Scan). A job is admitted by one conditional write QUEUED ->
//! INITIALIZING before its worker starts, so two dispatchers never start
//! it twice; RunTask's `clientToken` (job id + attempt) makes a repeated
//! start of the same attempt harmless. On the local backend the read, the
//! plan and the writes also hold an exclusive file lock
//! (`{PLUS_HOME}/admission.lock`), so concurrent `plus` processes never
//! admit more than `PLUS_MAX_RUNNING` between them. On AWS concurrent
//! launchers may overshoot `PLUS_MAX_VCPUS` for a moment; Fargate's own
//! quota refusal then sends the extra job back to QUEUED.

pub mod limits;
pub mod plan;

use std::collections::HashMap;

use plus_jobs::{job::status_name, Expect, Job, JobStatus, StoreError, Timestamp};
use serde::Serialize;

pub use limits::Limits;
pub use plan::{plan, Plan, Running, Waiting};

use super::{shards::rules::is_parent, Launcher, LauncherError};
use crate::runner::Runner;

/// What one dispatch did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Dispatched {
    /// The jobs admitted and started (or sent back to QUEUED by a refused
    /// RunTask), in order.
    pub started: Vec<String>,
    /// How many jobs still wait.
    pub waiting: usize,
}

/// An exclusive hold on admission (the local backend's lock file), released
/// when dropped; nothing on AWS.
#[derive(Debug)]
pub struct AdmissionGuard {
    _file: Option<nix::fcntl::Flock<std::fs::File>>,
}

impl Launcher {
    /// The vCPUs `job`'s task has: `resources.cpu` / 1024 when set, else
    /// `PLUS_DEFAULT_TASK_VCPUS`, else the task definition's (read once),
    /// else 0.25.
    pub async fn job_vcpus(&self, job: &Job) -> f64 {
        if let Some(cpu) = job.resources.as_ref().map(|r| r.cpu).filter(|c| *c > 0) {
            return f64::from(cpu) / 1024.0;
        }
        if let Some(v) = self.limits.default_task_vcpus {
            return v;
        }
        if let Runner::Ecs(ecs) = &self.runner {
            if let Some(v) = ecs.default_vcpus().await {
                return v;
            }
        }
        limits::FALLBACK_TASK_VCPUS
    }

    /// Holds admission for this process (local backend: an exclusive lock
    /// on `admission.lock` in the local folder; AWS: nothing).
    ///
    /// # Errors
    /// When the lock file cannot be opened.
    pub async fn admission_lock(&self) -> Result<AdmissionGuard, LauncherError> {
        let Runner::Local(local) = &self.runner else {
            return Ok(AdmissionGuard { _file: None });
        };
        let path = local.dir.join("admission.lock");
        let file = tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, errno)| std::io::Error::from(errno))
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|e| {
            LauncherError::Conflict(format!(
                "the admission lock in {} cannot be taken ({e}): check the folder's permissions",
                local.dir.display()
            ))
        })?;
        Ok(AdmissionGuard { _file: Some(file) })
    }

    /// Every unfinished job, through the active index.
    async fn active_jobs(&self) -> Result<Vec<Job>, LauncherError> {
        let mut jobs = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let page = self.jobs().list_active(start.as_deref(), 500).await?;
            jobs.extend(page.items);
            match page.next {
                Some(n) => start = Some(n),
                None => return Ok(jobs),
            }
        }
    }

    /// The running and the waiting among `jobs`, as the planner takes them.
    async fn split(&self, jobs: &[Job]) -> (Vec<Running>, Vec<Waiting>) {
        let mut running = Vec::new();
        let mut waiting = Vec::new();
        for job in jobs.iter().filter(|j| !is_parent(j)) {
            let vcpus = self.job_vcpus(job).await;
            match job.status() {
                JobStatus::Initializing | JobStatus::Running => running.push(Running {
                    username: job.username.clone(),
                    vcpus,
                }),
                JobStatus::Queued => waiting.push(Waiting {
                    id: job.object_id.clone(),
                    username: job.username.clone(),
                    priority: job.priority,
                    created_at: job.created_at.clone(),
                    vcpus,
                }),
                _ => {}
            }
        }
        (running, waiting)
    }

    /// The launch's admission of the new `job` (not yet written): when a
    /// limit says wait, it becomes QUEUED with its `queue_reason`. Returns
    /// the hold to keep until the record is written, and whether jobs that
    /// were waiting may start too (a dispatch is due).
    ///
    /// # Errors
    /// Store errors.
    pub(crate) async fn admit(
        &self,
        job: &mut Job,
    ) -> Result<(AdmissionGuard, bool), LauncherError> {
        if self.limits.unlimited() || is_parent(job) {
            return Ok((AdmissionGuard { _file: None }, false));
        }
        let guard = self.admission_lock().await?;
        let active = self.active_jobs().await?;
        let (running, mut waiting) = self.split(&active).await;
        let others = waiting.len();
        waiting.push(Waiting {
            id: job.object_id.clone(),
            username: job.username.clone(),
            priority: job.priority,
            created_at: job.created_at.clone(),
            vcpus: self.job_vcpus(job).await,
        });
        let plan = plan(&self.limits, &running, &waiting);
        if let Some((_, reason)) = plan.wait.iter().find(|(id, _)| *id == job.object_id) {
            job.status = JobStatus::Queued as i32;
            job.queue_reason = reason.clone();
        }
        let due = plan.start.iter().any(|id| *id != job.object_id) && others > 0;
        Ok((guard, due))
    }

    /// One dispatcher pass: reads the running and the waiting jobs, plans,
    /// admits each job to start (the conditional write QUEUED ->
    /// INITIALIZING; a lost race is skipped) and starts its worker, and
    /// rewrites the `queue_reason` of each job that still waits when it
    /// changed.
    ///
    /// # Errors
    /// Store errors before anything was admitted; a worker that cannot be
    /// started is recorded on its job (FAILED, or QUEUED again for capacity)
    /// and the pass goes on.
    pub async fn dispatch(&self) -> Result<Dispatched, LauncherError> {
        let guard = self.admission_lock().await?;
        let active = self.active_jobs().await?;
        let (running, waiting) = self.split(&active).await;
        if waiting.is_empty() {
            return Ok(Dispatched::default());
        }
        let plan = plan(&self.limits, &running, &waiting);
        let by_id: HashMap<&str, &Job> = active.iter().map(|j| (j.object_id.as_str(), j)).collect();
        let mut admitted = Vec::new();
        for id in &plan.start {
            let patch = Job {
                status: JobStatus::Initializing as i32,
                updated_at: Timestamp::now().to_string(),
                ..Job::default()
            };
            match self
                .jobs()
                .update_job(id, &Expect::status([JobStatus::Queued]), &patch)
                .await
            {
                Ok(job) => {
                    self.append_status(id, JobStatus::Initializing).await;
                    admitted.push(job);
                }
                // Another dispatcher admitted it, or it was cancelled.
                Err(StoreError::Conflict { .. }) => {}
                Err(e) if admitted.is_empty() => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(job_id = %id, error = %e, "could not admit a queued job");
                    break;
                }
            }
        }
        for (id, reason) in &plan.wait {
            if by_id
                .get(id.as_str())
                .is_some_and(|j| j.queue_reason == *reason)
            {
                continue;
            }
            let patch = Job {
                queue_reason: reason.clone(),
                ..Job::default()
            };
            let expect = Expect::status([JobStatus::Queued]);
            if let Err(e) = self.jobs().update_job(id, &expect, &patch).await {
                if !e.is_conflict() {
                    tracing::warn!(job_id = %id, error = %e, "could not update a queue reason");
                }
            }
        }
        drop(guard);
        let runner = self.detached();
        let mut started = Vec::new();
        for job in admitted {
            let id = job.object_id.clone();
            match runner.start(job).await {
                Ok((job, _)) => {
                    tracing::info!(job_id = %id, status = status_name(job.status()), "dispatched a queued job");
                    started.push(id);
                }
                Err(e) => {
                    tracing::warn!(job_id = %id, error = %e, "a dispatched job could not start")
                }
            }
        }
        Ok(Dispatched {
            started,
            waiting: plan.wait.len(),
        })
    }
}
