//! A script that prints one enormous line: the live view cuts it with a
//! marker, the full log keeps all of it, and memory stays flat. One test
//! in its own binary, so the peak RSS of this process's children is this
//! worker's.

mod support;

use nix::sys::resource::{getrusage, UsageWho};
use support::World;

fn peak_rss_of_children_mib() -> f64 {
    getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss() as f64 / 1024.0
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
