//! The cause an error carries: the sentence a person reads and, when the
//! failure came from a library (the AWS SDK, SQLite, the file system), that
//! library's own error as the [`std::error::Error::source`], so a program
//! can still inspect it. [`error_chain`] says each cause once.

use std::{error::Error, fmt};

/// A boxed library error.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// A sentence that says what failed and what to do, with the library error
/// behind it when there is one.
#[derive(Debug)]
pub struct Cause {
    message: String,
    source: Option<BoxError>,
}

impl Cause {
    /// A cause with `message` and the library error `source`.
    pub fn new(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The sentence.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self {
            message,
            source: None,
        }
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

/// An error with its causes, one after the other (`a: b: c`), each said
/// once: a message that already carries its cause's words has worded that
/// cause (and what lies behind it) for people, so the line ends there. The
/// one formatter every message that wraps another error uses.
pub fn error_chain(err: &dyn Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if line.contains(&said) {
            break;
        }
        line.push_str(": ");
        line.push_str(&said);
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_keeps_the_library_error_and_is_said_once() {
        let io = std::io::Error::other("connection refused");
        let cause = Cause::new("GetItem on jobs: connection refused", io);
        assert_eq!(cause.to_string(), "GetItem on jobs: connection refused");
        assert!(cause
            .source()
            .and_then(|e| e.downcast_ref::<std::io::Error>())
            .is_some());
        assert_eq!(error_chain(&cause), "GetItem on jobs: connection refused");
        let cause = Cause::new("GetItem on jobs", std::io::Error::other("timed out"));
        assert_eq!(error_chain(&cause), "GetItem on jobs: timed out");
    }
}
