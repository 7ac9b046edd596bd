//! Progress counters shared between the running work and the heartbeat,
//! written with the heartbeat (not once per item).

use std::sync::{Arc, Mutex};

use plus_jobs::Progress;

#[derive(Debug, Default)]
struct State {
    progress: Option<Progress>,
    changed: bool,
}

/// The job's progress, updated by the work and read by the heartbeat.
#[derive(Clone, Debug, Default)]
pub struct ProgressCell(Arc<Mutex<State>>);

impl ProgressCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the progress.
    pub fn set(&self, progress: Progress) {
        let mut s = self.lock();
        s.progress = Some(progress);
        s.changed = true;
    }

    /// Changes the progress in place.
    pub fn update(&self, f: impl FnOnce(&mut Progress)) {
        let mut s = self.lock();
        f(s.progress.get_or_insert_with(Progress::default));
        s.changed = true;
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
    /// heartbeat writes it.
    pub fn mark_unwritten(&self) {
        self.lock().changed = true;
    }

    /// The progress, if any was set.
    pub fn current(&self) -> Option<Progress> {
        self.lock().progress.clone()
    }
}
