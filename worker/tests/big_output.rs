//! A script that prints a gigabyte: the worker's memory stays flat, the
//! full log is complete, and the live stream gets a bounded, clearly marked
//! view. One test in its own binary (the long line has its own too), so the
//! peak RSS of this process's children is this worker's.

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
