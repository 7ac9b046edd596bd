//! The final write: flush the stream, store the full log, then one
//! conditional write of the job's end that fits one DynamoDB item (kept
//! trying for `PLUS_STORE_PATIENCE_SECONDS`, or the grace period once a
//! SIGTERM came; a write refused for good becomes FAILED, never retried).
//! The write carries this attempt's usage (see [`super::usage`]); once it
//! is recorded, the job's metrics go to stdout ([`super::metrics`]).
//! Returns the worker's [`Outcome`].

use std::{path::Path, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use plus_jobs::{
    blob,
    job::{is_terminal, status_name},
    Expect, Job, JobStatus, StoreError, Timestamp, Usage,
};
use plus_proto::Attempt;
use serde_json::Value;
use tracing::{error, info, warn};

use super::{Ending, Finish, JobContext, StopReason};
use crate::{outcome::Outcome, script::offload_result};

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
    // SIGTERM came (perhaps after the script exited, while its outputs
    // were stored): the task is killed at stopTimeout, whatever the status.
    let terminating = interrupted
        || ctx
            .control
            .requested(|r| *r == StopReason::Interrupted)
            .is_some();
    // Otherwise a store that cannot be reached is waited for (the task is
    // alive and nobody asked it to stop) up to PLUS_STORE_PATIENCE_SECONDS,
    // unless a SIGTERM comes: then for the grace after it.
    let patience = if terminating {
        deadline
    } else {
        ctx.config.store_patience.max(deadline)
    };
    let retry = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(3))
        .with_max_times(usize::MAX)
        .with_total_delay(Some(patience));
    // Completes at `until`, or `deadline` after a SIGTERM that comes while
    // the end is recorded.
    let out_of_time = |until: tokio::time::Instant| async move {
        let sigterm = async {
            if terminating {
                return std::future::pending().await;
            }
            let at = ctx
                .control
                .until_requested(|r| *r == StopReason::Interrupted)
                .await;
            tokio::time::sleep_until(at + deadline).await;
        };
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = sigterm => {}
        }
    };

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
    // conditional write of the end. Each attempt's log has a key of its
    // own, so a relaunch never overwrites an earlier attempt's.
    let log_key = blob::attempt_log_key(&id, attempt(ctx));
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
    let (log_stored, flushed) = if terminating {
        tokio::time::timeout_at(started + deadline / 2, side_by_side)
            .await
            .unwrap_or((false, Err(StoreError::Unavailable("out of time".into()))))
    } else {
        let far = tokio::time::Instant::now() + patience + deadline;
        tokio::select! {
            done = side_by_side => done,
            () = out_of_time(far) => (false, Err(StoreError::Unavailable("out of time".into()))),
        }
    };
    if (!log_stored || flushed.is_err()) && !terminating {
        let far = tokio::time::Instant::now() + patience + deadline;
        let last = tokio::select! {
            done = flush.retry(retry).when(|e| e.is_transient()) => done,
            () = out_of_time(far) => Err(StoreError::Unavailable("out of time".into())),
        };
        if let Err(e) = last {
            warn!(error = %e, "the last events could not be written");
        }
    }
    let _ = tokio::fs::remove_file(log_path).await;

    let now = Timestamp::now().to_string();
    // To the millisecond, as recorded: usage and metrics agree with the
    // attempt's `started_at` and `ended_at`.
    let ended = Timestamp::parse(&now).unwrap_or_else(|_| Timestamp::now());
    // This attempt's usage, in the same write (the record's `usage` sums
    // the attempts').
    let used = super::usage::of_attempt(ctx, ended);
    let mut patch = Job {
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
        usage: Some(super::usage::total(&ctx.job, &used)),
        ..Job::default()
    };
    fit_in_one_item(ctx, &mut patch).await;
    patch.attempts = attempts(ctx, &patch, &used);
    let expect = Expect::status([JobStatus::Running]).with_lease(&ctx.lease);
    // Bounded as a whole (the SDK retries inside each attempt too), so
    // after a SIGTERM the worker answers within the grace period, well
    // inside stopTimeout.
    let until = if terminating {
        started + deadline
    } else {
        tokio::time::Instant::now() + patience
    };
    let (id_ref, expect_ref) = (&id, &expect);
    let write = |patch| {
        let give_up = out_of_time(until);
        async move {
            tokio::select! {
                written = write_retried(ctx, id_ref, expect_ref, patch, retry) => written,
                () = give_up => Err(StoreError::Unavailable(format!(
                    "no answer within {} s",
                    until.saturating_duration_since(started).as_secs()
                ).into())),
            }
        }
    };
    let mut written = write(&patch).await;
    // Fitting the item may have failed a result that could not be stored.
    let mut status = patch.status();
    let mut error = patch.error.clone();
    if let Err(StoreError::Rejected(reason)) = &written {
        // Refused for good (too large, a value the store cannot keep):
        // never retried as it is, and never left RUNNING without a word.
        error!(%reason, "the store refused the job's end; recording FAILED without the refused parts");
        status = JobStatus::Failed;
        error = cut(
            &format!(
                "the job ended {} ({}) but the store refused to record that ({reason}); its result is not in the record",
                status_name(finish.status),
                if finish.error.is_empty() { "no error" } else { &finish.error },
            ),
            ERROR_BYTES,
        );
        let fallback = Job {
            status: status as i32,
            completed_at: patch.updated_at.clone(),
            updated_at: patch.updated_at.clone(),
            heartbeat_at: patch.heartbeat_at.clone(),
            exit_code: patch.exit_code,
            error: error.clone(),
            log_key: patch.log_key.clone(),
            output_prefix: patch.output_prefix.clone(),
            usage: patch.usage,
            ..Job::default()
        };
        let fallback = Job {
            attempts: attempts(ctx, &fallback, &used),
            ..fallback
        };
        written = write(&fallback).await;
    }
    match written {
        Ok(_) => {
            info!(status = status_name(status), exit_code = ?finish.exit_code, error = %error, "recorded the job's end");
            super::metrics::JobMetrics::of(ctx, status, ended, used.cost_usd).emit();
            match status {
                JobStatus::Succeeded => Outcome::Succeeded,
                JobStatus::Cancelled => Outcome::Cancelled,
                JobStatus::Interrupted => Outcome::Interrupted,
                _ => Outcome::Failed(error),
            }
        }
        Err(StoreError::Conflict { reason, .. }) => Outcome::NotClaimable(format!(
            "job {id} changed hands before its end could be recorded ({reason}); nothing was overwritten"
        )),
        Err(StoreError::Rejected(reason)) => Outcome::StoreUnreachable(format!(
            "job {id} ended {} but the store refused to record it ({reason}); it is left RUNNING for the monitor",
            status_name(finish.status),
        )),
        Err(e) => Outcome::StoreUnreachable(format!(
            "job {id} ended {} but that could not be recorded: {e}",
            status_name(status),
        )),
    }
}

/// This attempt's number.
fn attempt(ctx: &JobContext) -> u32 {
    ctx.job.attempt.unwrap_or(1)
}

/// The record's `attempts` once this attempt's end `patch` is written: the
/// list as claimed (this worker holds the lease, so nobody else changed
/// it) with this attempt's entry last, in place of any entry of the same
/// number.
fn attempts(ctx: &JobContext, patch: &Job, used: &Usage) -> Vec<Attempt> {
    let number = attempt(ctx);
    let mut list: Vec<Attempt> = ctx
        .job
        .attempts
        .iter()
        .filter(|a| a.attempt != number)
        .cloned()
        .collect();
    list.push(Attempt {
        attempt: number,
        task: ctx.lease.clone(),
        // The claim wrote `heartbeat_at`, and the record as claimed is
        // what the context holds: this attempt's start.
        started_at: ctx.job.heartbeat_at.clone(),
        ended_at: patch.updated_at.clone(),
        status: patch.status,
        exit_code: patch.exit_code,
        error: cut(&patch.error, ERROR_BYTES),
        log_key: patch.log_key.clone(),
        usage: Some(*used),
    });
    list
}

/// One conditional write of `patch`, transient errors retried as `retry`
/// says.
async fn write_retried(
    ctx: &JobContext,
    id: &str,
    expect: &Expect,
    patch: &Job,
    retry: ExponentialBuilder,
) -> Result<Job, StoreError> {
    let write = || async { ctx.jobs.update_job(id, expect, patch).await };
    write.retry(retry).when(StoreError::is_transient).await
}

/// DynamoDB's item limit: 400 KB.
pub const ITEM_BYTES: usize = 400 * 1024;
/// Room kept free in the item for what the record gains between the claim
/// and the end (heartbeats, a cancel request) and for the estimate's error.
const ITEM_SLACK: usize = 16 * 1024;
/// The longest `error` written when the item has no room for more.
const ERROR_BYTES: usize = 2 * 1024;

/// Keeps the final write within one DynamoDB item: when the record as
/// claimed plus `patch` would pass [`ITEM_BYTES`], the result is stored as
/// `jobs/{id}/result.json` (the record points to it and says why), then
/// the error is cut.
async fn fit_in_one_item(ctx: &JobContext, patch: &mut Job) {
    let room = ITEM_BYTES - ITEM_SLACK;
    let size = estimated_item_bytes(&ctx.job, patch);
    if size <= room {
        return;
    }
    let id = &ctx.job.object_id;
    if let Some(result) = patch
        .result
        .as_ref()
        .and_then(|r| serde_json::to_vec(r).ok())
    {
        if result.len() > 1024 {
            let reason = format!(
                "the result ({} bytes) would make the job's record ({size} bytes) larger than DynamoDB's 400 KB item",
                result.len()
            );
            match offload_result(ctx.blobs.as_ref(), id, result, Some(reason)).await {
                Ok(pointer) => patch.result = serde_json::from_value(pointer).ok(),
                Err(e) => {
                    warn!(error = %e, "a result too large for the record could not be stored beside it");
                    patch.result = None;
                    patch.error = if patch.error.is_empty() {
                        e.to_string()
                    } else {
                        format!("{}; {e}", patch.error)
                    };
                    if patch.status == JobStatus::Succeeded as i32 {
                        patch.status = JobStatus::Failed as i32;
                    }
                }
            }
        }
    }
    let size = estimated_item_bytes(&ctx.job, patch);
    if size > room && patch.error.len() > ERROR_BYTES {
        patch.error = cut(&patch.error, ERROR_BYTES);
    }
}

/// The size of the job's item once `patch` is written, as JSON (a little
/// more than DynamoDB counts).
fn estimated_item_bytes(job: &Job, patch: &Job) -> usize {
    let (Ok(Value::Object(mut item)), Ok(Value::Object(patch))) =
        (serde_json::to_value(job), serde_json::to_value(patch))
    else {
        return 0;
    };
    item.extend(patch);
    serde_json::to_vec(&item).map_or(0, |b| b.len())
}

/// `text` cut to at most about `max` bytes on a character boundary, with a
/// marker.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut: the record has no room for more]", &text[..end])
}
