//! The log collector: every output [`Piece`] goes whole to the job's log
//! file, and, split into lines, to the bounded live view ([`EventSink`]) and
//! the JSON log.

use std::path::{Path, PathBuf};

use tokio::{io::AsyncWriteExt, sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, Instrument};

use super::{events::LINE_BYTES, EventSink, Piece, Stream};

/// Pieces waiting for the collector at most.
const QUEUE: usize = 256;

/// The running collector task of one job.
#[derive(Debug)]
pub struct Collector {
    close: CancellationToken,
    task: JoinHandle<bool>,
    path: PathBuf,
}

impl Collector {
    /// Starts collecting into the log file at `path`; returns the collector
    /// and the sender every script's output goes to.
    pub fn spawn(path: PathBuf, events: EventSink) -> (Collector, mpsc::Sender<Piece>) {
        let (tx, rx) = mpsc::channel::<Piece>(QUEUE);
        let close = CancellationToken::new();
        let task = tokio::spawn(collect(rx, close.clone(), path.clone(), events).in_current_span());
        (Collector { close, task, path }, tx)
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Call once every script's readers are done: takes what is queued,
    /// closes the log file and says whether it is complete.
    pub async fn close(self) -> (bool, PathBuf) {
        self.close.cancel();
        (self.task.await.unwrap_or(false), self.path)
    }
}

/// Splits one stream's chunks into lines for the live view.
#[derive(Debug, Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Feeds a chunk; shows each complete line while the view has room, and
    /// counts the rest as left out.
    fn feed(&mut self, bytes: &[u8], stream: Stream, events: &EventSink) {
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|b| *b == b'\n') {
            if !events.has_room() {
                let more = rest.iter().filter(|b| **b == b'\n').count() as u64;
                events.omit(more);
                self.partial.clear();
                return;
            }
            let line = &rest[..i];
            if self.partial.is_empty() {
                show(stream, line, events);
            } else {
                self.take_partial(line);
                let joined = std::mem::take(&mut self.partial);
                show(stream, &joined, events);
            }
            rest = &rest[i + 1..];
        }
        self.take_partial(rest);
    }

    fn take_partial(&mut self, bytes: &[u8]) {
        // Only the start of a very long line can show; keep no more of it.
        let room = (LINE_BYTES + 8).saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish(&mut self, stream: Stream, events: &EventSink) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            show(stream, &line, events);
        }
    }
}

fn show(stream: Stream, line: &[u8], events: &EventSink) {
    let text = String::from_utf8_lossy(line);
    if events.line(stream.kind(), &text) {
        info!(stream = stream.kind().as_str(), line = %text, "output");
    }
}

/// Writes every output chunk to the log file (all of it) and the live stream
/// and JSON log (a bounded view). Returns whether the log file is complete.
async fn collect(
    mut rx: mpsc::Receiver<Piece>,
    close: CancellationToken,
    path: PathBuf,
    events: EventSink,
) -> bool {
    let file = match tokio::fs::File::create(&path).await {
        Ok(f) => Some(f),
        Err(e) => {
            error!(error = %e, path = %path.display(), "the log file cannot be written; output goes to the stream only");
            None
        }
    };
    let mut ok = file.is_some();
    let mut log = file.map(|f| tokio::io::BufWriter::with_capacity(256 * 1024, f));
    let (mut out, mut err) = (Lines::default(), Lines::default());
    loop {
        let piece = tokio::select! {
            biased;
            piece = rx.recv() => match piece {
                Some(piece) => piece,
                None => break,
            },
            () = close.cancelled() => match rx.try_recv() {
                Ok(piece) => piece,
                Err(_) => break,
            },
        };
        if let Some(w) = log.as_mut() {
            if let Err(e) = w.write_all(&piece.bytes).await {
                error!(error = %e, "writing the log file failed");
                ok = false;
                log = None;
            }
        }
        let lines = match piece.stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        lines.feed(&piece.bytes, piece.stream, &events);
    }
    out.finish(Stream::Stdout, &events);
    err.finish(Stream::Stderr, &events);
    if let Some(mut w) = log {
        if w.flush().await.is_err() {
            ok = false;
        }
    }
    ok
}
