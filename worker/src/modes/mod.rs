//! The three run modes, each from a claimed [`JobContext`] to an
//! [`Ending`]:
//!
//! - [`script`]: RUN_SCRIPT, the job's script once.
//! - [`action`]: RUN_ACTION, a stored Action's script once, its default
//!   params under the job's.
//! - [`collection`]: RUN_COLLECTION, the script over every item of a
//!   collection (per item, or one streaming process).
//!
//! Modes use the job, script and output layers; nothing below imports them.

pub mod action;
pub mod collection;
pub mod script;

use plus_jobs::RunMode;

use crate::job::{Ending, Finish, JobContext};

/// Runs the job's mode to its end. Its secrets are resolved first (for
/// RUN_ACTION, once the action's are known): a secret that is refused or
/// cannot be read fails the job before any script starts.
pub async fn run(ctx: &JobContext) -> Ending {
    if ctx.job.run_mode() != RunMode::RunAction {
        if let Err(finish) = crate::job::secrets::resolve(ctx, None).await {
            return finish.into();
        }
    }
    match ctx.job.run_mode() {
        RunMode::RunScript => script::run(ctx).await,
        RunMode::RunAction => action::run(ctx).await,
        RunMode::RunCollection => collection::run(ctx).await,
        RunMode::Unspecified => Finish::failed("the job has no run_mode").into(),
    }
}
