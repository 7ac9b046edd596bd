//! RUN_COLLECTION: run the script over every item of a collection.

use crate::{
    progress::ProgressCell,
    runner::{Finish, JobContext},
};

/// Runs the collection job.
pub async fn run(_ctx: &JobContext, _progress: &ProgressCell) -> Finish {
    Finish::failed("RUN_COLLECTION is not available in this build")
}
