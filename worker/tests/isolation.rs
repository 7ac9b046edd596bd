//! Isolation and integrity (DESIGN.md, Script contract: Isolation and
//! Bounded end), tried as a hostile script would: the worker's credentials
//! never reach the script, nothing the script leaves behind (a FIFO, a
//! symlink, a huge file, a daemon) hangs the worker, exhausts its memory or
//! makes it store files from outside the job, and a stop or a limit that
//! comes after the script exited never rewrites its outcome.

mod support;

use std::time::{Duration, Instant};

use plus_jobs::JobStatus;
use support::{finish, World};

/// Values no real environment has, so finding one anywhere means a leak.
const CANARIES: [(&str, &str); 5] = [
    ("ACCESS_KEY", "AKIACANARYACCESSKEY1"),
    ("SECRET_KEY", "canary-secret-key-value"),
    ("AWS_SECRET_ACCESS_KEY", "canary-aws-secret-access-key"),
    ("AWS_SESSION_TOKEN", "canary-aws-session-token"),
    (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "/v2/credentials/canary-relative-uri",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_the_script_through_proc() {
    let w = World::local().await;
    // Walk every process the script can see: its environ, cmdline and mem.
    let job = w
        .job(
            r#"#!/bin/sh
# (c[a]nary: the walk must not find this grep's own command line)
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
  tr '\0' '\n' < "$f" 2>/dev/null
done | grep -i 'c[a]nary' | sed 's/^/LEAK /'
env | grep -i 'c[a]nary' | sed 's/^/LEAK env /'
# The worker holds the credentials in its memory: its mem must not open.
if dd if="/proc/$PPID/mem" bs=1 count=0 2>/dev/null; then echo "LEAK mem of the worker"; fi
echo walked
"#,
        )
        .await;
    let (run, done) = w.run_with(&job, &CANARIES).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{run:?}");
    let output = w.output(&job.object_id).await;
    assert!(output.contains("walked"), "{output}");
    assert!(
        !output.contains("LEAK") && !output.to_lowercase().contains("canary"),
        "the script found the worker's credentials:\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_the_script_starts_outlives_the_job() {
    let w = World::local().await;
    // A daemon in its own session holding the output pipes, and a double
    // fork that leaves a grandchild with PPID 1.
    let job = w
        .job(
            "#!/bin/sh\nsetsid sleep 301.25 &\n(setsid sh -c 'sleep 302.25' &)\nsetsid sh -c 'sleep 303.25 </dev/null >/dev/null 2>&1' &\necho started\n",
        )
        .await;
    let started = Instant::now();
    let (run, done) = w.run_with(&job, &[]).await;
    let took = started.elapsed();
    assert_eq!(done.status(), JobStatus::Succeeded, "{run:?}");
    let survivors = sleepers(&["301.25", "302.25", "303.25"]);
    // Whatever happens, leave no process behind for the next test.
    for pid in &survivors {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        survivors.is_empty(),
        "processes outlived the job: {survivors:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "a daemon holding the output pipes held the worker for {took:?}"
    );
}

/// Pids of live `sleep` processes with one of these arguments.
fn sleepers(args: &[&str]) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !zombie && args.iter().any(|a| cmdline.contains(&format!("sleep {a}"))) {
            found.push(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_as_the_result_file_fails_the_job_without_hanging() {
    let w = World::local().await;
    let job = w
        .job("#!/bin/sh\nrm -f \"$PLUS_RESULT_FILE\"\nmkfifo \"$PLUS_RESULT_FILE\"\n")
        .await;
    let started = Instant::now();
    let (run, done) = w.run_with(&job, &[]).await;
    assert!(started.elapsed() < Duration::from_secs(15), "{run:?}");
    assert_eq!(done.status(), JobStatus::Failed, "{run:?}");
    assert!(
        done.error.contains("PLUS_RESULT_FILE") && done.error.contains("regular file"),
        "{}",
        done.error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_file_linked_to_dev_zero_or_too_large_is_refused_by_size() {
    let w = World::local().await;
    for script in [
        "#!/bin/sh\nrm -f \"$PLUS_RESULT_FILE\"\nln -s /dev/zero \"$PLUS_RESULT_FILE\"\n",
        "#!/bin/sh\ntruncate -s 3G \"$PLUS_RESULT_FILE\"\n",
    ] {
        let job = w.job(script).await;
        let started = Instant::now();
        let (run, done) = w.run_with(&job, &[]).await;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{script}: {run:?}"
        );
        assert_eq!(done.status(), JobStatus::Failed, "{script}: {run:?}");
        assert!(done.error.contains("PLUS_RESULT_FILE"), "{}", done.error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_never_come_from_outside_the_job() {
    let w = World::local().await;
    for script in [
        // The output folder itself replaced by a link to /etc.
        "#!/bin/sh\nrmdir \"$PLUS_OUTPUT_DIR\"\nln -s /etc \"$PLUS_OUTPUT_DIR\"\n",
        // A link inside it to a file outside.
        "#!/bin/sh\nln -s /etc/passwd \"$PLUS_OUTPUT_DIR/passwd\"\necho fine > \"$PLUS_OUTPUT_DIR/ok.txt\"\n",
    ] {
        let job = w.job(script).await;
        let (run, done) = w.run_with(&job, &[]).await;
        let keys = w
            .backend
            .blobs
            .list(&format!("jobs/{}/", job.object_id))
            .await
            .unwrap();
        for key in &keys {
            let body = w.backend.blobs.get_bytes(key).await.unwrap().unwrap();
            assert!(
                !String::from_utf8_lossy(&body).contains("root:x:0:0"),
                "{script}: /etc/passwd was stored as {key}"
            );
        }
        assert!(
            !keys.iter().any(|k| k.contains("/output/passwd") || k.contains("/output/hosts")),
            "{script}: {keys:?}"
        );
        // A link is not an output: the job says so instead of claiming every
        // output was stored.
        assert_eq!(done.status(), JobStatus::Failed, "{script}: {run:?}");
        assert!(
            done.error.contains("PLUS_OUTPUT_DIR") || done.error.contains("symbolic link"),
            "{}",
            done.error
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_names_are_kept_byte_exact_inside_the_output_prefix() {
    let w = World::local().await;
    let job = w
        .job("#!/bin/sh\necho x > \"$PLUS_OUTPUT_DIR/a\\\\..\\\\..\\\\escaped.txt\"\nls \"$PLUS_OUTPUT_DIR\"\n")
        .await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{run:?}");
    let keys = w
        .backend
        .blobs
        .list(&format!("jobs/{}/", job.object_id))
        .await
        .unwrap();
    assert!(
        keys.contains(&format!("{}a\\..\\..\\escaped.txt", done.output_prefix)),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&done.output_prefix) || !k.contains("escaped")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_own_files_cannot_be_replaced_by_the_script() {
    let w = World::local().await;
    // Every file of the worker's the script can find near its folder
    // becomes a FIFO.
    let job = w
        .job(
            r#"#!/bin/sh
for d in "$PWD" "$(dirname "$PWD")" "$(dirname "$(dirname "$PWD")")" "${TMPDIR:-/tmp}"; do
  for f in "$d"/.plus* "$d"/*/.plus*; do
    [ -e "$f" ] || continue
    echo "replacing $f"
    rm -rf "$f" 2>/dev/null && mkfifo "$f" 2>/dev/null
  done
done
echo done
"#,
        )
        .await;
    let started = Instant::now();
    let (run, done) = w.run_with(&job, &[]).await;
    assert!(started.elapsed() < Duration::from_secs(15), "{run:?}");
    assert_eq!(done.status(), JobStatus::Succeeded, "{run:?}");
    let log = w.log(&done).await;
    assert!(log.contains("done\n"), "the whole log is stored: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_ids_that_name_folders_are_refused() {
    let w = World::local().await;
    let job = w.job("#!/bin/sh\necho hi\n").await;
    for id in [".", ".."] {
        let run = finish(w.spawn(&job, &[("JOB_ID", id)])).await;
        assert_eq!(run.code, Some(2), "{run:?}");
        assert!(run.stderr.contains("JOB_ID"), "{}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_after_the_script_exited_does_not_rewrite_its_outcome() {
    // The upload outlasts the timeout: every output's PUT is held 3 s by
    // the proxy, so the 2 s limit comes while the outputs are stored, after
    // the script exited (making many files to slow the upload down took
    // 1.5-2.6 s on a busy machine: the script itself ran into the limit).
    let (w, proxy) = World::aws_via_proxy().await;
    proxy.inject_n(
        "/output/f",
        plus_testkit::Fault::Delay(Duration::from_secs(3)),
        40,
    );
    let job = w
        .job_with(
            "#!/bin/sh\ni=0\nwhile [ $i -lt 40 ]; do echo $i > \"$PLUS_OUTPUT_DIR/f$i.txt\"; i=$((i+1)); done\necho written\n",
            |j| j.timeout_seconds = Some(2),
        )
        .await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(done.exit_code, Some(0), "{run:?}");
    assert_eq!(
        done.status(),
        JobStatus::Succeeded,
        "{}: {run:?}",
        done.error
    );
    let files = w.backend.blobs.list(&done.output_prefix).await.unwrap();
    assert_eq!(files.len(), 40);
    assert_eq!(proxy.pending_faults(), 0, "every output was held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_the_upload_ends_within_the_grace_and_keeps_the_scripts_outcome() {
    let (w, proxy) = World::aws_via_proxy().await;
    let job = w
        .job(
            "#!/bin/sh\ni=0\nwhile [ $i -lt 20000 ]; do : > \"$PLUS_OUTPUT_DIR/f$i\"; i=$((i+1)); done\necho script-finished\n",
        )
        .await;
    let child = w.spawn(&job, &[("PLUS_GRACE_SECONDS", "2")]);
    w.wait_for_output(&job.object_id, "script-finished").await;
    // The worker is storing its 20,000 outputs once the first of them
    // reaches S3.
    let first = format!("{}f", plus_jobs::blob::output_prefix(&job.object_id));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proxy
        .s3_requests()
        .iter()
        .any(|r| r.method == "PUT" && r.path_and_query.contains(&first))
    {
        assert!(Instant::now() < deadline, "no output was uploaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    support::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let stopped = Instant::now();
    let run = finish(child).await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "SIGTERM during the upload took {took:?} (ECS kills at 30 s): {run:?}"
    );
    let done = w.get(&job.object_id).await;
    assert_eq!(done.exit_code, Some(0), "{run:?}");
    // Not INTERRUPTED (a retry would run the finished script again), not
    // SUCCEEDED (its outputs were not all stored): FAILED, saying so.
    assert_eq!(done.status(), JobStatus::Failed, "{}: {run:?}", done.error);
    assert!(done.error.contains("output"), "{}", done.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_worker_runs_scripts_as_an_unprivileged_user_who_owns_the_job_folders() {
    let Some(w) = world_as_root().await else {
        return;
    };
    let job = w
        .job(
            r#"#!/bin/sh
set -e
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
echo home > "$HOME/h"; echo tmp > "$TMPDIR/t"; echo out > "$PLUS_OUTPUT_DIR/o.txt"
echo '{"ok": true}' > "$PLUS_RESULT_FILE"
if touch "$(dirname "$(dirname "$PWD")")/planted" 2>/dev/null; then echo "LEAK wrote the work root"; fi
"#,
        )
        .await;
    let (run, done) = w.run_with(&job, &[]).await;
    assert_eq!(
        done.status(),
        JobStatus::Succeeded,
        "{}: {run:?}",
        done.error
    );
    let log = w.log(&done).await;
    assert!(log.contains("uid=65534 gid=65534 groups=65534\n"), "{log}");
    assert!(!log.contains("LEAK"), "{log}");
    assert_eq!(done.result, serde_json::from_str(r#"{"ok": true}"#).ok());
    // Opting out runs scripts as the worker's own user.
    let job = w.job("#!/bin/sh\nid -u\n").await;
    let (run, done) = w.run_with(&job, &[("PLUS_SCRIPT_USER", "root")]).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{run:?}");
    assert_eq!(w.log(&done).await, "0\n");
    // A bad setting is named.
    let run = finish(w.spawn(&job, &[("PLUS_SCRIPT_USER", "nobody")])).await;
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("PLUS_SCRIPT_USER"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_is_non_dumpable_even_to_its_own_user() {
    // A worker that is not root runs scripts as its own user: only being
    // non-dumpable keeps its /proc files closed to them. Run it as 65534.
    let Some(w) = world_as_root().await else {
        return;
    };
    let job = w
        .job(
            r#"#!/bin/sh
echo "uid=$(id -u)"
# The control: a dumpable process of the same user (this shell) is open.
if cat "/proc/$$/environ" >/dev/null 2>&1; then echo "own environ open"; fi
if tr '\0' '\n' < "/proc/$PPID/environ" 2>/dev/null | grep 'N[O]NDUMPABLE'; then echo "LEAK environ"; fi
if dd if="/proc/$PPID/mem" bs=1 count=0 2>/dev/null; then echo "LEAK mem"; fi
if ls "/proc/$PPID/fd" >/dev/null 2>&1; then echo "LEAK fd"; fi
"#,
        )
        .await;
    for entry in walkdir(w.dir.path()) {
        std::os::unix::fs::lchown(&entry, Some(65534), Some(65534)).unwrap();
    }
    let mut vars = w.env_for(&job);
    // Values of their own: the walk of every /proc/*/environ in
    // no_credential_reaches_the_script_through_proc may run meanwhile (a
    // worker is dumpable for the moment before it hardens itself).
    vars.extend(
        [
            ("ACCESS_KEY", "AKIANONDUMPABLEKEY01"),
            ("SECRET_KEY", "NONDUMPABLE-secret"),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/NONDUMPABLE"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let child = tokio::process::Command::new(support::WORKER)
        .env_clear()
        .envs(vars)
        .uid(65534)
        .gid(65534)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (run, done) = w.ended(&job, child).await;
    assert_eq!(
        done.status(),
        JobStatus::Succeeded,
        "{}: {run:?}",
        done.error
    );
    let log = w.log(&done).await;
    assert!(log.contains("uid=65534\n"), "{log}");
    assert!(
        log.contains("own environ open"),
        "the control failed: {log}"
    );
    assert!(!log.contains("LEAK"), "{log}");
}

/// A local world, when this test runs as root (as CI does): the tests
/// that switch users are skipped otherwise.
async fn world_as_root() -> Option<World> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a process as another user");
        return None;
    }
    Some(World::local().await)
}

/// `dir` and everything under it.
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut all = vec![dir.to_owned()];
    let mut i = 0;
    while i < all.len() {
        if all[i].is_dir() && !all[i].is_symlink() {
            for entry in std::fs::read_dir(&all[i]).unwrap().flatten() {
                all.push(entry.path());
            }
        }
        i += 1;
    }
    all
}
