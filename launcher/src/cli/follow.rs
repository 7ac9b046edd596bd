//! Following a job: its output as it happens, then its final state, and
//! how it is printed (the script's output, status lines, the items bar).

use std::{io::Write, time::Duration};

use crate::{
    ops::{Launcher, LauncherError},
    runner::LocalWorker,
};
use plus_jobs::{job::is_terminal, EventKind, Job, JobStatus, StreamEvent, Timestamp};

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
        match EventKind::of(event) {
            Some(EventKind::Stdout) if !self.stdout_to_stderr => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", event.data);
                let _ = out.flush();
            }
            Some(EventKind::Stdout | EventKind::Stderr) => eprintln!("{}", event.data),
            Some(EventKind::Status) if self.statuses => eprintln!("● {}", event.data),
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
    mut worker: Option<LocalWorker>,
    printer: Printer,
    mut after: u64,
) -> Result<Job, LauncherError> {
    let mut last_check = std::time::Instant::now() - Duration::from_secs(10);
    let mut bar = ItemsBar::new(printer.statuses);
    loop {
        let events = launcher.events(username, id, after, 1000).await?.events;
        let mut saw_status = false;
        for event in &events {
            bar.print(&printer, event);
            after = after.max(event.seq);
            saw_status |= EventKind::of(event) == Some(EventKind::Status);
        }
        if events.len() >= 1000 {
            continue;
        }
        let exited = worker.as_mut().and_then(LocalWorker::ended);
        if saw_status || exited.is_some() || last_check.elapsed() >= Duration::from_secs(1) {
            last_check = std::time::Instant::now();
            let job = launcher.status(username, id).await?;
            bar.job(&job);
            let status = job.status();
            let finished = is_terminal(status)
                || (status == JobStatus::Interrupted && (worker.is_none() || exited.is_some()));
            if finished {
                for event in launcher.events(username, id, after, 10_000).await?.events {
                    bar.print(&printer, &event);
                }
                bar.finish(&job);
                return Ok(job);
            }
            if let Some(how) = exited {
                // The process is gone and the job did not end: settle it.
                launcher.worker_ended(id, status, &how).await?;
                worker = None;
                continue;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How long the job ran (or has run), for people. An INTERRUPTED job's
/// clock stopped when it was interrupted (its last attempt's end, else the
/// INTERRUPTED write's `updated_at`).
pub fn duration(job: &Job) -> Option<String> {
    let start = Timestamp::parse(&job.started_at).ok()?;
    let end = match job.status() {
        JobStatus::Interrupted => job
            .attempts
            .last()
            .filter(|a| a.attempt == job.attempt.unwrap_or(1))
            .map(|a| a.ended_at.as_str())
            .into_iter()
            .chain([job.updated_at.as_str()])
            .find_map(|t| Timestamp::parse(t).ok()),
        _ => Timestamp::parse(&job.completed_at).ok(),
    };
    Some(human(end.unwrap_or_else(Timestamp::now).since(start)))
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

/// The progress bar of a collection job on stderr (items done / total,
/// rate, ETA), fed by its `progress` events and its record; it ends with
/// the counts. Hidden when stderr is not a terminal, except the counts.
#[derive(Debug)]
pub struct ItemsBar {
    enabled: bool,
    bar: Option<indicatif::ProgressBar>,
    counts: Option<(u64, u64, u64)>,
}

impl ItemsBar {
    /// A bar that shows itself once the job reports item progress.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            bar: None,
            counts: None,
        }
    }

    fn set(&mut self, total: u64, succeeded: u64, failed: u64) {
        if !self.enabled {
            return;
        }
        self.counts = Some((total, succeeded, failed));
        let bar = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} items  {per_sec}  ETA {eta}  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        if total > 0 {
            bar.set_length(total);
        }
        bar.set_position(succeeded + failed);
        bar.set_message(if failed > 0 {
            format!("{failed} failed")
        } else {
            String::new()
        });
    }

    /// Prints an event above the bar, and takes `progress` events.
    pub fn print(&mut self, printer: &Printer, event: &StreamEvent) {
        if EventKind::of(event) == Some(EventKind::Progress) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&event.data) {
                let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
                self.set(n("total"), n("succeeded"), n("failed"));
            }
        }
        match &self.bar {
            Some(bar) => bar.suspend(|| printer.print(event)),
            None => printer.print(event),
        }
    }

    /// Takes a collection job's progress from its record.
    pub fn job(&mut self, job: &Job) {
        if job.run_mode() != plus_jobs::RunMode::RunCollection {
            return;
        }
        if let Some(p) = &job.progress {
            self.set(
                u64::from(p.total),
                u64::from(p.succeeded),
                u64::from(p.failed),
            );
        }
    }

    /// Clears the bar and prints the counts.
    pub fn finish(&mut self, job: &Job) {
        self.job(job);
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some((total, ok, failed)) = self.counts {
            let rate = job_rate(job, ok + failed)
                .map(|r| format!(" ({r:.0} items/s)"))
                .unwrap_or_default();
            eprintln!(
                "● {} of {total} items done: {ok} succeeded, {failed} failed{rate}",
                ok + failed
            );
        }
    }
}

fn job_rate(job: &Job, done: u64) -> Option<f64> {
    let start = Timestamp::parse(&job.started_at).ok()?;
    let end = Timestamp::parse(&job.completed_at).ok()?;
    let secs = end.since(start).as_secs_f64();
    (secs > 0.0).then(|| done as f64 / secs)
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
