//! # Where workers run: the runner port
//!
//! [`Runner`] is the one place that chooses between the adapters:
//! [`local`] (the worker as a child process with the Fargate task's
//! environment) and [`ecs`] (one Fargate task per attempt). The operations
//! ([`crate::ops`]) only call its verbs: [`Runner::start`],
//! [`Runner::stop`], [`Runner::describe`], [`Runner::last_words`] and
//! [`Runner::attached`]; [`worker_env`] (in [`port`]) is the container
//! contract both adapters hand the worker. The local child process and
//! whether it is detached stay inside [`local`].
//!
//! A job's worker is named by a [`WorkerRef`], parsed once from the
//! record; what a runner knows about it is a [`TaskState`], in the
//! monitor's terms rather than ECS's.

pub mod ecs;
pub mod local;
pub mod port;
mod worker_ref;

use std::collections::HashMap;

use plus_jobs::Job;

pub use ecs::EcsRunner;
pub use local::{LocalRunner, LocalWorker};
pub use port::{worker_env, ContainerExit, RunnerError, StoppedTask, TaskState};
pub use worker_ref::WorkerRef;

/// Where jobs run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Runner {
    /// Child processes on this machine.
    Local(LocalRunner),
    /// ECS Fargate tasks.
    Ecs(Box<EcsRunner>),
    /// No runner: the AWS backend without its ECS settings, enough to read
    /// records. Starting a worker is refused with `why` (the settings that
    /// are missing and how to set them).
    Unconfigured {
        /// The sentence a start is refused with.
        why: String,
    },
}

/// A started worker.
#[derive(Debug)]
pub struct Started {
    /// What the record should name as its worker.
    pub worker: WorkerRef,
    /// The worker process, when it runs on this machine (to follow it).
    pub process: Option<LocalWorker>,
    /// Whether [`Started::worker`] is only a placeholder the worker
    /// overwrites when it claims (a local pid), rather than the one true id
    /// (a task ARN) that must be on the record.
    pub provisional: bool,
}

impl Runner {
    /// Starts the worker of `job`'s current attempt.
    ///
    /// # Errors
    /// [`RunnerError`] with the sentence to record on the job.
    pub async fn start(&self, job: &Job) -> Result<Started, RunnerError> {
        match self {
            Self::Local(local) => {
                let process = local.start(job)?;
                Ok(Started {
                    worker: process.worker_ref(),
                    process: Some(process),
                    provisional: true,
                })
            }
            // Boxed: the SDK's futures are deep, and every face awaits this.
            Self::Unconfigured { why } => Err(RunnerError::Invalid(why.clone())),
            Self::Ecs(ecs) => Ok(Started {
                worker: WorkerRef::Ecs {
                    task_arn: Box::pin(ecs.run_task(job)).await?,
                },
                process: None,
                provisional: false,
            }),
        }
    }

    /// Checks that the job's `env:` secrets can reach its worker: only a
    /// local worker gets them, from this process's environment, where each
    /// variable must be set.
    ///
    /// # Errors
    /// A sentence naming the secret, its variable and what to do.
    pub fn check_env_secrets(&self, job: &Job) -> Result<(), String> {
        for (name, var) in local::env_refs(job) {
            match self {
                Self::Local(_) if std::env::var_os(&var).is_some() => {}
                Self::Local(_) => {
                    return Err(format!(
                        "secret {name} reads env:{var}, but {var} is not set in this command's environment: export {var} first (nothing was written)"
                    ))
                }
                _ => {
                    return Err(format!(
                        "secret {name} (env:{var}): env: references work on the local backend only; on AWS store the value in Secrets Manager under {} or in SSM under {} and reference that (nothing was written)",
                        plus_jobs::secrets::secrets_manager_prefix(&job.username),
                        plus_jobs::secrets::ssm_prefix(&job.username),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Stops `worker` (its worker gets SIGTERM, then SIGKILL after the
    /// grace period). Only ECS tasks are stopped; a local worker is stopped
    /// through its job's `cancel_requested`.
    ///
    /// # Errors
    /// The runner's error.
    pub async fn stop(&self, worker: &WorkerRef, reason: &str) -> Result<(), RunnerError> {
        match (self, worker) {
            (Self::Ecs(ecs), WorkerRef::Ecs { task_arn }) => ecs.stop(task_arn, reason).await,
            _ => Ok(()),
        }
    }

    /// Asks `worker` to read its job's record now rather than at its next
    /// heartbeat (after `cancel_requested` was set): a local worker process
    /// on this machine gets SIGUSR1. Best effort; an ECS task is left to its
    /// heartbeat and [`Runner::stop`].
    pub fn wake(&self, worker: &WorkerRef) {
        local::wake(worker);
    }

    /// What is known of each worker. A local process on this machine is
    /// looked up whatever the runner; ECS tasks when the runner is ECS. A
    /// worker that cannot be told about from here (another host, a task ECS
    /// forgot) is left out of the map.
    ///
    /// # Errors
    /// The runner's error.
    pub async fn describe(
        &self,
        workers: &[WorkerRef],
    ) -> Result<HashMap<WorkerRef, TaskState>, RunnerError> {
        let mut found: HashMap<WorkerRef, TaskState> = workers
            .iter()
            .filter_map(|w| Some((w.clone(), local::state(w)?)))
            .collect();
        if let Self::Ecs(ecs) = self {
            let arns: Vec<String> = workers
                .iter()
                .filter_map(|w| match w {
                    WorkerRef::Ecs { task_arn } => Some(task_arn.clone()),
                    _ => None,
                })
                .collect();
            for (task_arn, state) in ecs.describe(&arns).await? {
                found.insert(WorkerRef::Ecs { task_arn }, state);
            }
        }
        Ok(found)
    }

    /// A copy whose local workers stay in this process's group (`attach`:
    /// Ctrl-C reaches them too, for a caller that follows the job to its
    /// end) or run in their own. ECS tasks are unaffected.
    #[must_use]
    pub fn attached(&self, attach: bool) -> Self {
        match self {
            Self::Local(local) => Self::Local(LocalRunner {
                attach,
                ..local.clone()
            }),
            other => other.clone(),
        }
    }

    /// The last error line the job's worker wrote to its own log, when the
    /// runner keeps that log on this machine.
    pub fn last_words(&self, job_id: &str) -> Option<String> {
        match self {
            Self::Local(local) => local::last_words(&local.worker_log(job_id)),
            Self::Ecs(_) | Self::Unconfigured { .. } => None,
        }
    }
}
