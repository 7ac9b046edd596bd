//! How a job's work ended, before it is recorded: an [`Ending`] is either a
//! [`Finish`] to write, or a lost lease (nothing more is written).

use serde_json::Value;

use super::{JobContext, StopReason};
use crate::script::{Exit, Outputs, ScriptError};
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

/// `ending` with the job's retry rules (`retry`, AWS Batch's
/// `evaluateOnExit` shape) applied: a FAILED end whose first matching rule
/// says RETRY is recorded INTERRUPTED instead, while `max_attempts`
/// allows, so the next attempt runs (the monitor, an ECS event, or on the
/// local backend the following `plus` relaunches it; a collection resumes
/// from its checkpoint). The rules see the exit code, and the error
/// sentence as both `on_reason` and `on_status_reason`. EXIT, no match, or
/// no attempt left: FAILED as before.
pub fn with_retry_rules(ctx: &JobContext, ending: Ending) -> Ending {
    use plus_jobs::retry::{attempts_left, decide, Failure, RetryAction};
    let Ending::Record(finish) = ending else {
        return ending;
    };
    if finish.status != JobStatus::Failed || ctx.job.retry.is_empty() {
        return finish.into();
    }
    let failure = Failure {
        exit_code: finish.exit_code,
        reason: &finish.error,
        status_reason: &finish.error,
    };
    if decide(&ctx.job.retry, &failure) != Some(RetryAction::Retry) {
        return finish.into();
    }
    let attempt = ctx.job.attempt.unwrap_or(1);
    if !attempts_left(&ctx.job) {
        return Finish {
            error: format!(
                "{}; a retry rule would try it again, but its {attempt} attempt(s) are used up (max_attempts)",
                finish.error
            ),
            ..finish
        }
        .into();
    }
    Finish {
        status: JobStatus::Interrupted,
        error: format!(
            "{}; a retry rule tries it again as attempt {}",
            finish.error,
            attempt + 1
        ),
        ..finish
    }
    .into()
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

/// Completes when what a finished script left (its result and outputs)
/// may no longer be stored: half the grace period after a SIGTERM or a
/// cancel (the other half is for the final write), at once when the lease
/// is lost. A timeout does not end it: the script exited within its limit.
pub async fn artifacts_deadline(ctx: &JobContext) {
    let control = &ctx.control;
    let stop =
        control.until_requested(|r| matches!(r, StopReason::Interrupted | StopReason::Cancelled));
    tokio::select! {
        at = stop => tokio::time::sleep_until(at + ctx.config.grace / 2).await,
        _ = control.until_requested(|r| matches!(r, StopReason::LostLease(_))) => {}
    }
}

/// The [`Ending`] of a script that exited, or was stopped for `stopped_for`,
/// with what storing its result and its outputs gave.
pub fn from_exit(
    ctx: &JobContext,
    exit: Exit,
    stopped_for: Option<StopReason>,
    result: Result<Option<Value>, ScriptError>,
    outputs: &Outputs,
) -> Ending {
    let control = &ctx.control;
    // Another writer owns the job, whenever that was noticed: nothing more
    // is written.
    for request in control.requests() {
        if let StopReason::LostLease(reason) = request {
            return Ending::LeaseLost(reason);
        }
    }
    if let Some(reason) = stopped_for {
        return stopped(ctx, reason, Some(exit));
    }
    // It exited on its own: a stop or a limit that came later may have cut
    // the storing of what it left short, never its outcome.
    let terminated = control
        .requested(|r| *r == StopReason::Interrupted)
        .is_some();
    let cancelled = !terminated && control.requested(|r| *r == StopReason::Cancelled).is_some();
    let stop = if terminated {
        "the task was stopped (SIGTERM: a Spot interruption, StopTask or a deploy); `plus retry` runs the job again"
    } else {
        "the job was cancelled"
    };
    let outputs_problem = outputs.problem(stop);
    if !exit.success() {
        let error = match outputs_problem {
            Some(p) => format!("{}; {p}", exit.describe()),
            None => exit.describe(),
        };
        return Finish {
            exit_code: Some(exit.code()),
            result: result.ok().flatten(),
            ..Finish::failed(error)
        }
        .into();
    }
    let (result, result_problem) = match result {
        Ok(result) => (result, None),
        Err(problem) => (None, Some(problem.to_string())),
    };
    let problems: Vec<String> = result_problem.into_iter().chain(outputs_problem).collect();
    if problems.is_empty() {
        return Finish::succeeded(Some(0), result).into();
    }
    let status = if cancelled && outputs.stopped {
        JobStatus::Cancelled
    } else {
        JobStatus::Failed
    };
    Finish {
        status,
        exit_code: Some(0),
        error: format!("the script exited 0, but {}", problems.join("; ")),
        result,
    }
    .into()
}
