//! A job's fresh directory on local disk. When scripts run as another user
//! ([`isolation::script_user`]), everything in it is that user's: the
//! folder itself (the script may replace its result file), the script
//! file, the working, output and temporary directories. The worker keeps
//! none of its own files in it.

use super::isolation;
use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

/// A job's fresh directory: the script file, the working directory, the
/// output directory and the result file, removed when dropped; and beside
/// it, out of the script's tree, a 0700 directory for the worker's own
/// files.
#[derive(Debug)]
pub struct Workspace {
    _root: tempfile::TempDir,
    _private: tempfile::TempDir,
    /// The worker's own directory for this job (0700, the worker's, outside
    /// the script's folder): files the worker writes and reads back.
    pub private: PathBuf,
    /// The script file.
    pub script: PathBuf,
    /// The script's working directory (also its HOME).
    pub work: PathBuf,
    /// PLUS_OUTPUT_DIR.
    pub output: PathBuf,
    /// PLUS_RESULT_FILE.
    pub result: PathBuf,
    /// TMPDIR.
    pub tmp: PathBuf,
}

impl Workspace {
    /// Makes a fresh workspace under `root` and writes the script into it.
    ///
    /// # Errors
    /// When the directory or file cannot be made.
    pub fn create(root: &Path, job_id: &str, script: &[u8]) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        isolation::make_reachable(root)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("plus-{job_id}-"))
            .tempdir_in(root)?;
        let private = tempfile::Builder::new()
            .prefix(&format!(".plus-worker-{job_id}-"))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(root)?;
        let base = dir.path().to_owned();
        let ws = Self {
            private: private.path().to_owned(),
            _private: private,
            script: base.join("script"),
            work: base.join("work"),
            output: base.join("output"),
            result: base.join("result.json"),
            tmp: base.join("tmp"),
            _root: dir,
        };
        for d in [&ws.work, &ws.output, &ws.tmp] {
            std::fs::create_dir(d)?;
        }
        std::fs::write(&ws.script, script)?;
        std::fs::set_permissions(&ws.script, std::fs::Permissions::from_mode(0o700))?;
        for path in [&base, &ws.script, &ws.work, &ws.output, &ws.tmp] {
            isolation::hand_over(path)?;
        }
        Ok(ws)
    }
}
