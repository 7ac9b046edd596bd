//! The process's signals: SIGTERM (ECS stopping the task: a Spot
//! interruption, StopTask, a deploy) and SIGINT become the shutdown token
//! that [`crate::run`] takes as a parameter. In the image the worker is
//! PID 1 (no tini): the kernel drops signals PID 1 has no handler for, so
//! these handlers are what make SIGTERM and SIGINT stop it.

use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` at the first SIGTERM or SIGINT.
pub async fn forward(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::warn!("SIGTERM: stopping the script and saving the job's state"),
        _ = int.recv() => tracing::warn!("SIGINT: stopping the script and saving the job's state"),
    }
    shutdown.cancel();
}
