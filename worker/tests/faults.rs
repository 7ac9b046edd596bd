//! The fault suite: the real worker binary under real signals, lost races,
//! cancels, timeouts, stubborn children and store faults. Each case checks
//! what the job record and the exit code show afterwards, and how fast the
//! worker reacted.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use plus_jobs::{Expect, Job, JobStatus};
use plus_testkit::Fault;
use support::World;

on_both_stores!(
    sigterm_mid_script_saves_the_job_as_interrupted,
    a_cancel_request_stops_the_script_within_a_heartbeat,
    a_timeout_fails_the_job_with_the_limit,
    a_heartbeat_that_finds_the_job_taken_stops_and_writes_nothing,
    an_end_that_finds_the_job_taken_changes_nothing,
    a_cancel_then_sigterm_ends_cancelled,
);

/// Another worker took the job over (its lease is on the record now).
async fn take_over(w: &World, id: &str) {
    let patch = Job {
        lease: "task-b".into(),
        fargate_task_arn: "task-b".into(),
        ..Job::default()
    };
    w.backend
        .jobs
        .update_job(id, &Expect::status([JobStatus::Running]), &patch)
        .await
        .unwrap();
}

/// The record still shows the other worker's run, untouched.
fn still_the_other_workers(job: &Job) {
    assert_eq!(job.status(), JobStatus::Running, "{job:?}");
    assert_eq!(job.lease, "task-b");
    assert_eq!(
        (job.error.as_str(), job.completed_at.as_str(), job.exit_code),
        ("", "", None),
        "nothing of the lost run is recorded: {job:?}"
    );
    assert!(job.attempts.is_empty(), "{:?}", job.attempts);
}

async fn a_heartbeat_that_finds_the_job_taken_stops_and_writes_nothing(w: World) {
    let pidfile = w.shared("pid");
    let job = w
        .job(&format!(
            "echo $$ > {}\necho started\nsleep 30\n",
            pidfile.display()
        ))
        .await;
    let worker = w.spawn(&job, &[]);
    w.wait_for_output(&job.object_id, "started").await;
    let t = Instant::now();
    take_over(&w, &job.object_id).await;
    let run = support::finish(worker).await;
    let took = t.elapsed();
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(run.stderr.contains("taken over"), "{}", run.stderr);
    still_the_other_workers(&w.get(&job.object_id).await);
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "the script of the lost run is gone"
    );
    // A heartbeat (0.2 s) notices; the script gets the grace (2 s) at most.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    eprintln!("REPORT lease lost mid-run: exit 3 after {took:?}, record untouched");
}

async fn an_end_that_finds_the_job_taken_changes_nothing(w: World) {
    let gate = w.shared("gate");
    let job = w
        .job(&format!(
            "echo started\nwhile [ ! -e {} ]; do sleep 0.02; done\necho done\n",
            gate.display()
        ))
        .await;
    // No heartbeat comes before the end: only the final write can notice.
    let worker = w.spawn(&job, &[("PLUS_HEARTBEAT_SECONDS", "60")]);
    w.wait_for_output(&job.object_id, "started").await;
    take_over(&w, &job.object_id).await;
    std::fs::write(&gate, "").unwrap();
    let run = support::finish(worker).await;
    assert_eq!(run.code, Some(3), "{run:?}");
    still_the_other_workers(&w.get(&job.object_id).await);
}

/// On AWS a cancel of a RUNNING job may be followed by its task's SIGTERM
/// before the worker saw the flag: the job still ends CANCELLED, by its
/// worker, never INTERRUPTED (which the monitor would relaunch).
async fn a_cancel_then_sigterm_ends_cancelled(w: World) {
    let job = w.job("echo started\nsleep 30\n").await;
    let worker = w.spawn(&job, &[("PLUS_HEARTBEAT_SECONDS", "60")]);
    w.wait_for_output(&job.object_id, "started").await;
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
    support::signal(&worker, Signal::SIGTERM);
    let run = support::finish(worker).await;
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Cancelled, "{done:?}");
    // The cancel's own end, not the SIGTERM's: a sentence that says so, a
    // completion time (INTERRUPTED has none), and the script's output kept.
    assert_eq!(
        done.error, "cancelled on request; the script was stopped",
        "{done:?}"
    );
    assert!(
        !done.completed_at.is_empty(),
        "CANCELLED is an end: {done:?}"
    );
    assert!(w.log(&done).await.contains("started"));
    assert_eq!(run.code, Some(1), "{run:?}");
}

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
    // Measured 8-30 ms; 2 s leaves room for a loaded machine and still
    // catches a worker that waits out its grace (2 s) or a heartbeat.
    assert!(took < Duration::from_secs(2), "took {took:?}");
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
    // One heartbeat (0.2 s) plus the script's exit on SIGTERM: measured
    // about 150 ms; under 2 s on a loaded machine, well under the 30 s
    // sleep a missed cancel would wait for.
    assert!(took < Duration::from_secs(2), "took {took:?}");
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
    // Not before the limit, and soon after it (measured 1.01-1.06 s).
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "took {took:?}"
    );
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
    // A SIGKILLed worker writes nothing: the record claims no end and keeps
    // the last heartbeat, which goes stale; the monitor settles such a job
    // (launcher/tests/lifecycle_cli.rs,
    // the_monitor_records_the_attempt_of_a_worker_that_died_without_a_word).
    let after = w.get(&job.object_id).await;
    assert_eq!(after.status(), JobStatus::Running);
    assert!(after.completed_at.is_empty() && after.error.is_empty());
    assert!(after.heartbeat_at >= running.heartbeat_at);
    // Clean up the orphaned script (inside a container it dies with the task).
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    eprintln!("REPORT sigkill: record stays RUNNING with its last heartbeat");
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
    // No timed flush (the suite's is 50 ms) can race this short job, even
    // on a loaded machine: the count is the worker's own.
    let (run, _) = w.run_with(&job, &[("PLUS_FLUSH_MILLIS", "60000")]).await;
    assert_eq!(run.code, Some(0));
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

/// DynamoDB hands a whole batch of output events back unprocessed (as it
/// does under throttling), twice: the worker writes them again, and every
/// line lands in the stream once, in order. (The proxy answers for
/// DynamoDB: the emulator never leaves items unprocessed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_events_handed_back_unprocessed_all_land_once() {
    let (w, proxy) = World::aws_via_proxy().await;
    let job = w
        .job("i=1\nwhile [ $i -le 60 ]; do echo \"line $i\"; i=$((i+1)); done\n")
        .await;
    proxy.inject_n("BatchWriteItem", Fault::Unprocessed, 2);
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(done.status(), JobStatus::Succeeded, "{}", done.error);
    assert_eq!(proxy.pending_faults(), 0, "both answers were given");
    let expected: String = (1..=60).map(|i| format!("line {i}\n")).collect();
    let stream: String = w
        .output(&job.object_id)
        .await
        .lines()
        .filter(|l| l.starts_with("line "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(stream, expected, "no line lost or doubled in the stream");
    assert_eq!(w.log(&done).await, expected);
}

/// Faults beyond what the SDK rides out (6 attempts per call): whole
/// BatchWriteItem calls fail, so the event sink must keep the batch and
/// write it with the next flush; a whole heartbeat UpdateItem fails, so the
/// heartbeat must carry on. No output line is lost or doubled, and the end
/// is recorded. (Injected by the proxy: the emulator cannot fail.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_store_calls_that_fail_lose_no_output_and_the_end_lands() {
    let (w, proxy) = World::aws_via_proxy().await;
    let gate = w.shared("gate");
    let job = w
        .job(&format!(
            "i=0\nwhile [ ! -e {} ]; do echo \"line $i\"; i=$((i+1)); sleep 0.01; done\necho \"line $i\"\n",
            gate.display()
        ))
        .await;
    let worker = w.spawn(&job, &[]);
    w.wait_for_output(&job.object_id, "line 1").await;
    // Two whole BatchWriteItem calls and one whole UpdateItem call fail
    // (6 attempts each), then one more attempt of each.
    proxy.inject_n("BatchWriteItem", Fault::ServerError, 13);
    proxy.inject_n("UpdateItem", Fault::ServerError, 7);
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.pending_faults() > 0 {
        assert!(Instant::now() < deadline, "the worker kept writing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&gate, "").unwrap();
    let run = support::finish(worker).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout.contains("heartbeat failed; will retry"),
        "a whole heartbeat call failed and was ridden out"
    );
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    let log = w.log(&done).await;
    let n = log.lines().count();
    assert!(n > 2, "{log}");
    let expected: String = (0..n).map(|i| format!("line {i}\n")).collect();
    assert_eq!(log, expected, "the log is whole and in order");
    let stream: String = w
        .output(&job.object_id)
        .await
        .lines()
        .filter(|l| l.starts_with("line "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(stream, expected, "no line lost or doubled in the stream");
    eprintln!("REPORT whole store calls failed (2 BatchWriteItem, 1 UpdateItem): SUCCEEDED, {n} lines all in the stream once");
}
