//! What a job shows: its attempts and their logs, its output files, its
//! per-item results and, for a sharded parent, its shards. Read-only; the
//! CLI (`plus logs`, `plus outputs`, `plus results`, `plus status`) and the
//! HTTP API (`/jobs/{id}/log`, `/outputs`, `/results`) are faces over it.
//!
//! Where an attempt's log is: the attempt's own `log_key` in `attempts`;
//! for the attempt still on the record, the record's `log_key`; failing
//! both, attempt 1's is `jobs/{id}/log.txt` and attempt N's
//! `jobs/{id}/attempts/{N}/log.txt`.

use plus_jobs::{blob, job::status_name, Job, JobStatus};
use plus_proto::Attempt;

use super::{shards::rules::is_parent, shards::rules::shard_id, Launcher, LauncherError};
use crate::ops::InvalidRequest;

/// One output file of a job.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OutputFile {
    /// Its name under the job's output folder (may contain `/`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One attempt's log.
#[derive(Clone, Debug)]
pub struct AttemptLog {
    /// The attempt, as recorded (or as the record shows the current one).
    pub attempt: Attempt,
    /// The log's bytes; `None` when none is stored (yet).
    pub bytes: Option<Vec<u8>>,
}

/// Where attempt `n`'s log is stored when nothing records it.
pub fn attempt_log_key(job_id: &str, n: u32) -> String {
    if n <= 1 {
        blob::log_key(job_id)
    } else {
        format!("jobs/{job_id}/attempts/{n}/log.txt")
    }
}

/// The job's attempts, oldest first: every ended one in `attempts`, then
/// the record's current attempt when `attempts` does not hold it yet (a
/// job that is running, or one written before attempts were recorded).
pub fn attempts_of(job: &Job) -> Vec<Attempt> {
    let mut all = job.attempts.clone();
    let current = job.attempt.unwrap_or(1).max(1);
    let recorded = all.iter().any(|a| a.attempt == current);
    let started = !job.started_at.is_empty() || !job.log_key.is_empty();
    if !recorded && (started || all.is_empty()) {
        let ended =
            plus_jobs::job::is_terminal(job.status()) || job.status() == JobStatus::Interrupted;
        all.push(Attempt {
            attempt: current,
            task: job.fargate_task_arn.clone(),
            started_at: if all.is_empty() {
                job.started_at.clone()
            } else {
                String::new()
            },
            ended_at: if ended {
                job.completed_at.clone()
            } else {
                String::new()
            },
            status: job.status,
            exit_code: job.exit_code,
            error: job.error.clone(),
            // A relaunch may not have moved the record's key on yet: an
            // earlier attempt's key is not this attempt's log.
            log_key: if all.iter().any(|a| a.log_key == job.log_key) {
                String::new()
            } else {
                job.log_key.clone()
            },
        });
    }
    for a in &mut all {
        if a.log_key.is_empty() {
            a.log_key = attempt_log_key(&job.object_id, a.attempt);
        }
    }
    all.sort_by_key(|a| a.attempt);
    all
}

/// `10:01:02` of an RFC 3339 timestamp (`?` when there is none).
fn clock(ts: &str) -> &str {
    ts.split_once('T')
        .map(|(_, t)| t.get(..8).unwrap_or(t))
        .filter(|t| !t.is_empty())
        .unwrap_or("?")
}

/// The header line above an attempt's log:
/// `== attempt 1 (INTERRUPTED, 10:01:02 to 10:01:09) ==`.
pub fn attempt_header(a: &Attempt) -> String {
    let status = status_name(a.status());
    let when = match (a.started_at.is_empty(), a.ended_at.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(", since {}", clock(&a.started_at)),
        _ => format!(", {} to {}", clock(&a.started_at), clock(&a.ended_at)),
    };
    let code = a
        .exit_code
        .map(|c| format!(", exit code {c}"))
        .unwrap_or_default();
    format!("== attempt {} ({status}{when}{code}) ==", a.attempt)
}

/// The header line above a shard's part of a parent's log.
pub fn shard_header(shard: &Job) -> String {
    format!(
        "== shard {} {} ({}) ==",
        shard.shard_index,
        shard.object_id,
        status_name(shard.status())
    )
}

/// Refuses an output name that could leave the job's output folder:
/// empty, absolute, a `..` or `.` segment, a backslash or a NUL.
///
/// # Errors
/// [`InvalidRequest::Field`] naming the name and why.
pub fn check_output_name(name: &str) -> Result<(), InvalidRequest> {
    let bad = |why: &str| {
        Err(InvalidRequest::Field(format!(
            "output name {name:?} {why}: use a name `plus outputs JOB` lists"
        )))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.starts_with('/') {
        return bad("is absolute");
    }
    if name.contains('\\') || name.contains('\0') {
        return bad("contains a backslash or a NUL");
    }
    if name
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("has an empty, `.` or `..` segment");
    }
    Ok(())
}

impl Launcher {
    /// A sharded parent's shard records, in shard order (a shard not
    /// written yet is left out).
    ///
    /// # Errors
    /// Store errors.
    pub async fn shards_of(&self, parent: &Job) -> Result<Vec<Job>, LauncherError> {
        let mut shards = Vec::new();
        if !is_parent(parent) {
            return Ok(shards);
        }
        for index in 0..parent.shard_count {
            if let Some(job) = self
                .jobs()
                .get_job(&shard_id(&parent.object_id, index))
                .await?
            {
                shards.push(job);
            }
        }
        Ok(shards)
    }

    /// The job's attempts, each with its stored log, oldest first.
    ///
    /// # Errors
    /// Store and blob store errors.
    pub async fn attempt_logs(&self, job: &Job) -> Result<Vec<AttemptLog>, LauncherError> {
        let mut logs = Vec::new();
        for attempt in attempts_of(job) {
            let bytes = self.backend.blobs.get_bytes(&attempt.log_key).await?;
            logs.push(AttemptLog { attempt, bytes });
        }
        Ok(logs)
    }

    /// The user's job `id` as one text: every attempt's log under its
    /// header, or attempt `only`'s log alone (no header); a sharded
    /// parent's is each shard's under a shard header. `None` when no log
    /// is stored at all.
    ///
    /// # Errors
    /// [`LauncherError::NotFound`] for another user's or a missing job;
    /// [`InvalidRequest::Field`] for an attempt the job did not have;
    /// store errors.
    pub async fn full_log(
        &self,
        username: &str,
        id: &str,
        only: Option<u32>,
    ) -> Result<Option<Vec<u8>>, LauncherError> {
        let job = self.status(username, id).await?;
        if is_parent(&job) {
            if only.is_some() {
                return Err(InvalidRequest::Field(format!(
                    "job {id} is sharded: its shards have the attempts; read one with `plus logs {} --attempt N`",
                    shard_id(id, 0)
                ))
                .into());
            }
            let mut out = Vec::new();
            let mut any = false;
            for shard in self.shards_of(&job).await? {
                out.extend_from_slice(shard_header(&shard).as_bytes());
                out.push(b'\n');
                match self.joined(&shard, None).await? {
                    Some(bytes) => {
                        any = true;
                        push_text(&mut out, &bytes);
                    }
                    None => out.extend_from_slice(b"(no log stored yet)\n"),
                }
            }
            return Ok(any.then_some(out));
        }
        self.joined(&job, only).await
    }

    async fn joined(&self, job: &Job, only: Option<u32>) -> Result<Option<Vec<u8>>, LauncherError> {
        let logs = self.attempt_logs(job).await?;
        if let Some(n) = only {
            let Some(log) = logs.into_iter().find(|l| l.attempt.attempt == n) else {
                let had = attempts_of(job)
                    .iter()
                    .map(|a| a.attempt.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(InvalidRequest::NotFound(format!(
                    "job {} has no attempt {n}: its attempts are {had}; leave out --attempt for all of them",
                    job.object_id
                ))
                .into());
            };
            return Ok(log.bytes);
        }
        if logs.iter().all(|l| l.bytes.is_none()) {
            return Ok(None);
        }
        let mut out = Vec::new();
        for log in logs {
            out.extend_from_slice(attempt_header(&log.attempt).as_bytes());
            out.push(b'\n');
            match log.bytes {
                Some(bytes) => push_text(&mut out, &bytes),
                None => out.extend_from_slice(b"(no log stored)\n"),
            }
        }
        Ok(Some(out))
    }

    /// The user's jobs, newest first, in `status` (if given) and matching
    /// `text` (a substring of the id or name; empty: all), `limit` at most
    /// after `start`. `next` is the last job looked at when the page is full.
    ///
    /// # Errors
    /// Store errors.
    pub async fn find(
        &self,
        username: &str,
        status: Option<JobStatus>,
        text: &str,
        start: Option<&str>,
        limit: usize,
    ) -> Result<plus_jobs::Page<Job>, LauncherError> {
        if text.is_empty() {
            return self.list(username, status, start, limit).await;
        }
        let owner = plus_jobs::job::jobs_owner(username);
        let wanted = |j: &Job| status.is_none_or(|s| j.status() == s) && matches_text(j, text);
        let mut items = Vec::new();
        let mut cursor = start.map(str::to_owned);
        loop {
            let page = self
                .jobs()
                .list_jobs(&owner, cursor.as_deref(), limit.max(50))
                .await?;
            let end = page.next.is_none();
            for job in page.items {
                if items.len() == limit {
                    return Ok(plus_jobs::Page {
                        items,
                        next: cursor,
                    });
                }
                cursor = Some(job.object_id.clone());
                if wanted(&job) {
                    items.push(job);
                }
            }
            if end {
                return Ok(plus_jobs::Page { items, next: None });
            }
        }
    }

    /// How many of the user's jobs in `status` (all: `None`) come after
    /// `cursor`, counting at most `max`; `None` when there are more.
    ///
    /// # Errors
    /// Store errors.
    pub async fn count_after(
        &self,
        username: &str,
        status: Option<JobStatus>,
        cursor: &str,
        max: usize,
    ) -> Result<Option<usize>, LauncherError> {
        let page = self.list(username, status, Some(cursor), max + 1).await?;
        Ok((page.items.len() <= max).then_some(page.items.len()))
    }

    /// The job's output files (name and size), in name order.
    ///
    /// # Errors
    /// As [`Launcher::status`]; blob store errors.
    pub async fn outputs(
        &self,
        username: &str,
        id: &str,
    ) -> Result<Vec<OutputFile>, LauncherError> {
        let job = self.owned(username, id).await?;
        let prefix = output_prefix_of(&job);
        let mut files = Vec::new();
        for key in self.backend.blobs.list(&prefix).await? {
            let Some(name) = key.strip_prefix(&prefix) else {
                continue;
            };
            if check_output_name(name).is_err() {
                continue;
            }
            let size = self.backend.blobs.size(&key).await?.unwrap_or(0);
            files.push(OutputFile {
                name: name.to_owned(),
                size,
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(files)
    }

    /// The bytes of the job's output file `name`.
    ///
    /// # Errors
    /// [`InvalidRequest::Field`] for a name that could leave the output
    /// folder; [`LauncherError::NotFound`] for a missing job or file.
    pub async fn output(
        &self,
        username: &str,
        id: &str,
        name: &str,
    ) -> Result<Vec<u8>, LauncherError> {
        check_output_name(name)?;
        let job = self.owned(username, id).await?;
        let key = format!("{}{name}", output_prefix_of(&job));
        self.backend.blobs.get_bytes(&key).await?.ok_or_else(|| {
            InvalidRequest::NotFound(format!(
                "job {id} has no output file {name:?}: `plus outputs {id}` lists them"
            ))
            .into()
        })
    }

    /// The job's per-item results (`results.jsonl`), one JSON line per
    /// item; a sharded parent's are its shards', in shard order. `None`
    /// when the job stored none (not a collection job, or not yet).
    ///
    /// # Errors
    /// As [`Launcher::status`]; blob store errors.
    pub async fn results(
        &self,
        username: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>, LauncherError> {
        let job = self.owned(username, id).await?;
        let ids: Vec<String> = if is_parent(&job) {
            (0..job.shard_count).map(|i| shard_id(id, i)).collect()
        } else {
            vec![id.to_owned()]
        };
        let mut out = Vec::new();
        let mut any = false;
        for job_id in ids {
            if let Some(bytes) = self
                .backend
                .blobs
                .get_bytes(&blob::results_key(&job_id))
                .await?
            {
                any = true;
                push_text(&mut out, &bytes);
            }
        }
        Ok(any.then_some(out))
    }
}

/// A shard as a parent's answers list it: `{job_id, status, progress}`.
pub fn shard_summary(shard: &Job) -> serde_json::Value {
    let j = plus_jobs::job::job_json(shard);
    serde_json::json!({
        "job_id": shard.object_id,
        "status": status_name(shard.status()),
        "progress": j.get("progress").cloned().unwrap_or_else(|| serde_json::json!({})),
    })
}

/// Whether `job` matches `text`: a substring of its id or its name, any
/// case. An empty text matches every job.
pub fn matches_text(job: &Job, text: &str) -> bool {
    let text = text.to_lowercase();
    text.is_empty()
        || job.object_id.to_lowercase().contains(&text)
        || job.name.to_lowercase().contains(&text)
}

/// The job's output folder in the blob store.
fn output_prefix_of(job: &Job) -> String {
    if job.output_prefix.is_empty() {
        blob::output_prefix(&job.object_id)
    } else if job.output_prefix.ends_with('/') {
        job.output_prefix.clone()
    } else {
        format!("{}/", job.output_prefix)
    }
}

/// Appends `bytes`, ending with a newline.
fn push_text(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_that_leave_the_folder_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
        ] {
            assert!(check_output_name(bad).is_err(), "{bad:?}");
        }
        for good in ["report.csv", "sub/dir/x.txt", "..a", "a.."] {
            assert!(check_output_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn a_running_attempt_follows_the_recorded_ones_with_its_own_log() {
        let job = Job {
            object_id: "j".into(),
            status: JobStatus::Running as i32,
            attempt: Some(2),
            started_at: "2026-12-01T10:00:00.000Z".into(),
            log_key: "jobs/j/log.txt".into(),
            attempts: vec![Attempt {
                attempt: 1,
                status: JobStatus::Interrupted as i32,
                log_key: "jobs/j/log.txt".into(),
                ..Attempt::default()
            }],
            ..Job::default()
        };
        let all = attempts_of(&job);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].attempt, 2);
        assert_eq!(all[1].status(), JobStatus::Running);
        assert_eq!(all[1].log_key, "jobs/j/attempts/2/log.txt");
        // A job written before attempts were recorded has its one attempt.
        let old = Job {
            object_id: "k".into(),
            status: JobStatus::Succeeded as i32,
            log_key: "jobs/k/log.txt".into(),
            ..Job::default()
        };
        let all = attempts_of(&old);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].log_key, "jobs/k/log.txt");
    }

    #[test]
    fn headers_name_the_attempt_its_status_and_times() {
        let a = Attempt {
            attempt: 1,
            status: JobStatus::Interrupted as i32,
            started_at: "2026-12-01T10:01:02.123Z".into(),
            ended_at: "2026-12-01T10:01:09.000Z".into(),
            ..Attempt::default()
        };
        assert_eq!(
            attempt_header(&a),
            "== attempt 1 (INTERRUPTED, 10:01:02 to 10:01:09) =="
        );
    }
}
