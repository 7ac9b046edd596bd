//! [`Control`]: stops the running work once and remembers why.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Why the running work was told to stop; the first reason wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A cancel was requested.
    Cancelled,
    /// `timeout_seconds` passed.
    TimedOut(u32),
    /// SIGTERM (a Spot interruption, StopTask, a deploy) or SIGINT.
    Interrupted,
    /// Another writer took the job (the monitor settled it, or a lease
    /// was lost): this worker must stop without writing.
    LostLease(String),
}

/// Stops the running work once, remembering why.
#[derive(Clone, Debug, Default)]
pub struct Control {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl Control {
    /// Asks the work to stop (the first reason is kept).
    pub fn stop(&self, reason: StopReason) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        self.token.cancel();
    }

    /// Why the work was stopped, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Completes when the work is asked to stop.
    pub async fn stopped(&self) {
        self.token.cancelled().await;
    }

    /// Whether the work was asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }
}
