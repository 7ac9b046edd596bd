//! What this attempt used: the task's size times the time from the claim
//! to the end, and its cost at the configured Fargate prices. The final
//! write adds it to the record's `usage` (as claimed: this worker holds
//! the lease, so nobody else changed it) and to the attempt's entry.

use plus_jobs::{
    pricing::{self, TaskSize},
    Job, Timestamp, Usage,
};

use super::JobContext;
use crate::config::Config;

/// The size the job's task has: the job's `resources` (what the launcher
/// asked Fargate for) where set, else what the task reports (ECS metadata,
/// `PLUS_TASK_CPU`/`PLUS_TASK_MEMORY`), else the smallest Fargate task.
pub fn task_size(config: &Config, job: &Job) -> TaskSize {
    let task = config.task_size.unwrap_or(TaskSize::SMALLEST);
    let asked = job.resources.as_ref();
    TaskSize {
        vcpus: asked
            .map(|r| r.cpu)
            .filter(|c| *c > 0)
            .map_or(task.vcpus, |c| f64::from(c) / 1024.0),
        gib: asked
            .map(|r| r.memory)
            .filter(|m| *m > 0)
            .map_or(task.gib, |m| f64::from(m) / 1024.0),
    }
}

/// Seconds from this attempt's claim (the `heartbeat_at` the claim wrote)
/// to `end`.
pub fn attempt_seconds(job: &Job, end: Timestamp) -> f64 {
    Timestamp::parse(&job.heartbeat_at).map_or(0.0, |claimed| end.since(claimed).as_secs_f64())
}

/// This attempt's usage, ending at `end`.
pub fn of_attempt(ctx: &JobContext, end: Timestamp) -> Usage {
    let job = &ctx.job;
    let spot = job.resources.as_ref().is_some_and(|r| r.spot);
    pricing::usage(
        task_size(&ctx.config, job),
        attempt_seconds(job, end),
        ctx.config.prices.map(|p| p.rate(spot)),
    )
}

/// The record's usage once `attempt` is added to what it held at the claim.
pub fn total(job: &Job, attempt: &Usage) -> Usage {
    pricing::sum(job.usage.as_ref(), Some(attempt))
}
