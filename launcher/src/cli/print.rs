//! Printing a job's record, lists, events and monitor passes: text for
//! people on stdout/stderr, or one JSON object with `--json`.

use plus_jobs::{job::status_name, Job, JobStatus, StreamEvent};

use super::follow::duration;
use crate::ops::monitor::Settled;

/// The exit code of a followed job: 0 only if it succeeded.
pub fn exit_for(job: &Job) -> u8 {
    u8::from(job.status() != JobStatus::Succeeded)
}

/// Prints a job as one JSON object (the proto3 JSON mapping).
///
/// # Errors
/// When it cannot be serialized.
pub fn print_json(job: &Job) -> Result<(), serde_json::Error> {
    println!("{}", serde_json::to_string(&plus_jobs::job::job_json(job))?);
    Ok(())
}

/// Prints how a followed job ended, and what to do next.
pub fn print_summary(job: &Job) {
    let id = &job.object_id;
    let took = duration(job)
        .map(|d| format!(" in {d}"))
        .unwrap_or_default();
    match job.status() {
        JobStatus::Succeeded => eprintln!("✔ job {id} SUCCEEDED{took}"),
        status => {
            eprintln!("✘ job {id} {}{took}: {}", status_name(status), job.error);
            if !job.log_key.is_empty() {
                eprintln!("  full log: plus logs {id}");
            }
            if status == JobStatus::Interrupted {
                eprintln!("  resume it: plus retry {id} --wait");
            }
        }
    }
}

/// The characters of a result `plus status` shows before cutting it.
pub const RESULT_CHARS: usize = 300;

/// Prints a job's record, one field a line.
pub fn print_status(job: &Job) {
    let row = |k: &str, v: &str| {
        if !v.is_empty() {
            println!("{k:<12}{v}");
        }
    };
    row("job", &job.object_id);
    row("name", &job.name);
    row("status", status_name(job.status()));
    row("waiting", &job.queue_reason);
    row("mode", job.run_mode().as_str_name());
    row("user", &job.username);
    row(
        "attempt",
        &job.attempt.map(|a| a.to_string()).unwrap_or_default(),
    );
    row("created", &job.created_at);
    row("started", &job.started_at);
    row("completed", &job.completed_at);
    row("duration", &duration(job).unwrap_or_default());
    row("task", &job.fargate_task_arn);
    row("heartbeat", &job.heartbeat_at);
    if let Some(p) = &job.progress {
        row(
            "progress",
            &format!("{} ok, {} failed of {}", p.succeeded, p.failed, p.total),
        );
    }
    row(
        "exit code",
        &job.exit_code.map(|c| c.to_string()).unwrap_or_default(),
    );
    row("error", &job.error);
    if let Some(r) = &job.result {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        plus_jobs::job::normalize_numbers(&mut v);
        let text = v.to_string();
        // A long result is cut on the page; the whole one is one command away.
        let shown = match text.char_indices().nth(RESULT_CHARS) {
            Some((cut, _)) => format!(
                "{}… (all of it: plus status {} --json)",
                &text[..cut],
                job.object_id
            ),
            None => text,
        };
        row("result", &shown);
    }
    if job.cancel_requested {
        row("cancel", "requested");
    }
    if !job.log_key.is_empty() {
        row("log", &format!("plus logs {}", job.object_id));
    }
}

/// Prints a job's events (`plus events JOB`).
pub fn print_events(events: &[StreamEvent], json: bool) {
    if json {
        let list: Vec<serde_json::Value> = events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap_or_default())
            .collect();
        println!("{}", serde_json::json!({ "events": list }));
    } else {
        for e in events {
            println!(
                "{:>20}  {:<8} {}",
                e.seq,
                e.kind,
                e.data.replace('\n', "\n                               ")
            );
        }
    }
}

/// Prints what one monitor pass did.
pub fn print_settled(settled: &[Settled], json: bool) {
    if json {
        println!("{}", serde_json::json!({ "settled": settled }));
    } else if settled.is_empty() {
        eprintln!("monitor: every unfinished job has a live worker");
    } else {
        for s in settled {
            eprintln!("monitor: job {} {}: {}", s.job_id, s.action, s.reason);
        }
    }
}

/// `n` and `noun`, plural when `n` is not 1 ("1 item", "3 items").
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
