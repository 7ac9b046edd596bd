//! The job's live event stream: output lines, status and progress events,
//! batched into the streams table.
//!
//! Lines are merged into items of up to [`ITEM_BYTES`] so a chatty script
//! costs few writes; while a write is in flight, new lines keep merging
//! ("batching harder"). The live view is bounded: beyond [`PENDING_BYTES`]
//! of unwritten output, lines are left out of the stream and counted, and a
//! marker says so. The full log in the blob store is never cut.

use std::sync::{Arc, Mutex};

use plus_jobs::{event::stream_event, EventKind, JobStore, StoreError, StreamEvent};

/// The largest `data` of one stream item (DynamoDB items are at most 400 KB).
pub const ITEM_BYTES: usize = 32 * 1024;
/// The longest line the live view shows; the rest is cut with a marker.
pub const LINE_BYTES: usize = 4 * 1024;
/// Unwritten output kept for the stream at most.
pub const PENDING_BYTES: usize = 2 * 1024 * 1024;
/// Output one attempt shows in the live view at most (`PLUS_STREAM_MAX_BYTES`
/// overrides it); past it, lines are only in the full log, and a marker
/// says how many.
pub const DEFAULT_VIEW_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Default)]
struct Pending {
    items: Vec<StreamEvent>,
    bytes: usize,
    omitted_lines: u64,
    last_seq: u64,
    /// Live-view bytes this attempt may still show.
    view_left: u64,
}

/// Collects events for one job's stream and writes them in batches.
#[derive(Clone, Debug)]
pub struct EventSink {
    store: Arc<dyn JobStore>,
    stream_id: String,
    ttl_days: u32,
    pending: Arc<Mutex<Pending>>,
    /// Serialises writers so events land in sequence order.
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

impl EventSink {
    /// A sink for the stream of job `stream_id`; events expire after
    /// `ttl_days`.
    pub fn new(store: Arc<dyn JobStore>, stream_id: &str, ttl_days: u32, view_bytes: u64) -> Self {
        let pending = Pending {
            view_left: view_bytes,
            ..Pending::default()
        };
        Self {
            store,
            stream_id: stream_id.to_owned(),
            ttl_days,
            pending: Arc::new(Mutex::new(pending)),
            write_lock: Arc::default(),
        }
    }

    /// Whether the live view has room for more output lines.
    pub fn has_room(&self) -> bool {
        let p = self.lock();
        p.view_left > 0 && p.bytes < PENDING_BYTES
    }

    /// Counts `n` lines left out of the live view.
    pub fn omit(&self, n: u64) {
        if n > 0 {
            self.lock().omitted_lines += n;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_event(&self, p: &mut Pending, kind: EventKind, data: String) -> StreamEvent {
        let event = stream_event(&self.stream_id, kind, data, self.ttl_days, p.last_seq);
        p.last_seq = event.seq;
        event
    }

    /// Adds one output line (`kind` is `stdout` or `stderr`). Returns
    /// whether it shows in the live view (false: it was counted as left out).
    pub fn line(&self, kind: EventKind, line: &str) -> bool {
        let mut p = self.lock();
        if p.bytes >= PENDING_BYTES || p.view_left == 0 {
            p.omitted_lines += 1;
            return false;
        }
        let text = truncate_line(line);
        p.bytes += text.len() + 1;
        p.view_left = p.view_left.saturating_sub(text.len() as u64 + 1);
        if let Some(last) = p.items.last_mut() {
            if last.kind == kind.as_str() && last.data.len() + text.len() < ITEM_BYTES {
                last.data.push('\n');
                last.data.push_str(&text);
                return true;
            }
        }
        let event = self.new_event(&mut p, kind, text.into_owned());
        p.items.push(event);
        true
    }

    /// Adds an event of its own (`status`, `progress`, `item`).
    pub fn event(&self, kind: EventKind, data: impl Into<String>) {
        let mut p = self.lock();
        let data = data.into();
        p.bytes += data.len();
        let event = self.new_event(&mut p, kind, data);
        p.items.push(event);
    }

    /// Writes what is pending. On failure the events stay pending (in order)
    /// for the next call.
    ///
    /// # Errors
    /// The store's error; nothing is lost.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _writer = self.write_lock.lock().await;
        let batch = {
            let mut p = self.lock();
            if p.omitted_lines > 0 {
                let n = p.omitted_lines;
                p.omitted_lines = 0;
                let marker = format!(
                    "[{n} line{} left out of the live view (it drops lines when output outpaces the stream, and shows at most PLUS_STREAM_MAX_BYTES per attempt); the full log has every line]",
                    if n == 1 { "" } else { "s" }
                );
                let event = self.new_event(&mut p, EventKind::Stderr, marker);
                p.items.push(event);
            }
            p.bytes = 0;
            std::mem::take(&mut p.items)
        };
        if batch.is_empty() {
            return Ok(());
        }
        match self.store.append_events(&batch).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut p = self.lock();
                let newer = std::mem::replace(&mut p.items, batch);
                p.bytes += p.items.iter().map(|e| e.data.len()).sum::<usize>();
                p.items.extend(newer);
                Err(e)
            }
        }
    }
}

/// The live view of a line: at most [`LINE_BYTES`], cut on a character
/// boundary with a marker that says how much was left out.
fn truncate_line(line: &str) -> std::borrow::Cow<'_, str> {
    if line.len() <= LINE_BYTES {
        return line.into();
    }
    let mut end = LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [line cut at {} KiB; the full log has all of it]",
        &line[..end],
        LINE_BYTES / 1024
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_with_a_marker() {
        let line = "é".repeat(5000);
        let cut = truncate_line(&line);
        assert!(cut.len() < LINE_BYTES + 100);
        assert!(cut.ends_with("the full log has all of it]"));
    }
}
