//! The job's metrics with no agent and no API call: one CloudWatch
//! Embedded Metric Format (EMF) record, printed on stdout as a JSON line of
//! its own when the end of an attempt is recorded. CloudWatch Logs turns it
//! into metrics in the `PlusWorker` namespace.
//!
//! The record follows the EMF specification: a top-level `_aws` object
//! with `Timestamp` (milliseconds since the epoch) and one metric
//! directive, and every metric and dimension as a top-level member of the
//! same object. The dimensions are `RunMode` and `Status` only (few
//! values, so few metrics); the job id and the attempt ride along as
//! plain properties, searchable in Logs Insights but not dimensions.

use std::io::Write;

use plus_jobs::{
    job::{run_mode_name, status_name},
    JobStatus, RunMode, Timestamp,
};
use serde_json::{json, Value};

use super::JobContext;

/// The namespace the metrics land in.
pub const NAMESPACE: &str = "PlusWorker";

/// The metrics of one attempt's end.
#[derive(Clone, Debug, PartialEq)]
pub struct JobMetrics {
    /// The job id (a property, not a dimension).
    pub job_id: String,
    /// The attempt (a property).
    pub attempt: u32,
    /// Dimension `RunMode`.
    pub run_mode: RunMode,
    /// Dimension `Status`: the status recorded.
    pub status: JobStatus,
    /// When the end was recorded.
    pub at: Timestamp,
    /// `JobDuration`: seconds from the claim to the end of this attempt.
    pub duration: f64,
    /// `QueueWait`: seconds from the job's creation (a relaunch: the end of
    /// the previous attempt) to this attempt's claim.
    pub queue_wait: f64,
    /// `ItemsSucceeded`: collection items this attempt finished well.
    pub items_succeeded: u32,
    /// `ItemsFailed`: collection items this attempt finished failed.
    pub items_failed: u32,
    /// `CostUSD`: this attempt's cost estimate.
    pub cost_usd: f64,
}

impl JobMetrics {
    /// The metrics of the attempt `ctx` ran, ended `status` at `at`, that
    /// cost `cost_usd`.
    pub fn of(ctx: &JobContext, status: JobStatus, at: Timestamp, cost_usd: f64) -> JobMetrics {
        let job = &ctx.job;
        let claimed = Timestamp::parse(&job.heartbeat_at).ok();
        let waited_from = job
            .attempts
            .iter()
            .filter(|a| a.attempt < job.attempt.unwrap_or(1))
            .map(|a| a.ended_at.as_str())
            .max()
            .filter(|e| !e.is_empty())
            .unwrap_or(&job.created_at);
        let queue_wait = match (claimed, Timestamp::parse(waited_from)) {
            (Some(claimed), Ok(from)) => claimed.since(from).as_secs_f64(),
            _ => 0.0,
        };
        // The counts as claimed are earlier attempts' work.
        let (before, now) = (
            job.progress.clone().unwrap_or_default(),
            ctx.progress.current().unwrap_or_default(),
        );
        let collection = job.run_mode() == RunMode::RunCollection;
        JobMetrics {
            job_id: job.object_id.clone(),
            attempt: job.attempt.unwrap_or(1),
            run_mode: job.run_mode(),
            status,
            at,
            duration: super::usage::attempt_seconds(job, at),
            queue_wait,
            items_succeeded: if collection {
                now.succeeded.saturating_sub(before.succeeded)
            } else {
                0
            },
            items_failed: if collection {
                now.failed.saturating_sub(before.failed)
            } else {
                0
            },
            cost_usd,
        }
    }

    /// The EMF document.
    pub fn to_emf(&self) -> Value {
        let ms = |s: f64| (s * 1000.0).round() / 1000.0;
        json!({
            "_aws": {
                "Timestamp": i64::try_from(self.at.unix_micros() / 1000).unwrap_or_default(),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["RunMode", "Status"]],
                    "Metrics": [
                        {"Name": "JobDuration", "Unit": "Seconds"},
                        {"Name": "QueueWait", "Unit": "Seconds"},
                        {"Name": "ItemsSucceeded", "Unit": "Count"},
                        {"Name": "ItemsFailed", "Unit": "Count"},
                        {"Name": "CostUSD", "Unit": "None"},
                    ],
                }],
            },
            "RunMode": run_mode_name(self.run_mode),
            "Status": status_name(self.status),
            "JobDuration": ms(self.duration),
            "QueueWait": ms(self.queue_wait),
            "ItemsSucceeded": self.items_succeeded,
            "ItemsFailed": self.items_failed,
            "CostUSD": self.cost_usd,
            "job_id": self.job_id,
            "attempt": self.attempt,
        })
    }

    /// Prints the EMF document on stdout as one line of its own, in one
    /// write (the JSON log shares stdout; its lines are whole writes too).
    pub fn emit(&self) {
        let mut line = self.to_emf().to_string();
        line.push('\n');
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_metric_is_a_top_level_number() {
        let m = JobMetrics {
            job_id: "j".into(),
            attempt: 2,
            run_mode: RunMode::RunCollection,
            status: JobStatus::Failed,
            at: Timestamp::parse("2026-12-01T10:00:00.250Z").unwrap(),
            duration: 1.23456,
            queue_wait: 0.5,
            items_succeeded: 7,
            items_failed: 3,
            cost_usd: 0.0001,
        };
        let v = m.to_emf();
        assert_eq!(v["_aws"]["Timestamp"], 1_796_119_200_250_i64);
        assert_eq!(v["RunMode"], "RUN_COLLECTION");
        assert_eq!(v["Status"], "FAILED");
        assert_eq!(v["JobDuration"], 1.235);
        for metric in v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            let name = metric["Name"].as_str().unwrap();
            assert!(v[name].is_number(), "{name}");
        }
    }
}
