//! [`Outcome`]: how a worker run ended, and its exit code.

/// How a worker run ended; each maps to one exit code of DESIGN.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The job SUCCEEDED and that is recorded (exit 0).
    Succeeded,
    /// The job FAILED and that is recorded (exit 1).
    Failed(String),
    /// The job was CANCELLED and that is recorded (exit 1).
    Cancelled,
    /// SIGTERM: the job is INTERRUPTED with its state saved (exit 143).
    Interrupted,
    /// The configuration is wrong; nothing was written (exit 2).
    BadConfig(String),
    /// The job does not exist or may not be claimed (exit 3).
    NotClaimable(String),
    /// The store could not be reached; the outcome may not be recorded (exit 4).
    StoreUnreachable(String),
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Succeeded => 0,
            Outcome::Failed(_) | Outcome::Cancelled => 1,
            Outcome::BadConfig(_) => 2,
            Outcome::NotClaimable(_) => 3,
            Outcome::StoreUnreachable(_) => 4,
            Outcome::Interrupted => 143,
        }
    }
}
