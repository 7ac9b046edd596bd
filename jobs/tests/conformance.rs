//! The store conformance suite: every case runs against the SQLite adapter
//! and against the DynamoDB adapter talking to a real `moto_server`.

use std::sync::Arc;

use plus_jobs::{
    job::{new_job, sources_of},
    Backend, BackendConfig, Expect, Job, JobId, JobStatus, JobStore, Progress, RunMode, StoreError,
    StreamEvent, Timestamp,
};
use plus_testkit::Moto;
use serde_json::json;

async fn sqlite() -> (Arc<dyn JobStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let backend = plus_testkit::local_backend(dir.path()).await;
    (backend.jobs, dir)
}

async fn dynamodb() -> (Arc<dyn JobStore>, ()) {
    let aws = Moto::shared().provision().await;
    let backend = Backend::open(&BackendConfig::Aws(aws)).await.unwrap();
    (backend.jobs, ())
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite_store {
            $(#[tokio::test] async fn $case() { let (store, _keep) = super::sqlite().await; super::$case(store).await; })*
        }
        mod dynamodb_store {
            $(#[tokio::test] async fn $case() { let (store, _keep) = super::dynamodb().await; super::$case(store).await; })*
        }
    };
}

conformance!(
    create_is_conditional,
    get_reads_back_every_field,
    unknown_and_foreign_objects,
    claim_is_won_once,
    lease_guards_writes,
    terminal_states_never_change,
    concurrent_claims_have_one_winner,
    jobs_list_newest_first_in_pages,
    owner_query_pages_in_id_order,
    an_id_range_is_read_to_its_end_and_no_further,
    events_come_back_after_a_sequence_number,
    active_jobs_of_every_user_are_listed,
    a_claim_checks_the_user_and_keeps_the_first_start,
    a_malformed_record_is_failed_not_left_running,
    an_import_never_replaces_another_owners_object,
    a_claim_checks_the_jobs_origin,
    active_is_set_exactly_while_a_job_is_unfinished,
    a_new_attempt_clears_the_last_ones_ending,
    system_objects_are_written_and_deleted_only_by_their_owner,
);

/// A schedule (a system object) is created only where its id is free,
/// updated only over its owner's object of its kind, and deleted only by
/// its owner.
async fn system_objects_are_written_and_deleted_only_by_their_owner(store: Arc<dyn JobStore>) {
    use plus_jobs::PutWhen;
    let object = |owner: &str, every: &str| {
        json!({"object_id": "sched-1", "object_type": "Schedule", "owner": owner, "expression": every})
            .as_object()
            .unwrap()
            .clone()
    };
    store
        .put_object_if(&object("alice/schedules", "rate(1 hour)"), PutWhen::Absent)
        .await
        .unwrap();
    let err = store
        .put_object_if(&object("bob/schedules", "rate(1 day)"), PutWhen::Absent)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let err = store
        .put_object_if(&object("bob/schedules", "rate(1 day)"), PutWhen::SameOwner)
        .await
        .unwrap_err();
    assert!(
        err.is_conflict(),
        "another owner's object is never replaced: {err}"
    );
    store
        .put_object_if(
            &object("alice/schedules", "rate(2 hours)"),
            PutWhen::SameOwner,
        )
        .await
        .unwrap();
    let read = store.get_object("sched-1").await.unwrap().unwrap();
    assert_eq!(read["expression"], "rate(2 hours)");
    assert_eq!(read["owner"], "alice/schedules");
    let err = store
        .delete_object("sched-1", "bob/schedules")
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(store.get_object("sched-1").await.unwrap().is_some());
    store
        .delete_object("sched-1", "alice/schedules")
        .await
        .unwrap();
    assert!(store.get_object("sched-1").await.unwrap().is_none());
    let err = store
        .delete_object("sched-1", "alice/schedules")
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "a second delete finds nothing: {err}");
    let err = store
        .put_object_if(
            &object("alice/schedules", "rate(1 hour)"),
            PutWhen::SameOwner,
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "an update does not create: {err}");
}

/// A relaunch (INTERRUPTED -> INITIALIZING) and the next claim leave no
/// error, exit code or person's stop of the attempt before on the record:
/// the current state's fields describe the current state.
async fn a_new_attempt_clears_the_last_ones_ending(store: Arc<dyn JobStore>) {
    let j = job("alice");
    store.create_job(&j).await.unwrap();
    let id = &j.object_id;
    let claim = claim_patch("task-a");
    store
        .update_job(id, &Expect::status([JobStatus::Initializing]), &claim)
        .await
        .unwrap();
    let interrupted = Job {
        status: JobStatus::Interrupted as i32,
        error: "the worker got SIGTERM".to_owned(),
        exit_code: Some(143),
        stopped_by_user: true,
        ..Job::default()
    };
    let written = store
        .update_job(id, &Expect::status([JobStatus::Running]), &interrupted)
        .await
        .unwrap();
    assert_eq!(written.error, "the worker got SIGTERM");
    assert!(written.stopped_by_user);
    let relaunch = Job {
        status: JobStatus::Initializing as i32,
        attempt: Some(2),
        ..Job::default()
    };
    let written = store
        .update_job(id, &Expect::status([JobStatus::Interrupted]), &relaunch)
        .await
        .unwrap();
    assert_eq!(
        (
            written.error.as_str(),
            written.exit_code,
            written.stopped_by_user
        ),
        ("", None, false)
    );
    let read = store.get_job(id).await.unwrap().unwrap();
    assert_eq!((read.error.as_str(), read.exit_code), ("", None));
    // A write that sets its own error keeps it.
    let failed_start = Job {
        status: JobStatus::Initializing as i32,
        error: "retrying the start".to_owned(),
        ..Job::default()
    };
    let written = store
        .update_job(
            id,
            &Expect::status([JobStatus::Initializing]),
            &failed_start,
        )
        .await
        .unwrap();
    assert_eq!(written.error, "retrying the start");
}

/// `active` (the key of the sparse `active-index`) is on a job from its
/// launch until the write that ends it, including a claim of a record an
/// engine wrote without it.
async fn active_is_set_exactly_while_a_job_is_unfinished(store: Arc<dyn JobStore>) {
    let j = job("alice");
    store.create_job(&j).await.unwrap();
    let active = |o: &serde_json::Map<String, serde_json::Value>| o.get("active").cloned();
    let bucket = json!(plus_jobs::store::active_bucket(&j.object_id));
    let stored = store.get_object(&j.object_id).await.unwrap().unwrap();
    assert_eq!(active(&stored), Some(bucket.clone()));
    // A heartbeat (no status) leaves it; the claim keeps it.
    let claim = Expect::status([JobStatus::Initializing]);
    store
        .update_job(&j.object_id, &claim, &claim_patch("t"))
        .await
        .unwrap();
    let stored = store.get_object(&j.object_id).await.unwrap().unwrap();
    assert_eq!(active(&stored), Some(bucket.clone()));
    let end = Job {
        status: JobStatus::Succeeded as i32,
        ..Job::default()
    };
    store
        .update_job(&j.object_id, &Expect::status([JobStatus::Running]), &end)
        .await
        .unwrap();
    let stored = store.get_object(&j.object_id).await.unwrap().unwrap();
    assert_eq!(active(&stored), None, "removed by the write that ends it");
    let listed = store.list_active(None, 1000).await.unwrap();
    assert!(!listed.items.iter().any(|x| x.object_id == j.object_id));

    // An engine's record without `active` gets it from the claim.
    let id = JobId::generate().to_string();
    let raw = json!({
        "object_id": id, "object_type": "PlusScriptJob", "owner": "alice/jobs",
        "username": "alice", "status": "INITIALIZING", "run_mode": "RUN_SCRIPT",
    });
    store
        .put_objects(&[raw.as_object().unwrap().clone()])
        .await
        .unwrap();
    store
        .update_job(&id, &claim, &claim_patch("t"))
        .await
        .unwrap();
    let stored = store.get_object(&id).await.unwrap().unwrap();
    assert_eq!(
        active(&stored),
        Some(json!(plus_jobs::store::active_bucket(&id)))
    );
    let listed = store.list_active(None, 1000).await.unwrap();
    assert!(listed.items.iter().any(|x| x.object_id == id));
}

#[tokio::test]
async fn unfinished_jobs_are_read_through_the_index_never_a_scan() {
    // Many finished jobs and items, a few unfinished jobs, pages of 2.
    let moto = Moto::shared();
    let aws = moto.provision().await;
    let proxy = plus_testkit::FaultProxy::start(&moto.endpoint).await;
    let aws = plus_jobs::backend::AwsConfig {
        endpoint_url: Some(proxy.endpoint.clone()),
        ..aws
    };
    let store = Backend::open(&BackendConfig::Aws(aws)).await.unwrap().jobs;
    let mut open = Vec::new();
    for i in 0..30 {
        let j = job("alice");
        store.create_job(&j).await.unwrap();
        if i % 6 == 0 {
            open.push(j.object_id.clone());
        } else {
            let end = Job {
                status: JobStatus::Failed as i32,
                ..Job::default()
            };
            store
                .update_job(
                    &j.object_id,
                    &Expect::status([JobStatus::Initializing]),
                    &end,
                )
                .await
                .unwrap();
        }
    }
    proxy.reset();
    let mut seen = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let page = store.list_active(start.as_deref(), 2).await.unwrap();
        seen.extend(page.items.into_iter().map(|j| j.object_id));
        match page.next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    seen.sort();
    open.sort();
    assert_eq!(seen, open);
    let requests = proxy.seen();
    assert!(!requests.iter().any(|r| r.contains("Scan")), "{requests:?}");
    assert!(
        requests.iter().any(|r| r == "DynamoDB:Query"),
        "{requests:?}"
    );
    // Only the unfinished jobs' records are read.
    let reads: usize = proxy
        .bodies("BatchGetItem")
        .iter()
        .map(|b| b.matches("object_id").count())
        .sum();
    assert_eq!(reads, open.len(), "{requests:?}");
}

/// A worker's claim also requires what its environment says of the job:
/// the collection, the action, and a script of the job's own.
async fn a_claim_checks_the_jobs_origin(store: Arc<dyn JobStore>) {
    let mut j = job("alice");
    j.collection_owner = "bob/collections/x".into();
    j.script = Some(plus_jobs::Script {
        s3_key: format!("jobs/{}/script", j.object_id),
        ..Default::default()
    });
    store.create_job(&j).await.unwrap();
    let claim = |owner: &str, prefix: &str| {
        Expect::status([JobStatus::Initializing])
            .for_worker("alice", RunMode::RunScript)
            .with_origin(Some(owner.into()), None, Some(prefix.into()))
    };
    let own_prefix = format!("jobs/{}/", j.object_id);
    let err = store
        .update_job_with(
            &j.object_id,
            &claim("alice/collections/x", &own_prefix),
            &claim_patch("t"),
            &Job::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { reason, .. } if reason.contains("collection_owner")),
        "{err}"
    );
    let err = store
        .update_job_with(
            &j.object_id,
            &claim("bob/collections/x", "jobs/other/"),
            &claim_patch("t"),
            &Job::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { reason, .. } if reason.contains("script.s3_key")),
        "{err}"
    );
    assert_eq!(
        store.get_job(&j.object_id).await.unwrap().unwrap(),
        j,
        "refused claims write nothing"
    );
    store
        .update_job_with(
            &j.object_id,
            &claim("bob/collections/x", &own_prefix),
            &claim_patch("t"),
            &Job::default(),
        )
        .await
        .unwrap();
    // A record without the attribute takes the environment's word.
    let plain = job("alice");
    store.create_job(&plain).await.unwrap();
    store
        .update_job_with(
            &plain.object_id,
            &claim("alice/collections/y", "jobs/x/"),
            &claim_patch("t"),
            &Job::default(),
        )
        .await
        .unwrap();
}

/// An import writes an item only where its id is free or already that
/// collection's item: never over a job, an action or another collection's
/// item, and it says which ids it refused.
async fn an_import_never_replaces_another_owners_object(store: Arc<dyn JobStore>) {
    let j = job("alice");
    store.create_job(&j).await.unwrap();
    let action_id = JobId::generate().to_string();
    let other_id = JobId::generate().to_string();
    let mine_id = JobId::generate().to_string();
    let obj = |v: serde_json::Value| v.as_object().unwrap().clone();
    store
        .put_objects(&[
            obj(json!({"object_id": action_id, "object_type": "Action", "owner": "alice/actions"})),
            obj(json!({"object_id": other_id, "owner": "alice/collections/c", "v": 1})),
            obj(json!({"object_id": mine_id, "owner": "bob/collections/c", "v": 1})),
        ])
        .await
        .unwrap();
    let fresh = JobId::generate().to_string();
    let owner = "bob/collections/c";
    let items: Vec<_> = [&j.object_id, &action_id, &other_id, &mine_id, &fresh]
        .iter()
        .map(|id| obj(json!({"object_id": id, "owner": owner, "v": 2})))
        .collect();
    let mut refused = store.import_items(owner, &items).await.unwrap();
    refused.sort();
    let mut want = vec![j.object_id.clone(), action_id.clone(), other_id.clone()];
    want.sort();
    assert_eq!(refused, want);
    // The refused objects are unchanged; the free id and bob's own item are
    // written.
    assert_eq!(store.get_job(&j.object_id).await.unwrap().unwrap(), j);
    let action = store.get_object(&action_id).await.unwrap().unwrap();
    assert_eq!(action["object_type"], "Action");
    let other = store.get_object(&other_id).await.unwrap().unwrap();
    assert_eq!(
        (&other["owner"], &other["v"]),
        (&json!("alice/collections/c"), &json!(1))
    );
    for id in [&mine_id, &fresh] {
        let item = store.get_object(id).await.unwrap().unwrap();
        assert_eq!((&item["owner"], &item["v"]), (&json!(owner), &json!(2)));
    }
}

/// A record an engine wrote with `params` as a string: the claim says which
/// attribute is wrong, the record can still be ended FAILED (never left
/// RUNNING), and listing every user's unfinished jobs skips it instead of
/// failing for all of them.
async fn a_malformed_record_is_failed_not_left_running(store: Arc<dyn JobStore>) {
    let good = job("alice");
    store.create_job(&good).await.unwrap();
    let id = JobId::generate().to_string();
    let bad = json!({
        "object_id": id, "object_type": "PlusScriptJob", "owner": "alice/jobs",
        "username": "alice", "status": "INITIALIZING", "run_mode": "RUN_SCRIPT",
        "created_at": Timestamp::now().to_string(), "params": "not a map",
    });
    store
        .put_objects(&[bad.as_object().unwrap().clone()])
        .await
        .unwrap();

    let listed = store.list_active(None, 100).await.unwrap();
    assert!(
        listed.items.iter().any(|j| j.object_id == good.object_id),
        "the readable job is still listed"
    );

    let claim = Expect::status([JobStatus::Initializing]).for_worker("alice", RunMode::RunScript);
    let err = store
        .update_job_with(&id, &claim, &claim_patch("task-a"), &Job::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Malformed { reason, .. } if reason.contains("attribute params")),
        "{err}"
    );
    // Another user's worker cannot end it.
    assert!(store
        .fail_unreadable(&id, "bob", "task-a", "x")
        .await
        .unwrap_err()
        .is_conflict());
    store
        .fail_unreadable(&id, "alice", "task-a", "attribute params cannot be read")
        .await
        .unwrap();
    let stored = store.get_object(&id).await.unwrap().unwrap();
    assert_eq!(stored["status"], "FAILED");
    assert_eq!(stored["error"], "attribute params cannot be read");
    assert!(stored["completed_at"].is_string());
    // Terminal: a second call changes nothing.
    assert!(store
        .fail_unreadable(&id, "alice", "task-a", "again")
        .await
        .unwrap_err()
        .is_conflict());
}

async fn a_claim_checks_the_user_and_keeps_the_first_start(store: Arc<dyn JobStore>) {
    let j = job("alice");
    store.create_job(&j).await.unwrap();
    let first = Job {
        started_at: "2026-01-01T00:00:00.000Z".into(),
        attempt: Some(9),
        ..Job::default()
    };
    let as_bob = Expect::status([JobStatus::Initializing]).for_worker("bob", RunMode::RunScript);
    let err = store
        .update_job_with(&j.object_id, &as_bob, &claim_patch("task-a"), &first)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    let wrong_mode =
        Expect::status([JobStatus::Initializing]).for_worker("alice", RunMode::RunAction);
    assert!(store
        .update_job_with(&j.object_id, &wrong_mode, &claim_patch("task-a"), &first)
        .await
        .unwrap_err()
        .is_conflict());
    assert_eq!(
        store.get_job(&j.object_id).await.unwrap().unwrap(),
        j,
        "a refused claim writes nothing"
    );

    let as_alice =
        Expect::status([JobStatus::Initializing]).for_worker("alice", RunMode::RunScript);
    let mut claim = claim_patch("task-a");
    claim.started_at = String::new();
    let claimed = store
        .update_job_with(&j.object_id, &as_alice, &claim, &first)
        .await
        .unwrap();
    assert_eq!(claimed.started_at, "2026-01-01T00:00:00.000Z");
    assert_eq!(
        claimed.attempt,
        Some(1),
        "kept: the record already had attempt 1"
    );
    // A relaunch claims again: started_at and attempt stay as they are.
    let back = Job {
        status: JobStatus::Initializing as i32,
        attempt: Some(2),
        ..Job::default()
    };
    store
        .update_job(&j.object_id, &Expect::default(), &back)
        .await
        .unwrap();
    let later = Job {
        started_at: "2026-06-01T00:00:00.000Z".into(),
        attempt: Some(1),
        ..Job::default()
    };
    let mut claim_b = claim_patch("task-b");
    claim_b.started_at = String::new();
    let again = store
        .update_job_with(&j.object_id, &as_alice, &claim_b, &later)
        .await
        .unwrap();
    assert_eq!(again.started_at, "2026-01-01T00:00:00.000Z");
    assert_eq!(again.attempt, Some(2));
    assert_eq!(again.lease, "task-b");
}

async fn active_jobs_of_every_user_are_listed(store: Arc<dyn JobStore>) {
    let (a, b, c) = (job("ann"), job("ben"), job("cat"));
    for j in [&a, &b, &c] {
        store.create_job(j).await.unwrap();
    }
    let done = Job {
        status: JobStatus::Failed as i32,
        ..Job::default()
    };
    store
        .update_job(&c.object_id, &Expect::default(), &done)
        .await
        .unwrap();
    let item = json!({"object_id": "item-x", "owner": "ann/collections/c", "status": "RUNNING"});
    store
        .put_objects(&[item.as_object().unwrap().clone()])
        .await
        .unwrap();
    let mut ids: Vec<String> = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let page = store.list_active(start.as_deref(), 1).await.unwrap();
        ids.extend(page.items.into_iter().map(|j| j.object_id));
        match page.next {
            Some(n) => start = Some(n),
            None => break,
        }
    }
    ids.sort();
    let mut want = vec![a.object_id, b.object_id];
    want.sort();
    assert_eq!(
        ids, want,
        "only unfinished jobs, not finished ones or items"
    );
}

fn job(user: &str) -> Job {
    new_job(
        &JobId::generate(),
        user,
        RunMode::RunScript,
        Timestamp::now(),
    )
}

fn claim_patch(lease: &str) -> Job {
    Job {
        status: JobStatus::Running as i32,
        lease: lease.into(),
        started_at: Timestamp::now().to_string(),
        ..Job::default()
    }
}

#[tokio::test]
async fn a_status_stored_as_a_number_is_named_not_called_a_conflict() {
    // DynamoDB compares types: `status` as N never equals "INITIALIZING",
    // and the refusal must not read "expected INITIALIZING, found
    // INITIALIZING".
    let aws = Moto::shared().provision().await;
    let client = aws_sdk_dynamodb::Client::new(&aws.sdk_config().await);
    let id = JobId::generate().to_string();
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.into());
    client
        .put_item()
        .table_name(&aws.table)
        .item("object_id", s(&id))
        .item("object_type", s("PlusScriptJob"))
        .item("owner", s("alice/jobs"))
        .item("username", s("alice"))
        .item("run_mode", s("RUN_SCRIPT"))
        .item(
            "status",
            aws_sdk_dynamodb::types::AttributeValue::N("1".into()),
        )
        .send()
        .await
        .unwrap();
    let backend = Backend::open(&BackendConfig::Aws(aws)).await.unwrap();
    let claim = Expect::status([JobStatus::Initializing]).for_worker("alice", RunMode::RunScript);
    let err = backend
        .jobs
        .update_job_with(&id, &claim, &claim_patch("task-a"), &Job::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Malformed { reason, .. } if reason.contains("not stored as a string")),
        "{err}"
    );
}

async fn create_is_conditional(store: Arc<dyn JobStore>) {
    let j = job("alice");
    store.create_job(&j).await.unwrap();
    let err = store.create_job(&j).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
}

async fn get_reads_back_every_field(store: Arc<dyn JobStore>) {
    let mut j = job("alice");
    j.params = Some(
        serde_json::from_value(json!({"n": 3, "name": "x", "deep": {"list": [1, "a", true]}}))
            .unwrap(),
    );
    j.script = Some(plus_jobs::Script {
        source: "echo hi".into(),
        args: vec!["a".into(), "b".into()],
        ..Default::default()
    });
    j.timeout_seconds = Some(60);
    store.create_job(&j).await.unwrap();
    let patch = Job {
        exit_code: Some(0),
        progress: Some(Progress {
            total: 10,
            succeeded: 9,
            failed: 1,
            checkpoint: "item-9".into(),
        }),
        result: Some(serde_json::from_value(json!({"answer": 42, "ok": true})).unwrap()),
        ..Job::default()
    };
    let updated = store
        .update_job(&j.object_id, &Expect::default(), &patch)
        .await
        .unwrap();
    let read = store.get_job(&j.object_id).await.unwrap().unwrap();
    assert_eq!(updated, read);
    assert_eq!(read.params, j.params);
    assert_eq!(read.script, j.script);
    assert_eq!(
        read.exit_code,
        Some(0),
        "an exit code of 0 is stored, not dropped as a default"
    );
    assert_eq!(read.progress, patch.progress);
    assert_eq!(read.result, patch.result);
    assert_eq!(read.attempt, Some(1));
    assert_eq!(read.status(), JobStatus::Initializing);
    assert_eq!(read.owner, "alice/jobs");
}

async fn unknown_and_foreign_objects(store: Arc<dyn JobStore>) {
    assert_eq!(store.get_job("no-such-job").await.unwrap(), None);
    let item = json!({"object_id": "item-1", "owner": "alice/collections/c", "size": 3});
    store
        .put_objects(&[item.as_object().unwrap().clone()])
        .await
        .unwrap();
    match store.get_job("item-1").await {
        Err(StoreError::Malformed { reason, .. }) => {
            assert!(reason.contains("not a job"), "{reason}")
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    let err = store
        .update_job(
            "no-such-job",
            &Expect::status([JobStatus::Initializing]),
            &claim_patch("a"),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(
        store.get_job("no-such-job").await.unwrap(),
        None,
        "a lost update creates nothing"
    );
}

async fn claim_is_won_once(store: Arc<dyn JobStore>) {
    let j = job("alice");
    store.create_job(&j).await.unwrap();
    let claimed = store
        .update_job(
            &j.object_id,
            &Expect::status(sources_of(JobStatus::Running)),
            &claim_patch("task-a"),
        )
        .await
        .unwrap();
    assert_eq!(claimed.status(), JobStatus::Running);
    assert_eq!(claimed.lease, "task-a");
    let err = store
        .update_job(
            &j.object_id,
            &Expect::status(sources_of(JobStatus::Running)),
            &claim_patch("task-b"),
        )
        .await
        .unwrap_err();
    let StoreError::Conflict { reason, .. } = err else {
        panic!("{err}")
    };
    assert!(reason.contains("found RUNNING"), "{reason}");
    assert_eq!(
        store.get_job(&j.object_id).await.unwrap().unwrap().lease,
        "task-a"
    );
}

async fn lease_guards_writes(store: Arc<dyn JobStore>) {
    let j = job("alice");
    store.create_job(&j).await.unwrap();
    store
        .update_job(
            &j.object_id,
            &Expect::status([JobStatus::Initializing]),
            &claim_patch("task-a"),
        )
        .await
        .unwrap();
    let done = Job {
        status: JobStatus::Succeeded as i32,
        ..Job::default()
    };
    let err = store
        .update_job(
            &j.object_id,
            &Expect::status([JobStatus::Running]).with_lease("task-b"),
            &done,
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    let ok = store
        .update_job(
            &j.object_id,
            &Expect::status([JobStatus::Running]).with_lease("task-a"),
            &done,
        )
        .await
        .unwrap();
    assert_eq!(ok.status(), JobStatus::Succeeded);
}

async fn terminal_states_never_change(store: Arc<dyn JobStore>) {
    let j = job("alice");
    store.create_job(&j).await.unwrap();
    let failed = Job {
        status: JobStatus::Failed as i32,
        error: "launch failed".into(),
        ..Job::default()
    };
    store
        .update_job(
            &j.object_id,
            &Expect::status(sources_of(JobStatus::Failed)),
            &failed,
        )
        .await
        .unwrap();
    for to in [
        JobStatus::Running,
        JobStatus::Cancelled,
        JobStatus::Succeeded,
        JobStatus::Initializing,
    ] {
        let patch = Job {
            status: to as i32,
            ..Job::default()
        };
        let err = store
            .update_job(&j.object_id, &Expect::status(sources_of(to)), &patch)
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "{to:?}: {err}");
    }
    let read = store.get_job(&j.object_id).await.unwrap().unwrap();
    assert_eq!(read.status(), JobStatus::Failed);
    assert_eq!(read.error, "launch failed");
}

async fn concurrent_claims_have_one_winner(store: Arc<dyn JobStore>) {
    let j = job("alice");
    store.create_job(&j).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        let id = j.object_id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .update_job(
                    &id,
                    &Expect::status([JobStatus::Initializing]),
                    &claim_patch(&format!("task-{i}")),
                )
                .await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(job) => winners.push(job.lease),
            Err(e) => assert!(e.is_conflict(), "{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        store.get_job(&j.object_id).await.unwrap().unwrap().lease,
        winners[0]
    );
}

async fn jobs_list_newest_first_in_pages(store: Arc<dyn JobStore>) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        let j = job("bob");
        ids.push(j.object_id.clone());
        store.create_job(&j).await.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    store.create_job(&job("carol")).await.unwrap();
    ids.reverse();
    let mut seen = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .list_jobs("bob/jobs", start.as_deref(), 2)
            .await
            .unwrap();
        seen.extend(page.items.into_iter().map(|j| j.object_id));
        match page.next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

async fn owner_query_pages_in_id_order(store: Arc<dyn JobStore>) {
    let items: Vec<_> = (0..7)
        .map(|i| {
            json!({"object_id": format!("item-{i:03}"), "owner": "alice/collections/c", "i": i})
                .as_object()
                .unwrap()
                .clone()
        })
        .collect();
    store.put_objects(&items).await.unwrap();
    store.put_objects(&items[..2]).await.unwrap(); // idempotent by id
    let mut seen = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let page = store
            .query_owner("alice/collections/c", start.as_deref(), 3)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|o| o["i"].as_i64().unwrap()));
        match page.next {
            Some(next) => start = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..7).collect::<Vec<_>>());
}

async fn an_id_range_is_read_to_its_end_and_no_further(store: Arc<dyn JobStore>) {
    let owner = "alice/collections/r";
    assert_eq!(store.owner_id_bounds(owner).await.unwrap(), None);
    let items: Vec<_> = (0..10)
        .map(|i| {
            json!({"object_id": format!("r-{i:02}"), "owner": owner, "i": i})
                .as_object()
                .unwrap()
                .clone()
        })
        .collect();
    store.put_objects(&items).await.unwrap();
    assert_eq!(
        store.owner_id_bounds(owner).await.unwrap(),
        Some(("r-00".to_owned(), "r-09".to_owned()))
    );
    let range = |start: Option<&'static str>, until: &'static str| {
        let store = store.clone();
        async move {
            let mut seen = Vec::new();
            let mut start = start.map(str::to_owned);
            loop {
                let page = store
                    .query_owner_until(owner, start.as_deref(), until, 3)
                    .await
                    .unwrap();
                seen.extend(page.items.iter().map(|o| o["i"].as_i64().unwrap()));
                match page.next {
                    Some(next) => start = Some(next),
                    None => break,
                }
            }
            seen
        }
    };
    // (start, until]: a bound need not be an id.
    assert_eq!(range(None, "r-03").await, vec![0, 1, 2, 3]);
    assert_eq!(range(Some("r-03"), "r-07").await, vec![4, 5, 6, 7]);
    assert_eq!(range(Some("r-065"), "r-08z").await, vec![7, 8]);
    assert_eq!(range(Some("r-09"), "r-09").await, Vec::<i64>::new());
    assert_eq!(range(Some("r-5"), "r-1").await, Vec::<i64>::new());
}

async fn events_come_back_after_a_sequence_number(store: Arc<dyn JobStore>) {
    let events: Vec<_> = (1..=30)
        .map(|seq| StreamEvent {
            stream_id: "job-1".into(),
            seq,
            kind: "stdout".into(),
            at: Timestamp::now().to_string(),
            data: format!("line {seq}"),
            expires_at: 1_900_000_000,
        })
        .collect();
    store.append_events(&events).await.unwrap();
    let all = store.events_after("job-1", 0, 100).await.unwrap();
    assert_eq!(all, events);
    let tail = store.events_after("job-1", 28, 100).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![29, 30]);
    assert!(store
        .events_after("other", 0, 100)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_store_error_says_what_to_do_and_keeps_the_sdks_error() {
    let mut aws = Moto::shared().provision().await;
    aws.table = "no-such-table".into();
    let backend = Backend::open(&BackendConfig::Aws(aws)).await.unwrap();
    let err = backend.jobs.get_job("x").await.unwrap_err();
    assert!(matches!(err, StoreError::Rejected(_)), "{err}");
    assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
    // The typed cause is there for programs: the SDK's own error.
    let mut source = std::error::Error::source(&err);
    let mut found = false;
    while let Some(e) = source {
        found |= e
            .downcast_ref::<aws_sdk_dynamodb::error::SdkError<
                aws_sdk_dynamodb::operation::get_item::GetItemError,
                aws_sdk_dynamodb::config::http::HttpResponse,
            >>()
            .is_some();
        source = e.source();
    }
    assert!(found, "the SDK error is kept as the cause");
    // And it is said once.
    assert_eq!(plus_jobs::error_chain(&err), err.to_string());
}

/// Batches DynamoDB hands back unprocessed (as it does under throttling)
/// are written again until every event is in: the UnprocessedItems loop
/// of `append_events`, and the UnprocessedKeys loop of `list_active`.
/// (The proxy answers for DynamoDB: the emulator never leaves items
/// unprocessed.)
#[tokio::test]
async fn unprocessed_batches_are_written_again_not_dropped() {
    let moto = Moto::shared();
    let mut aws = moto.provision().await;
    let proxy = plus_testkit::FaultProxy::start(&moto.endpoint).await;
    aws.endpoint_url = Some(proxy.endpoint.clone());
    let backend = Backend::open(&BackendConfig::Aws(aws)).await.unwrap();
    let store = backend.jobs;
    let events: Vec<StreamEvent> = (1..=60)
        .map(|seq| StreamEvent {
            stream_id: "s-unprocessed".into(),
            seq,
            kind: "stdout".into(),
            at: "2026-12-01T00:00:00.000Z".into(),
            data: format!("line {seq}"),
            expires_at: 4_102_444_800,
        })
        .collect();
    proxy.inject_n("BatchWriteItem", plus_testkit::Fault::Unprocessed, 2);
    store.append_events(&events).await.unwrap();
    assert_eq!(proxy.pending_faults(), 0, "both answers were seen");
    let back = store.events_after("s-unprocessed", 0, 1000).await.unwrap();
    assert_eq!(back, events, "every event is stored once, in order");

    let j = job("alice");
    store.create_job(&j).await.unwrap();
    proxy.inject("BatchGetItem", plus_testkit::Fault::Unprocessed);
    let listed = store.list_active(None, 1000).await.unwrap();
    assert_eq!(proxy.pending_faults(), 0);
    assert!(listed.items.iter().any(|x| x.object_id == j.object_id));
}
