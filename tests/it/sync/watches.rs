//! Per-service watches (issue #11): with the full resync out of the way (`--sync-interval 1h`),
//! every kind of change to one service reaches DNS through that service's own blocking query,
//! and the cluster-wide check list is never read.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use serde_json::{json, Value};

use crate::assert_eventually;
use crate::support::dns_client::{service_addresses, service_rcode, udp};
use crate::support::http::health;
use crate::support::registry::{entry, web_addresses, web_and_db};
use crate::support::server::Server;
use crate::support::standin::Standin;
use crate::support::sync_settings::start_syncing;

/// The ports in `web`'s SRV answer, sorted.
fn web_srv_ports(server: &Server) -> Vec<u16> {
    let answer = udp(server.addr, "web.service.consul.", RecordType::SRV);
    let mut ports: Vec<u16> = answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(srv.port),
            _ => None,
        })
        .collect();
    ports.sort_unstable();
    ports
}

fn web_entries() -> Vec<Value> {
    web_and_db(&["v1"])["web"].as_array().unwrap().clone()
}

#[test]
fn instances_moves_and_deregistrations_arrive_through_the_service_watch() {
    let (consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let server = start_syncing(
        &consul.url(),
        &["--sync-interval", "1h", "--watch-mode", "per-service"],
    );
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    assert_eq!(web_srv_ports(&server), [8080; 4]);
    let full_before = health(&server).1["totals"]["full_syncs"].clone();

    // A new instance of an existing service (the catalog's service list does not change).
    let mut web = web_entries();
    web.push(entry("n5", "10.1.0.5", "web", "", 8080, &["v1"], "passing"));
    consul.put_service("web", &Value::Array(web.clone()));
    assert_eventually!(service_addresses(&server, "web").contains(&"10.1.0.5".to_string()));

    // An address change, checks untouched.
    web[0]["Node"]["Address"] = json!("10.1.0.9");
    web[0]["Node"]["TaggedAddresses"]["lan"] = json!("10.1.0.9");
    consul.put_service("web", &Value::Array(web.clone()));
    assert_eventually!(service_addresses(&server, "web").contains(&"10.1.0.9".to_string()));
    assert!(!service_addresses(&server, "web").contains(&"10.1.0.1".to_string()));

    // A port change.
    web[1]["Service"]["Port"] = json!(9090);
    consul.put_service("web", &Value::Array(web.clone()));
    assert_eventually!(web_srv_ports(&server) == [8080, 8080, 8080, 8080, 9090]);

    // A deregistration of one instance.
    web.pop();
    consul.put_service("web", &Value::Array(web));
    assert_eventually!(!service_addresses(&server, "web").contains(&"10.1.0.5".to_string()));
    assert_eq!(service_addresses(&server, "web").len(), 4);

    // The last instance of a service goes: the catalog watch drops the service.
    consul.delete_service("db");
    assert_eventually!(service_rcode(&server, "db") == ResponseCode::NXDomain);

    // The catalog watch stops db's watch (db's own watch may have emptied it first).
    assert_eventually!(health(&server).1["watches"]["services"] == 1);
    let (_, report) = health(&server);
    assert_eq!(
        report["totals"]["full_syncs"], full_before,
        "no full resync: {report}"
    );
    assert_eq!(report["watches"]["mode"], "per-service");
    let cluster_wide = consul
        .requests()
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/v1/health/state/"))
        .count();
    assert_eq!(cluster_wide, 0, "the check list is never read per service");
}
