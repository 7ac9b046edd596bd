//! Per-item mode: one script process per item, the item as JSON on stdin,
//! `PLUS_ITEM_ID` set, at most `concurrency` at once. The item's stdout
//! (up to [`OUTPUT_BYTES`]) is its output; its stderr goes to the job's log.
//!
//! Each running item has a working directory of its own (its cwd and HOME),
//! one per concurrency slot. A slot's directory is reused when the item
//! before left it empty (an empty directory is as fresh as a new one) and
//! replaced when it did not: making and removing a directory per item cost
//! a third of the per-item rate on ext4.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use serde_json::Value;
use tokio::{sync::mpsc, task::JoinSet};

use super::{reader::Msg, CollectionError, Done, Ended, Item, Run, WINDOW};
use crate::{
    job::{JobContext, StopReason},
    output::{Piece, Stream},
    script::{self, Launch, Program},
};

/// The most of one item's stdout kept as its output.
pub const OUTPUT_BYTES: usize = 64 * 1024;

/// What every item's process shares.
#[derive(Debug)]
struct Shared {
    ctx: JobContext,
    program: Program,
    env: Vec<(String, String)>,
}

/// Runs every item from `rx`, each in its own process.
pub async fn run(run: &mut Run<'_>, mut rx: mpsc::Receiver<Msg>) -> Ended {
    let ctx = run.ctx;
    let mut env = ctx.script_env(&run.ws, &run.params, &run.ws.work);
    env.retain(|(k, _)| k != "HOME");
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        program: run.program.clone(),
        env,
    });
    let mut free = Vec::with_capacity(run.concurrency);
    for slot in 0..run.concurrency {
        match make_dir(run.ws.work.join(format!("item-{slot}"))) {
            Ok(dir) => free.push(dir),
            Err(e) => return Ended::Fatal(e),
        }
    }
    type Joined = (
        Result<PathBuf, CollectionError>,
        Result<Option<Done>, CollectionError>,
    );
    let mut running: JoinSet<Joined> = JoinSet::new();
    let mut input_open = true;
    let mut fatal = None;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        run.poll_total();
        if (!input_open || fatal.is_some()) && running.is_empty() {
            break;
        }
        if let Some(e) = run.results.upload_error() {
            fatal.get_or_insert(e);
            input_open = false;
        }
        let can_start = input_open
            && fatal.is_none()
            && !ctx.control.is_stopped()
            && !free.is_empty()
            && run.results.waiting() < WINDOW;
        tokio::select! {
            biased;
            joined = running.join_next(), if !running.is_empty() => match joined {
                Some(Ok((dir, result))) => {
                    match dir {
                        Ok(dir) => free.push(dir),
                        Err(e) => {
                            fatal.get_or_insert(e);
                            input_open = false;
                        }
                    }
                    match result {
                        Ok(Some(done)) => {
                            if let Err(e) = run.results.commit(done).await {
                                fatal.get_or_insert(e);
                                input_open = false;
                            }
                        }
                        // Stopped before it finished: it runs again after a relaunch.
                        Ok(None) => {}
                        Err(e) => {
                            fatal.get_or_insert(e);
                            input_open = false;
                            ctx.control.stop(StopReason::Cancelled);
                        }
                    }
                }
                None => {}
                Some(Err(e)) => {
                    fatal.get_or_insert(CollectionError::ItemTask(e));
                    input_open = false;
                }
            },
            () = ctx.control.stopped(), if input_open => input_open = false,
            msg = rx.recv(), if can_start => match msg {
                Some(Msg::Item(item)) => {
                    let dir = free.pop().expect("a free slot (checked by can_start)");
                    running.spawn(run_item(shared.clone(), item, dir));
                }
                Some(Msg::End(read)) => {
                    run.set_read(read);
                    input_open = false;
                }
                Some(Msg::Failed(reason)) => {
                    fatal.get_or_insert(reason);
                    input_open = false;
                }
                None => {
                    fatal.get_or_insert(CollectionError::ReaderStopped);
                    input_open = false;
                }
            },
            _ = tick.tick() => {
                if let Err(e) = run.results.tick().await {
                    fatal.get_or_insert(e);
                    input_open = false;
                }
                run.maybe_progress_event(false);
            }
        }
    }
    match fatal {
        Some(reason) => Ended::Fatal(reason),
        None if ctx.control.is_stopped() => Ended::Stopped,
        None => Ended::Complete,
    }
}

/// Makes `dir` fresh for the next item: kept when the last item left it
/// empty and with the mode it was made with (0700 here), else made anew;
/// when it cannot be removed (the item left files it cannot delete, such
/// as read-only folders), the slot moves to a new directory named after
/// `seq`, which no slot directory (`item-{k}`) can be called.
fn refresh(dir: PathBuf, seq: u64) -> Result<PathBuf, CollectionError> {
    use std::os::unix::fs::PermissionsExt;
    let unchanged = std::fs::metadata(&dir).is_ok_and(|m| m.permissions().mode() & 0o777 == 0o700);
    let empty = unchanged && std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none());
    if empty {
        return Ok(dir);
    }
    // An item that made its own directory read-only gets it back writable
    // first, so its files can be removed without root.
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let _ = std::fs::remove_dir_all(&dir);
    let fresh = dir.with_file_name(format!("replaced-{seq}"));
    make_dir(dir).or_else(|_| make_dir(fresh))
}

/// Makes `dir` (mode 0700) for an item.
fn make_dir(dir: PathBuf) -> Result<PathBuf, CollectionError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .and_then(|()| script::isolation::hand_over(&dir))
    {
        Ok(()) => Ok(dir),
        Err(source) => Err(CollectionError::ItemDir { dir, source }),
    }
}

/// Runs one item's process in `dir` and hands the slot's directory back,
/// fresh for the next item (or why no fresh one could be made: the job
/// then fails, keeping this item's result). `Ok(None)` when the job was
/// stopped meanwhile; `Err` when the script cannot be started at all
/// (every item would fail the same way, so the job fails at once with the
/// reason).
async fn run_item(
    shared: Arc<Shared>,
    item: Item,
    dir: PathBuf,
) -> (
    Result<PathBuf, CollectionError>,
    Result<Option<Done>, CollectionError>,
) {
    let seq = item.seq;
    let result = run_in(&shared, item, &dir).await;
    (refresh(dir, seq), result)
}

async fn run_in(shared: &Shared, item: Item, dir: &Path) -> Result<Option<Done>, CollectionError> {
    let mut env = Vec::with_capacity(shared.env.len() + 2);
    env.extend(shared.env.iter().cloned());
    env.push(("HOME".into(), dir.display().to_string()));
    env.push(("PLUS_ITEM_ID".into(), item.id.clone()));
    let mut stdin = item.json;
    stdin.push(b'\n');
    let launch = Launch {
        program: shared.program.clone(),
        env,
        cwd: dir.to_owned(),
        stdin: Some(Bytes::from(stdin)),
    };
    // The item's own channel: its stdout is its output, its stderr goes on
    // to the job's log. It closes when the process's readers are done.
    let (tx, mut rx) = mpsc::channel::<Piece>(16);
    let ctx = &shared.ctx;
    let process = script::run_until(&launch, tx, ctx.control.stopped(), ctx.config.grace);
    let log = ctx.output.clone();
    let collect = async move {
        let mut out = Vec::new();
        let mut cut = false;
        while let Some(piece) = rx.recv().await {
            match piece.stream {
                Stream::Stdout => {
                    let room = OUTPUT_BYTES.saturating_sub(out.len());
                    cut |= piece.bytes.len() > room;
                    out.extend_from_slice(&piece.bytes[..piece.bytes.len().min(room)]);
                }
                Stream::Stderr => {
                    let _ = log.send(piece).await;
                }
            }
        }
        (out, cut)
    };
    let (exit, (out, cut)) = tokio::join!(process, collect);
    let exit = exit?;
    if shared.ctx.control.is_stopped() {
        return Ok(None);
    }
    let output = output_value(&out, cut);
    let ok = exit.success();
    let error = (!ok).then(|| exit.describe());
    Ok(Some(Done::new(
        item.seq,
        &item.id,
        ok,
        Some(exit.code()),
        output,
        error,
    )))
}

/// An item's stdout as its output: the JSON it printed, else its text
/// (trimmed; marked when cut); `null` when it printed nothing.
pub fn output_value(out: &[u8], cut: bool) -> Value {
    let text = out.trim_ascii();
    if text.is_empty() {
        return Value::Null;
    }
    if !cut {
        if let Ok(v) = serde_json::from_slice::<Value>(text) {
            return v;
        }
    }
    let mut s = String::from_utf8_lossy(text).into_owned();
    if cut {
        s.push_str(&format!(
            "… [cut at {} KiB; the item printed more]",
            OUTPUT_BYTES / 1024
        ));
    }
    Value::String(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_directories_are_made_fresh_between_items() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let slot = tmp.path().join("item-0");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        std::fs::create_dir(&slot).unwrap();
        std::fs::set_permissions(&slot, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Left empty: kept as it is.
        assert_eq!(refresh(slot.clone(), 0).unwrap(), slot);
        // Left with files, or made read-only: the same path, empty, 0700.
        std::fs::create_dir_all(slot.join("a/b")).unwrap();
        std::fs::write(slot.join(".hidden"), "x").unwrap();
        assert_eq!(refresh(slot.clone(), 1).unwrap(), slot);
        assert_eq!(std::fs::read_dir(&slot).unwrap().count(), 0);
        std::fs::set_permissions(&slot, std::fs::Permissions::from_mode(0o555)).unwrap();
        assert_eq!(refresh(slot.clone(), 2).unwrap(), slot);
        assert_eq!(mode(&slot), 0o700);
        // Cannot be made anew (here: a file took its place): a new
        // directory that no slot is named like.
        std::fs::remove_dir(&slot).unwrap();
        std::fs::write(&slot, "not a directory").unwrap();
        let moved = refresh(slot.clone(), 7).unwrap();
        assert_eq!(moved, tmp.path().join("replaced-7"));
        assert!(moved.is_dir());
        assert_eq!(std::fs::read_dir(&moved).unwrap().count(), 0);
    }

    #[test]
    fn outputs_keep_json_and_text() {
        assert_eq!(output_value(b"", false), Value::Null);
        assert_eq!(
            output_value(b"{\"a\":1}\n", false),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            output_value(b"hello\n", false),
            Value::String("hello".into())
        );
        assert!(output_value(b"{\"a\"", true)
            .as_str()
            .unwrap()
            .contains("cut at 64 KiB"));
    }
}
