//! The monitor: finds jobs whose worker died without a word (a stale
//! heartbeat, a task that STOPPED, a task that never started) and settles
//! them: a relaunch after an interruption while attempts remain, otherwise
//! FAILED with a sentence that says what to fix.
//!
//! Run it on a schedule: `plus monitor` (a loop), `plus monitor --once`, or
//! the Lambda handler's `monitor` operation from an EventBridge rule.

use std::time::Duration;

use plus_jobs::{job::status_name, Job, JobStatus, StoreError, Timestamp};
use serde::Serialize;

pub mod event;
pub mod rules;

pub use rules::{classify, Verdict};

use super::{lifecycle::attempts_left, shards::rules::is_parent, Launcher, LauncherError};
use crate::runner::{TaskState, WorkerRef};
use rules::first_nonempty;

/// How patient the monitor is.
#[derive(Clone, Debug)]
pub struct Policy {
    /// A RUNNING job whose heartbeat is older than this is looked at.
    pub stale_after: Duration,
    /// An INITIALIZING job older than this whose task has not started fails.
    pub start_timeout: Duration,
    /// An INITIALIZING job with no task after this long (its launcher or
    /// dispatcher stopped between admitting it and starting it) is started
    /// again, with the same RunTask `clientToken`.
    pub restart_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(120),
            start_timeout: Duration::from_secs(600),
            restart_after: Duration::from_secs(30),
        }
    }
}

/// What the monitor did to one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Settled {
    /// The job.
    pub job_id: String,
    /// `relaunched`, `failed`, `cancelled`, `interrupted` or `stopped`.
    pub action: String,
    /// Why, as a sentence.
    pub reason: String,
}

fn age(ts: &str) -> Duration {
    Timestamp::parse(ts)
        .map(|t| Timestamp::now().since(t))
        .unwrap_or(Duration::MAX)
}

impl Launcher {
    /// One pass of the monitor over every unfinished job.
    ///
    /// # Errors
    /// Store or ECS errors that stop the pass; a job whose state moved on
    /// meanwhile is skipped, not an error.
    pub async fn monitor(&self, policy: &Policy) -> Result<Vec<Settled>, LauncherError> {
        let mut jobs = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let page = self.jobs().list_active(start.as_deref(), 500).await?;
            jobs.extend(page.items);
            match page.next {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        let workers: Vec<WorkerRef> = jobs
            .iter()
            .map(|j| WorkerRef::parse(&j.fargate_task_arn))
            .collect();
        let states = self.runner.describe(&workers).await?;
        let mut settled = Vec::new();
        for (job, worker) in jobs.iter().zip(&workers) {
            let result = self
                .look_after(job, worker, states.get(worker), policy)
                .await;
            match result {
                Ok(Some(s)) => {
                    tracing::info!(job_id = %s.job_id, action = %s.action, reason = %s.reason, "monitor settled a job");
                    settled.push(s);
                }
                Ok(None) => {}
                Err(LauncherError::Store(StoreError::Conflict { .. })) => {}
                Err(e) => {
                    tracing::warn!(job_id = %job.object_id, error = %e, "monitor could not settle a job")
                }
            }
        }
        // Capacity the pass freed (or that was free) goes to queued jobs.
        for job_id in self.dispatch().await?.started {
            settled.push(Settled {
                job_id,
                action: "started".into(),
                reason: "admitted from the queue".into(),
            });
        }
        Ok(settled)
    }

    async fn look_after(
        &self,
        job: &Job,
        worker: &WorkerRef,
        task: Option<&TaskState>,
        policy: &Policy,
    ) -> Result<Option<Settled>, LauncherError> {
        // A sharded job's parent runs no task: its state is its shards'.
        if is_parent(job) {
            return Ok(None);
        }
        let id = job.object_id.as_str();
        let settled = |action: &str, reason: String| {
            Ok(Some(Settled {
                job_id: id.to_owned(),
                action: action.to_owned(),
                reason,
            }))
        };
        let status = job.status();
        if status == JobStatus::Interrupted {
            if job.stopped_by_user {
                // A person stopped it: `plus retry` resumes it, not us.
                return Ok(None);
            }
            return self
                .relaunch_or_fail(job.clone(), "the job was interrupted")
                .await;
        }
        let stale = match status {
            JobStatus::Running => age(&job.heartbeat_at) > policy.stale_after,
            // From the current attempt's launch: a relaunch sets updated_at.
            _ => age(first_nonempty(&job.updated_at, &job.created_at)) > policy.start_timeout,
        };
        // Local workers: a dead process is as good as a stopped task.
        if let WorkerRef::Local { .. } = worker {
            match task {
                Some(TaskState::Alive { .. }) => return Ok(None),
                Some(_) => {
                    let reason = format!(
                        "the worker process ({worker}) died while the job was {} without recording an end",
                        status_name(status)
                    );
                    self.settle_failed(job, &reason).await?;
                    return settled("failed", reason);
                }
                // Another host's: it cannot be told from here.
                None => {}
            }
        }
        if status == JobStatus::Queued {
            // The dispatcher's, after this pass.
            return Ok(None);
        }
        let waited = age(first_nonempty(&job.updated_at, &job.created_at));
        if status == JobStatus::Initializing
            && matches!(worker, WorkerRef::None)
            && !stale
            && waited > policy.restart_after
        {
            // Admitted but never started (its launcher stopped in between):
            // start it now; the same clientToken makes a repeat harmless.
            let (started, _) = self.detached().start(job.clone()).await?;
            return settled(
                "started",
                format!(
                    "it was admitted {} s ago but no task was started; started it ({})",
                    waited.as_secs(),
                    status_name(started.status())
                ),
            );
        }
        if !matches!(worker, WorkerRef::Ecs { .. }) {
            if stale && status == JobStatus::Initializing {
                let reason = format!(
                    "no task was started for the job within {} s of its launch",
                    policy.start_timeout.as_secs()
                );
                self.settle_failed(job, &reason).await?;
                return settled("failed", reason);
            }
            return Ok(None);
        }
        match task {
            None if stale => {
                let reason = "its ECS task is gone (ECS forgets stopped tasks after about an hour) and the worker recorded no end".to_owned();
                self.settle_failed(job, &reason).await?;
                settled("failed", reason)
            }
            None => Ok(None),
            Some(TaskState::Stopped(task)) => {
                match rules::with_retry_rules(
                    classify(task, job.cancel_requested),
                    task,
                    &job.retry,
                ) {
                    Verdict::Spot(reason) | Verdict::Transient(reason) => {
                        // RUNNING -> INTERRUPTED, then relaunch; a task that
                        // stopped before any worker claimed it is relaunched
                        // from INITIALIZING (it was never running).
                        let job = if status == JobStatus::Running {
                            self.settle(job, JobStatus::Interrupted, &reason).await?
                        } else {
                            // Never claimed: the relaunch records the attempt.
                            let mut job = job.clone();
                            job.attempts.push(super::ended_attempt(
                                &job,
                                JobStatus::Interrupted,
                                &reason,
                            ));
                            job
                        };
                        self.relaunch_or_fail(job, &reason).await
                    }
                    Verdict::Cancelled => {
                        self.settle(
                            job,
                            JobStatus::Cancelled,
                            "cancelled on request; the task was stopped",
                        )
                        .await?;
                        settled(
                            "cancelled",
                            "the task was stopped after a cancel request".into(),
                        )
                    }
                    Verdict::Failed(reason) => {
                        self.settle_failed(job, &reason).await?;
                        settled("failed", reason)
                    }
                }
            }
            Some(TaskState::Alive { status: task }) if stale => {
                let reason = match status {
                    JobStatus::Running => format!(
                        "its heartbeat is {} s old while the task is {task}: the worker is stuck or cut off; the task was stopped",
                        age(&job.heartbeat_at).as_secs(),
                    ),
                    _ => format!("the task did not start within {} s (it is {task}); it was stopped", policy.start_timeout.as_secs()),
                };
                self.stop_worker(job, &reason).await;
                if status == JobStatus::Initializing {
                    self.settle_failed(job, &reason).await?;
                    return settled("failed", reason);
                }
                // The stopped worker records INTERRUPTED itself, or the next
                // pass classifies the stopped task.
                settled("stopped", reason)
            }
            Some(_) => Ok(None),
        }
    }

    async fn relaunch_or_fail(
        &self,
        job: Job,
        why: &str,
    ) -> Result<Option<Settled>, LauncherError> {
        let id = job.object_id.clone();
        let from = job.status();
        let out_of_attempts = !attempts_left(&job);
        match self.detached().relaunch(job, from).await {
            Ok(launched) => Ok(Some(Settled {
                job_id: id,
                action: "relaunched".into(),
                reason: format!(
                    "{why}; relaunched as attempt {}",
                    launched.job.attempt.unwrap_or(2)
                ),
            })),
            // `relaunch` recorded FAILED with the reason.
            Err(LauncherError::Conflict(reason)) if out_of_attempts => Ok(Some(Settled {
                job_id: id,
                action: "failed".into(),
                reason: format!("{why}: {reason}"),
            })),
            Err(e) => Err(e),
        }
    }
}
