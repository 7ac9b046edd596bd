//! The blob-store side of a collection's results: the parts of each
//! attempt, the manifests that say which earlier parts belong to the
//! result, the uploader that stores parts in order, and reading them back.

use std::{
    io::{BufRead, Write},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use backon::{ExponentialBuilder, Retryable};
use plus_jobs::{blob::BlobError, BlobStore};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    modes::collection::{clamp, CollectionError},
    output::ProgressCell,
};

/// `jobs/{id}/results.parts/`
pub fn parts_prefix(job_id: &str) -> String {
    format!("jobs/{job_id}/results.parts/")
}

/// Lines of one earlier attempt that belong to the result: its parts'
/// lines with `after < id <= upto`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The attempt that wrote the parts.
    pub attempt: u32,
    /// Lines with ids up to this one are in earlier segments.
    pub after: Option<String>,
    /// The checkpoint that attempt reached.
    pub upto: String,
}

/// What an attempt starts from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The attempt that wrote it.
    pub attempt: u32,
    /// The earlier lines, in item order.
    pub segments: Vec<Segment>,
}

#[derive(Debug)]
pub(super) struct Part {
    pub(super) key: String,
    pub(super) range: std::ops::Range<u64>,
    pub(super) succeeded: u64,
    pub(super) failed: u64,
    pub(super) checkpoint: String,
}

pub(super) fn retry() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(3))
        .with_max_times(8)
}

/// Where the uploader leaves why a part could not be stored (and the
/// location), for the run loop and the final flush to read.
pub(super) type UploadFailure = Arc<Mutex<Option<(String, Arc<BlobError>)>>>;

/// Stores parts in order; after each, hands its checkpoint and counters to
/// the heartbeat. Stops at the first part that cannot be stored (the
/// checkpoint then stays where the stored parts end).
pub(super) async fn upload(
    blobs: Arc<dyn BlobStore>,
    path: PathBuf,
    mut rx: mpsc::Receiver<Part>,
    progress: ProgressCell,
    error: UploadFailure,
) {
    while let Some(part) = rx.recv().await {
        let put = || async {
            blobs
                .put_file_range(&part.key, &path, part.range.clone(), "application/x-ndjson")
                .await
        };
        match put.retry(retry()).when(|e| e.is_transient()).await {
            Ok(()) => progress.update(|p| {
                p.succeeded = clamp(part.succeeded);
                p.failed = clamp(part.failed);
                p.checkpoint = part.checkpoint.clone();
            }),
            Err(e) => {
                *error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((blobs.locate(&part.key), Arc::new(e)));
                return;
            }
        }
    }
}

/// The manifest of the latest attempt before `attempt` that wrote one.
pub(super) async fn latest_manifest(
    blobs: &dyn BlobStore,
    prefix: &str,
    attempt: u32,
) -> Result<Option<Manifest>, CollectionError> {
    let earlier = |doing| CollectionError::earlier("the collection's earlier results", doing);
    let keys = blobs.list(prefix).await.map_err(earlier("listed"))?;
    let latest = keys
        .iter()
        .filter_map(|k| {
            let rest = k.strip_prefix(prefix)?.strip_suffix("/manifest.json")?;
            rest.parse::<u32>().ok().filter(|a| *a < attempt)
        })
        .max();
    let Some(a) = latest else { return Ok(None) };
    let key = format!("{prefix}{a:04}/manifest.json");
    let bytes = blobs
        .get_bytes(&key)
        .await
        .map_err(earlier("read"))?
        .unwrap_or_default();
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| CollectionError::BadManifest {
            location: blobs.locate(&key),
            source,
        })
}

/// Appends the lines of `segment` (its attempt's parts, ids in
/// `(after, upto]`) to `out`, one part in memory at a time.
pub(super) async fn copy_segment(
    blobs: &dyn BlobStore,
    job_id: &str,
    segment: &Segment,
    out: &mut impl Write,
) -> Result<(), CollectionError> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let prefix = format!("{}{:04}/", parts_prefix(job_id), segment.attempt);
    let earlier = |doing| CollectionError::earlier("the earlier results", doing);
    let mut keys = blobs.list(&prefix).await.map_err(earlier("listed"))?;
    keys.retain(|k| k.ends_with(".jsonl"));
    keys.sort();
    for key in keys {
        let bytes = blobs
            .get_bytes(&key)
            .await
            .map_err(earlier("read"))?
            .unwrap_or_default();
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let Ok(Id { id }) = serde_json::from_slice::<Id>(line.trim_ascii_end()) else {
                continue;
            };
            let id: &str = &id;
            if segment.after.as_deref().is_none_or(|a| id > a) && id <= segment.upto.as_str() {
                out.write_all(line)
                    .map_err(CollectionError::results_file("written"))?;
            }
            if id > segment.upto.as_str() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads a `results.jsonl` body into `(id, ok)` pairs (for tests and tools).
pub fn parse_lines(body: &[u8]) -> Vec<(String, bool)> {
    body.lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .map(|v| {
            (
                v["id"].as_str().unwrap_or_default().to_owned(),
                v["ok"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}
