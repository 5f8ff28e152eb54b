//! Drives the Consul stand-in (tests/consul_standin/standin.py) as a child process, and talks
//! plain HTTP/1.1 to it and to snapdns's health endpoint.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running stand-in. Killed on drop.
pub struct Standin {
    child: Option<Child>,
    /// Its address.
    pub addr: SocketAddr,
    state: PathBuf,
    extra: Vec<String>,
}

impl Standin {
    /// Starts the stand-in on an ephemeral port with the registry in `state` (a JSON file).
    pub fn start(state: &Path, extra: &[&str]) -> Self {
        Self::start_on(0, state, extra)
    }

    /// Starts the stand-in on `port` (0: ephemeral).
    pub fn start_on(port: u16, state: &Path, extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr) = spawn(port, state, &extra);
        Self {
            child: Some(child),
            addr,
            state: state.to_path_buf(),
            extra,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the process (the registry becomes unreachable).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, from the original state file.
    pub fn restart(&mut self) {
        self.stop();
        let (child, addr) = spawn(self.addr.port(), &self.state, &self.extra);
        assert_eq!(addr, self.addr);
        self.child = Some(child);
    }

    /// A control or API request; returns (status, body).
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http(self.addr, method, path, body)
            .unwrap_or_else(|e| panic!("stand-in {method} {path}: {e}"))
    }

    /// A control request that must succeed; returns its JSON.
    pub fn control(&self, method: &str, path: &str, body: &str) -> Value {
        let (status, text) = self.request(method, path, body);
        assert_eq!(status, 200, "stand-in {method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// The registry index now.
    pub fn index(&self) -> u64 {
        self.control("GET", "/_standin/index", "")["index"]
            .as_u64()
            .expect("index")
    }

    /// Registers (or replaces) one service's entries.
    pub fn put_service(&self, name: &str, entries: &Value) {
        self.control(
            "PUT",
            &format!("/_standin/service/{name}"),
            &entries.to_string(),
        );
    }

    /// Deregisters one service.
    pub fn delete_service(&self, name: &str) {
        self.control("DELETE", &format!("/_standin/service/{name}"), "");
    }

    /// Sets a check's status.
    pub fn set_check(&self, node: &str, check: &str, status: &str) {
        self.control(
            "PUT",
            &format!("/_standin/check?node={node}&check={check}&status={status}"),
            "",
        );
    }

    /// Injects a fault (see the stand-in's README).
    pub fn fault(&self, spec: &Value) {
        self.control("PUT", "/_standin/fault", &spec.to_string());
    }

    /// Clears every fault and knob.
    pub fn clear_faults(&self) {
        self.control("DELETE", "/_standin/fault", "");
    }

    /// The request log of `/v1` requests.
    pub fn requests(&self) -> Vec<Value> {
        match self.control("GET", "/_standin/requests", "") {
            Value::Array(list) => list,
            other => panic!("request log: {other}"),
        }
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(port: u16, state: &Path, extra: &[String]) -> (Child, SocketAddr) {
    let script = crate::support::repo().join("tests/consul_standin/standin.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--port", &port.to_string(), "--state"])
        .arg(state)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs the stand-in");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("stand-in prints its address");
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("stand-in did not start: {line:?}"));
    (child, addr)
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {head:?}")))?;
    Ok((status, body.to_string()))
}

/// snapdns's `/health`: (status code, JSON).
pub fn health(server: &crate::support::Server) -> (u16, Value) {
    let addr = server.http.expect("snapdns logged its http address");
    let (status, body) = http(addr, "GET", "/health", "").expect("health answers");
    (status, serde_json::from_str(&body).expect("health is JSON"))
}
