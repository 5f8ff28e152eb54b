//! The `snapdns` binary under test: started on ephemeral loopback ports, ready once it logs
//! "listening on", its stderr captured for assertions; signals, exit and flag errors.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::registry::{demo_registry, replace_registry_file};
use super::{binary, eventually};

/// A running snapdns process. Killed on drop.
pub struct Server {
    child: Option<Child>,
    /// DNS address (UDP and TCP).
    pub addr: SocketAddr,
    /// HTTP health/metrics address, when enabled.
    pub http: Option<SocketAddr>,
    log: Arc<Mutex<String>>,
    /// Working directory holding the state dir (kept alive with the server).
    pub dir: Arc<tempfile::TempDir>,
}

impl Server {
    /// Starts snapdns with `args` after `serve`, adding an ephemeral `--listen` (unless given),
    /// `--http 127.0.0.1:0` (unless given), a temporary `--state-dir` (unless given) and
    /// `--no-forward` unless `--upstream` is given. Waits until it listens.
    pub fn start(args: &[&str]) -> Self {
        Self::start_in(Arc::new(tempfile::tempdir().expect("tempdir")), args)
    }

    /// Like [`Server::start`] with a given working directory (to restart on the same state).
    /// Waits up to a minute: a debug build reads a 20,000-instance registry file (the shutdown
    /// test's) in well over 20 s when the machine's cores are shared with other builds.
    pub fn start_in(dir: Arc<tempfile::TempDir>, args: &[&str]) -> Self {
        Self::start_within(dir, args, Duration::from_secs(60))
    }

    /// Like [`Server::start_in`], waiting up to `limit` for it to listen (a large registry
    /// file is read and built before the sockets open).
    pub fn start_within(dir: Arc<tempfile::TempDir>, args: &[&str], limit: Duration) -> Self {
        let mut command = Command::new(binary());
        command.arg("serve").args(args);
        let has = |flag: &str| args.contains(&flag);
        if !has("--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        if !has("--http") {
            command.args(["--http", "127.0.0.1:0"]);
        }
        if !has("--state-dir") {
            command.arg("--state-dir").arg(dir.path().join("state"));
        }
        if !has("--upstream") && !has("--no-forward") {
            command.arg("--no-forward");
        }
        if !has("--zones-dir") {
            command.arg("--zones-dir").arg(dir.path().join("no-zones"));
        }
        if !has("--udp-workers") {
            command.args(["--udp-workers", "2"]);
        }
        command.env("RUST_LOG", "info,snapdns=debug");
        command.env_remove("CONSUL_HTTP_ADDR");
        command.env_remove("CONSUL_HTTP_TOKEN");
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = command.spawn().expect("spawn snapdns");
        let log = capture_stderr(&mut child, "snapdns");
        let mut server = Self {
            child: Some(child),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            http: None,
            log,
            dir,
        };
        let found = eventually(limit, || {
            server.exited().is_some() || server.log_line_after("listening on udp ").is_some()
        });
        let udp = server.log_line_after("listening on udp ");
        assert!(
            found && udp.is_some(),
            "snapdns did not start:\n{}",
            server.log()
        );
        server.addr = udp.unwrap().parse().expect("udp address");
        // The HTTP listener is bound and logged before the DNS sockets.
        server.http = server
            .log_line_after("listening on http ")
            .and_then(|a| a.parse().ok());
        server
    }

    /// snapdns serving the demo registry (zones/demo.registry.json), forwarding to
    /// `upstreams` (none: `--no-forward`), with `extra` flags.
    pub fn demo(upstreams: &[String], extra: &[&str]) -> Self {
        let registry = demo_registry();
        let mut args = vec!["--registry", registry.as_str()];
        for upstream in upstreams {
            args.extend(["--upstream", upstream.as_str()]);
        }
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    /// snapdns serving the demo registry with `config` as its `--config` file (written to
    /// `snapdns.toml` in its working directory) and `extra` flags; returns the file's path too,
    /// for the test to change it and send SIGHUP.
    pub fn demo_with_config(config: &str, extra: &[&str]) -> (Self, PathBuf) {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let path = dir.path().join("snapdns.toml");
        std::fs::write(&path, config).expect("write config");
        let registry = demo_registry();
        let path_text = path.to_str().expect("utf-8 path").to_string();
        let mut args = vec![
            "--config",
            path_text.as_str(),
            "--registry",
            registry.as_str(),
        ];
        args.extend_from_slice(extra);
        (Self::start_in(dir, &args), path)
    }

    /// snapdns serving `registry`, written to `registry.json` in its working directory, with
    /// `extra` flags; returns the file's path too, for the test to change it.
    pub fn with_registry_file(registry: &Value, extra: &[&str]) -> (Self, PathBuf) {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let path = dir.path().join("registry.json");
        replace_registry_file(&path, registry);
        let source = format!("file:{}", path.display());
        let mut args = vec!["--registry", source.as_str()];
        args.extend_from_slice(extra);
        (Self::start_in(dir, &args), path)
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server's resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The rest of the first log line containing `needle`, after it.
    pub fn log_line_after(&self, needle: &str) -> Option<String> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains(needle))?;
        let rest = &line[line.find(needle)? + needle.len()..];
        Some(rest.split_whitespace().next()?.to_string())
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (up to 15 s) and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        eventually(Duration::from_secs(15), || {
            status = self.exited();
            status.is_some()
        });
        status.unwrap_or_else(|| panic!("snapdns did not exit:\n{}", self.log()))
    }

    /// Kills the process now (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The state directory passed to the server.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Collects a child's stderr (spawned with `Stdio::piped()`) line by line into a shared
/// string, echoed with a `[label]` prefix when `SNAPDNS_TEST_LOG` is set.
pub fn capture_stderr(child: &mut Child, label: &'static str) -> Arc<Mutex<String>> {
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("SNAPDNS_TEST_LOG").is_some() {
                eprintln!("[{label}] {line}");
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}

/// Runs snapdns with `args` to completion (for flag and config errors); returns (code, stderr).
pub fn run_to_exit(args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = run_with_output(args);
    (code, stderr)
}

/// Runs snapdns with `args` to completion (the `check` and `state` tools); returns (code,
/// stdout, stderr).
pub fn run_with_output(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run snapdns");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
