//! The worker binary's lifecycle and bad-input handling, on both stores.

mod support;

use plus_jobs::JobStatus;
use support::World;

on_both_stores!(
    a_script_runs_and_its_outcome_is_recorded,
    a_failing_script_fails_the_job_with_its_exit_code,
    an_unknown_job_exits_3,
    a_finished_job_is_left_untouched,
    another_users_job_is_refused,
    a_job_of_another_mode_is_refused,
    a_missing_script_fails_the_job,
    an_empty_script_fails_the_job,
    a_script_that_cannot_be_executed_fails_the_job,
    scripts_never_see_the_workers_credentials,
    invalid_json_results_fail_the_job,
    a_large_result_is_stored_beside_the_record,
);

async fn a_script_runs_and_its_outcome_is_recorded(w: World) {
    let job = w
        .job_with(
            "#!/bin/sh\necho \"hello $PLUS_USERNAME\"\necho oops >&2\necho report > \"$PLUS_OUTPUT_DIR/report.txt\"\nmkdir \"$PLUS_OUTPUT_DIR/sub\"\necho deep > \"$PLUS_OUTPUT_DIR/sub/x.txt\"\necho \"{\\\"n\\\": $(echo $PLUS_PARAMS | cut -c6)}\" > \"$PLUS_RESULT_FILE\"\n",
            |j| j.params = Some(serde_json::from_value(serde_json::json!({"n": 7})).unwrap()),
        )
        .await;
    let run = w.run(&job).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(done.attempt, Some(1));
    assert!(done.error.is_empty());
    assert!(!done.started_at.is_empty() && !done.completed_at.is_empty());
    assert!(done.completed_at >= done.started_at);
    assert!(
        done.fargate_task_arn.starts_with("local:"),
        "{}",
        done.fargate_task_arn
    );
    assert_eq!(
        serde_json::to_value(&done.result).unwrap(),
        serde_json::json!({"n": 7.0})
    );
    assert!(!done.log_key.is_empty(), "no log stored: {}", run.stdout);
    let log = w.log(&done).await;
    assert!(
        log.contains("hello alice\n") && log.contains("oops\n"),
        "{log}"
    );
    let output = w.output(&job.object_id).await;
    assert!(output.contains("hello alice"), "{output}");
    let files = w.backend.blobs.list(&done.output_prefix).await.unwrap();
    assert_eq!(
        files,
        vec![
            format!("{}report.txt", done.output_prefix),
            format!("{}sub/x.txt", done.output_prefix)
        ]
    );
    let statuses: Vec<String> = w
        .backend
        .jobs
        .events_after(&job.object_id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "status")
        .map(|e| e.data)
        .collect();
    assert_eq!(statuses, vec!["RUNNING", "SUCCEEDED"]);
    // The worker's own log is JSON lines, with the job id on them.
    let first = run.stdout.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    assert_eq!(v["span"]["job_id"], job.object_id.as_str());
}

async fn a_failing_script_fails_the_job_with_its_exit_code(w: World) {
    let job = w.job("echo about to fail\nexit 3\n").await;
    let run = w.run(&job).await;
    assert_eq!(run.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert_eq!(done.exit_code, Some(3));
    assert_eq!(done.error, "the script exited with code 3");
    assert!(w.log(&done).await.contains("about to fail"));
}

async fn an_unknown_job_exits_3(w: World) {
    let mut vars = w.vars.clone();
    vars.push(("JOB_ID".into(), "no-such-job".into()));
    vars.push(("RUN_MODE".into(), "RUN_SCRIPT".into()));
    let run = support::finish(support::spawn_worker(&vars)).await;
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(
        run.stderr.contains("job no-such-job was not found"),
        "{}",
        run.stderr
    );
    assert!(w
        .backend
        .jobs
        .get_job("no-such-job")
        .await
        .unwrap()
        .is_none());
}

async fn a_finished_job_is_left_untouched(w: World) {
    let job = w.job("exit 0").await;
    assert_eq!(w.run(&job).await.code, Some(0));
    let before = w.get(&job.object_id).await;
    let run = w.run(&job).await;
    assert_eq!(run.code, Some(3));
    assert!(run.stderr.contains("already SUCCEEDED"), "{}", run.stderr);
    assert_eq!(w.get(&job.object_id).await, before);
}

async fn another_users_job_is_refused(w: World) {
    let job = w.job("echo should not run").await;
    let run = support::finish(w.spawn(&job, &[("USERNAME", "mallory")])).await;
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("belongs to \"alice\""),
        "{}",
        run.stderr
    );
    let after = w.get(&job.object_id).await;
    assert_eq!(after.status(), JobStatus::Initializing);
    assert_eq!(after, job, "nothing was written");
}

async fn a_job_of_another_mode_is_refused(w: World) {
    let job = w.job("echo should not run").await;
    let run = support::finish(w.spawn(
        &job,
        &[
            ("RUN_MODE", "RUN_COLLECTION"),
            ("COLLECTION_OWNER", "alice/collections/c"),
        ],
    ))
    .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("RUN_MODE is RUN_COLLECTION but job"),
        "{}",
        run.stderr
    );
    let after = w.get(&job.object_id).await;
    assert_eq!(after, job, "nothing was written");
}

async fn a_missing_script_fails_the_job(w: World) {
    // A job's stored script lives under its own prefix (DESIGN.md,
    // Ownership); a key elsewhere is refused before the claim
    // (tests/ownership.rs).
    let job = w
        .job_with("", |j| {
            j.script = Some(plus_jobs::Script {
                s3_key: format!("jobs/{}/missing.sh", j.object_id),
                ..Default::default()
            })
        })
        .await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert!(
        done.error
            .contains(&format!("jobs/{}/missing.sh does not exist", job.object_id)),
        "{}",
        done.error
    );
}

async fn an_empty_script_fails_the_job(w: World) {
    let job = w.job("  \n\n").await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert_eq!(done.error, "the script is empty: there is nothing to run");
}

async fn a_script_that_cannot_be_executed_fails_the_job(w: World) {
    let job = w.job("#!/no/such/interpreter\necho hi\n").await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert!(
        done.error
            .contains("shebang line names a program that does not exist"),
        "{}",
        done.error
    );

    let job = w
        .job_with("print('hi')", |j| {
            j.script.as_mut().unwrap().interpreter = "python9-nope".into()
        })
        .await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert!(
        done.error
            .contains("interpreter \"python9-nope\" was not found on PATH"),
        "{}",
        done.error
    );
}

async fn scripts_never_see_the_workers_credentials(w: World) {
    let job = w.job("env | sort\n").await;
    let run = support::finish(w.spawn(
        &job,
        &[
            ("ACCESS_KEY", "AKIASECRET"),
            ("SECRET_KEY", "s3cr3t"),
            ("AWS_SECRET_ACCESS_KEY", "also-secret"),
        ],
    ))
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let done = w.get(&job.object_id).await;
    let log = w.log(&done).await;
    assert!(log.contains("PLUS_JOB_ID="), "{log}");
    for secret in ["AKIASECRET", "s3cr3t", "also-secret", "ACCESS_KEY", "AWS_"] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the script's environment: {log}"
        );
    }
    let names: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    for name in &names {
        assert!(
            ["PATH", "HOME", "LANG", "TMPDIR", "PWD", "SHLVL", "_"].contains(name)
                || name.starts_with("PLUS_"),
            "unexpected variable {name} in the script's environment"
        );
    }
    assert!(
        !run.stdout.contains("s3cr3t") && !run.stderr.contains("s3cr3t"),
        "the secret reached the worker's log"
    );
}

async fn invalid_json_results_fail_the_job(w: World) {
    let job = w.job("echo '{not json' > \"$PLUS_RESULT_FILE\"\n").await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert!(
        done.error.contains("invalid JSON in PLUS_RESULT_FILE"),
        "{}",
        done.error
    );
}

#[tokio::test]
async fn a_bad_environment_is_named_in_full_and_nothing_is_written() {
    let w = World::local().await;
    let job = w.job("echo never").await;
    // Everything missing: each variable named, exit 2.
    let run = support::finish(support::spawn_worker(&[(
        "PATH".into(),
        std::env::var("PATH").unwrap(),
    )]))
    .await;
    assert_eq!(run.code, Some(2));
    for name in [
        "RUN_MODE",
        "JOB_ID",
        "USERNAME",
        "REGION",
        "DYNAMO_TABLE",
        "DYNAMO_STREAMS_TABLE",
        "PRIMARY_BUCKET",
    ] {
        assert!(
            run.stderr.contains(&format!("{name} is not set")),
            "{name}: {}",
            run.stderr
        );
    }
    // One invalid value on an otherwise good environment: the job is untouched.
    let run = support::finish(w.spawn(
        &job,
        &[("RUN_MODE", "RUN_FAST"), ("PLUS_GRACE_SECONDS", "-1")],
    ))
    .await;
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("RUN_MODE is \"RUN_FAST\""),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("PLUS_GRACE_SECONDS is \"-1\""),
        "{}",
        run.stderr
    );
    assert_eq!(w.get(&job.object_id).await, job);
}

#[tokio::test]
async fn the_task_arn_comes_from_the_ecs_metadata_endpoint() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let arn = "arn:aws:ecs:us-east-1:123456789012:task/plus/0123456789abcdef";
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(request.starts_with("GET /v4/abc/task "), "{request}");
            let body = format!(r#"{{"TaskARN":"{arn}","Limits":{{"CPU":0.5}}}}"#);
            write!(stream, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).unwrap();
        }
    });
    let w = World::local().await;
    let job = w.job("echo hi").await;
    let uri = format!("http://127.0.0.1:{port}/v4/abc");
    let run = support::finish(w.spawn(&job, &[("ECS_CONTAINER_METADATA_URI_V4", &uri)])).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.fargate_task_arn, arn);
    assert_eq!(done.lease, arn);
}

async fn a_large_result_is_stored_beside_the_record(w: World) {
    let job = w
        .job("printf '{\"pad\":\"%s\"}' \"$(head -c 70000 /dev/zero | tr '\\0' x)\" > \"$PLUS_RESULT_FILE\"\n")
        .await;
    let run = w.run(&job).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    let key = format!("jobs/{}/result.json", job.object_id);
    let result = serde_json::to_value(&done.result).unwrap();
    assert_eq!(
        result,
        serde_json::json!({"truncated": true, "s3_key": key})
    );
    let stored = w.backend.blobs.get_bytes(&key).await.unwrap().unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(stored["pad"].as_str().unwrap().len(), 70_000);
}
