//! The log collector: every output [`Piece`] goes whole to the job's log
//! file, and, split into lines, to the bounded live view ([`EventSink`]) and
//! the JSON log.
//!
//! The log file is the worker's own, out of the script's reach: an unnamed
//! file (no path to replace with a FIFO or a link) in a fresh 0700
//! directory of the worker's, opened once; it is read back through this
//! process's own handle ([`LogFile`]: `/proc/self/fd/N`, which other
//! processes cannot open since the worker is non-dumpable).

use std::{
    ops::Deref,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use tokio::{io::AsyncWriteExt, sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, Instrument};

use super::{events::LINE_BYTES, EventSink, Mask, Piece, Stream};

/// Pieces waiting for the collector at most.
const QUEUE: usize = 256;

/// The running collector task of one job.
#[derive(Debug)]
pub struct Collector {
    close: CancellationToken,
    task: JoinHandle<bool>,
    log: LogFile,
}

/// The job's log file, held open: derefs to a path that opens this very
/// file (`/proc/self/fd/N`) for as long as it lives, whatever the script
/// does to the folders around it. Dropping it removes it.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    _file: Option<std::fs::File>,
    _dir: Option<tempfile::TempDir>,
}

impl Deref for LogFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for LogFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl LogFile {
    /// Makes the log file: a fresh 0700 directory next to `near`, named
    /// after it, holding one unnamed file.
    fn create(near: &Path) -> std::io::Result<LogFile> {
        let parent = near.parent().unwrap_or(Path::new("."));
        let prefix = near.file_name().unwrap_or("plus-log".as_ref());
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(parent)?;
        let file = tempfile::tempfile_in(dir.path())?;
        Ok(LogFile {
            path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
            _file: Some(file),
            _dir: Some(dir),
        })
    }
}

impl Collector {
    /// Starts collecting into a log file of the worker's own made next to
    /// `path` (see the module docs); returns the collector and the sender
    /// every script's output goes to. Every piece is masked with `mask`
    /// (the job's secret values) before it is written anywhere.
    pub fn spawn(path: PathBuf, events: EventSink, mask: Mask) -> (Collector, mpsc::Sender<Piece>) {
        let (tx, rx) = mpsc::channel::<Piece>(QUEUE);
        let close = CancellationToken::new();
        let (log, writer) = match LogFile::create(&path).and_then(|log| {
            let writer = log._file.as_ref().expect("made with a file").try_clone()?;
            Ok((log, writer))
        }) {
            Ok((log, writer)) => (log, Some(tokio::fs::File::from_std(writer))),
            Err(e) => {
                error!(error = %e, path = %path.display(), "the log file cannot be written; output goes to the stream only");
                let log = LogFile {
                    path,
                    _file: None,
                    _dir: None,
                };
                (log, None)
            }
        };
        let task = tokio::spawn(collect(rx, close.clone(), writer, events, mask).in_current_span());
        (Collector { close, task, log }, tx)
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.log
    }

    /// Call once every script's readers are done: takes what is queued,
    /// closes the log file for writing and says whether it is complete;
    /// the [`LogFile`] reads it back.
    pub async fn close(self) -> (bool, LogFile) {
        self.close.cancel();
        (self.task.await.unwrap_or(false), self.log)
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
    file: Option<tokio::fs::File>,
    events: EventSink,
    mask: Mask,
) -> bool {
    let mut ok = file.is_some();
    let mut log = file.map(|f| tokio::io::BufWriter::with_capacity(256 * 1024, f));
    let (mut out, mut err) = (Lines::default(), Lines::default());
    // Per stream: the end of a piece cut mid-line that could be the start
    // of a secret value, kept back until the rest of the line arrives.
    let (mut out_kept, mut err_kept) = (Vec::new(), Vec::new());
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
        let (lines, kept) = match piece.stream {
            Stream::Stdout => (&mut out, &mut out_kept),
            Stream::Stderr => (&mut err, &mut err_kept),
        };
        let mut bytes = piece.bytes;
        if !kept.is_empty() {
            kept.extend_from_slice(&bytes);
            bytes = std::mem::take(kept);
        }
        if !mask.is_empty() && bytes.last() != Some(&b'\n') {
            let keep = mask.partial_tail(&bytes);
            *kept = bytes.split_off(bytes.len() - keep);
        }
        let masked = mask.apply(&bytes);
        ok &= write(&mut log, &masked).await;
        lines.feed(&masked, piece.stream, &events);
    }
    for (lines, kept, stream) in [
        (&mut out, out_kept, Stream::Stdout),
        (&mut err, err_kept, Stream::Stderr),
    ] {
        if !kept.is_empty() {
            let masked = mask.apply(&kept);
            ok &= write(&mut log, &masked).await;
            lines.feed(&masked, stream, &events);
        }
        lines.finish(stream, &events);
    }
    if let Some(mut w) = log {
        if w.flush().await.is_err() {
            ok = false;
        }
    }
    ok
}

/// Writes `bytes` to the log file, if it is still open; on a failure the
/// file is given up (the log is then incomplete) and `false` returned.
async fn write(log: &mut Option<tokio::io::BufWriter<tokio::fs::File>>, bytes: &[u8]) -> bool {
    let Some(w) = log.as_mut() else {
        return true;
    };
    match w.write_all(bytes).await {
        Ok(()) => true,
        Err(e) => {
            error!(error = %e, "writing the log file failed");
            *log = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_value_split_across_pieces_is_masked_in_the_log_and_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn plus_jobs::JobStore> = Arc::new(
            plus_jobs::store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap(),
        );
        let events = EventSink::new(store.clone(), "job-1", 1, 1 << 20);
        let mask = Mask::default();
        mask.set(["hunter22-secret"]);
        let (collector, tx) = Collector::spawn(dir.path().join("log"), events.clone(), mask);
        // A long line cut inside the value, another stream in between, and
        // a last piece with no newline that could start the value.
        for (stream, bytes) in [
            (Stream::Stdout, &b"start hunter"[..]),
            (Stream::Stderr, &b"err line\n"[..]),
            (Stream::Stdout, &b"22-secret end\n"[..]),
            (Stream::Stdout, &b"tail hunter2"[..]),
        ] {
            tx.send(Piece {
                stream,
                bytes: bytes.to_vec(),
            })
            .await
            .unwrap();
        }
        drop(tx);
        let (ok, log) = collector.close().await;
        assert!(ok);
        let log = std::fs::read_to_string(&*log).unwrap();
        // The kept-back end follows the other stream's line in the log.
        assert_eq!(log, "start err line\n*** end\ntail hunter2");
        events.flush().await.unwrap();
        let shown: Vec<String> = store
            .events_after("job-1", 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.data)
            .collect();
        let shown = shown.join("\n");
        assert!(shown.contains("start *** end"), "{shown}");
        assert!(!shown.contains("hunter22"), "{shown}");
    }
}
