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

/// Where `count` shards split the ids from `first` to `last`: `count - 1`
/// sorted boundaries; shard `i` takes the ids after boundary `i - 1` and up
/// to boundary `i` (the first shard from the start, the last to the end),
/// so every id is in exactly one shard whatever the boundaries are, and
/// each shard reads only its own items. The boundaries interpolate between
/// `first` and `last` in the alphabet each position uses at both ends
/// (digits, hex, base 32/36/62, else printable ASCII), so ids that are
/// numbered, hex, ULIDs or UUIDs split into shards of about equal size; ids
/// bunched unevenly give uneven shards, never a lost or doubled item.
pub fn split_ids(first: &str, last: &str, count: u32) -> Vec<String> {
    const POSITIONS: usize = 12;
    let prefix: String = first
        .chars()
        .zip(last.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    let a: Vec<char> = first[prefix.len()..].chars().collect();
    let b: Vec<char> = last[prefix.len()..].chars().collect();
    let len = a.len().max(b.len()).clamp(1, POSITIONS);
    let alphabets: Vec<Vec<char>> = (0..len)
        .map(|k| alphabet(a.get(k).copied(), b.get(k).copied()))
        .collect();
    let value = |s: &[char]| -> u128 {
        alphabets.iter().enumerate().fold(0u128, |acc, (k, abc)| {
            let digit = s.get(k).map_or(0, |c| {
                abc.iter().position(|x| x == c).unwrap_or(abc.len() - 1)
            });
            acc * abc.len() as u128 + digit as u128
        })
    };
    let (lo, hi) = (value(&a), value(&b));
    let mut out: Vec<String> = (1..count)
        .map(|i| {
            let mut v = lo + hi.saturating_sub(lo) * u128::from(i) / u128::from(count);
            let mut digits = vec![' '; len];
            for k in (0..len).rev() {
                let r = alphabets[k].len() as u128;
                digits[k] = alphabets[k][(v % r) as usize];
                v /= r;
            }
            format!("{prefix}{}", digits.into_iter().collect::<String>())
        })
        .collect();
    out.sort();
    out
}

/// The smallest usual alphabet holding both characters (a missing one
/// fits any).
fn alphabet(a: Option<char>, b: Option<char>) -> Vec<char> {
    let classes: [&dyn Fn(char) -> bool; 5] = [
        &|c: char| c.is_ascii_digit(),
        &|c: char| c.is_ascii_digit() || ('a'..='f').contains(&c),
        &|c: char| c.is_ascii_digit() || c.is_ascii_uppercase(),
        &|c: char| c.is_ascii_digit() || c.is_ascii_lowercase(),
        &|c: char| c.is_ascii_alphanumeric(),
    ];
    let fits = |class: &dyn Fn(char) -> bool| a.is_none_or(class) && b.is_none_or(class);
    for class in classes {
        if fits(class) {
            return (' '..='~').filter(|c| class(*c)).collect();
        }
    }
    (' '..='~').collect()
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
    fn ids_split_into_sorted_ranges_of_about_equal_size() {
        let b = split_ids("item-00000", "item-01999", 4);
        assert_eq!(b, ["item-00499", "item-00999", "item-01499"]);
        let ids: Vec<String> = (0..2000).map(|i| format!("item-{i:05}")).collect();
        let sizes = |b: &[String]| {
            let mut sizes = vec![0; b.len() + 1];
            for id in &ids {
                sizes[b.iter().filter(|x| x.as_str() < id.as_str()).count()] += 1;
            }
            sizes
        };
        assert_eq!(sizes(&b), [500, 500, 500, 500]);
        // Random hex ids split about evenly.
        let hex: Vec<String> = (0..4000u64)
            .map(|i| format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        let mut sorted = hex.clone();
        sorted.sort();
        let b = split_ids(&sorted[0], &sorted[3999], 4);
        let mut sizes = vec![0; 4];
        for id in &hex {
            sizes[b.iter().filter(|x| x.as_str() < id.as_str()).count()] += 1;
        }
        assert!(sizes.iter().all(|s| (800..1200).contains(s)), "{sizes:?}");
        // Odd ends still give sorted boundaries.
        for (a, z) in [("a", "a"), ("x", "xyz"), ("1", "99"), ("é", "ü")] {
            let b = split_ids(a, z, 5);
            assert_eq!(b.len(), 4);
            assert!(b.windows(2).all(|w| w[0] <= w[1]), "{a}..{z}: {b:?}");
        }
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
