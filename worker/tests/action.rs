//! RUN_ACTION through the real worker binary, on both stores: the stored
//! action's script runs with its default params under the job's, and bad
//! action ids fail the job with a reason a user can act on.

mod support;

use plus_jobs::{job::ACTION_OBJECT_TYPE, Action, Job, JobStatus, RunMode, Script};
use serde_json::{json, Value};
use support::World;

on_both_stores!(
    an_action_runs_with_its_defaults_under_the_jobs_params,
    a_missing_action_fails_the_job,
    an_object_that_is_not_an_action_fails_the_job,
);

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", plus_jobs::JobId::generate())
}

async fn store_action(w: &World, id: &str, source: &str, params: Value) {
    let action = Action {
        object_id: id.into(),
        object_type: ACTION_OBJECT_TYPE.into(),
        owner: "alice/actions".into(),
        script: Some(Script {
            source: source.into(),
            ..Script::default()
        }),
        params: Some(serde_json::from_value(params).unwrap()),
        ..Action::default()
    };
    let Value::Object(object) = serde_json::to_value(&action).unwrap() else {
        unreachable!()
    };
    w.backend.jobs.put_objects(&[object]).await.unwrap();
}

async fn action_job(w: &World, action_id: &str, params: Value) -> Job {
    let action_id = action_id.to_owned();
    w.job_with("", move |j| {
        j.run_mode = RunMode::RunAction as i32;
        j.script = None;
        j.action_id = action_id;
        j.params = Some(serde_json::from_value(params).unwrap());
    })
    .await
}

async fn an_action_runs_with_its_defaults_under_the_jobs_params(w: World) {
    let id = unique("resize");
    store_action(
        &w,
        &id,
        "#!/bin/sh\necho \"running with $PLUS_PARAMS\"\necho \"$PLUS_PARAMS\" > \"$PLUS_RESULT_FILE\"\n",
        json!({"size": 2, "color": "red"}),
    )
    .await;
    let job = action_job(&w, &id, json!({"size": 5, "extra": true})).await;
    let run = w.run(&job).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    let mut result = serde_json::to_value(&done.result).unwrap();
    plus_jobs::job::normalize_numbers(&mut result);
    assert_eq!(
        result,
        json!({"size": 5, "color": "red", "extra": true}),
        "the job's params override the action's defaults key by key"
    );
    assert!(w.log(&done).await.contains("running with"));
}

async fn a_missing_action_fails_the_job(w: World) {
    let job = action_job(&w, "no-such-action", json!({})).await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert_eq!(
        done.error,
        "action no-such-action does not exist: store it with `plus action put no-such-action SCRIPT`, or fix ACTION_ID"
    );
}

async fn an_object_that_is_not_an_action_fails_the_job(w: World) {
    // A collection item, and a job, are not actions.
    let item = unique("item");
    let mut object = serde_json::Map::new();
    object.insert("object_id".into(), json!(item));
    object.insert("owner".into(), json!("alice/collections/x"));
    w.backend.jobs.put_objects(&[object]).await.unwrap();
    let job = action_job(&w, &item, json!({})).await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert!(
        done.error
            .contains("is not an Action (its object_type is \"\"): ACTION_ID must name an Action"),
        "{}",
        done.error
    );

    let other = w.job("echo hi").await;
    let job = action_job(&w, &other.object_id, json!({})).await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert!(
        done.error.contains("its object_type is \"PlusScriptJob\""),
        "{}",
        done.error
    );
}
