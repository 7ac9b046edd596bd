//! The process's signals: SIGTERM (ECS stopping the task: a Spot
//! interruption, StopTask, a deploy) and SIGINT become the shutdown token
//! that [`crate::run`] takes as a parameter. In the image the worker is
//! PID 1 (no tini): the kernel drops signals PID 1 has no handler for, so
//! these handlers are what make SIGTERM and SIGINT stop it.
//!
//! SIGUSR1 means "look at the job now": the local launcher sends it right
//! after it sets `cancel_requested`, so the heartbeat reads the flag at
//! once instead of at its next beat ([`check_requested`]). It never stops
//! anything by itself.

use std::future::Future;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Woken by SIGUSR1; one stored permit, so a signal that comes while the
/// heartbeat is writing is not lost.
static CHECK_NOW: Notify = Notify::const_new();

/// Installs the handlers at once (a SIGUSR1 that came before its handler
/// would end the process), then cancels `shutdown` at the first SIGTERM or
/// SIGINT; SIGUSR1 wakes [`check_requested`] meanwhile.
pub fn forward(shutdown: CancellationToken) -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    );
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = handlers else {
            tracing::warn!("the signal handlers could not be installed");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::warn!("SIGTERM: stopping the script and saving the job's state");
                    break;
                }
                _ = int.recv() => {
                    tracing::warn!("SIGINT: stopping the script and saving the job's state");
                    break;
                }
                _ = usr1.recv() => {
                    tracing::info!("SIGUSR1: looking at the job's record now");
                    CHECK_NOW.notify_one();
                }
            }
        }
        shutdown.cancel();
        // SIGUSR1 stays handled (ignored but for the wake) to the end.
        while usr1.recv().await.is_some() {
            CHECK_NOW.notify_one();
        }
    }
}

/// Completes at the next SIGUSR1 (at once if one came since the last
/// call): the launcher asks the worker to read its job's record now.
pub async fn check_requested() {
    CHECK_NOW.notified().await;
}
