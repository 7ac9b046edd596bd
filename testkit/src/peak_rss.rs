//! The peak resident memory of one process, measured as GNU time does.
//!
//! A direct child of a test process cannot be measured by the parent's
//! `RUSAGE_CHILDREN` or by its own `ru_maxrss`: at `exec` Linux records the
//! memory the child shared with its parent (the whole test process) into the
//! child's peak. GNU time is a small process that forks the program and reads
//! its `wait4` usage, so the peak it reports is the program's own.

use std::{
    path::Path,
    process::{Command, Stdio},
};

/// Where GNU time is installed (Debian package `time`).
const GNU_TIME: &str = "/usr/bin/time";

/// Starts `program` with exactly `vars` as its environment, under GNU time,
/// which writes the program's peak RSS (KiB) to `report`. The program's
/// stdout and stderr are piped, its stdin is empty; the exit code is the
/// program's.
///
/// # Panics
/// When GNU time is not installed (`scripts/test.sh` installs it).
pub fn spawn(program: &str, vars: &[(String, String)], report: &Path) -> tokio::process::Child {
    assert!(
        Path::new(GNU_TIME).exists(),
        "{GNU_TIME} is missing: install GNU time (apt-get install time) or run scripts/test.sh"
    );
    let mut cmd = Command::new(GNU_TIME);
    cmd.arg("--format=%M")
        .arg(format!("--output={}", report.display()))
        .arg(program)
        .env_clear()
        .envs(vars.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .expect("GNU time starts the program")
}

/// The peak RSS in MiB that [`spawn`] wrote to `report` once the program
/// ended.
///
/// # Panics
/// When the report is missing or not a number.
pub fn mib(report: &Path) -> f64 {
    let text = std::fs::read_to_string(report).expect("GNU time wrote its report");
    let kib: f64 = text
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no peak RSS in GNU time's report: {text:?}"));
    kib / 1024.0
}
