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
    collections::VecDeque,
    fs::File,
    future::Future,
    io::{self, Read},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::fs::OpenOptionsExt,
    },
    path::{Path, PathBuf},
    sync::Arc,
};

use backon::{ExponentialBuilder, Retryable};
use nix::{
    dir::{Dir, OwningIter},
    fcntl::{openat, AtFlags, OFlag},
    libc,
    sys::stat::{fstat, fstatat, FileStat, Mode, SFlag},
};
use plus_jobs::blob::{self, BlobError, BlobStore};
use serde_json::Value;
use tokio::task::JoinSet;
use tracing::warn;

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
enum Kind {
    File,
    Dir,
    Other(&'static str),
}

impl Kind {
    fn of(stat: &FileStat) -> Kind {
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

/// What became of the files in PLUS_OUTPUT_DIR.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// Files stored.
    pub stored: u64,
    /// Entries found (files, and what could not be stored); all of them
    /// unless the upload was stopped before the walk ended.
    pub found: u64,
    /// Whether the whole folder was walked.
    pub walked: bool,
    /// Entries that could not be stored.
    pub failed: u64,
    /// Why the first of them was not stored, naming it.
    pub first_problem: Option<String>,
    /// Whether a stop (SIGTERM, cancel) cut the upload short.
    pub stopped: bool,
}

impl Outputs {
    /// Whether everything in PLUS_OUTPUT_DIR was stored.
    pub fn complete(&self) -> bool {
        self.walked && !self.stopped && self.failed == 0 && self.first_problem.is_none()
    }

    /// What was not stored, as a sentence (`None` when all was); `stop`
    /// says what cut the upload short, if something did ("the task was
    /// stopped (SIGTERM)").
    pub fn problem(&self, stop: &str) -> Option<String> {
        if self.complete() {
            return None;
        }
        let of = if self.walked {
            format!("{} of {}", self.stored, self.found)
        } else {
            format!("{} of at least {}", self.stored, self.found)
        };
        let mut sentence = if self.stopped {
            format!("only {of} output files (PLUS_OUTPUT_DIR) were stored before {stop}")
        } else if self.found == 0 {
            String::new()
        } else {
            format!(
                "{} of {} output files (PLUS_OUTPUT_DIR) could not be stored",
                self.failed, self.found
            )
        };
        if let Some(first) = &self.first_problem {
            if !sentence.is_empty() {
                sentence.push_str(": ");
            }
            sentence.push_str(first);
        }
        Some(sentence)
    }
}

/// One entry of PLUS_OUTPUT_DIR the walk found.
enum Found {
    /// A regular file to upload, open, with its path relative to
    /// PLUS_OUTPUT_DIR.
    File { rel: String, file: File },
    /// Something that is not stored, and why (a sentence naming it).
    Problem(String),
}

/// The files the script left in PLUS_OUTPUT_DIR, uploaded
/// [`UPLOADS_IN_FLIGHT`] at a time under `jobs/{id}/output/` until all are
/// stored or `stop` completes (the uploads in flight are then abandoned).
/// Links, FIFOs, devices and files over [`OUTPUT_FILE_MAX_BYTES`] are never
/// read: they are counted as not stored, each named.
pub async fn upload_outputs(
    blobs: Arc<dyn BlobStore>,
    job_id: &str,
    ws: &Workspace,
    stop: impl Future<Output = ()>,
) -> Outputs {
    let prefix = blob::output_prefix(job_id);
    let mut outputs = Outputs::default();
    let root = ws.output.clone();
    let mut walker = match tokio::task::spawn_blocking(move || Walker::open(&root)).await {
        Ok(Ok(walker)) => walker,
        Ok(Err(problem)) => {
            outputs.walked = true;
            outputs.first_problem = Some(problem);
            return outputs;
        }
        Err(e) => {
            outputs.first_problem = Some(format!("PLUS_OUTPUT_DIR could not be read: {e}"));
            return outputs;
        }
    };
    let mut queue = VecDeque::new();
    let mut uploads = JoinSet::new();
    tokio::pin!(stop);
    loop {
        while uploads.len() < UPLOADS_IN_FLIGHT {
            if queue.is_empty() {
                let Some(mut w) = walker.take() else { break };
                let Ok((w, batch)) = tokio::task::spawn_blocking(move || {
                    let batch = w.next_batch(UPLOADS_IN_FLIGHT * 4);
                    (w, batch)
                })
                .await
                else {
                    break;
                };
                if !w.done() {
                    walker = Some(w);
                }
                queue.extend(batch);
                continue;
            }
            let Some(found) = queue.pop_front() else {
                break;
            };
            outputs.found += 1;
            match found {
                Found::File { rel, file } => {
                    let (blobs, key) = (blobs.clone(), format!("{prefix}{rel}"));
                    uploads.spawn(async move {
                        let stored = upload(blobs.as_ref(), &key, &file).await;
                        (rel, stored)
                    });
                }
                Found::Problem(why) => {
                    warn!(problem = %why, "an output file is not stored");
                    outputs.failed += 1;
                    outputs.first_problem.get_or_insert(why);
                }
            }
        }
        if uploads.is_empty() && queue.is_empty() && walker.is_none() {
            outputs.walked = true;
            return outputs;
        }
        tokio::select! {
            biased;
            () = &mut stop => {
                uploads.abort_all();
                outputs.stopped = true;
                outputs.found += queue.len() as u64;
                outputs.walked = true;
                // How many there were, if the rest of the walk is quick.
                if let Some(mut w) = walker.take() {
                    let until = std::time::Instant::now() + COUNT_FOR;
                    let counted = tokio::task::spawn_blocking(move || w.count_rest(until)).await;
                    match counted {
                        Ok((n, walked)) => {
                            outputs.found += n;
                            outputs.walked = walked;
                        }
                        Err(_) => outputs.walked = false,
                    }
                }
                return outputs;
            }
            Some(done) = uploads.join_next() => match done {
                Ok((_, Ok(()))) => outputs.stored += 1,
                Ok((rel, Err(e))) => {
                    warn!(error = %e, file = %rel, "an output file could not be stored");
                    outputs.failed += 1;
                    outputs
                        .first_problem
                        .get_or_insert(format!("PLUS_OUTPUT_DIR/{rel} could not be stored: {e}"));
                }
                Err(e) => {
                    outputs.failed += 1;
                    outputs
                        .first_problem
                        .get_or_insert(format!("an output file could not be stored: {e}"));
                }
            },
        }
    }
}

/// Stores the open `file` at `key`, retrying what may pass.
async fn upload(blobs: &dyn BlobStore, key: &str, file: &File) -> Result<(), BlobError> {
    // The very file that was checked, whatever its path names now.
    let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let put = || async { blobs.put_file(key, &path, "application/octet-stream").await };
    put.retry(ExponentialBuilder::default().with_jitter())
        .when(BlobError::is_transient)
        .await
}

/// A walk of PLUS_OUTPUT_DIR that never follows a link: every entry is
/// looked at with `fstatat(AT_SYMLINK_NOFOLLOW)` and opened with
/// `openat(O_NOFOLLOW)` from its folder's descriptor.
struct Walker {
    stack: Vec<Level>,
}

/// One folder being read.
struct Level {
    fd: OwnedFd,
    entries: OwningIter,
    /// Its path relative to PLUS_OUTPUT_DIR, ending in `/` (empty for the
    /// root).
    rel: String,
}

impl Level {
    fn new(fd: OwnedFd, rel: String) -> io::Result<Level> {
        let entries = Dir::from_fd(fd.try_clone()?)?.into_iter();
        Ok(Level { fd, entries, rel })
    }
}

const OPEN: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_NONBLOCK)
    .union(OFlag::O_CLOEXEC);

impl Walker {
    /// Opens PLUS_OUTPUT_DIR itself, which must be a real folder (no
    /// walker when it is gone: the script left no outputs).
    ///
    /// # Errors
    /// A sentence when it is a link or anything but a folder.
    fn open(root: &Path) -> Result<Option<Walker>, String> {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_DIRECTORY)
            .open(root);
        let fd = match opened {
            Ok(file) => OwnedFd::from(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                let what = match e.raw_os_error() {
                    Some(libc::ELOOP | libc::ENOTDIR) => match std::fs::symlink_metadata(root) {
                        Ok(m) if m.file_type().is_symlink() => "a symbolic link",
                        _ => "not a folder",
                    },
                    _ => return Err(format!("PLUS_OUTPUT_DIR could not be read: {e}")),
                };
                return Err(format!(
                    "PLUS_OUTPUT_DIR is {what}, not the folder the job was given, so nothing in it was stored: write output files into the folder, do not replace it"
                ));
            }
        };
        match Level::new(fd, String::new()) {
            Ok(level) => Ok(Some(Walker { stack: vec![level] })),
            Err(e) => Err(format!("PLUS_OUTPUT_DIR could not be read: {e}")),
        }
    }

    fn done(&self) -> bool {
        self.stack.is_empty()
    }

    /// Counts what is left to find, until `until`; whether it got to the
    /// end.
    fn count_rest(&mut self, until: std::time::Instant) -> (u64, bool) {
        let mut n = 0;
        while std::time::Instant::now() < until {
            if self.next().is_none() {
                return (n, true);
            }
            n += 1;
        }
        (n, false)
    }

    fn next_batch(&mut self, n: usize) -> Vec<Found> {
        std::iter::from_fn(|| self.next()).take(n).collect()
    }

    fn next(&mut self) -> Option<Found> {
        loop {
            let depth = self.stack.len();
            let level = self.stack.last_mut()?;
            let entry = match level.entries.next() {
                None => {
                    self.stack.pop();
                    continue;
                }
                Some(Err(e)) => {
                    let rel = level.rel.clone();
                    self.stack.pop();
                    return Some(Found::Problem(format!(
                        "the folder PLUS_OUTPUT_DIR/{rel} could not be read to the end: {e}"
                    )));
                }
                Some(Ok(entry)) => entry,
            };
            let name = entry.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            let Ok(text) = name.to_str() else {
                return Some(Found::Problem(format!(
                    "PLUS_OUTPUT_DIR/{}{} has a name that is not UTF-8, which S3 keys must be: rename it",
                    level.rel,
                    name.to_string_lossy()
                )));
            };
            let rel = format!("{}{text}", level.rel);
            let problem =
                |why: String| Some(Found::Problem(format!("PLUS_OUTPUT_DIR/{rel} {why}")));
            let stat = match fstatat(&level.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => return problem(format!("could not be read: {e}")),
            };
            match Kind::of(&stat) {
                Kind::Dir if depth >= MAX_DEPTH => {
                    return problem(format!(
                        "is nested deeper than {MAX_DEPTH} folders: it was not walked"
                    ));
                }
                Kind::Dir => {
                    let opened = openat(&level.fd, name, OPEN | OFlag::O_DIRECTORY, Mode::empty())
                        .map_err(io::Error::from)
                        .and_then(|fd| Level::new(fd, format!("{rel}/")));
                    match opened {
                        Ok(next) => self.stack.push(next),
                        Err(e) => return problem(format!("could not be read: {e}")),
                    }
                }
                Kind::File => {
                    let file = match openat(&level.fd, name, OPEN, Mode::empty()) {
                        Ok(fd) => File::from(fd),
                        Err(e) => return problem(format!("could not be opened: {e}")),
                    };
                    // The same check on what was opened: it may have been
                    // swapped for something else in between.
                    let stat = match fstat(&file) {
                        Ok(stat) => stat,
                        Err(e) => return problem(format!("could not be read: {e}")),
                    };
                    if !matches!(Kind::of(&stat), Kind::File) {
                        return problem("changed while it was being stored".to_owned());
                    }
                    let size = u64::try_from(stat.st_size).unwrap_or_default();
                    if size > OUTPUT_FILE_MAX_BYTES {
                        return problem(format!(
                            "is {size} bytes, more than the {} GiB an output file may be",
                            OUTPUT_FILE_MAX_BYTES >> 30
                        ));
                    }
                    return Some(Found::File { rel, file });
                }
                Kind::Other(what) => {
                    return problem(format!(
                        "is {what}: outputs are only regular files inside PLUS_OUTPUT_DIR (copy the file there instead of linking to it)"
                    ));
                }
            }
        }
    }
}

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
