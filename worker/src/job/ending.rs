//! How a job's work ended, before it is recorded: an [`Ending`] is either a
//! [`Finish`] to write, or a lost lease (nothing more is written).

use serde_json::Value;

use super::{JobContext, StopReason};
use crate::script::{Exit, ScriptError};
use plus_jobs::JobStatus;

/// How the work of a job ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Ending {
    /// The end to record, with one conditional write.
    Record(Finish),
    /// Another writer took the job while it ran (the reason says who or
    /// why): this worker stops without writing anything more.
    LeaseLost(String),
}

impl From<Finish> for Ending {
    fn from(finish: Finish) -> Self {
        Ending::Record(finish)
    }
}

/// A terminal or interrupted end to record. Never RUNNING: a lost lease is
/// [`Ending::LeaseLost`].
#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    /// The status to record.
    pub status: JobStatus,
    /// The exit code to record.
    pub exit_code: Option<i32>,
    /// The error to record (empty on success).
    pub error: String,
    /// The result to record.
    pub result: Option<Value>,
}

impl Finish {
    /// The same finish with `exit_code`.
    pub fn with_exit(mut self, exit_code: Option<i32>) -> Self {
        self.exit_code = exit_code;
        self
    }

    /// A failure before or around the script, with a reason.
    pub fn failed(error: impl Into<String>) -> Self {
        Finish {
            status: JobStatus::Failed,
            exit_code: None,
            error: error.into(),
            result: None,
        }
    }

    /// A success with `result`.
    pub fn succeeded(exit_code: Option<i32>, result: Option<Value>) -> Self {
        Finish {
            status: JobStatus::Succeeded,
            exit_code,
            error: String::new(),
            result,
        }
    }

    /// CANCELLED on request.
    pub fn cancelled(exit_code: Option<i32>) -> Self {
        Finish {
            status: JobStatus::Cancelled,
            exit_code,
            error: "cancelled on request; the script was stopped".into(),
            result: None,
        }
    }
}

/// The [`Ending`] of work that was told to stop for `reason`.
pub fn stopped(ctx: &JobContext, reason: StopReason, exit: Option<Exit>) -> Ending {
    let exit_code = exit.map(Exit::code);
    let grace = ctx.config.grace.as_secs_f64();
    let finish = match reason {
        StopReason::Cancelled => Finish::cancelled(exit_code),
        StopReason::TimedOut(limit) => Finish {
            exit_code,
            ..Finish::failed(format!("the script ran past its limit of {limit} s (timeout_seconds) and was stopped: raise timeout_seconds or make the script faster"))
        },
        StopReason::Interrupted => Finish {
            status: JobStatus::Interrupted,
            exit_code,
            error: format!("the task was stopped (SIGTERM: a Spot interruption, StopTask or a deploy); the script was given {grace} s to exit and the job's state was saved: `plus retry` or the monitor relaunches it"),
            result: None,
        },
        StopReason::LostLease(reason) => return Ending::LeaseLost(reason),
    };
    Ending::Record(finish)
}

/// The [`Ending`] of a script that exited (or was stopped), with what
/// reading its result gave.
pub fn from_exit(
    ctx: &JobContext,
    exit: Exit,
    result: Result<Option<Value>, ScriptError>,
) -> Ending {
    if let Some(reason) = ctx.control.reason() {
        return stopped(ctx, reason, Some(exit));
    }
    Ending::Record(match (exit.success(), result) {
        (true, Ok(result)) => Finish::succeeded(Some(0), result),
        (true, Err(problem)) => Finish {
            exit_code: Some(0),
            ..Finish::failed(problem.to_string())
        },
        (false, result) => Finish {
            exit_code: Some(exit.code()),
            result: result.ok().flatten(),
            ..Finish::failed(exit.describe())
        },
    })
}
