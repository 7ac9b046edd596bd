//! What a finished script leaves behind: the result file (a large result is
//! offloaded to the blob store) and the files in PLUS_OUTPUT_DIR (uploaded
//! under `jobs/{id}/output/`).
//!
//! Nothing the script left is trusted. PLUS_RESULT_FILE and every output
//! are opened without following a symbolic link (`O_NOFOLLOW`) and without
//! blocking (`O_NONBLOCK`: a FIFO cannot hold the worker), then checked
//! with `fstat` to be regular files under a size cap. The output folder is
//! walked from the folder the job was given with `openat` / `fstatat`,
//! never through a link, and each output is uploaded from the very file
//! that was checked (through `/proc/self/fd`), under its path relative to
//! PLUS_OUTPUT_DIR, byte for byte (`/` between folders, a `\` stays a `\`).

use std::{
    io::{self, Read},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use backon::{ExponentialBuilder, Retryable};
use nix::{
    libc,
    sys::stat::{fstat, FileStat, SFlag},
};
use plus_jobs::blob::{self, BlobError, BlobStore};
use serde_json::Value;

use super::{ScriptError, Workspace};

/// The largest result kept inline on the job record; a larger one is stored
/// as `jobs/{id}/result.json` and the record points to it.
pub const INLINE_RESULT_BYTES: usize = 64 * 1024;
/// The largest PLUS_RESULT_FILE read at all: a larger one (or a link to
/// `/dev/zero`) fails the job instead of filling the worker's memory.
pub const RESULT_FILE_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// The largest output file: what a multipart upload of 10,000 parts holds.
pub const OUTPUT_FILE_MAX_BYTES: u64 = 10_000 * blob::s3::PART_SIZE;
/// Output files uploaded at once.
pub const UPLOADS_IN_FLIGHT: usize = 32;
/// After a stop, how long the rest of PLUS_OUTPUT_DIR may be walked to say
/// how many outputs there were.
const COUNT_FOR: std::time::Duration = std::time::Duration::from_millis(500);
/// Folders nested deeper than this in PLUS_OUTPUT_DIR are not walked (each
/// level holds a file descriptor while it is read).
const MAX_DEPTH: usize = 64;

/// Reads PLUS_RESULT_FILE: `Ok(None)` when the script left none. A result
/// over [`INLINE_RESULT_BYTES`], or with numbers DynamoDB cannot keep
/// (`1e-300`), is stored as `jobs/{id}/result.json` and the returned value
/// points to it.
///
/// # Errors
/// [`ScriptError`] when the file is not a regular file, is larger than
/// [`RESULT_FILE_MAX_BYTES`], cannot be read, is not JSON, or a result kept
/// beside the record cannot be stored.
pub async fn read_result(
    blobs: &dyn BlobStore,
    job_id: &str,
    ws: &Workspace,
) -> Result<Option<Value>, ScriptError> {
    let path = ws.result.clone();
    let bytes = tokio::task::spawn_blocking(move || read_result_file(&path))
        .await
        .map_err(|e| ScriptError::ResultUnreadable {
            source: io::Error::other(e),
        })??;
    let Some(bytes) = bytes.filter(|b| !b.iter().all(u8::is_ascii_whitespace)) else {
        return Ok(None);
    };
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|source| ScriptError::ResultInvalid { source })?;
    if let Some(bad) = plus_jobs::params::dynamodb_number_problem(&value, "result") {
        let reason = format!("{bad} is outside the numbers DynamoDB keeps (1E-130 to 9.99E+125)");
        return offload_result(blobs, job_id, bytes, Some(reason))
            .await
            .map(Some);
    }
    if bytes.len() <= INLINE_RESULT_BYTES {
        return Ok(Some(value));
    }
    offload_result(blobs, job_id, bytes, None).await.map(Some)
}

/// Stores a result beside the job's record as `jobs/{id}/result.json` and
/// returns what the record keeps instead: `{"truncated": true, "s3_key":
/// ...}`, with `reason` when it is not the plain size.
///
/// # Errors
/// [`ScriptError::ResultNotStored`] when the blob store refuses it.
pub async fn offload_result(
    blobs: &dyn BlobStore,
    job_id: &str,
    bytes: Vec<u8>,
    reason: Option<String>,
) -> Result<Value, ScriptError> {
    let key = format!("jobs/{job_id}/result.json");
    let put = || async {
        blobs
            .put_bytes(&key, bytes.clone(), "application/json")
            .await
    };
    put.retry(ExponentialBuilder::default().with_jitter())
        .when(BlobError::is_transient)
        .await
        .map_err(|source| ScriptError::ResultNotStored { source })?;
    let mut pointer = serde_json::json!({ "truncated": true, "s3_key": key });
    if let Some(reason) = reason {
        pointer["reason"] = Value::String(reason);
    }
    Ok(pointer)
}

/// The bytes of PLUS_RESULT_FILE (`None`: there is none), read only if it is
/// a regular file of at most [`RESULT_FILE_MAX_BYTES`].
fn read_result_file(path: &Path) -> Result<Option<Vec<u8>>, ScriptError> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(match refused_open(&e) {
                Some(what) => ScriptError::ResultNotRegular { what },
                None => ScriptError::ResultUnreadable { source: e },
            })
        }
    };
    let stat = fstat(&file).map_err(|e| ScriptError::ResultUnreadable { source: e.into() })?;
    match Kind::of(&stat) {
        Kind::File => {}
        Kind::Dir => return Err(ScriptError::ResultNotRegular { what: "a folder" }),
        Kind::Other(what) => return Err(ScriptError::ResultNotRegular { what }),
    }
    let size = u64::try_from(stat.st_size).unwrap_or_default();
    if size > RESULT_FILE_MAX_BYTES {
        return Err(ScriptError::ResultTooLarge { size });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or_default());
    file.take(RESULT_FILE_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ScriptError::ResultUnreadable { source })?;
    if bytes.len() as u64 > RESULT_FILE_MAX_BYTES {
        // It grew after it was looked at (something still writes it).
        return Err(ScriptError::ResultTooLarge {
            size: bytes.len() as u64,
        });
    }
    Ok(Some(bytes))
}

/// What an open refused with `O_NOFOLLOW | O_NONBLOCK` was, when the
/// refusal says so (a link, a socket).
fn refused_open(e: &io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(libc::ELOOP) => Some("a symbolic link"),
        Some(libc::ENXIO) => Some("a socket"),
        _ => None,
    }
}

/// What kind of file a `stat` describes.
pub(super) enum Kind {
    File,
    Dir,
    Other(&'static str),
}

impl Kind {
    pub(super) fn of(stat: &FileStat) -> Kind {
        let format = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
        if format == SFlag::S_IFREG {
            Kind::File
        } else if format == SFlag::S_IFDIR {
            Kind::Dir
        } else if format == SFlag::S_IFLNK {
            Kind::Other("a symbolic link")
        } else if format == SFlag::S_IFIFO {
            Kind::Other("a FIFO")
        } else if format == SFlag::S_IFSOCK {
            Kind::Other("a socket")
        } else if format == SFlag::S_IFCHR || format == SFlag::S_IFBLK {
            Kind::Other("a device")
        } else {
            Kind::Other("not a regular file")
        }
    }
}

mod outputs;
pub use outputs::{upload_outputs, Outputs};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_say_what_was_not_stored() {
        let all = Outputs {
            stored: 3,
            found: 3,
            walked: true,
            ..Outputs::default()
        };
        assert_eq!(all.problem("the task was stopped"), None);
        let cut = Outputs {
            stopped: true,
            walked: true,
            stored: 2,
            found: 20,
            ..Outputs::default()
        };
        assert_eq!(
            cut.problem("the task was stopped (SIGTERM)").unwrap(),
            "only 2 of 20 output files (PLUS_OUTPUT_DIR) were stored before the task was stopped (SIGTERM)"
        );
    }
}
