//! [`LauncherError`]: what an operation says when it cannot do what was
//! asked, with the cause kept and retryable told apart from fatal.

use plus_jobs::{BlobError, StoreError};

use super::InvalidRequest;
use crate::runner::RunnerError;

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
    /// The runner could not start, stop or describe a worker; a job whose
    /// worker could not be started is FAILED with the same reason.
    #[error(transparent)]
    Runner(#[from] RunnerError),
}

impl LauncherError {
    /// Whether the same call may pass if tried again later (an unreachable
    /// store, ECS throttling or capacity); everything else is fatal for
    /// this request.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(StoreError::Unavailable(_)) => true,
            Self::Runner(e) => e.is_retryable(),
            _ => false,
        }
    }
}
