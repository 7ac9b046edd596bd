//! `plus run`, `plus launch` and `plus retry`: the launch request from the
//! command line, then the launched job reported or followed to its end.

use std::path::PathBuf;

use plus_jobs::{job::status_name, retry::RetryRule, RunMode};

use super::{
    args::{Command, ScriptOpts},
    error::CliError,
    follow::{follow, Printer},
    print::{exit_for, print_json, print_summary},
};
use crate::ops::{request::parse_params, shards::shard_id, LaunchRequest, Launched, Launcher};

/// `plus launch ...`: the request its flags describe, launched (as shards
/// with `--shards N`) and reported.
///
/// # Errors
/// A launch that cannot be described or fails.
pub async fn run_launch(
    command: &Command,
    json: bool,
    launcher: &Launcher,
    user: &str,
) -> Result<u8, CliError> {
    let Command::Launch {
        script,
        action,
        collection,
        streaming,
        wait,
        shards,
        tolerated_failures,
        tolerated_failure_percent,
        opts,
    } = command
    else {
        return Err(CliError::Usage("not a launch".into()));
    };
    let usage = |m: &str| Err(CliError::Usage(m.to_owned()));
    let mut req = match (action, collection) {
        (Some(action), _) => {
            let mut req = script_request(user, RunMode::RunAction, None, opts)?;
            req.action_id = Some(action.clone());
            if let Some(script) = script {
                // Refused with the reason by the request's own checks.
                req.script = Some(Vec::new());
                req.script_name = script.display().to_string();
            }
            req
        }
        (None, Some(owner)) => {
            let Some(script) = script else {
                return usage("--collection needs a script to run per item: plus launch --collection OWNER SCRIPT");
            };
            let mut req = script_request(user, RunMode::RunCollection, Some(script), opts)?;
            req.collection_owner = Some(owner.clone());
            req
        }
        (None, None) => {
            let Some(script) = script else {
                return usage(
                    "nothing to launch: give a SCRIPT, --action ID or --collection OWNER SCRIPT",
                );
            };
            script_request(user, RunMode::RunScript, Some(script), opts)?
        }
    };
    req.streaming = *streaming;
    req.tolerated_failures = *tolerated_failures;
    req.tolerated_failure_percent = *tolerated_failure_percent;
    if let Some(n) = shards {
        return launch_shards(launcher, user, &req, *n, *wait, json).await;
    }
    launch_and_report(json, launcher, user, req, *wait).await
}

/// The request of a launched script file and its options.
///
/// # Errors
/// An unreadable script, or bad `--param`s.
pub fn script_request(
    user: &str,
    mode: RunMode,
    script: Option<&PathBuf>,
    opts: &ScriptOpts,
) -> Result<LaunchRequest, CliError> {
    let (bytes, name) = match script {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| CliError::ReadScript {
                path: path.display().to_string(),
                source,
            })?;
            (Some(bytes), path.display().to_string())
        }
        None => (None, String::new()),
    };
    Ok(LaunchRequest {
        username: user.to_owned(),
        run_mode: mode,
        script: bytes,
        script_name: name,
        interpreter: opts.interpreter.clone().unwrap_or_default(),
        args: opts.args.clone(),
        params: parse_params(&opts.params)?,
        timeout_seconds: opts.timeout,
        max_attempts: opts.max_attempts,
        retry: retry_rules(opts)?,
        job_id: opts.id.clone(),
        // Without --name, the script's file name labels the job in lists.
        name: opts
            .name
            .clone()
            .or_else(|| script.and_then(|p| default_name(p))),
        priority: opts.priority.unwrap_or(0),
        secrets: plus_jobs::secrets::parse_pairs(&opts.secrets).map_err(CliError::Usage)?,
        resources: plus_jobs::TaskResources {
            cpu: opts.cpu.unwrap_or(0),
            memory: opts.memory.unwrap_or(0),
            ephemeral_storage_gib: opts.storage.unwrap_or(0),
            spot: opts.spot,
            image: opts.image.clone().unwrap_or_default(),
        },
        ..LaunchRequest::default()
    })
}

/// The retry rules of `--retry`, `--retry-on-exit-code` and
/// `--retry-on-reason`, in that order (checked by the launch itself).
///
/// # Errors
/// [`CliError::Usage`] for a `--retry` that is not `key=value,...` with the
/// keys `exit`, `reason`, `status` and `action`.
pub fn retry_rules(opts: &ScriptOpts) -> Result<Vec<RetryRule>, CliError> {
    let mut rules = Vec::new();
    for text in &opts.retry {
        let mut rule = RetryRule {
            action: "RETRY".into(),
            ..RetryRule::default()
        };
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                CliError::Usage(format!(
                    "--retry {text:?}: {part:?} is not key=value; write e.g. --retry exit=3,action=RETRY"
                ))
            })?;
            let slot = match key.trim() {
                "exit" | "on_exit_code" => &mut rule.on_exit_code,
                "reason" | "on_reason" => &mut rule.on_reason,
                "status" | "on_status_reason" => &mut rule.on_status_reason,
                "action" => &mut rule.action,
                other => {
                    return Err(CliError::Usage(format!(
                        "--retry {text:?}: unknown key {other:?}; the keys are exit, reason, status and action"
                    )))
                }
            };
            *slot = value.to_owned();
        }
        rules.push(rule);
    }
    let retry = |on_exit_code: String, on_reason: String| RetryRule {
        on_exit_code,
        on_reason,
        action: "RETRY".into(),
        ..RetryRule::default()
    };
    rules.extend(
        opts.retry_on_exit_code
            .iter()
            .map(|c| retry(c.clone(), String::new())),
    );
    rules.extend(
        opts.retry_on_reason
            .iter()
            .map(|r| retry(String::new(), r.clone())),
    );
    Ok(rules)
}

/// Launches `req` and reports it; with `wait`, follows it to its end.
///
/// # Errors
/// As [`Launcher::launch`] and [`follow`].
pub async fn launch_and_report(
    json: bool,
    launcher: &Launcher,
    user: &str,
    req: LaunchRequest,
    wait: bool,
) -> Result<u8, CliError> {
    let launched = if wait {
        launcher.following().launch(&req).await?
    } else {
        launcher.launch(&req).await?
    };
    report_launched(json, launcher, user, launched, wait).await
}

/// Prints a launched job (`--json`: one object); with `wait`, follows it
/// to its end and returns the exit code (0 only if it succeeded).
///
/// # Errors
/// As [`follow`].
pub async fn report_launched(
    json: bool,
    launcher: &Launcher,
    user: &str,
    launched: Launched,
    wait: bool,
) -> Result<u8, CliError> {
    let id = launched.job.object_id.clone();
    if !wait {
        if json {
            println!(
                "{}",
                serde_json::json!({ "job_id": id, "status": status_name(launched.job.status()), "created": launched.created })
            );
        } else {
            eprintln!("launched job {id} ({})", status_name(launched.job.status()));
            eprintln!("  follow it: plus events {id} --follow");
        }
        return Ok(0);
    }
    if !json {
        eprintln!("● job {id} launched");
    }
    // Ctrl-C reaches the worker too (same process group): it stops the
    // script and saves the job as INTERRUPTED, and we wait to show that.
    let ctrl_c = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pressed = ctrl_c.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            pressed.store(true, std::sync::atomic::Ordering::SeqCst);
            if !json {
                eprintln!("\nstopping: the worker saves the job's state first...");
            }
        }
    });
    let printer = Printer {
        stdout_to_stderr: json,
        statuses: !json,
    };
    let mut job = follow(launcher, user, &id, launched.worker, printer, 0, &ctrl_c).await?;
    let stopped_by_you = job.status() == plus_jobs::JobStatus::Interrupted
        && ctrl_c.load(std::sync::atomic::Ordering::SeqCst);
    if stopped_by_you {
        // A person's stop, not a Spot interruption: the monitor leaves it
        // for `plus retry`.
        job = launcher.stopped_by_user(&job).await?;
    }
    if json {
        print_json(&job)?;
    } else if stopped_by_you {
        let took = super::follow::duration(&job)
            .map(|d| format!(" after {d}"))
            .unwrap_or_default();
        eprintln!("■ job {id} stopped by you (Ctrl-C){took}; its state was saved");
        eprintln!("  resume it: plus retry {id} --wait");
    } else {
        print_summary(&job);
    }
    Ok(if stopped_by_you {
        EXIT_STOPPED
    } else {
        exit_for(&job)
    })
}

/// The exit code of `plus run` (or `--wait`) stopped with Ctrl-C: 128 +
/// SIGINT, as a shell reports a program Ctrl-C ended.
pub const EXIT_STOPPED: u8 = 130;

/// `plus launch --collection OWNER SCRIPT --shards N [--wait]`: launches the
/// shards and, with `wait`, follows the parent to its end. Returns the exit
/// code (0 only if every shard succeeded, when followed).
///
/// # Errors
/// As [`Launcher::launch_shards`], and store errors while following.
pub async fn launch_shards(
    launcher: &Launcher,
    user: &str,
    req: &LaunchRequest,
    count: u32,
    wait: bool,
    json: bool,
) -> Result<u8, CliError> {
    let launched = if wait {
        launcher.following().launch_shards(req, count).await?
    } else {
        launcher.launch_shards(req, count).await?
    };
    let id = launched.parent.object_id.clone();
    let shard_ids: Vec<String> = (0..count.max(1))
        .filter(|_| count > 1)
        .map(|i| shard_id(&id, i))
        .collect();
    if !wait {
        if json {
            println!(
                "{}",
                serde_json::json!({ "job_id": id, "status": status_name(launched.parent.status()), "shards": shard_ids })
            );
        } else {
            eprintln!(
                "launched job {id} as {count} shards ({})",
                shard_ids.join(", ")
            );
            eprintln!("  follow it: plus status {id}");
        }
        return Ok(0);
    }
    if !json {
        eprintln!(
            "● job {id} launched as {count} shards: {}",
            shard_ids.join(", ")
        );
    }
    let printer = Printer {
        stdout_to_stderr: json,
        statuses: !json,
    };
    let worker = if count == 1 {
        launched.workers.into_iter().next()
    } else {
        None
    };
    let job = follow(launcher, user, &id, worker, printer, 0, &Default::default()).await?;
    if json {
        print_json(&job)?;
    } else {
        print_summary(&job);
    }
    Ok(exit_for(&job))
}

/// The label of a job launched from `path` without `--name`: its file
/// name, when it is one a name may be (printable, at most 200 characters).
fn default_name(path: &std::path::Path) -> Option<String> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    (name.chars().count() <= 200 && !name.chars().any(char::is_control)).then_some(name)
}
