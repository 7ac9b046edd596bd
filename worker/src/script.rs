//! Running a job's script per the script contract of DESIGN.md: its own
//! process group, a fresh working directory, a minimal environment without
//! the worker's credentials, output read line by line with bounded memory.

use std::{
    io,
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
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

/// A piece of output is at most this long; a longer line arrives as several
/// pieces (only the first shows in the live view, all go to the log).
pub const PIECE_BYTES: usize = 64 * 1024;

/// A job's fresh directory: the script file, the working directory, the
/// output directory and the result file, removed when dropped.
#[derive(Debug)]
pub struct Workspace {
    _root: tempfile::TempDir,
    /// The script file.
    pub script: PathBuf,
    /// The script's working directory (also its HOME).
    pub work: PathBuf,
    /// PLUS_OUTPUT_DIR.
    pub output: PathBuf,
    /// PLUS_RESULT_FILE.
    pub result: PathBuf,
    /// TMPDIR.
    pub tmp: PathBuf,
}

impl Workspace {
    /// Makes a fresh workspace under `root` and writes the script into it.
    ///
    /// # Errors
    /// When the directory or file cannot be made.
    pub fn create(root: &Path, job_id: &str, script: &[u8]) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("plus-{job_id}-"))
            .tempdir_in(root)?;
        let base = dir.path().to_owned();
        let ws = Self {
            script: base.join("script"),
            work: base.join("work"),
            output: base.join("output"),
            result: base.join("result.json"),
            tmp: base.join("tmp"),
            _root: dir,
        };
        for d in [&ws.work, &ws.output, &ws.tmp] {
            std::fs::create_dir(d)?;
        }
        std::fs::write(&ws.script, script)?;
        std::fs::set_permissions(&ws.script, std::fs::Permissions::from_mode(0o700))?;
        Ok(ws)
    }
}

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

/// Why a script could not be started, as a sentence for the job's `error`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

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

/// The program and arguments that run a script file per the contract:
/// with an interpreter, `interpreter script args...`; else the file itself
/// when it has a shebang, and `/bin/sh script args...` when it has none.
/// Resolved once per job (it reads the file's first bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The executable.
    pub program: String,
    /// Its arguments.
    pub argv: Vec<String>,
    /// Whether the job named an interpreter (for error sentences).
    interpreter: bool,
}

impl Program {
    /// How to run `script` with the job's `interpreter` (may be empty) and
    /// `args`.
    ///
    /// # Errors
    /// When the script file cannot be read.
    pub fn resolve(script: &Path, interpreter: &str, args: &[String]) -> Result<Self, StartError> {
        let script_arg = script.display().to_string();
        let with_file = |program: &str, interpreter: bool| {
            let mut argv = vec![script_arg.clone()];
            argv.extend(args.iter().cloned());
            Program {
                program: program.to_owned(),
                argv,
                interpreter,
            }
        };
        if !interpreter.trim().is_empty() {
            return Ok(with_file(interpreter.trim(), true));
        }
        let mut head = [0u8; 2];
        let n = {
            use std::io::Read;
            std::fs::File::open(script)
                .and_then(|mut f| f.read(&mut head))
                .map_err(|e| StartError(format!("the script file could not be read: {e}")))?
        };
        Ok(if n == 2 && &head == b"#!" {
            Program {
                program: script_arg.clone(),
                argv: args.to_vec(),
                interpreter: false,
            }
        } else {
            with_file("/bin/sh", false)
        })
    }
}

/// Spawns `launch` per the script contract (its own process group, only
/// its environment, stdout and stderr piped) with `stdin`.
fn spawn(launch: &Launch, stdin: Stdio) -> Result<Child, StartError> {
    let p = &launch.program;
    Command::new(&p.program)
        .args(&p.argv)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&launch.cwd)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| start_error(p, &e))
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
/// [`StartError`] with a sentence that says what to fix.
pub fn start_piped(
    launch: &Launch,
    output: mpsc::Sender<Piece>,
) -> Result<(Running, ChildStdin, ChildStdout), StartError> {
    let mut child = spawn(launch, Stdio::piped())?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let readers = vec![tokio::spawn(read_pieces(stderr, Stream::Stderr, output))];
    Ok((Running::new(child, readers), stdin, stdout))
}

/// Starts the script; its output pieces go to `output`.
///
/// # Errors
/// [`StartError`] with a sentence that says what to fix.
pub fn start(launch: &Launch, output: mpsc::Sender<Piece>) -> Result<Running, StartError> {
    // Small stdin (an item's JSON, typically) is written into the pipe
    // before the script starts: it fits whole in any pipe's buffer, and no
    // writer task is needed.
    let (stdin, rest) = match &launch.stdin {
        None => (Stdio::null(), None),
        Some(bytes) if bytes.len() <= SMALL_STDIN => (prefilled_pipe(bytes)?, None),
        Some(bytes) => (Stdio::piped(), Some(bytes.clone())),
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
fn prefilled_pipe(bytes: &[u8]) -> Result<Stdio, StartError> {
    use std::io::Write;
    let (reader, mut writer) =
        io::pipe().map_err(|e| StartError(format!("the script's stdin could not be made: {e}")))?;
    writer
        .write_all(bytes)
        .map_err(|e| StartError(format!("the script's stdin could not be written: {e}")))?;
    Ok(Stdio::from(reader))
}

fn start_error(p: &Program, e: &io::Error) -> StartError {
    let program = &p.program;
    let what = if !p.interpreter {
        if program == "/bin/sh" {
            "/bin/sh (scripts without a shebang run with it) could not be started".to_owned()
        } else {
            "the script's shebang line names a program that".to_owned()
        }
    } else {
        format!("the interpreter {program:?}")
    };
    StartError(match e.kind() {
        io::ErrorKind::NotFound if what.ends_with("that") => {
            format!("{what} does not exist: fix the #! line or set script.interpreter ({e})")
        }
        io::ErrorKind::NotFound => format!("{what} was not found on PATH: install it in the worker image or fix script.interpreter ({e})"),
        io::ErrorKind::PermissionDenied => format!("{what} cannot be executed (permission denied): check it is an executable program ({e})"),
        _ => format!("the script could not be started: {e}"),
    })
}

/// stdout or stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, the stream event kinds.
    pub fn kind(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A chunk of one stream's output: at most [`PIECE_BYTES`], ending at a
/// line boundary whenever the output has one, so the combined log
/// interleaves stdout and stderr line by line.
#[derive(Debug)]
pub struct Piece {
    /// Which stream.
    pub stream: Stream,
    /// The bytes, newlines included.
    pub bytes: Vec<u8>,
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
    /// group (children it left behind), so no orphan outlives the job and
    /// the output pipes close, then waits until its output has been read to
    /// the end. A process that escaped the group (`setsid`) and still holds
    /// the pipes is not waited for longer than a few seconds. Calling it
    /// again does nothing.
    pub async fn finish(&mut self) {
        if self.readers.is_empty() {
            return;
        }
        self.signal(Signal::SIGKILL);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_without_a_shebang_run_with_sh() {
        let ws = Workspace::create(&std::env::temp_dir(), "t", b"echo hi\n").unwrap();
        let p = Program::resolve(&ws.script, "", &["a".into()]).unwrap();
        assert_eq!(p.program, "/bin/sh");
        assert_eq!(p.argv, vec![ws.script.display().to_string(), "a".into()]);
        std::fs::write(&ws.script, "#!/usr/bin/env bash\necho hi\n").unwrap();
        let p = Program::resolve(&ws.script, "", &[]).unwrap();
        assert_eq!(p.program, ws.script.display().to_string());
        assert!(p.argv.is_empty());
        let p = Program::resolve(&ws.script, "python3", &[]).unwrap();
        assert_eq!(p.program, "python3");
    }

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
