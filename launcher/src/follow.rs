//! Following a job: its output as it happens, then its final state.

use std::{io::Write, time::Duration};

use plus_jobs::{
    job::{is_terminal, status_name},
    Job, JobStatus, StreamEvent, Timestamp,
};
use tokio::process::Child;

use crate::ops::{Launcher, LauncherError};

/// How often the stream is polled.
pub const POLL: Duration = Duration::from_millis(150);

/// Where followed output goes.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    /// Send the script's stdout to our stderr (keeps stdout for `--json`).
    pub stdout_to_stderr: bool,
    /// Print status changes.
    pub statuses: bool,
}

impl Printer {
    /// Prints one event.
    pub fn print(&self, event: &StreamEvent) {
        match event.kind.as_str() {
            "stdout" if !self.stdout_to_stderr => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", event.data);
                let _ = out.flush();
            }
            "stdout" | "stderr" => eprintln!("{}", event.data),
            "status" if self.statuses => eprintln!("● {}", event.data),
            _ => {}
        }
    }
}

/// Follows job `id` until it ends (or is INTERRUPTED with no worker left),
/// printing its events. When `worker` is the job's local process and it
/// exits without recording an end, the job is settled as FAILED with the
/// reason, so it never stays RUNNING or INITIALIZING with nobody on it.
///
/// # Errors
/// Store errors.
pub async fn follow(
    launcher: &Launcher,
    username: &str,
    id: &str,
    mut worker: Option<Child>,
    printer: Printer,
    mut after: u64,
) -> Result<Job, LauncherError> {
    let mut last_check = std::time::Instant::now() - Duration::from_secs(10);
    loop {
        let events = launcher.events(username, id, after, 1000).await?;
        let mut saw_status = false;
        for event in &events {
            printer.print(event);
            after = after.max(event.seq);
            saw_status |= event.kind == "status";
        }
        if events.len() >= 1000 {
            continue;
        }
        let exited = match worker.as_mut() {
            Some(child) => child.try_wait().ok().flatten(),
            None => None,
        };
        if saw_status || exited.is_some() || last_check.elapsed() >= Duration::from_secs(1) {
            last_check = std::time::Instant::now();
            let job = launcher.status(username, id).await?;
            let status = job.status();
            let finished = is_terminal(status)
                || (status == JobStatus::Interrupted && (worker.is_none() || exited.is_some()));
            if finished {
                for event in launcher.events(username, id, after, 10_000).await? {
                    printer.print(&event);
                }
                return Ok(job);
            }
            if let Some(code) = exited {
                // The process is gone and the job did not end: settle it.
                let worker_log = match &launcher.runner {
                    crate::ops::Runner::Local(local) => last_words(&local.worker_log(id)),
                };
                let how = match code.code() {
                    Some(c) => format!("exited with code {c}"),
                    None => "was killed".to_owned(),
                };
                let reason = format!(
                    "the worker {how} while the job was {} without recording an end{}",
                    status_name(status),
                    worker_log.map(|w| format!(": {w}")).unwrap_or_default()
                );
                launcher.fail(id, status, &reason).await?;
                worker = None;
                continue;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The worker's last error line from its JSON log, for a settled job.
fn last_words(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().rev().find_map(|line| {
        if let Some(msg) = line.strip_prefix("plus-worker: ") {
            return Some(msg.to_owned());
        }
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("level")?.as_str()? == "ERROR" {
            v.get("reason")
                .or_else(|| v.get("error"))
                .and_then(|r| r.as_str())
                .map(str::to_owned)
        } else {
            None
        }
    })
}

/// How long the job ran (or has run), for people.
pub fn duration(job: &Job) -> Option<String> {
    let start = Timestamp::parse(&job.started_at).ok()?;
    let end = Timestamp::parse(&job.completed_at).unwrap_or_else(|_| Timestamp::now());
    Some(human(end.since(start)))
}

/// `1.2 s`, `3 min 4 s`, `2 h 5 min`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(1234)), "1.2 s");
        assert_eq!(human(Duration::from_secs(184)), "3 min 4 s");
        assert_eq!(human(Duration::from_secs(7500)), "2 h 5 min");
    }
}
