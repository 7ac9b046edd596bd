//! Why a command stopped, worded for people: one sentence with its causes,
//! each said once.

use plus_jobs::StoreError;

use crate::{
    aws::SetupError,
    http::ServeError,
    ops::{data::DataError, InvalidRequest, LauncherError},
};

/// Why a command stopped, as a sentence for people.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// An operation failed.
    #[error(transparent)]
    Launcher(LauncherError),
    /// A collection or action operation failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A schedule operation failed.
    #[error(transparent)]
    Schedule(#[from] crate::ops::schedules::ScheduleError),
    /// `plus serve` could not serve.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The AWS backend is not set up.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The local backend could not be opened.
    #[error("the local store in {dir} cannot be opened (check that you may write there, or set PLUS_HOME to a folder you can write)")]
    OpenLocal {
        /// Its directory.
        dir: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The local backend's folder cannot be created or used.
    #[error("the local store folder {dir} cannot be created ({source}): set PLUS_HOME (or --home) to a folder you can write, e.g. PLUS_HOME=/tmp/plus")]
    HomeUnusable {
        /// The folder.
        dir: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The local store file is not a SQLite database.
    #[error("the local store {path} is not a SQLite database (damaged, or another file took its name): move it away (mv {path} {path}.bad) and plus starts an empty store, or set PLUS_HOME to another folder")]
    CorruptStore {
        /// The file.
        path: String,
    },
    /// A script to launch could not be read.
    #[error("the script {path} cannot be read: check the path (nothing was launched)")]
    ReadScript {
        /// The path given.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An action's script could not be read.
    #[error("the script {path} cannot be read: {source}: check the path (nothing was stored)")]
    ReadAction {
        /// The path given.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file of items could not be read.
    #[error("{path} cannot be read: {source}: check the path")]
    ReadItems {
        /// The path given.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// Writing the answer failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An answer could not be serialized.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl From<LauncherError> for CliError {
    /// A task size the library refuses is worded with this CLI's flags.
    fn from(e: LauncherError) -> Self {
        match e {
            LauncherError::Invalid(InvalidRequest::Resources(r)) => Self::Usage(r.as_flags()),
            other => Self::Launcher(other),
        }
    }
}

impl From<InvalidRequest> for CliError {
    fn from(e: InvalidRequest) -> Self {
        LauncherError::from(e).into()
    }
}

impl CliError {
    /// What to do about it, when there is one thing to say; `--json`
    /// prints it as `hint`.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::Launcher(LauncherError::NotFound(_)) => {
                "`plus list` shows your jobs; check --user (PLUS_USER) and --backend".into()
            }
            Self::HomeUnusable { .. } | Self::OpenLocal { .. } => {
                "set PLUS_HOME (or --home) to a folder you can write".into()
            }
            Self::CorruptStore { path } => format!("move {path} away, or set PLUS_HOME to another folder"),
            Self::Setup(SetupError::NotConfigured(_)) => {
                "set the variables named (scripts/setup.sh writes them to .env.deploy), or use --backend local".into()
            }
            Self::Schedule(crate::ops::schedules::ScheduleError::NotFound(_)) => {
                "`plus schedule list` shows your schedules; check --user (PLUS_USER) and --backend".into()
            }
            Self::ReadScript { .. } | Self::ReadAction { .. } | Self::ReadItems { .. } => {
                "check the path".into()
            }
            _ => return None,
        })
    }
}

/// Prints why the command stopped on stderr: `plus: ...` for people, or
/// with `json` one object `{"error": "...", "hint": "..." | null}`.
pub fn print_error(err: &CliError, json: bool) {
    if json {
        eprintln!(
            "{}",
            serde_json::json!({ "error": report(err), "hint": err.hint() })
        );
    } else {
        eprintln!("plus: {}", report(err));
    }
}

/// Reports a command line clap could not parse and returns the exit code
/// (2; 0 for `--help` and `--version`). With `--json` among the arguments
/// the error is one JSON object, like every other error.
pub fn parse_failed(err: &clap::Error) -> u8 {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) || !std::env::args().any(|a| a == "--json")
    {
        let _ = err.print();
        return if err.use_stderr() { 2 } else { 0 };
    }
    let rendered = err.render().to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let error = lines
        .next()
        .unwrap_or("the command line cannot be read")
        .trim_start_matches("error: ")
        .to_owned();
    let hint = lines
        .filter(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ");
    let hint = if hint.is_empty() {
        "see `plus --help`".to_owned()
    } else {
        format!("{hint}; see `plus --help`")
    };
    eprintln!("{}", serde_json::json!({ "error": error, "hint": hint }));
    2
}

/// `err` and its causes as one line (`a: b: c`), each said once: a message
/// that already carries its cause's words has worded that cause (and what
/// lies behind it) for people, so the line ends there.
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    plus_jobs::error_chain(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let said_in_the_message = CliError::ReadItems {
            path: "items.jsonl".into(),
            source: io(),
        };
        assert_eq!(
            report(&said_in_the_message),
            "items.jsonl cannot be read: no such file: check the path"
        );
        let said_after = CliError::ReadScript {
            path: "a.sh".into(),
            source: io(),
        };
        assert_eq!(
            report(&said_after),
            "the script a.sh cannot be read: check the path (nothing was launched): no such file"
        );
        let spawn = CliError::from(LauncherError::from(crate::runner::RunnerError::Spawn {
            program: "plus worker".into(),
            source: io(),
        }));
        assert_eq!(report(&spawn), spawn.to_string());
        assert!(spawn.to_string().contains("(plus worker: no such file)"));
    }
}
