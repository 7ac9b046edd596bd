//! What keeps a script away from the worker (DESIGN.md, Script contract:
//! Isolation), and what makes sure nothing it starts outlives the job.
//!
//! - [`harden`]: at start, before any thread or child exists, the worker
//!   makes itself non-dumpable (`PR_SET_DUMPABLE` 0: a process of the same
//!   uid without `CAP_SYS_PTRACE` can no longer open its `/proc/PID/environ`,
//!   `mem`, `fd/*`, nor ptrace it) and a child subreaper
//!   (`PR_SET_CHILD_SUBREAPER`: whatever a script leaves behind, `setsid`
//!   daemons and double forks included, becomes the worker's child instead
//!   of PID 1's).
//! - [`ScriptUser`]: who scripts run as (`PLUS_SCRIPT_USER`). A worker
//!   running as root (root has `CAP_SYS_PTRACE`, so being non-dumpable
//!   alone would not stop a root script) runs its scripts as 65534:65534 by
//!   default; [`hand_over`] gives that user the directories it writes.
//! - [`spawn`] starts every script process and registers it; [`reap_strays`]
//!   kills and reaps every other child the worker has (the strays), until
//!   none is left; [`reap_zombies`] reaps the strays that ended on their own.

use std::{
    collections::HashSet,
    io,
    path::Path,
    sync::{Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use nix::{
    errno::Errno,
    sys::{
        prctl,
        signal::{kill, Signal},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::Pid,
};
use tokio::process::{Child, Command};

/// The user scripts run as when the worker runs as root and
/// `PLUS_SCRIPT_USER` is not set: `nobody` (65534:65534).
pub const NOBODY: ScriptUser = ScriptUser {
    uid: 65534,
    gid: 65534,
};

/// What [`harden`] could not do, each a sentence (empty: all done).
static HARDENING: OnceLock<Vec<String>> = OnceLock::new();

/// Makes this process non-dumpable and a child subreaper, once. Call it
/// first thing in `main`, before the runtime's threads and any child
/// exist; [`hardening_problems`] says afterwards what failed.
pub fn harden() {
    HARDENING.get_or_init(|| {
        let mut problems = Vec::new();
        if let Err(e) = prctl::set_dumpable(false) {
            problems.push(format!(
                "the worker could not make itself non-dumpable ({e}): a script running as the worker's user could read its environment through /proc"
            ));
        }
        if let Err(e) = prctl::set_child_subreaper(true) {
            problems.push(format!(
                "the worker could not become a child subreaper ({e}): processes a script detaches (setsid) may outlive the job"
            ));
        }
        problems
    });
}

/// Whether this process is a child subreaper that may kill and reap its
/// strays: only a process that called [`harden`] (the worker binaries) does;
/// a program that runs [`crate::run`] in-process (a test) keeps its other
/// children.
fn reaps() -> bool {
    HARDENING.get().is_some() && prctl::get_child_subreaper().unwrap_or(false)
}

/// What [`harden`] could not do (nothing when it was not called).
pub fn hardening_problems() -> &'static [String] {
    HARDENING.get().map(Vec::as_slice).unwrap_or_default()
}

/// A numeric user and group scripts run as (`PLUS_SCRIPT_USER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptUser {
    /// The user id.
    pub uid: u32,
    /// The group id; supplementary groups are cleared.
    pub gid: u32,
}

impl ScriptUser {
    /// Who scripts run as, from `PLUS_SCRIPT_USER` (`uid` or `uid:gid`; a
    /// lone uid is also the gid) for a worker running as `worker_uid`.
    /// `Ok(None)`: as the worker's own user (the default for a worker that
    /// is not root; for a root worker, `root` or `0` opts out of the
    /// switch). A root worker defaults to [`NOBODY`].
    ///
    /// # Errors
    /// A sentence naming the variable and the fix.
    pub fn from_setting(value: Option<&str>, worker_uid: u32) -> Result<Option<Self>, String> {
        let value = value.map(str::trim).filter(|v| !v.is_empty());
        let Some(value) = value else {
            return Ok((worker_uid == 0).then_some(NOBODY));
        };
        let bad = || {
            format!("PLUS_SCRIPT_USER is {value:?}: expected a numeric uid or uid:gid (such as 65534:65534), or root")
        };
        let user = if value == "root" {
            ScriptUser { uid: 0, gid: 0 }
        } else {
            let (uid, gid) = value.split_once(':').unwrap_or((value, value));
            ScriptUser {
                uid: uid.parse().map_err(|_| bad())?,
                gid: gid.parse().map_err(|_| bad())?,
            }
        };
        if user.uid == worker_uid {
            return Ok(None);
        }
        if worker_uid != 0 {
            return Err(format!(
                "PLUS_SCRIPT_USER is {value:?} but the worker runs as uid {worker_uid}, not root: only root can run scripts as another user; unset it (scripts then run as uid {worker_uid}) or run the worker as root"
            ));
        }
        Ok(Some(user))
    }
}

/// Who scripts run as in this process (`None`: the worker's own user).
static SCRIPT_USER: OnceLock<Option<ScriptUser>> = OnceLock::new();

/// Sets who scripts run as, once per process (the first call wins: a
/// process runs one job, or tests that all use the same setting).
pub fn set_script_user(user: Option<ScriptUser>) {
    let _ = SCRIPT_USER.set(user);
}

/// Who scripts run as (`None`: the worker's own user).
pub fn script_user() -> Option<ScriptUser> {
    SCRIPT_USER.get().copied().flatten()
}

/// Gives `path` to the script's user (when scripts run as another user),
/// without following a symbolic link.
///
/// # Errors
/// When it cannot be changed.
pub fn hand_over(path: &Path) -> io::Result<()> {
    match script_user() {
        Some(u) => std::os::unix::fs::lchown(path, Some(u.uid), Some(u.gid)),
        None => Ok(()),
    }
}

/// Makes sure the script's user can pass through `dir` and every folder
/// above it to reach its workspace: a folder of the worker's that it
/// cannot search gets search permission (`o+x`, never read or write).
///
/// # Errors
/// When a folder of another owner blocks the way, with a sentence.
pub fn make_reachable(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(user) = script_user() else {
        return Ok(());
    };
    let me = nix::unistd::geteuid().as_raw();
    for d in dir.ancestors() {
        let meta = std::fs::metadata(d)?;
        let mode = meta.mode();
        let searchable = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if searchable {
            continue;
        }
        if meta.uid() != me {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} cannot be passed through by uid {} (the scripts' user, PLUS_SCRIPT_USER): give it search permission (chmod o+x) or set PLUS_WORK_DIR elsewhere",
                    d.display(),
                    user.uid
                ),
            ));
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode((mode & 0o7777) | 0o001))?;
    }
    Ok(())
}

/// The script processes this worker started and has not let go of: never
/// strays. Held while a script starts, so a sweep never sees a script
/// before it is registered.
static SCRIPTS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn scripts() -> MutexGuard<'static, Option<HashSet<i32>>> {
    SCRIPTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts `command` as the script's user (supplementary groups cleared:
/// std does `setgroups(0)` when a uid is set and no groups are given) and
/// registers it as a script; [`forget`] it once it has been waited for.
///
/// # Errors
/// When it cannot be started.
pub fn spawn(command: &mut Command) -> io::Result<Child> {
    if let Some(user) = script_user() {
        command.uid(user.uid).gid(user.gid);
    }
    let mut registered = scripts();
    let child = command.spawn()?;
    if let Some(pid) = child.id() {
        registered
            .get_or_insert_with(HashSet::new)
            .insert(pid as i32);
    }
    Ok(child)
}

/// Lets go of the script process `pid` (it was waited for, or is being
/// dropped): from now on it is a stray like any other child.
pub fn forget(pid: i32) {
    if let Some(set) = scripts().as_mut() {
        set.remove(&pid);
    }
}

/// This process's children that are not registered scripts.
fn strays() -> Vec<Pid> {
    let registered = scripts();
    children()
        .into_iter()
        .filter(|pid| registered.as_ref().is_none_or(|s| !s.contains(pid)))
        .map(Pid::from_raw)
        .collect()
}

/// This process's children: from `/proc/self/task/*/children`, or when the
/// kernel has no such files, every `/proc/PID/stat` whose parent is us.
fn children() -> Vec<i32> {
    let mut found = Vec::new();
    let mut listed = false;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                listed = true;
                found.extend(
                    list.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    if listed {
        return found;
    }
    let me = std::process::id() as i32;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(me) {
            found.push(pid);
        }
    }
    found
}

/// How long [`reap_strays`] keeps at it at most.
const REAP_FOR: Duration = Duration::from_secs(5);

/// Kills (SIGKILL) and reaps every child of this worker that is not a
/// running script, again and again as the strays' own descendants are
/// handed to the worker (it is their subreaper), until none is left or
/// [`REAP_FOR`] has passed. Returns how many it killed. Does nothing in a
/// process that did not [`harden`] itself.
pub async fn reap_strays() -> usize {
    if !reaps() {
        return 0;
    }
    let until = tokio::time::Instant::now() + REAP_FOR;
    let mut killed = 0;
    loop {
        let strays = strays();
        if strays.is_empty() || tokio::time::Instant::now() >= until {
            return killed;
        }
        for pid in &strays {
            let _ = kill(*pid, Signal::SIGKILL);
        }
        killed += strays.len();
        for pid in strays {
            // Killed processes end at once (a process stuck in the kernel
            // may take a moment): poll, never block the runtime.
            loop {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) if tokio::time::Instant::now() < until => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(Errno::EINTR) => {}
                    _ => break,
                }
            }
        }
    }
}

/// Reaps the strays that have ended (zombies), leaving running ones.
pub fn reap_ended() {
    if !reaps() {
        return;
    }
    for pid in strays() {
        let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    }
}

/// Reaps ended strays at every SIGCHLD, for as long as the worker runs:
/// as a subreaper (or PID 1 in a container) it inherits every process a
/// script detaches, and each must be reaped when it ends.
pub async fn reap_zombies() {
    if !reaps() {
        return;
    }
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut chld) = signal(SignalKind::child()) else {
        return;
    };
    while chld.recv().await.is_some() {
        reap_ended();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_user_is_read_and_checked() {
        assert_eq!(ScriptUser::from_setting(None, 0), Ok(Some(NOBODY)));
        assert_eq!(ScriptUser::from_setting(Some(" "), 0), Ok(Some(NOBODY)));
        assert_eq!(ScriptUser::from_setting(None, 1000), Ok(None));
        assert_eq!(ScriptUser::from_setting(Some("root"), 0), Ok(None));
        assert_eq!(ScriptUser::from_setting(Some("0"), 0), Ok(None));
        assert_eq!(ScriptUser::from_setting(Some("1000"), 1000), Ok(None));
        assert_eq!(
            ScriptUser::from_setting(Some("10001"), 0),
            Ok(Some(ScriptUser {
                uid: 10001,
                gid: 10001
            }))
        );
        assert_eq!(
            ScriptUser::from_setting(Some("10001:20"), 0),
            Ok(Some(ScriptUser {
                uid: 10001,
                gid: 20
            }))
        );
        for bad in ["nobody", "1:x", "-1"] {
            let e = ScriptUser::from_setting(Some(bad), 0).unwrap_err();
            assert!(e.contains("PLUS_SCRIPT_USER"), "{e}");
        }
        let e = ScriptUser::from_setting(Some("65534"), 1000).unwrap_err();
        assert!(e.contains("not root"), "{e}");
    }
}
