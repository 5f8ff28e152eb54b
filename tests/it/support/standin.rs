//! Drives a Consul stand-in as a child process: the Python one (tests/consul_standin/standin.py)
//! on a registry file, or the scalable Rust one (tests/consul-standin, per-service indexes,
//! HTTP/2 over TLS, Consul's per-client connection limit); changes the registry and injects
//! faults through their shared control endpoints.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use super::http::request;

/// A running stand-in. Killed on drop.
pub struct Standin {
    child: Option<Child>,
    /// Its address.
    pub addr: SocketAddr,
    state: PathBuf,
    extra: Vec<String>,
    /// Speaks HTTPS.
    tls: bool,
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
            tls: false,
        }
    }

    /// Starts the Rust stand-in with `args` (say `--generate 1000,1,2`, or `--tls-cert C
    /// --tls-key K`). It is built by `cargo test --workspace`; when it is missing, it is built
    /// here. It cannot be restarted.
    pub fn rust(args: &[&str]) -> Self {
        let mut command = Command::new(rust_standin());
        command.args(["--port", "0"]).args(args);
        let (child, addr) = start_listening(command);
        Self {
            child: Some(child),
            addr,
            state: PathBuf::new(),
            extra: Vec::new(),
            tls: args.contains(&"--tls-cert"),
        }
    }

    /// The Rust stand-in's connection counts: open now, most open at once, refused (429).
    pub fn connections(&self) -> (u64, u64, u64) {
        let counts = self.control("GET", "/_standin/connections", "");
        let field = |name: &str| counts[name].as_u64().expect(name);
        (field("open"), field("max_open"), field("refused"))
    }

    /// A stand-in serving `registry`, with its state file in a temporary directory (returned,
    /// to keep it alive and to put other files beside it).
    pub fn serving(registry: &Value, extra: &[&str]) -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("registry.json");
        std::fs::write(&path, registry.to_string()).expect("write registry");
        (Self::start(&path, extra), dir)
    }

    /// `http://127.0.0.1:PORT` (`https://` over TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
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

    /// A control or API request; returns (status, body). Over TLS through curl (any HTTP
    /// version, the test certificate not checked: this is the test talking to its own
    /// stand-in).
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        if self.tls {
            let output = Command::new("curl")
                .args([
                    "-sk",
                    "-X",
                    method,
                    "--data-binary",
                    body,
                    "-w",
                    "\n%{http_code}",
                ])
                .arg(format!("{}{path}", self.url()))
                .output()
                .expect("curl runs");
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
            return (status.trim().parse().unwrap_or(0), body.to_string());
        }
        let response = request(self.addr, method, path, body)
            .unwrap_or_else(|e| panic!("stand-in {method} {path}: {e}"));
        (response.status, response.body)
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

/// The Rust stand-in's binary beside this test binary, built first when missing.
fn rust_standin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            // target/<profile>/deps/it-<hash> -> target/<profile>/consul-standin
            let path = exe
                .parent()
                .and_then(Path::parent)
                .expect("target directory")
                .join("consul-standin");
            if !path.exists() {
                let status = Command::new(env!("CARGO"))
                    .args(["build", "-p", "consul-standin", "--bin", "consul-standin"])
                    .current_dir(super::repo())
                    .status()
                    .expect("cargo builds the stand-in");
                assert!(status.success(), "building consul-standin failed");
            }
            path
        })
        .clone()
}

fn spawn(port: u16, state: &Path, extra: &[String]) -> (Child, SocketAddr) {
    let script = super::repo().join("tests/consul_standin/standin.py");
    let mut command = Command::new("python3");
    command
        .arg(script)
        .args(["--port", &port.to_string(), "--state"])
        .arg(state)
        .args(extra);
    start_listening(command)
}

/// Runs a stand-in (either kind) and reads the `listening ADDR` line both print once bound.
fn start_listening(mut command: Command) -> (Child, SocketAddr) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .expect("the stand-in runs");
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
