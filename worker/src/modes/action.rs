//! RUN_ACTION: load the stored Action, merge its default params under the
//! job's, and run its script like RUN_SCRIPT.

use std::collections::HashMap;

use plus_jobs::{job::NotAnAction, Script};
use serde_json::Value;

use crate::job::{struct_to_json, Ending, Finish, JobContext};

/// RUN_ACTION: the action's script, once, with the action's secrets under
/// the job's.
pub async fn run(ctx: &JobContext) -> Ending {
    match resolve(ctx).await {
        Ok((script, params, secrets)) => {
            if let Err(finish) = crate::job::secrets::resolve(ctx, Some(&secrets)).await {
                return finish.into();
            }
            super::script::run_once(ctx, &script, &params).await
        }
        Err(finish) => finish.into(),
    }
}

/// The action's script, the merged params and the action's secrets.
///
/// # Errors
/// A [`Finish`] that fails the job with the reason.
pub async fn resolve(ctx: &JobContext) -> Result<(Script, Value, HashMap<String, String>), Finish> {
    let id = if ctx.job.action_id.is_empty() {
        ctx.config.action_id.clone().unwrap_or_default()
    } else {
        ctx.job.action_id.clone()
    };
    if id.is_empty() {
        return Err(Finish::failed(
            "the job names no action: set action_id on the job (and ACTION_ID on the task)",
        ));
    }
    let object = match ctx.jobs.get_object(&id).await {
        Ok(Some(object)) => object,
        Ok(None) => return Err(Finish::failed(format!("action {id} does not exist: store it with `plus action put {id} SCRIPT`, or fix ACTION_ID"))),
        Err(e) => return Err(Finish::failed(format!("action {id} could not be read: {e}"))),
    };
    let action = plus_jobs::job::action_from_object(&id, object).map_err(|e| {
        Finish::failed(match e {
            NotAnAction::OtherType { .. } => format!("{e}: ACTION_ID must name an Action"),
            NotAnAction::Malformed { .. } => e.to_string(),
        })
    })?;
    let script = action.script.clone().unwrap_or_default();
    Ok((
        script,
        merge_params(struct_to_json(action.params.as_ref()), ctx.params()),
        action.secrets,
    ))
}

/// The action's defaults overridden key by key by the job's params.
pub fn merge_params(defaults: Value, overrides: Value) -> Value {
    match (defaults, overrides) {
        (Value::Object(mut base), Value::Object(over)) => {
            for (k, v) in over {
                base.insert(k, v);
            }
            Value::Object(base)
        }
        (base, Value::Null) => base,
        (_, over) => over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_params_override_action_defaults() {
        let merged = merge_params(
            json!({"size": 1, "color": "red"}),
            json!({"size": 3, "extra": true}),
        );
        assert_eq!(merged, json!({"size": 3, "color": "red", "extra": true}));
    }
}
