//! [`ScriptError`]: everything that can go wrong between a job's script
//! record and a finished process, each a sentence for the job's `error`
//! that keeps its cause.

use std::{io, path::PathBuf};

use plus_jobs::blob::BlobError;

use super::artifacts::{INLINE_RESULT_BYTES, RESULT_FILE_MAX_BYTES};

/// Why a script could not be prepared, started or its result read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// The job has neither `script.source` nor `script.s3_key`.
    #[error("the job has no script: set script.source (inline text) or script.s3_key")]
    NoScript,
    /// `script.s3_key` names no blob.
    #[error("the script {location} does not exist: upload it, or fix script.s3_key")]
    Missing {
        /// Where it was looked for (`s3://bucket/key` or a local path).
        location: String,
    },
    /// The blob store failed reading the script.
    #[error("the script could not be read: {source}")]
    Unreadable {
        /// The store's error.
        #[source]
        source: BlobError,
    },
    /// The script is empty or only whitespace.
    #[error("the script is empty: there is nothing to run")]
    Empty,
    /// The job's fresh directory could not be made.
    #[error("the job's working directory could not be made under {}: {source}", .root.display())]
    Workspace {
        /// `PLUS_WORK_DIR`.
        root: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The script file could not be read back to look for a shebang.
    #[error("the script file could not be read: {source}")]
    ScriptFile {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The process could not be started; the sentence says what to fix.
    #[error("{sentence}")]
    Start {
        /// What to fix, naming the program.
        sentence: String,
        /// The spawn error.
        #[source]
        source: io::Error,
    },
    /// The pipe for a small stdin could not be made or written.
    #[error("the script's stdin could not be {doing}: {source}")]
    Stdin {
        /// `made` or `written`.
        doing: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// PLUS_RESULT_FILE exists but could not be read.
    #[error("PLUS_RESULT_FILE could not be read: {source}")]
    ResultUnreadable {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// PLUS_RESULT_FILE is not a regular file (a symbolic link, a FIFO, a
    /// device, a folder): it is never followed or read.
    #[error("PLUS_RESULT_FILE is {what}, not a regular file: write the JSON result into the file itself")]
    ResultNotRegular {
        /// What it is ("a symbolic link", "a FIFO", ...).
        what: &'static str,
    },
    /// PLUS_RESULT_FILE is larger than [`RESULT_FILE_MAX_BYTES`].
    #[error("PLUS_RESULT_FILE is {} bytes, more than the {} MiB a result may be: write a small JSON summary there and put large data in PLUS_OUTPUT_DIR", .size, RESULT_FILE_MAX_BYTES / (1024 * 1024))]
    ResultTooLarge {
        /// Its size in bytes.
        size: u64,
    },
    /// The task was stopped (SIGTERM) before the result was stored.
    #[error("the result in PLUS_RESULT_FILE was not stored before the task was stopped")]
    ResultCutShort,
    /// PLUS_RESULT_FILE is not one JSON document.
    #[error("the script left invalid JSON in PLUS_RESULT_FILE ({source}): write one JSON document, or nothing")]
    ResultInvalid {
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A result kept beside the record (too large for it, or holding
    /// numbers DynamoDB cannot keep) could not be stored there.
    #[error("the result in PLUS_RESULT_FILE is kept beside the job's record (over {INLINE_RESULT_BYTES} bytes, or numbers DynamoDB cannot keep) and could not be stored there: {source}")]
    ResultNotStored {
        /// The store's error.
        #[source]
        source: BlobError,
    },
}

impl ScriptError {
    /// Whether the same step may succeed when tried again (a store that
    /// could not be reached); everything else is the job's or the image's
    /// to fix.
    pub fn is_transient(&self) -> bool {
        match self {
            ScriptError::Unreadable { source } | ScriptError::ResultNotStored { source } => {
                source.is_transient()
            }
            _ => false,
        }
    }
}
