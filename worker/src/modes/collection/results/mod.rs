//! Committing finished items in item order, storing them in parts as the
//! run goes, and composing `results.jsonl` at the end.
//!
//! Layout in the blob store, per job:
//!
//! ```text
//! jobs/{id}/results.jsonl                         the whole result, one line per item
//! jobs/{id}/results.parts/{attempt}/manifest.json which earlier parts hold items <= the checkpoint
//! jobs/{id}/results.parts/{attempt}/{n}.jsonl     this attempt's lines, in item order
//! ```
//!
//! The checkpoint handed to the heartbeat is always the id of the last line
//! of a part that is already stored, and the counters beside it count
//! exactly the lines up to it. A relaunch reads the manifest of the latest
//! attempt that wrote one, and adds that attempt's lines up to the saved
//! checkpoint as one more segment. Lines past the checkpoint are ignored
//! (those items run again), so no item has two lines.

mod store;

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use backon::Retryable;
use plus_jobs::{blob, BlobStore, Progress};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::warn;

use store::{copy_segment, latest_manifest, retry, upload, Part, UploadFailure};
pub use store::{parse_lines, parts_prefix, Manifest, Segment};

use super::{clamp, CollectionError, Done, PROGRESS_EVERY};
use crate::{job::JobContext, output::ProgressCell, script::Workspace};

/// A part is stored once it holds this many bytes (or at the checkpoint
/// interval, whichever comes first). A part is a byte range of the local
/// results file, streamed from it: its size costs no memory.
pub const PART_BYTES: u64 = 4 * 1024 * 1024;

/// The results of one attempt.
#[derive(Debug)]
pub struct Results {
    job_id: String,
    attempt: u32,
    blobs: Arc<dyn BlobStore>,
    progress: ProgressCell,
    manifest: Manifest,
    resume_after: Option<String>,
    before: (u64, u64),
    next_seq: u64,
    waiting: BTreeMap<u64, Done>,
    succeeded: u64,
    failed: u64,
    checkpoint: String,
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    /// Bytes written to the local results file so far.
    written: u64,
    /// Where the part not yet handed to the uploader starts in that file.
    part_start: u64,
    part_no: u32,
    last_part: Instant,
    part_every: Duration,
    uploads: Option<mpsc::Sender<Part>>,
    uploader: Option<JoinHandle<()>>,
    upload_error: UploadFailure,
}

impl Results {
    /// Prepares this attempt's results: finds what earlier attempts left
    /// (when the job has a checkpoint) and stores this attempt's manifest.
    ///
    /// # Errors
    /// A reason to fail the job when the blob store cannot be used.
    pub async fn open(ctx: &JobContext, ws: &Workspace) -> Result<Self, CollectionError> {
        let progress = ctx.progress.clone();
        let job_id = ctx.job.object_id.clone();
        let attempt = ctx.job.attempt.unwrap_or(1);
        let saved = ctx.job.progress.clone().unwrap_or_default();
        let prefix = parts_prefix(&job_id);
        let mut manifest = Manifest {
            attempt,
            segments: Vec::new(),
        };
        let mut resume_after = None;
        let mut before = (0, 0);
        if !saved.checkpoint.is_empty() {
            match latest_manifest(ctx.blobs.as_ref(), &prefix, attempt).await? {
                Some(prev) => {
                    let last = prev.segments.last().map(|s| s.upto.clone());
                    manifest.segments = prev.segments;
                    if last.as_deref() < Some(saved.checkpoint.as_str()) {
                        manifest.segments.push(Segment {
                            attempt: prev.attempt,
                            after: last,
                            upto: saved.checkpoint.clone(),
                        });
                    }
                    resume_after = Some(saved.checkpoint.clone());
                    before = (u64::from(saved.succeeded), u64::from(saved.failed));
                }
                None => {
                    warn!(checkpoint = %saved.checkpoint, "no stored results for the checkpoint; starting over");
                    ctx.events.event(plus_jobs::EventKind::Stderr,
                        format!("[plus] the checkpoint {} has no stored results (were they deleted?): running the whole collection again", saved.checkpoint),
                    );
                }
            }
        }
        let key = format!("{prefix}{attempt:04}/manifest.json");
        let body = serde_json::to_vec(&manifest).unwrap_or_default();
        let put = || async {
            ctx.blobs
                .put_bytes(&key, body.clone(), "application/json")
                .await
        };
        put.retry(retry())
            .when(|e| e.is_transient())
            .await
            .map_err(CollectionError::ManifestNotStored)?;
        progress.set(Progress {
            total: if resume_after.is_some() {
                saved.total
            } else {
                0
            },
            succeeded: clamp(before.0),
            failed: clamp(before.1),
            checkpoint: resume_after.clone().unwrap_or_default(),
        });
        let path = ws.private.join("results.jsonl");
        let file = match std::fs::File::create(&path) {
            Ok(file) => file,
            Err(source) => return Err(CollectionError::ResultsFileAt { path, source }),
        };
        let (tx, rx) = mpsc::channel(2);
        let upload_error: UploadFailure = Arc::new(Mutex::new(None));
        let uploader = tokio::spawn(upload(
            ctx.blobs.clone(),
            path.clone(),
            rx,
            progress.clone(),
            upload_error.clone(),
        ));
        Ok(Results {
            job_id,
            attempt,
            blobs: ctx.blobs.clone(),
            progress,
            manifest,
            resume_after,
            before,
            next_seq: 0,
            waiting: BTreeMap::new(),
            succeeded: before.0,
            failed: before.1,
            checkpoint: String::new(),
            path,
            file: std::io::BufWriter::with_capacity(256 * 1024, file),
            written: 0,
            part_start: 0,
            part_no: 0,
            last_part: Instant::now(),
            // Parts (and so the checkpoint and counters in the record)
            // follow the work within about a second.
            part_every: ctx
                .config
                .heartbeat
                .clamp(Duration::from_millis(100), PROGRESS_EVERY),
            uploads: Some(tx),
            uploader: Some(uploader),
            upload_error,
        })
    }

    /// The checkpoint this attempt resumes after, if any.
    pub fn resume_after(&self) -> Option<&str> {
        self.resume_after.as_deref()
    }

    /// Items finished by earlier attempts.
    pub fn committed_before(&self) -> u64 {
        self.before.0 + self.before.1
    }

    /// The progress cell the heartbeat writes.
    pub fn progress(&self) -> &ProgressCell {
        &self.progress
    }

    /// Succeeded and failed items (all attempts) and the last committed id.
    pub fn counts(&self) -> (u64, u64, &str) {
        let cp = if self.checkpoint.is_empty() {
            self.resume_after.as_deref().unwrap_or("")
        } else {
            &self.checkpoint
        };
        (self.succeeded, self.failed, cp)
    }

    /// Finished items waiting for an earlier, slower one.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Why storing parts failed, if it did.
    pub fn upload_error(&self) -> Option<CollectionError> {
        let failed = self.upload_error.lock().unwrap_or_else(|p| p.into_inner());
        failed
            .as_ref()
            .map(|(location, source)| CollectionError::PartNotStored {
                location: location.clone(),
                source: source.clone(),
            })
    }

    /// Takes a finished item; commits it and every waiting item after it
    /// once every item before it is committed.
    ///
    /// # Errors
    /// When the local results file cannot be written.
    pub async fn commit(&mut self, done: Done) -> Result<(), CollectionError> {
        if done.seq != self.next_seq {
            self.waiting.insert(done.seq, done);
            return Ok(());
        }
        self.write(done)?;
        while let Some(next) = self.waiting.remove(&self.next_seq) {
            self.write(next)?;
        }
        if self.written - self.part_start >= PART_BYTES {
            self.flush_part().await?;
        }
        Ok(())
    }

    fn write(&mut self, done: Done) -> Result<(), CollectionError> {
        self.file
            .write_all(&done.line)
            .map_err(CollectionError::results_file("written"))?;
        self.written += done.line.len() as u64;
        if done.ok {
            self.succeeded += 1;
        } else {
            self.failed += 1;
        }
        self.checkpoint = done.id;
        self.next_seq += 1;
        Ok(())
    }

    /// Stores the pending part when the checkpoint interval has passed.
    ///
    /// # Errors
    /// When the local results file cannot be written.
    pub async fn tick(&mut self) -> Result<(), CollectionError> {
        if self.written > self.part_start && self.last_part.elapsed() >= self.part_every {
            self.flush_part().await?;
        }
        Ok(())
    }

    /// Hands the lines written since the last part to the uploader, which
    /// streams them from the local file.
    async fn flush_part(&mut self) -> Result<(), CollectionError> {
        self.last_part = Instant::now();
        if self.written == self.part_start {
            return Ok(());
        }
        let Some(tx) = &self.uploads else {
            return Ok(());
        };
        self.file
            .flush()
            .map_err(CollectionError::results_file("written"))?;
        self.part_no += 1;
        let part = Part {
            key: format!(
                "{}{:04}/{:06}.jsonl",
                parts_prefix(&self.job_id),
                self.attempt,
                self.part_no
            ),
            range: self.part_start..self.written,
            succeeded: self.succeeded,
            failed: self.failed,
            checkpoint: self.checkpoint.clone(),
        };
        self.part_start = self.written;
        let _ = tx.send(part).await;
        Ok(())
    }

    /// Stores everything committed and waits until it is stored; the
    /// progress cell then holds the final checkpoint and counters.
    ///
    /// # Errors
    /// A reason to fail the job when results could not be stored.
    pub async fn flush_all(&mut self) -> Result<(), CollectionError> {
        let flushed = self.flush_part().await;
        self.uploads = None;
        if let Some(handle) = self.uploader.take() {
            let _ = handle.await;
        }
        flushed?;
        self.file
            .flush()
            .map_err(CollectionError::results_file("written"))?;
        match self.upload_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Writes `jobs/{id}/results.jsonl`: the earlier attempts' segments, then
    /// this attempt's lines. Call after [`Results::flush_all`].
    ///
    /// # Errors
    /// A reason to fail the job.
    pub async fn compose(&mut self) -> Result<(), CollectionError> {
        let key = blob::results_key(&self.job_id);
        let path = if self.manifest.segments.is_empty() {
            self.path.clone()
        } else {
            let all = self.path.with_file_name("results.all.jsonl");
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&all).map_err(CollectionError::results_file("made"))?,
            );
            for segment in &self.manifest.segments {
                copy_segment(self.blobs.as_ref(), &self.job_id, segment, &mut out).await?;
            }
            let mut own =
                std::fs::File::open(&self.path).map_err(CollectionError::results_file("read"))?;
            std::io::copy(&mut own, &mut out)
                .and_then(|_| out.flush())
                .map_err(CollectionError::results_file("written"))?;
            all
        };
        let put = || async {
            self.blobs
                .put_file(&key, &path, "application/x-ndjson")
                .await
        };
        put.retry(retry())
            .when(|e| e.is_transient())
            .await
            .map_err(|source| CollectionError::ResultsNotStored {
                location: self.blobs.locate(&key),
                source,
            })
    }
}
