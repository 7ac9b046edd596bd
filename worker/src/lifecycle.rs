//! One job's life in the worker: claim -> watchers -> mode -> record.
//!
//! [`execute`] takes an opened backend, the lease (task ARN) and the
//! shutdown token, and returns an [`Outcome`], so tests drive one job
//! without a process. The binary maps the outcome to the exit code.

use std::sync::Arc;

use plus_jobs::Backend;
use tokio_util::sync::CancellationToken;
use tracing::{info, Instrument};

use crate::{
    config::Config,
    job::{self, JobContext, Watchers},
    modes,
    outcome::Outcome,
};

/// Runs the job named in `config` on `backend`, holding `lease`, until it
/// ends or `shutdown` fires (SIGTERM: the job is saved as INTERRUPTED).
pub async fn execute(
    config: Config,
    backend: Backend,
    lease: String,
    shutdown: CancellationToken,
) -> Outcome {
    let span = tracing::info_span!("job", job_id = %config.job_id, lease = %lease);
    run(Arc::new(config), backend, lease, shutdown)
        .instrument(span)
        .await
}

async fn run(
    config: Arc<Config>,
    backend: Backend,
    lease: String,
    shutdown: CancellationToken,
) -> Outcome {
    let job = match job::claim(&config, &backend.jobs, &lease).await {
        Ok(job) => job,
        Err(refused) => return refused.into(),
    };
    info!(attempt = job.attempt.unwrap_or(1), "claimed the job");
    let (ctx, collector) = JobContext::open(config, &backend, job, lease).await;

    let watchers = Watchers::spawn(&ctx, shutdown);
    let ending = job::ending::with_retry_rules(&ctx, modes::run(&ctx).await);
    watchers.stop();

    // Every script's readers are done (the modes wait for them): close the
    // collector and wait for the log file to be complete.
    let (log_ok, log_path) = collector.close().await;
    job::record(&ctx, ending, log_ok, &log_path).await
}
