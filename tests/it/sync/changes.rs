//! Following the registry: the first full sync and what it costs, changes seen through the
//! blocking queries, and the SOA serial following the registry index on every replica.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use serde_json::{json, Value};

use crate::assert_eventually;
use crate::support::dns_client::{dig, service_addresses, service_rcode, soa_serial};
use crate::support::http::health;
use crate::support::registry::{entry, web_addresses, web_and_db};
use crate::support::standin::Standin;
use crate::support::sync_settings::start_syncing;
use crate::support::time_until;

/// The demo registry plus 30 one-instance services.
fn thirty_two_services() -> Value {
    let mut registry = web_and_db(&["v1"]);
    for i in 0..30 {
        registry[format!("svc{i:02}")] = json!([entry(
            &format!("m{i}"),
            &format!("10.3.0.{}", i + 1),
            &format!("svc{i:02}"),
            "",
            80,
            &[],
            "passing"
        )]);
    }
    registry
}

/// The first sync of 32 services, its cost in `/health`, and the requests the registry saw:
/// `full_requests` for the full sync, then blocking queries on `blocking` paths only.
fn first_sync(mode: &str, full_requests: u64, blocking: &[String]) {
    let (consul, _dir) = Standin::serving(&thirty_two_services(), &[]);
    let server = start_syncing(&consul.url(), &["--watch-mode", mode]);
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    assert_eq!(service_addresses(&server, "svc07"), ["10.3.0.8"]);

    let (code, report) = health(&server);
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["registry"]["state"], "ok");
    assert_eq!(report["source"]["kind"], "consul");
    assert_eq!(report["snapshot"]["services"], 32);
    assert_eq!(report["snapshot"]["instances"], 35);
    assert_eq!(report["snapshot"]["index"].as_u64(), Some(consul.index()));
    assert_eq!(report["snapshot"]["origin"], "registry");
    assert_eq!(report["watches"]["mode"], mode, "{report}");
    let full = &report["last_full_sync"];
    assert_eq!(full["requests"], full_requests, "{full}");
    assert!(
        full["wire_bytes"].as_u64().unwrap() < full["json_bytes"].as_u64().unwrap(),
        "gzip: {full}"
    );
    assert!(report["last_success"].is_string());

    // Every blocking query is held by now.
    let blocking_paths = || {
        let mut paths: Vec<String> = consul
            .requests()
            .iter()
            .filter(|r| r["query"].as_str().unwrap().contains("index="))
            .map(|r| r["path"].as_str().unwrap().to_string())
            .collect();
        paths.sort_unstable();
        paths.dedup();
        paths
    };
    assert_eventually!(blocking_paths() == blocking, "{:?}", blocking_paths());
    let requests = consul.requests();
    assert!(requests
        .iter()
        .all(|r| r["headers"]["accept-encoding"] == "gzip"));
    assert!(requests
        .iter()
        .all(|r| r["query"].as_str().unwrap().contains("stale")));
    assert!(requests
        .iter()
        .all(|r| r["query"].as_str().unwrap().contains("dc=dc1")));
}

/// Per service (the default with few services): the service list and one request per service,
/// then one blocking query per service and the catalog's.
#[test]
fn sync_first_sync_serves_the_registry_and_reports_its_cost() {
    let mut blocking: Vec<String> = ["web", "db"]
        .into_iter()
        .map(String::from)
        .chain((0..30).map(|i| format!("svc{i:02}")))
        .map(|name| format!("/v1/health/service/{name}"))
        .chain(["/v1/catalog/services".to_string()])
        .collect();
    blocking.sort_unstable();
    first_sync("per-service", 33, &blocking);
}

/// Cluster-wide: the non-passing checks too (critical and warning), then blocking queries on
/// two cluster-wide endpoints only, however many services there are.
#[test]
fn sync_first_sync_in_cluster_mode_blocks_on_two_endpoints() {
    let blocking = ["/v1/catalog/services", "/v1/health/state/critical"].map(String::from);
    first_sync("cluster", 35, &blocking);
}

#[test]
fn sync_follows_registrations_deregistrations_and_checks_within_a_second() {
    let (consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    // A long resync interval: only the watches can explain changes seen within a second.
    let server = start_syncing(&consul.url(), &["--sync-interval", "60s"]);
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    let mut worst = Duration::ZERO;

    let mut web: Vec<Value> = web_and_db(&["v1"])["web"].as_array().unwrap().clone();
    web.push(entry("n5", "10.1.0.5", "web", "", 8080, &["v1"], "passing"));
    consul.put_service("web", &Value::Array(web));
    worst = worst.max(time_until("a new instance is served", || {
        service_addresses(&server, "web").contains(&"10.1.0.5".into())
    }));

    consul.put_service(
        "cache",
        &json!([entry("c1", "10.4.0.1", "cache", "", 6379, &[], "passing")]),
    );
    worst = worst.max(time_until("a new service is served", || {
        service_addresses(&server, "cache") == ["10.4.0.1"]
    }));

    consul.set_check("n2", "service:web-8080-n2", "critical");
    worst = worst.max(time_until("a critical instance is dropped", || {
        !service_addresses(&server, "web").contains(&"10.1.0.2".into())
    }));
    consul.set_check("n2", "service:web-8080-n2", "passing");
    worst = worst.max(time_until("a recovered instance is back", || {
        service_addresses(&server, "web").contains(&"10.1.0.2".into())
    }));

    // A node check (serfHealth) going critical drops every instance on that node.
    consul.set_check("d1", "serfHealth", "critical");
    worst = worst.max(time_until("a failed node is dropped", || {
        service_rcode(&server, "db") == ResponseCode::NXDomain
    }));

    consul.delete_service("cache");
    worst = worst.max(time_until("a deregistered service is gone", || {
        service_rcode(&server, "cache") == ResponseCode::NXDomain
    }));
    // With a 60 s full resync, every change above can only have come through the blocking
    // queries; how long it took is reported, not asserted (speed is measured in benchmarks).
    eprintln!("slowest change seen in DNS after {worst:?}");
    assert_eq!(health(&server).1["last_full_sync"]["kind"], "full");
    assert!(
        health(&server).1["totals"]["change_syncs"]
            .as_u64()
            .unwrap()
            >= 5
    );
}

#[test]
fn sync_soa_serial_follows_the_registry_index_on_every_replica() {
    let (consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let replicas = [
        start_syncing(&consul.url(), &[]),
        start_syncing(&consul.url(), &[]),
    ];
    let index = consul.index() as u32;
    for server in &replicas {
        assert_eventually!(soa_serial(server.addr) == Some(index));
    }
    consul.set_check("n3", "service:web-8080-n3", "critical");
    let index = consul.index() as u32;
    for server in &replicas {
        assert_eventually!(
            soa_serial(server.addr) == Some(index),
            "serial {:?}, registry {index}",
            soa_serial(server.addr)
        );
    }
    let dig = dig(&[
        "+short",
        "-p",
        &replicas[0].addr.port().to_string(),
        "@127.0.0.1",
        "SOA",
        "consul.",
    ]);
    assert!(dig.contains(&format!(" {index} ")), "{dig}");
}
