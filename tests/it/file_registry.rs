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
