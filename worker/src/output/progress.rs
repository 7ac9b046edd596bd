//! Progress counters shared between the running work and the heartbeat.
//! The work changes them at most about once per [`PROGRESS_EVERY`] (a
//! collection: once per stored part of its results, never once per item);
//! the heartbeat writes each change at once, and no two progress writes
//! closer than [`PROGRESS_GAP`].

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use plus_jobs::Progress;
use tokio::sync::Notify;

/// How often the work publishes progress at most: the record and the
/// stream show the work within about this long.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The least time between two progress writes to the record (a change
/// that comes sooner waits), so a burst of changes costs one write.
pub const PROGRESS_GAP: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
struct State {
    progress: Option<Progress>,
    changed: bool,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    /// Woken when the progress changes.
    changed: Notify,
}

/// The job's progress, updated by the work and read by the heartbeat.
#[derive(Clone, Debug, Default)]
pub struct ProgressCell(Arc<Inner>);

impl ProgressCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the progress.
    pub fn set(&self, progress: Progress) {
        {
            let mut s = self.lock();
            s.progress = Some(progress);
            s.changed = true;
        }
        self.0.changed.notify_one();
    }

    /// Changes the progress in place.
    pub fn update(&self, f: impl FnOnce(&mut Progress)) {
        {
            let mut s = self.lock();
            f(s.progress.get_or_insert_with(Progress::default));
            s.changed = true;
        }
        self.0.changed.notify_one();
    }

    /// The progress, if it changed since the last call.
    pub fn take_changed(&self) -> Option<Progress> {
        let mut s = self.lock();
        if !s.changed {
            return None;
        }
        s.changed = false;
        s.progress.clone()
    }

    /// Marks the progress changed again after a failed write, so the next
    /// write carries it.
    pub fn mark_unwritten(&self) {
        self.lock().changed = true;
        self.0.changed.notify_one();
    }

    /// Completes once the progress changes (at once if a change came while
    /// nobody was waiting).
    pub async fn changed(&self) {
        self.0.changed.notified().await;
    }

    /// The progress, if any was set.
    pub fn current(&self) -> Option<Progress> {
        self.lock().progress.clone()
    }
}
