//! Shared by the HTTP tests: `plus serve` as a real process on a free
//! loopback port, and a small blocking HTTP/1.1 client.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

/// The `plus` binary under test.
pub const PLUS: &str = env!("CARGO_BIN_EXE_plus");

/// A running `plus serve`, stopped when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The access token it printed.
    pub token: String,
    /// Its `PLUS_HOME`.
    pub home: PathBuf,
}

/// `plus` with a private home and user, and nothing of ours that could
/// change its behaviour.
pub fn plus(home: &Path, user: &str) -> Command {
    let mut cmd = Command::new(PLUS);
    cmd.env("PLUS_HOME", home)
        .env("PLUS_USER", user)
        .env("PLUS_BACKEND", "local")
        .env("PLUS_HEARTBEAT_SECONDS", "1")
        .env("PLUS_FLUSH_MILLIS", "100")
        .env_remove("DYNAMO_TABLE")
        .env_remove("PLUS_WORKER_BIN");
    cmd
}

impl Server {
    /// Starts `plus --json serve --addr 127.0.0.1:0` for `user` and reads
    /// the address and token it prints.
    pub fn start(home: &Path, user: &str, env: &[(&str, &str)]) -> Server {
        let mut cmd = plus(home, user);
        cmd.args(["--json", "serve", "--addr", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start plus serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read plus serve's first line");
        let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let status = child.wait().ok();
            panic!("plus serve printed {line:?} ({e}) and exited with {status:?}")
        });
        Server {
            child,
            url: info["url"].as_str().unwrap().to_owned(),
            addr: info["addr"].as_str().unwrap().to_owned(),
            token: info["token"].as_str().unwrap().to_owned(),
            home: home.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A request with the access token.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("Authorization", auth.as_str())];
        let text = body.map(|b| b.to_string());
        if text.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        request(&self.addr, method, path, &headers, text.as_deref())
    }

    /// GET with the access token and extra headers.
    pub fn get_with(&self, path: &str, extra: &[(&str, &str)]) -> Answer {
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend_from_slice(extra);
        request(&self.addr, "GET", path, &headers, None)
    }

    /// Polls job `id` until `done` holds for it, at most `limit`.
    pub fn wait_for_job(&self, id: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let a = self.call("GET", &format!("/jobs/{id}"), None);
            assert_eq!(a.status, 200, "{:?}", a.body);
            if done(&a.body) {
                return a.body;
            }
            let ended = ["SUCCEEDED", "FAILED", "CANCELLED"]
                .contains(&a.body["status"].as_str().unwrap_or(""));
            assert!(!ended, "job {id} ended without getting there: {}", a.body);
            assert!(
                Instant::now() < deadline,
                "job {id} never got there: {}",
                a.body
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// The raw body.
    pub raw: Vec<u8>,
}

impl Answer {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect to plus serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Answer {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&bytes[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut raw = bytes[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        raw = dechunk(&raw);
    }
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        raw,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
}
