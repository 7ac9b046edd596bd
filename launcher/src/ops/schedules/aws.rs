//! The EventBridge Scheduler adapter: each schedule is one EventBridge
//! Scheduler schedule in the group `plus-worker` whose target is the
//! launcher Lambda, invoked with a launch operation that names the
//! schedule and carries the scheduled time
//! ([`target_input`]); the Lambda launches the schedule's stored request.

use aws_sdk_scheduler::{
    error::ProvideErrorMetadata,
    types::{FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState, Target},
    Client,
};
use serde_json::json;

use super::{Schedule, ScheduleError, ENABLED};

/// The schedule group every schedule is created in.
pub const DEFAULT_GROUP: &str = "plus-worker";

/// Where schedules are created and what they invoke.
#[derive(Clone, Debug)]
pub struct AwsScheduler {
    client: Client,
    /// The schedule group (`PLUS_SCHEDULE_GROUP`, default `plus-worker`).
    pub group: String,
    /// The role EventBridge Scheduler assumes to invoke the launcher
    /// (`PLUS_SCHEDULER_ROLE_ARN`).
    pub role_arn: String,
    /// The launcher Lambda's ARN (`PLUS_LAUNCHER_ARN`).
    pub target_arn: String,
}

/// The variables the scheduler reads: every problem named at once.
///
/// # Errors
/// The missing variables, each with what it holds.
pub fn settings_from(
    get: impl Fn(&str) -> Option<String>,
) -> Result<(String, String, String), Vec<String>> {
    let var = |k: &str| {
        get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut missing = Vec::new();
    let setup = "scripts/setup.sh writes it to .env.deploy";
    let role = var("PLUS_SCHEDULER_ROLE_ARN").unwrap_or_else(|| {
        missing.push(format!("PLUS_SCHEDULER_ROLE_ARN is not set: the role EventBridge Scheduler assumes to invoke the launcher Lambda ({setup})"));
        String::new()
    });
    let target = var("PLUS_LAUNCHER_ARN").unwrap_or_else(|| {
        missing.push(format!(
            "PLUS_LAUNCHER_ARN is not set: the launcher Lambda's ARN, which schedules invoke ({setup})"
        ));
        String::new()
    });
    let group = var("PLUS_SCHEDULE_GROUP").unwrap_or_else(|| DEFAULT_GROUP.to_owned());
    if missing.is_empty() {
        Ok((group, role, target))
    } else {
        Err(missing)
    }
}

/// The EventBridge Scheduler name of `username`'s schedule `name`
/// (`[0-9a-zA-Z-_.]{1,64}`): readable parts and a hash of both, so two
/// users' schedules never collide.
pub fn aws_name(username: &str, name: &str) -> String {
    let user: String = username
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(16)
        .collect();
    let short: String = name.chars().take(24).collect();
    let hash = super::name_uuid(username, name).simple().to_string();
    format!("plus-{user}-{short}-{}", &hash[..12])
}

/// The target's input: a launch operation naming the schedule, with the
/// scheduled time EventBridge Scheduler fills in.
pub fn target_input(schedule: &Schedule) -> String {
    json!({
        "op": "launch",
        "username": schedule.username,
        "schedule": schedule.name,
        "scheduled_time": "<aws.scheduler.scheduled-time>",
    })
    .to_string()
}

fn failed<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    schedule: &Schedule,
    e: &aws_sdk_scheduler::error::SdkError<E>,
) -> ScheduleError {
    let detail = e
        .as_service_error()
        .and_then(|s| s.message().map(str::to_owned))
        .unwrap_or_else(|| plus_jobs::error_chain(e));
    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
    let hint = if code.contains("AccessDenied") {
        ": the launcher's role needs scheduler:*Schedule on the group plus-worker and iam:PassRole on the scheduler role (scripts/setup.sh grants both)"
    } else {
        ""
    };
    ScheduleError::Scheduler(format!(
        "EventBridge Scheduler could not {what} schedule {} ({}): {detail}{hint}",
        schedule.name, schedule.aws_name
    ))
}

impl AwsScheduler {
    /// A scheduler adapter over `client`.
    pub fn new(client: Client, group: String, role_arn: String, target_arn: String) -> Self {
        Self {
            client,
            group,
            role_arn,
            target_arn,
        }
    }

    fn parts(&self, schedule: &Schedule) -> Result<(FlexibleTimeWindow, Target), ScheduleError> {
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
        let target = Target::builder()
            .arn(&self.target_arn)
            .role_arn(&self.role_arn)
            .input(target_input(schedule))
            .build()
            .map_err(|e| ScheduleError::Scheduler(e.to_string()))?;
        Ok((window, target))
    }

    fn state(schedule: &Schedule) -> ScheduleState {
        if schedule.state == ENABLED {
            ScheduleState::Enabled
        } else {
            ScheduleState::Disabled
        }
    }

    /// Creates `schedule`'s EventBridge schedule.
    ///
    /// # Errors
    /// [`ScheduleError::Scheduler`] with the service's reason.
    pub async fn create(&self, schedule: &Schedule) -> Result<(), ScheduleError> {
        let (window, target) = self.parts(schedule)?;
        self.client
            .create_schedule()
            .name(&schedule.aws_name)
            .group_name(&self.group)
            .schedule_expression(&schedule.expression)
            .schedule_expression_timezone(&schedule.timezone)
            .description(format!(
                "plus-worker schedule {} of {}",
                schedule.name, schedule.username
            ))
            .flexible_time_window(window)
            .target(target)
            .state(Self::state(schedule))
            .send()
            .await
            .map_err(|e| failed("create", schedule, &e))?;
        Ok(())
    }

    /// Writes `schedule` over its EventBridge schedule (UpdateSchedule
    /// replaces every field).
    ///
    /// # Errors
    /// [`ScheduleError::Scheduler`] with the service's reason.
    pub async fn update(&self, schedule: &Schedule) -> Result<(), ScheduleError> {
        let (window, target) = self.parts(schedule)?;
        self.client
            .update_schedule()
            .name(&schedule.aws_name)
            .group_name(&self.group)
            .schedule_expression(&schedule.expression)
            .schedule_expression_timezone(&schedule.timezone)
            .description(format!(
                "plus-worker schedule {} of {}",
                schedule.name, schedule.username
            ))
            .flexible_time_window(window)
            .target(target)
            .state(Self::state(schedule))
            .send()
            .await
            .map_err(|e| failed("update", schedule, &e))?;
        Ok(())
    }

    /// Deletes `schedule`'s EventBridge schedule; one already gone is fine.
    ///
    /// # Errors
    /// [`ScheduleError::Scheduler`] with the service's reason.
    pub async fn delete(&self, schedule: &Schedule) -> Result<(), ScheduleError> {
        match self
            .client
            .delete_schedule()
            .name(&schedule.aws_name)
            .group_name(&self.group)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(failed("delete", schedule, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_names_are_valid_and_per_user() {
        let a = aws_name("alice@example.com", &"n".repeat(64));
        assert!(a.len() <= 64, "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
        assert_ne!(aws_name("alice", "x"), aws_name("bob", "x"));
    }

    #[test]
    fn missing_settings_are_named() {
        let e = settings_from(|_| None).unwrap_err().join("\n");
        assert!(
            e.contains("PLUS_SCHEDULER_ROLE_ARN") && e.contains("PLUS_LAUNCHER_ARN"),
            "{e}"
        );
    }
}
