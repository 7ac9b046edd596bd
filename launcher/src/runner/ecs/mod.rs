//! The ECS Fargate adapter: one RunTask per job attempt, with the worker's
//! environment as container overrides (never credentials: the task role
//! provides them), an idempotency token derived from the job id and
//! attempt, tags, task-level size and FARGATE or FARGATE_SPOT capacity.

use std::{collections::HashMap, sync::Arc, time::Duration};

use aws_sdk_ecs::{
    error::{ProvideErrorMetadata, SdkError},
    types::{
        AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
        EphemeralStorage, KeyValuePair, LaunchType, NetworkConfiguration, Tag, Task, TaskOverride,
    },
    Client,
};
use backon::{ExponentialBuilder, Retryable};
use plus_jobs::Job;
use tokio::sync::Mutex;

use super::port::{worker_env, ContainerExit, RunnerError, StoppedTask, TaskState};

mod task_definition;

/// ECS's limit on the JSON of a RunTask's overrides.
pub const OVERRIDES_LIMIT: usize = 8192;

/// Where and how tasks run: the launcher's ECS settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EcsSettings {
    /// `ECS_CLUSTER`.
    pub cluster: String,
    /// `TASK_DEFINITION`: family, family:revision or ARN.
    pub task_definition: String,
    /// `CONTAINER_NAME` (default `worker`).
    pub container_name: String,
    /// `SUBNETS`.
    pub subnets: Vec<String>,
    /// `SECURITY_GROUPS`.
    pub security_groups: Vec<String>,
    /// `ASSIGN_PUBLIC_IP` (`ENABLED` to pull images without a NAT gateway).
    pub assign_public_ip: bool,
    /// The stores every worker is told about (`REGION`, `DYNAMO_TABLE`,
    /// `DYNAMO_STREAMS_TABLE`, `PRIMARY_BUCKET`).
    pub stores: plus_jobs::contract::AwsSettings,
}

/// Runs jobs as Fargate tasks.
#[derive(Clone, Debug)]
pub struct EcsRunner {
    /// The ECS client.
    pub client: Client,
    /// The settings.
    pub settings: EcsSettings,
    /// Task definitions registered for other images, by key (so each is
    /// registered once, not once per job).
    registered: Arc<Mutex<HashMap<String, String>>>,
    /// The task definition's vCPUs, read once.
    default_vcpus: Arc<tokio::sync::OnceCell<Option<f64>>>,
}

/// The least time between two RunTask calls of one process: at most 10
/// calls a second sustained, half of ECS's RunTask rate (about 20/s per
/// account, shared by every launcher).
pub const RUN_TASK_INTERVAL: Duration = Duration::from_millis(100);

/// Waits for this process's next RunTask slot (a token bucket of one token
/// refilled every [`RUN_TASK_INTERVAL`]).
async fn pace() {
    static NEXT: Mutex<Option<tokio::time::Instant>> = Mutex::const_new(None);
    let slot = {
        let mut next = NEXT.lock().await;
        let now = tokio::time::Instant::now();
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + RUN_TASK_INTERVAL);
        slot
    };
    tokio::time::sleep_until(slot).await;
}

/// Whether a RunTask failure may pass if tried again.
fn retryable_failure(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("capacity is unavailable")
        // The account's Fargate vCPU (or task) quota: "You've reached the
        // limit on the number of vCPUs you can run concurrently".
        || r.contains("reached the limit on the number of")
        || r.contains("throttl")
        || r.contains("rate exceeded")
        || r.starts_with("resource:")
}

/// The SDK's error as a sentence (`Code: message`), whether it may pass if
/// tried again, and the error itself as the cause.
pub(super) fn sdk_error<E, R>(e: SdkError<E, R>) -> (String, bool, BoxError)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (msg, retry) = match &e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("Unknown").to_owned();
            let msg = s.err().message().unwrap_or("").to_owned();
            let retry = matches!(
                code.as_str(),
                "ThrottlingException" | "ServerException" | "ServiceUnavailableException"
            ) || retryable_failure(&msg);
            (format!("{code}: {msg}"), retry)
        }
        other => (
            plus_jobs::error_chain(other),
            !matches!(other, SdkError::ConstructionFailure(_)),
        ),
    };
    let cause = SdkCause {
        summary: msg.clone(),
        sdk: Box::new(e),
    };
    (msg, retry, Box::new(cause))
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An SDK error, as summed up in the sentence that reports it (`Code:
/// message`): the cause of a [`RunnerError::Ecs`], with the SDK's own error
/// (and its chain) behind it.
#[derive(Debug, thiserror::Error)]
#[error("{summary}")]
pub struct SdkCause {
    summary: String,
    #[source]
    sdk: BoxError,
}

/// An ECS failure: `message`, then (for a failed call) the SDK's cause.
pub(super) fn ecs_error(message: String, retryable: bool, source: Option<BoxError>) -> RunnerError {
    RunnerError::Ecs {
        message,
        retryable,
        source,
    }
}

/// The idempotency token of one attempt of one job: at most 64 ASCII
/// characters, the same for a retried launch of the same attempt.
pub fn client_token(job_id: &str, attempt: u32) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("plus-worker/{job_id}/{attempt}").as_bytes(),
    )
    .to_string()
}

impl EcsRunner {
    /// A runner with `client` and `settings`.
    pub fn new(client: Client, settings: EcsSettings) -> Self {
        Self {
            client,
            settings,
            registered: Arc::default(),
            default_vcpus: Arc::default(),
        }
    }

    /// The vCPUs of `TASK_DEFINITION` (its task-level `cpu` / 1024), read
    /// once; `None` when it cannot be read or says nothing.
    pub async fn default_vcpus(&self) -> Option<f64> {
        *self
            .default_vcpus
            .get_or_init(|| async {
                let out = self
                    .client
                    .describe_task_definition()
                    .task_definition(&self.settings.task_definition)
                    .send()
                    .await
                    .ok()?;
                let cpu: f64 = out.task_definition?.cpu?.trim().parse().ok()?;
                (cpu > 0.0).then_some(cpu / 1024.0)
            })
            .await
    }

    /// The container environment of `job`: exactly the contract of
    /// DESIGN.md, nothing secret.
    ///
    /// # Errors
    /// [`RunnerError::Invalid`] when the job's id cannot be a `JOB_ID`.
    pub fn env_for(&self, job: &Job) -> Result<Vec<(String, String)>, RunnerError> {
        worker_env(job, &self.settings.stores)
    }

    /// The overrides of a RunTask for `job`.
    ///
    /// # Errors
    /// When they would exceed ECS's 8192-character limit.
    pub fn overrides(&self, job: &Job) -> Result<TaskOverride, RunnerError> {
        let env = self.env_for(job)?;
        let r = job.resources.clone().unwrap_or_default();
        // The JSON ECS measures: {"containerOverrides":[{"name":..,"environment":[{"name":..,"value":..}]}],"cpu":..,...}
        let json = serde_json::json!({
            "containerOverrides": [{
                "name": self.settings.container_name,
                "environment": env.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect::<Vec<_>>(),
            }],
            "cpu": (r.cpu > 0).then(|| r.cpu.to_string()),
            "memory": (r.memory > 0).then(|| r.memory.to_string()),
            "ephemeralStorage": (r.ephemeral_storage_gib > 0).then(|| serde_json::json!({"sizeInGiB": r.ephemeral_storage_gib})),
        });
        let size = json.to_string().len();
        if size > OVERRIDES_LIMIT {
            return Err(RunnerError::Invalid(format!(
                "the task overrides would be {size} characters, over ECS's limit of {OVERRIDES_LIMIT}: shorten the job id, collection owner or action id"
            )));
        }
        let container = ContainerOverride::builder()
            .name(&self.settings.container_name)
            .set_environment(Some(
                env.into_iter()
                    .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                    .collect(),
            ))
            .build();
        let mut o = TaskOverride::builder().container_overrides(container);
        if r.cpu > 0 {
            o = o.cpu(r.cpu.to_string());
        }
        if r.memory > 0 {
            o = o.memory(r.memory.to_string());
        }
        if r.ephemeral_storage_gib > 0 {
            o = o.ephemeral_storage(
                EphemeralStorage::builder()
                    .size_in_gib(r.ephemeral_storage_gib as i32)
                    .build(),
            );
        }
        Ok(o.build())
    }

    /// Starts the task for `job`'s current attempt; returns its ARN.
    /// Throttling and "Capacity is unavailable" are retried with backoff and
    /// jitter; any other failure comes back as a sentence.
    ///
    /// # Errors
    /// [`RunnerError`] naming the reason.
    pub async fn run_task(&self, job: &Job) -> Result<String, RunnerError> {
        let overrides = self.overrides(job)?;
        let task_definition = self.task_definition_for(job.resources.as_ref()).await?;
        let attempt = job.attempt.unwrap_or(1);
        let spot = job.resources.as_ref().is_some_and(|r| r.spot);
        let provider = if spot { "FARGATE_SPOT" } else { "FARGATE" };
        let network = NetworkConfiguration::builder()
            .awsvpc_configuration(
                AwsVpcConfiguration::builder()
                    .set_subnets(Some(self.settings.subnets.clone()))
                    .set_security_groups(Some(self.settings.security_groups.clone()))
                    .assign_public_ip(if self.settings.assign_public_ip {
                        AssignPublicIp::Enabled
                    } else {
                        AssignPublicIp::Disabled
                    })
                    .build()
                    .map_err(|e| {
                        RunnerError::Invalid(format!(
                            "the network configuration is invalid: {e}: set SUBNETS"
                        ))
                    })?,
            )
            .build();
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(tag_value(v)).build();
        let attempt_once = || async {
            pace().await;
            let mut request = self.client.run_task();
            request = if spot {
                // Spot needs a capacity-provider strategy (the cluster must
                // have FARGATE_SPOT, which scripts/setup.sh adds).
                request.capacity_provider_strategy(
                    CapacityProviderStrategyItem::builder()
                        .capacity_provider(provider)
                        .weight(1)
                        .build()
                        .expect("provider is set"),
                )
            } else {
                request.launch_type(LaunchType::Fargate)
            };
            let out = request
                .cluster(&self.settings.cluster)
                .task_definition(&task_definition)
                .count(1)
                .network_configuration(network.clone())
                .overrides(overrides.clone())
                .started_by("plus-launcher")
                .tags(tag("plus:job-id", &job.object_id))
                .tags(tag("plus:username", &job.username))
                .tags(tag("plus:attempt", &attempt.to_string()))
                .client_token(client_token(&job.object_id, attempt))
                .send()
                .await
                .map_err(|e| {
                    let (msg, retry, source) = sdk_error(e);
                    (format!("RunTask failed: {msg}"), retry, Some(source))
                })?;
            if let Some(f) = out.failures.as_ref().and_then(|f| f.first()) {
                let reason = f.reason.clone().unwrap_or_default();
                let detail = f
                    .detail
                    .clone()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                let retry = retryable_failure(&reason);
                return Err((format!("RunTask failed: {reason}{detail}"), retry, None));
            }
            out.tasks
                .unwrap_or_default()
                .into_iter()
                .find_map(|t| t.task_arn)
                .ok_or_else(|| {
                    (
                        "RunTask started no task and named no failure".to_owned(),
                        false,
                        None,
                    )
                })
        };
        attempt_once
            .retry(
                ExponentialBuilder::default()
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(6),
            )
            .when(|(_, retry, _)| *retry)
            .await
            .map_err(|(msg, retry, source)| ecs_error(hint(&msg), retry, source))
    }

    /// Describes tasks by ARN, in batches of 100 (DescribeTasks' limit).
    /// Tasks ECS no longer knows are left out of the map.
    ///
    /// # Errors
    /// The SDK's error, as a sentence.
    pub async fn describe(
        &self,
        arns: &[String],
    ) -> Result<HashMap<String, TaskState>, RunnerError> {
        let mut found = HashMap::new();
        for chunk in arns.chunks(100) {
            let out = self
                .client
                .describe_tasks()
                .cluster(&self.settings.cluster)
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| {
                    let (msg, retry, source) = sdk_error(e);
                    ecs_error(format!("DescribeTasks failed: {msg}"), retry, Some(source))
                })?;
            for task in out.tasks.unwrap_or_default() {
                if let Some(arn) = task.task_arn.clone() {
                    found.insert(arn, task_state(&task, &self.settings.container_name));
                }
            }
        }
        Ok(found)
    }

    /// Stops a task (its worker gets SIGTERM, then SIGKILL after the
    /// definition's `stopTimeout`).
    ///
    /// # Errors
    /// The SDK's error, as a sentence.
    pub async fn stop(&self, task_arn: &str, reason: &str) -> Result<(), RunnerError> {
        self.client
            .stop_task()
            .cluster(&self.settings.cluster)
            .task(task_arn)
            .reason(reason.chars().take(255).collect::<String>())
            .send()
            .await
            .map(drop)
            .map_err(|e| {
                let (msg, retry, source) = sdk_error(e);
                ecs_error(format!("StopTask failed: {msg}"), retry, Some(source))
            })
    }
}

/// Adds what to do to a RunTask failure.
fn hint(msg: &str) -> String {
    let m = msg.to_ascii_lowercase();
    let fix = if m.contains("reached the limit on the number of") {
        "the account's Fargate quota is reached: the job waits; raise the quota in Service Quotas (fargate L-3032A538) or lower PLUS_MAX_VCPUS"
    } else if m.contains("capacity is unavailable") {
        "Fargate had no capacity after several tries: retry later, use another subnet or availability zone, or launch without --spot"
    } else if m.contains("clusternotfound") || m.contains("cluster not found") {
        "ECS_CLUSTER names no cluster in this region: run scripts/setup.sh or fix ECS_CLUSTER"
    } else if m.contains("task definition") || m.contains("taskdefinition") {
        "check TASK_DEFINITION (scripts/setup.sh registers it)"
    } else if m.contains("subnet") || m.contains("security group") || m.contains("network") {
        "check SUBNETS and SECURITY_GROUPS"
    } else if m.contains("accessdenied") || m.contains("not authorized") {
        "the launcher's role needs ecs:RunTask and iam:PassRole for the task's roles"
    } else {
        "see the ECS console's stopped tasks for details"
    };
    format!("{msg}: {fix}")
}

/// A described task in the monitor's terms: alive with its `lastStatus`,
/// or stopped with its stop code, reason and the exit of the container
/// named `container` (never just the first container: a sidecar's exit
/// says nothing about the job).
pub fn task_state(task: &Task, container: &str) -> TaskState {
    if task.last_status.as_deref() != Some("STOPPED") {
        return TaskState::Alive {
            status: task.last_status.clone().unwrap_or_else(|| "?".to_owned()),
        };
    }
    let worker = task
        .containers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.name.as_deref() == Some(container))
        .map(|c| ContainerExit {
            exit_code: c.exit_code,
            reason: c.reason.clone().unwrap_or_default(),
        });
    TaskState::Stopped(StoppedTask {
        stop_code: task
            .stop_code
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        reason: task.stopped_reason.clone().unwrap_or_default(),
        container: container.to_owned(),
        worker,
    })
}

/// `value` as an ECS tag value: ECS allows letters, digits, spaces and
/// `_.:/=+-@` (at most 256 characters) and refuses the whole RunTask
/// otherwise, so any other character (the `'` of `d'arcy@example.com`)
/// becomes `_`.
pub fn tag_value(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            let allowed = c.is_alphanumeric()
                || (c.is_whitespace() && !c.is_control())
                || "_.:/=+-@".contains(c);
            if allowed {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

#[cfg(test)]
mod tests;
