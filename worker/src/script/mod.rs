//! A job's script as a process, per the script contract of DESIGN.md.
//!
//! - [`prepare`](mod@prepare): load the script (inline or from the blob store), write it
//!   into a fresh [`Workspace`], resolve its [`Program`]: once per job.
//! - [`process`]: start it ([`start`], [`start_piped`] for streaming),
//!   supervise it ([`run_until`]), stop it ([`Running::stop`]).
//! - [`artifacts`]: what it leaves: the result file (large ones offloaded)
//!   and the output files (uploaded).
//! - [`workspace`], [`program`]: its directory and how it is executed.
//! - [`isolation`]: what keeps the script away from the worker (its user,
//!   non-dumpable, the subreaper) and reaps whatever it leaves running.
//!
//! This layer takes plain arguments (a blob store, paths, an output sender,
//! a stop future): it knows nothing of job records or modes.

pub mod artifacts;
mod error;
pub mod isolation;
pub mod prepare;
pub mod process;
pub mod program;
pub mod workspace;

pub use artifacts::{
    offload_result, read_result, upload_outputs, Outputs, INLINE_RESULT_BYTES,
    RESULT_FILE_MAX_BYTES,
};
pub use error::ScriptError;
pub use prepare::{prepare, Prepared};
pub use process::{run_until, start, start_piped, Exit, Launch, Running, SMALL_STDIN};
pub use program::Program;
pub use workspace::Workspace;
