//! What the port speaks: what a runner knows about a
//! worker (in the monitor's terms, not ECS's), its errors, and the
//! environment contract both adapters hand the worker.

use plus_jobs::{
    contract::{AwsSettings, WorkerEnv},
    Job,
};

/// What a runner knows about a worker, in the monitor's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskState {
    /// Starting or running; `status` is the runner's word for it
    /// (`PROVISIONING`, `RUNNING`, ...).
    Alive {
        /// The runner's status word.
        status: String,
    },
    /// A local worker process that is gone, with no word on how it ended.
    Vanished,
    /// A task that stopped, and how.
    Stopped(StoppedTask),
}

/// How a stopped task ended: its stop code and reason, and the exit of the
/// worker's own container (never a sidecar's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoppedTask {
    /// The runner's stop code (`SpotInterruption`, `TaskFailedToStart`, ...).
    pub stop_code: String,
    /// Why it stopped, in the runner's words.
    pub reason: String,
    /// The name the worker's container should have (`CONTAINER_NAME`).
    pub container: String,
    /// The worker's container, when the task has one by that name.
    pub worker: Option<ContainerExit>,
}

/// How the worker's container ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerExit {
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Why it ended, in the runner's words.
    pub reason: String,
}

/// Why a runner could not start, stop or describe a worker. The message is
/// the sentence recorded as the job's `error`; the cause is kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The local worker program could not be started.
    #[error("the worker could not be started ({program}: {source}): build it with `cargo build --release` or set PLUS_WORKER_BIN")]
    Spawn {
        /// The worker program and its leading arguments.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An ECS call failed or was refused.
    #[error("{message}")]
    Ecs {
        /// What failed and what to do, as a sentence.
        message: String,
        /// Whether trying again later may pass (throttling, capacity).
        retryable: bool,
        /// The SDK's error, when there was one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The request cannot be sent as it is (nothing was called).
    #[error("{0}")]
    Invalid(String),
}

impl RunnerError {
    /// Whether trying again later may pass.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Ecs {
                retryable: true,
                ..
            }
        )
    }
}

/// The container contract of DESIGN.md for `job` on the stores `stores`:
/// [`plus_jobs::contract::WorkerEnv`], the one type the worker reads back.
/// Both adapters build the worker's environment with it.
///
/// # Errors
/// [`RunnerError::Invalid`] when the job's id cannot be a worker's `JOB_ID`.
pub fn worker_env(job: &Job, stores: &AwsSettings) -> Result<Vec<(String, String)>, RunnerError> {
    WorkerEnv::for_job(job, stores)
        .map(|env| env.to_vars())
        .map_err(|e| {
            RunnerError::Invalid(format!("job {:?} cannot be started: {e}", job.object_id))
        })
}
