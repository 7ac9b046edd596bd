//! The final write: flush the stream, store the full log, then one
//! conditional write of the job's end (kept trying until the grace period
//! runs out). Returns the worker's [`Outcome`].

use std::{path::Path, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use plus_jobs::{
    blob,
    job::{is_terminal, status_name},
    Expect, Job, JobStatus, StoreError, Timestamp,
};
use tracing::{error, info, warn};

use super::{Ending, Finish, JobContext};
use crate::outcome::Outcome;

/// Records how the job ended. `log_ok` says whether the log file at
/// `log_path` is complete (only a complete log is stored); the file is
/// removed either way.
pub async fn record(ctx: &JobContext, ending: Ending, log_ok: bool, log_path: &Path) -> Outcome {
    let id = ctx.job.object_id.clone();
    let finish = match ending {
        Ending::Record(finish) => finish,
        Ending::LeaseLost(reason) => {
            let _ = ctx.events.flush().await;
            let _ = tokio::fs::remove_file(log_path).await;
            return Outcome::NotClaimable(format!(
                "job {id} was taken over while it ran ({reason}); nothing more was recorded"
            ));
        }
    };
    let deadline = ctx.config.grace.max(Duration::from_secs(5));
    // After SIGTERM the task is killed at stopTimeout: recording as a whole
    // (log, last events, final write) then fits in one grace period, the
    // log and events taking at most half of it. A normal end has no such
    // limit, so a large log is never cut short.
    let started = tokio::time::Instant::now();
    let interrupted = finish.status == JobStatus::Interrupted;
    let retry = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(3))
        .with_max_times(usize::MAX)
        .with_total_delay(Some(deadline));

    // A cancel often arrives as the flag and then StopTask's SIGTERM: the
    // job was cancelled, not interrupted.
    let mut finish = finish;
    if interrupted && matches!(ctx.jobs.get_job(&id).await, Ok(Some(j)) if j.cancel_requested) {
        finish = Finish::cancelled(finish.exit_code);
    }
    let status = finish.status;
    ctx.events
        .event(plus_jobs::EventKind::Status, status_name(status));
    if let Some(p) = ctx.progress.take_changed() {
        ctx.events.event(
            plus_jobs::EventKind::Progress,
            serde_json::to_string(&p).unwrap_or_default(),
        );
    }

    // The full log and the last events go out side by side; then the one
    // conditional write of the end.
    let log_key = blob::log_key(&id);
    let store_log = async {
        if !log_ok {
            return false;
        }
        let put = || async {
            ctx.blobs
                .put_file(&log_key, log_path, "text/plain; charset=utf-8")
                .await
        };
        match put.retry(retry).when(|e| e.is_transient()).await {
            Ok(()) => true,
            Err(e) => {
                error!(error = %e, "the full log could not be stored");
                ctx.events.event(
                    plus_jobs::EventKind::Stderr,
                    format!("[plus] the full log could not be stored: {e}"),
                );
                false
            }
        }
    };
    // Owned (not borrowing `ctx`), so the future of `record` stays `Send`
    // for any caller that spawns `lifecycle::execute`.
    let events = &ctx.events;
    let flush = || {
        let events = events.clone();
        async move { events.flush().await }
    };
    let side_by_side =
        async { tokio::join!(store_log, flush.retry(retry).when(|e| e.is_transient())) };
    let (log_stored, flushed) = if interrupted {
        tokio::time::timeout_at(started + deadline / 2, side_by_side)
            .await
            .unwrap_or((false, Err(StoreError::Unavailable("out of time".into()))))
    } else {
        side_by_side.await
    };
    if (!log_stored || flushed.is_err()) && !interrupted {
        if let Err(e) = flush.retry(retry).when(|e| e.is_transient()).await {
            warn!(error = %e, "the last events could not be written");
        }
    }
    let _ = tokio::fs::remove_file(log_path).await;

    let now = Timestamp::now().to_string();
    let patch = Job {
        status: status as i32,
        updated_at: now.clone(),
        completed_at: if is_terminal(status) {
            now.clone()
        } else {
            String::new()
        },
        heartbeat_at: now,
        exit_code: finish.exit_code,
        error: finish.error.clone(),
        result: finish
            .result
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok()),
        log_key: if log_stored { log_key } else { String::new() },
        output_prefix: blob::output_prefix(&id),
        progress: ctx.progress.current(),
        ..Job::default()
    };
    let expect = Expect::status([JobStatus::Running]).with_lease(&ctx.lease);
    let write = || async { ctx.jobs.update_job(&id, &expect, &patch).await };
    // Bounded as a whole (the SDK retries inside each attempt too), so the
    // worker answers within the grace period, well inside stopTimeout.
    let until = if interrupted {
        started + deadline
    } else {
        tokio::time::Instant::now() + deadline
    };
    let written = tokio::time::timeout_at(until, write.retry(retry).when(StoreError::is_transient))
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                format!("no answer within {} s", deadline.as_secs()).into(),
            ))
        });
    match written {
        Ok(_) => {
            info!(status = status_name(status), exit_code = ?finish.exit_code, error = %finish.error, "recorded the job's end");
            match status {
                JobStatus::Succeeded => Outcome::Succeeded,
                JobStatus::Cancelled => Outcome::Cancelled,
                JobStatus::Interrupted => Outcome::Interrupted,
                _ => Outcome::Failed(finish.error),
            }
        }
        Err(StoreError::Conflict { reason, .. }) => Outcome::NotClaimable(format!(
            "job {id} changed hands before its end could be recorded ({reason}); nothing was overwritten"
        )),
        Err(e) => Outcome::StoreUnreachable(format!(
            "job {id} ended {} but that could not be recorded within {} s: {e}",
            status_name(status),
            deadline.as_secs()
        )),
    }
}
