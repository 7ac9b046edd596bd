//! RUN_COLLECTION through the real worker binary, on both stores: both
//! modes, multi-page collections, resume after SIGTERM, failure tolerance,
//! a streaming script that dies, sharding, and bad inputs.

mod support;

use plus_jobs::{blob, Job, JobStatus, RunMode};
use serde_json::{json, Value};
use support::World;

on_both_stores!(
    per_item_mode_runs_every_item_in_order,
    each_item_starts_in_an_empty_working_directory,
    streaming_mode_runs_every_item_in_order,
    a_collection_larger_than_one_page_is_read_in_full,
    an_empty_collection_succeeds_with_zero_items,
    sigterm_then_relaunch_resumes_per_item,
    sigterm_then_relaunch_resumes_streaming,
    a_collection_interrupted_twice_resumes_each_time_and_runs_every_item_once,
    failures_within_the_tolerance_succeed,
    failures_over_the_tolerance_fail_the_job_after_trying_every_item,
    a_streaming_script_that_dies_fails_only_the_items_in_flight,
    a_streaming_script_that_never_answers_fails_the_job,
    three_shards_split_the_collection_without_overlap,
    a_script_that_cannot_start_fails_the_job_with_the_reason,
);

fn owner() -> String {
    format!("alice/collections/c{}", uuid_suffix())
}

fn uuid_suffix() -> String {
    plus_jobs::JobId::generate().to_string().replace('-', "")
}

/// Stores `n` items `item-00000`.. under `owner`, each `{"n": i}` plus
/// `pad` bytes of padding.
async fn items(w: &World, owner: &str, n: usize, pad: usize) {
    let objects: Vec<_> = (0..n)
        .map(|i| {
            let mut o = serde_json::Map::new();
            o.insert("object_id".into(), json!(format!("item-{i:05}")));
            o.insert("owner".into(), json!(owner));
            o.insert("n".into(), json!(i));
            if pad > 0 {
                o.insert("pad".into(), json!("x".repeat(pad)));
            }
            o
        })
        .collect();
    for chunk in objects.chunks(500) {
        w.backend.jobs.put_objects(chunk).await.unwrap();
    }
}

async fn collection_job(w: &World, owner: &str, source: &str, edit: impl FnOnce(&mut Job)) -> Job {
    let owner = owner.to_owned();
    w.job_with(source, move |j| {
        j.run_mode = RunMode::RunCollection as i32;
        j.collection_owner = owner;
        edit(j);
    })
    .await
}

fn streaming(j: &mut Job) {
    j.script.as_mut().unwrap().streaming = true;
}

/// `results.jsonl` as parsed lines.
async fn results(w: &World, job: &Job) -> Vec<Value> {
    let bytes = w
        .backend
        .blobs
        .get_bytes(&blob::results_key(&job.object_id))
        .await
        .unwrap()
        .expect("results.jsonl is stored");
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect()
}

fn expected_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item-{i:05}")).collect()
}

fn progress(job: &Job) -> (u32, u32, u32, String) {
    let p = job.progress.clone().unwrap_or_default();
    (p.total, p.succeeded, p.failed, p.checkpoint)
}

const ECHO_ITEM: &str = "#!/bin/sh\nread -r item\nprintf '{\"item_id\":\"%s\",\"item\":%s}\\n' \"$PLUS_ITEM_ID\" \"$item\"\necho \"did $PLUS_ITEM_ID\" >&2\n";
const STREAM_ECHO: &str = "#!/bin/sh\nwhile IFS= read -r line; do printf '{\"seen\":%s}\\n' \"$line\"; done\necho 'streamed every item' >&2\n";

async fn per_item_mode_runs_every_item_in_order(w: World) {
    let owner = owner();
    items(&w, &owner, 25, 0).await;
    let job = collection_job(&w, &owner, ECHO_ITEM, |_| {}).await;
    let run = support::finish(w.spawn(&job, &[("PLUS_CONCURRENCY", "4")])).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    assert_eq!(progress(&done), (25, 25, 0, "item-00024".into()));
    let lines = results(&w, &done).await;
    assert_eq!(ids(&lines), expected_ids(25));
    assert_eq!(lines[7]["ok"], true);
    assert_eq!(lines[7]["exit_code"], 0);
    assert_eq!(lines[7]["output"]["item_id"], "item-00007");
    assert_eq!(lines[7]["output"]["item"]["n"], 7);
    assert_eq!(lines[7]["output"]["item"]["owner"], owner.as_str());
    let result = serde_json::to_value(&done.result).unwrap();
    assert_eq!(result["total"], 25.0);
    assert_eq!(result["failed"], 0.0);
    // Each item's stderr is in the job's log.
    assert!(w.log(&done).await.contains("did item-00013"));
    let events = w
        .backend
        .jobs
        .events_after(&job.object_id, 0, 10_000)
        .await
        .unwrap();
    assert!(
        events.iter().any(|e| e.kind == "progress"),
        "no progress event"
    );
}

async fn streaming_mode_runs_every_item_in_order(w: World) {
    let owner = owner();
    items(&w, &owner, 40, 0).await;
    let job = collection_job(&w, &owner, STREAM_ECHO, streaming).await;
    let run = w.run(&job).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    assert_eq!(progress(&done), (40, 40, 0, "item-00039".into()));
    let lines = results(&w, &done).await;
    assert_eq!(ids(&lines), expected_ids(40));
    assert_eq!(lines[39]["output"]["seen"]["n"], 39);
    assert!(lines[39].get("exit_code").is_none());
    // What the script writes to stderr after its last answer is in the log.
    assert!(w.log(&done).await.contains("streamed every item"));
}

async fn each_item_starts_in_an_empty_working_directory(w: World) {
    let owner = owner();
    items(&w, &owner, 30, 0).await;
    // Each item counts what it finds in its directory and reads its mode,
    // then leaves files and makes the directory read-only.
    let script = "#!/bin/sh\n[ \"$HOME\" = \"$PWD\" ] || exit 3\nn=$(ls -A | wc -l)\nm=$(stat -c %a .)\ntouch .hidden left; mkdir -p sub/dir; touch sub/dir/f\nchmod 555 .\nprintf '{\"found\":%s,\"mode\":\"%s\"}\\n' \"$n\" \"$m\"\n";
    let job = collection_job(&w, &owner, script, |_| {}).await;
    let run = support::finish(w.spawn(&job, &[("PLUS_CONCURRENCY", "3")])).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    let lines = results(&w, &done).await;
    assert_eq!(lines.len(), 30);
    for line in &lines {
        assert_eq!(line["output"]["found"], 0, "{line}");
        assert_eq!(line["output"]["mode"], "700", "{line}");
    }
}

async fn a_collection_larger_than_one_page_is_read_in_full(w: World) {
    // 1,200 items of ~1 KiB: more than one page by count (1,000) and, in
    // DynamoDB, by size (1 MB).
    let owner = owner();
    items(&w, &owner, 1200, 1000).await;
    let job = collection_job(&w, &owner, STREAM_ECHO, streaming).await;
    let run = w.run(&job).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(progress(&done), (1200, 1200, 0, "item-01199".into()));
    assert_eq!(ids(&results(&w, &done).await), expected_ids(1200));
    // Progress is written at a bounded rate, not once per item.
    let events = w
        .backend
        .jobs
        .events_after(&job.object_id, 0, 10_000)
        .await
        .unwrap();
    let n = events.iter().filter(|e| e.kind == "progress").count();
    assert!((1..100).contains(&n), "{n} progress events for 1200 items");
}

async fn an_empty_collection_succeeds_with_zero_items(w: World) {
    let job = collection_job(&w, &owner(), ECHO_ITEM, |_| {}).await;
    let run = w.run(&job).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    let (total, ok, failed, _) = progress(&done);
    assert_eq!((total, ok, failed), (0, 0, 0));
    assert!(results(&w, &done).await.is_empty());
}

/// Starts the job, SIGTERMs the worker once some items are checkpointed,
/// relaunches it (what `plus retry` does) and checks the union.
async fn interrupt_and_resume(w: &World, job: &Job, n: usize) {
    let child = w.spawn(job, &[("PLUS_CONCURRENCY", "2")]);
    let mid = w
        .wait_for(&job.object_id, "a checkpoint", |j| {
            !progress(j).3.is_empty()
        })
        .await;
    assert_eq!(mid.status(), JobStatus::Running);
    support::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let run = support::finish(child).await;
    assert_eq!(run.code, Some(143), "{run:?}");
    let stopped = w.get(&job.object_id).await;
    assert_eq!(
        stopped.status(),
        JobStatus::Interrupted,
        "{}",
        stopped.error
    );
    let (_, ok, failed, checkpoint) = progress(&stopped);
    assert!(!checkpoint.is_empty());
    assert!((ok + failed) < n as u32, "it stopped before the end: {ok}");
    assert_eq!(
        format!("item-{:05}", ok + failed - 1),
        checkpoint,
        "the counters count exactly the items up to the checkpoint"
    );
    // Relaunch: INTERRUPTED -> INITIALIZING with the next attempt; the
    // gate the scripts wait on opens.
    std::fs::write(w.shared("gate"), "").unwrap();
    let patch = Job {
        status: JobStatus::Initializing as i32,
        attempt: Some(2),
        ..Job::default()
    };
    w.backend
        .jobs
        .update_job(
            &job.object_id,
            &plus_jobs::Expect::status([JobStatus::Interrupted]),
            &patch,
        )
        .await
        .unwrap();
    let run = support::finish(w.spawn(job, &[("PLUS_CONCURRENCY", "2")])).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    assert_eq!(progress(&done).1, n as u32);
    let lines = results(w, &done).await;
    assert_eq!(ids(&lines), expected_ids(n), "one line per item, in order");
    assert!(lines.iter().all(|l| l["ok"] == true));
    let out = w.output(&job.object_id).await;
    assert!(
        out.contains(&format!("resuming after item {checkpoint}")),
        "{out}"
    );
}

async fn sigterm_then_relaunch_resumes_per_item(w: World) {
    let owner = owner();
    items(&w, &owner, 60, 0).await;
    // Items from the 31st on wait for the gate, which opens only for the
    // relaunch: the first attempt is stopped mid-collection, always.
    let gate = w.shared("gate");
    let job = collection_job(
        &w,
        &owner,
        &format!(
            "#!/bin/sh\ncat >/dev/null\nn=$(expr \"${{PLUS_ITEM_ID#item-}}\" + 0)\nif [ \"$n\" -ge 30 ] && [ ! -e {} ]; then sleep 30; fi\necho '{{}}'\n",
            gate.display()
        ),
        |_| {},
    )
    .await;
    interrupt_and_resume(&w, &job, 60).await;
}

async fn sigterm_then_relaunch_resumes_streaming(w: World) {
    let owner = owner();
    items(&w, &owner, 60, 0).await;
    // As above: the 31st line of the first attempt waits for the gate.
    let gate = w.shared("gate");
    let job = collection_job(
        &w,
        &owner,
        &format!(
            "#!/bin/sh\ni=0\nwhile IFS= read -r line; do i=$((i+1)); if [ $i -gt 30 ] && [ ! -e {} ]; then sleep 30; fi; echo '{{\"ok\":true}}'; done\n",
            gate.display()
        ),
        streaming,
    )
    .await;
    interrupt_and_resume(&w, &job, 60).await;
}

/// Interrupted twice and then finished: each attempt is stopped with
/// SIGTERM once its items before a gate are committed (the gates open
/// only for the next attempt), and the three attempts together run every
/// item to completion exactly once and store one result line for each.
async fn a_collection_interrupted_twice_resumes_each_time_and_runs_every_item_once(w: World) {
    const N: usize = 90;
    let owner = owner();
    items(&w, &owner, N, 0).await;
    let (gate1, gate2, ran) = (w.shared("gate1"), w.shared("gate2"), w.shared("ran"));
    // Items 30.. wait for gate1 and items 60.. for gate2; an item that
    // gets past its gate notes that it ran.
    let job = collection_job(
        &w,
        &owner,
        &format!(
            "#!/bin/sh\ncat >/dev/null\nn=$(expr \"${{PLUS_ITEM_ID#item-}}\" + 0)\n\
             if [ \"$n\" -ge 30 ] && [ ! -e {g1} ]; then sleep 60; exit 9; fi\n\
             if [ \"$n\" -ge 60 ] && [ ! -e {g2} ]; then sleep 60; exit 9; fi\n\
             echo \"$PLUS_ITEM_ID\" >> {ran}\necho '{{}}'\n",
            g1 = gate1.display(),
            g2 = gate2.display(),
            ran = ran.display()
        ),
        |_| {},
    )
    .await;
    let vars = [("PLUS_CONCURRENCY", "2")];
    let relaunch = |attempt: u32| {
        let patch = Job {
            status: JobStatus::Initializing as i32,
            attempt: Some(attempt),
            ..Job::default()
        };
        let (w, id) = (&w, job.object_id.clone());
        async move {
            w.backend
                .jobs
                .update_job(
                    &id,
                    &plus_jobs::Expect::status([JobStatus::Interrupted]),
                    &patch,
                )
                .await
                .unwrap();
        }
    };
    for (attempt, gate, last_before_gate) in [(1, &gate1, 29u32), (2, &gate2, 59)] {
        if attempt > 1 {
            relaunch(attempt).await;
        }
        let child = w.spawn(&job, &vars);
        let checkpoint = format!("item-{last_before_gate:05}");
        w.wait_for(&job.object_id, &checkpoint, |j| progress(j).3 == checkpoint)
            .await;
        support::signal(&child, nix::sys::signal::Signal::SIGTERM);
        let run = support::finish(child).await;
        assert_eq!(run.code, Some(143), "attempt {attempt}: {run:?}");
        let stopped = w.get(&job.object_id).await;
        assert_eq!(
            stopped.status(),
            JobStatus::Interrupted,
            "{}",
            stopped.error
        );
        let (_, ok, failed, at) = progress(&stopped);
        assert_eq!(
            (ok, failed, at.as_str()),
            (last_before_gate + 1, 0, checkpoint.as_str()),
            "attempt {attempt} stopped at its gate with the counters of every item before it"
        );
        std::fs::write(gate, "").unwrap();
    }
    relaunch(3).await;
    let run = support::finish(w.spawn(&job, &vars)).await;
    assert_eq!(run.code, Some(0), "{run:?}");

    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    assert_eq!(progress(&done).1, N as u32);
    let statuses: Vec<JobStatus> = done.attempts.iter().map(|a| a.status()).collect();
    assert_eq!(
        statuses,
        [
            JobStatus::Interrupted,
            JobStatus::Interrupted,
            JobStatus::Succeeded
        ],
        "{:?}",
        done.attempts
    );
    let lines = results(&w, &done).await;
    assert_eq!(ids(&lines), expected_ids(N), "one line per item, in order");
    assert!(lines.iter().all(|l| l["ok"] == true));
    let mut ran: Vec<String> = std::fs::read_to_string(&ran)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    ran.sort();
    assert_eq!(
        ran,
        expected_ids(N),
        "every item ran to completion exactly once"
    );
    let out = w.output(&job.object_id).await;
    for checkpoint in ["item-00029", "item-00059"] {
        assert!(
            out.contains(&format!("resuming after item {checkpoint}")),
            "{out}"
        );
    }
}

/// Items with an odd `n` fail (exit 3).
const ODD_FAILS: &str = "#!/bin/sh\nitem=$(cat)\ncase \"$PLUS_ITEM_ID\" in *1|*3|*5|*7|*9) echo \"odd $PLUS_ITEM_ID\" >&2; exit 3;; esac\necho ok\n";

async fn failures_within_the_tolerance_succeed(w: World) {
    let owner = owner();
    items(&w, &owner, 10, 0).await;
    let job = collection_job(&w, &owner, ODD_FAILS, |j| j.tolerated_failures = Some(5)).await;
    assert_eq!(w.run(&job).await.code, Some(0));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    assert_eq!(progress(&done).1, 5);
    assert_eq!(progress(&done).2, 5);
    let lines = results(&w, &done).await;
    assert_eq!(lines[3]["ok"], false);
    assert_eq!(lines[3]["exit_code"], 3);
    assert_eq!(lines[3]["error"], "the script exited with code 3");
    assert_eq!(lines[4]["output"], "ok");

    let job = collection_job(&w, &owner, ODD_FAILS, |j| {
        j.tolerated_failure_percent = Some(50.0)
    })
    .await;
    assert_eq!(w.run(&job).await.code, Some(0));
}

async fn failures_over_the_tolerance_fail_the_job_after_trying_every_item(w: World) {
    let owner = owner();
    items(&w, &owner, 10, 0).await;
    let job = collection_job(&w, &owner, ODD_FAILS, |j| j.tolerated_failures = Some(4)).await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert!(
        done.error
            .starts_with("5 of 10 items failed, more than the 4 tolerated (tolerated_failures)"),
        "{}",
        done.error
    );
    assert_eq!(
        results(&w, &done).await.len(),
        10,
        "every item was attempted"
    );

    let job = collection_job(&w, &owner, ODD_FAILS, |j| {
        j.tolerated_failure_percent = Some(40.0)
    })
    .await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert!(
        done.error.contains("(50.0%), more than the 40% tolerated"),
        "{}",
        done.error
    );
}

async fn a_streaming_script_that_dies_fails_only_the_items_in_flight(w: World) {
    let owner = owner();
    // More items than can be in flight (512), so a fresh process must
    // answer the rest.
    items(&w, &owner, 1000, 0).await;
    // Dies on item 5 without answering it; a fresh process takes the rest.
    let script = "#!/bin/sh\nwhile IFS= read -r line; do case \"$line\" in *item-00005*) echo 'dying' >&2; exit 7;; esac; echo '{\"ok\":true}'; done\n";
    let job = collection_job(&w, &owner, script, |j| {
        streaming(j);
        j.tolerated_failures = Some(600);
    })
    .await;
    assert_eq!(w.run(&job).await.code, Some(0));
    let done = w.get(&job.object_id).await;
    let lines = results(&w, &done).await;
    assert_eq!(ids(&lines), expected_ids(1000));
    for line in &lines[..5] {
        assert_eq!(line["ok"], true, "{line}");
    }
    assert_eq!(lines[5]["ok"], false);
    assert_eq!(
        lines[5]["error"],
        "the streaming script exited with code 7 before answering this item"
    );
    // Items sent after it were in flight too; none is lost or doubled.
    let failed = lines.iter().filter(|l| l["ok"] == false).count() as u32;
    assert_eq!(progress(&done).2, failed);
    assert!(
        failed as usize <= 512,
        "only the items in flight failed: {failed}"
    );
    assert_eq!(lines[999]["ok"], true, "a fresh process answered the rest");
    assert_eq!(w.log(&done).await.matches("dying").count(), 1);
}

async fn a_streaming_script_that_never_answers_fails_the_job(w: World) {
    let owner = owner();
    items(&w, &owner, 3000, 0).await;
    let job = collection_job(&w, &owner, "#!/bin/sh\nexit 2\n", streaming).await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert!(
        done.error
            .contains("exited with code 2 3 times in a row without answering an item"),
        "{}",
        done.error
    );
}

async fn three_shards_split_the_collection_without_overlap(w: World) {
    let owner = owner();
    items(&w, &owner, 90, 0).await;
    let parent = format!("p{}", uuid_suffix());
    let mut shards = Vec::new();
    for i in 0..3 {
        let parent = parent.clone();
        let job = collection_job(&w, &owner, STREAM_ECHO, move |j| {
            streaming(j);
            j.object_id = format!("{parent}-s{i}");
            j.parent_id = parent;
            j.shard_index = i;
            j.shard_count = 3;
        })
        .await;
        shards.push(job);
    }
    let children: Vec<_> = shards.iter().map(|j| w.spawn(j, &[])).collect();
    for child in children {
        assert_eq!(support::finish(child).await.code, Some(0));
    }
    let mut all = Vec::new();
    for job in &shards {
        let done = w.get(&job.object_id).await;
        assert_eq!(done.status(), JobStatus::Succeeded);
        let lines = ids(&results(&w, &done).await);
        let (total, ok, _, _) = progress(&done);
        assert_eq!((total as usize, ok as usize), (lines.len(), lines.len()));
        assert!(lines.len() > 10, "a fair share: {}", lines.len());
        all.extend(lines);
    }
    all.sort();
    assert_eq!(all, expected_ids(90), "each item in exactly one shard");
}

async fn a_script_that_cannot_start_fails_the_job_with_the_reason(w: World) {
    let owner = owner();
    items(&w, &owner, 5, 0).await;
    let job = collection_job(&w, &owner, "#!/no/such/shell\necho hi\n", |_| {}).await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert!(
        done.error
            .contains("shebang line names a program that does not exist"),
        "{}",
        done.error
    );

    let job = collection_job(&w, &owner, "echo hi", |j| {
        streaming(j);
        j.script.as_mut().unwrap().interpreter = "no-such-interpreter".into();
    })
    .await;
    assert_eq!(w.run(&job).await.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert!(
        done.error.contains("could not be started"),
        "{}",
        done.error
    );
}

#[tokio::test]
async fn a_collection_job_without_an_owner_is_refused_before_anything_runs() {
    let w = World::local().await;
    let job = collection_job(&w, "", "echo hi", |_| {}).await;
    // No COLLECTION_OWNER: a configuration error, exit 2, nothing written.
    let run = w.run(&job).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("COLLECTION_OWNER is not set"),
        "{}",
        run.stderr
    );
    assert_eq!(
        w.get(&job.object_id).await.status(),
        JobStatus::Initializing
    );
}
