//! Streaming mode (`script.streaming`): one long-lived process reads items as
//! JSON lines on stdin and answers one JSON line per item on stdout, in the
//! order it read them. Its stderr goes to the job's log.
//!
//! An answer is the item's output; the item failed when the answer is an
//! object with `"ok": false` (its `"error"` says why) or is not JSON. At most
//! [`IN_FLIGHT`] items are sent ahead of the answers. When the process dies,
//! only the items sent to it and not yet answered fail; a new process takes
//! the rest. A process that keeps dying without answering anything fails
//! the job.

use std::{collections::VecDeque, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader},
    process::ChildStdin,
    sync::mpsc,
};
use tracing::warn;

use super::{reader::Msg, CollectionError, Done, Ended, Run};
use crate::{
    job::JobContext,
    script::{self, Exit, Launch, Running},
};

/// Items sent to the process ahead of its answers, at most.
pub const IN_FLIGHT: usize = 512;
/// The longest answer line kept; longer ones fail their item.
pub const LINE_BYTES: usize = 1024 * 1024;
/// A process that dies this many times in a row without answering an item
/// fails the job.
pub const CRASH_LIMIT: u32 = 3;

struct Process {
    running: Running,
    stdin: Option<mpsc::Sender<Vec<u8>>>,
    answers: mpsc::Receiver<(Vec<u8>, bool)>,
    answered: u64,
}

impl Process {
    fn start(ctx: &JobContext, run: &Run<'_>) -> Result<Process, CollectionError> {
        let launch = Launch {
            program: run.program.clone(),
            env: ctx.script_env(&run.ws, &run.params, &run.ws.work),
            cwd: run.ws.work.clone(),
            stdin: None,
        };
        let (running, stdin, stdout) = script::start_piped(&launch, ctx.output.clone())
            .map_err(CollectionError::StreamingStart)?;
        let (in_tx, in_rx) = mpsc::channel(IN_FLIGHT + 1);
        let (out_tx, out_rx) = mpsc::channel(IN_FLIGHT + 1);
        tokio::spawn(write_items(stdin, in_rx));
        tokio::spawn(read_answers(stdout, out_tx));
        Ok(Process {
            running,
            stdin: Some(in_tx),
            answers: out_rx,
            answered: 0,
        })
    }

    /// Waits for the process to exit (it has closed its stdout); stops it
    /// after `grace` if it does not.
    async fn exit(&mut self, grace: Duration) -> Exit {
        self.stdin = None;
        let exit = match tokio::time::timeout(grace, self.running.wait()).await {
            Ok(Ok(exit)) => exit,
            _ => self.running.stop(grace).await,
        };
        self.running.finish().await;
        exit
    }

    /// SIGTERM to the process group, SIGKILL after `grace`.
    async fn stop(&mut self, grace: Duration) -> Exit {
        self.stdin = None;
        let exit = self.running.stop(grace).await;
        self.running.finish().await;
        exit
    }
}

/// Runs every item from `rx` through one streaming process (restarted when
/// it dies while items remain).
pub async fn run(run: &mut Run<'_>, mut rx: mpsc::Receiver<Msg>) -> Ended {
    let ctx = run.ctx;
    let grace = ctx.config.grace;
    let mut proc = match Process::start(ctx, run) {
        Ok(p) => p,
        Err(reason) => return Ended::Fatal(reason),
    };
    let mut in_flight: VecDeque<(u64, String)> = VecDeque::new();
    let mut input_open = true;
    let mut crashes = 0u32;
    let mut extra_lines = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        run.poll_total();
        if !input_open && in_flight.is_empty() {
            // Every item is answered: the process sees the end of its stdin.
            let exit = proc.exit(grace).await;
            if !exit.success() && !ctx.control.is_stopped() {
                ctx.events.event(
                    plus_jobs::EventKind::Stderr,
                    format!(
                        "[plus] the streaming script answered every item, then {}",
                        exit.describe().trim_start_matches("the script ")
                    ),
                );
            }
            break if ctx.control.is_stopped() {
                Ended::Stopped
            } else {
                Ended::Complete
            };
        }
        if let Some(e) = run.results.upload_error() {
            proc.stop(grace).await;
            break Ended::Fatal(e);
        }
        tokio::select! {
            biased;
            () = ctx.control.stopped() => {
                // Answers already received still count; the rest run again
                // after a relaunch.
                while let Ok((line, cut)) = proc.answers.try_recv() {
                    if let Some((seq, id)) = in_flight.pop_front() {
                        if let Err(e) = run.results.commit(answer(seq, &id, &line, cut)).await {
                            proc.stop(grace).await;
                            return Ended::Fatal(e);
                        }
                    }
                }
                proc.stop(grace).await;
                break Ended::Stopped;
            }
            answer_line = proc.answers.recv() => match answer_line {
                Some((line, cut)) => match in_flight.pop_front() {
                    Some((seq, id)) => {
                        proc.answered += 1;
                        if let Err(e) = run.results.commit(answer(seq, &id, &line, cut)).await {
                            proc.stop(grace).await;
                            break Ended::Fatal(e);
                        }
                    }
                    None => {
                        extra_lines += 1;
                        if extra_lines == 1 {
                            ctx.events.event(plus_jobs::EventKind::Stderr, "[plus] the streaming script wrote a line on stdout that answers no item (it is ignored): write one line per item on stdout, and logs to stderr");
                        }
                    }
                },
                None => {
                    // stdout closed: the process is gone (or going).
                    let exit = proc.exit(grace).await;
                    if ctx.control.is_stopped() {
                        break Ended::Stopped;
                    }
                    let lost = in_flight.len();
                    let reason = format!(
                        "the streaming script {} before answering this item",
                        exit.describe().trim_start_matches("the script ")
                    );
                    let mut write_error = None;
                    for (seq, id) in in_flight.drain(..) {
                        let done = Done::new(seq, &id, false, Some(exit.code()), Value::Null, Some(reason.clone()));
                        if let Err(e) = run.results.commit(done).await {
                            write_error = Some(e);
                            break;
                        }
                    }
                    if let Some(e) = write_error {
                        break Ended::Fatal(e);
                    }
                    if lost > 0 {
                        warn!(items = lost, %reason, "the streaming script died with items in flight");
                        ctx.events.event(plus_jobs::EventKind::Stderr, format!("[plus] {reason}: {lost} item(s) in flight failed"));
                    }
                    crashes = if proc.answered == 0 { crashes + 1 } else { 0 };
                    if !input_open {
                        break Ended::Complete;
                    }
                    if crashes >= CRASH_LIMIT {
                        break Ended::Fatal(CollectionError::CrashLoop {
                            how: exit.describe().trim_start_matches("the script ").to_owned(),
                            crashes,
                        });
                    }
                    proc = match Process::start(ctx, run) {
                        Ok(p) => p,
                        Err(reason) => break Ended::Fatal(reason),
                    };
                }
            },
            msg = rx.recv(), if input_open && in_flight.len() < IN_FLIGHT => match msg {
                Some(Msg::Item(item)) => {
                    in_flight.push_back((item.seq, item.id));
                    let mut line = item.json;
                    line.push(b'\n');
                    if let Some(stdin) = &proc.stdin {
                        // A process that stopped reading shows as a closed
                        // stdout next; its items fail then.
                        let _ = stdin.send(line).await;
                    }
                }
                Some(Msg::End(read)) => {
                    run.set_read(read);
                    input_open = false;
                    proc.stdin = None;
                }
                Some(Msg::Failed(reason)) => {
                    proc.stop(grace).await;
                    break Ended::Fatal(reason);
                }
                None => {
                    proc.stop(grace).await;
                    break Ended::Fatal(CollectionError::ReaderStopped);
                }
            },
            _ = tick.tick() => {
                if let Err(e) = run.results.tick().await {
                    proc.stop(grace).await;
                    break Ended::Fatal(e);
                }
                run.maybe_progress_event(false);
            }
        }
    }
}

/// The result of one answer line.
pub fn answer(seq: u64, id: &str, line: &[u8], cut: bool) -> Done {
    if cut {
        return Done::new(
            seq,
            id,
            false,
            None,
            Value::Null,
            Some(format!(
                "the script's answer for this item is longer than {} MiB: keep answers small (write large outputs to PLUS_OUTPUT_DIR)",
                LINE_BYTES / (1024 * 1024)
            )),
        );
    }
    match serde_json::from_slice::<Value>(line.trim_ascii()) {
        Ok(v) => {
            let failed = v.get("ok") == Some(&Value::Bool(false));
            let error = failed.then(|| {
                v.get("error")
                    .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                    .unwrap_or_else(|| "the script answered \"ok\": false".to_owned())
            });
            Done::new(seq, id, !failed, None, v, error)
        }
        Err(e) => {
            let text = String::from_utf8_lossy(&line[..line.len().min(1000)]).into_owned();
            Done::new(
                seq,
                id,
                false,
                None,
                Value::String(text),
                Some(format!(
                    "the script's answer is not a JSON line ({e}): answer one JSON line per item on stdout, and write logs to stderr"
                )),
            )
        }
    }
}

/// Writes item lines to the process's stdin, flushing whenever no more are
/// waiting; closes stdin when the sender goes away.
async fn write_items(stdin: ChildStdin, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut w = tokio::io::BufWriter::with_capacity(64 * 1024, stdin);
    while let Some(line) = rx.recv().await {
        if w.write_all(&line).await.is_err() {
            return;
        }
        while let Ok(line) = rx.try_recv() {
            if w.write_all(&line).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

/// Reads answer lines (at most [`LINE_BYTES`] each; longer ones are cut and
/// marked) until the process closes its stdout.
async fn read_answers(stdout: impl AsyncRead + Unpin, tx: mpsc::Sender<(Vec<u8>, bool)>) {
    let mut r = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    let mut cut = false;
    loop {
        let buf = match r.fill_buf().await {
            Ok(b) if !b.is_empty() => b,
            _ => break,
        };
        let (take, end) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = LINE_BYTES.saturating_sub(line.len());
        let body = &buf[..take - usize::from(end)];
        cut |= body.len() > room;
        line.extend_from_slice(&body[..body.len().min(room)]);
        r.consume(take);
        if end {
            if tx.send((std::mem::take(&mut line), cut)).await.is_err() {
                return;
            }
            cut = false;
        }
    }
    if !line.is_empty() {
        let _ = tx.send((line, cut)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_results() {
        let d = answer(0, "a", b"{\"n\":1}", false);
        assert!(d.ok);
        let d = answer(1, "b", b"{\"ok\":false,\"error\":\"bad row\"}", false);
        assert!(!d.ok);
        assert!(String::from_utf8_lossy(&d.line).contains("\"error\":\"bad row\""));
        let d = answer(2, "c", b"not json", false);
        assert!(!d.ok);
        assert!(String::from_utf8_lossy(&d.line).contains("not a JSON line"));
        assert!(!answer(3, "d", b"{}", true).ok);
    }
}
