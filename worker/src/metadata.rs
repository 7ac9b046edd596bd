//! The ECS task metadata endpoint (v4): the task's ARN (the worker's lease)
//! and its size (vCPU and memory limits).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde::Deserialize;

/// What the worker needs from `${ECS_CONTAINER_METADATA_URI_V4}/task`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct TaskMetadata {
    /// The task's ARN.
    #[serde(rename = "TaskARN")]
    pub task_arn: String,
    /// Task-level limits.
    #[serde(rename = "Limits", default)]
    pub limits: Option<Limits>,
}

/// Task-level resource limits.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Limits {
    /// vCPUs (0.25 .. 16).
    #[serde(rename = "CPU")]
    pub cpu: Option<f64>,
    /// Memory in MiB.
    #[serde(rename = "Memory")]
    pub memory: Option<f64>,
}

impl TaskMetadata {
    /// The task's size, when the metadata gives both limits.
    pub fn task_size(&self) -> Option<plus_jobs::pricing::TaskSize> {
        let limits = self.limits.as_ref()?;
        match (limits.cpu, limits.memory) {
            (Some(cpu), Some(memory)) if cpu > 0.0 && memory > 0.0 => {
                Some(plus_jobs::pricing::TaskSize {
                    vcpus: cpu,
                    gib: memory / 1024.0,
                })
            }
            _ => None,
        }
    }
}

/// Errors reading the metadata endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The endpoint could not be reached or answered badly.
    #[error("the ECS task metadata endpoint {uri} could not be read: {reason}")]
    Unreachable {
        /// The endpoint.
        uri: String,
        /// Why.
        reason: String,
    },
}

/// Reads `{uri}/task`, trying a few times (the endpoint can lag the
/// container's start by a moment).
///
/// # Errors
/// [`MetadataError`] when every try failed.
pub async fn fetch(uri: &str) -> Result<TaskMetadata, MetadataError> {
    let url = format!("{}/task", uri.trim_end_matches('/'));
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
        let uri: hyper::Uri = match url.parse() {
            Ok(u) => u,
            Err(e) => {
                return Err(MetadataError::Unreachable {
                    uri: url,
                    reason: e.to_string(),
                });
            }
        };
        let response = tokio::time::timeout(Duration::from_secs(2), client.get(uri)).await;
        match response {
            Ok(Ok(resp)) if resp.status().is_success() => {
                let body = match resp.into_body().collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                };
                return serde_json::from_slice(&body).map_err(|e| MetadataError::Unreachable {
                    uri: url.clone(),
                    reason: format!("unexpected answer: {e}"),
                });
            }
            Ok(Ok(resp)) => last = format!("HTTP {}", resp.status()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out after 2 s".to_owned(),
        }
    }
    Err(MetadataError::Unreachable {
        uri: url,
        reason: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let body = r#"{"Cluster":"c","TaskARN":"arn:aws:ecs:us-east-1:123:task/c/abc","Limits":{"CPU":0.25,"Memory":512},"Containers":[]}"#;
        let m: TaskMetadata = serde_json::from_str(body).unwrap();
        assert_eq!(m.task_arn, "arn:aws:ecs:us-east-1:123:task/c/abc");
        assert_eq!(
            m.task_size(),
            Some(plus_jobs::pricing::TaskSize {
                vcpus: 0.25,
                gib: 0.5
            })
        );
        assert_eq!(m.limits.unwrap().cpu, Some(0.25));
    }
}
