//! Schedule expressions as EventBridge Scheduler reads them: `rate(...)`,
//! `cron(...)` (six fields) and `at(...)`, and the time zone they are read
//! in. Parsed and checked before anything is written; a wrong one gets a
//! sentence with the fix. The local backend also computes firings here.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A checked schedule expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expression {
    /// `rate(N unit)`: every `period`, counted from the schedule's creation.
    Rate {
        /// The period (at least one minute).
        period: Duration,
    },
    /// `cron(min hour day-of-month month day-of-week year)`.
    Cron(Box<Cron>),
    /// `at(yyyy-mm-ddThh:mm:ss)`: once, at this local time.
    At(NaiveDateTime),
}

/// Where to read about the forms, for every message.
const FORMS: &str = "use rate(5 minutes), cron(0 9 ? * MON-FRI *) or at(2030-01-31T09:00:00)";

impl Expression {
    /// Parses and checks `text`.
    ///
    /// # Errors
    /// A sentence naming what is wrong and the fix.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let inner = |prefix: &str| {
            t.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(')'))
                .map(str::trim)
        };
        if let Some(body) = inner("rate(") {
            return parse_rate(body).map(|period| Self::Rate { period });
        }
        if let Some(body) = inner("cron(") {
            return Cron::parse(body).map(|c| Self::Cron(Box::new(c)));
        }
        if let Some(body) = inner("at(") {
            return NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S")
                .map(Self::At)
                .map_err(|_| {
                    format!("the expression {t:?} is not a valid at(...): write the local time as at(yyyy-mm-ddThh:mm:ss), e.g. at(2030-01-31T09:00:00)")
                });
        }
        if t.split_whitespace().count() == 5 {
            return Err(format!(
                "the expression {t:?} looks like a five-field Unix cron: EventBridge reads six fields with a year, inside cron(...), and one of day-of-month and day-of-week must be ?, e.g. cron(0 9 ? * MON-FRI *)"
            ));
        }
        Err(format!(
            "the expression {t:?} is not one EventBridge Scheduler reads: {FORMS}"
        ))
    }

    /// The first firing strictly after `after`, read in `tz`; `anchor` is
    /// when a rate's counting starts (the schedule's creation). `None` when
    /// it never fires again (a past `at`, a cron whose years are over).
    /// `rate_override` replaces a rate's period (a test-only interval).
    pub fn next_after(
        &self,
        tz: Tz,
        anchor: DateTime<Utc>,
        after: DateTime<Utc>,
        rate_override: Option<Duration>,
    ) -> Option<DateTime<Utc>> {
        match self {
            Self::Rate { period } => {
                let period = rate_override.unwrap_or(*period);
                let ms = period.num_milliseconds().max(1);
                if after < anchor {
                    return Some(anchor + period);
                }
                let elapsed = (after - anchor).num_milliseconds();
                let k = elapsed / ms + 1;
                Some(anchor + Duration::milliseconds(k * ms))
            }
            Self::At(local) => {
                let at = to_utc(tz, *local)?;
                (at > after).then_some(at)
            }
            Self::Cron(cron) => cron.next_after(tz, after),
        }
    }
}

fn to_utc(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    // A time a DST change skips does not fire; a repeated one fires once.
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

fn parse_rate(body: &str) -> Result<Duration, String> {
    let fix = "write rate(N unit) with a whole N of at least 1 and the unit minute, minutes, hour, hours, day or days, e.g. rate(5 minutes)";
    let mut parts = body.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("rate({body}) is not a rate: {fix}"));
    };
    let Ok(n) = n.parse::<i64>() else {
        return Err(format!("rate({body}): {n:?} is not a whole number: {fix}"));
    };
    if n < 1 {
        return Err(format!(
            "rate({body}) is under a minute: schedules fire at most once a minute, use rate(1 minute) or more"
        ));
    }
    let (seconds, singular) = match unit {
        "minute" | "minutes" => (60, "minute"),
        "hour" | "hours" => (3600, "hour"),
        "day" | "days" => (86_400, "day"),
        "second" | "seconds" => {
            return Err(format!(
                "rate({body}) is under a minute: schedules fire at most once a minute, use rate(1 minute) or more"
            ))
        }
        _ => return Err(format!("rate({body}): {unit:?} is not a unit: {fix}")),
    };
    let plural = unit.ends_with('s');
    if n == 1 && plural {
        return Err(format!(
            "rate({body}): EventBridge wants the singular unit for 1: write rate(1 {singular})"
        ));
    }
    if n > 1 && !plural {
        return Err(format!(
            "rate({body}): EventBridge wants the plural unit above 1: write rate({n} {singular}s)"
        ));
    }
    n.checked_mul(seconds)
        .map(Duration::seconds)
        .ok_or_else(|| format!("rate({body}) is too long: {fix}"))
}

/// A checked six-field cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<u32>,
    hours: Vec<u32>,
    /// Day of month, when it is not `?`.
    dom: Option<DayOfMonth>,
    months: Vec<u32>,
    /// Day of week, when it is not `?`.
    dow: Option<DayOfWeek>,
    years: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DayOfMonth {
    Days(Vec<u32>),
    Last,
    NearestWeekday(u32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum DayOfWeek {
    /// 1 = SUN .. 7 = SAT.
    Days(Vec<u32>),
    /// The last such weekday of the month (`6L`).
    Last(u32),
    /// The nth such weekday of the month (`6#3`).
    Nth(u32, u32),
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Cron {
    /// Parses the six fields inside `cron(...)`.
    ///
    /// # Errors
    /// A sentence naming the field and the fix.
    pub fn parse(body: &str) -> Result<Self, String> {
        let fields: Vec<&str> = body.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(format!(
                "cron({body}) has {} fields: EventBridge reads six, minutes hours day-of-month month day-of-week year, e.g. cron(0 9 ? * MON-FRI *)",
                fields.len()
            ));
        }
        let q = |f: &str| f == "?";
        match (q(fields[2]), q(fields[4])) {
            (true, true) | (false, false) => {
                return Err(format!(
                    "cron({body}): exactly one of day-of-month (3rd field) and day-of-week (5th field) must be ?, e.g. cron(0 9 ? * MON-FRI *) or cron(0 9 1 * ? *)"
                ))
            }
            _ => {}
        }
        let field = |i: usize, name: &str, lo: u32, hi: u32, names: &[&str]| {
            parse_list(fields[i], lo, hi, names)
                .map_err(|why| format!("cron({body}): the {name} field {:?} {why}", fields[i]))
        };
        let minutes = field(0, "minutes", 0, 59, &[])?;
        let hours = field(1, "hours", 0, 23, &[])?;
        let months = field(3, "month", 1, 12, &MONTHS)?;
        let years = field(5, "year", 1970, 2199, &[])?;
        let dom = if q(fields[2]) {
            None
        } else {
            let f = fields[2];
            Some(if f == "L" {
                DayOfMonth::Last
            } else if let Some(n) = f.strip_suffix('W') {
                match n.parse::<u32>() {
                    Ok(n @ 1..=31) => DayOfMonth::NearestWeekday(n),
                    _ => return Err(format!("cron({body}): the day-of-month field {f:?} is not valid: nW takes a day from 1 to 31, e.g. 15W")),
                }
            } else {
                DayOfMonth::Days(field(2, "day-of-month", 1, 31, &[])?)
            })
        };
        let dow = if q(fields[4]) {
            None
        } else {
            let f = fields[4];
            let day = |s: &str| parse_value(s, 1, 7, &DAYS);
            let bad = |why: String| format!("cron({body}): the day-of-week field {f:?} {why}");
            Some(
                if let Some(d) = f.strip_suffix('L').filter(|d| !d.is_empty()) {
                    DayOfWeek::Last(day(d).map_err(bad)?)
                } else if f == "L" {
                    DayOfWeek::Last(7)
                } else if let Some((d, n)) = f.split_once('#') {
                    let n = match n.parse::<u32>() {
                        Ok(n @ 1..=5) => n,
                        _ => {
                            return Err(bad(
                                "is not valid: in DAY#N, N is from 1 to 5, e.g. MON#1".into()
                            ))
                        }
                    };
                    DayOfWeek::Nth(day(d).map_err(bad)?, n)
                } else {
                    DayOfWeek::Days(field(4, "day-of-week", 1, 7, &DAYS)?)
                },
            )
        };
        Ok(Self {
            minutes,
            hours,
            dom,
            months,
            dow,
            years,
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let last = last_day(date.year(), date.month());
        if let Some(dom) = &self.dom {
            return match dom {
                DayOfMonth::Days(days) => days.contains(&date.day()),
                DayOfMonth::Last => date.day() == last,
                DayOfMonth::NearestWeekday(n) => {
                    nearest_weekday(date.year(), date.month(), (*n).min(last)) == date.day()
                }
            };
        }
        // 1 = SUN .. 7 = SAT.
        let weekday = date.weekday().num_days_from_sunday() + 1;
        match &self.dow {
            Some(DayOfWeek::Days(days)) => days.contains(&weekday),
            Some(DayOfWeek::Last(d)) => *d == weekday && date.day() + 7 > last,
            Some(DayOfWeek::Nth(d, n)) => *d == weekday && (date.day() - 1) / 7 + 1 == *n,
            None => true,
        }
    }

    /// The first firing strictly after `after`, read in `tz`.
    pub fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&tz).naive_local();
        // The next whole minute after `after`.
        let mut t = local.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let last_year = *self.years.last()? as i32;
        while t.year() <= last_year {
            let date = t.date();
            if !self.years.contains(&(t.year() as u32)) {
                t = NaiveDate::from_ymd_opt(t.year() + 1, 1, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.months.contains(&t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.day_matches(date) {
                t = date.succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.hours.contains(&t.hour()) {
                t = date.and_hms_opt(t.hour(), 0, 0)? + Duration::hours(1);
                continue;
            }
            if !self.minutes.contains(&t.minute()) {
                t += Duration::minutes(1);
                continue;
            }
            match to_utc(tz, t) {
                Some(utc) if utc > after => return Some(utc),
                _ => t += Duration::minutes(1),
            }
        }
        None
    }
}

fn last_day(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

/// The weekday nearest day `n` of the month, within the month.
fn nearest_weekday(year: i32, month: u32, n: u32) -> u32 {
    let Some(date) = NaiveDate::from_ymd_opt(year, month, n) else {
        return n;
    };
    let last = last_day(year, month);
    match date.weekday() {
        chrono::Weekday::Sat if n == 1 => 3,
        chrono::Weekday::Sat => n - 1,
        chrono::Weekday::Sun if n == last => n - 2,
        chrono::Weekday::Sun => n + 1,
        _ => n,
    }
}

fn parse_value(s: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u32, String> {
    let upper = s.to_ascii_uppercase();
    if let Some(i) = names.iter().position(|n| *n == upper) {
        return Ok(lo + i as u32);
    }
    match s.parse::<u32>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ if names.is_empty() => Err(format!("is not valid: {s:?} must be from {lo} to {hi}")),
        _ => Err(format!(
            "is not valid: {s:?} must be from {lo} to {hi} or one of {}",
            names.join(",")
        )),
    }
}

/// A field of values: `*`, `a`, `a-b`, `a/s`, `*/s`, `a-b/s`, joined by `,`.
fn parse_list(field: &str, lo: u32, hi: u32, names: &[&str]) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(s) if s >= 1 => (r, s),
                _ => return Err(format!("is not valid: the step after / in {part:?} must be a whole number of at least 1")),
            },
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (
                parse_value(a, lo, hi, names)?,
                parse_value(b, lo, hi, names)?,
            );
            if a > b {
                return Err(format!(
                    "is not valid: the range {range:?} runs backwards; write it from low to high"
                ));
            }
            (a, b)
        } else {
            let a = parse_value(range, lo, hi, names)?;
            (a, if part.contains('/') { hi } else { a })
        };
        out.extend((from..=to).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The time zone `name` (IANA, e.g. `Europe/Paris`; `UTC` when empty).
///
/// # Errors
/// A sentence with the fix.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>().map_err(|_| {
        format!("the time zone {name:?} is not an IANA time zone name: use one such as UTC, Europe/Paris or America/New_York")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn good_expressions_parse() {
        for e in [
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(2 hours)",
            "rate(1 day)",
            "cron(0 9 ? * MON-FRI *)",
            "cron(0/15 * * * ? *)",
            "cron(0 12 L * ? 2030-2040)",
            "cron(0 8 ? * 6#3 *)",
            "cron(0 8 ? * FRIL *)",
            "cron(30 2 15W JAN,JUL ? *)",
            "at(2030-01-31T09:00:00)",
        ] {
            Expression::parse(e).unwrap_or_else(|why| panic!("{e}: {why}"));
        }
    }

    #[test]
    fn bad_expressions_say_the_fix() {
        for (e, needle) in [
            ("rate(30 seconds)", "use rate(1 minute) or more"),
            ("rate(0 minutes)", "under a minute"),
            ("rate(1 minutes)", "write rate(1 minute)"),
            ("rate(5 minute)", "write rate(5 minutes)"),
            ("rate(5 weeks)", "is not a unit"),
            ("rate(five minutes)", "not a whole number"),
            ("0 9 * * 1", "five-field Unix cron"),
            ("cron(0 9 * * MON *)", "exactly one of day-of-month"),
            ("cron(0 9 ? * ? *)", "exactly one of day-of-month"),
            ("cron(0 9 ? * MON-FRI)", "six"),
            ("cron(60 9 ? * MON *)", "the minutes field \"60\""),
            ("cron(0 24 ? * MON *)", "from 0 to 23"),
            ("cron(0 9 ? FOO MON *)", "JAN,FEB"),
            ("cron(0 9 ? * FRI-MON *)", "runs backwards"),
            ("cron(0 9 ? * 2#6 *)", "N is from 1 to 5"),
            ("at(tomorrow)", "at(yyyy-mm-ddThh:mm:ss)"),
            ("every 5 minutes", "rate(5 minutes)"),
        ] {
            let why = Expression::parse(e).expect_err(e);
            assert!(why.contains(needle), "{e}: {why}");
        }
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(parse_timezone("").unwrap(), Tz::UTC);
        assert_eq!(parse_timezone("Europe/Paris").unwrap(), Tz::Europe__Paris);
        let why = parse_timezone("CEST+2").unwrap_err();
        assert!(why.contains("Europe/Paris"), "{why}");
    }

    #[test]
    fn cron_firings_are_read_in_the_time_zone() {
        let e = Expression::parse("cron(0 9 ? * MON-FRI *)").unwrap();
        let anchor = utc("2030-01-01T00:00:00Z");
        // Friday 2030-01-04 10:00 UTC: the next is Monday 09:00 Paris = 08:00 UTC.
        let next = e.next_after(Tz::Europe__Paris, anchor, utc("2030-01-04T10:00:00Z"), None);
        assert_eq!(next, Some(utc("2030-01-07T08:00:00Z")));
        let e = Expression::parse("cron(0/15 * * * ? *)").unwrap();
        let next = e.next_after(Tz::UTC, anchor, utc("2030-01-04T10:14:59Z"), None);
        assert_eq!(next, Some(utc("2030-01-04T10:15:00Z")));
        let next = e.next_after(Tz::UTC, anchor, utc("2030-01-04T10:15:00Z"), None);
        assert_eq!(next, Some(utc("2030-01-04T10:30:00Z")));
        let e = Expression::parse("cron(0 12 L * ? *)").unwrap();
        let next = e.next_after(Tz::UTC, anchor, utc("2030-02-01T00:00:00Z"), None);
        assert_eq!(next, Some(utc("2030-02-28T12:00:00Z")));
        let e = Expression::parse("cron(0 8 ? * 2#1 *)").unwrap();
        let next = e.next_after(Tz::UTC, anchor, utc("2030-02-01T00:00:00Z"), None);
        assert_eq!(next, Some(utc("2030-02-04T08:00:00Z")), "the first Monday");
    }

    #[test]
    fn rates_count_from_the_anchor_and_at_fires_once() {
        let e = Expression::parse("rate(5 minutes)").unwrap();
        let anchor = utc("2030-01-01T00:00:30Z");
        let next = e.next_after(Tz::UTC, anchor, utc("2030-01-01T00:12:00Z"), None);
        assert_eq!(next, Some(utc("2030-01-01T00:15:30Z")));
        let e = Expression::parse("at(2030-01-01T09:00:00)").unwrap();
        assert_eq!(
            e.next_after(Tz::Europe__Paris, anchor, anchor, None),
            Some(utc("2030-01-01T08:00:00Z"))
        );
        assert_eq!(
            e.next_after(Tz::Europe__Paris, anchor, utc("2030-01-01T08:00:00Z"), None),
            None
        );
    }
}
