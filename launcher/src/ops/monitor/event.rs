//! Settling from ECS events: EventBridge delivers an "ECS Task State
//! Change" event (`source` `aws.ecs`) when a task stops, and the launcher
//! Lambda settles the job of that task within the one invocation, exactly
//! as the monitor would ([`Launcher::look_after`](super)), instead of
//! waiting for the next scheduled pass. The scheduled monitor stays the
//! safety net for a lost or late event.
//!
//! The event's `detail` is the task as DescribeTasks shows it (AWS's
//! documented example: `clusterArn`, `taskArn`, `startedBy`, `lastStatus`,
//! `stopCode`, `stoppedReason`, `containers[].name/exitCode/reason`,
//! `overrides.containerOverrides[].environment`). Tags are not in it, so the
//! job is found by the `JOB_ID` the launcher put into the container's
//! environment overrides, and the event is taken only if that job's record
//! still names this task (`fargate_task_arn`): an event about an earlier
//! attempt's task, or a second delivery after the job was settled and
//! relaunched, changes nothing. Every settling write is conditional, so two
//! deliveries racing each other settle once.

use serde::{Deserialize, Serialize};

use super::{Policy, Settled};
use crate::{
    ops::{Launcher, LauncherError},
    runner::{ContainerExit, Runner, StoppedTask, TaskState, WorkerRef},
};

/// How long an event waits, at most, for its launcher to record the task's
/// ARN on the job ([`ARN_WAITS`] x [`ARN_WAIT`]).
const ARN_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
const ARN_WAITS: u32 = 12;

/// The `startedBy` of every task the launcher starts.
pub const STARTED_BY: &str = "plus-launcher";

/// An EventBridge event from ECS (only the fields the launcher reads).
#[derive(Clone, Debug, Deserialize)]
pub struct EcsEvent {
    /// `aws.ecs`.
    pub source: String,
    /// `ECS Task State Change`.
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// The task.
    pub detail: TaskDetail,
}

/// The task in an "ECS Task State Change" event.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskDetail {
    /// The cluster's ARN.
    pub cluster_arn: String,
    /// The task's ARN.
    pub task_arn: String,
    /// Who started it (`plus-launcher` for the launcher's tasks).
    pub started_by: String,
    /// `PROVISIONING`, ..., `STOPPED`.
    pub last_status: String,
    /// `SpotInterruption`, `EssentialContainerExited`, `TaskFailedToStart`, ...
    pub stop_code: String,
    /// Why it stopped, in ECS's words.
    pub stopped_reason: String,
    /// Its containers.
    pub containers: Vec<EventContainer>,
    /// RunTask's overrides.
    pub overrides: EventOverrides,
}

/// One container of the task.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventContainer {
    /// Its name in the task definition.
    pub name: String,
    /// Its exit code, once it exited.
    pub exit_code: Option<i32>,
    /// Why it stopped (`OutOfMemoryError: ...`).
    pub reason: String,
}

/// RunTask's overrides as the event shows them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventOverrides {
    /// Per container.
    pub container_overrides: Vec<EventContainerOverride>,
}

/// One container's overrides.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventContainerOverride {
    /// The container.
    pub name: String,
    /// Its environment overrides.
    pub environment: Vec<EventEnv>,
}

/// One environment variable.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventEnv {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// What the launcher did with one ECS event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventOutcome {
    /// The job settled, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settled: Option<Settled>,
    /// Why the job was not settled, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
    /// Queued jobs the dispatcher started in the capacity the stopped task
    /// freed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<String>,
}

impl EcsEvent {
    /// `event` as an ECS task state change, when it is one.
    pub fn parse(event: &serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        let is_ecs = event.get("source").and_then(|s| s.as_str()) == Some("aws.ecs")
            && event.get("detail-type").and_then(|s| s.as_str()) == Some("ECS Task State Change");
        is_ecs.then(|| serde_json::from_value(event.clone()))
    }
}

impl TaskDetail {
    /// The job id from the worker's environment overrides.
    pub fn job_id(&self) -> Option<&str> {
        self.overrides
            .container_overrides
            .iter()
            .flat_map(|c| &c.environment)
            .find(|e| e.name == plus_jobs::contract::names::JOB_ID && !e.value.is_empty())
            .map(|e| e.value.as_str())
    }

    /// The stopped task in the monitor's terms (the worker's container read
    /// by name, as [`crate::runner::ecs::task_state`] does).
    pub fn stopped(&self, container: &str) -> StoppedTask {
        StoppedTask {
            stop_code: self.stop_code.clone(),
            reason: self.stopped_reason.clone(),
            container: container.to_owned(),
            worker: self
                .containers
                .iter()
                .find(|c| c.name == container)
                .map(|c| ContainerExit {
                    exit_code: c.exit_code,
                    reason: c.reason.clone(),
                }),
        }
    }
}

/// Whether `arn` is the cluster `configured` (a name or an ARN).
fn same_cluster(arn: &str, configured: &str) -> bool {
    arn == configured || arn.ends_with(&format!(":cluster/{configured}"))
}

impl Launcher {
    /// Settles the job of a stopped task from its ECS event, as the monitor
    /// would: relaunch after a Spot interruption (or a retry rule) while
    /// attempts remain, otherwise FAILED with the classified reason. Events
    /// of other clusters, of tasks the launcher did not start, of tasks not
    /// yet stopped, or about a task the job no longer runs are ignored with a
    /// log line and the reason in the answer. Any stopped task of ours
    /// freed capacity: the dispatcher then starts queued jobs in it (the
    /// answer's `started`).
    ///
    /// # Errors
    /// Store or ECS errors; a job whose state moved on meanwhile is not an
    /// error (nothing changes).
    pub async fn settle_task_event(&self, event: &EcsEvent) -> Result<EventOutcome, LauncherError> {
        let d = &event.detail;
        let mut outcome = self.settle_stopped(event).await?;
        // A stopped task of ours freed capacity, whether its job was settled
        // here or had already ended on its own: queued work takes it now.
        let ours = matches!(&self.runner, Runner::Ecs(ecs) if same_cluster(&d.cluster_arn, &ecs.settings.cluster))
            && d.started_by == STARTED_BY
            && d.last_status == "STOPPED";
        if ours {
            outcome.started = self.dispatch().await?.started;
        }
        Ok(outcome)
    }

    async fn settle_stopped(&self, event: &EcsEvent) -> Result<EventOutcome, LauncherError> {
        let d = &event.detail;
        let ignore = |why: String| {
            tracing::info!(task = %d.task_arn, cluster = %d.cluster_arn, reason = %why, "ECS event ignored");
            Ok(EventOutcome {
                settled: None,
                ignored: Some(why),
                started: Vec::new(),
            })
        };
        let Runner::Ecs(ecs) = &self.runner else {
            return ignore("the launcher runs no ECS tasks".into());
        };
        if !same_cluster(&d.cluster_arn, &ecs.settings.cluster) {
            return ignore(format!(
                "the task is in another cluster ({}), not {}",
                d.cluster_arn, ecs.settings.cluster
            ));
        }
        if d.started_by != STARTED_BY {
            return ignore(format!(
                "the task was started by {:?}, not {STARTED_BY}",
                d.started_by
            ));
        }
        if d.last_status != "STOPPED" {
            return ignore(format!("the task is {}, not STOPPED", d.last_status));
        }
        let Some(job_id) = d.job_id() else {
            return ignore("the task's overrides carry no JOB_ID".into());
        };
        let Some(mut job) = self.jobs().get_job(job_id).await? else {
            return ignore(format!("job {job_id} was not found"));
        };
        // A task that fails at once can stop before its launcher has written
        // the task's ARN on the record (RunTask answered, the write is on its
        // way): give that write a moment instead of dropping the event.
        let mut waits = 0;
        while job.fargate_task_arn.is_empty()
            && job.status() == plus_jobs::JobStatus::Initializing
            && waits < ARN_WAITS
        {
            waits += 1;
            tokio::time::sleep(ARN_WAIT).await;
            match self.jobs().get_job(job_id).await? {
                Some(now) => job = now,
                None => return ignore(format!("job {job_id} was not found")),
            }
        }
        if job.fargate_task_arn != d.task_arn {
            return ignore(format!(
                "job {job_id} now runs {} (the event is about an earlier task)",
                job.fargate_task_arn
            ));
        }
        if plus_jobs::job::is_terminal(job.status()) {
            return ignore(format!(
                "job {job_id} is already {}",
                plus_jobs::job::status_name(job.status())
            ));
        }
        let worker = WorkerRef::parse(&job.fargate_task_arn);
        let state = TaskState::Stopped(d.stopped(&ecs.settings.container_name));
        let settled = match self
            .look_after(&job, &worker, Some(&state), &Policy::default())
            .await
        {
            Ok(s) => s,
            Err(LauncherError::Store(plus_jobs::StoreError::Conflict { .. })) => {
                return ignore(format!("job {job_id} was settled meanwhile"));
            }
            Err(e) => return Err(e),
        };
        match settled {
            Some(s) => {
                tracing::info!(job_id = %s.job_id, action = %s.action, reason = %s.reason, "settled from an ECS event");
                Ok(EventOutcome {
                    settled: Some(s),
                    ignored: None,
                    started: Vec::new(),
                })
            }
            None => ignore(format!("job {job_id} needs nothing done")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_match_by_name_or_arn() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:cluster/plus";
        assert!(same_cluster(arn, "plus"));
        assert!(same_cluster(arn, arn));
        assert!(!same_cluster(arn, "other"));
        assert!(!same_cluster(
            "arn:aws:ecs:us-east-1:123456789012:cluster/plus-2",
            "plus"
        ));
    }
}
