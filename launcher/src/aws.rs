//! The AWS backend of the launcher: DynamoDB + S3 + ECS Fargate, configured
//! from the same variable names the worker reads (DESIGN.md), every missing
//! setting named at once. This is where the AWS launcher is put together:
//! the SDK clients are built once here and shared.

use plus_jobs::{backend::AwsConfig, contract::AwsSettings, Backend, BackendConfig, StoreError};

use crate::{
    ops::{admission::Limits, schedules::Scheduler, Launcher},
    runner::{ecs::EcsSettings, EcsRunner, Runner},
};

/// Why the AWS launcher could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// Variables are missing or invalid; each is named with what it holds.
    #[error("the AWS backend is not configured:\n  - {}", .0.join("\n  - "))]
    NotConfigured(Vec<String>),
    /// The stores could not be opened.
    #[error(transparent)]
    Open(#[from] StoreError),
}

/// The launcher's AWS settings from variables (`get` reads one).
///
/// # Errors
/// A list of every missing or invalid variable.
pub fn settings_from(
    get: impl Fn(&str) -> Option<String>,
) -> Result<(AwsConfig, EcsSettings), SetupError> {
    // The store settings are read as every part reads them (the contract);
    // the ECS ones are the launcher's own.
    let stores = AwsSettings::from_vars(
        AwsSettings::NAMES
            .iter()
            .filter_map(|k| get(k).map(|v| (k.to_string(), v))),
    );
    let var = |k: &str| {
        get(k)
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.trim().to_owned())
    };
    let mut missing = match &stores {
        Ok(_) => Vec::new(),
        Err(e) => e.problems.clone(),
    };
    let mut need = |k: &str, what: &str| {
        var(k).unwrap_or_else(|| {
            missing.push(format!("{k} is not set: {what}"));
            String::new()
        })
    };
    let setup = "scripts/setup.sh writes it to .env.deploy";
    let cluster = need("ECS_CLUSTER", &format!("the ECS cluster ({setup})"));
    let task_definition = need(
        "TASK_DEFINITION",
        &format!("the worker's task definition ({setup})"),
    );
    let subnets_raw = need(
        "SUBNETS",
        &format!("comma-separated subnet ids for the tasks ({setup})"),
    );
    let assign_public_ip = match var("ASSIGN_PUBLIC_IP").map(|v| v.to_ascii_uppercase()) {
        None => false,
        Some(v) if v == "ENABLED" || v == "TRUE" => true,
        Some(v) if v == "DISABLED" || v == "FALSE" => false,
        Some(v) => {
            missing.push(format!(
                "ASSIGN_PUBLIC_IP is {v:?}: expected ENABLED or DISABLED"
            ));
            false
        }
    };
    let stores = match stores {
        Ok(stores) if missing.is_empty() => stores,
        _ => return Err(SetupError::NotConfigured(missing)),
    };
    let list = |s: String| {
        s.split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
    };
    let ecs = EcsSettings {
        cluster,
        task_definition,
        container_name: var("CONTAINER_NAME").unwrap_or_else(|| "worker".to_owned()),
        subnets: list(subnets_raw),
        security_groups: list(var("SECURITY_GROUPS").unwrap_or_default()),
        assign_public_ip,
        stores: stores.clone(),
    };
    Ok((stores.aws_config(), ecs))
}

/// A launcher on the AWS backend, configured from the environment.
///
/// # Errors
/// When the configuration is incomplete.
pub async fn launcher_from_env() -> Result<Launcher, SetupError> {
    let (aws, settings) = settings_from(|k| std::env::var(k).ok())?;
    launcher_with(aws, settings).await
}

/// A launcher on the AWS backend that reads records (list, status, events,
/// logs, collections, actions): only the stores' settings are needed; a
/// launch through it is refused naming the ECS settings that are missing.
///
/// # Errors
/// When the stores' settings are incomplete.
pub async fn reader_from_env() -> Result<Launcher, SetupError> {
    let get = |k: &str| std::env::var(k).ok();
    let (aws, runner) = match settings_from(get) {
        Ok((aws, settings)) => return launcher_with(aws, settings).await,
        Err(SetupError::NotConfigured(problems)) => {
            let stores = AwsSettings::from_vars(
                AwsSettings::NAMES
                    .iter()
                    .filter_map(|k| get(k).map(|v| (k.to_string(), v))),
            )
            .map_err(|e| SetupError::NotConfigured(e.problems))?;
            let why = format!(
                "the AWS backend cannot start tasks: {}",
                problems.join("; ")
            );
            (stores.aws_config(), Runner::Unconfigured { why })
        }
        Err(e) => return Err(e),
    };
    let backend = Backend::open(&BackendConfig::Aws(aws)).await?;
    let scheduler = scheduler_from_env(&backend);
    Ok(Launcher::new(backend, runner).with_scheduler(scheduler))
}

/// The schedules' adapter on AWS: EventBridge Scheduler when
/// `PLUS_SCHEDULER_ROLE_ARN` and `PLUS_LAUNCHER_ARN` are set (group
/// `PLUS_SCHEDULE_GROUP`, default `plus-worker`); otherwise schedules can
/// be read but not created or changed, and the refusal names the
/// variables.
pub fn scheduler_from_env(backend: &Backend) -> Scheduler {
    use crate::ops::schedules::aws::{settings_from, AwsScheduler};
    match (settings_from(|k| std::env::var(k).ok()), &backend.sdk) {
        (Ok((group, role, target)), Some(sdk)) => Scheduler::Aws(AwsScheduler::new(
            aws_sdk_scheduler::Client::new(sdk),
            group,
            role,
            target,
        )),
        (Err(missing), _) => Scheduler::Unconfigured {
            why: format!(
                "schedules cannot be created or changed on AWS: {}",
                missing.join("; ")
            ),
        },
        (Ok(_), None) => Scheduler::Unconfigured {
            why: "schedules need the AWS backend's SDK configuration".into(),
        },
    }
}

/// A launcher on the AWS backend with these settings; the SDK clients are
/// built once here and shared. Its admission limits are read from the
/// environment (`PLUS_MAX_VCPUS`, default the account's Fargate vCPU quota
/// or 6; `PLUS_MAX_RUNNING_PER_USER`; `PLUS_DEFAULT_TASK_VCPUS`).
///
/// # Errors
/// When the backend cannot be opened or a limit is invalid.
pub async fn launcher_with(aws: AwsConfig, settings: EcsSettings) -> Result<Launcher, SetupError> {
    let limits = Limits::aws_from(|k| std::env::var(k).ok()).map_err(SetupError::NotConfigured)?;
    let backend = Backend::open(&BackendConfig::Aws(aws)).await?;
    let sdk = backend
        .sdk
        .clone()
        .expect("the AWS backend has an SDK config");
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let limits = limits
        .resolve_aws(&aws_sdk_servicequotas::Client::new(&sdk))
        .await;
    let scheduler = scheduler_from_env(&backend);
    Ok(Launcher::new(
        backend,
        Runner::Ecs(Box::new(EcsRunner::new(ecs, settings))),
    )
    .with_limits(limits)
    .with_scheduler(scheduler))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_setting_is_named() {
        let err = settings_from(|_| None).unwrap_err().to_string();
        for name in [
            "DYNAMO_TABLE",
            "DYNAMO_STREAMS_TABLE",
            "PRIMARY_BUCKET",
            "ECS_CLUSTER",
            "TASK_DEFINITION",
            "SUBNETS",
            "REGION",
        ] {
            assert!(err.contains(&format!("{name} ")), "{name}: {err}");
        }
    }

    #[test]
    fn lists_and_defaults_are_read() {
        let vars = std::collections::HashMap::from([
            ("DYNAMO_TABLE", "t"),
            ("DYNAMO_STREAMS_TABLE", "s"),
            ("PRIMARY_BUCKET", "b"),
            ("ECS_CLUSTER", "c"),
            ("TASK_DEFINITION", "plus-worker"),
            ("SUBNETS", "subnet-1, subnet-2"),
            ("AWS_REGION", "eu-west-1"),
            ("ASSIGN_PUBLIC_IP", "ENABLED"),
        ]);
        let (aws, ecs) = settings_from(|k| vars.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(aws.region, "eu-west-1");
        assert_eq!(ecs.subnets, vec!["subnet-1", "subnet-2"]);
        assert_eq!(ecs.container_name, "worker");
        assert!(ecs.assign_public_ip);
        assert!(
            ecs.stores.aws_config().static_keys.is_none(),
            "no credentials in the task's env"
        );
    }
}
