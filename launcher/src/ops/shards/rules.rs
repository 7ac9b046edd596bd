//! The fan-out's pure rules: shard ids, which record is a parent, and the
//! parent's status and progress as its shards say they are.

use plus_jobs::{
    job::{is_terminal, status_name},
    Job, JobStatus, Progress,
};

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

/// When the shards ran: the earliest start and, once every shard ended,
/// the latest end (RFC 3339 UTC timestamps of one format sort as text).
pub fn span(shards: &[Option<Job>]) -> (Option<String>, Option<String>) {
    let found: Vec<&Job> = shards.iter().flatten().collect();
    let first = found
        .iter()
        .map(|j| j.started_at.as_str())
        .filter(|t| !t.is_empty())
        .min()
        .map(str::to_owned);
    let all_ended = found.len() == shards.len() && found.iter().all(|j| !j.completed_at.is_empty());
    let last = all_ended
        .then(|| found.iter().map(|j| j.completed_at.as_str()).max())
        .flatten()
        .map(str::to_owned);
    (first, last)
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
