//! A script that prints one enormous line: the live view cuts it with a
//! marker, the full log keeps all of it, and memory stays flat (the
//! worker's own peak RSS, measured by GNU time).

mod support;

use support::World;

/// Runs the worker for `job` under GNU time: the run, and the worker's own
/// peak RSS in MiB (see `plus_testkit::peak_rss`).
async fn run_measured(w: &World, job: &plus_jobs::Job) -> (support::Run, f64) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let child = plus_testkit::peak_rss::spawn(support::WORKER, &w.env_for(job), report.path());
    let run = support::finish(child).await;
    (run, plus_testkit::peak_rss::mib(report.path()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_enormous_line_is_cut_in_the_view_and_whole_in_the_log() {
    let w = World::local().await;
    let n: u64 = 200 << 20;
    let job = w
        .job(&format!(
            "head -c {n} /dev/zero | tr '\\0' x\necho\necho after\n"
        ))
        .await;
    let (run, rss) = run_measured(&w, &job).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let done = w.get(&job.object_id).await;
    let size = std::fs::metadata(w.backend.blobs.locate(&done.log_key))
        .unwrap()
        .len();
    assert_eq!(size, n + 1 + "after\n".len() as u64);
    let stream = w.output(&job.object_id).await;
    assert!(
        stream.contains("[line cut at 4 KiB; the full log has all of it]"),
        "{}",
        &stream[..200]
    );
    assert!(stream.contains("\nafter\n"));
    assert!(stream.len() < 16 << 10);
    // Measured 2026-12: about 24 MiB; a regression that buffered the line
    // (200 MiB) would blow far past this bound.
    assert!(rss < 48.0, "peak RSS {rss:.1} MiB");
    eprintln!("REPORT one 200 MiB line: peak RSS of the worker {rss:.1} MiB");
}
