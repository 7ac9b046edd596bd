//! The limits admission keeps, read once from the environment into
//! [`Limits`], every bad value named with its fix.

use std::num::NonZeroUsize;

/// The Fargate On-Demand vCPU quota (Service Quotas, service `fargate`).
pub const FARGATE_VCPU_QUOTA_CODE: &str = "L-3032A538";
/// The vCPU budget when neither `PLUS_MAX_VCPUS` nor Service Quotas says
/// (a new account's Fargate quota).
pub const DEFAULT_MAX_VCPUS: f64 = 6.0;
/// A task's vCPUs when neither the job, `PLUS_DEFAULT_TASK_VCPUS` nor the
/// task definition says (Fargate's smallest task).
pub const FALLBACK_TASK_VCPUS: f64 = 0.25;

/// What may run at once. `None` is unlimited.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// AWS: vCPUs across every running job (`PLUS_MAX_VCPUS`).
    pub max_vcpus: Option<f64>,
    /// Local: workers running on this machine (`PLUS_MAX_RUNNING`).
    pub max_running: Option<u32>,
    /// Running jobs per user (`PLUS_MAX_RUNNING_PER_USER`).
    pub max_running_per_user: Option<u32>,
    /// A task's vCPUs when the job does not say (`PLUS_DEFAULT_TASK_VCPUS`);
    /// else the task definition's.
    pub default_task_vcpus: Option<f64>,
}

impl Limits {
    /// Whether nothing is limited (admission then reads nothing).
    pub fn unlimited(&self) -> bool {
        self.max_vcpus.is_none()
            && self.max_running.is_none()
            && self.max_running_per_user.is_none()
    }

    /// The local backend's limits from variables (`get` reads one):
    /// `PLUS_MAX_RUNNING` defaults to the number of cores.
    ///
    /// # Errors
    /// Every invalid variable, each named with what it takes.
    pub fn local_from(get: impl Fn(&str) -> Option<String>) -> Result<Limits, Vec<String>> {
        let mut problems = Vec::new();
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let max_running = count(&get, "PLUS_MAX_RUNNING", &mut problems)
            .unwrap_or(u32::try_from(cores).unwrap_or(u32::MAX));
        let per_user = count(&get, "PLUS_MAX_RUNNING_PER_USER", &mut problems);
        finish(
            Limits {
                max_running: Some(max_running),
                max_running_per_user: per_user,
                ..Limits::default()
            },
            problems,
        )
    }

    /// The AWS backend's limits from variables. `PLUS_MAX_VCPUS` left
    /// unset stays `None` here: [`Limits::resolve_aws`] asks Service Quotas.
    ///
    /// # Errors
    /// Every invalid variable, each named with what it takes.
    pub fn aws_from(get: impl Fn(&str) -> Option<String>) -> Result<Limits, Vec<String>> {
        let mut problems = Vec::new();
        let max_vcpus = vcpus(&get, "PLUS_MAX_VCPUS", &mut problems);
        let per_user = count(&get, "PLUS_MAX_RUNNING_PER_USER", &mut problems);
        let default_task_vcpus = vcpus(&get, "PLUS_DEFAULT_TASK_VCPUS", &mut problems);
        finish(
            Limits {
                max_vcpus,
                max_running_per_user: per_user,
                default_task_vcpus,
                ..Limits::default()
            },
            problems,
        )
    }

    /// Fills the vCPU budget when `PLUS_MAX_VCPUS` was not set: the
    /// account's Fargate On-Demand vCPU quota when Service Quotas answers
    /// (asked once per process), else [`DEFAULT_MAX_VCPUS`]. A refusal
    /// (no `servicequotas:GetServiceQuota` permission) is not an error.
    pub async fn resolve_aws(mut self, quotas: &aws_sdk_servicequotas::Client) -> Limits {
        if self.max_vcpus.is_none() {
            self.max_vcpus = Some(
                account_vcpu_quota(quotas)
                    .await
                    .unwrap_or(DEFAULT_MAX_VCPUS),
            );
        }
        self
    }
}

/// The account's Fargate On-Demand vCPU quota, read once per process.
async fn account_vcpu_quota(client: &aws_sdk_servicequotas::Client) -> Option<f64> {
    static QUOTA: tokio::sync::OnceCell<Option<f64>> = tokio::sync::OnceCell::const_new();
    *QUOTA
        .get_or_init(|| async {
            let asked = client
                .get_service_quota()
                .service_code("fargate")
                .quota_code(FARGATE_VCPU_QUOTA_CODE)
                .send();
            // Never hold a launch up for long on an optional answer.
            match tokio::time::timeout(std::time::Duration::from_secs(5), asked).await {
                Ok(Ok(out)) => out.quota.and_then(|q| q.value).filter(|v| *v > 0.0),
                Ok(Err(e)) => {
                    tracing::info!(error = %plus_jobs::error_chain(&e), "Service Quotas did not answer; the vCPU budget is {DEFAULT_MAX_VCPUS} (set PLUS_MAX_VCPUS)");
                    None
                }
                Err(_) => None,
            }
        })
        .await
}

fn finish(limits: Limits, problems: Vec<String>) -> Result<Limits, Vec<String>> {
    if problems.is_empty() {
        Ok(limits)
    } else {
        Err(problems)
    }
}

fn count(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<u32> {
    let raw = get(name).filter(|v| !v.trim().is_empty())?;
    match raw.trim().parse::<u32>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            problems.push(format!(
                "{name} is {raw:?}: expected a whole number of jobs, at least 1 (leave it unset for the default)"
            ));
            None
        }
    }
}

fn vcpus(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<f64> {
    let raw = get(name).filter(|v| !v.trim().is_empty())?;
    match raw.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Some(v),
        _ => {
            problems.push(format!(
                "{name} is {raw:?}: expected a number of vCPUs above 0, such as 6 or 0.25 (leave it unset for the default)"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn local_defaults_to_the_cores() {
        let limits = Limits::local_from(vars(&[])).unwrap();
        assert!(limits.max_running.unwrap() >= 1);
        assert_eq!(limits.max_running_per_user, None);
        let limits = Limits::local_from(vars(&[("PLUS_MAX_RUNNING", "2")])).unwrap();
        assert_eq!(limits.max_running, Some(2));
    }

    /// Each knob on each backend: values in its range are taken, and each
    /// value outside it is refused with the knob's name, the value and what
    /// it takes.
    #[test]
    fn every_knob_takes_its_range_and_refuses_each_value_past_it_by_name() {
        type Read = fn(&dyn Fn(&str) -> Option<String>) -> Result<Limits, Vec<String>>;
        /// A knob as one backend reads it.
        struct Knob {
            read: Read,
            name: &'static str,
            field: fn(&Limits) -> Option<f64>,
            good: &'static [&'static str],
            bad: &'static [&'static str],
            takes: &'static str,
        }
        let local: Read = |get| Limits::local_from(get);
        let aws: Read = |get| Limits::aws_from(get);
        let jobs = "expected a whole number of jobs, at least 1";
        let vcpus = "expected a number of vCPUs above 0";
        let knobs = [
            Knob {
                read: local,
                name: "PLUS_MAX_RUNNING",
                field: |l| l.max_running.map(f64::from),
                good: &["1", "64", " 8 "],
                bad: &["0", "-1", "1.5", "many", "4294967296"],
                takes: jobs,
            },
            Knob {
                read: local,
                name: "PLUS_MAX_RUNNING_PER_USER",
                field: |l| l.max_running_per_user.map(f64::from),
                good: &["1", "3"],
                bad: &["0", "-2", "two"],
                takes: jobs,
            },
            Knob {
                read: aws,
                name: "PLUS_MAX_RUNNING_PER_USER",
                field: |l| l.max_running_per_user.map(f64::from),
                good: &["1", "3"],
                bad: &["0", "-2", "two"],
                takes: jobs,
            },
            Knob {
                read: aws,
                name: "PLUS_MAX_VCPUS",
                field: |l| l.max_vcpus,
                good: &["0.25", "6", "4000"],
                bad: &["0", "-1", "NaN", "inf", "lots"],
                takes: vcpus,
            },
            Knob {
                read: aws,
                name: "PLUS_DEFAULT_TASK_VCPUS",
                field: |l| l.default_task_vcpus,
                good: &["0.25", "16"],
                bad: &["0", "-0.5", "NaN", "inf", "big"],
                takes: vcpus,
            },
        ];
        for k in knobs {
            let name = k.name;
            for v in k.good {
                let limits = (k.read)(&vars(&[(name, v)]))
                    .unwrap_or_else(|e| panic!("{name}={v} is in range: {e:?}"));
                assert_eq!((k.field)(&limits), v.trim().parse().ok(), "{name}={v}");
            }
            for v in k.bad {
                let problems = (k.read)(&vars(&[(name, v)]))
                    .err()
                    .unwrap_or_else(|| panic!("{name}={v} is refused"));
                assert_eq!(problems.len(), 1, "{name}={v}: {problems:?}");
                assert!(
                    problems[0].starts_with(&format!("{name} is {v:?}: {}", k.takes)),
                    "{name}={v}: {problems:?}"
                );
            }
        }
    }

    #[test]
    fn every_bad_value_is_named() {
        let err = Limits::aws_from(vars(&[
            ("PLUS_MAX_VCPUS", "lots"),
            ("PLUS_MAX_RUNNING_PER_USER", "0"),
            ("PLUS_DEFAULT_TASK_VCPUS", "-1"),
        ]))
        .unwrap_err();
        assert_eq!(err.len(), 3, "{err:?}");
        assert!(err[0].starts_with("PLUS_MAX_VCPUS is \"lots\""), "{err:?}");
        assert!(err[1].starts_with("PLUS_MAX_RUNNING_PER_USER is \"0\""));
        assert!(err[2].starts_with("PLUS_DEFAULT_TASK_VCPUS"));
        let ok = Limits::aws_from(vars(&[("PLUS_MAX_VCPUS", "0.5")])).unwrap();
        assert_eq!(ok.max_vcpus, Some(0.5));
    }
}
