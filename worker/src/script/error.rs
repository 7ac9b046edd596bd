//! [`ScriptError`]: everything that can go wrong between a job's script
//! record and a finished process, each a sentence for the job's `error`
//! that keeps its cause.

use std::{io, path::PathBuf};

use plus_jobs::blob::BlobError;

use super::artifacts::INLINE_RESULT_BYTES;

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
    /// PLUS_RESULT_FILE is not one JSON document.
    #[error("the script left invalid JSON in PLUS_RESULT_FILE ({source}): write one JSON document, or nothing")]
    ResultInvalid {
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A result too large for the record could not be stored beside it.
    #[error(
        "the result is larger than {INLINE_RESULT_BYTES} bytes and could not be stored: {source}"
    )]
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
