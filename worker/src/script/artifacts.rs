//! What a finished script leaves behind: the result file (a large result is
//! offloaded to the blob store) and the files in PLUS_OUTPUT_DIR (uploaded
//! under `jobs/{id}/output/`).

use backon::{ExponentialBuilder, Retryable};
use plus_jobs::blob::{self, BlobStore};
use serde_json::Value;
use tracing::warn;

use super::{ScriptError, Workspace};
use crate::output::EventSink;

/// The largest result kept inline on the job record; a larger one is stored
/// as `jobs/{id}/result.json` and the record points to it.
pub const INLINE_RESULT_BYTES: usize = 64 * 1024;

/// Reads PLUS_RESULT_FILE: `Ok(None)` when the script left none. A result
/// over [`INLINE_RESULT_BYTES`] is stored as `jobs/{id}/result.json` and
/// the returned value points to it.
///
/// # Errors
/// [`ScriptError`] when the file cannot be read, is not JSON, or a large
/// result cannot be stored.
pub async fn read_result(
    blobs: &dyn BlobStore,
    job_id: &str,
    ws: &Workspace,
) -> Result<Option<Value>, ScriptError> {
    let bytes = match tokio::fs::read(&ws.result).await {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => return Ok(None),
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ScriptError::ResultUnreadable { source }),
    };
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|source| ScriptError::ResultInvalid { source })?;
    if bytes.len() <= INLINE_RESULT_BYTES {
        return Ok(Some(value));
    }
    let key = format!("jobs/{job_id}/result.json");
    match blobs.put_bytes(&key, bytes, "application/json").await {
        Ok(()) => Ok(Some(
            serde_json::json!({ "truncated": true, "s3_key": key }),
        )),
        Err(source) => Err(ScriptError::ResultNotStored { source }),
    }
}

/// Uploads the files the script left in PLUS_OUTPUT_DIR; a file that cannot
/// be stored is reported on the job's stream and does not fail the job.
pub async fn upload_outputs(
    blobs: &dyn BlobStore,
    job_id: &str,
    ws: &Workspace,
    events: &EventSink,
) {
    let prefix = blob::output_prefix(job_id);
    let mut stack = vec![ws.output.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            continue;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            let Ok(kind) = entry.file_type().await else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(&ws.output)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                let key = format!("{prefix}{rel}");
                let put = || async {
                    blobs
                        .put_file(&key, &path, "application/octet-stream")
                        .await
                };
                if let Err(e) = put
                    .retry(ExponentialBuilder::default().with_jitter())
                    .when(|e| e.is_transient())
                    .await
                {
                    warn!(error = %e, file = %rel, "an output file could not be uploaded");
                    events.event(
                        plus_jobs::EventKind::Stderr,
                        format!("[plus] output file {rel} could not be uploaded: {e}"),
                    );
                }
            }
        }
    }
}
