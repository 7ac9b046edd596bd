//! What watches a running job beside its work: SIGTERM (the shutdown
//! token), the timeout, the heartbeat (which also notices a cancel request
//! and a lost lease, and writes progress), and the periodic flush of the
//! event stream. Each turns what it sees into a [`StopReason`] on the
//! job's [`Control`](super::Control).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{warn, Instrument};

use super::{heartbeat::heartbeat, JobContext, StopReason};

/// The watchers of one job; they end with [`Watchers::stop`].
#[derive(Debug)]
pub struct Watchers {
    done: CancellationToken,
}

impl Watchers {
    /// Starts every watcher for `ctx`; `shutdown` is the process's SIGTERM.
    pub fn spawn(ctx: &JobContext, shutdown: CancellationToken) -> Watchers {
        let done = CancellationToken::new();
        let control = ctx.control.clone();
        // SIGTERM is watched past the work's end too: it bounds the final
        // write, which otherwise waits out a store outage.
        tokio::spawn(async move {
            shutdown.cancelled().await;
            control.stop(StopReason::Interrupted);
        });
        if let Some(limit) = ctx.job.timeout_seconds.filter(|t| *t > 0) {
            let control = ctx.control.clone();
            watch(&done, async move {
                tokio::time::sleep(Duration::from_secs(u64::from(limit))).await;
                control.stop(StopReason::TimedOut(limit));
            });
        }
        // The heartbeat and the flush are never cut off mid-write (a flush
        // cut short would lose its batch): they end between two writes.
        tokio::spawn(heartbeat(ctx.clone(), done.clone()).in_current_span());
        let (events, every, until) = (ctx.events.clone(), ctx.config.flush, done.clone());
        tokio::spawn(
            async move {
                while sleep_unless(every, &until).await {
                    if let Err(e) = events.flush().await {
                        warn!(error = %e, "event stream write failed; will retry");
                    }
                }
            }
            .in_current_span(),
        );
        Watchers { done }
    }

    /// Ends every watcher but SIGTERM's (the work is over).
    pub fn stop(self) {
        self.done.cancel();
    }
}

/// Sleeps for `every`; false when `done` is cancelled first.
pub(super) async fn sleep_unless(every: Duration, done: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(every) => true,
        () = done.cancelled() => false,
    }
}

/// Runs `work` until it ends or `done` is cancelled.
fn watch(done: &CancellationToken, work: impl std::future::Future<Output = ()> + Send + 'static) {
    let done = done.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = work => {}
            () = done.cancelled() => {}
        }
    });
}
