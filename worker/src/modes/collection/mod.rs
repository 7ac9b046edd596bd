//! RUN_COLLECTION: run the script over every item of a collection.
//!
//! ## How it works
//!
//! - [`reader`] streams the items (`JobStore::query_owner`, ascending
//!   `object_id`) page by page into a bounded channel: read-ahead is bounded,
//!   so memory does not grow with the collection. A shard reads only its
//!   range of ids ([`IdRange`]); one written before ranges existed keeps
//!   the items whose id hashes to it ([`shard_of`]). The total is known as
//!   soon as the reader reads the last page ([`Run::poll_total`]).
//! - The items run in one of two modes: [`per_item`] (one process per item,
//!   the item as JSON on stdin, `PLUS_ITEM_ID` set, bounded concurrency) or
//!   [`streaming`] (`script.streaming`: one long-lived process reads items
//!   as JSON lines on stdin and answers one JSON line per item on stdout).
//! - [`results`] commits finished items **in item order**: a result that
//!   finishes early waits (in a bounded window) until every item before it
//!   has finished. So `results.jsonl` is always an exact prefix of the
//!   collection, and the checkpoint (the last committed item id) is a true
//!   low-water mark. Lines go to a local file and, in parts, to the blob
//!   store (`jobs/{id}/results.parts/{attempt}/{n}.jsonl`); a part is stored
//!   before the checkpoint that covers it is handed to the heartbeat.
//! - A relaunched job (attempt + 1) resumes after `progress.checkpoint`, with
//!   the counters saved beside it. Each attempt writes a small manifest of
//!   which earlier parts (and which id ranges of them) hold the items up to
//!   its checkpoint; the final `results.jsonl` is those ranges followed by
//!   this attempt's lines: one line per item, none lost, none twice.

mod error;
pub mod item;
pub mod per_item;
pub mod reader;
pub mod results;
pub mod streaming;

use std::sync::{Arc, OnceLock};

use plus_jobs::{blob, JobStatus};
use serde_json::{json, Value};
use tracing::{info, warn};

pub use error::CollectionError;
pub use item::{shard_of, Done, IdRange, Item, Shard};

use crate::{
    job::{ending, Ending, Finish, JobContext, StopReason},
    script::{self, Prepared, Program, Workspace},
};

/// Items read from the store per page.
pub const PAGE_SIZE: usize = 1000;
/// Items read ahead of the running ones at most (the reader's channel).
pub const READ_AHEAD: usize = 2 * PAGE_SIZE;
/// Finished items that may wait for a slower earlier item at most; while
/// the window is full no new item starts, which bounds memory.
pub const WINDOW: usize = 4096;
/// Live `progress` events (and progress in the record) are written at
/// most this often.
pub use crate::output::progress::PROGRESS_EVERY;

/// How a mode's run over the items ended.
#[derive(Debug)]
pub enum Ended {
    /// Every item was attempted.
    Complete,
    /// The work was told to stop (the control's reason says why).
    Stopped,
    /// Something other than an item failed; the job fails with this reason.
    Fatal(CollectionError),
}

/// What the modes share: the job, the script's workspace and the results.
#[derive(Debug)]
pub struct Run<'a> {
    /// The job.
    pub ctx: &'a JobContext,
    /// The script's workspace.
    pub ws: Workspace,
    /// How to execute the script.
    pub program: Program,
    /// The job's params (PLUS_PARAMS).
    pub params: Value,
    /// How many per-item scripts run at once.
    pub concurrency: usize,
    /// Where finished items go.
    pub results: results::Results,
    /// Items in the collection for this job: committed before this attempt
    /// plus everything the reader found, once it reached the last page
    /// (until then, what an earlier attempt found).
    pub total: Option<u64>,
    /// Set by the reader as soon as it reads the last page (before that
    /// page's items are run): the items it reads in all.
    pub read_total: Arc<OnceLock<u64>>,
    last_progress: std::time::Instant,
    last_progress_event: Option<String>,
}

impl Run<'_> {
    /// The reader reached the end after `read` items: the total is known.
    pub fn set_read(&mut self, read: u64) {
        let total = self.results.committed_before() + read;
        if self.total == Some(total) {
            return;
        }
        self.total = Some(total);
        self.results.progress().update(|p| p.total = clamp(total));
    }

    /// Takes the total from the reader once it knows it (called from the
    /// modes' loops, so the total is in the record long before the end).
    pub fn poll_total(&mut self) {
        if let Some(read) = self.read_total.get().copied() {
            self.set_read(read);
        }
    }

    /// Writes a live `progress` event if the last one is old enough and
    /// the progress changed since (`force`: if it changed at all), so an
    /// item that runs for hours adds no events.
    pub fn maybe_progress_event(&mut self, force: bool) {
        if !force && self.last_progress.elapsed() < PROGRESS_EVERY {
            return;
        }
        let (succeeded, failed, checkpoint) = self.results.counts();
        let mut p = json!({ "succeeded": succeeded, "failed": failed, "checkpoint": checkpoint });
        if let Some(t) = self.total {
            p["total"] = json!(t);
        }
        let data = p.to_string();
        if self.last_progress_event.as_deref() == Some(data.as_str()) {
            return;
        }
        self.last_progress = std::time::Instant::now();
        self.last_progress_event = Some(data.clone());
        self.ctx.events.event(plus_jobs::EventKind::Progress, data);
    }
}

/// A count as the progress record stores it (saturating).
pub(crate) fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Runs the collection job: every item of `COLLECTION_OWNER` (of this shard),
/// resuming after the saved checkpoint.
pub async fn run(ctx: &JobContext) -> Ending {
    let job = &ctx.job;
    let owner = if job.collection_owner.is_empty() {
        ctx.config.collection_owner.clone().unwrap_or_default()
    } else {
        job.collection_owner.clone()
    };
    if owner.is_empty() {
        return Finish::failed(
            "the job names no collection: set collection_owner on the job (and COLLECTION_OWNER on the task)",
        )
        .into();
    }
    let script = job.script.clone().unwrap_or_default();
    let Prepared { ws, program } = match script::prepare(
        ctx.blobs.as_ref(),
        &script,
        &ctx.config.work_root,
        &job.object_id,
    )
    .await
    {
        Ok(prepared) => prepared,
        Err(e) => return Finish::failed(e.to_string()).into(),
    };
    let shard = (job.shard_count > 1).then_some(Shard {
        index: job.shard_index,
        count: job.shard_count,
    });
    if let Some(s) = shard {
        if s.index >= s.count {
            return Finish::failed(format!(
                "shard_index {} is out of range for shard_count {}: shards are numbered from 0",
                s.index, s.count
            ))
            .into();
        }
    }

    let results = match results::Results::open(ctx, &ws).await {
        Ok(r) => r,
        Err(e) => return Finish::failed(e.to_string()).into(),
    };
    // A shard with a range of ids reads only that range; the hash
    // partition is for shards written before ranges existed.
    let range = IdRange::of(job);
    let shard = if range.is_some() { None } else { shard };
    let start_after = results.resume_after().map(str::to_owned);
    if let Some(cp) = &start_after {
        info!(checkpoint = %cp, "resuming after the checkpoint");
        ctx.events.event(
            plus_jobs::EventKind::Stderr,
            format!(
                "[plus] resuming after item {cp}: {} items were already done",
                results.committed_before()
            ),
        );
    }
    let concurrency = concurrency(ctx).await;
    info!(
        owner = %owner,
        streaming = script.streaming,
        concurrency,
        shard = ?shard,
        "running the collection"
    );
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    let read_total = Arc::new(OnceLock::new());
    // Resume after the checkpoint, else start at the range's start.
    let start_after = start_after.or_else(|| {
        range
            .as_ref()
            .map(|r| r.after.clone())
            .filter(|a| !a.is_empty())
    });
    let reader = tokio::spawn(reader::read(
        ctx.jobs.clone(),
        owner.clone(),
        start_after,
        shard,
        range.map(|r| r.until).filter(|u| !u.is_empty()),
        tx,
        read_total.clone(),
    ));
    // A resumed attempt starts from the total its predecessor found.
    let total = ctx
        .job
        .progress
        .as_ref()
        .filter(|p| p.total > 0 && results.resume_after().is_some())
        .map(|p| u64::from(p.total));
    let mut run = Run {
        ctx,
        ws,
        program,
        params: ctx.params(),
        concurrency,
        results,
        total,
        read_total,
        last_progress: std::time::Instant::now(),
        last_progress_event: None,
    };
    let ended = if script.streaming {
        streaming::run(&mut run, rx).await
    } else {
        per_item::run(&mut run, rx).await
    };
    reader.abort();
    finish(run, ended).await
}

/// The number of per-item scripts run at once: `PLUS_CONCURRENCY`, else the
/// task's vCPUs (ECS metadata), else this machine's cores.
async fn concurrency(ctx: &JobContext) -> usize {
    if let Some(n) = ctx.config.concurrency {
        return n;
    }
    if let Some(uri) = &ctx.config.metadata_uri {
        if let Ok(m) = crate::metadata::fetch(uri).await {
            if let Some(cpu) = m.limits.and_then(|l| l.cpu).filter(|c| *c > 0.0) {
                return (cpu.ceil() as usize).max(1);
            }
        }
    }
    std::thread::available_parallelism().map_or(1, usize::from)
}

async fn finish(mut run: Run<'_>, ended: Ended) -> Ending {
    let ctx = run.ctx;
    // Whatever happened, store what is committed so the checkpoint is true.
    let stored = run.results.flush_all().await;
    run.poll_total();
    run.maybe_progress_event(true);
    let (succeeded, failed, _) = run.results.counts();
    let stop = ctx.control.reason();
    if let Err(e) = stored {
        return Finish::failed(e.to_string()).into();
    }
    if let Some(StopReason::LostLease(reason)) = stop {
        return Ending::LeaseLost(reason);
    }
    // An interrupted job keeps its parts for the next attempt; every other
    // end writes the whole results.jsonl.
    let composed = if stop == Some(StopReason::Interrupted) {
        Ok(())
    } else {
        run.results.compose().await
    };
    let outputs = script::upload_outputs(
        ctx.blobs.clone(),
        &ctx.job.object_id,
        &run.ws,
        ending::artifacts_deadline(ctx),
    )
    .await;
    let key = blob::results_key(&ctx.job.object_id);
    // The collection's size when known (an interrupted run may not have
    // reached the last page), never the items done so far.
    let mut summary = json!({
        "succeeded": succeeded, "failed": failed, "results_key": key,
    });
    if let Some(total) = run.total {
        summary["total"] = json!(total);
    }
    match ended {
        Ended::Stopped => match ending::stopped(ctx, stop.unwrap_or(StopReason::Cancelled), None) {
            Ending::Record(mut f) => {
                if f.status == JobStatus::Interrupted {
                    let of = run.total.map(|t| format!(" of {t}")).unwrap_or_default();
                    f.error = format!(
                        "{} ({} items{of} done, {} failed; a relaunch resumes after the checkpoint)",
                        f.error,
                        succeeded + failed,
                        failed
                    );
                }
                f.result = Some(summary);
                f.into()
            }
            lost => lost,
        },
        Ended::Fatal(reason) => Finish {
            result: Some(summary),
            ..Finish::failed(reason.to_string())
        }
        .into(),
        Ended::Complete => {
            if let Err(e) = composed {
                return Finish::failed(e.to_string()).into();
            }
            if let Some(problem) = outputs.problem("the job was stopped") {
                return Finish {
                    result: Some(summary),
                    ..Finish::failed(format!("every item ran, but {problem}"))
                }
                .into();
            }
            let total = run.total.unwrap_or(succeeded + failed);
            let mut f = Finish::succeeded(None, Some(summary));
            if let Some(reason) = tolerance_exceeded(&ctx.job, failed, total) {
                warn!(%reason, "too many items failed");
                f.status = JobStatus::Failed;
                f.error = reason;
            }
            f.into()
        }
    }
}

/// Why the job fails for its item failures, if it does: more than
/// `tolerated_failure_percent` percent, or (without a percentage) more than
/// `tolerated_failures` items (default 0).
/// The sentence sends the user to `plus results JOB`, which shows each
/// item's error.
pub fn tolerance_exceeded(job: &plus_jobs::Job, failed: u64, total: u64) -> Option<String> {
    let id = &job.object_id;
    if failed == 0 {
        return None;
    }
    if let Some(pct) = job.tolerated_failure_percent {
        let share = if total == 0 {
            0.0
        } else {
            failed as f64 * 100.0 / total as f64
        };
        return (share > f64::from(pct)).then(|| format!(
            "{failed} of {total} items failed ({share:.1}%), more than the {pct}% tolerated (tolerated_failure_percent); see each item's error with `plus results {id}`"
        ));
    }
    let allowed = u64::from(job.tolerated_failures.unwrap_or(0));
    (failed > allowed).then(|| format!(
        "{failed} of {total} items failed, more than the {allowed} tolerated (tolerated_failures); see each item's error with `plus results {id}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_counts_or_percentages() {
        let mut job = plus_jobs::Job::default();
        assert!(tolerance_exceeded(&job, 0, 10).is_none());
        assert!(tolerance_exceeded(&job, 1, 10)
            .unwrap()
            .contains("1 of 10 items failed, more than the 0 tolerated"));
        job.object_id = "j1".into();
        assert!(tolerance_exceeded(&job, 1, 10)
            .unwrap()
            .ends_with("see each item's error with `plus results j1`"));
        job.tolerated_failures = Some(2);
        assert!(tolerance_exceeded(&job, 2, 10).is_none());
        assert!(tolerance_exceeded(&job, 3, 10).is_some());
        job.tolerated_failure_percent = Some(25.0);
        assert!(tolerance_exceeded(&job, 2, 10).is_none());
        assert!(tolerance_exceeded(&job, 3, 10)
            .unwrap()
            .contains("(30.0%), more than the 25% tolerated"));
    }
}
