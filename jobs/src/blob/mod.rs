//! The blob store port: scripts, logs, output files and results, under the
//! key layout of DESIGN.md (`jobs/{job_id}/...`). Adapters: [`s3`] (the
//! primary bucket) and [`local`] (a folder, for the embedded backend).

pub mod local;
pub mod s3;

use crate::Cause;
use std::path::Path;

use async_trait::async_trait;

/// Errors from a [`BlobStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The store could not be reached or answered with a transient error.
    #[error("the blob store is unreachable: {0}")]
    Unavailable(#[source] Cause),
    /// The request can never succeed as it is (missing bucket, no permission).
    #[error("{0}")]
    Rejected(#[source] Cause),
    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl BlobError {
    /// Whether retrying the same request may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, BlobError::Unavailable(_))
    }
}

/// Blob storage by key.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` at `key`, replacing what was there.
    ///
    /// # Errors
    /// When the store fails.
    async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), BlobError>;

    /// Stores the file at `path` under `key`, streaming it (never whole in
    /// memory; large files go up in parts).
    ///
    /// # Errors
    /// When the file cannot be read or the store fails.
    async fn put_file(&self, key: &str, path: &Path, content_type: &str) -> Result<(), BlobError>;

    /// Stores bytes `range` of the file at `path` under `key` (one request,
    /// streamed from the file: the range is never whole in memory). For
    /// pieces of a file that is still growing, such as a results file
    /// stored as it is written; keep ranges well under 5 GiB.
    ///
    /// # Errors
    /// When the file cannot be read or the store fails.
    async fn put_file_range(
        &self,
        key: &str,
        path: &Path,
        range: std::ops::Range<u64>,
        content_type: &str,
    ) -> Result<(), BlobError>;

    /// Reads the blob at `key`; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// When the store fails.
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError>;

    /// The size in bytes of the blob at `key`; `Ok(None)` when there is
    /// none. The default reads the blob; adapters answer without reading.
    ///
    /// # Errors
    /// When the store fails.
    async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        Ok(self.get_bytes(key).await?.map(|b| b.len() as u64))
    }

    /// Keys that start with `prefix`, in order.
    ///
    /// # Errors
    /// When the store fails.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError>;

    /// Where `key` lives, for people (`s3://bucket/key` or a file path).
    fn locate(&self, key: &str) -> String;
}

/// `jobs/{job_id}/script`
pub fn script_key(job_id: &str) -> String {
    format!("jobs/{job_id}/script")
}

/// `jobs/{job_id}/log.txt`
pub fn log_key(job_id: &str) -> String {
    format!("jobs/{job_id}/log.txt")
}

/// `jobs/{job_id}/output/`
pub fn output_prefix(job_id: &str) -> String {
    format!("jobs/{job_id}/output/")
}

/// `jobs/{job_id}/results.jsonl`
pub fn results_key(job_id: &str) -> String {
    format!("jobs/{job_id}/results.jsonl")
}
