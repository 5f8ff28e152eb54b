//! Registry faults: error statuses, broken answers, a stopped registry, an index going
//! backwards, a leader loss. The last good snapshot keeps serving through all of them; with no
//! snapshot yet, SERVFAIL and 503 until the registry first answers.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use serde_json::{json, Value};

use crate::assert_eventually;
use crate::support::dns_client::{service_addresses, service_rcode};
use crate::support::http::{health, registry_state};
use crate::support::registry::{web_addresses, web_and_db};
use crate::support::standin::Standin;
use crate::support::sync_settings::{start_syncing, start_syncing_in};
use crate::support::write;

/// Injects each fault in turn: DNS keeps answering, health names the fault, it is logged once
/// (not once per retry), and the sync recovers when the fault is gone.
fn run_faults(faults: &[(Value, &str)]) {
    let (consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let server = start_syncing(&consul.url(), &[]);
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    for (spec, kind) in faults {
        let logged_before = server.log_count("registry fault:");
        let failed_before = health(&server).1["totals"]["failed_syncs"]
            .as_u64()
            .unwrap();
        consul.fault(spec);
        assert_eventually!(
            registry_state(&server) == *kind,
            "fault {spec} never showed as {kind}: {}",
            health(&server).1
        );
        // Several failed syncs later, it is still logged once, and DNS still answers.
        assert_eventually!(
            health(&server).1["totals"]["failed_syncs"]
                .as_u64()
                .unwrap()
                >= failed_before + 2,
            "no retries under {spec}"
        );
        assert_eq!(
            service_addresses(&server, "web"),
            web_addresses(),
            "under {spec}"
        );
        let (code, report) = health(&server);
        assert_eq!(
            (code, report["status"].as_str()),
            (200, Some("degraded")),
            "{report}"
        );
        assert_eq!(report["registry"]["last_error"]["kind"], *kind, "{report}");
        assert_eq!(
            server.log_count("registry fault:"),
            logged_before + 1,
            "under {spec}:\n{}",
            server.log()
        );
        consul.clear_faults();
        assert_eventually!(
            registry_state(&server) == "ok",
            "no recovery from {spec}: {}",
            health(&server).1
        );
    }
    assert!(server.log_count("registry recovered") >= faults.len());
}

#[test]
fn sync_outage_error_statuses_keep_serving() {
    run_faults(&[
        (
            json!({"mode": "status", "status": 500, "body": "No cluster leader"}),
            "no_leader",
        ),
        (
            json!({"mode": "status", "status": 403, "body": "ACL not found"}),
            "acl_denied",
        ),
        (
            json!({"mode": "status", "status": 429, "body": "rate limit exceeded, try again later or against a different server"}),
            "rate_limited",
        ),
    ]);
}

#[test]
fn sync_outage_broken_answers_keep_serving() {
    run_faults(&[
        (json!({"mode": "malformed"}), "bad_response"),
        (json!({"mode": "truncated"}), "bad_response"),
        (json!({"mode": "disconnect"}), "bad_response"),
        (json!({"mode": "hang"}), "timeout"),
    ]);
}

#[test]
fn sync_outage_registry_stopped_and_index_going_backwards() {
    let (mut consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let server = start_syncing(&consul.url(), &[]);
    assert_eventually!(service_addresses(&server, "web") == web_addresses());

    consul.stop();
    assert_eventually!(
        registry_state(&server) == "unreachable",
        "{}",
        health(&server).1
    );
    assert_eventually!(
        health(&server).1["totals"]["failed_syncs"]
            .as_u64()
            .unwrap()
            >= 2
    );
    assert_eq!(service_addresses(&server, "web"), web_addresses());
    assert_eq!(server.log_count("registry fault:"), 1, "{}", server.log());
    consul.restart();
    assert_eventually!(registry_state(&server) == "ok");

    // A snapshot restore: the index drops. The watches reset, the data is resynced, DNS answers.
    let before = consul.index();
    consul.fault(&json!({"mode": "index_backwards", "index": 3}));
    assert_eventually!(server.log_count("went backwards") >= 1, "{}", server.log());
    assert_eventually!(
        health(&server).1["snapshot"]["index"] == 3,
        "{}",
        health(&server).1
    );
    assert_eq!(service_addresses(&server, "web"), web_addresses());
    assert_eq!(
        health(&server).1["registry"]["last_error"]["kind"],
        "index_backwards"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        server.log_count("went backwards"),
        1,
        "logged once:\n{}",
        server.log()
    );
    consul.clear_faults();
    assert_eventually!(health(&server).1["snapshot"]["index"].as_u64().unwrap() >= before);
}

#[test]
fn sync_stale_reads_survive_a_leader_loss_and_consistent_reads_report_it() {
    let (consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let stale = start_syncing(&consul.url(), &[]);
    let consistent = start_syncing(&consul.url(), &["--consistent"]);
    assert_eventually!(
        service_addresses(&stale, "web") == web_addresses()
            && service_addresses(&consistent, "web") == web_addresses()
    );
    consul.fault(&json!({"leaderless": true}));
    // Consistent reads fail from the next request on (one already held answers as Consul's
    // does: leadership is checked when a blocking query starts).
    assert_eventually!(
        registry_state(&consistent) == "no_leader",
        "{}",
        health(&consistent).1
    );
    assert_eventually!(consul.requests().iter().any(|r| {
        r["path"] == "/v1/health/service/web"
            && r["status"] == 500
            && r["query"].as_str().unwrap().contains("consistent")
    }));
    consul.set_check("n1", "service:web-8080-n1", "critical");
    // Stale reads are answered by any server: changes still arrive.
    assert_eventually!(!service_addresses(&stale, "web").contains(&"10.1.0.1".into()));
    assert_eventually!(health(&stale).1["registry"]["known_leader"] == false);
    assert_eq!(registry_state(&stale), "ok");
    assert_eq!(
        service_addresses(&consistent, "web"),
        web_addresses(),
        "the last good snapshot keeps serving"
    );
    let queries: Vec<String> = consul
        .requests()
        .iter()
        .map(|r| r["query"].as_str().unwrap().to_string())
        .collect();
    assert!(queries.iter().any(|q| q.contains("consistent")));
}

#[test]
fn sync_without_registry_or_disk_is_503_until_the_first_sync() {
    // A port with nothing listening on it yet; the stand-in starts there later. The socket is
    // bound but not listening, so connections are refused and no other test can take the port.
    let reserved =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    reserved.bind(&any.into()).unwrap();
    let port = reserved.local_addr().unwrap().as_socket().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let server = start_syncing_in(Arc::new(tempfile::tempdir().unwrap()), &url, &[]);
    assert_eq!(service_rcode(&server, "web"), ResponseCode::ServFail);
    let (code, report) = health(&server);
    assert_eq!(code, 503, "{report}");
    assert_eq!(report["status"], "unavailable");
    assert_eventually!(registry_state(&server) == "unreachable");

    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "registry.json",
        &web_and_db(&["v1"]).to_string(),
    );
    drop(reserved);
    let _consul = Standin::start_on(port, &path, &[]);
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    assert_eq!(health(&server).0, 200);
}

/// The registry hangs (requests accepted, never answered) and then drops those connections,
/// twenty times in a row: every change made meanwhile still reaches DNS, with blocking queries
/// long enough that a request stuck on a dead connection would show (issue 10, item 13).
#[test]
fn sync_follows_changes_after_the_registry_hangs_and_drops_connections() {
    let (consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let server = start_syncing(
        &consul.url(),
        &[
            "--blocking-wait",
            "30s",
            "--request-timeout",
            "2s",
            "--sync-interval",
            "10m",
        ],
    );
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    let last_id = |consul: &Standin| {
        consul
            .requests()
            .iter()
            .filter_map(|r| r["id"].as_u64())
            .max()
            .unwrap_or(0)
    };
    for round in 0..20 {
        let critical = round % 2 == 0;
        let mark = last_id(&consul);
        consul.fault(&json!({"mode": "hang"}));
        consul.set_check(
            "n1",
            "service:web-8080-n1",
            if critical { "critical" } else { "passing" },
        );
        // The watches answer the change; what snapdns asks next hangs.
        assert_eventually!(
            consul
                .requests()
                .iter()
                .any(|r| r["id"].as_u64() > Some(mark) && r["status"].is_null()),
            "round {round}: no hung request"
        );
        consul.clear_faults(); // closes the hung connections without an answer
        assert_eventually!(
            service_addresses(&server, "web").contains(&"10.1.0.1".to_string()) != critical,
            "round {round}: the change never reached DNS\n{}",
            server.log()
        );
    }
}
