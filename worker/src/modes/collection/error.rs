//! [`CollectionError`]: what fails a collection job as a whole (an item's
//! own failure is a line of `results.jsonl`, not an error).

use std::{io, path::PathBuf, sync::Arc};

use plus_jobs::{blob::BlobError, StoreError};

use crate::script::ScriptError;

/// Why a collection job fails as a whole, each a sentence for its `error`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectionError {
    /// The collection could not be read (after retries).
    #[error("the collection {owner} could not be read after {after} items: {source}")]
    Read {
        /// COLLECTION_OWNER.
        owner: String,
        /// Items read before the failure.
        after: u64,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The reader task ended without saying why.
    #[error("the collection reader stopped unexpectedly")]
    ReaderStopped,
    /// An item's task panicked or was cancelled.
    #[error("an item's task failed: {0}")]
    ItemTask(#[source] tokio::task::JoinError),
    /// A per-item working directory could not be made.
    #[error("an item's working directory {} cannot be made: {source} (check PLUS_WORK_DIR has room and is writable)", .dir.display())]
    ItemDir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The script cannot be started at all (every item would fail alike).
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// The streaming process cannot be started.
    #[error("the streaming script could not be started: {0}")]
    StreamingStart(#[source] ScriptError),
    /// The streaming process keeps dying without answering.
    #[error("the streaming script {how} {crashes} times in a row without answering an item: fix the script (it must read JSON lines on stdin and answer one JSON line per item on stdout)")]
    CrashLoop {
        /// How it ended the last time ("exited with code 1", ...).
        how: String,
        /// How many times in a row.
        crashes: u32,
    },
    /// The local results file failed.
    #[error("the results file cannot be {doing}: {source}")]
    ResultsFile {
        /// `made`, `read` or `written`.
        doing: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The local results file could not be made.
    #[error("the results file {} cannot be made: {source}", .path.display())]
    ResultsFileAt {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// This attempt's manifest could not be stored.
    #[error("the collection's results cannot be stored: {0}")]
    ManifestNotStored(#[source] BlobError),
    /// A part of the results could not be stored (the checkpoint stays
    /// where the stored parts end).
    #[error("the collection's results could not be stored at {location}: {source}")]
    PartNotStored {
        /// Where.
        location: String,
        /// The store's error (shared: the uploader reports it once, the
        /// run loop and the final flush both read it).
        #[source]
        source: Arc<BlobError>,
    },
    /// The whole `results.jsonl` could not be stored.
    #[error("the results could not be stored at {location}: {source}")]
    ResultsNotStored {
        /// Where.
        location: String,
        /// The store's error.
        #[source]
        source: BlobError,
    },
    /// An earlier attempt's results could not be listed or read.
    #[error("{subject} cannot be {doing}: {source}")]
    Earlier {
        /// Which results.
        subject: &'static str,
        /// `listed` or `read`.
        doing: &'static str,
        /// The store's error.
        #[source]
        source: BlobError,
    },
    /// An earlier attempt's manifest is not one.
    #[error("{location} is not a results manifest ({source})")]
    BadManifest {
        /// Where.
        location: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl CollectionError {
    /// Whether the same step may succeed when tried again later (a store
    /// that could not be reached, after the retries already made).
    pub fn is_transient(&self) -> bool {
        match self {
            CollectionError::Read { source, .. } => source.is_transient(),
            CollectionError::ManifestNotStored(source)
            | CollectionError::ResultsNotStored { source, .. }
            | CollectionError::Earlier { source, .. } => source.is_transient(),
            CollectionError::PartNotStored { source, .. } => source.is_transient(),
            CollectionError::Script(e) | CollectionError::StreamingStart(e) => e.is_transient(),
            _ => false,
        }
    }

    pub(super) fn earlier(
        subject: &'static str,
        doing: &'static str,
    ) -> impl FnOnce(BlobError) -> Self {
        move |source| CollectionError::Earlier {
            subject,
            doing,
            source,
        }
    }

    pub(super) fn results_file(doing: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| CollectionError::ResultsFile { doing, source }
    }
}
