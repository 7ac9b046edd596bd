//! Task definitions for other worker images: registered once per image
//! (keyed by a hash of what differs from the configured definition), and
//! reused by later launchers.

use plus_jobs::TaskResources;

use super::{ecs_error, sdk_error, EcsRunner};
use crate::runner::port::RunnerError;

impl EcsRunner {
    /// The task definition to run: the configured one, or one registered
    /// (once, keyed by a hash of what differs) for another image.
    pub(super) async fn task_definition_for(
        &self,
        resources: Option<&TaskResources>,
    ) -> Result<String, RunnerError> {
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
                let (msg, retry, source) = sdk_error(e);
                let task_definition = &self.settings.task_definition;
                let msg = format!("the task definition {task_definition} cannot be read: {msg}");
                ecs_error(msg, retry, Some(source))
            })?
            .task_definition
            .ok_or_else(|| {
                RunnerError::Invalid(format!(
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
                let (msg, retry, source) = sdk_error(e);
                let msg =
                    format!("a task definition for image {image} could not be registered: {msg}");
                ecs_error(msg, retry, Some(source))
            })?;
        let arn = out
            .task_definition
            .and_then(|t| t.task_definition_arn)
            .ok_or_else(|| {
                ecs_error("RegisterTaskDefinition returned no ARN".into(), false, None)
            })?;
        registered.insert(key, arn.clone());
        Ok(arn)
    }
}
