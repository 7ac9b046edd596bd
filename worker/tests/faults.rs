//! The fault suite: the real worker binary under real signals, lost races,
//! cancels, timeouts, stubborn children and store faults. Each case checks
//! what the job record and the exit code show afterwards, and how fast the
//! worker reacted.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use plus_jobs::{Expect, Job, JobStatus, Timestamp};
use plus_testkit::Fault;
use support::World;

on_both_stores!(
    sigterm_mid_script_saves_the_job_as_interrupted,
    a_cancel_request_stops_the_script_within_a_heartbeat,
    a_timeout_fails_the_job_with_the_limit,
);

async fn sigterm_mid_script_saves_the_job_as_interrupted(w: World) {
    let job = w.job("echo started\nsleep 30\necho never\n").await;
    let worker = w.spawn(&job, &[]);
    w.wait_for_output(&job.object_id, "started").await;
    let t = Instant::now();
    support::signal(&worker, Signal::SIGTERM);
    let run = support::finish(worker).await;
    let took = t.elapsed();
    assert_eq!(run.code, Some(143), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Interrupted);
    assert!(done.error.contains("SIGTERM"), "{}", done.error);
    assert_eq!(
        done.exit_code,
        Some(143),
        "the script died of the forwarded SIGTERM"
    );
    assert!(done.completed_at.is_empty(), "INTERRUPTED is not an end");
    let log = w.log(&done).await;
    assert!(log.contains("started") && !log.contains("never"), "{log}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!("REPORT sigterm: INTERRUPTED, exit 143, reacted in {took:?}");
}

async fn a_cancel_request_stops_the_script_within_a_heartbeat(w: World) {
    let job = w.job("echo started\nsleep 30\necho never\n").await;
    let worker = w.spawn(&job, &[]);
    w.wait_for_output(&job.object_id, "started").await;
    let t = Instant::now();
    let patch = Job {
        cancel_requested: true,
        ..Job::default()
    };
    w.backend
        .jobs
        .update_job(
            &job.object_id,
            &Expect::status([JobStatus::Running]),
            &patch,
        )
        .await
        .unwrap();
    let run = support::finish(worker).await;
    let took = t.elapsed();
    assert_eq!(run.code, Some(1), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Cancelled);
    assert!(!done.completed_at.is_empty());
    assert!(!w.log(&done).await.contains("never"));
    // One heartbeat (0.2 s) plus the script's exit on SIGTERM.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!("REPORT cancel: CANCELLED, exit 1, reacted in {took:?}");
}

async fn a_timeout_fails_the_job_with_the_limit(w: World) {
    let job = w
        .job_with("echo started\nsleep 30\n", |j| j.timeout_seconds = Some(1))
        .await;
    let t = Instant::now();
    let run = w.run(&job).await;
    let took = t.elapsed();
    assert_eq!(run.code, Some(1));
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Failed);
    assert!(
        done.error.contains("ran past its limit of 1 s"),
        "{}",
        done.error
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!("REPORT timeout: FAILED, exit 1, whole run {took:?} for a 1 s limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_worker_leaves_a_stale_heartbeat_for_the_monitor() {
    let w = World::local().await;
    let pidfile = w.shared("script.pid");
    let job = w
        .job(&format!(
            "echo $$ > {}\necho started\nsleep 30\n",
            pidfile.display()
        ))
        .await;
    let worker = w.spawn(&job, &[]);
    w.wait_for_output(&job.object_id, "started").await;
    let running = w
        .wait_for(&job.object_id, "a heartbeat", |j| {
            j.heartbeat_at != j.started_at
        })
        .await;
    support::signal(&worker, Signal::SIGKILL);
    let run = support::finish(worker).await;
    assert_eq!(run.code, None, "killed by a signal");
    // Nothing can write for a SIGKILLed worker: the record stays RUNNING and
    // its heartbeat goes stale, which is what the monitor looks for.
    tokio::time::sleep(Duration::from_secs(1)).await; // five heartbeat intervals
    let after = w.get(&job.object_id).await;
    assert_eq!(after.status(), JobStatus::Running);
    let last = Timestamp::parse(&after.heartbeat_at).unwrap();
    assert!(
        Timestamp::now().since(last) >= Duration::from_millis(800),
        "heartbeat kept moving"
    );
    assert!(after.heartbeat_at >= running.heartbeat_at);
    // Clean up the orphaned script (inside a container it dies with the task).
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    eprintln!(
        "REPORT sigkill: record stays RUNNING, heartbeat stale after {:?}",
        Timestamp::now().since(last)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_job_run_it_once() {
    for w in [World::local().await, World::aws().await] {
        let marker = w.shared("ran");
        let gate = w.shared("gate");
        // The winner's script holds until the loser has exited, so the loser
        // always meets a RUNNING job (no timing window).
        let job = w
            .job(&format!(
                "echo ran >> {}\nwhile [ ! -e {} ]; do sleep 0.02; done\n",
                marker.display(),
                gate.display()
            ))
            .await;
        let mut a = w.spawn(&job, &[]);
        let mut b = w.spawn(&job, &[]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while a.try_wait().unwrap().is_none() && b.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "neither worker ended");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::write(&gate, "").unwrap();
        let (a, b) = tokio::join!(support::finish(a), support::finish(b));
        let mut codes = vec![a.code, b.code];
        codes.sort();
        assert_eq!(codes, vec![Some(0), Some(3)], "{a:?} {b:?}");
        let loser = if a.code == Some(3) { &a } else { &b };
        assert!(
            loser.stderr.contains("claimed by another worker")
                || loser.stderr.contains("already RUNNING"),
            "{}",
            loser.stderr
        );
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap(),
            "ran\n",
            "the script ran exactly once"
        );
        assert_eq!(w.get(&job.object_id).await.status(), JobStatus::Succeeded);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_that_ignore_sigterm_are_killed_after_the_grace() {
    let w = World::local().await;
    let pidfile = w.shared("script.pid");
    let job = w
        .job(&format!(
            "trap '' TERM\n(trap '' TERM; sleep 300) &\n(sh -c 'trap \"\" TERM; sleep 300') &\necho $$ > {}\necho started\nwait\n",
            pidfile.display()
        ))
        .await;
    let worker = w.spawn(&job, &[("PLUS_GRACE_SECONDS", "1")]);
    w.wait_for_output(&job.object_id, "started").await;
    let pgid = nix::unistd::Pid::from_raw(
        std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );
    let t = Instant::now();
    support::signal(&worker, Signal::SIGTERM);
    let run = support::finish(worker).await;
    let took = t.elapsed();
    assert_eq!(run.code, Some(143), "{run:?}");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Interrupted);
    assert_eq!(
        done.exit_code,
        Some(137),
        "killed after ignoring SIGTERM for the grace period"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    // Nothing of the script's process group is left (zombies are reaped by
    // init within moments, so poll briefly).
    let deadline = Instant::now() + Duration::from_secs(5);
    while nix::sys::signal::killpg(pgid, None).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the script's process group outlived the job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("REPORT stubborn children: INTERRUPTED, exit 143, SIGKILL after the 1 s grace, done in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_store_faults_are_ridden_out_with_the_log_intact() {
    let (w, proxy) = World::aws_via_proxy().await;
    let job = w
        .job("i=0\nwhile [ $i -lt 500 ]; do echo \"line $i\"; i=$((i+1)); done\n")
        .await;
    proxy.inject("UpdateItem", Fault::Delay(Duration::from_millis(500)));
    proxy.inject_n("UpdateItem", Fault::ServerError, 2);
    proxy.inject("UpdateItem", Fault::Drop);
    proxy.inject_n("BatchWriteItem", Fault::Throttle, 3);
    proxy.inject("S3", Fault::ServerError);
    let t = Instant::now();
    let run = w.run(&job).await;
    let took = t.elapsed();
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(proxy.pending_faults(), 0, "every injected fault was hit");
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    let log = w.log(&done).await;
    assert_eq!(log.lines().count(), 500);
    assert!(log.starts_with("line 0\n") && log.ends_with("line 499\n"));
    let output = w.output(&job.object_id).await;
    assert_eq!(
        output.lines().filter(|l| l.starts_with("line ")).count(),
        500,
        "no output event was dropped"
    );
    eprintln!("REPORT store faults (delay, 500s, throttling, dropped connection, S3 500): SUCCEEDED, exit 0, {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_at_the_end_exits_4_after_the_grace() {
    let (w, proxy) = World::aws_via_proxy().await;
    let gate = w.shared("gate");
    // The script ends only once the faults are in place.
    let job = w
        .job(&format!(
            "echo started\nwhile [ ! -e {} ]; do sleep 0.02; done\n",
            gate.display()
        ))
        .await;
    // Without a SIGTERM the worker waits out a store outage for
    // PLUS_STORE_PATIENCE_SECONDS (600 by default): 5 s here.
    let worker = w.spawn(
        &job,
        &[
            ("PLUS_GRACE_SECONDS", "1"),
            ("PLUS_STORE_PATIENCE_SECONDS", "5"),
        ],
    );
    w.wait_for(&job.object_id, "the claim", |j| {
        j.status() == JobStatus::Running
    })
    .await;
    proxy.inject_n("UpdateItem", Fault::ServerError, 100_000);
    std::fs::write(&gate, "").unwrap();
    let t = Instant::now();
    let run = support::finish(worker).await;
    let took = t.elapsed();
    assert_eq!(run.code, Some(4), "{run:?}");
    // It kept trying for its patience (5 s), then gave up.
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(30),
        "took {took:?}"
    );
    assert!(
        run.stderr.contains("could not be recorded"),
        "{}",
        run.stderr
    );
    // The record still says RUNNING (its heartbeat will go stale for the
    // monitor); it never claims an end that did not happen.
    assert_eq!(w.get(&job.object_id).await.status(), JobStatus::Running);
    eprintln!(
        "REPORT store down at the end: exit 4 after {took:?}, record left RUNNING for the monitor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_job_costs_three_dynamodb_requests() {
    // Counted by the proxy: the claim, one batch of events, the end.
    let (w, proxy) = World::aws_via_proxy().await;
    let job = w.job("echo hi\n").await;
    proxy.reset();
    assert_eq!(w.run(&job).await.code, Some(0));
    let dynamo: Vec<String> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.starts_with("DynamoDB:"))
        .collect();
    assert_eq!(
        dynamo,
        [
            "DynamoDB:UpdateItem",
            "DynamoDB:BatchWriteItem",
            "DynamoDB:UpdateItem"
        ]
    );
}
