//! The local backend's runner: the worker as a child process with exactly
//! the environment a Fargate task would get (plus `PLUS_LOCAL_DIR`, which
//! points it at the embedded store instead of DynamoDB and S3).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use plus_jobs::Job;
use tokio::process::{Child, Command};

/// The table, stream table and bucket names the local backend uses.
pub const LOCAL_TABLE: &str = "plus-jobs";
/// See [`LOCAL_TABLE`].
pub const LOCAL_STREAMS_TABLE: &str = "plus-job-streams";
/// See [`LOCAL_TABLE`].
pub const LOCAL_BUCKET: &str = "plus-primary";

/// Starts workers on this machine.
#[derive(Clone, Debug)]
pub struct LocalRunner {
    /// The local directory (store file, blobs, worker logs).
    pub dir: PathBuf,
    /// The worker program and its leading arguments.
    pub worker: Vec<String>,
    /// Extra variables for the worker (tuning knobs such as
    /// `PLUS_HEARTBEAT_SECONDS`), taken from this process's `PLUS_*`
    /// variables.
    pub tuning: Vec<(String, String)>,
}

impl LocalRunner {
    /// A runner for `dir`. The worker is `PLUS_WORKER_BIN` when set, else
    /// this very program run as `plus worker` (the same code as the
    /// `plus-worker` binary).
    pub fn new(dir: PathBuf) -> Self {
        let worker = match std::env::var("PLUS_WORKER_BIN") {
            Ok(bin) if !bin.is_empty() => vec![bin],
            _ => vec![
                std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "plus".into()),
                "worker".into(),
            ],
        };
        let tuning = std::env::vars()
            .filter(|(k, _)| {
                k.starts_with("PLUS_")
                    && !matches!(
                        k.as_str(),
                        "PLUS_WORKER_BIN" | "PLUS_HOME" | "PLUS_USER" | "PLUS_LOCAL_DIR"
                    )
            })
            .chain(std::env::vars().filter(|(k, _)| k == "RUST_LOG"))
            .collect();
        Self {
            dir,
            worker,
            tuning,
        }
    }

    /// The worker's environment for `job`: the container contract of
    /// DESIGN.md. Nothing else of this process's environment is passed on.
    pub fn env_for(&self, job: &Job) -> Vec<(String, String)> {
        let base = [
            ("REGION", "local".to_owned()),
            ("DYNAMO_TABLE", LOCAL_TABLE.to_owned()),
            ("DYNAMO_STREAMS_TABLE", LOCAL_STREAMS_TABLE.to_owned()),
            ("PRIMARY_BUCKET", LOCAL_BUCKET.to_owned()),
            ("PLUS_LOCAL_DIR", self.dir.display().to_string()),
            (
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        let mut env = crate::launch::worker_env(job, &base);
        env.extend(self.tuning.iter().cloned());
        env
    }

    /// The worker's own log (its JSON lines), like a task's CloudWatch stream.
    pub fn worker_log(&self, job_id: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{job_id}.worker.jsonl"))
    }

    /// Starts a worker for `job`. With `detach`, it runs in its own process
    /// group and outlives this process; otherwise Ctrl-C reaches it too and
    /// it saves the job as INTERRUPTED.
    ///
    /// # Errors
    /// When the worker program cannot be started.
    pub fn start(&self, job: &Job, detach: bool) -> std::io::Result<Child> {
        let log = self.worker_log(&job.object_id);
        std::fs::create_dir_all(log.parent().unwrap_or(Path::new(".")))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut cmd = Command::new(&self.worker[0]);
        cmd.args(&self.worker[1..])
            .env_clear()
            .envs(self.env_for(job))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if detach {
            cmd.process_group(0);
        }
        cmd.spawn()
    }
}
