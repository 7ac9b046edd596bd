//! Starting a script process per the script contract of DESIGN.md: its own
//! process group, only the environment it is given, output read in bounded,
//! line-aligned [`Piece`]s; stopping it (SIGTERM to the group, SIGKILL after
//! the grace period) and waiting for its output to be read.

use std::{
    future::Future,
    io,
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use bytes::Bytes;
use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::mpsc,
};

use super::{isolation, Program, ScriptError};
use crate::output::{Piece, Stream, PIECE_BYTES};

/// How to start the script.
#[derive(Clone, Debug)]
pub struct Launch {
    /// What to execute.
    pub program: Program,
    /// The complete environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Bytes written to stdin, which is then closed (`None`: stdin is empty).
    pub stdin: Option<Bytes>,
}

/// A running script: the child and its process group.
#[derive(Debug)]
pub struct Running {
    child: Child,
    pgid: Pid,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// How a script ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl Exit {
    fn from_status(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Code(-1),
        }
    }

    /// The number recorded as `exit_code`: the code, or 128 + the signal
    /// (the shell's convention).
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }

    /// Whether the script succeeded.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }

    /// A sentence for a failed script.
    pub fn describe(self) -> String {
        match self {
            Exit::Code(0) => "the script succeeded".to_owned(),
            Exit::Code(c) => format!("the script exited with code {c}"),
            Exit::Signal(s) => {
                let name = Signal::try_from(s)
                    .map(|s| s.as_str())
                    .unwrap_or("an unknown signal");
                let hint = if s == 9 {
                    " (often the out-of-memory killer: give the task more memory)"
                } else {
                    ""
                };
                format!("the script was killed by signal {s} ({name}){hint}")
            }
        }
    }
}

/// What the script's stdin is.
#[derive(Clone, Copy)]
enum Stdin<'a> {
    /// Empty.
    Null,
    /// A pipe the caller writes.
    Piped,
    /// A pipe already holding these bytes (at most [`SMALL_STDIN`]).
    Prefilled(&'a [u8]),
}

impl Stdin<'_> {
    fn stdio(self) -> Result<Stdio, ScriptError> {
        Ok(match self {
            Stdin::Null => Stdio::null(),
            Stdin::Piped => Stdio::piped(),
            Stdin::Prefilled(bytes) => prefilled_pipe(bytes)?,
        })
    }
}

/// Spawns `launch` per the script contract (its own process group, only
/// its environment, stdout and stderr piped, as the script's user) with
/// `stdin`. A script file without a shebang is executed itself; when the
/// kernel refuses it (not an executable format), it runs with `/bin/sh`.
fn spawn(launch: &Launch, stdin: Stdin<'_>) -> Result<Child, ScriptError> {
    let p = &launch.program;
    if p.runs_with_sh() {
        return spawn_program(launch, &p.with_sh(), stdin);
    }
    match spawn_program(launch, p, stdin) {
        Err(ScriptError::Start { source, .. }) if p.falls_back_to_sh(&source) => {
            spawn_program(launch, &p.with_sh(), stdin)
        }
        spawned => spawned,
    }
}

fn spawn_program(launch: &Launch, p: &Program, stdin: Stdin<'_>) -> Result<Child, ScriptError> {
    let mut command = Command::new(&p.program);
    command
        .args(&p.argv)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .stdin(stdin.stdio()?)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    isolation::spawn(&mut command).map_err(|e| start_error(launch, p, e))
}

impl Running {
    fn new(child: Child, readers: Vec<tokio::task::JoinHandle<()>>) -> Self {
        let pgid = Pid::from_raw(child.id().map(|id| id as i32).unwrap_or_default());
        Running {
            child,
            pgid,
            readers,
        }
    }
}

/// Starts a long-lived script whose stdin and stdout the caller drives
/// (streaming mode); its stderr goes to `output` ([`Launch::stdin`] is
/// ignored).
///
/// # Errors
/// [`ScriptError::Start`] with a sentence that says what to fix.
pub fn start_piped(
    launch: &Launch,
    output: mpsc::Sender<Piece>,
) -> Result<(Running, ChildStdin, ChildStdout), ScriptError> {
    let mut child = spawn(launch, Stdin::Piped)?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let readers = vec![tokio::spawn(read_pieces(stderr, Stream::Stderr, output))];
    Ok((Running::new(child, readers), stdin, stdout))
}

/// Starts the script; its output pieces go to `output`.
///
/// # Errors
/// [`ScriptError::Start`] with a sentence that says what to fix.
pub fn start(launch: &Launch, output: mpsc::Sender<Piece>) -> Result<Running, ScriptError> {
    // Small stdin (an item's JSON, typically) is written into the pipe
    // before the script starts: it fits whole in any pipe's buffer, and no
    // writer task is needed.
    let (stdin, rest) = match &launch.stdin {
        None => (Stdin::Null, None),
        Some(bytes) if bytes.len() <= SMALL_STDIN => (Stdin::Prefilled(bytes), None),
        Some(bytes) => (Stdin::Piped, Some(bytes.clone())),
    };
    let mut child = spawn(launch, stdin)?;
    if let (Some(mut stdin), Some(bytes)) = (child.stdin.take(), rest) {
        tokio::spawn(async move {
            // A script that does not read its stdin is fine: ignore EPIPE.
            let _ = stdin.write_all(&bytes).await;
            let _ = stdin.shutdown().await;
        });
    }
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let readers = vec![
        tokio::spawn(read_pieces(stdout, Stream::Stdout, output.clone())),
        tokio::spawn(read_pieces(stderr, Stream::Stderr, output)),
    ];
    Ok(Running::new(child, readers))
}

/// Stdin of at most this many bytes is written before the script starts
/// (a pipe always holds at least one page).
pub const SMALL_STDIN: usize = 4096;

/// A pipe holding `bytes` (at most [`SMALL_STDIN`]), its write end closed:
/// the script reads them, then end of file.
fn prefilled_pipe(bytes: &[u8]) -> Result<Stdio, ScriptError> {
    use std::io::Write;
    let stdin_error = |doing, source| ScriptError::Stdin { doing, source };
    let (reader, mut writer) = io::pipe().map_err(|e| stdin_error("made", e))?;
    writer
        .write_all(bytes)
        .map_err(|e| stdin_error("written", e))?;
    Ok(Stdio::from(reader))
}

fn start_error(launch: &Launch, p: &Program, e: io::Error) -> ScriptError {
    let program = &p.program;
    // A PATH search as the script's user meets folders it may not enter
    // (such as /root/...): execvp then says "permission denied" even
    // when the program is nowhere.
    let kind = match e.kind() {
        io::ErrorKind::PermissionDenied if !program.contains('/') && !on_path(launch, program) => {
            io::ErrorKind::NotFound
        }
        kind => kind,
    };
    let what = if !p.interpreter {
        if program == "/bin/sh" {
            "/bin/sh (scripts without a shebang run with it) could not be started".to_owned()
        } else if p.sh_fallback.is_some() {
            "the script file (it has no shebang line, so it is executed directly)".to_owned()
        } else {
            "the script's shebang line names a program that".to_owned()
        }
    } else {
        format!("the interpreter {program:?}")
    };
    let sentence = match kind {
        io::ErrorKind::NotFound if what.ends_with("that") => {
            format!("{what} does not exist: fix the #! line or set script.interpreter ({e})")
        }
        // A binary whose loader (its ELF interpreter) is missing.
        io::ErrorKind::NotFound if p.sh_fallback.is_some() => format!("{what} cannot be executed: it needs a program loader or library the worker image lacks; build it for the image (e.g. statically) or add a #! line ({e})"),
        io::ErrorKind::NotFound => format!("{what} was not found on PATH: install it in the worker image or fix script.interpreter ({e})"),
        io::ErrorKind::PermissionDenied => format!("{what} cannot be executed (permission denied): check it is an executable program ({e})"),
        _ => format!("the script could not be started: {e}"),
    };
    ScriptError::Start {
        sentence,
        source: e,
    }
}

/// Whether a file `program` is in one of the folders of the script's PATH.
fn on_path(launch: &Launch, program: &str) -> bool {
    let path = launch
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    std::env::split_paths(path).any(|dir| dir.join(program).is_file())
}

/// Reads `reader` in chunks of at most [`PIECE_BYTES`] (whole lines when
/// there are any): memory stays bounded however long a line is.
async fn read_pieces(reader: impl AsyncRead + Unpin, stream: Stream, tx: mpsc::Sender<Piece>) {
    let mut reader = BufReader::with_capacity(PIECE_BYTES, reader);
    while let Ok(buf) = reader.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        // Up to the last newline; a buffer without one (a very long line,
        // or the end of the output) goes as it is.
        let take = match buf.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None => buf.len(),
        };
        let piece = Piece {
            stream,
            bytes: buf[..take].to_vec(),
        };
        reader.consume(take);
        if tx.send(piece).await.is_err() {
            return;
        }
    }
}

impl Running {
    /// Waits for the script to exit.
    ///
    /// # Errors
    /// When waiting fails (should not happen).
    pub async fn wait(&mut self) -> io::Result<Exit> {
        self.child.wait().await.map(Exit::from_status)
    }

    /// Sends `signal` to the script's whole process group.
    pub fn signal(&self, signal: Signal) {
        let _ = killpg(self.pgid, signal);
    }

    /// Stops the script: SIGTERM to its process group, then SIGKILL when it
    /// has not exited after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Exit {
        self.signal(Signal::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => Exit::from_status(status),
            _ => {
                self.signal(Signal::SIGKILL);
                self.child
                    .wait()
                    .await
                    .map(Exit::from_status)
                    .unwrap_or(Exit::Signal(9))
            }
        }
    }

    /// After the script exited: kills whatever is left of its process
    /// group (children it left behind) and every process that escaped it
    /// (`setsid`, double forks: the worker, their subreaper, inherited
    /// them; see [`isolation::reap_strays`]), so nothing outlives the job
    /// and the output pipes close, then waits until its output has been
    /// read to the end. A process that still holds the pipes is not waited
    /// for longer than a few seconds. Calling it again does nothing.
    pub async fn finish(&mut self) {
        if self.readers.is_empty() {
            return;
        }
        self.signal(Signal::SIGKILL);
        isolation::reap_strays().await;
        for mut reader in std::mem::take(&mut self.readers) {
            if tokio::time::timeout(Duration::from_secs(5), &mut reader)
                .await
                .is_err()
            {
                reader.abort();
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // From now on, the process (if it still runs: it is killed on
        // drop) is a stray the next sweep reaps.
        isolation::forget(self.pgid.as_raw());
    }
}

/// Starts the script and supervises it until it exits or `stop` completes
/// (then it is stopped: SIGTERM, SIGKILL after `grace`); returns once its
/// output has been read to the end.
///
/// # Errors
/// [`ScriptError::Start`] when it cannot be started.
pub async fn run_until(
    launch: &Launch,
    output: mpsc::Sender<Piece>,
    stop: impl Future<Output = ()>,
    grace: Duration,
) -> Result<Exit, ScriptError> {
    let mut running = start(launch, output)?;
    let exit = tokio::select! {
        exit = running.wait() => exit.unwrap_or(Exit::Code(-1)),
        () = stop => running.stop(grace).await,
    };
    running.finish().await;
    Ok(exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_arrives_in_bounded_line_aligned_pieces() {
        let data = format!("{}\nshort\n", "x".repeat(PIECE_BYTES * 2 + 10));
        let (tx, mut rx) = mpsc::channel(16);
        read_pieces(data.as_bytes(), Stream::Stdout, tx).await;
        let mut pieces = Vec::new();
        while let Some(p) = rx.recv().await {
            assert!(p.bytes.len() <= PIECE_BYTES);
            pieces.push(p.bytes);
        }
        assert_eq!(pieces.concat(), data.as_bytes());
        assert!(pieces.last().unwrap().ends_with(b"short\n"));
    }

    #[test]
    fn exits_are_described() {
        assert_eq!(Exit::Code(3).describe(), "the script exited with code 3");
        assert_eq!(Exit::Signal(9).code(), 137);
        assert!(Exit::Signal(9).describe().contains("SIGKILL"));
    }
}
