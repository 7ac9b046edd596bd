//! A job's story told right, through the real worker binary: how a script
//! file is executed, live collection progress, the attempts list and each
//! attempt's log.

mod support;

use plus_jobs::{blob, Expect, Job, JobStatus, Script, Timestamp};
use support::World;

on_both_stores!(
    a_binary_script_is_executed_directly_and_plain_text_runs_with_sh,
    an_interrupted_then_relaunched_job_lists_both_attempts_each_with_its_log,
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
