//! Fan-out: one RUN_COLLECTION job split across N tasks
//! (`plus launch --collection OWNER SCRIPT --shards N`).
//!
//! The parent job is a record only: no worker runs it. Its shards are child
//! jobs `{parent}-s0` .. `{parent}-s{N-1}`, each a full RUN_COLLECTION job
//! with `shard_index`, `shard_count` and `parent_id`, its own task, its own
//! progress, checkpoint, results (`jobs/{shard}/results.jsonl`) and retries.
//! A shard runs the items whose id hashes to its index (FNV-1a 64 modulo N,
//! see `plus_worker::collection::shard_of`): a deterministic partition that
//! needs no coordination.
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

use plus_jobs::{
    job::{is_terminal, status_name},
    Expect, Job, JobStatus, Progress, RunMode, StoreError, Timestamp,
};

use super::{Created, InvalidRequest, LaunchRequest, Launcher, LauncherError};
use crate::runner::LocalWorker;

/// The most shards one job may have.
pub const MAX_SHARDS: u32 = 100;

/// Whether `job` is a fanned-out collection's parent (a record whose
/// status comes from its shards).
pub fn is_parent(job: &Job) -> bool {
    job.shard_count > 1 && job.parent_id.is_empty()
}

/// The id of shard `index` of `parent`.
pub fn shard_id(parent: &str, index: u32) -> String {
    format!("{parent}-s{index}")
}

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
        for index in 0..count {
            let shard = Job {
                object_id: shard_id(&parent.object_id, index),
                shard_index: index,
                shard_count: count,
                parent_id: parent.object_id.clone(),
                ..parent.clone()
            };
            match self.jobs().create_job(&shard).await {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            let (_, worker) = self.start(shard).await?;
            workers.extend(worker);
        }
        Ok(LaunchedShards { parent, workers })
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
        let patch = Job {
            status: derived.status,
            progress: derived.progress.clone(),
            error: derived.error.clone(),
            updated_at: now.clone(),
            started_at: if parent.started_at.is_empty() && status != JobStatus::Initializing {
                now.clone()
            } else {
                String::new()
            },
            completed_at: if is_terminal(status) {
                now
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

/// The parent as its shards say it is (pure; `None` is a shard not found).
pub fn derive(parent: &Job, shards: &[Option<Job>]) -> Job {
    let statuses: Vec<JobStatus> = shards
        .iter()
        .map(|s| s.as_ref().map_or(JobStatus::Initializing, Job::status))
        .collect();
    let count = |s: JobStatus| statuses.iter().filter(|x| **x == s).count();
    let all_ended = statuses.iter().all(|s| is_terminal(*s));
    let name = |i: usize| shard_id(&parent.object_id, i as u32);
    let (status, error) = if count(JobStatus::Succeeded) == statuses.len() {
        (JobStatus::Succeeded, String::new())
    } else if all_ended {
        let failed: Vec<String> = statuses
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != JobStatus::Succeeded)
            .map(|(i, s)| {
                let why = shards[i].as_ref().map(|j| j.error.as_str()).unwrap_or("");
                format!("{} {} ({why})", name(i), status_name(*s))
            })
            .collect();
        let status = if count(JobStatus::Failed) > 0 {
            JobStatus::Failed
        } else {
            JobStatus::Cancelled
        };
        (
            status,
            format!(
                "{} of {} shards did not succeed: {}",
                failed.len(),
                statuses.len(),
                failed.join("; ")
            ),
        )
    } else if count(JobStatus::Interrupted) > 0
        && count(JobStatus::Running) == 0
        && count(JobStatus::Initializing) == 0
    {
        (
            JobStatus::Interrupted,
            "some shards were interrupted: `plus retry SHARD_ID` relaunches each".into(),
        )
    } else if statuses.iter().all(|s| *s == JobStatus::Initializing) {
        (JobStatus::Initializing, String::new())
    } else {
        (JobStatus::Running, String::new())
    };
    let mut progress = Progress::default();
    let mut any = false;
    for p in shards.iter().flatten().filter_map(|j| j.progress.as_ref()) {
        any = true;
        progress.total = progress.total.saturating_add(p.total);
        progress.succeeded = progress.succeeded.saturating_add(p.succeeded);
        progress.failed = progress.failed.saturating_add(p.failed);
    }
    Job {
        status: status as i32,
        error,
        progress: any.then_some(progress),
        ..parent.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(status: JobStatus, ok: u32) -> Option<Job> {
        Some(Job {
            status: status as i32,
            progress: Some(Progress {
                total: 10,
                succeeded: ok,
                ..Progress::default()
            }),
            error: if status == JobStatus::Failed {
                "2 of 10 items failed".into()
            } else {
                String::new()
            },
            ..Job::default()
        })
    }

    #[test]
    fn the_parent_follows_its_shards() {
        use JobStatus::*;
        let parent = Job {
            object_id: "p".into(),
            shard_count: 3,
            ..Job::default()
        };
        let d = derive(&parent, &[None, None, None]);
        assert_eq!(d.status(), Initializing);
        let d = derive(&parent, &[shard(Running, 3), None, shard(Succeeded, 10)]);
        assert_eq!(d.status(), Running);
        assert_eq!(d.progress.as_ref().unwrap().succeeded, 13);
        assert_eq!(d.progress.as_ref().unwrap().total, 20);
        let d = derive(
            &parent,
            &[
                shard(Succeeded, 10),
                shard(Succeeded, 10),
                shard(Succeeded, 10),
            ],
        );
        assert_eq!(d.status(), Succeeded);
        assert_eq!(d.progress.unwrap().succeeded, 30);
        let d = derive(
            &parent,
            &[shard(Succeeded, 10), shard(Failed, 8), shard(Succeeded, 10)],
        );
        assert_eq!(d.status(), Failed);
        assert_eq!(
            d.error,
            "1 of 3 shards did not succeed: p-s1 FAILED (2 of 10 items failed)"
        );
        let d = derive(
            &parent,
            &[
                shard(Succeeded, 10),
                shard(Interrupted, 4),
                shard(Succeeded, 10),
            ],
        );
        assert_eq!(d.status(), Interrupted);
    }
}
