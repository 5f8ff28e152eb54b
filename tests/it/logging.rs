//! Logs (issue #5): JSON lines with structured fields when asked for, `--log` winning over
//! `RUST_LOG`, and the log flags validated.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::support;
use crate::support::dns_client::udp;
use crate::support::registry::demo_registry;
use crate::support::server::run_to_exit;

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(support::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--registry", &demo_registry(), "--no-forward"])
        .args([
            "--log-format",
            "json",
            "--log",
            "debug",
            "--udp-workers",
            "1",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--zones-dir")
        .arg(support::repo().join("zones"))
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn snapdns");
    let stderr = child.stderr.take().unwrap();
    let (lines_in, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_in.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<Value> = Vec::new();
    let mut udp_addr: Option<SocketAddr> = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = |seen: &mut Vec<Value>| -> bool {
        let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        else {
            return false;
        };
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON object: {e}: {line:?}"));
        assert!(value.is_object(), "{line}");
        seen.push(value);
        true
    };
    while udp_addr.is_none() && next(&mut seen) {
        let message = seen.last().unwrap()["message"].as_str().unwrap_or("");
        udp_addr = message
            .strip_prefix("listening on udp ")
            .and_then(|a| a.parse().ok());
    }
    let addr = udp_addr.expect("snapdns logged its UDP address as JSON");
    let reply = udp(addr, "web.service.consul.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    // SIGTERM: the shutdown is logged as JSON too, and the process exits 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    while next(&mut seen) {}
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(0));

    for value in &seen {
        assert!(value["timestamp"].is_string(), "{value}");
        assert!(value["level"].is_string(), "{value}");
        assert!(value["target"].is_string(), "{value}");
        assert!(value["message"].is_string(), "{value}");
    }
    let levels: Vec<&str> = seen.iter().filter_map(|v| v["level"].as_str()).collect();
    assert!(
        levels.contains(&"INFO"),
        "--log debug wins over RUST_LOG=error: {levels:?}"
    );
    // Structured fields stay fields, not text.
    let zone = seen
        .iter()
        .find(|v| v["message"] == "static zone loaded")
        .expect("the static zone load is logged");
    assert!(zone["names"].as_u64().unwrap() > 0, "{zone}");
    assert!(seen.iter().any(|v| v["message"] == "shutting down"));
}

#[test]
fn log_flags_are_validated() {
    let (code, stderr) = run_to_exit(&["serve", "--log-format", "xml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("log-format"), "{stderr}");
    let (code, stderr) = run_to_exit(&["serve", "--log", "snapdns=loud"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("log"), "{stderr}");
}

/// No log line per packet is reachable by a client at the default level: queries with a
/// truncated EDNS option are answered, and hickory's warning for each is not written
/// (issue 10, item 6).
#[test]
fn malformed_edns_options_do_not_flood_the_log() {
    let server = crate::support::server::Server::demo(&[], &[]);
    let lines_before = server.log().lines().count();
    let mut query =
        crate::support::dns_client::query_message("web-01.node.consul.", RecordType::A, None)
            .to_vec()
            .unwrap();
    query[11] = 1; // ARCOUNT: one OPT record follows
                   // OPT: root owner, type 41, payload 1232, TTL 0, RDLENGTH 2: an option code (COOKIE) and
                   // nothing after it, not even its length.
    query.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 2, 0, 10]);
    let mut answered = 0;
    for _ in 0..200 {
        if let Some(reply) = crate::support::dns_client::udp_raw(server.addr, &query) {
            assert_eq!(reply[..2], query[..2], "a reply to our query");
            answered += 1;
        }
    }
    assert_eq!(answered, 200, "every such query is answered");
    let written = server.log().lines().count() - lines_before;
    assert!(written < 5, "{written} log lines: {}", server.log());
}
