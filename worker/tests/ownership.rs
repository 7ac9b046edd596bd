//! DESIGN.md's Ownership, enforced by the worker itself (an engine may have
//! written the record): a job uses only its own user's collection, action
//! and script, a record that disagrees with the task's environment is not
//! touched (exit 2), and a record with an attribute of the wrong type ends
//! FAILED naming it, or is not touched, but is never left RUNNING.

mod support;

use plus_jobs::{JobStatus, RunMode};
use serde_json::{json, Value};
use support::World;

on_both_stores!(
    a_record_naming_another_users_collection_is_not_touched,
    a_script_key_outside_the_job_is_not_read,
    another_users_action_is_not_run,
    record_and_environment_must_agree_on_the_action,
    malformed_records_end_failed_naming_the_attribute,
    an_object_that_is_not_a_job_is_not_touched,
);

async fn untouched(w: &World, id: &str) {
    let job = w.get(id).await;
    assert_eq!(job.status(), JobStatus::Initializing, "{job:?}");
    assert!(job.lease.is_empty() && job.started_at.is_empty(), "{job:?}");
    let events = w.backend.jobs.events_after(id, 0, 10).await.unwrap();
    assert!(events.is_empty(), "nothing written: {events:?}");
}

async fn a_record_naming_another_users_collection_is_not_touched(w: World) {
    let job = w
        .job_with("#!/bin/sh\ncat\n", |j| {
            j.run_mode = RunMode::RunCollection as i32;
            j.collection_owner = "bob/collections/x".into();
        })
        .await;
    // The environment names alice's collection: the record disagrees.
    let run = support::finish(w.spawn(&job, &[("COLLECTION_OWNER", "alice/collections/x")])).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("collection_owner"), "{}", run.stderr);
    untouched(&w, &job.object_id).await;
    // The environment names bob's collection for alice: refused before any
    // store is touched.
    let run = support::finish(w.spawn(&job, &[("COLLECTION_OWNER", "bob/collections/x")])).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("not alice's"), "{}", run.stderr);
    untouched(&w, &job.object_id).await;
}

async fn a_script_key_outside_the_job_is_not_read(w: World) {
    // Bob's log, which alice's record points at.
    w.backend
        .blobs
        .put_bytes(
            "jobs/bobs-job/log.txt",
            b"bob's private log\n".to_vec(),
            "text/plain",
        )
        .await
        .unwrap();
    let job = w
        .job_with("", |j| {
            j.script = Some(plus_jobs::Script {
                s3_key: "jobs/bobs-job/log.txt".into(),
                interpreter: "cat".into(),
                ..Default::default()
            })
        })
        .await;
    let run = w.run(&job).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("script.s3_key"), "{}", run.stderr);
    assert!(!run.stdout.contains("private"), "{}", run.stdout);
    untouched(&w, &job.object_id).await;
}

/// Stores action `id` owned by `owner`, and an INITIALIZING RUN_ACTION job
/// of alice's naming `names`.
async fn action_and_job(w: &World, id: &str, owner: &str, names: &str) -> plus_jobs::Job {
    let action: Value = json!({
        "object_id": id, "object_type": "Action", "owner": owner,
        "script": {"source": "#!/bin/sh\necho action-ran\n"},
    });
    w.backend
        .jobs
        .put_objects(&[action.as_object().unwrap().clone()])
        .await
        .unwrap();
    w.job_with("", |j| {
        j.run_mode = RunMode::RunAction as i32;
        j.action_id = names.into();
        j.script = None;
    })
    .await
}

async fn another_users_action_is_not_run(w: World) {
    let job = action_and_job(&w, "bobact", "bob/actions", "bobact").await;
    let run = w.run(&job).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("alice/actions"), "{}", run.stderr);
    untouched(&w, &job.object_id).await;
}

async fn record_and_environment_must_agree_on_the_action(w: World) {
    let job = action_and_job(&w, "alice-a2", "alice/actions", "alice-a1").await;
    let run = support::finish(w.spawn(&job, &[("ACTION_ID", "alice-a2")])).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("action_id"), "{}", run.stderr);
    untouched(&w, &job.object_id).await;
}

/// A job record an engine wrote, with `attribute` set to `value`.
fn raw_record(id: &str, attribute: &str, value: Value) -> serde_json::Map<String, Value> {
    let mut record = json!({
        "object_id": id, "object_type": "PlusScriptJob", "owner": "alice/jobs",
        "username": "alice", "status": "INITIALIZING", "run_mode": "RUN_SCRIPT",
        "created_at": "2026-01-01T00:00:00.000Z",
        "script": {"source": "#!/bin/sh\necho ran\n"},
    });
    if let Some((parent, child)) = attribute.split_once('.') {
        record[parent][child] = value;
    } else {
        record[attribute] = value;
    }
    record.as_object().unwrap().clone()
}

async fn malformed_records_end_failed_naming_the_attribute(w: World) {
    let cases: Vec<(&str, Value)> = vec![
        ("params", json!("not a map")),
        ("script", json!("echo hi")),
        ("script.args", json!("not a list")),
        ("script.interpreter", json!(7)),
        ("timeout_seconds", json!(-5)),
        ("timeout_seconds", json!(1.5)),
        ("timeout_seconds", json!(1e20)),
        ("progress", json!("lots")),
        ("attempt", json!("two")),
        ("cancel_requested", json!("yes")),
    ];
    for (attribute, value) in cases {
        let id = plus_jobs::JobId::generate().to_string();
        w.backend
            .jobs
            .put_objects(&[raw_record(&id, attribute, value.clone())])
            .await
            .unwrap();
        let mut vars = w.vars.clone();
        vars.push(("JOB_ID".into(), id.clone()));
        vars.push(("RUN_MODE".into(), "RUN_SCRIPT".into()));
        let run = support::finish(support::spawn_worker(&vars)).await;
        let stored = w.backend.jobs.get_object(&id).await.unwrap().unwrap();
        let status = stored["status"].as_str().unwrap_or_default().to_owned();
        let top = attribute.split('.').next().unwrap();
        match run.code {
            // Ended FAILED, naming the attribute.
            Some(1) => {
                assert_eq!(status, "FAILED", "{attribute}={value}: {stored:?}");
                let error = stored["error"].as_str().unwrap_or_default();
                assert!(error.contains(top), "{attribute}={value}: {error}");
            }
            // Or not touched at all.
            Some(3) => assert_eq!(status, "INITIALIZING", "{attribute}={value}"),
            other => panic!("{attribute}={value}: exit {other:?}, {run:?}"),
        }
        assert!(
            run.stderr.contains(top) || run.stdout.contains(top),
            "{attribute}={value}: the worker names the attribute: {run:?}"
        );
    }
}

async fn an_object_that_is_not_a_job_is_not_touched(w: World) {
    for object_type in [Some("Action"), None] {
        let id = plus_jobs::JobId::generate().to_string();
        let mut record = raw_record(&id, "params", json!({}));
        match object_type {
            Some(t) => record.insert("object_type".into(), json!(t)),
            None => record.remove("object_type"),
        };
        w.backend.jobs.put_objects(&[record.clone()]).await.unwrap();
        let mut vars = w.vars.clone();
        vars.push(("JOB_ID".into(), id.clone()));
        vars.push(("RUN_MODE".into(), "RUN_SCRIPT".into()));
        let run = support::finish(support::spawn_worker(&vars)).await;
        assert_eq!(run.code, Some(3), "{object_type:?}: {run:?}");
        let stored = w.backend.jobs.get_object(&id).await.unwrap().unwrap();
        assert_eq!(stored, record, "{object_type:?}: nothing written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_stored_as_a_number_is_named_not_a_conflict() {
    let w = World::aws().await;
    let id = plus_jobs::JobId::generate().to_string();
    w.backend
        .jobs
        .put_objects(&[raw_record(&id, "status", json!(1))])
        .await
        .unwrap();
    let mut vars = w.vars.clone();
    vars.push(("JOB_ID".into(), id.clone()));
    vars.push(("RUN_MODE".into(), "RUN_SCRIPT".into()));
    let run = support::finish(support::spawn_worker(&vars)).await;
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(
        !run.stderr.contains("found INITIALIZING") && run.stderr.contains("status"),
        "{}",
        run.stderr
    );
}
