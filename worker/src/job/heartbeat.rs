//! The heartbeat: refreshes the lease's `heartbeat_at` and writes progress
//! every `PLUS_HEARTBEAT_SECONDS`; its answer also carries a cancel request
//! (-> [`StopReason::Cancelled`]) or shows a lost lease
//! (-> [`StopReason::LostLease`]).

use plus_jobs::{Expect, Job, JobStatus, StoreError, Timestamp};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{JobContext, StopReason};

/// Refreshes `heartbeat_at` (and progress) while the job runs; notices a
/// cancel request and a lost lease.
pub(super) async fn heartbeat(ctx: JobContext, done: CancellationToken) {
    let expect = Expect::status([JobStatus::Running]).with_lease(&ctx.lease);
    while ctx.control.next_look(ctx.config.heartbeat, &done).await {
        let now = Timestamp::now().to_string();
        let mut patch = Job {
            heartbeat_at: now.clone(),
            updated_at: now,
            ..Job::default()
        };
        if let Some(p) = ctx.progress.take_changed() {
            ctx.events.event(
                plus_jobs::EventKind::Progress,
                serde_json::to_string(&p).unwrap_or_default(),
            );
            patch.progress = Some(p);
        }
        match ctx
            .jobs
            .update_job(&ctx.job.object_id, &expect, &patch)
            .await
        {
            Ok(job) if job.cancel_requested => {
                info!("cancel requested; stopping the script");
                ctx.control.stop(StopReason::Cancelled);
            }
            Ok(_) => {}
            Err(StoreError::Conflict { reason, .. }) => {
                error!(%reason, "lost the job's lease; stopping without recording");
                ctx.control.stop(StopReason::LostLease(reason));
                return;
            }
            Err(e) => {
                if patch.progress.is_some() {
                    ctx.progress.mark_unwritten();
                }
                warn!(error = %e, "heartbeat failed; will retry");
            }
        }
    }
}
