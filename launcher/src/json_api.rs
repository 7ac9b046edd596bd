//! The JSON operations face (served by the `plus-lambda` binary): one JSON
//! object per operation over [`Launcher`], for an engine Lambda (or Step
//! Functions, or an EventBridge schedule for the monitor) to invoke. The
//! handler is a thin adapter: parse, call the library, shape the answer.
//!
//! ```json
//! {"op": "launch", "username": "alice", "script": "echo hi", "params": {"n": 3}}
//! {"op": "status", "username": "alice", "job_id": "..."}
//! {"op": "events", "username": "alice", "job_id": "...", "after": 0}
//! {"op": "cancel", "username": "alice", "job_id": "..."}
//! {"op": "list",   "username": "alice"}
//! {"op": "monitor"}
//! {"op": "schedule_create", "username": "alice", "name": "nightly",
//!  "expression": "cron(0 2 * * ? *)", "timezone": "Europe/Paris",
//!  "launch": {"script": "echo hi"}}
//! {"op": "schedule_list" | "schedule_show" | "schedule_pause" |
//!  "schedule_resume" | "schedule_delete", "username": "alice", "name": "nightly"}
//! {"op": "launch", "username": "alice", "schedule": "nightly",
//!  "scheduled_time": "2030-01-31T02:00:00Z"}
//! ```
//!
//! The last is what a schedule's EventBridge target sends: it launches the
//! schedule's stored request with a job id derived from the schedule and
//! the scheduled time, so a repeated delivery launches once.
//!
//! It also takes EventBridge's "ECS Task State Change" events (`source`
//! `aws.ecs`) and settles the job of a stopped task at once (see
//! [`crate::ops::monitor::event`]); the answer is `{"settled": {...}}` or
//! `{"ignored": "why"}`.

use plus_jobs::{job::job_json, RunMode, TaskResources};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::ops::{
    monitor::{event::EcsEvent, Policy},
    request::RetryRuleInput,
    schedules::{parse_scheduled_time, NewSchedule, Schedule, ScheduleError},
    LaunchRequest, Launcher, LauncherError,
};

/// One operation.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Operation {
    /// Launch a job.
    Launch(Box<LaunchOp>),
    /// A job's record.
    Status {
        /// The caller.
        username: String,
        /// The job.
        job_id: String,
    },
    /// A job's events after a sequence number.
    Events {
        /// The caller.
        username: String,
        /// The job.
        job_id: String,
        /// Only events with a larger `seq`.
        #[serde(default)]
        after: u64,
    },
    /// Cancel a job.
    Cancel {
        /// The caller.
        username: String,
        /// The job.
        job_id: String,
    },
    /// The caller's jobs, newest first.
    List {
        /// The caller.
        username: String,
        /// Continue after this job id.
        #[serde(default)]
        start: Option<String>,
        /// At most this many.
        #[serde(default = "default_limit")]
        limit: usize,
    },
    /// One monitor pass (for an EventBridge schedule).
    Monitor,
    /// Create a schedule.
    ScheduleCreate(Box<ScheduleCreateOp>),
    /// The caller's schedules.
    ScheduleList {
        /// The caller.
        username: String,
    },
    /// One schedule.
    ScheduleShow {
        /// The caller.
        username: String,
        /// The schedule's name.
        name: String,
    },
    /// Pause a schedule.
    SchedulePause {
        /// The caller.
        username: String,
        /// The schedule's name.
        name: String,
    },
    /// Resume a paused schedule.
    ScheduleResume {
        /// The caller.
        username: String,
        /// The schedule's name.
        name: String,
    },
    /// Delete a schedule (here and on EventBridge Scheduler).
    ScheduleDelete {
        /// The caller.
        username: String,
        /// The schedule's name.
        name: String,
    },
}

/// The fields of `schedule_create`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleCreateOp {
    /// The caller.
    pub username: String,
    /// The schedule's name.
    pub name: String,
    /// `rate(...)`, `cron(...)` or `at(...)`.
    pub expression: String,
    /// An IANA time zone (default UTC).
    #[serde(default)]
    pub timezone: String,
    /// What each firing launches: a launch operation's fields (its
    /// `username` is the caller's).
    pub launch: LaunchOp,
}

fn default_limit() -> usize {
    50
}

/// The fields of a launch.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchOp {
    /// Who launches it.
    #[serde(default)]
    pub username: String,
    /// A schedule's firing: launch this schedule's stored request (no
    /// other launch field is given).
    #[serde(default)]
    pub schedule: Option<String>,
    /// With `schedule`: the scheduled time (RFC 3339), from
    /// `<aws.scheduler.scheduled-time>`; the job id derives from it.
    #[serde(default)]
    pub scheduled_time: Option<String>,
    /// `RUN_SCRIPT` (default), `RUN_COLLECTION` or `RUN_ACTION`.
    #[serde(default)]
    pub run_mode: Option<String>,
    /// The script's text.
    #[serde(default)]
    pub script: Option<String>,
    /// A script already in the primary bucket.
    #[serde(default)]
    pub script_key: Option<String>,
    /// `interpreter`.
    #[serde(default)]
    pub interpreter: String,
    /// `args`.
    #[serde(default)]
    pub args: Vec<String>,
    /// `params`.
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
    /// RUN_COLLECTION's owner path.
    #[serde(default)]
    pub collection_owner: Option<String>,
    /// RUN_ACTION's action.
    #[serde(default)]
    pub action_id: Option<String>,
    /// `timeout_seconds`.
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
    /// `max_attempts`.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// A caller-chosen id (a retried invocation is then harmless).
    #[serde(default)]
    pub job_id: Option<String>,
    /// CPU units.
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Memory in MiB.
    #[serde(default)]
    pub memory: Option<u32>,
    /// Fargate Spot.
    #[serde(default)]
    pub spot: bool,
    /// A label for the job, shown in lists (at most 200 characters).
    #[serde(default)]
    pub name: Option<String>,
    /// Retry rules (`[{"on_exit_code": "3", "action": "RETRY"}]`).
    #[serde(default)]
    pub retry: Vec<RetryRuleInput>,
    /// Higher is admitted first when work waits (default 0).
    #[serde(default)]
    pub priority: i32,
    /// Secrets for the script's environment: env var name -> reference
    /// (`plus/USER/...` or its ARN, `ssm:/plus/USER/...`).
    #[serde(default)]
    pub secrets: std::collections::HashMap<String, String>,
}

/// Errors the handler returns: the Lambda runtime reports them as the
/// invocation's error with this message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The event is not a valid operation.
    #[error("the event is not a valid operation: {0}")]
    BadEvent(#[source] serde_json::Error),
    /// The launch names no run mode there is.
    #[error("the event is not a valid operation: run_mode {0:?} is not RUN_SCRIPT, RUN_COLLECTION or RUN_ACTION")]
    BadRunMode(String),
    /// The operation failed.
    #[error(transparent)]
    Launcher(#[from] LauncherError),
    /// A schedule operation failed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// Handles one event.
///
/// # Errors
/// [`HandlerError`] with a sentence for the caller.
pub async fn handle(launcher: &Launcher, event: Value) -> Result<Value, HandlerError> {
    if let Some(ecs) = EcsEvent::parse(&event) {
        let ecs = ecs.map_err(HandlerError::BadEvent)?;
        // Boxed: the monitor's future is deep, and this one sits beside the others.
        return Ok(json!(Box::pin(launcher.settle_task_event(&ecs)).await?));
    }
    let op: Operation = serde_json::from_value(event).map_err(HandlerError::BadEvent)?;
    Ok(match op {
        Operation::Launch(l) => {
            if let Some(name) = l.schedule.clone() {
                return fire(launcher, *l, &name).await;
            }
            let req = launch_request(*l)?;
            crate::ops::request::refuse_env_secrets(&req.secrets)
                .map_err(crate::ops::LauncherError::from)?;
            let launched = launcher.launch(&req).await?;
            json!({ "job_id": launched.job.object_id, "status": launched.job.status().as_str_name(), "created": launched.created })
        }
        Operation::ScheduleCreate(c) => {
            let c = *c;
            let mut launch = c.launch;
            launch.username.clone_from(&c.username);
            let request = launch_request(launch)?;
            let schedule = launcher
                .create_schedule(NewSchedule {
                    name: c.name,
                    expression: c.expression,
                    timezone: c.timezone,
                    request,
                })
                .await?;
            schedule.view()
        }
        Operation::ScheduleList { username } => {
            let all = launcher.list_schedules(&username).await?;
            json!({ "schedules": all.iter().map(Schedule::view).collect::<Vec<_>>() })
        }
        Operation::ScheduleShow { username, name } => {
            launcher.show_schedule(&username, &name).await?.view()
        }
        Operation::SchedulePause { username, name } => launcher
            .set_schedule_state(&username, &name, false)
            .await?
            .view(),
        Operation::ScheduleResume { username, name } => launcher
            .set_schedule_state(&username, &name, true)
            .await?
            .view(),
        Operation::ScheduleDelete { username, name } => {
            launcher.delete_schedule(&username, &name).await?;
            json!({ "deleted": name })
        }
        Operation::Status { username, job_id } => {
            job_json(&launcher.status(&username, &job_id).await?)
        }
        Operation::Events {
            username,
            job_id,
            after,
        } => {
            let events = launcher
                .events(&username, &job_id, after, 1000)
                .await?
                .events;
            let last = events.last().map(|e| e.seq).unwrap_or(after);
            json!({ "events": events, "last_seq": last })
        }
        Operation::Cancel { username, job_id } => {
            job_json(&launcher.cancel(&username, &job_id).await?)
        }
        Operation::List {
            username,
            start,
            limit,
        } => {
            let page = launcher
                .list(&username, None, start.as_deref(), limit.clamp(1, 1000))
                .await?;
            json!({ "jobs": page.items.iter().map(job_json).collect::<Vec<_>>(), "next": page.next })
        }
        Operation::Monitor => json!({ "settled": launcher.monitor(&Policy::default()).await? }),
    })
}

/// The launch request of a launch operation's fields.
fn launch_request(l: LaunchOp) -> Result<LaunchRequest, HandlerError> {
    let run_mode = match l.run_mode.as_deref() {
        None => RunMode::RunScript,
        Some(m) => RunMode::from_str_name(m)
            .filter(|m| *m != RunMode::Unspecified)
            .ok_or_else(|| HandlerError::BadRunMode(m.to_owned()))?,
    };
    Ok(LaunchRequest {
        username: l.username,
        run_mode,
        script: l.script.map(String::into_bytes),
        script_key: l.script_key,
        script_name: "the event's script".into(),
        interpreter: l.interpreter,
        args: l.args,
        params: l.params,
        collection_owner: l.collection_owner,
        action_id: l.action_id,
        timeout_seconds: l.timeout_seconds,
        max_attempts: l.max_attempts,
        job_id: l.job_id,
        name: l.name,
        retry: l.retry.into_iter().map(Into::into).collect(),
        priority: l.priority,
        secrets: l.secrets,
        resources: TaskResources {
            cpu: l.cpu.unwrap_or(0),
            memory: l.memory.unwrap_or(0),
            spot: l.spot,
            ..TaskResources::default()
        },
        ..LaunchRequest::default()
    })
}

/// A schedule's firing (the launch operation an EventBridge schedule
/// sends): the schedule's stored request, launched once per scheduled time.
async fn fire(launcher: &Launcher, l: LaunchOp, name: &str) -> Result<Value, HandlerError> {
    let Some(time) = l.scheduled_time.as_deref() else {
        return Err(ScheduleError::Invalid(format!(
            "the launch of schedule {name} has no scheduled_time: the schedule's target input passes <aws.scheduler.scheduled-time>"
        ))
        .into());
    };
    let extra = l.script.is_some()
        || l.script_key.is_some()
        || l.action_id.is_some()
        || l.collection_owner.is_some()
        || l.job_id.is_some()
        || !l.params.is_empty()
        || !l.secrets.is_empty();
    if extra {
        return Err(ScheduleError::Invalid(format!(
            "the launch of schedule {name} carries other launch fields: a firing launches the schedule's stored request, so send only username, schedule and scheduled_time"
        ))
        .into());
    }
    let scheduled = parse_scheduled_time(time)?;
    Ok(
        match launcher.fire_schedule(&l.username, name, scheduled).await? {
            Some(launched) => json!({
                "job_id": launched.job.object_id,
                "status": launched.job.status().as_str_name(),
                "created": launched.created,
                "schedule": name,
                "scheduled_time": time,
            }),
            None => {
                json!({ "ignored": format!("schedule {name} is paused: resume it with `plus schedule resume {name}`") })
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{LocalRunner, Runner};

    async fn local() -> (Launcher, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let backend = plus_testkit::local_backend(dir.path()).await;
        // A worker that never starts: the handler's answers are what is tested.
        let mut runner = LocalRunner::new(dir.path().into());
        runner.worker = vec!["/bin/true".into()];
        (Launcher::new(backend, Runner::Local(runner)), dir)
    }

    #[tokio::test]
    async fn a_launch_takes_a_name_and_refuses_a_bad_one() {
        let (launcher, _dir) = local().await;
        handle(&launcher, json!({"op": "launch", "username": "alice", "script": "echo hi", "job_id": "j-n", "name": "weekly"})).await.unwrap();
        let job = handle(
            &launcher,
            json!({"op": "status", "username": "alice", "job_id": "j-n"}),
        )
        .await
        .unwrap();
        assert_eq!(job["name"], "weekly");
        let err = handle(&launcher, json!({"op": "launch", "username": "alice", "script": "echo hi", "name": "x".repeat(201)}))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 200"), "{err}");
    }

    #[tokio::test]
    async fn a_launch_takes_secret_references_and_refuses_others_before_writing() {
        let (launcher, _dir) = local().await;
        handle(&launcher, json!({"op": "launch", "username": "alice", "script": "echo hi", "job_id": "j-s", "secrets": {"DB": "plus/alice/db", "T": "ssm:/plus/alice/t"}})).await.unwrap();
        let job = handle(
            &launcher,
            json!({"op": "status", "username": "alice", "job_id": "j-s"}),
        )
        .await
        .unwrap();
        assert_eq!(
            job["secrets"],
            json!({"DB": "plus/alice/db", "T": "ssm:/plus/alice/t"})
        );
        for (secrets, needle) in [
            (json!({"DB": "plus/bob/db"}), "plus/alice/"),
            (json!({"JOB_ID": "plus/alice/db"}), "reserved"),
            (json!({"T": "env:HOME"}), "env: references"),
        ] {
            let err = handle(&launcher, json!({"op": "launch", "username": "alice", "script": "echo hi", "job_id": "j-bad", "secrets": secrets}))
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
        let missing = handle(
            &launcher,
            json!({"op": "status", "username": "alice", "job_id": "j-bad"}),
        )
        .await;
        assert!(missing.is_err(), "nothing was written");
    }

    #[tokio::test]
    async fn a_launch_takes_retry_rules_and_refuses_bad_ones_before_writing() {
        let (launcher, _dir) = local().await;
        handle(&launcher, json!({"op": "launch", "username": "alice", "script": "exit 3", "job_id": "j-r", "retry": [{"on_exit_code": "3", "action": "RETRY"}]})).await.unwrap();
        let job = handle(
            &launcher,
            json!({"op": "status", "username": "alice", "job_id": "j-r"}),
        )
        .await
        .unwrap();
        assert_eq!(
            job["retry"],
            json!([{"on_exit_code": "3", "action": "RETRY"}])
        );
        let rule = json!({"on_exit_code": "1", "action": "RETRY"});
        let err = handle(&launcher, json!({"op": "launch", "username": "alice", "script": "exit 3", "retry": vec![rule; 6]}))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 5"), "{err}");
        let err = handle(&launcher, json!({"op": "launch", "username": "alice", "script": "exit 3", "retry": [{"on_reason": "Out(of)*", "action": "RETRY"}]}))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("retry rule 1: on_reason"), "{err}");
        let err = handle(&launcher, json!({"op": "launch", "username": "alice", "script": "exit 3", "retry": [{"exit": "3"}]}))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `exit`"), "{err}");
        let list = handle(&launcher, json!({"op": "list", "username": "alice"}))
            .await
            .unwrap();
        assert_eq!(
            list["jobs"].as_array().unwrap().len(),
            1,
            "nothing more was written"
        );
    }

    #[tokio::test]
    async fn launch_then_status_events_list_and_cancel() {
        let (launcher, _dir) = local().await;
        let out = handle(&launcher, json!({"op": "launch", "username": "alice", "script": "echo hi", "job_id": "j-1", "params": {"n": 3}})).await.unwrap();
        assert_eq!(
            out,
            json!({"job_id": "j-1", "status": "INITIALIZING", "created": true})
        );
        let again = handle(
            &launcher,
            json!({"op": "launch", "username": "alice", "script": "echo hi", "job_id": "j-1"}),
        )
        .await
        .unwrap();
        assert_eq!(again["created"], false);
        let status = handle(
            &launcher,
            json!({"op": "status", "username": "alice", "job_id": "j-1"}),
        )
        .await
        .unwrap();
        assert_eq!(status["params"], json!({"n": 3}));
        let list = handle(&launcher, json!({"op": "list", "username": "alice"}))
            .await
            .unwrap();
        assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
        let events = handle(
            &launcher,
            json!({"op": "events", "username": "alice", "job_id": "j-1"}),
        )
        .await
        .unwrap();
        // The worker here never starts, so the stream is empty: the
        // answer's whole shape, with the sequence number to poll after.
        assert_eq!(events, json!({"events": [], "last_seq": 0}));
        let cancelled = handle(
            &launcher,
            json!({"op": "cancel", "username": "alice", "job_id": "j-1"}),
        )
        .await
        .unwrap();
        assert_eq!(cancelled["status"], "CANCELLED");
    }

    #[tokio::test]
    async fn bad_events_and_other_users_are_refused_with_a_reason() {
        let (launcher, _dir) = local().await;
        let err = handle(&launcher, json!({"op": "explode"}))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `explode`"), "{err}");
        let err = handle(&launcher, json!({"op": "launch", "username": "alice"}))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("a script is required"), "{err}");
        handle(
            &launcher,
            json!({"op": "launch", "username": "alice", "script": "echo", "job_id": "j-2"}),
        )
        .await
        .unwrap();
        let err = handle(
            &launcher,
            json!({"op": "status", "username": "bob", "job_id": "j-2"}),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("was not found"), "{err}");
        let err = handle(&launcher, json!({"op": "launch", "username": "alice", "script": "echo", "cpu": 256, "memory": 9999})).await.unwrap_err().to_string();
        assert!(err.contains("choose one of 512, 1024, 2048 MiB"), "{err}");
    }

    #[tokio::test]
    async fn only_the_users_own_action_and_collection_are_launched() {
        let (launcher, _dir) = local().await;
        let script = plus_jobs::Script {
            source: "echo bob".into(),
            ..plus_jobs::Script::default()
        };
        launcher
            .put_action(
                "bob",
                "bobact",
                script,
                serde_json::Map::new(),
                Default::default(),
            )
            .await
            .unwrap();
        launcher
            .import_items(
                "bob",
                "bob/collections/x",
                "{\"id\":\"bobitem1\"}".as_bytes(),
            )
            .await
            .unwrap();
        let refusal = |id: &'static str| {
            let launcher = &launcher;
            async move {
                handle(
                    launcher,
                    json!({"op": "launch", "username": "alice", "run_mode": "RUN_ACTION", "action_id": id}),
                )
                .await
                .unwrap_err()
                .to_string()
                .replace(id, "X")
            }
        };
        let missing = refusal("no-such-action").await;
        assert!(missing.contains("was not found"), "{missing}");
        assert_eq!(refusal("bobact").await, missing);
        assert_eq!(refusal("bobitem1").await, missing);
        let err = handle(
            &launcher,
            json!({"op": "launch", "username": "alice", "run_mode": "RUN_COLLECTION", "collection_owner": "bob/collections/x", "script": "echo"}),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("collection bob/collections/x was not found among yours"),
            "{err}"
        );
        let list = handle(&launcher, json!({"op": "list", "username": "alice"}))
            .await
            .unwrap();
        assert_eq!(list["jobs"], json!([]), "nothing was written");
    }

    #[tokio::test]
    async fn a_schedule_fires_once_per_scheduled_time_and_not_while_paused() {
        let (launcher, _dir) = local().await;
        let created = handle(&launcher, json!({"op": "schedule_create", "username": "alice", "name": "hourly", "expression": "rate(1 hour)", "launch": {"script": "echo hi", "params": {"n": 3}}})).await.unwrap();
        assert_eq!(created["expression"], "rate(1 hour)");
        let firing = json!({"op": "launch", "username": "alice", "schedule": "hourly", "scheduled_time": "2030-01-31T09:00:00Z"});
        let first = handle(&launcher, firing.clone()).await.unwrap();
        assert_eq!(first["created"], true, "{first}");
        let again = handle(&launcher, firing.clone()).await.unwrap();
        assert_eq!(again["created"], false);
        assert_eq!(again["job_id"], first["job_id"]);
        let jobs = handle(&launcher, json!({"op": "list", "username": "alice"}))
            .await
            .unwrap();
        assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1);
        assert_eq!(jobs["jobs"][0]["params"], json!({"n": 3}));
        assert_eq!(jobs["jobs"][0]["name"], "hourly");
        let shown = handle(
            &launcher,
            json!({"op": "schedule_show", "username": "alice", "name": "hourly"}),
        )
        .await
        .unwrap();
        assert_eq!(shown["last_fired_for"], "2030-01-31T09:00:00.000Z");
        assert_eq!(shown["last_job_id"], first["job_id"]);

        handle(
            &launcher,
            json!({"op": "schedule_pause", "username": "alice", "name": "hourly"}),
        )
        .await
        .unwrap();
        let paused = handle(&launcher, json!({"op": "launch", "username": "alice", "schedule": "hourly", "scheduled_time": "2030-01-31T10:00:00Z"})).await.unwrap();
        assert!(
            paused["ignored"].as_str().unwrap().contains("paused"),
            "{paused}"
        );
        let extra = handle(&launcher, json!({"op": "launch", "username": "alice", "schedule": "hourly", "scheduled_time": "2030-01-31T10:00:00Z", "script": "rm -rf /"})).await.unwrap_err().to_string();
        assert!(
            extra.contains("only username, schedule and scheduled_time"),
            "{extra}"
        );
        let listed = handle(&launcher, json!({"op": "schedule_list", "username": "bob"}))
            .await
            .unwrap();
        assert_eq!(listed["schedules"], json!([]), "bob sees none of alice's");
        handle(
            &launcher,
            json!({"op": "schedule_delete", "username": "alice", "name": "hourly"}),
        )
        .await
        .unwrap();
        let err = handle(&launcher, firing).await.unwrap_err().to_string();
        assert!(err.contains("was not found"), "{err}");
    }
}
