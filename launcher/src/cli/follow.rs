//! Following a job: its output as it happens, then its final state, and
//! how it is printed (the script's output, status lines, the items bar).

use std::{
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

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
/// `stopped_by_you` is set when a person pressed Ctrl-C on `plus run` (or
/// `--wait`): the worker then saves the job as INTERRUPTED, and `follow`
/// must not take that for an interruption to relaunch (the person's stop
/// wins; `plus retry` resumes it).
pub async fn follow(
    launcher: &Launcher,
    username: &str,
    id: &str,
    mut worker: Option<LocalWorker>,
    printer: Printer,
    mut after: u64,
    stopped_by_you: &AtomicBool,
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
            // Ended INTERRUPTED on its own (a retry rule, or a SIGTERM that
            // was not a person's Ctrl-C): relaunch it here and follow the
            // next attempt, as the monitor would.
            if finished
                && status == JobStatus::Interrupted
                && exited.is_some()
                && !job.stopped_by_user
                && !stopped_by_you.load(Ordering::SeqCst)
                && crate::ops::lifecycle::attempts_left(&job)
            {
                match launcher.relaunch(job, JobStatus::Interrupted).await {
                    Ok(next) => {
                        worker = next.worker;
                        continue;
                    }
                    // Someone else (a monitor) relaunched or settled it.
                    Err(LauncherError::Conflict(_)) => {
                        worker = None;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
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
/// The counts only grow (a late or partial event never takes them back),
/// and the total shows as soon as either source has it.
#[derive(Debug)]
pub struct ItemsBar {
    enabled: bool,
    bar: Option<indicatif::ProgressBar>,
    counts: Option<(u64, u64, u64)>,
    /// When items were first seen done, and how many: the rate's origin.
    origin: Option<(std::time::Instant, u64)>,
}

/// Cells in the bar.
const BAR_CELLS: u64 = 30;

/// `3.4/s`, `120/s`: one decimal below 100 items a second, none above.
pub fn rate_text(per_sec: f64) -> String {
    format!("{}/s", rate_number(per_sec))
}

fn rate_number(per_sec: f64) -> String {
    if per_sec < 100.0 {
        format!("{per_sec:.1}")
    } else {
        format!("{per_sec:.0}")
    }
}

/// `6 s`, `2 min 5 s`, `1 h 3 min`: whole units, for an ETA.
pub fn eta_text(secs: f64) -> String {
    let s = secs.max(0.0).ceil() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// One line of the bar: `[█████░░░] 12/32 items  3.4/s  ETA 6 s  1 failed`
/// (without a total yet: `12 items  3.4/s`). Full once done reaches the
/// total.
pub fn bar_line(total: u64, done: u64, failed: u64, per_sec: Option<f64>) -> String {
    let mut parts = Vec::new();
    if let Some(filled) = (done.min(total) * BAR_CELLS).checked_div(total) {
        parts.push(format!(
            "[{}{}] {done}/{total} items",
            "█".repeat(filled as usize),
            "░".repeat((BAR_CELLS - filled) as usize)
        ));
    } else {
        parts.push(format!("{done} items"));
    }
    if let Some(r) = per_sec.filter(|r| r.is_finite() && *r > 0.0) {
        parts.push(rate_text(r));
        if total > done {
            parts.push(format!("ETA {}", eta_text((total - done) as f64 / r)));
        }
    }
    if failed > 0 {
        parts.push(format!("{failed} failed"));
    }
    parts.join("  ")
}

impl ItemsBar {
    /// A bar that shows itself once the job reports item progress.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            bar: None,
            counts: None,
            origin: None,
        }
    }

    fn set(&mut self, total: u64, succeeded: u64, failed: u64) {
        if !self.enabled {
            return;
        }
        let (t0, s0, f0) = self.counts.unwrap_or_default();
        let (total, succeeded, failed) = (t0.max(total), s0.max(succeeded), f0.max(failed));
        let done = succeeded + failed;
        if self.counts.is_none() && total == 0 && done == 0 {
            // Nothing to show yet.
            return;
        }
        self.counts = Some((total, succeeded, failed));
        let now = std::time::Instant::now();
        let (since, done0) = *self.origin.get_or_insert((now, done));
        let elapsed = now.duration_since(since).as_secs_f64();
        let per_sec = (elapsed >= 0.5 && done > done0).then(|| (done - done0) as f64 / elapsed);
        let bar = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        bar.set_message(bar_line(total, done, failed, per_sec));
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
                .map(|r| format!(" ({} items/s)", rate_number(r)))
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

    #[test]
    fn the_bar_reads_well() {
        assert_eq!(rate_text(12.345_678), "12.3/s");
        assert_eq!(rate_text(1234.6), "1235/s");
        assert_eq!(eta_text(5.2), "6 s");
        assert_eq!(eta_text(125.0), "2 min 5 s");
        let full = bar_line(32, 32, 0, Some(10.0));
        assert!(
            full.starts_with(&format!("[{}] 32/32 items", "█".repeat(30))),
            "{full}"
        );
        assert_eq!(
            bar_line(32, 16, 1, Some(4.0)),
            format!(
                "[{}{}] 16/32 items  4.0/s  ETA 4 s  1 failed",
                "█".repeat(15),
                "░".repeat(15)
            )
        );
        assert_eq!(bar_line(0, 5, 0, None), "5 items");
    }
}
