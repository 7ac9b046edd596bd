//! The ECS Fargate runner: one RunTask per job attempt, with the worker's
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
use plus_jobs::{Job, TaskResources};
use tokio::sync::Mutex;

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
    /// The environment every worker needs besides the job's own variables:
    /// `REGION`, `DYNAMO_TABLE`, `DYNAMO_STREAMS_TABLE`, `PRIMARY_BUCKET`.
    pub worker_env: Vec<(String, String)>,
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
}

/// Why a task could not be started, as a sentence for the job's `error`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunTaskError(pub String);

/// Whether a RunTask failure may pass if tried again.
fn retryable_failure(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("capacity is unavailable")
        || r.contains("throttl")
        || r.contains("rate exceeded")
        || r.starts_with("resource:")
}

fn sdk_message<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
) -> (String, bool) {
    match e {
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
        }
    }

    /// The container environment of `job`: exactly the contract of
    /// DESIGN.md, nothing secret.
    pub fn env_for(&self, job: &Job) -> Vec<(String, String)> {
        crate::launch::worker_env(job, &self.settings.worker_env)
    }

    /// The overrides of a RunTask for `job`.
    ///
    /// # Errors
    /// When they would exceed ECS's 8192-character limit.
    pub fn overrides(&self, job: &Job) -> Result<TaskOverride, RunTaskError> {
        let env = self.env_for(job);
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
            return Err(RunTaskError(format!(
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
    /// [`RunTaskError`] naming the reason.
    pub async fn run_task(&self, job: &Job) -> Result<String, RunTaskError> {
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
                        RunTaskError(format!(
                            "the network configuration is invalid: {e}: set SUBNETS"
                        ))
                    })?,
            )
            .build();
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let attempt_once = || async {
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
                    let (msg, retry) = sdk_message(&e);
                    (format!("RunTask failed: {msg}"), retry)
                })?;
            if let Some(f) = out.failures.as_ref().and_then(|f| f.first()) {
                let reason = f.reason.clone().unwrap_or_default();
                let detail = f
                    .detail
                    .clone()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default();
                return Err((
                    format!("RunTask failed: {reason}{detail}"),
                    retryable_failure(&reason),
                ));
            }
            out.tasks
                .unwrap_or_default()
                .into_iter()
                .find_map(|t| t.task_arn)
                .ok_or_else(|| {
                    (
                        "RunTask started no task and named no failure".to_owned(),
                        false,
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
            .when(|(_, retry)| *retry)
            .await
            .map_err(|(msg, _)| RunTaskError(hint(&msg)))
    }

    /// The task definition to run: the configured one, or one registered
    /// (once, keyed by a hash of what differs) for another image.
    async fn task_definition_for(
        &self,
        resources: Option<&TaskResources>,
    ) -> Result<String, RunTaskError> {
        let image = resources.map(|r| r.image.trim()).unwrap_or("");
        if image.is_empty() {
            return Ok(self.settings.task_definition.clone());
        }
        let key = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("{}|{image}", self.settings.task_definition).as_bytes(),
        )
        .simple()
        .to_string();
        let mut registered = self.registered.lock().await;
        if let Some(arn) = registered.get(&key) {
            return Ok(arn.clone());
        }
        let family = format!("plus-worker-{}", &key[..12]);
        // Registered by an earlier launcher? Reuse it.
        if let Ok(found) = self
            .client
            .describe_task_definition()
            .task_definition(&family)
            .send()
            .await
        {
            if let Some(arn) = found.task_definition.and_then(|t| t.task_definition_arn) {
                registered.insert(key, arn.clone());
                return Ok(arn);
            }
        }
        let base = self
            .client
            .describe_task_definition()
            .task_definition(&self.settings.task_definition)
            .send()
            .await
            .map_err(|e| {
                RunTaskError(format!(
                    "the task definition {} cannot be read: {}",
                    self.settings.task_definition,
                    sdk_message(&e).0
                ))
            })?
            .task_definition
            .ok_or_else(|| {
                RunTaskError(format!(
                    "the task definition {} does not exist: run scripts/setup.sh",
                    self.settings.task_definition
                ))
            })?;
        let containers = base
            .container_definitions
            .unwrap_or_default()
            .into_iter()
            .map(|mut c| {
                if c.name.as_deref() == Some(self.settings.container_name.as_str()) {
                    c.image = Some(image.to_owned());
                }
                c
            })
            .collect();
        let out = self
            .client
            .register_task_definition()
            .family(&family)
            .set_container_definitions(Some(containers))
            .set_task_role_arn(base.task_role_arn)
            .set_execution_role_arn(base.execution_role_arn)
            .set_network_mode(base.network_mode)
            .set_requires_compatibilities(base.requires_compatibilities)
            .set_cpu(base.cpu)
            .set_memory(base.memory)
            .set_runtime_platform(base.runtime_platform)
            .send()
            .await
            .map_err(|e| {
                RunTaskError(format!(
                    "a task definition for image {image} could not be registered: {}",
                    sdk_message(&e).0
                ))
            })?;
        let arn = out
            .task_definition
            .and_then(|t| t.task_definition_arn)
            .ok_or_else(|| RunTaskError("RegisterTaskDefinition returned no ARN".into()))?;
        registered.insert(key, arn.clone());
        Ok(arn)
    }

    /// Describes tasks by ARN, in batches of 100 (DescribeTasks' limit).
    /// Tasks ECS no longer knows are left out of the map.
    ///
    /// # Errors
    /// The SDK's error, as a sentence.
    pub async fn describe(&self, arns: &[String]) -> Result<HashMap<String, Task>, RunTaskError> {
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
                    RunTaskError(format!("DescribeTasks failed: {}", sdk_message(&e).0))
                })?;
            for task in out.tasks.unwrap_or_default() {
                if let Some(arn) = task.task_arn.clone() {
                    found.insert(arn, task);
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
    pub async fn stop(&self, task_arn: &str, reason: &str) -> Result<(), RunTaskError> {
        self.client
            .stop_task()
            .cluster(&self.settings.cluster)
            .task(task_arn)
            .reason(reason.chars().take(255).collect::<String>())
            .send()
            .await
            .map(drop)
            .map_err(|e| RunTaskError(format!("StopTask failed: {}", sdk_message(&e).0)))
    }
}

/// Adds what to do to a RunTask failure.
fn hint(msg: &str) -> String {
    let m = msg.to_ascii_lowercase();
    let fix = if m.contains("capacity is unavailable") {
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

/// Fargate's valid task sizes: CPU units and the memory (MiB) each allows.
pub fn valid_memory(cpu: u32) -> Option<Vec<u32>> {
    let range =
        |from: u32, to: u32, step: u32| (from..=to).step_by(step as usize).collect::<Vec<_>>();
    Some(match cpu {
        256 => vec![512, 1024, 2048],
        512 => range(1024, 4096, 1024),
        1024 => range(2048, 8192, 1024),
        2048 => range(4096, 16384, 1024),
        4096 => range(8192, 30720, 1024),
        8192 => range(16384, 61440, 4096),
        16384 => range(32768, 122880, 8192),
        _ => return None,
    })
}

/// Checks a task size against Fargate's rules.
///
/// # Errors
/// A sentence with the valid choices.
pub fn validate_resources(r: &TaskResources) -> Result<(), String> {
    if r.cpu > 0 || r.memory > 0 {
        if r.cpu == 0 || r.memory == 0 {
            return Err(
                "--cpu and --memory go together: give both (e.g. --cpu 1024 --memory 2048)"
                    .to_owned(),
            );
        }
        match valid_memory(r.cpu) {
            None => {
                return Err(format!(
                    "--cpu {} is not a Fargate size: choose 256, 512, 1024, 2048, 4096, 8192 or 16384 CPU units",
                    r.cpu
                ))
            }
            Some(mems) if !mems.contains(&r.memory) => {
                let shown: Vec<String> = mems.iter().map(u32::to_string).collect();
                return Err(format!(
                    "--memory {} MiB is not valid with --cpu {}: choose one of {} MiB",
                    r.memory,
                    r.cpu,
                    shown.join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    if r.ephemeral_storage_gib > 0 && !(21..=200).contains(&r.ephemeral_storage_gib) {
        return Err(format!(
            "--storage {} GiB is out of range: Fargate allows 21 to 200 GiB",
            r.ephemeral_storage_gib
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fargate_sizes_are_checked_with_the_choices_in_the_error() {
        let ok = |cpu, memory| {
            validate_resources(&TaskResources {
                cpu,
                memory,
                ..Default::default()
            })
        };
        assert!(ok(256, 512).is_ok());
        assert!(ok(4096, 30720).is_ok());
        assert!(ok(16384, 122880).is_ok());
        let err = ok(256, 4096).unwrap_err();
        assert!(err.contains("choose one of 512, 1024, 2048 MiB"), "{err}");
        assert!(ok(300, 1024).unwrap_err().contains("not a Fargate size"));
        assert!(ok(1024, 0).unwrap_err().contains("go together"));
        let storage = validate_resources(&TaskResources {
            ephemeral_storage_gib: 500,
            ..Default::default()
        })
        .unwrap_err();
        assert!(storage.contains("21 to 200 GiB"), "{storage}");
    }

    #[test]
    fn overrides_over_the_ecs_limit_are_refused_before_runtask() {
        let conf = aws_sdk_ecs::Config::builder()
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .build();
        let runner = EcsRunner::new(
            Client::from_conf(conf),
            EcsSettings {
                container_name: "worker".into(),
                ..EcsSettings::default()
            },
        );
        let mut job = plus_jobs::job::new_job(
            &plus_jobs::JobId::generate(),
            "alice",
            plus_jobs::RunMode::RunCollection,
            plus_jobs::Timestamp::now(),
        );
        job.collection_owner = format!("alice/collections/{}", "x".repeat(8000));
        let err = runner.overrides(&job).unwrap_err().0;
        assert!(err.contains("over ECS's limit of 8192"), "{err}");
        job.collection_owner = "alice/collections/photos".into();
        assert!(runner.overrides(&job).is_ok());
    }

    #[test]
    fn client_tokens_are_stable_and_short() {
        let a = client_token(&"x".repeat(200), 1);
        assert_eq!(a, client_token(&"x".repeat(200), 1));
        assert_ne!(a, client_token(&"x".repeat(200), 2));
        assert!(a.len() <= 64);
    }

    #[test]
    fn capacity_errors_are_retried_and_explained() {
        assert!(retryable_failure("Capacity is unavailable at this time. Please try again later or in a different availability zone"));
        assert!(!retryable_failure("MISSING"));
        assert!(
            hint("RunTask failed: Capacity is unavailable at this time").contains("without --spot")
        );
    }
}
