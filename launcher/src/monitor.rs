//! The monitor: finds jobs whose worker died without a word (a stale
//! heartbeat, a task that STOPPED, a task that never started) and settles
//! them: a relaunch after an interruption while attempts remain, otherwise
//! FAILED with a sentence that says what to fix.
//!
//! Run it on a schedule: `plus monitor` (a loop), `plus monitor --once`, or
//! the Lambda handler's `monitor` operation from an EventBridge rule.

use std::time::Duration;

use aws_sdk_ecs::types::Task;
use plus_jobs::{job::status_name, Job, JobStatus, StoreError, Timestamp};
use serde::Serialize;

use crate::ops::{attempts_left, Launcher, LauncherError, Runner};

/// How patient the monitor is.
#[derive(Clone, Debug)]
pub struct Policy {
    /// A RUNNING job whose heartbeat is older than this is looked at.
    pub stale_after: Duration,
    /// An INITIALIZING job older than this whose task has not started fails.
    pub start_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(120),
            start_timeout: Duration::from_secs(600),
        }
    }
}

/// What the monitor did to one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Settled {
    /// The job.
    pub job_id: String,
    /// `relaunched`, `failed`, `cancelled`, `interrupted` or `stopped`.
    pub action: String,
    /// Why, as a sentence.
    pub reason: String,
}

/// How a stopped task ended, in the monitor's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A Spot interruption: relaunch while attempts remain.
    Spot(String),
    /// Stopped on request while a cancel was asked for.
    Cancelled,
    /// A failure, with what to fix.
    Failed(String),
}

/// Classifies a STOPPED task by its stop code, stopped reason, and the exit
/// code and reason of the container named `container` (never just the
/// first container: a sidecar's exit says nothing about the job).
pub fn classify(task: &Task, container: &str, cancel_requested: bool) -> Verdict {
    let stop_code = task
        .stop_code
        .as_ref()
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    let reason = task.stopped_reason.clone().unwrap_or_default();
    let worker = task
        .containers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.name.as_deref() == Some(container));
    let exit = worker.and_then(|c| c.exit_code);
    let container_reason = worker.and_then(|c| c.reason.clone()).unwrap_or_default();
    let all = format!("{stop_code} {reason} {container_reason}");
    if stop_code == "SpotInterruption"
        || all.contains("TerminationNotice")
        || reason.contains("Your Spot Task was interrupted")
    {
        return Verdict::Spot(format!("the Spot task was interrupted ({reason})"));
    }
    if all.contains("CannotPullContainerError") {
        return Verdict::Failed(format!(
            "the worker image could not be pulled ({}): check the image URI, that the execution role may pull from ECR, and that the subnets reach ECR (a public IP or a NAT gateway)",
            first_nonempty(&container_reason, &reason)
        ));
    }
    if all.contains("ResourceInitializationError") {
        return Verdict::Failed(format!(
            "the task could not be initialised ({}): usually the execution role, the log group, or the subnets' access to AWS endpoints",
            first_nonempty(&reason, &container_reason)
        ));
    }
    if all.contains("OutOfMemoryError") || exit == Some(137) {
        return Verdict::Failed(
            "the worker ran out of memory (killed with exit 137): launch the job with more --memory".to_owned(),
        );
    }
    if stop_code == "TaskFailedToStart" {
        return Verdict::Failed(format!(
            "the task failed to start ({}): check the task definition, subnets and security groups",
            first_nonempty(&reason, &container_reason)
        ));
    }
    if stop_code == "UserInitiated" || stop_code == "ServiceSchedulerInitiated" {
        if cancel_requested {
            return Verdict::Cancelled;
        }
        return Verdict::Failed(format!(
            "the task was stopped ({}) before the worker recorded an end",
            first_nonempty(&reason, "StopTask")
        ));
    }
    if let Some(code) = exit {
        return Verdict::Failed(format!(
            "the worker exited with code {code} without recording an end: see its log (scripts/show_logs.sh JOB_ID)"
        ));
    }
    if worker.is_none() && !container.is_empty() {
        return Verdict::Failed(format!(
            "the task stopped ({}) and has no container named {container}: check CONTAINER_NAME",
            first_nonempty(&reason, &stop_code)
        ));
    }
    Verdict::Failed(format!(
        "the task stopped ({}) before the worker recorded an end",
        first_nonempty(&reason, &stop_code)
    ))
}

fn first_nonempty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.trim().is_empty() {
        b
    } else {
        a
    }
}

fn age(ts: &str) -> Duration {
    Timestamp::parse(ts)
        .map(|t| Timestamp::now().since(t))
        .unwrap_or(Duration::MAX)
}

/// Whether a local worker process is alive, from the ids the local runner
/// and worker write (`local:{host}:{pid}` or `local:pid/{pid}`); `None` when
/// it cannot be told from here (another host).
fn local_worker_alive(arn: &str) -> Option<bool> {
    let pid = if let Some(pid) = arn.strip_prefix("local:pid/") {
        pid
    } else {
        let rest = arn.strip_prefix("local:")?;
        let (host, pid) = rest.rsplit_once(':')?;
        let me = nix::unistd::gethostname().ok()?.into_string().ok()?;
        if host != me {
            return None;
        }
        pid
    };
    let pid: i32 = pid.parse().ok()?;
    Some(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

impl Launcher {
    /// One pass of the monitor over every unfinished job.
    ///
    /// # Errors
    /// Store or ECS errors that stop the pass; a job whose state moved on
    /// meanwhile is skipped, not an error.
    pub async fn monitor(&self, policy: &Policy) -> Result<Vec<Settled>, LauncherError> {
        let mut jobs = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let page = self.jobs().list_active(start.as_deref(), 500).await?;
            jobs.extend(page.items);
            match page.next {
                Some(n) => start = Some(n),
                None => break,
            }
        }
        let tasks = match &self.runner {
            Runner::Ecs(ecs) => {
                let arns: Vec<String> = jobs
                    .iter()
                    .filter(|j| j.fargate_task_arn.starts_with("arn:"))
                    .map(|j| j.fargate_task_arn.clone())
                    .collect();
                ecs.describe(&arns)
                    .await
                    .map_err(|e| LauncherError::Start(e.0))?
            }
            Runner::Local(_) => Default::default(),
        };
        let container = match &self.runner {
            Runner::Ecs(ecs) => ecs.settings.container_name.clone(),
            Runner::Local(_) => String::new(),
        };
        let mut settled = Vec::new();
        for job in jobs {
            let result = self
                .look_after(&job, tasks.get(&job.fargate_task_arn), &container, policy)
                .await;
            match result {
                Ok(Some(s)) => {
                    tracing::info!(job_id = %s.job_id, action = %s.action, reason = %s.reason, "monitor settled a job");
                    settled.push(s);
                }
                Ok(None) => {}
                Err(LauncherError::Store(StoreError::Conflict { .. })) => {}
                Err(e) => {
                    tracing::warn!(job_id = %job.object_id, error = %e, "monitor could not settle a job")
                }
            }
        }
        Ok(settled)
    }

    async fn look_after(
        &self,
        job: &Job,
        task: Option<&Task>,
        container: &str,
        policy: &Policy,
    ) -> Result<Option<Settled>, LauncherError> {
        // A sharded job's parent runs no task: its state is its shards'.
        if crate::shards::is_parent(job) {
            return Ok(None);
        }
        let id = job.object_id.as_str();
        let settled = |action: &str, reason: String| {
            Ok(Some(Settled {
                job_id: id.to_owned(),
                action: action.to_owned(),
                reason,
            }))
        };
        let status = job.status();
        if status == JobStatus::Interrupted {
            return self
                .relaunch_or_fail(job.clone(), "the job was interrupted")
                .await;
        }
        let arn = job.fargate_task_arn.as_str();
        let stale = match status {
            JobStatus::Running => age(&job.heartbeat_at) > policy.stale_after,
            // From the current attempt's launch: a relaunch sets updated_at.
            _ => age(first_nonempty(&job.updated_at, &job.created_at)) > policy.start_timeout,
        };
        // Local workers: a dead process is as good as a stopped task.
        if let Some(alive) = arn
            .starts_with("local:")
            .then(|| local_worker_alive(arn))
            .flatten()
        {
            if alive {
                return Ok(None);
            }
            let reason = format!(
                "the worker process ({arn}) died while the job was {} without recording an end",
                status_name(status)
            );
            self.fail(id, status, &reason).await?;
            return settled("failed", reason);
        }
        if !arn.starts_with("arn:") {
            if stale && status == JobStatus::Initializing {
                let reason = format!(
                    "no task was started for the job within {} s of its launch",
                    policy.start_timeout.as_secs()
                );
                self.fail(id, status, &reason).await?;
                return settled("failed", reason);
            }
            return Ok(None);
        }
        match task {
            None if stale => {
                let reason = "its ECS task is gone (ECS forgets stopped tasks after about an hour) and the worker recorded no end".to_owned();
                self.fail(id, status, &reason).await?;
                settled("failed", reason)
            }
            None => Ok(None),
            Some(task) if task.last_status.as_deref() == Some("STOPPED") => {
                match classify(task, container, job.cancel_requested) {
                    Verdict::Spot(reason) => {
                        // RUNNING -> INTERRUPTED, then relaunch; a task that
                        // stopped before any worker claimed it is relaunched
                        // from INITIALIZING (it was never running).
                        let job = if status == JobStatus::Running {
                            self.transition(id, status, JobStatus::Interrupted, &reason)
                                .await?
                        } else {
                            job.clone()
                        };
                        self.relaunch_or_fail(job, &reason).await
                    }
                    Verdict::Cancelled => {
                        self.transition(
                            id,
                            status,
                            JobStatus::Cancelled,
                            "cancelled on request; the task was stopped",
                        )
                        .await?;
                        settled(
                            "cancelled",
                            "the task was stopped after a cancel request".into(),
                        )
                    }
                    Verdict::Failed(reason) => {
                        self.fail(id, status, &reason).await?;
                        settled("failed", reason)
                    }
                }
            }
            Some(task) if stale => {
                let reason = match status {
                    JobStatus::Running => format!(
                        "its heartbeat is {} s old while the task is {}: the worker is stuck or cut off; the task was stopped",
                        age(&job.heartbeat_at).as_secs(),
                        task.last_status.as_deref().unwrap_or("?")
                    ),
                    _ => format!("the task did not start within {} s (it is {}); it was stopped", policy.start_timeout.as_secs(), task.last_status.as_deref().unwrap_or("?")),
                };
                self.stop_task(job, &reason).await;
                if status == JobStatus::Initializing {
                    self.fail(id, status, &reason).await?;
                    return settled("failed", reason);
                }
                // The stopped worker records INTERRUPTED itself, or the next
                // pass classifies the stopped task.
                settled("stopped", reason)
            }
            Some(_) => Ok(None),
        }
    }

    async fn relaunch_or_fail(
        &self,
        job: Job,
        why: &str,
    ) -> Result<Option<Settled>, LauncherError> {
        let id = job.object_id.clone();
        let from = job.status();
        let out_of_attempts = !attempts_left(&job);
        match self.relaunch(job, from, true).await {
            Ok(launched) => Ok(Some(Settled {
                job_id: id,
                action: "relaunched".into(),
                reason: format!(
                    "{why}; relaunched as attempt {}",
                    launched.job.attempt.unwrap_or(2)
                ),
            })),
            // `relaunch` recorded FAILED with the reason.
            Err(LauncherError::Conflict(reason)) if out_of_attempts => Ok(Some(Settled {
                job_id: id,
                action: "failed".into(),
                reason: format!("{why}: {reason}"),
            })),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{Container, TaskStopCode};

    use super::*;

    fn stopped(
        code: Option<TaskStopCode>,
        reason: &str,
        containers: Vec<(&str, Option<i32>, &str)>,
    ) -> Task {
        let mut t = Task::builder()
            .last_status("STOPPED")
            .stopped_reason(reason);
        if let Some(c) = code {
            t = t.stop_code(c);
        }
        for (name, exit, why) in containers {
            let mut c = Container::builder().name(name).reason(why);
            if let Some(e) = exit {
                c = c.exit_code(e);
            }
            t = t.containers(c.build());
        }
        t.build()
    }

    #[test]
    fn spot_interruptions_are_recognised() {
        let t = stopped(
            Some(TaskStopCode::SpotInterruption),
            "Your Spot Task was interrupted.",
            vec![("worker", Some(143), "")],
        );
        assert!(matches!(classify(&t, "worker", false), Verdict::Spot(_)));
        let t = stopped(
            Some(TaskStopCode::TerminationNotice),
            "TerminationNotice",
            vec![],
        );
        assert!(matches!(classify(&t, "worker", false), Verdict::Spot(_)));
    }

    #[test]
    fn each_failure_says_what_to_fix() {
        let cases = [
            (
                stopped(
                    Some(TaskStopCode::TaskFailedToStart),
                    "CannotPullContainerError: pull image manifest has been retried",
                    vec![("worker", None, "")],
                ),
                "could not be pulled",
            ),
            (
                stopped(
                    Some(TaskStopCode::TaskFailedToStart),
                    "ResourceInitializationError: unable to pull secrets or registry auth",
                    vec![],
                ),
                "could not be initialised",
            ),
            (
                stopped(
                    Some(TaskStopCode::EssentialContainerExited),
                    "Essential container in task exited",
                    vec![(
                        "worker",
                        Some(137),
                        "OutOfMemoryError: Container killed due to memory usage",
                    )],
                ),
                "more --memory",
            ),
            (
                stopped(
                    Some(TaskStopCode::TaskFailedToStart),
                    "Timeout waiting for network interface provisioning to complete.",
                    vec![],
                ),
                "failed to start",
            ),
            (
                stopped(
                    Some(TaskStopCode::UserInitiated),
                    "Task stopped by user",
                    vec![("worker", Some(143), "")],
                ),
                "was stopped (Task stopped by user)",
            ),
        ];
        for (task, want) in cases {
            match classify(&task, "worker", false) {
                Verdict::Failed(reason) => {
                    assert!(reason.contains(want), "{reason} should contain {want}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_workers_container_is_read_by_name_not_position() {
        let t = stopped(
            Some(TaskStopCode::EssentialContainerExited),
            "Essential container in task exited",
            vec![("log-router", Some(0), ""), ("worker", Some(3), "")],
        );
        match classify(&t, "worker", false) {
            Verdict::Failed(reason) => assert!(reason.contains("exited with code 3"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let t = stopped(
            Some(TaskStopCode::EssentialContainerExited),
            "x",
            vec![("log-router", Some(137), "")],
        );
        match classify(&t, "worker", false) {
            Verdict::Failed(reason) => {
                assert!(reason.contains("no container named worker"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stop_after_a_cancel_request_is_a_cancel() {
        let t = stopped(
            Some(TaskStopCode::UserInitiated),
            "cancelled on request",
            vec![("worker", Some(143), "")],
        );
        assert_eq!(classify(&t, "worker", true), Verdict::Cancelled);
    }
}
