//! [`Control`]: stops the running work once and remembers why.

use std::sync::{Arc, Mutex};

use tokio::{sync::watch, time::Instant};
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

/// Stops the running work once, remembering why. Every later request is
/// remembered too, with when it came: a SIGTERM after a timeout still
/// bounds the upload of the outputs.
#[derive(Clone, Debug)]
pub struct Control {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
    requests: watch::Sender<Vec<(StopReason, Instant)>>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            token: CancellationToken::new(),
            reason: Arc::default(),
            requests: watch::Sender::new(Vec::new()),
        }
    }
}

impl Control {
    /// Asks the work to stop (the first reason is kept).
    pub fn stop(&self, reason: StopReason) {
        {
            let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
            if r.is_none() {
                *r = Some(reason.clone());
            }
        }
        self.requests
            .send_modify(|all| all.push((reason, Instant::now())));
        self.token.cancel();
    }

    /// Why the work was stopped, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// When the first stop request that `matches` came, if one did.
    pub fn requested(&self, matches: impl Fn(&StopReason) -> bool) -> Option<Instant> {
        self.requests
            .borrow()
            .iter()
            .find(|(r, _)| matches(r))
            .map(|(_, at)| *at)
    }

    /// Every stop request so far, in the order they came.
    pub fn requests(&self) -> Vec<StopReason> {
        self.requests
            .borrow()
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Completes when a stop request that `matches` has come (at once if
    /// one already did), with when it came.
    pub async fn until_requested(&self, matches: impl Fn(&StopReason) -> bool) -> Instant {
        let mut rx = self.requests.subscribe();
        let found = rx
            .wait_for(|all| all.iter().any(|(r, _)| matches(r)))
            .await
            .ok()
            .and_then(|all| all.iter().find(|(r, _)| matches(r)).map(|(_, at)| *at));
        match found {
            Some(at) => at,
            // The sender lives as long as `self`: never reached.
            None => std::future::pending().await,
        }
    }

    /// Completes when the work is asked to stop.
    pub async fn stopped(&self) {
        self.token.cancelled().await;
    }

    /// Whether the work was asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Waits until the next look at the job's record is due: `every` has
    /// passed, or the launcher asked for a look now (SIGUSR1, after it set
    /// `cancel_requested`). False when `done` is cancelled first.
    pub async fn next_look(&self, every: std::time::Duration, done: &CancellationToken) -> bool {
        tokio::select! {
            due = super::watchers::sleep_unless(every, done) => due,
            () = crate::signals::check_requested() => !done.is_cancelled(),
        }
    }
}
