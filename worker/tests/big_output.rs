//! A script that prints a gigabyte, and one that prints one enormous line:
//! the worker's memory stays flat, the full log is complete, and the live
//! stream gets a bounded, clearly marked view. In a test binary of its own,
//! so the peak RSS of this process's children is the worker's.

mod support;

use std::time::Instant;

use nix::sys::resource::{getrusage, UsageWho};
use plus_jobs::JobStatus;
use support::World;

const GIB: u64 = 1 << 30;

fn peak_rss_of_children_mib() -> f64 {
    getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss() as f64 / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_of_output_keeps_the_worker_small() {
    let w = World::local().await;
    // 1 GiB of 100-byte lines, then a marker.
    let line = "x".repeat(99);
    let job = w
        .job(&format!("yes {line} | head -c {GIB}\necho end-marker\n"))
        .await;
    let t = Instant::now();
    let run = w.run(&job).await;
    let took = t.elapsed();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let done = w.get(&job.object_id).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    let log_path = w.backend.blobs.locate(&done.log_key);
    let size = std::fs::metadata(&log_path).unwrap().len();
    assert_eq!(
        size,
        GIB + "end-marker\n".len() as u64,
        "the full log has every byte"
    );
    let stream = w.output(&job.object_id).await;
    assert!(
        stream.len() < 20 << 20,
        "the live view is bounded: {} bytes",
        stream.len()
    );
    assert!(
        stream.contains("left out of the live view"),
        "the cut is marked"
    );
    let rss = peak_rss_of_children_mib();
    assert!(rss < 64.0, "peak RSS {rss:.1} MiB");
    eprintln!("REPORT 1 GiB of output: SUCCEEDED in {took:?}, log {size} bytes, stream {} bytes, peak RSS of the worker {rss:.1} MiB", stream.len());
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
    let run = w.run(&job).await;
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
    let rss = peak_rss_of_children_mib();
    assert!(rss < 64.0, "peak RSS {rss:.1} MiB");
}
