//! The heartbeat: refreshes the lease's `heartbeat_at` every
//! `PLUS_HEARTBEAT_SECONDS`, and writes progress as soon as the work
//! changes it (which it does at most about once a second), never two
//! progress writes closer than [`PROGRESS_GAP`] (a write that carries
//! progress refreshes the lease too). Its answer also carries a cancel
//! request (-> [`StopReason::Cancelled`]) or shows a lost lease
//! (-> [`StopReason::LostLease`]).

use plus_jobs::{Expect, Job, JobStatus, StoreError, Timestamp};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{JobContext, StopReason};
use crate::output::progress::PROGRESS_GAP;

/// Refreshes `heartbeat_at` (and progress) while the job runs; notices a
/// cancel request and a lost lease. Ends between two writes once `done`
/// is cancelled.
pub(super) async fn heartbeat(ctx: JobContext, done: CancellationToken) {
    let expect = Expect::status([JobStatus::Running]).with_lease(&ctx.lease);
    let mut next_beat = Instant::now() + ctx.config.heartbeat;
    // When progress was last written: the next waits out the gap.
    let mut progress_written: Option<Instant> = None;
    loop {
        let progress_due = async {
            ctx.progress.changed().await;
            if let Some(at) = progress_written {
                sleep_until(at + PROGRESS_GAP).await;
            }
        };
        let beat = tokio::select! {
            () = done.cancelled() => return,
            () = sleep_until(next_beat) => true,
            () = progress_due => false,
            // The launcher asked for a look now (SIGUSR1 after it set
            // `cancel_requested`): read the record at once.
            () = crate::signals::check_requested() => true,
        };
        let progress = ctx.progress.take_changed();
        if !beat && progress.is_none() {
            // Woken for progress the last write already carried.
            continue;
        }
        let now = Timestamp::now().to_string();
        let patch = Job {
            heartbeat_at: now.clone(),
            updated_at: now,
            progress,
            ..Job::default()
        };
        if patch.progress.is_some() {
            progress_written = Some(Instant::now());
        }
        next_beat = Instant::now() + ctx.config.heartbeat;
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
            // The work ended meanwhile and its end was recorded first:
            // nothing was lost.
            Err(StoreError::Conflict { .. }) if done.is_cancelled() => return,
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
