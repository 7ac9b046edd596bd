//! Fan-out: one RUN_COLLECTION job split across N tasks
//! (`plus launch --collection OWNER SCRIPT --shards N`).
//!
//! The parent job is a record only: no worker runs it. Its shards are child
//! jobs `{parent}-s0` .. `{parent}-s{N-1}`, each a full RUN_COLLECTION job
//! with `shard_index`, `shard_count` and `parent_id`, its own task, its own
//! progress, checkpoint, results (`jobs/{shard}/results.jsonl`) and retries.
//! A shard runs one range of item ids (`shard_after`, `shard_until`): the
//! launch reads the collection's first and last id (keys only, two items)
//! and splits the span between them ([`rules::split_ids`]), so each shard
//! reads only its own items and the shards together read the collection
//! once. Shards written before ranges existed run the items whose id hashes
//! to their index (FNV-1a 64 modulo N, see
//! `plus_worker::collection::shard_of`), each reading every item.
//!
//! A fan-out whose shards cannot all be written and started leaves its
//! parent FAILED with the reason (never waiting for shards that do not
//! exist); the shards already started run on.
//!
//! The parent's status is derived from its shards whenever it is read
//! ([`Launcher::aggregate`], called by [`Launcher::status`], hence by `plus
//! status`, following and the HTTP API's job route; polling its events
//! reads only the parent) and written back to the parent record with
//! a conditional write, so a frontend polling the parent sees it too:
//! SUCCEEDED when every shard succeeded; once all shards ended, FAILED if
//! any failed (else CANCELLED); INTERRUPTED while some shard is and none
//! is running; RUNNING as soon as any shard has started. Its progress is the
//! sum of the shards'.

pub mod rules;

use plus_jobs::{
    job::{is_terminal, status_name},
    Expect, Job, JobStatus, RunMode, StoreError, Timestamp,
};

pub use rules::{derive, is_parent, shard_id, MAX_SHARDS};

use super::{Created, InvalidRequest, LaunchRequest, Launcher, LauncherError};
use crate::runner::LocalWorker;

/// A launched fan-out: the parent record and any local worker processes.
#[derive(Debug)]
pub struct LaunchedShards {
    /// The parent job as written.
    pub parent: Job,
    /// Local workers (one per shard) when they run on this machine.
    pub workers: Vec<LocalWorker>,
}

impl Launcher {
    /// Writes the parent and its `count` shards and starts every shard. A
    /// retried launch with the same job id finds the records and starts
    /// nothing twice.
    ///
    /// # Errors
    /// [`LauncherError::Invalid`] before anything is written when the
    /// request is not a collection or `count` is out of range; store and
    /// start errors.
    pub async fn launch_shards(
        &self,
        req: &LaunchRequest,
        count: u32,
    ) -> Result<LaunchedShards, LauncherError> {
        let invalid = |m: String| LauncherError::Invalid(InvalidRequest::Field(m));
        if req.run_mode != RunMode::RunCollection {
            return Err(invalid(
                "--shards splits a collection: use it with --collection OWNER SCRIPT".into(),
            ));
        }
        if !(1..=MAX_SHARDS).contains(&count) {
            return Err(invalid(format!(
                "--shards {count} is out of range: use 1 to {MAX_SHARDS}"
            )));
        }
        if count == 1 {
            let launched = self.launch(req).await?;
            return Ok(LaunchedShards {
                parent: launched.job,
                workers: launched.worker.into_iter().collect(),
            });
        }
        let parent = match self.create(req, |p| p.shard_count = count).await? {
            Created::New(parent) => parent,
            Created::Existing(parent) => {
                return Ok(LaunchedShards {
                    parent,
                    workers: Vec::new(),
                })
            }
        };
        let mut workers = Vec::new();
        match self.start_shards(&parent, count, &mut workers).await {
            Ok(()) => Ok(LaunchedShards { parent, workers }),
            Err((index, e)) => {
                let reason = format!(
                    "shard {} of {count} could not be started ({e}); {} shard(s) before it were started and run on: launch the collection again",
                    index + 1,
                    index,
                );
                self.settle_failed(&parent, &reason).await?;
                Err(e)
            }
        }
    }

    /// Writes and starts the shards of `parent`, each with its range of ids;
    /// the index of the shard that failed, with why.
    async fn start_shards(
        &self,
        parent: &Job,
        count: u32,
        workers: &mut Vec<LocalWorker>,
    ) -> Result<(), (u32, LauncherError)> {
        let bounds = self
            .jobs()
            .owner_id_bounds(&parent.collection_owner)
            .await
            .map_err(|e| (0, e.into()))?;
        let splits = bounds
            .map(|(first, last)| rules::split_ids(&first, &last, count))
            .unwrap_or_default();
        for index in 0..count {
            let i = index as usize;
            let (after, until) = if splits.is_empty() {
                (String::new(), String::new())
            } else {
                let after = i.checked_sub(1).map(|j| splits[j].clone());
                (
                    after.unwrap_or_default(),
                    splits.get(i).cloned().unwrap_or_default(),
                )
            };
            let shard = Job {
                object_id: shard_id(&parent.object_id, index),
                shard_index: index,
                shard_count: count,
                parent_id: parent.object_id.clone(),
                shard_after: after,
                shard_until: until,
                ..parent.clone()
            };
            match self.jobs().create_job(&shard).await {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err((index, e.into())),
            }
            let (_, worker) = self.start(shard).await.map_err(|e| (index, e))?;
            workers.extend(worker);
        }
        Ok(())
    }

    /// The parent's status and progress derived from its shards, written
    /// back to the parent record when they changed. A shard that cannot be
    /// read counts as not started.
    ///
    /// # Errors
    /// Store errors.
    pub async fn aggregate(&self, parent: Job) -> Result<Job, LauncherError> {
        if is_terminal(parent.status()) {
            return Ok(parent);
        }
        let mut shards = Vec::with_capacity(parent.shard_count as usize);
        for index in 0..parent.shard_count {
            let id = shard_id(&parent.object_id, index);
            shards.push(self.jobs().get_job(&id).await.ok().flatten());
        }
        let derived = derive(&parent, &shards);
        let changed = derived.status != parent.status
            || derived.progress != parent.progress
            || derived.error != parent.error;
        if !changed {
            return Ok(parent);
        }
        let now = Timestamp::now().to_string();
        let status = derived.status();
        let (first_start, last_end) = rules::span(&shards);
        let patch = Job {
            status: derived.status,
            progress: derived.progress.clone(),
            error: derived.error.clone(),
            updated_at: now.clone(),
            // The parent ran from its first shard's start to its last
            // shard's end, so its duration is the fan-out's.
            started_at: if parent.started_at.is_empty() && status != JobStatus::Initializing {
                first_start.unwrap_or_else(|| now.clone())
            } else {
                String::new()
            },
            completed_at: if is_terminal(status) {
                last_end.unwrap_or(now)
            } else {
                String::new()
            },
            ..Job::default()
        };
        let expect = Expect::status([parent.status()]);
        match self
            .jobs()
            .update_job(&parent.object_id, &expect, &patch)
            .await
        {
            Ok(job) => {
                if job.status != parent.status {
                    tracing::info!(job_id = %job.object_id, status = status_name(status), "the shards moved the parent job");
                }
                Ok(job)
            }
            // Someone else aggregated first: theirs is as good.
            Err(StoreError::Conflict { .. }) => Ok(self
                .jobs()
                .get_job(&parent.object_id)
                .await?
                .unwrap_or(parent)),
            Err(e) => Err(e.into()),
        }
    }
}
