//! The registry file source (`--registry file:...`): changes to the file are served, a broken
//! file keeps the last good state, and a file never loaded answers SERVFAIL.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

use crate::assert_eventually;
use crate::support::dns_client::{assert_rcode, rdata, udp};
use crate::support::http::health;
use crate::support::metrics::metric;
use crate::support::registry::entry;
use crate::support::server::Server;

#[test]
fn registry_file_changes_are_served_and_broken_files_keep_the_last_state() {
    let registry = json!({"web": [entry("w1", "10.2.0.1", "web", "", 80, &[], "passing")]});
    let (server, path) = Server::with_registry_file(&registry, &[]);
    assert_eq!(
        rdata(&udp(server.addr, "web.service.consul.", RecordType::A).answers),
        ["10.2.0.1"]
    );

    let next = json!({"web": [entry("w2", "10.2.0.2", "web", "", 80, &[], "passing")]});
    std::fs::write(&path, serde_json::to_string_pretty(&next).unwrap()).unwrap();
    assert_eventually!(
        rdata(&udp(server.addr, "web.service.consul.", RecordType::A).answers) == ["10.2.0.2"]
    );

    std::fs::write(&path, "{\n  \"web\": [\n    {\"Node\": oops}\n  ]\n}\n").unwrap();
    assert_eventually!(
        server.log().contains("line 3 column"),
        "parse error logged with position:\n{}",
        server.log()
    );
    assert_eq!(
        rdata(&udp(server.addr, "web.service.consul.", RecordType::A).answers),
        ["10.2.0.2"],
        "last good state still served"
    );
    assert_eq!(server.log_count("line 3 column"), 1, "logged once");
}

#[test]
fn never_loaded_registry_answers_servfail() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("file:{}", dir.path().join("absent.json").display());
    let server = Server::start(&["--registry", &missing]);
    let answer = udp(server.addr, "web.service.consul.", RecordType::A);
    assert_rcode(&answer, ResponseCode::ServFail);
    // The log says what is served: nothing yet, not "the previous snapshot" (issue 10, item 14).
    assert!(
        !server.log().contains("previous snapshot"),
        "{}",
        server.log()
    );
    assert!(
        server.log().contains("no registry data yet"),
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(1)); // keep the tempdir alive until here
}

/// The file source reports in the same status as the sync engine: `/health` names the file, the
/// origin and the last load; a broken edit shows as the last error while the previous snapshot
/// stays served and the source counts as up.
#[test]
fn health_reports_the_registry_file_and_its_last_error() {
    let registry = json!({"web": [entry("w1", "10.2.0.1", "web", "", 80, &[], "passing")]});
    let (server, path) = Server::with_registry_file(&registry, &[]);
    let health = || health(&server);

    let (code, report) = health();
    assert_eq!(code, 200);
    assert_eq!(report["status"], "ok", "{report:#}");
    assert_eq!(report["source"]["kind"], "file");
    assert_eq!(report["source"]["path"], path.display().to_string());
    assert_eq!(report["registry"]["state"], "ok");
    assert_eq!(report["registry"]["last_error"], Value::Null);
    assert_eq!(report["snapshot"]["origin"], "file");
    assert_eq!(report["snapshot"]["services"], 1);
    assert!(report["last_success"].is_string(), "{report:#}");
    assert_eq!(report["persistence"], Value::Null);

    std::fs::write(&path, "{\n  \"web\": [\n    {\"Node\": oops}\n  ]\n}\n").unwrap();
    assert_eventually!(health().1["registry"]["last_error"]["channel"] == "file");
    let (code, report) = health();
    assert_eq!(code, 200);
    let message = report["registry"]["last_error"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("line 3 column"), "{message}");
    assert_eq!(
        report["status"], "ok",
        "the previous snapshot is still served"
    );
    assert_eq!(report["snapshot"]["origin"], "file");
    assert_eq!(metric(&server, "snapdns_registry_up"), Some(1.0));
}

/// No service can take over another's names (issue 10, item 5): only names that are single
/// DNS labels are served, under the name the entries give (not the file key), and names
/// differing only in case answer together. What is left out is logged once, with a count and
/// an example, and counted in `/health` (item 11).
#[test]
fn services_cannot_take_over_other_names_and_what_is_left_out_is_reported() {
    let long_name = "x".repeat(64);
    let long_host = format!("{}.example", "a".repeat(300));
    let registry = json!({
        "web": [entry("w1", "10.2.0.1", "web", "", 80, &["v1"], "passing")],
        "WEB": [entry("w2", "10.2.0.2", "WEB", "", 80, &[], "passing")],
        "aaa": [entry("w3", "10.2.0.3", "web", "", 80, &[], "passing")],
        "v1.web": [entry("x1", "10.9.0.1", "v1.web", "", 80, &[], "passing")],
        "_web._tcp": [entry("x2", "10.9.0.2", "_web._tcp", "", 80, &[], "passing")],
        "bad name": [entry("x3", "10.9.0.3", "bad name", "", 80, &[], "passing")],
        "long": [entry("x4", "10.9.0.4", &long_name, "", 80, &[], "passing")],
        "api": [
            entry("a1", "10.3.0.1", "api", "fe80::1%eth0", 80, &[], "passing"),
            entry("a2", "10.3.0.2", "api", "bad host", 81, &[], "passing"),
            entry("a3", "10.3.0.3", "api", "-leading.example", 82, &[], "passing"),
            entry("a4", "10.3.0.4", "api", &long_host, 83, &[], "passing"),
            entry("a5", "10.3.0.5", "api", "", 84, &["bad tag"], "passing"),
        ],
    });
    let (server, _path) = Server::with_registry_file(&registry, &[]);
    let addresses = |name: &str| {
        let mut got = rdata(&udp(server.addr, name, RecordType::A).answers);
        got.sort();
        got
    };
    assert_eq!(
        addresses("web.service.consul."),
        ["10.2.0.1", "10.2.0.2", "10.2.0.3"],
        "web, WEB and a file key naming web answer together"
    );
    assert_eq!(addresses("v1.web.service.consul."), ["10.2.0.1"]);
    let srv = udp(server.addr, "_web._tcp.service.consul.", RecordType::SRV);
    assert_eq!(srv.answers.len(), 3, "{srv:?}");
    assert!(!format!("{srv:?}").contains("10.9.0."), "{srv:?}");
    assert_eq!(addresses("api.service.consul."), ["10.3.0.5"]);
    let api_srv = udp(server.addr, "api.service.consul.", RecordType::SRV);
    assert_eq!(rdata(&api_srv.answers), ["1 1 84 a5.node.dc1.consul."]);

    let (_, report) = health(&server);
    let skipped = &report["snapshot"]["skipped"];
    assert_eq!(
        skipped["service name is not a DNS label"]["count"], 4,
        "{report:#}"
    );
    assert_eq!(
        skipped["service name is not a DNS label"]["example"],
        "_web._tcp"
    );
    assert_eq!(
        skipped["address is neither an IP address nor a hostname"]["count"],
        4
    );
    assert_eq!(
        skipped["address is neither an IP address nor a hostname"]["example"],
        "fe80::1%eth0"
    );
    assert_eq!(skipped["tag is not a DNS label"]["count"], 1);
    assert_eq!(
        server.log_count("registry entries not served: service name is not a DNS label"),
        1,
        "{}",
        server.log()
    );
}
