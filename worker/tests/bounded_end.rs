//! The end of a job is truthful (DESIGN.md, Script contract: Bounded end;
//! Records): a job is SUCCEEDED only if its log, outputs and result were
//! stored, and the final write is one the store accepts (DynamoDB keeps
//! items of at most 400 KB, numbers within 1E-130..9.99E+125).

mod support;

use std::time::{Duration, Instant};

use plus_jobs::JobStatus;
use plus_testkit::Fault;
use support::{finish, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_output_upload_fails_the_job_naming_the_file() {
    let (w, proxy) = World::aws_via_proxy().await;
    let job = w
        .job("#!/bin/sh\necho good > \"$PLUS_OUTPUT_DIR/good.txt\"\necho bad > \"$PLUS_OUTPUT_DIR/bad.txt\"\n")
        .await;
    // Every PUT of that one output is denied, as S3 does for a missing
    // permission.
    proxy.inject_n(
        "output/bad.txt",
        Fault::Respond(
            403,
            "<Error><Code>AccessDenied</Code><Message>injected</Message></Error>".into(),
        ),
        50,
    );
    let run = finish(w.spawn(&job, &[])).await;
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed, "{run:?}");
    assert_eq!(done.exit_code, Some(0), "the script's own outcome is kept");
    assert!(
        done.error.contains("bad.txt") && done.error.contains("PLUS_OUTPUT_DIR"),
        "{}",
        done.error
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    let keys = w.backend.blobs.list(&done.output_prefix).await.unwrap();
    assert_eq!(keys, vec![format!("{}good.txt", done.output_prefix)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_write_too_large_for_one_item_keeps_the_result_beside_the_record() {
    let w = World::aws().await;
    // A 352 KB record (a long inline script) and a 60 KB result: inline,
    // the item would pass DynamoDB's 400 KB (the emulator refuses it too).
    let script = format!(
        "#!/bin/sh\n# {}\nprintf '{{\"pad\":\"%s\"}}' \"$(head -c 60000 /dev/zero | tr '\\0' x)\" > \"$PLUS_RESULT_FILE\"\n",
        "p".repeat(352_000)
    );
    let job = w.job(&script).await;
    let done = succeeds(&w, &job, w.spawn(&job, &[])).await;
    let stored = stored_beside_the_record(&w, &done, "400 KB").await;
    assert_eq!(stored["pad"].as_str().unwrap().len(), 60_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_write_the_store_refuses_is_not_retried_and_never_left_running() {
    let (w, proxy) = World::aws_via_proxy().await;
    let job = w.job("#!/bin/sh\necho started\nsleep 1\n").await;
    // No heartbeat before the end: the one refusal goes to the final write.
    let child = w.spawn(
        &job,
        &[
            ("PLUS_HEARTBEAT_SECONDS", "60"),
            ("PLUS_GRACE_SECONDS", "20"),
        ],
    );
    w.wait_for_output(&job.object_id, "started").await;
    proxy.inject(
        "UpdateItem",
        Fault::Respond(
            400,
            r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"Item size has exceeded the maximum allowed size"}"#.into(),
        ),
    );
    let t = Instant::now();
    let run = finish(child).await;
    let took = t.elapsed();
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed, "{run:?}");
    assert!(
        done.error.contains("Item size has exceeded") && done.error.contains("SUCCEEDED"),
        "{}",
        done.error
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    // Refused for good: not retried for the 20 s grace.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    eprintln!("REPORT refused final write: FAILED, exit 1, in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_with_numbers_dynamodb_cannot_keep_is_stored_beside_the_record() {
    let w = World::aws().await;
    let job = w
        .job("#!/bin/sh\necho '{\"p_value\": 1e-300, \"n\": 3}' > \"$PLUS_RESULT_FILE\"\n")
        .await;
    let done = succeeds(&w, &job, w.spawn(&job, &[])).await;
    let stored = stored_beside_the_record(&w, &done, "result.p_value").await;
    assert_eq!(stored["p_value"].as_f64(), Some(1e-300));
    assert_eq!(stored["n"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_longer_than_the_grace_loses_nothing_while_the_task_lives() {
    let (w, proxy) = World::aws_via_proxy().await;
    let job = w
        .job("#!/bin/sh\ni=1\nwhile [ $i -le 20 ]; do echo line $i; i=$((i+1)); sleep 0.1; done\n")
        .await;
    let mut child = start_then_cut_the_store(&w, &proxy, &job, "120", "line 4").await;
    // Every request of the worker dropped for 40 s: far longer than the
    // grace (5 s at least) and than the SDK's and the worker's retries
    // without patience, shorter than the patience. It ends early only if
    // the worker gives up.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(40) && child.try_wait().unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.clear_faults();
    let done = succeeds(&w, &job, child).await;
    let took = t.elapsed();
    let log = w.log(&done).await;
    let output = w.output(&job.object_id).await;
    for i in 1..=20 {
        let line = format!("line {i}\n");
        assert!(log.contains(&line), "the log lost {line}: {log}");
        assert!(output.contains(&line), "the stream lost {line}: {output}");
    }
    eprintln!("REPORT 40 s store outage: SUCCEEDED, log and stream complete, ended {took:?} after it began");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_bounds_the_wait_for_a_store_that_cannot_be_reached() {
    let (w, proxy) = World::aws_via_proxy().await;
    let job = w.job("#!/bin/sh\necho started\nsleep 0.5\n").await;
    let mut child = start_then_cut_the_store(&w, &proxy, &job, "600", "started").await;
    // The worker waits for the store well past the grace...
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the worker gave up on the store before it was told to stop"
    );
    // ...until it is told to stop: then within the grace (5 s at least).
    let t = Instant::now();
    support::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let run = finish(child).await;
    let took = t.elapsed();
    proxy.clear_faults();
    assert_eq!(run.code, Some(4), "{run:?}");
    assert!(took < Duration::from_secs(7), "took {took:?}");
    eprintln!("REPORT SIGTERM during a store outage: exit 4 {took:?} after SIGTERM");
}

/// Starts the worker for `job` (grace 2 s, `patience` seconds for the
/// store), waits for `line` in its stream, then drops every request it
/// makes until the faults are cleared.
async fn start_then_cut_the_store(
    w: &World,
    proxy: &plus_testkit::FaultProxy,
    job: &plus_jobs::Job,
    patience: &str,
    line: &str,
) -> tokio::process::Child {
    let child = w.spawn(
        job,
        &[
            ("PLUS_GRACE_SECONDS", "2"),
            ("PLUS_STORE_PATIENCE_SECONDS", patience),
        ],
    );
    w.wait_for_output(&job.object_id, line).await;
    proxy.inject_n("", Fault::Drop, 1_000_000);
    child
}

/// Waits for the worker `child` of `job`: it must exit 0 with the job
/// SUCCEEDED; returns the record.
async fn succeeds(w: &World, job: &plus_jobs::Job, child: tokio::process::Child) -> plus_jobs::Job {
    let (run, done) = w.ended(job, child).await;
    assert_eq!(
        done.status(),
        JobStatus::Succeeded,
        "{}: {run:?}",
        done.error
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    done
}

/// The result `done` keeps as `jobs/{id}/result.json`: the record points
/// to it with a reason that contains `why`.
async fn stored_beside_the_record(
    w: &World,
    done: &plus_jobs::Job,
    why: &str,
) -> serde_json::Value {
    let result = serde_json::to_value(&done.result).unwrap();
    let key = format!("jobs/{}/result.json", done.object_id);
    assert_eq!(result["s3_key"], key, "{result}");
    assert!(
        result["reason"].as_str().unwrap_or("").contains(why),
        "the record says why: {result}"
    );
    let stored = w.backend.blobs.get_bytes(&key).await.unwrap().unwrap();
    serde_json::from_slice(&stored).unwrap()
}
