//! Starts the stand-in binary on an ephemeral loopback port and talks to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `consul-standin`, killed on drop.
pub(crate) struct Standin {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Standin {
    /// Starts the binary with `args` and waits for its `listening` line.
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_consul-standin"))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn consul-standin");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("listening line");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .expect("listening ADDR")
            .parse()
            .expect("address");
        Self { child, addr }
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 response.
pub(crate) struct Raw {
    pub(crate) status: u16,
    /// Header lines as sent (original case).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Raw {
    /// The first value of header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request on `stream` (keep-alive) and reads a Content-Length framed response.
pub(crate) fn exchange(stream: &mut TcpStream, method: &str, path: &str, extra: &str) -> Raw {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    .expect("send");
    read_response(stream)
}

/// Reads one response with a Content-Length (or until EOF without one).
pub(crate) fn read_response(stream: &mut TcpStream) -> Raw {
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(": ").expect("header");
        headers.push((k.to_owned(), v.to_owned()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().expect("length"));
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).expect("body");
        }
        None => {
            reader.read_to_end(&mut body).expect("body");
        }
    }
    Raw {
        status,
        headers,
        body,
    }
}

/// One request on a fresh connection.
pub(crate) fn get(s: &Standin, path: &str, extra: &str) -> Raw {
    let mut stream = TcpStream::connect(s.addr).expect("connect");
    exchange(&mut stream, "GET", path, extra)
}

/// `X-Consul-Index` of a GET.
pub(crate) fn index_of(s: &Standin, path: &str) -> u64 {
    get(s, path, "")
        .header("X-Consul-Index")
        .expect("X-Consul-Index")
        .parse()
        .expect("index")
}

/// A PUT to the control API; returns the new Raft index from `{"index": N}`.
pub(crate) fn put(s: &Standin, path: &str) -> u64 {
    let mut stream = TcpStream::connect(s.addr).expect("connect");
    let r = exchange(&mut stream, "PUT", path, "");
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    v["index"].as_u64().expect("index")
}

/// Polls until a `/v1` request to `path` with `index=` in its query is logged and unanswered.
pub(crate) fn wait_until_blocked(s: &Standin, path: &str) {
    for _ in 0..500 {
        let r = get(s, &format!("/_standin/requests?path={path}"), "");
        let log: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        let blocked = log.as_array().expect("array").iter().any(|e| {
            e["path"] == path
                && e["status"].is_null()
                && e["query"].as_str().is_some_and(|q| q.contains("index="))
        });
        if blocked {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no blocked request to {path}");
}
