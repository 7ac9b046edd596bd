//! The planner: which waiting jobs start now, and why each other one
//! waits. Pure: no store, no clock, no runner; the dispatcher and the
//! launch's admission feed it what they read.
//!
//! The rules:
//! - Waiting jobs go in order: highest `priority` first, then first come
//!   first served (`created_at`, then the time-sortable id).
//! - A job whose user is at `PLUS_MAX_RUNNING_PER_USER` waits, and the
//!   jobs behind it may still start (one user does not hold up others).
//! - A job that does not fit the machine's or the account's budget
//!   (`PLUS_MAX_RUNNING`, `PLUS_MAX_VCPUS`) waits, and so does every job
//!   behind it: smaller jobs never overtake a big one forever.
//! - A job larger than the whole vCPU budget starts when nothing else runs
//!   (it would otherwise wait for ever; ECS refuses it if the account's
//!   quota is truly smaller, and it then waits again).

use std::collections::HashMap;

use super::Limits;

/// A job that holds capacity (INITIALIZING or RUNNING).
#[derive(Clone, Debug, PartialEq)]
pub struct Running {
    /// Its user.
    pub username: String,
    /// The vCPUs its task has.
    pub vcpus: f64,
}

/// A job that waits to be admitted.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    /// Its id.
    pub id: String,
    /// Its user.
    pub username: String,
    /// `priority` (higher first).
    pub priority: i32,
    /// `created_at` (RFC 3339, sorts as a string).
    pub created_at: String,
    /// The vCPUs its task needs.
    pub vcpus: f64,
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The jobs to start, in order.
    pub start: Vec<String>,
    /// The jobs that keep waiting, in order, each with its `queue_reason`.
    pub wait: Vec<(String, String)>,
}

/// Plans one admission round.
pub fn plan(limits: &Limits, running: &[Running], queued: &[Waiting]) -> Plan {
    let mut order: Vec<&Waiting> = queued.iter().collect();
    order.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then_with(|| a.created_at.cmp(&b.created_at))
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut count = running.len() as u64;
    let mut vcpus: f64 = running.iter().map(|r| r.vcpus).sum();
    let mut per_user: HashMap<&str, u64> = HashMap::new();
    for r in running {
        *per_user.entry(r.username.as_str()).or_default() += 1;
    }
    let mut plan = Plan::default();
    // Once the budget is full, everyone behind waits for it too.
    let mut full = false;
    for job in order {
        let ahead = plan.wait.len();
        let mine = per_user.get(job.username.as_str()).copied().unwrap_or(0);
        if let Some(max) = limits.max_running_per_user {
            if !full && mine >= u64::from(max) {
                plan.wait.push((
                    job.id.clone(),
                    format!(
                        "{} has {mine} of {max} jobs running (PLUS_MAX_RUNNING_PER_USER)",
                        job.username
                    ),
                ));
                continue;
            }
        }
        let machine_full = limits
            .max_running
            .is_some_and(|max| count >= u64::from(max));
        let vcpus_full = limits
            .max_vcpus
            .is_some_and(|max| count > 0 && vcpus + job.vcpus > max + 1e-9);
        full = full || machine_full || vcpus_full;
        if full {
            let machine = limits.max_running.filter(|m| count >= u64::from(*m));
            let why = if ahead >= EXACT_PLACES {
                // Far back in line: no counts that change with every start.
                match machine {
                    Some(max) => {
                        format!("all {max} workers on this machine are busy (PLUS_MAX_RUNNING)")
                    }
                    None => format!(
                        "all {} vCPUs are in use (PLUS_MAX_VCPUS)",
                        number(limits.max_vcpus.unwrap_or_default())
                    ),
                }
            } else if let Some(max) = machine {
                format!("{count} of {max} workers running on this machine (PLUS_MAX_RUNNING)")
            } else {
                let max = limits.max_vcpus.unwrap_or_default();
                let need = if (vcpus + job.vcpus) > max && vcpus < max {
                    format!(", this job needs {}", number(job.vcpus))
                } else {
                    String::new()
                };
                format!("{} of {} vCPUs in use{need}", number(vcpus), number(max))
            };
            plan.wait
                .push((job.id.clone(), format!("{why}; {}", place(ahead))));
            continue;
        }
        count += 1;
        vcpus += job.vcpus;
        *per_user.entry(job.username.as_str()).or_default() += 1;
        plan.start.push(job.id.clone());
    }
    plan
}

/// The places in line told exactly; from here on a waiting job's reason
/// names its place in steps (10 or more, 20 or more, 50 or more, ...) and
/// its limit without the counts that change with every start, so one
/// dispatch rewrites the reasons of a handful of jobs, not of every job in
/// a long line (that was quadratic in a burst).
pub const EXACT_PLACES: usize = 10;

/// A job's place in the line, in words.
fn place(ahead: usize) -> String {
    match ahead {
        0 => "next in line".to_owned(),
        1 => "1 job ahead".to_owned(),
        n if n < EXACT_PLACES => format!("{n} jobs ahead"),
        n => format!("{} or more jobs ahead", step(n)),
    }
}

/// The largest of 10, 20, 50, 100, 200, 500, ... that is at most `n`
/// (`n` >= 10).
fn step(n: usize) -> usize {
    let (mut best, mut decade) = (EXACT_PLACES, EXACT_PLACES);
    loop {
        for s in [decade, 2 * decade, 5 * decade] {
            if s > n {
                return best;
            }
            best = s;
        }
        decade *= 10;
    }
}

/// `6`, `0.25`, `5.5`: a vCPU count as people write it.
fn number(v: f64) -> String {
    let rounded = (v * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(id: &str, user: &str, priority: i32, vcpus: f64) -> Waiting {
        Waiting {
            id: id.into(),
            username: user.into(),
            priority,
            // Ids double as the launch order in these tests.
            created_at: format!("2026-01-01T00:00:00.{id}Z"),
            vcpus,
        }
    }

    fn running(user: &str, vcpus: f64) -> Running {
        Running {
            username: user.into(),
            vcpus,
        }
    }

    fn local(max: u32) -> Limits {
        Limits {
            max_running: Some(max),
            ..Limits::default()
        }
    }

    #[test]
    fn a_full_machine_queues_everyone_with_their_place() {
        let queued: Vec<_> = ["001", "002", "003"]
            .iter()
            .map(|id| waiting(id, "alice", 0, 0.25))
            .collect();
        let p = plan(
            &local(2),
            &[running("alice", 0.25), running("bob", 0.25)],
            &queued,
        );
        assert!(p.start.is_empty());
        assert_eq!(
            p.wait,
            vec![
                (
                    "001".into(),
                    "2 of 2 workers running on this machine (PLUS_MAX_RUNNING); next in line"
                        .into()
                ),
                (
                    "002".into(),
                    "2 of 2 workers running on this machine (PLUS_MAX_RUNNING); 1 job ahead".into()
                ),
                (
                    "003".into(),
                    "2 of 2 workers running on this machine (PLUS_MAX_RUNNING); 2 jobs ahead"
                        .into()
                ),
            ]
        );
    }

    #[test]
    fn free_slots_go_first_come_first_served() {
        let queued = vec![
            waiting("003", "a", 0, 0.25),
            waiting("001", "a", 0, 0.25),
            waiting("002", "a", 0, 0.25),
        ];
        let p = plan(&local(3), &[running("a", 0.25)], &queued);
        assert_eq!(p.start, vec!["001", "002"]);
        assert_eq!(p.wait.len(), 1);
        assert_eq!(p.wait[0].0, "003");
    }

    #[test]
    fn higher_priority_goes_first() {
        let queued = vec![
            waiting("001", "a", 0, 0.25),
            waiting("002", "a", 0, 0.25),
            waiting("003", "a", 5, 0.25),
            waiting("004", "a", -1, 0.25),
        ];
        let p = plan(&local(2), &[], &queued);
        assert_eq!(p.start, vec!["003", "001"]);
        let waiting: Vec<_> = p.wait.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(waiting, vec!["002", "004"]);
    }

    #[test]
    fn the_vcpu_budget_counts_task_sizes() {
        let limits = Limits {
            max_vcpus: Some(6.0),
            ..Limits::default()
        };
        let queued = vec![
            waiting("001", "a", 0, 2.0),
            waiting("002", "a", 0, 2.0),
            waiting("003", "a", 0, 0.25),
        ];
        let p = plan(&limits, &[running("a", 4.0)], &queued);
        assert_eq!(p.start, vec!["001"]);
        assert_eq!(
            p.wait[0],
            ("002".into(), "6 of 6 vCPUs in use; next in line".into())
        );
        // The small job does not overtake the one ahead of it.
        assert_eq!(
            p.wait[1],
            ("003".into(), "6 of 6 vCPUs in use; 1 job ahead".into())
        );

        let p = plan(
            &limits,
            &[running("a", 5.0)],
            &[waiting("001", "a", 0, 2.0)],
        );
        assert_eq!(
            p.wait[0].1,
            "5 of 6 vCPUs in use, this job needs 2; next in line"
        );
    }

    #[test]
    fn a_job_larger_than_the_budget_starts_alone() {
        let limits = Limits {
            max_vcpus: Some(6.0),
            ..Limits::default()
        };
        let p = plan(&limits, &[], &[waiting("001", "a", 0, 8.0)]);
        assert_eq!(p.start, vec!["001"]);
    }

    #[test]
    fn a_user_at_their_limit_does_not_hold_up_others() {
        let limits = Limits {
            max_running_per_user: Some(3),
            max_vcpus: Some(100.0),
            ..Limits::default()
        };
        let alice = vec![running("alice", 1.0); 3];
        let queued = vec![
            waiting("001", "alice", 0, 1.0),
            waiting("002", "bob", 0, 1.0),
        ];
        let p = plan(&limits, &alice, &queued);
        assert_eq!(p.start, vec!["002"]);
        assert_eq!(
            p.wait,
            vec![(
                "001".into(),
                "alice has 3 of 3 jobs running (PLUS_MAX_RUNNING_PER_USER)".into()
            )]
        );
    }

    #[test]
    fn a_long_line_tells_far_places_in_steps_that_rarely_change() {
        assert_eq!(place(9), "9 jobs ahead");
        assert_eq!(place(10), "10 or more jobs ahead");
        assert_eq!(place(19), "10 or more jobs ahead");
        assert_eq!(place(20), "20 or more jobs ahead");
        assert_eq!(place(499), "200 or more jobs ahead");
        assert_eq!(place(1234), "1000 or more jobs ahead");

        let limits = Limits {
            max_vcpus: Some(6.0),
            ..Limits::default()
        };
        let line: Vec<_> = (0..1000)
            .map(|i| waiting(&format!("{i:04}"), "a", 0, 0.25))
            .collect();
        let full = vec![running("a", 0.25); 24];
        let before = plan(&limits, &full, &line);
        assert_eq!(before.wait[3].1, "6 of 6 vCPUs in use; 3 jobs ahead");
        assert_eq!(
            before.wait[500].1,
            "all 6 vCPUs are in use (PLUS_MAX_VCPUS); 500 or more jobs ahead"
        );
        // One job ends and the next starts: only a handful of the 999
        // reasons still waiting change (the dispatcher rewrites just those).
        let after = plan(&limits, &full[1..], &line);
        assert_eq!(after.start, vec!["0000"]);
        let reasons: HashMap<_, _> = before.wait.iter().cloned().collect();
        let changed = after
            .wait
            .iter()
            .filter(|(id, why)| reasons.get(id) != Some(why))
            .count();
        assert!(changed <= 20, "{changed} reasons changed");
    }

    #[test]
    fn no_limits_start_everything() {
        let queued: Vec<_> = (0..50)
            .map(|i| waiting(&format!("{i:03}"), "a", 0, 4.0))
            .collect();
        assert_eq!(plan(&Limits::default(), &[], &queued).start.len(), 50);
    }
}
