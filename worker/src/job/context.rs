//! [`JobContext`]: what one claimed job's work needs, shared by the modes,
//! and the environment its scripts see.

use std::{path::Path, sync::Arc};

use plus_jobs::{blob::BlobStore, job::run_mode_name, Backend, Job, JobStore};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::warn;

use super::{secrets::ResolvedSecrets, Control};
use crate::{
    config::Config,
    output::{Collector, EventSink, Mask, Piece, ProgressCell},
    script::Workspace,
};

/// What one job run needs, shared by the modes.
#[derive(Clone, Debug)]
pub struct JobContext {
    /// The configuration.
    pub config: Arc<Config>,
    /// The job store.
    pub jobs: Arc<dyn JobStore>,
    /// The blob store.
    pub blobs: Arc<dyn BlobStore>,
    /// The job as claimed.
    pub job: Arc<Job>,
    /// The lease this worker holds (its task ARN).
    pub lease: String,
    /// The job's event stream.
    pub events: EventSink,
    /// Stops the work.
    pub control: Control,
    /// Sends output pieces to the log collector.
    pub output: mpsc::Sender<Piece>,
    /// The job's progress, written with the heartbeat and the final write.
    pub progress: ProgressCell,
    /// The backend's AWS SDK configuration (none on the local backend):
    /// what reads the job's secrets.
    pub sdk: Option<aws_config::SdkConfig>,
    /// The job's resolved secrets, added to every script's environment.
    pub secrets: ResolvedSecrets,
    /// Their values, masked in the script's output and result.
    pub mask: Mask,
}

impl JobContext {
    /// The context of the claimed `job`: its event stream (which shows it
    /// RUNNING), a fresh [`Control`], and the log collector its scripts'
    /// output goes to (under `PLUS_WORK_DIR`).
    pub async fn open(
        config: Arc<Config>,
        backend: &Backend,
        job: Job,
        lease: String,
    ) -> (JobContext, Collector) {
        let events = EventSink::new(
            backend.jobs.clone(),
            &job.object_id,
            config.event_ttl_days,
            config.stream_max_bytes,
        );
        events.event(plus_jobs::EventKind::Status, "RUNNING");
        if let Err(e) = tokio::fs::create_dir_all(&config.work_root).await {
            warn!(error = %e, dir = %config.work_root.display(), "the work directory cannot be made");
        }
        let log_path = config.work_root.join(format!(
            ".plus-log-{}-{}",
            job.object_id,
            std::process::id()
        ));
        let mask = Mask::default();
        let (collector, output) = Collector::spawn(log_path, events.clone(), mask.clone());
        let ctx = JobContext {
            config,
            jobs: backend.jobs.clone(),
            blobs: backend.blobs.clone(),
            job: Arc::new(job),
            lease,
            events,
            control: Control::default(),
            output,
            progress: ProgressCell::default(),
            sdk: backend.sdk.clone(),
            secrets: ResolvedSecrets::default(),
            mask,
        };
        (ctx, collector)
    }

    /// The environment a script sees: a minimal base plus the PLUS_*
    /// variables and the job's resolved secrets. Never the worker's
    /// credentials.
    pub fn script_env(&self, ws: &Workspace, params: &Value, cwd: &Path) -> Vec<(String, String)> {
        let job = &self.job;
        let mut env = vec![
            ("PATH".into(), self.config.script_path.clone()),
            ("HOME".into(), cwd.display().to_string()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TMPDIR".into(), ws.tmp.display().to_string()),
            ("PLUS_JOB_ID".into(), job.object_id.clone()),
            ("PLUS_RUN_MODE".into(), run_mode_name(job.run_mode()).into()),
            ("PLUS_USERNAME".into(), job.username.clone()),
            ("PLUS_ATTEMPT".into(), job.attempt.unwrap_or(1).to_string()),
            ("PLUS_PARAMS".into(), params.to_string()),
            ("PLUS_OUTPUT_DIR".into(), ws.output.display().to_string()),
            ("PLUS_RESULT_FILE".into(), ws.result.display().to_string()),
        ];
        env.extend(self.secrets.vars().iter().cloned());
        env
    }

    /// The job's own params as JSON (PLUS_PARAMS, before an action's
    /// defaults are merged under them).
    pub fn params(&self) -> Value {
        struct_to_json(self.job.params.as_ref())
    }
}

/// A params map (a protobuf Struct) as a JSON object.
pub fn struct_to_json(s: Option<&plus_proto::pbjson_types::Struct>) -> Value {
    let mut v = s
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| Value::Object(Default::default()));
    plus_jobs::job::normalize_numbers(&mut v);
    v
}
