//! Retry rules: when an attempt that failed is tried again, in the shape of
//! AWS Batch's `evaluateOnExit` ([`RetryRule`]). The worker applies them to
//! a script's exit, the launcher's monitor to a stopped task; both ask
//! [`decide`] with what they know ([`Failure`]).
//!
//! Unlike Batch, where a failure no rule matches is retried, here it fails:
//! a job without rules behaves as it did before rules existed.

pub use plus_proto::RetryRule;

/// A job's attempts when `max_attempts` is not set.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Whether `job` may have another attempt (`attempt` below `max_attempts`,
/// default [`DEFAULT_MAX_ATTEMPTS`]).
pub fn attempts_left(job: &plus_proto::Job) -> bool {
    job.attempt.unwrap_or(1) < job.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
}

/// Batch's bound on the rules of one job.
pub const MAX_RULES: usize = 5;

/// Batch's bound on one pattern.
pub const MAX_PATTERN: usize = 512;

/// What a rule decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAction {
    /// A new attempt while `max_attempts` allows.
    Retry,
    /// FAILED now.
    Exit,
}

/// What is known about a failed attempt.
#[derive(Clone, Copy, Debug, Default)]
pub struct Failure<'a> {
    /// The exit code (the script's, or the worker container's).
    pub exit_code: Option<i32>,
    /// The container's reason (or, for a script, the error sentence).
    pub reason: &'a str,
    /// The task's stopped reason (or, for a script, the error sentence).
    pub status_reason: &'a str,
}

/// Whether `text` matches `pattern`: equal, or starting with what precedes
/// a final `*`.
pub fn glob(pattern: &str, text: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => text == pattern,
    }
}

fn action(rule: &RetryRule) -> Option<RetryAction> {
    match rule.action.to_ascii_uppercase().as_str() {
        "RETRY" => Some(RetryAction::Retry),
        "EXIT" => Some(RetryAction::Exit),
        _ => None,
    }
}

/// Whether every condition `rule` sets holds for `failure`.
pub fn matches(rule: &RetryRule, failure: &Failure<'_>) -> bool {
    let exit = failure.exit_code.map(|c| c.to_string());
    let code_ok = rule.on_exit_code.is_empty()
        || exit.as_deref().is_some_and(|c| glob(&rule.on_exit_code, c));
    let reason_ok = rule.on_reason.is_empty() || glob(&rule.on_reason, failure.reason);
    let status_ok =
        rule.on_status_reason.is_empty() || glob(&rule.on_status_reason, failure.status_reason);
    code_ok && reason_ok && status_ok
}

/// The action of the first rule that matches `failure`, if any does.
pub fn decide(rules: &[RetryRule], failure: &Failure<'_>) -> Option<RetryAction> {
    rules.iter().find(|r| matches(r, failure)).and_then(action)
}

/// A job's rules, or (for a job of an action without rules of its own) its
/// action's.
pub fn effective<'a>(job: &'a [RetryRule], action: &'a [RetryRule]) -> &'a [RetryRule] {
    if job.is_empty() {
        action
    } else {
        job
    }
}

/// Checks `rules` as Batch does, naming the first problem in a sentence:
/// at most 5 rules; `action` RETRY or EXIT; `on_exit_code` digits with an
/// optional final `*`; `on_reason` and `on_status_reason` ASCII letters,
/// digits, `.`, `:`, spaces and tabs with an optional final `*`; each at most 512
/// characters.
///
/// # Errors
/// The sentence, naming the rule (from 1) and the field.
pub fn validate(rules: &[RetryRule]) -> Result<(), String> {
    if rules.len() > MAX_RULES {
        return Err(format!(
            "{} retry rules were given: at most {MAX_RULES} are allowed (as in AWS Batch)",
            rules.len()
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        let n = i + 1;
        if action(rule).is_none() {
            return Err(format!(
                "retry rule {n}: action {:?} is not RETRY or EXIT",
                rule.action
            ));
        }
        let fields = [
            ("on_exit_code", &rule.on_exit_code, true),
            ("on_reason", &rule.on_reason, false),
            ("on_status_reason", &rule.on_status_reason, false),
        ];
        for (name, pattern, digits) in fields {
            if pattern.chars().count() > MAX_PATTERN {
                return Err(format!(
                    "retry rule {n}: {name} is longer than {MAX_PATTERN} characters"
                ));
            }
            let body = pattern.strip_suffix('*').unwrap_or(pattern);
            let ok = |c: char| {
                if digits {
                    c.is_ascii_digit()
                } else {
                    c.is_ascii_alphanumeric() || ".: \t".contains(c)
                }
            };
            if let Some(bad) = body.chars().find(|c| !ok(*c)) {
                let allowed = if digits {
                    "digits"
                } else {
                    "letters, digits, '.', ':' and spaces"
                };
                return Err(format!(
                    "retry rule {n}: {name} {pattern:?} has {bad:?}: a pattern holds only {allowed}, and may end with one '*'"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(code: &str, reason: &str, status: &str, action: &str) -> RetryRule {
        RetryRule {
            on_exit_code: code.into(),
            on_reason: reason.into(),
            on_status_reason: status.into(),
            action: action.into(),
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = [
            rule("3", "", "", "retry"),
            rule("12*", "", "", "EXIT"),
            rule("", "OutOfMemory*", "", "Retry"),
        ];
        let code = |c| Failure {
            exit_code: Some(c),
            ..Failure::default()
        };
        assert_eq!(decide(&rules, &code(3)), Some(RetryAction::Retry));
        assert_eq!(decide(&rules, &code(123)), Some(RetryAction::Exit));
        assert_eq!(decide(&rules, &code(31)), None);
        let oom = Failure {
            exit_code: Some(137),
            reason: "OutOfMemoryError: Container killed due to memory usage",
            status_reason: "Essential container in task exited",
        };
        assert_eq!(decide(&rules, &oom), Some(RetryAction::Retry));
        assert_eq!(decide(&rules, &Failure::default()), None);
        // Every condition set must hold.
        let both = [rule("2", "x*", "", "RETRY")];
        assert_eq!(decide(&both, &code(2)), None);
    }

    #[test]
    fn bad_rules_are_named() {
        assert!(validate(&[rule("3", "Task failed to start*", "", "exit")]).is_ok());
        let e = validate(&vec![rule("1", "", "", "RETRY"); 6]).unwrap_err();
        assert!(e.contains("at most 5"), "{e}");
        let e = validate(&[rule("3", "", "", "again")]).unwrap_err();
        assert!(e.contains("rule 1: action \"again\""), "{e}");
        let e = validate(&[rule("3*1", "", "", "RETRY")]).unwrap_err();
        assert!(e.contains("on_exit_code \"3*1\" has '*'"), "{e}");
        let e = validate(&[rule("", "a*b*", "", "RETRY")]).unwrap_err();
        assert!(e.contains("on_reason"), "{e}");
        let e = validate(&[rule("", "", "(x)", "RETRY")]).unwrap_err();
        assert!(e.contains("on_status_reason"), "{e}");
    }
}
