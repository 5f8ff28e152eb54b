//! Test harness: runs the real `snapdns` binary on ephemeral loopback ports and talks DNS to
//! it over real sockets, with hickory-proto as an independent codec on the client side.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_snapdns"))
}

/// Repository root, for zones/ and the demo registry.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that a condition becomes true within 10 s, polling.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr) => {
        assert!(
            $crate::support::eventually(std::time::Duration::from_secs(10), || $cond),
            "condition never held: {}",
            stringify!($cond)
        )
    };
    ($cond:expr, $($msg:tt)+) => {
        assert!(
            $crate::support::eventually(std::time::Duration::from_secs(10), || $cond),
            $($msg)+
        )
    };
}

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
    pub fn start_in(dir: Arc<tempfile::TempDir>, args: &[&str]) -> Self {
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
        let found = eventually(Duration::from_secs(20), || {
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
    let output = Command::new(binary())
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run snapdns");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A query message for `name`/`qtype`, with EDNS when `edns_payload` is set.
pub fn query_message(name: &str, qtype: RecordType, edns_payload: Option<u16>) -> Message {
    let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if let Some(payload) = edns_payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
    }
    message
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        & 0xffff) as u16
}

/// Sends raw bytes over UDP from `bind` and returns the raw reply (None after 2 s).
pub fn udp_raw_from(bind: &str, addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(bind).expect("bind client");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(bytes, addr).expect("send");
    let mut buf = vec![0u8; 65535];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// Sends raw bytes over UDP and returns the raw reply.
pub fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    udp_raw_from("127.0.0.1:0", addr, bytes)
}

/// A UDP query; panics when no (decodable) answer comes.
pub fn udp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp_edns(addr, name, qtype, None)
}

/// A UDP query with an optional EDNS payload size.
pub fn udp_edns(addr: SocketAddr, name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let query = query_message(name, qtype, edns);
    let reply = udp_raw(addr, &query.to_vec().unwrap())
        .unwrap_or_else(|| panic!("no UDP answer for {name} {qtype}"));
    let message = Message::from_vec(&reply).expect("decodable answer");
    assert_eq!(message.metadata.id, query.metadata.id, "reply ID matches");
    message
}

/// Sends raw bytes over TCP (length-prefixed) and returns the raw reply.
pub fn tcp_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).expect("reply length");
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut reply).expect("reply");
    reply
}

/// A TCP query.
pub fn tcp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let query = query_message(name, qtype, None);
    let reply = tcp_raw(addr, &query.to_vec().unwrap());
    let message = Message::from_vec(&reply).expect("decodable answer");
    assert_eq!(message.metadata.id, query.metadata.id);
    message
}

/// The rdata of answer records as text, in order (`10.0.0.1`, `1 1 80 web-01.node...`).
pub fn rdata(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.data.to_string()).collect()
}

/// Sorted rdata texts of answers.
pub fn sorted_rdata(records: &[Record]) -> Vec<String> {
    let mut out = rdata(records);
    out.sort();
    out
}

/// (owner, type, rdata) of each record.
pub fn rrs(records: &[Record]) -> Vec<(String, RecordType, String)> {
    records
        .iter()
        .map(|r| (r.name.to_string(), r.record_type(), r.data.to_string()))
        .collect()
}

/// The SOA in the authority section, if any.
pub fn soa(message: &Message) -> Option<&hickory_proto::rr::rdata::SOA> {
    message.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa),
        _ => None,
    })
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// Runs `dig` with `args` and returns stdout.
pub fn dig(args: &[&str]) -> String {
    let output = Command::new("dig")
        .args(args)
        .output()
        .expect("dig is installed (bind9-dnsutils)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
