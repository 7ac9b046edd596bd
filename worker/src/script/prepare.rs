//! A job's script made ready to run, once per job: its bytes loaded (inline
//! or from the blob store), written into a fresh [`Workspace`], and its
//! [`Program`] resolved. Every mode starts from a [`Prepared`].

use std::path::Path;

use plus_jobs::{blob::BlobStore, Script};

use super::{Program, ScriptError, Workspace};

/// A script ready to run.
#[derive(Debug)]
pub struct Prepared {
    /// The job's directory, with the script file in it.
    pub ws: Workspace,
    /// How to execute the script file.
    pub program: Program,
}

/// Loads `script`, writes it into a fresh workspace under `work_root` and
/// resolves how to run it.
///
/// # Errors
/// [`ScriptError`] naming what to fix (no script, a missing blob, an empty
/// script, a work directory that cannot be made).
pub async fn prepare(
    blobs: &dyn BlobStore,
    script: &Script,
    work_root: &Path,
    job_id: &str,
) -> Result<Prepared, ScriptError> {
    let source = load(blobs, script).await?;
    let ws =
        Workspace::create(work_root, job_id, &source).map_err(|source| ScriptError::Workspace {
            root: work_root.to_owned(),
            source,
        })?;
    let program = Program::resolve(&ws.script, &script.interpreter, &script.args)?;
    Ok(Prepared { ws, program })
}

/// The script's bytes: inline `source`, or the blob at `s3_key`.
async fn load(blobs: &dyn BlobStore, script: &Script) -> Result<Vec<u8>, ScriptError> {
    let bytes = if !script.s3_key.is_empty() {
        match blobs.get_bytes(&script.s3_key).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(ScriptError::Missing {
                    location: blobs.locate(&script.s3_key),
                })
            }
            Err(source) => return Err(ScriptError::Unreadable { source }),
        }
    } else if !script.source.is_empty() {
        script.source.clone().into_bytes()
    } else {
        return Err(ScriptError::NoScript);
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ScriptError::Empty);
    }
    Ok(bytes)
}
