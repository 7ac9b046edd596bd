//! A job's story told right, through the real worker binary: how a script
//! file is executed, live collection progress, the attempts list and each
//! attempt's log.

mod support;

use std::time::{Duration, Instant};

use plus_jobs::{blob, Expect, Job, JobStatus, RunMode, Script, Timestamp};
use serde_json::{json, Value};
use support::World;

on_both_stores!(
    a_binary_script_is_executed_directly_and_plain_text_runs_with_sh,
    an_interrupted_then_relaunched_job_lists_both_attempts_each_with_its_log,
    a_collections_progress_is_exact_within_a_second_and_its_total_known_early,
    a_streaming_collections_progress_is_exact_within_a_second,
    an_interrupted_collection_keeps_its_total_and_counts_across_attempts,
    a_failed_collection_points_to_plus_results,
);

async fn a_binary_script_is_executed_directly_and_plain_text_runs_with_sh(w: World) {
    // A copy of a real program, stored as the job's script: executed
    // itself, with the job's args (never read by /bin/sh).
    let binary = std::fs::read("/bin/echo").expect("/bin/echo exists");
    let job = w
        .job_with("", |j| {
            j.script = Some(Script {
                s3_key: format!("jobs/{}/script", j.object_id),
                args: vec!["hello".into(), "from".into(), "a binary".into()],
                ..Script::default()
            })
        })
        .await;
    w.backend
        .blobs
        .put_bytes(
            &format!("jobs/{}/script", job.object_id),
            binary,
            "application/octet-stream",
        )
        .await
        .unwrap();
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    let log = w.log(&done).await;
    assert_eq!(log, "hello from a binary\n");

    // Text without a shebang still runs with /bin/sh, args and all.
    let job = w
        .job_with("echo \"plain $1 $#\"\n", |j| {
            j.script.as_mut().unwrap().args = vec!["text".into()];
        })
        .await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    assert_eq!(w.log(&done).await, "plain text 1\n");
}

/// What the launcher's relaunch writes (`plus retry`, the monitor):
/// INTERRUPTED -> INITIALIZING with the next attempt.
async fn relaunch(w: &World, job: &Job, attempt: u32) {
    let patch = Job {
        status: JobStatus::Initializing as i32,
        attempt: Some(attempt),
        updated_at: Timestamp::now().to_string(),
        ..Job::default()
    };
    w.backend
        .jobs
        .update_job(
            &job.object_id,
            &Expect::status([JobStatus::Interrupted]),
            &patch,
        )
        .await
        .unwrap();
}

async fn an_interrupted_then_relaunched_job_lists_both_attempts_each_with_its_log(w: World) {
    let job = w
        .job("#!/bin/sh\necho \"attempt $PLUS_ATTEMPT says hello\"\n[ \"$PLUS_ATTEMPT\" = 1 ] && exec sleep 60\necho done\n")
        .await;
    let id = job.object_id.clone();
    let child = w.spawn(&job, &[]);
    w.wait_for_output(&id, "attempt 1 says hello").await;
    support::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let (run, stopped) = w.ended(&job, child).await;
    assert_eq!(run.code, Some(143), "{run:?}");
    assert_eq!(stopped.status(), JobStatus::Interrupted);

    relaunch(&w, &job, 2).await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    assert_eq!(
        done.error, "",
        "the record's error is the current attempt's"
    );
    assert_eq!(done.exit_code, Some(0));

    // One entry per attempt, oldest first, each with its own story.
    let attempts = &done.attempts;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let (first, second) = (&attempts[0], &attempts[1]);
    assert_eq!(first.attempt, 1);
    assert_eq!(first.status(), JobStatus::Interrupted);
    assert!(first.error.contains("SIGTERM"), "{}", first.error);
    assert!(first.task.starts_with("local:"), "{}", first.task);
    assert!(!first.started_at.is_empty() && first.started_at <= first.ended_at);
    assert_eq!(first.log_key, format!("jobs/{id}/log.txt"));
    assert_eq!(second.attempt, 2);
    assert_eq!(second.status(), JobStatus::Succeeded);
    assert_eq!(second.error, "");
    assert_eq!(second.exit_code, Some(0));
    assert!(second.started_at >= first.ended_at, "{attempts:?}");
    assert!(second.started_at <= second.ended_at);
    assert_ne!(second.task, first.task, "two worker processes");
    assert_eq!(second.log_key, format!("jobs/{id}/attempts/2/log.txt"));
    assert_eq!(second.log_key, blob::attempt_log_key(&id, 2));
    assert_eq!(
        done.log_key, second.log_key,
        "log_key names the current attempt's"
    );

    // Both logs are kept, each with its own attempt's output.
    let read = |key: String| {
        let blobs = w.backend.blobs.clone();
        async move {
            let bytes = blobs.get_bytes(&key).await.unwrap();
            String::from_utf8(bytes.unwrap_or_else(|| panic!("{key} is stored"))).unwrap()
        }
    };
    let log1 = read(first.log_key.clone()).await;
    let log2 = read(second.log_key.clone()).await;
    assert_eq!(log1, "attempt 1 says hello\n");
    assert_eq!(log2, "attempt 2 says hello\ndone\n");
}

/// Stores `n` items `item-00000`.. under a fresh collection of alice's;
/// returns its owner.
async fn collection(w: &World, n: usize) -> String {
    let owner = format!(
        "alice/collections/c{}",
        plus_jobs::JobId::generate().to_string().replace('-', "")
    );
    let objects: Vec<_> = (0..n)
        .map(|i| {
            let mut o = serde_json::Map::new();
            o.insert("object_id".into(), json!(format!("item-{i:05}")));
            o.insert("owner".into(), json!(owner));
            o.insert("n".into(), json!(i));
            o
        })
        .collect();
    for chunk in objects.chunks(500) {
        w.backend.jobs.put_objects(chunk).await.unwrap();
    }
    owner
}

async fn collection_job(w: &World, owner: &str, source: &str) -> Job {
    collection_job_with(w, owner, source, false).await
}

/// A collection job, its script in streaming mode when `streaming`.
async fn collection_job_with(w: &World, owner: &str, source: &str, streaming: bool) -> Job {
    let owner = owner.to_owned();
    w.job_with(source, move |j| {
        j.run_mode = RunMode::RunCollection as i32;
        j.collection_owner = owner;
        j.script.as_mut().unwrap().streaming = streaming;
    })
    .await
}

fn progress(job: &Job) -> (u32, u32, u32, String) {
    let p = job.progress.clone().unwrap_or_default();
    (p.total, p.succeeded, p.failed, p.checkpoint)
}

/// A collection whose items wait at a gate the test opens: item `n` runs
/// once the gate file holds a number above `n`, leaves `done-{n}` in the
/// shared folder as its last act, and fails when `n % 7 == 3`. So the test
/// knows exactly which items are done, and when.
struct Gate {
    file: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Gate {
    fn new(w: &World) -> Gate {
        let file = w.shared("gate");
        let dir = file.parent().unwrap().to_owned();
        let gate = Gate { file, dir };
        gate.open_below(0);
        gate
    }

    fn script(&self) -> String {
        format!(
            "#!/bin/sh\ncat >/dev/null\nn=$(echo \"${{PLUS_ITEM_ID#item-}}\" | sed 's/^0*//')\nn=${{n:-0}}\nwhile :; do g=$(cat '{gate}' 2>/dev/null); [ \"$n\" -lt \"${{g:-0}}\" ] && break; sleep 0.02; done\n: > '{dir}/done-'$n\n[ $((n % 7)) -eq 3 ] && exit 1\necho '{{}}'\n",
            gate = self.file.display(),
            dir = self.dir.display(),
        )
    }

    /// The same for one streaming process: item `n` is answered (an
    /// `"ok": false` answer when `n % 7 == 3`) once the gate is above it.
    fn streaming_script(&self) -> String {
        format!(
            "#!/bin/sh\nwhile IFS= read -r line; do\nn=$(printf '%s' \"$line\" | sed 's/.*\"n\":\\([0-9]*\\).*/\\1/')\nwhile :; do g=$(cat '{gate}' 2>/dev/null); [ \"$n\" -lt \"${{g:-0}}\" ] && break; sleep 0.02; done\n: > '{dir}/done-'$n\nif [ $((n % 7)) -eq 3 ]; then echo '{{\"ok\":false,\"error\":\"bad\"}}'; else echo '{{}}'; fi\ndone\n",
            gate = self.file.display(),
            dir = self.dir.display(),
        )
    }

    /// Lets items below `n` run (written whole: a rename).
    fn open_below(&self, n: usize) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, n.to_string()).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    /// Waits until items `from..to` have all finished their work.
    async fn wait_done(&self, from: usize, to: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(from..to).all(|n| self.dir.join(format!("done-{n}")).exists()) {
            assert!(
                Instant::now() < deadline,
                "items {from}..{to} never finished"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// How soon after the work the record and the stream must show it.
const PROMPT: Duration = Duration::from_millis(1500);

/// Polls until `pred` holds of the record; fails after [`PROMPT`].
async fn promptly(w: &World, id: &str, what: &str, pred: impl Fn(&Job) -> bool) -> Job {
    let since = Instant::now();
    loop {
        let job = w.get(id).await;
        if pred(&job) {
            return job;
        }
        assert!(
            since.elapsed() < PROMPT,
            "{what} did not show within {PROMPT:?}: the record's progress is {:?}",
            job.progress
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stream's latest `progress` event.
async fn last_progress_event(w: &World, id: &str) -> Option<Value> {
    let events = w.backend.jobs.events_after(id, 0, 100_000).await.unwrap();
    events
        .iter()
        .rev()
        .find(|e| e.kind == "progress")
        .map(|e| serde_json::from_str(&e.data).unwrap())
}

async fn a_collections_progress_is_exact_within_a_second_and_its_total_known_early(w: World) {
    progress_is_exact(w, false).await;
}

async fn a_streaming_collections_progress_is_exact_within_a_second(w: World) {
    progress_is_exact(w, true).await;
}

/// Opens the gate in two steps and checks the record and the stream show
/// the exact counts within [`PROMPT`] each time; the total shows first.
async fn progress_is_exact(w: World, streaming: bool) {
    let owner = collection(&w, 60).await;
    let gate = Gate::new(&w);
    let script = if streaming {
        gate.streaming_script()
    } else {
        gate.script()
    };
    let job = collection_job_with(&w, &owner, &script, streaming).await;
    let id = job.object_id.clone();
    // A heartbeat far slower than the progress shows: progress does not
    // wait for it.
    let child = w.spawn(
        &job,
        &[("PLUS_CONCURRENCY", "4"), ("PLUS_HEARTBEAT_SECONDS", "10")],
    );
    // The collection fits one page: its total is known before any item ran.
    let early = w.wait_for(&id, "the total", |j| progress(j).0 == 60).await;
    assert_eq!(early.status(), JobStatus::Running);
    assert_eq!(progress(&early), (60, 0, 0, String::new()));

    for (open, ok, failed) in [(20, 17, 3), (45, 39, 6)] {
        gate.open_below(open);
        gate.wait_done(0, open).await;
        let since = Instant::now();
        let last = format!("item-{:05}", open - 1);
        promptly(&w, &id, &format!("{ok} ok, {failed} failed"), |j| {
            progress(j) == (60, ok, failed, last.clone())
        })
        .await;
        loop {
            let event = last_progress_event(&w, &id).await;
            if event
                .as_ref()
                .is_some_and(|e| e["succeeded"] == ok && e["failed"] == failed && e["total"] == 60)
            {
                break;
            }
            assert!(
                since.elapsed() < PROMPT,
                "the stream's progress did not show {ok} ok, {failed} failed within {PROMPT:?}: {event:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    gate.open_below(60);
    let (run, done) = w.ended(&job, child).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(done.status(), JobStatus::Failed);
    assert_eq!(progress(&done), (60, 51, 9, "item-00059".into()));
    // Written at a bounded rate: a handful of progress events, not 60.
    let events = w.backend.jobs.events_after(&id, 0, 100_000).await.unwrap();
    let n = events.iter().filter(|e| e.kind == "progress").count();
    assert!((2..40).contains(&n), "{n} progress events for 60 items");
}

async fn an_interrupted_collection_keeps_its_total_and_counts_across_attempts(w: World) {
    let owner = collection(&w, 300).await;
    let gate = Gate::new(&w);
    // No item fails here.
    let script = gate
        .script()
        .replace("[ $((n % 7)) -eq 3 ] && exit 1\n", "");
    let job = collection_job(&w, &owner, &script).await;
    let id = job.object_id.clone();
    let extra = [("PLUS_CONCURRENCY", "4")];

    gate.open_below(100);
    let child = w.spawn(&job, &extra);
    gate.wait_done(0, 100).await;
    w.wait_for(&id, "100 items checkpointed", |j| progress(j).1 == 100)
        .await;
    support::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let (run, stopped) = w.ended(&job, child).await;
    assert_eq!(run.code, Some(143), "{run:?}");
    assert_eq!(stopped.status(), JobStatus::Interrupted);
    assert_eq!(progress(&stopped), (300, 100, 0, "item-00099".into()));
    let result = serde_json::to_value(&stopped.result).unwrap();
    assert_eq!(result["total"], 300.0, "{result}");
    assert_eq!(result["succeeded"], 100.0, "{result}");
    assert!(
        stopped.error.contains("100 items of 300 done, 0 failed"),
        "{}",
        stopped.error
    );

    // The next attempt continues the counters: never from zero, never twice.
    relaunch(&w, &job, 2).await;
    gate.open_below(150);
    let child = w.spawn(&job, &extra);
    gate.wait_done(100, 150).await;
    promptly(&w, &id, "150 of 300 done", |j| {
        j.attempt == Some(2) && progress(j) == (300, 150, 0, "item-00149".into())
    })
    .await;
    gate.open_below(300);
    let (run, done) = w.ended(&job, child).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    assert_eq!(progress(&done), (300, 300, 0, "item-00299".into()));
    let result = serde_json::to_value(&done.result).unwrap();
    assert_eq!(
        (result["total"].clone(), result["succeeded"].clone()),
        (json!(300.0), json!(300.0))
    );
    let statuses: Vec<_> = done.attempts.iter().map(|a| a.status()).collect();
    assert_eq!(statuses, [JobStatus::Interrupted, JobStatus::Succeeded]);
    let body = w
        .backend
        .blobs
        .get_bytes(&blob::results_key(&id))
        .await
        .unwrap()
        .unwrap();
    let lines = plus_worker::modes::collection::results::parse_lines(&body);
    assert_eq!(lines.len(), 300, "one line per item");
}

async fn a_failed_collection_points_to_plus_results(w: World) {
    let owner = collection(&w, 10).await;
    let job = collection_job(
        &w,
        &owner,
        "#!/bin/sh\ncat >/dev/null\ncase $PLUS_ITEM_ID in *3|*5|*7) exit 4;; esac\necho '{}'\n",
    )
    .await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(done.status(), JobStatus::Failed);
    let id = &job.object_id;
    assert!(
        done.error.starts_with("3 of 10 items failed")
            && done
                .error
                .contains(&format!("see each item's error with `plus results {id}`")),
        "{}",
        done.error
    );
    assert!(!done.error.contains("jobs/"), "no blob key: {}", done.error);
}
