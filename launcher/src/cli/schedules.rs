//! `plus schedule create|list|show|pause|resume|delete`: the launch request
//! from the command line (as `plus launch` reads it), the schedule
//! operations ([`crate::ops::schedules`]), printing.

use plus_jobs::RunMode;

use super::{args::ScheduleCommand, error::CliError, launch::script_request};
use crate::ops::{
    schedules::{wrap, NewSchedule, Schedule},
    Launcher,
};

/// Runs `plus schedule ...`; returns the exit code.
///
/// # Errors
/// A request that cannot be described, and the operations' errors.
pub async fn run(
    launcher: &Launcher,
    user: &str,
    command: &ScheduleCommand,
    json: bool,
) -> Result<u8, CliError> {
    match command {
        ScheduleCommand::Create {
            name,
            cron,
            rate,
            at,
            timezone,
            script,
            action,
            collection,
            streaming,
            opts,
        } => {
            let expression = match (cron, rate, at) {
                (Some(c), _, _) => wrap("cron", c),
                (_, Some(r), _) => wrap("rate", r),
                (_, _, Some(a)) => wrap("at", a),
                _ => {
                    return Err(CliError::Usage(
                        "a schedule needs --cron EXPR, --rate EXPR or --at TIME".into(),
                    ))
                }
            };
            let usage = |m: &str| Err(CliError::Usage(m.to_owned()));
            let mut request = match (action, collection, script) {
                (Some(action), _, None) => {
                    let mut req = script_request(user, RunMode::RunAction, None, opts)?;
                    req.action_id = Some(action.clone());
                    req
                }
                (Some(action), _, Some(s)) => {
                    return usage(&format!(
                        "an action brings its own script: schedule --action {action} without {}",
                        s.display()
                    ))
                }
                (None, Some(owner), Some(script)) => {
                    let mut req =
                        script_request(user, RunMode::RunCollection, Some(script), opts)?;
                    req.collection_owner = Some(owner.clone());
                    req
                }
                (None, Some(_), None) => {
                    return usage("--collection needs a script to run per item: plus schedule create NAME --rate EXPR --collection OWNER SCRIPT")
                }
                (None, None, Some(script)) => {
                    script_request(user, RunMode::RunScript, Some(script), opts)?
                }
                (None, None, None) => {
                    return usage("nothing to schedule: give a SCRIPT, --action ID or --collection OWNER SCRIPT")
                }
            };
            request.streaming = *streaming;
            // Without --name, the jobs are labelled with the schedule's name.
            request.name.clone_from(&opts.name);
            let schedule = launcher
                .create_schedule(NewSchedule {
                    name: name.clone(),
                    expression,
                    timezone: timezone.clone(),
                    request,
                })
                .await?;
            if json {
                println!("{}", schedule.view());
            } else {
                eprintln!(
                    "schedule {} created: {} ({}){}",
                    schedule.name,
                    schedule.expression,
                    schedule.timezone,
                    next(&schedule)
                );
                if schedule.aws_name.is_empty() {
                    eprintln!("  on the local backend `plus serve` fires it while it runs");
                } else {
                    eprintln!(
                        "  EventBridge Scheduler schedule {} invokes the launcher Lambda",
                        schedule.aws_name
                    );
                }
            }
            Ok(0)
        }
        ScheduleCommand::List => {
            let all = launcher.list_schedules(user).await?;
            if json {
                let views: Vec<_> = all.iter().map(Schedule::view).collect();
                println!("{}", serde_json::json!({ "schedules": views }));
            } else if all.is_empty() {
                eprintln!("no schedules: create one with `plus schedule create NAME --rate '1 hour' SCRIPT`");
            } else {
                println!(
                    "{:<24} {:<8} {:<28} {:<16} {:<24} LAST JOB",
                    "NAME", "STATE", "EXPRESSION", "TIME ZONE", "NEXT FIRING"
                );
                for s in &all {
                    println!(
                        "{:<24} {:<8} {:<28} {:<16} {:<24} {}",
                        s.name,
                        s.state,
                        s.expression,
                        s.timezone,
                        s.next_firing(None).unwrap_or_else(|| "-".into()),
                        if s.last_job_id.is_empty() {
                            "-"
                        } else {
                            &s.last_job_id
                        }
                    );
                }
            }
            Ok(0)
        }
        ScheduleCommand::Show { name } => {
            let s = launcher.show_schedule(user, name).await?;
            if json {
                println!("{}", s.view());
            } else {
                println!("{}", serde_json::to_string_pretty(&s.view())?);
            }
            Ok(0)
        }
        ScheduleCommand::Pause { name } | ScheduleCommand::Resume { name } => {
            let enable = matches!(command, ScheduleCommand::Resume { .. });
            let s = launcher.set_schedule_state(user, name, enable).await?;
            if json {
                println!("{}", s.view());
            } else if enable {
                eprintln!("schedule {name} resumed{}", next(&s));
            } else {
                eprintln!(
                    "schedule {name} paused: it fires again after `plus schedule resume {name}`"
                );
            }
            Ok(0)
        }
        ScheduleCommand::Delete { name } => {
            let s = launcher.delete_schedule(user, name).await?;
            if json {
                println!("{}", serde_json::json!({ "deleted": s.name }));
            } else {
                eprintln!("schedule {name} deleted (the jobs it launched are kept)");
            }
            Ok(0)
        }
    }
}

fn next(s: &Schedule) -> String {
    s.next_firing(None)
        .map(|n| format!(", next firing {n}"))
        .unwrap_or_default()
}
