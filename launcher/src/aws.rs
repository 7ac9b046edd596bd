//! The AWS backend of the CLI: DynamoDB + S3 from the same variable names
//! the worker reads.

use anyhow::{bail, Result};
use plus_jobs::{backend::AwsConfig, Backend, BackendConfig};

use crate::{
    local::LocalRunner,
    ops::{Launcher, Runner},
};

/// The AWS settings from the environment, every problem named at once.
///
/// # Errors
/// A list of the missing variables.
pub fn aws_config_from_env() -> Result<AwsConfig> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let mut missing = Vec::new();
    let mut need = |k: &str, what: &str| {
        var(k).unwrap_or_else(|| {
            missing.push(format!("{k} is not set: {what}"));
            String::new()
        })
    };
    let table = need(
        "DYNAMO_TABLE",
        "the jobs table (scripts/setup.sh writes it to .env.deploy)",
    );
    let streams_table = need(
        "DYNAMO_STREAMS_TABLE",
        "the streams table (scripts/setup.sh writes it to .env.deploy)",
    );
    let bucket = need(
        "PRIMARY_BUCKET",
        "the primary bucket (scripts/setup.sh writes it to .env.deploy)",
    );
    let region = var("REGION")
        .or_else(|| var("AWS_REGION"))
        .unwrap_or_else(|| {
            missing
                .push("REGION (or AWS_REGION) is not set: the AWS region, e.g. us-east-1".into());
            String::new()
        });
    if !missing.is_empty() {
        bail!(
            "the AWS backend is not configured:\n  - {}",
            missing.join("\n  - ")
        );
    }
    Ok(AwsConfig {
        region,
        table,
        streams_table,
        bucket,
        endpoint_url: var("AWS_ENDPOINT_URL"),
        static_keys: None,
    })
}

/// A launcher on the AWS backend.
///
/// # Errors
/// When the configuration is incomplete.
pub async fn launcher_from_env() -> Result<Launcher> {
    let aws = aws_config_from_env()?;
    let backend = Backend::open(&BackendConfig::Aws(aws)).await?;
    // Until ECS launching is configured, jobs on the AWS stores run as local
    // workers pointed at DynamoDB and S3.
    let runner = Runner::Local(LocalRunner::new(std::env::temp_dir()));
    Ok(Launcher { backend, runner })
}
