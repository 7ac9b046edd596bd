//! `plus usage [--since 7d]`: what the user's jobs used over a period
//! (vCPU-seconds, GiB-seconds and the cost estimate the workers recorded),
//! and the one-line form `plus status` shows.

use std::time::Duration;

use plus_jobs::{pricing, Job, Timestamp, Usage};
use serde_json::json;

use super::CliError;
use crate::ops::Launcher;

/// `usage` as people read it: `12.3 vCPU-s, 24.6 GiB-s, ~$0.0002`.
pub fn line(usage: &Usage) -> String {
    format!(
        "{:.1} vCPU-s, {:.1} GiB-s, {}",
        usage.vcpu_seconds,
        usage.gib_seconds,
        dollars(usage.cost_usd)
    )
}

/// An estimate in dollars with two significant digits below a dollar:
/// `~$0.0002`, `~$1.25`, `$0` (nothing billed).
pub fn dollars(usd: f64) -> String {
    if usd <= 0.0 || !usd.is_finite() {
        return "$0".into();
    }
    if usd >= 1.0 {
        return format!("~${usd:.2}");
    }
    // Decimals that show two significant digits, at most nine.
    let decimals = (1.0 - usd.log10().floor()).clamp(2.0, 9.0) as usize;
    format!("~${usd:.decimals$}")
}

/// A period like `30m`, `12h`, `7d` or `2w`.
///
/// # Errors
/// [`CliError::Usage`] naming the expected form.
pub fn period(text: &str) -> Result<Duration, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "--since {text:?} is not a period: use a number and a unit, e.g. 30m, 12h, 7d or 2w"
        ))
    };
    let text = text.trim();
    let unit = text.chars().last().ok_or_else(bad)?;
    let n: u64 = text[..text.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let seconds = match unit {
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// What `jobs` created at or after `since` used, summed, and how many of
/// them there are and how many recorded any usage.
pub fn total(jobs: &[Job], since: &str) -> (Usage, usize, usize) {
    let mut sum = Usage::default();
    let (mut count, mut with_usage) = (0, 0);
    for job in jobs.iter().filter(|j| j.created_at.as_str() >= since) {
        count += 1;
        if let Some(u) = &job.usage {
            with_usage += 1;
            sum = pricing::sum(Some(&sum), Some(u));
        }
    }
    (sum, count, with_usage)
}

/// `plus usage [--since PERIOD] [--json]`: the user's jobs created in the
/// period, and what they used.
///
/// # Errors
/// A bad period; store errors.
pub async fn run(launcher: &Launcher, user: &str, since: &str, json: bool) -> Result<u8, CliError> {
    let from = Timestamp::now().minus(period(since)?).to_string();
    // Every job of the user's: ids a person chose do not sort by time.
    let mut jobs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = launcher.list(user, None, cursor.as_deref(), 500).await?;
        jobs.extend(page.items);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    let (sum, count, with_usage) = total(&jobs, &from);
    if json {
        let v = json!({
            "user": user,
            "period": since,
            "since": from,
            "jobs": count,
            "jobs_with_usage": with_usage,
            "usage": {
                "vcpu_seconds": sum.vcpu_seconds,
                "gib_seconds": sum.gib_seconds,
                "cost_usd": sum.cost_usd,
            },
            "prices_read": pricing::PRICES_READ,
        });
        println!("{v}");
        return Ok(0);
    }
    println!(
        "{:<12}{user}'s jobs created since {from} ({since})",
        "period"
    );
    println!("{:<12}{count} ({with_usage} with usage recorded)", "jobs");
    println!("{:<12}{}", "usage", line(&sum));
    println!(
        "{:<12}the cost is an estimate from Fargate's prices (read {}); the local backend bills nothing",
        "",
        pricing::PRICES_READ
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_like_people_write_them() {
        assert_eq!(period("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(period("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(period("2w").unwrap(), Duration::from_secs(14 * 86_400));
        for bad in ["", "7", "d", "7y", "-1d", "1.5d"] {
            let e = period(bad).unwrap_err().to_string();
            assert!(e.contains("e.g. 30m, 12h, 7d or 2w"), "{bad}: {e}");
        }
    }

    #[test]
    fn dollars_show_two_significant_digits() {
        assert_eq!(dollars(0.0), "$0");
        assert_eq!(dollars(0.000_183), "~$0.00018");
        assert_eq!(dollars(0.049_37), "~$0.049");
        assert_eq!(dollars(0.5), "~$0.50");
        assert_eq!(dollars(12.345), "~$12.35");
        assert_eq!(
            line(&Usage {
                vcpu_seconds: 12.34,
                gib_seconds: 24.68,
                cost_usd: 0.000_2
            }),
            "12.3 vCPU-s, 24.7 GiB-s, ~$0.00020"
        );
    }

    #[test]
    fn only_jobs_of_the_period_count() {
        let job = |created: &str, vcpu: f64| Job {
            created_at: created.into(),
            usage: (vcpu > 0.0).then_some(Usage {
                vcpu_seconds: vcpu,
                gib_seconds: 2.0 * vcpu,
                cost_usd: 0.001,
            }),
            ..Job::default()
        };
        let jobs = [
            job("2026-12-01T10:00:00.000Z", 1.5),
            job("2026-11-30T10:00:00.000Z", 0.0),
            job("2026-11-01T10:00:00.000Z", 100.0),
        ];
        let (sum, count, with) = total(&jobs, "2026-11-24T10:00:00.000Z");
        assert_eq!((count, with), (2, 1));
        assert_eq!(sum.vcpu_seconds, 1.5);
        assert_eq!(sum.gib_seconds, 3.0);
    }
}
