//! The monitor's rules for a stopped task: a Spot interruption is
//! relaunched, a stop after a cancel request is a cancel, and every other
//! end is a failure with a sentence that says what to fix.

use plus_jobs::retry::{decide, Failure, RetryAction, RetryRule};

use crate::runner::StoppedTask;

/// How a stopped task ended, in the monitor's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A Spot interruption: relaunch while attempts remain.
    Spot(String),
    /// A start failure that usually passes (ENI or attachment timeouts,
    /// capacity, image pulls throttled or timed out, resource
    /// initialisation): relaunch while attempts remain, the sentence says
    /// what to check if it does not pass.
    Transient(String),
    /// Stopped on request while a cancel was asked for.
    Cancelled,
    /// A failure, with what to fix.
    Failed(String),
}

/// Classifies a stopped task by its stop code, stopped reason, and the
/// exit code and reason of the worker's own container.
pub fn classify(task: &StoppedTask, cancel_requested: bool) -> Verdict {
    let stop_code = task.stop_code.as_str();
    let reason = task.reason.as_str();
    let container = task.container.as_str();
    let exit = task.worker.as_ref().and_then(|c| c.exit_code);
    let container_reason = task.worker.as_ref().map_or("", |c| c.reason.as_str());
    let all = format!("{stop_code} {reason} {container_reason}");
    if stop_code == "SpotInterruption"
        || all.contains("TerminationNotice")
        || reason.contains("Your Spot Task was interrupted")
    {
        return Verdict::Spot(format!("the Spot task was interrupted ({reason})"));
    }
    if all.contains("CannotPullContainerError") {
        let detail = first_nonempty(container_reason, reason);
        if transient_pull(&all) {
            return Verdict::Transient(format!(
                "the worker image could not be pulled for a passing reason ({detail})"
            ));
        }
        return Verdict::Failed(format!(
            "the worker image could not be pulled ({detail}): check the image URI, that the execution role may pull from ECR, and that the subnets reach ECR (a public IP or a NAT gateway)",
        ));
    }
    if all.contains("ResourceInitializationError") {
        return Verdict::Transient(format!(
            "the task could not be initialised ({}): usually passing, else the execution role, the log group, or the subnets' access to AWS endpoints",
            first_nonempty(reason, container_reason)
        ));
    }
    if stop_code == "TaskFailedToStart" && transient_start(&all) {
        return Verdict::Transient(format!(
            "the task failed to start for a passing reason ({})",
            first_nonempty(reason, container_reason)
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
            first_nonempty(reason, container_reason)
        ));
    }
    if stop_code == "UserInitiated" || stop_code == "ServiceSchedulerInitiated" {
        if cancel_requested {
            return Verdict::Cancelled;
        }
        return Verdict::Failed(format!(
            "the task was stopped ({}) before the worker recorded an end",
            first_nonempty(reason, "StopTask")
        ));
    }
    if let Some(code) = exit {
        return Verdict::Failed(format!(
            "the worker exited with code {code} without recording an end: see its log (scripts/show_logs.sh JOB_ID)"
        ));
    }
    if task.worker.is_none() && !container.is_empty() {
        return Verdict::Failed(format!(
            "the task stopped ({}) and has no container named {container}: check CONTAINER_NAME",
            first_nonempty(reason, stop_code)
        ));
    }
    Verdict::Failed(format!(
        "the task stopped ({}) before the worker recorded an end",
        first_nonempty(reason, stop_code)
    ))
}

/// An image pull that failed for a passing reason (throttled, timed out),
/// not for a missing image or missing rights.
fn transient_pull(all: &str) -> bool {
    let a = all.to_ascii_lowercase();
    let missing = [
        "not found",
        "manifest unknown",
        "does not exist",
        "access denied",
        "unauthorized",
        "403",
    ];
    let passing = [
        "toomanyrequests",
        "too many requests",
        "rate exceeded",
        "throttl",
        "timeout",
        "timed out",
        "deadline exceeded",
        "i/o timeout",
        "connection reset",
    ];
    !missing.iter().any(|m| a.contains(m)) && passing.iter().any(|p| a.contains(p))
}

/// A failure to start that is about capacity or a network attachment that
/// took too long, not about the task's own settings.
fn transient_start(all: &str) -> bool {
    let a = all.to_ascii_lowercase();
    [
        "timeout waiting for network interface",
        "network interface provisioning",
        "elastic network interface",
        "eni attachment",
        "attachment timed out",
        "attachment timeout",
        "capacity is unavailable",
        "insufficient capacity",
        "no capacity",
        "capacity not available",
        "throttl",
        "rate exceeded",
    ]
    .iter()
    .any(|p| a.contains(p))
}

/// `verdict` with the job's retry rules applied to a failure: a matching
/// RETRY rule makes it a relaunch (while attempts remain), a matching EXIT
/// rule or none leaves it FAILED. The rules see the worker container's exit
/// code and reason, and the task's stopped reason.
pub fn with_retry_rules(verdict: Verdict, task: &StoppedTask, rules: &[RetryRule]) -> Verdict {
    let Verdict::Failed(reason) = verdict else {
        return verdict;
    };
    let failure = Failure {
        exit_code: task.worker.as_ref().and_then(|c| c.exit_code),
        reason: task.worker.as_ref().map_or("", |c| c.reason.as_str()),
        status_reason: &task.reason,
    };
    match decide(rules, &failure) {
        Some(RetryAction::Retry) => {
            Verdict::Transient(format!("{reason} (a retry rule retries it)"))
        }
        _ => Verdict::Failed(reason),
    }
}

pub(super) fn first_nonempty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.trim().is_empty() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{Container, Task, TaskStopCode};

    use super::*;
    use crate::runner::TaskState;

    /// The ECS adapter's reading of `task`, then the monitor's verdict.
    fn verdict(task: &Task, container: &str, cancel_requested: bool) -> Verdict {
        match crate::runner::ecs::task_state(task, container) {
            TaskState::Stopped(stopped) => classify(&stopped, cancel_requested),
            other => panic!("not stopped: {other:?}"),
        }
    }

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
        assert!(matches!(verdict(&t, "worker", false), Verdict::Spot(_)));
        let t = stopped(
            Some(TaskStopCode::TerminationNotice),
            "TerminationNotice",
            vec![],
        );
        assert!(matches!(verdict(&t, "worker", false), Verdict::Spot(_)));
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
                    "CannotPullContainerError: pull image manifest has been retried 5 time(s): manifest unknown",
                    vec![("worker", None, "")],
                ),
                "could not be pulled",
            ),
            (
                stopped(
                    Some(TaskStopCode::TaskFailedToStart),
                    "CannotPullContainerError: ref pull has been retried 1 time(s): failed to resolve reference: not found",
                    vec![("worker", None, "")],
                ),
                "check the image URI",
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
                    "Task definition does not support launch_type FARGATE.",
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
            match verdict(&task, "worker", false) {
                Verdict::Failed(reason) => {
                    assert!(reason.contains(want), "{reason} should contain {want}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn transient_start_failures_are_tried_again() {
        let cases = [
            "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve ecr registry auth: service call has been retried 3 time(s): RequestError: send request failed caused by: Post \"https://api.ecr.us-east-1.amazonaws.com/\": dial tcp 10.0.0.1:443: i/o timeout",
            "Timeout waiting for network interface provisioning to complete.",
            "ENI attachment timed out",
            "CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/python/manifests/sha256:abc: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit",
            "CannotPullContainerError: ref pull has been retried 1 time(s): failed to copy: read tcp 10.0.1.2:41234->52.1.2.3:443: i/o timeout",
            "Capacity is unavailable at this time. Please try again later or in a different availability zone",
        ];
        for reason in cases {
            let t = stopped(
                Some(TaskStopCode::TaskFailedToStart),
                reason,
                vec![("worker", None, "")],
            );
            assert!(
                matches!(verdict(&t, "worker", false), Verdict::Transient(_)),
                "{reason}: {:?}",
                verdict(&t, "worker", false)
            );
        }
    }

    #[test]
    fn retry_rules_decide_on_a_failure() {
        let t = stopped(
            Some(TaskStopCode::EssentialContainerExited),
            "Essential container in task exited",
            vec![("worker", Some(3), "")],
        );
        let rule = |code: &str, action: &str| RetryRule {
            on_exit_code: code.into(),
            action: action.into(),
            ..RetryRule::default()
        };
        let v = |rules: &[RetryRule]| match crate::runner::ecs::task_state(&t, "worker") {
            TaskState::Stopped(s) => with_retry_rules(classify(&s, false), &s, rules),
            other => panic!("{other:?}"),
        };
        assert!(matches!(v(&[rule("3", "retry")]), Verdict::Transient(_)));
        assert!(matches!(
            v(&[rule("3", "EXIT"), rule("*", "RETRY")]),
            Verdict::Failed(_)
        ));
        assert!(matches!(v(&[rule("4", "RETRY")]), Verdict::Failed(_)));
        assert!(matches!(v(&[]), Verdict::Failed(_)));
    }

    #[test]
    fn the_workers_container_is_read_by_name_not_position() {
        let t = stopped(
            Some(TaskStopCode::EssentialContainerExited),
            "Essential container in task exited",
            vec![("log-router", Some(0), ""), ("worker", Some(3), "")],
        );
        match verdict(&t, "worker", false) {
            Verdict::Failed(reason) => assert!(reason.contains("exited with code 3"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let t = stopped(
            Some(TaskStopCode::EssentialContainerExited),
            "x",
            vec![("log-router", Some(137), "")],
        );
        match verdict(&t, "worker", false) {
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
        assert_eq!(verdict(&t, "worker", true), Verdict::Cancelled);
    }
}
