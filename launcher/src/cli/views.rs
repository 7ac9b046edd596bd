//! What a job shows, on the command line: `plus status`, `plus logs`,
//! `plus results`, `plus outputs` (and downloading them), `plus events`
//! of a sharded parent and `plus list`.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use plus_jobs::{job::status_name, Job, JobStatus, StreamEvent};

use super::{print, CliError};
use crate::ops::{
    shards::{is_parent, shard_id},
    views::{attempts_of, check_output_name, shard_summary, OutputFile},
    Launcher,
};

/// `plus status JOB`: the record, its attempts, output files, result and,
/// for a sharded parent, its shards.
///
/// # Errors
/// As [`Launcher::status`]; blob store errors.
pub async fn status(launcher: &Launcher, user: &str, id: &str, json: bool) -> Result<u8, CliError> {
    let job = launcher.status(user, id).await?;
    let shards = launcher.shards_of(&job).await?;
    if json {
        let mut v = plus_jobs::job::job_json(&job);
        if is_parent(&job) {
            v["shards"] = shards.iter().map(shard_summary).collect();
        }
        println!("{}", serde_json::to_string(&v)?);
        return Ok(0);
    }
    print::print_status(&job);
    // A sharded parent's usage is its shards'.
    let used = if is_parent(&job) {
        shards.iter().fold(None, |sum, s| {
            Some(plus_jobs::pricing::sum(sum.as_ref(), s.usage.as_ref()))
        })
    } else {
        job.usage
    };
    if let Some(u) = used {
        println!("{:<12}{}", "usage", super::usage::line(&u));
    }
    let outputs = if is_parent(&job) {
        Vec::new()
    } else {
        launcher.outputs(user, id).await?
    };
    print_more(&job, &outputs, &shards);
    Ok(0)
}

/// A timestamp for a table: `2026-12-01 10:01:02` (`-` when there is none).
fn when(ts: &str) -> String {
    if ts.is_empty() {
        return "-".into();
    }
    ts.get(..19).unwrap_or(ts).replacen('T', " ", 1)
}

/// `n` bytes for people: `8 B`, `1.2 KiB`, `3.4 MiB`.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Rows as aligned columns (the last column is not padded).
fn table(rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::new();
            for (c, cell) in r.iter().enumerate() {
                if c + 1 == r.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[c] - cell.chars().count() + 2;
                    line.push_str(&" ".repeat(pad));
                }
            }
            line.trim_end().to_owned()
        })
        .collect()
}

/// Prints a table under a label in the status column (`attempts    ...`).
fn section(label: &str, rows: &[Vec<String>]) {
    for (i, line) in table(rows).iter().enumerate() {
        let label = if i == 0 { label } else { "" };
        println!("{label:<12}{line}");
    }
}

fn print_more(job: &Job, outputs: &[OutputFile], shards: &[Job]) {
    let id = &job.object_id;
    if !is_parent(job) {
        let mut rows = vec![[
            "ATTEMPT", "TASK", "STARTED", "ENDED", "STATUS", "EXIT", "ERROR",
        ]
        .map(String::from)
        .to_vec()];
        for a in attempts_of(job) {
            rows.push(vec![
                a.attempt.to_string(),
                if a.task.is_empty() {
                    "-".into()
                } else {
                    a.task.clone()
                },
                when(&a.started_at),
                when(&a.ended_at),
                status_name(a.status()).into(),
                a.exit_code.map_or("-".into(), |c| c.to_string()),
                a.error.clone(),
            ]);
        }
        section("attempts", &rows);
    }
    if !job.secrets.is_empty() {
        // Names and references only: values are never stored.
        let rows: Vec<Vec<String>> = plus_jobs::secrets::sorted(&job.secrets)
            .into_iter()
            .map(|(name, reference)| vec![name.clone(), reference.clone()])
            .collect();
        section("secrets", &rows);
    }
    if !outputs.is_empty() {
        let rows: Vec<Vec<String>> = outputs
            .iter()
            .map(|f| vec![f.name.clone(), size(f.size)])
            .collect();
        section("outputs", &rows);
        println!("{:<12}download: plus outputs {id} --download DIR", "");
    }
    if !shards.is_empty() {
        let mut rows = vec![["SHARD", "STATUS", "PROGRESS", "ERROR"]
            .map(String::from)
            .to_vec()];
        if shards.iter().all(|s| s.error.is_empty()) {
            rows[0].pop();
        }
        for s in shards {
            rows.push(vec![
                s.object_id.clone(),
                status_name(s.status()).into(),
                s.progress.as_ref().map_or("-".into(), |p| {
                    format!("{} ok, {} failed of {}", p.succeeded, p.failed, p.total)
                }),
                s.error.clone(),
            ]);
        }
        section("shards", &rows);
    }
    if job.run_mode() == plus_jobs::RunMode::RunCollection {
        println!("{:<12}plus results {id}", "results");
    }
}

/// `plus logs JOB [--attempt N]`: every attempt's log under a header (a
/// sharded parent: every shard's), or attempt N's alone.
///
/// # Errors
/// As [`Launcher::full_log`]; a job with no stored log yet.
pub async fn logs(
    launcher: &Launcher,
    user: &str,
    id: &str,
    attempt: Option<u32>,
) -> Result<u8, CliError> {
    match launcher.full_log(user, id, attempt).await? {
        Some(bytes) => {
            std::io::stdout().write_all(&bytes)?;
            Ok(0)
        }
        None => Err(CliError::Usage(format!(
            "job {id} has no stored log yet (it is stored as the job runs and when it ends); follow it live with `plus events {id} --follow`"
        ))),
    }
}

/// `plus results JOB`: the per-item results, as stored (JSON lines).
///
/// # Errors
/// As [`Launcher::results`]; a job with none.
pub async fn results(launcher: &Launcher, user: &str, id: &str) -> Result<u8, CliError> {
    match launcher.results(user, id).await? {
        Some(bytes) => {
            std::io::stdout().write_all(&bytes)?;
            Ok(0)
        }
        None => Err(CliError::Usage(format!(
            "job {id} has no per-item results: only a collection job stores them, once items have finished; a script's result is shown by `plus status {id}`"
        ))),
    }
}

/// `plus outputs JOB [--download DIR]`: lists the job's output files, or
/// fetches them into `DIR`.
///
/// # Errors
/// As [`Launcher::outputs`]; a download that would write outside `DIR`.
pub async fn outputs(
    launcher: &Launcher,
    user: &str,
    id: &str,
    download: Option<&Path>,
    json: bool,
) -> Result<u8, CliError> {
    let files = launcher.outputs(user, id).await?;
    let Some(dir) = download else {
        if json {
            println!("{}", serde_json::json!({ "files": files }));
        } else if files.is_empty() {
            eprintln!("job {id} has no output files (a script leaves them in $PLUS_OUTPUT_DIR)");
        } else {
            let mut rows = vec![vec!["NAME".to_owned(), "SIZE".to_owned()]];
            rows.extend(files.iter().map(|f| vec![f.name.clone(), size(f.size)]));
            for line in table(&rows) {
                println!("{line}");
            }
        }
        return Ok(0);
    };
    let mut written = Vec::new();
    for f in &files {
        let bytes = launcher.output(user, id, &f.name).await?;
        let path = safe_path(dir, &f.name)?;
        write_new(&path, &bytes)?;
        tracing::debug!(job_id = %id, file = %path.display(), "output downloaded");
        written.push(serde_json::json!({ "name": f.name, "size": bytes.len(), "path": path }));
    }
    if json {
        println!("{}", serde_json::json!({ "files": written }));
    } else {
        eprintln!(
            "{} of job {id} downloaded into {}",
            print::count(files.len() as u64, "output file"),
            dir.display()
        );
    }
    Ok(0)
}

/// Where output `name` goes under `dir`: refuses a name that leaves it and
/// any folder on the way (or the file itself) that is a symbolic link;
/// creates the folders on the way.
///
/// # Errors
/// [`CliError::Usage`] naming the name or the link and the fix.
pub fn safe_path(dir: &Path, name: &str) -> Result<PathBuf, CliError> {
    check_output_name(name).map_err(|e| CliError::Usage(e.to_string()))?;
    let link = |p: &Path| {
        CliError::Usage(format!(
            "{} is a symbolic link: `plus outputs --download` never writes through links; remove it or download into an empty folder",
            p.display()
        ))
    };
    let is_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    std::fs::create_dir_all(dir)?;
    let mut path = dir.to_owned();
    let parts: Vec<&str> = name.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        if is_link(&path) {
            return Err(link(&path));
        }
        if i + 1 < parts.len() {
            match std::fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(path)
}

/// Writes `bytes` to `path` through a new file beside it, renamed into
/// place: a link that appears at `path` meanwhile is replaced, never
/// followed.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)?;
    Ok(())
}

/// A fresh file in `dir` (created, never opened through a link).
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    for n in 0..100u32 {
        let p = dir.join(format!(".plus-download-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "no temporary file could be made in {}",
        dir.display()
    )))
}

/// `plus events PARENT`: every shard's events, in time order, each line
/// marked with its shard.
///
/// # Errors
/// As [`Launcher::events`].
pub async fn parent_events(
    launcher: &Launcher,
    user: &str,
    parent: &Job,
    after: u64,
    json: bool,
) -> Result<u8, CliError> {
    let mut all: Vec<(u32, StreamEvent)> = Vec::new();
    for index in 0..parent.shard_count {
        let shard = shard_id(&parent.object_id, index);
        let events = match launcher.events(user, &shard, after, 10_000).await {
            Ok(e) => e.events,
            Err(crate::ops::LauncherError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        all.extend(events.into_iter().map(|e| (index, e)));
    }
    all.sort_by(|a, b| a.1.at.cmp(&b.1.at).then(a.0.cmp(&b.0)));
    let events: Vec<StreamEvent> = all.into_iter().map(|(_, e)| e).collect();
    if json {
        print::print_events(&events, true);
        return Ok(0);
    }
    let width = events.iter().map(|e| e.stream_id.len()).max().unwrap_or(0);
    for e in &events {
        for line in e.data.split('\n') {
            println!(
                "{:<width$} {:>20}  {:<8} {line}",
                e.stream_id, e.seq, e.kind
            );
        }
    }
    Ok(0)
}

/// `plus events PARENT --follow`: every shard's events as they come, each
/// line marked with its shard, until the parent ends; then how it ended.
/// Returns the exit code (0 only if every shard succeeded).
///
/// # Errors
/// Store errors.
pub async fn follow_parent(
    launcher: &Launcher,
    user: &str,
    parent: &Job,
    after: u64,
) -> Result<u8, CliError> {
    let ids: Vec<String> = (0..parent.shard_count)
        .map(|i| shard_id(&parent.object_id, i))
        .collect();
    let mut seen = vec![after; ids.len()];
    let mut last_check = std::time::Instant::now();
    let mut ended: Option<Job> = None;
    loop {
        let mut saw_status = false;
        for (i, id) in ids.iter().enumerate() {
            let events = match launcher.events(user, id, seen[i], 1000).await {
                Ok(e) => e.events,
                Err(crate::ops::LauncherError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            for e in &events {
                seen[i] = seen[i].max(e.seq);
                match plus_jobs::EventKind::of(e) {
                    Some(plus_jobs::EventKind::Stdout) => {
                        let mut out = std::io::stdout().lock();
                        for line in e.data.split('\n') {
                            writeln!(out, "{id}  {line}")?;
                        }
                        out.flush()?;
                    }
                    Some(plus_jobs::EventKind::Stderr) => {
                        for line in e.data.split('\n') {
                            eprintln!("{id}  {line}");
                        }
                    }
                    Some(plus_jobs::EventKind::Status) => {
                        saw_status = true;
                        eprintln!("● {id} {}", e.data);
                    }
                    _ => {}
                }
            }
        }
        if let Some(job) = ended {
            // The events written before the end are printed: done.
            print::print_summary(&job);
            return Ok(print::exit_for(&job));
        }
        if saw_status || last_check.elapsed() >= std::time::Duration::from_secs(1) {
            last_check = std::time::Instant::now();
            let job = launcher.status(user, &parent.object_id).await?;
            if plus_jobs::job::is_terminal(job.status()) {
                ended = Some(job);
                continue;
            }
        }
        tokio::time::sleep(super::follow::POLL).await;
    }
}

/// The label of a job in a list: its name, else `action:ID`, else
/// `collection:OWNER`, else `-`.
pub fn label(job: &Job) -> String {
    if !job.name.is_empty() {
        job.name.clone()
    } else if !job.action_id.is_empty() {
        format!("action:{}", job.action_id)
    } else if !job.collection_owner.is_empty() {
        format!("collection:{}", job.collection_owner)
    } else {
        "-".into()
    }
}

/// `plus list [--status S] [--limit N]`: the user's jobs, newest first
/// (`limit` 0: all of them), and what the limit left out.
///
/// # Errors
/// Store errors.
pub async fn list(
    launcher: &Launcher,
    user: &str,
    status: Option<JobStatus>,
    limit: usize,
    json: bool,
) -> Result<u8, CliError> {
    let page = if limit == 0 {
        // All of them, a page at a time.
        let mut all = plus_jobs::Page {
            items: Vec::new(),
            next: None,
        };
        loop {
            let page = launcher
                .list(user, status, all.next.as_deref(), 500)
                .await?;
            all.items.extend(page.items);
            all.next = page.next;
            if all.next.is_none() {
                break all;
            }
        }
    } else {
        launcher.list(user, status, None, limit).await?
    };
    if json {
        let jobs: Vec<serde_json::Value> =
            page.items.iter().map(plus_jobs::job::job_json).collect();
        println!("{}", serde_json::json!({ "jobs": jobs, "next": page.next }));
        return Ok(0);
    }
    if page.items.is_empty() {
        match status {
            Some(s) => eprintln!("no {} jobs for {user}", status_name(s)),
            None => {
                // Said without a path: it must hold wherever plus runs.
                eprintln!("no jobs for {user} yet: start one with `plus run SCRIPT` (any shell script, e.g. one line: echo hello)")
            }
        }
        return Ok(0);
    }
    let mut rows = vec![["JOB", "NAME", "STATUS", "MODE", "CREATED", "DURATION"]
        .map(String::from)
        .to_vec()];
    for j in &page.items {
        rows.push(vec![
            j.object_id.clone(),
            label(j),
            [status_name(j.status()), &j.queue_reason].join(if j.queue_reason.is_empty() {
                ""
            } else {
                ": "
            }),
            j.run_mode().as_str_name().into(),
            j.created_at.clone(),
            super::follow::duration(j).unwrap_or_else(|| "-".into()),
        ]);
    }
    for line in table(&rows) {
        println!("{line}");
    }
    if let Some(cursor) = &page.next {
        match launcher.count_after(user, status, cursor, 1000).await? {
            Some(0) => {}
            Some(n) => eprintln!("{n} more; use --limit {} (0: all)", limit + n),
            None => eprintln!("more; use --limit 0 for all"),
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(8), "8 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn tables_line_up() {
        let rows = vec![
            vec!["A".into(), "B".into(), "C".into()],
            vec!["long-id".into(), "x".into(), "y".into()],
        ];
        assert_eq!(table(&rows), ["A        B  C", "long-id  x  y"]);
    }

    #[test]
    fn downloads_refuse_names_that_leave_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(safe_path(dir.path(), bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            safe_path(dir.path(), "a/b.txt").unwrap(),
            dir.path().join("a/b.txt")
        );
    }
}
