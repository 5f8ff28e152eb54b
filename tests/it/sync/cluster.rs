//! Cluster mode (issue #11, plain HTTP with more services than the connection budget): the
//! checks watch follows only the non-passing checks, a passing instance that comes or goes is
//! named by one read of every check, and only what no check list shows (a port change) costs a
//! full resync. The full resync's own schedule is out of the way (`--sync-interval 1h`).

use hickory_proto::rr::{RData, RecordType};
use serde_json::{json, Value};

use crate::assert_eventually;
use crate::support::dns_client::{service_addresses, udp};
use crate::support::http::health;
use crate::support::registry::{entry, web_addresses, web_and_db};
use crate::support::server::Server;
use crate::support::standin::Standin;
use crate::support::sync_settings::start_syncing;

const ANY: &str = "/v1/health/state/any";

/// The Rust stand-in (Consul's per-table indexes) serving web and db over plain HTTP, and
/// snapdns following it in cluster mode, first sync served. The directory holds the state.
fn following_in_cluster_mode() -> (Standin, Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("registry.json");
    std::fs::write(&state, web_and_db(&["v1"]).to_string()).unwrap();
    let consul = Standin::rust(&["--state", state.to_str().unwrap()]);
    let server = start_syncing(
        &consul.url(),
        &["--sync-interval", "1h", "--watch-mode", "cluster"],
    );
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    assert_eq!(health(&server).1["watches"]["mode"], "cluster");
    (consul, server, dir)
}

/// The paths of the `/v1` requests logged since the log was last cleared.
fn paths(consul: &Standin) -> Vec<String> {
    consul
        .requests()
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect()
}

/// How many of the logged reads of every check were blocking queries (a watch on them).
fn blocking_reads_of_every_check(consul: &Standin) -> usize {
    consul
        .requests()
        .iter()
        .filter(|r| r["path"] == ANY && r["query"].as_str().unwrap().contains("index="))
        .count()
}

fn count(paths: &[String], path: &str) -> usize {
    paths.iter().filter(|p| *p == path).count()
}

/// Since the stand-in's log was cleared: one non-blocking read of every check named the change,
/// and no full resync ran (it would read `db` too).
fn assert_named_by_one_read_of_every_check(consul: &Standin) {
    let seen = paths(consul);
    assert_eq!(count(&seen, ANY), 1, "{seen:?}");
    assert_eq!(blocking_reads_of_every_check(consul), 0, "not a watch");
    assert_eq!(
        count(&seen, "/v1/health/service/db"),
        0,
        "no full resync: {seen:?}"
    );
}

fn full_syncs(server: &Server) -> Value {
    health(server).1["totals"]["full_syncs"].clone()
}

/// The ports in `web`'s SRV answer.
fn web_srv_ports(server: &Server) -> Vec<u16> {
    udp(server.addr, "web.service.consul.", RecordType::SRV)
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(srv.port),
            _ => None,
        })
        .collect()
}

fn web_entries() -> Vec<Value> {
    web_and_db(&["v1"])["web"].as_array().unwrap().clone()
}

#[test]
fn a_check_flip_costs_the_non_passing_checks_and_its_service_only() {
    let (consul, server, _dir) = following_in_cluster_mode();
    let fulls = full_syncs(&server);
    // The checks watch blocks on the critical list.
    assert_eventually!(consul.requests().iter().any(|r| {
        r["path"] == "/v1/health/state/critical"
            && r["query"].as_str().unwrap().contains("index=")
            && r["query"].as_str().unwrap().contains("stale")
    }));
    consul.control("DELETE", "/_standin/requests", "");

    consul.set_check("n1", "service:web-8080-n1", "critical");
    assert_eventually!(!service_addresses(&server, "web").contains(&"10.1.0.1".to_string()));
    consul.set_check("n1", "service:web-8080-n1", "passing");
    assert_eventually!(service_addresses(&server, "web") == web_addresses());

    let seen = paths(&consul);
    let allowed = [
        "/v1/health/state/critical",
        "/v1/health/state/warning",
        "/v1/health/service/web",
    ];
    assert!(
        seen.iter().all(|p| allowed.contains(&p.as_str())),
        "only the non-passing lists and web: {seen:?}"
    );
    assert_eq!(count(&seen, ANY), 0);
    assert!(count(&seen, "/v1/health/service/web") >= 2, "{seen:?}");
    assert_eq!(full_syncs(&server), fulls);
}

#[test]
fn passing_instances_that_come_and_go_are_named_by_one_read_of_every_check() {
    let (consul, server, _dir) = following_in_cluster_mode();
    let fulls = full_syncs(&server);
    let mut web = web_entries();
    // Defect: a check flip since the catalog's last move (each table has its own index) was
    // taken to explain the registration below, which was then never fetched.
    consul.set_check("n2", "service:web-8080-n2", "critical");
    assert_eventually!(!service_addresses(&server, "web").contains(&"10.1.0.2".to_string()));
    consul.set_check("n2", "service:web-8080-n2", "passing");
    assert_eventually!(service_addresses(&server, "web") == web_addresses());

    // A new passing instance of an existing service: no non-passing check changes.
    consul.control("DELETE", "/_standin/requests", "");
    web.push(entry("n5", "10.1.0.5", "web", "", 8080, &["v1"], "passing"));
    consul.put_service("web", &Value::Array(web.clone()));
    assert_eventually!(service_addresses(&server, "web").contains(&"10.1.0.5".to_string()));
    assert_named_by_one_read_of_every_check(&consul);

    // A deregistration of that instance.
    consul.control("DELETE", "/_standin/requests", "");
    web.pop();
    consul.put_service("web", &Value::Array(web));
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    assert_named_by_one_read_of_every_check(&consul);
    assert_eq!(full_syncs(&server), fulls);
}

#[test]
fn a_port_change_no_check_list_shows_reaches_dns_through_a_full_resync() {
    let (consul, server, _dir) = following_in_cluster_mode();
    let fulls = full_syncs(&server).as_u64().unwrap();
    let mut web = web_entries();
    web[1]["Service"]["Port"] = json!(9090);
    consul.put_service("web", &Value::Array(web));
    assert_eventually!(web_srv_ports(&server).contains(&9090));
    assert_eq!(full_syncs(&server).as_u64().unwrap(), fulls + 1);
    assert!(count(&paths(&consul), ANY) >= 1);
}
