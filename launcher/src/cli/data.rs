//! `plus collection ...` and `plus action ...`: reading files, calling
//! the data operations ([`crate::ops::data`]), printing.

use std::io::Write;

use plus_jobs::Script;
use serde_json::Value;

use super::{
    args::{ActionCommand, CollectionCommand},
    error::CliError,
};
use crate::ops::{request::parse_params, Launcher};

/// Runs `plus collection ...`; returns the exit code: 1 when an import
/// refused any item (each is named with its line).
///
/// # Errors
/// As [`Launcher::import_items`] and [`Launcher::list_items`], or an
/// unreadable file.
pub async fn run_collection(
    launcher: &Launcher,
    username: &str,
    command: &CollectionCommand,
    json: bool,
) -> Result<u8, CliError> {
    match command {
        CollectionCommand::Import { owner, file } => {
            let started = std::time::Instant::now();
            let report = if file.as_os_str() == "-" {
                launcher
                    .import_items(username, owner, std::io::stdin().lock())
                    .await?
            } else {
                let f = std::fs::File::open(file).map_err(|source| CliError::ReadItems {
                    path: file.display().to_string(),
                    source,
                })?;
                launcher
                    .import_items(username, owner, std::io::BufReader::new(f))
                    .await?
            };
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                for r in &report.refused {
                    eprintln!(
                        "line {}: item {} was not imported: its id is taken by another object (nothing was written for it): give the item another id",
                        r.line, r.id
                    );
                }
                eprintln!(
                    "imported {} into {owner} in {:.1} s{}",
                    super::print::count(report.imported, "item"),
                    started.elapsed().as_secs_f64(),
                    if report.refused.is_empty() {
                        String::new()
                    } else {
                        format!("; {} refused", report.refused.len())
                    }
                );
            }
            if !report.refused.is_empty() {
                return Ok(1);
            }
        }
        CollectionCommand::List { owner, limit } => {
            let mut out = std::io::stdout().lock();
            let mut start: Option<String> = None;
            let mut printed = 0usize;
            loop {
                let want = if *limit == 0 {
                    1000
                } else {
                    (*limit - printed).min(1000)
                };
                let page = launcher
                    .list_items(username, owner, start.as_deref(), want)
                    .await?;
                for item in &page.items {
                    writeln!(out, "{}", Value::Object(item.clone()))?;
                }
                printed += page.items.len();
                match page.next {
                    Some(next) if *limit == 0 || printed < *limit => start = Some(next),
                    _ => break,
                }
            }
            if printed == 0 && !json {
                eprintln!("{owner} has no items: import some with `plus collection import {owner} items.jsonl`");
            }
        }
    }
    Ok(0)
}

/// Runs `plus action ...`; returns the exit code.
///
/// # Errors
/// As [`Launcher::put_action`] and [`Launcher::get_action`], or an
/// unreadable script.
pub async fn run_action(
    launcher: &Launcher,
    username: &str,
    command: &ActionCommand,
    json: bool,
) -> Result<u8, CliError> {
    match command {
        ActionCommand::Put {
            id,
            script,
            params,
            interpreter,
            secrets,
        } => {
            let source =
                std::fs::read_to_string(script).map_err(|source| CliError::ReadAction {
                    path: script.display().to_string(),
                    source,
                })?;
            let script = Script {
                source,
                interpreter: interpreter.clone().unwrap_or_default(),
                ..Script::default()
            };
            let params = parse_params(params)?;
            let secrets = plus_jobs::secrets::parse_pairs(secrets).map_err(CliError::Usage)?;
            let action = launcher
                .put_action(username, id, script, params, secrets)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&action)?);
            } else {
                eprintln!("stored action {id}: run it with `plus launch --action {id} --wait`");
            }
        }
        ActionCommand::Get { id } => {
            let action = launcher.get_action(username, id).await?;
            let mut v = serde_json::to_value(&action)?;
            plus_jobs::job::normalize_numbers(&mut v);
            println!(
                "{}",
                if json {
                    v.to_string()
                } else {
                    serde_json::to_string_pretty(&v)?
                }
            );
        }
    }
    Ok(0)
}
