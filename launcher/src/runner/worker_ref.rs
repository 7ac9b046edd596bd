//! Which worker holds a job: the record's `fargate_task_arn`, parsed once.
//!
//! The stored string keeps its three formats (records written by older
//! launchers and by the worker must still read): `local:pid/{pid}` (written
//! by the local runner when it spawns the worker), `local:{host}:{pid}`
//! (written by a local worker when it claims) and an ECS task ARN
//! (`arn:...`). Nothing outside this file looks at the prefixes.

use std::fmt;

/// The worker of a job, as its record names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerRef {
    /// No worker recorded yet.
    None,
    /// A worker process on a machine: `host` when the worker wrote it
    /// (`local:{host}:{pid}`), `None` when the local runner did
    /// (`local:pid/{pid}`, always this machine).
    Local {
        /// The machine it runs on, when known.
        host: Option<String>,
        /// Its process id.
        pid: String,
    },
    /// An ECS task.
    Ecs {
        /// The task's ARN.
        task_arn: String,
    },
    /// Something this launcher does not know how to reach; kept as written.
    Other(String),
}

impl WorkerRef {
    /// Reads a record's `fargate_task_arn`.
    pub fn parse(s: &str) -> Self {
        if s.is_empty() {
            return Self::None;
        }
        if s.starts_with("arn:") {
            return Self::Ecs {
                task_arn: s.to_owned(),
            };
        }
        if let Some(pid) = s.strip_prefix("local:pid/") {
            return Self::Local {
                host: None,
                pid: pid.to_owned(),
            };
        }
        if let Some((host, pid)) = s.strip_prefix("local:").and_then(|r| r.rsplit_once(':')) {
            return Self::Local {
                host: Some(host.to_owned()),
                pid: pid.to_owned(),
            };
        }
        Self::Other(s.to_owned())
    }

    /// A worker process this launcher spawned on this machine.
    pub fn local_pid(pid: u32) -> Self {
        Self::Local {
            host: None,
            pid: pid.to_string(),
        }
    }
}

impl fmt::Display for WorkerRef {
    /// The stored form (what [`WorkerRef::parse`] reads back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => Ok(()),
            Self::Local { host: None, pid } => write!(f, "local:pid/{pid}"),
            Self::Local {
                host: Some(host),
                pid,
            } => write!(f, "local:{host}:{pid}"),
            Self::Ecs { task_arn } => f.write_str(task_arn),
            Self::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_format_reads_back_unchanged() {
        for s in [
            "",
            "local:pid/42",
            "local:box-1:42",
            "arn:aws:ecs:us-east-1:123:task/c/abc",
            "something-else",
        ] {
            assert_eq!(WorkerRef::parse(s).to_string(), s);
        }
        assert_eq!(
            WorkerRef::parse("local:box-1:42"),
            WorkerRef::Local {
                host: Some("box-1".into()),
                pid: "42".into()
            }
        );
        assert_eq!(WorkerRef::local_pid(7).to_string(), "local:pid/7");
    }
}
