//! A job's story told right, through the real worker binary: how a script
//! file is executed, live collection progress, the attempts list and each
//! attempt's log.

mod support;

use plus_jobs::{JobStatus, Script};
use support::World;

on_both_stores!(a_binary_script_is_executed_directly_and_plain_text_runs_with_sh,);

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
