//! The files a script left in PLUS_OUTPUT_DIR: walked without following a
//! link, uploaded a bounded number at a time until all are stored or a stop
//! cuts the upload short.

use std::{
    collections::VecDeque,
    fs::File,
    future::Future,
    io,
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
    sys::stat::{fstat, fstatat, Mode},
};
use plus_jobs::blob::{self, BlobError, BlobStore};
use tokio::task::JoinSet;
use tracing::warn;

use super::Workspace;

use super::{Kind, COUNT_FOR, MAX_DEPTH, OUTPUT_FILE_MAX_BYTES, UPLOADS_IN_FLIGHT};

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
