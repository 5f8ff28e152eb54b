//! `snapdns state` (issue 14): the generations a server persisted, listed with their counts;
//! `--export` writes the newest intact one as a registry file that another server serves with
//! the same answers; a damaged newest base is reported and the older one exported; nothing
//! intact, or no directory, is exit 2. The state directory is never changed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::assert_eventually;
use crate::support::dns_client::{service_addresses, sorted_answers};
use crate::support::http::health;
use crate::support::registry::{entry, web_addresses, web_and_db};
use crate::support::server::{run_with_output, Server};
use crate::support::standin::Standin;
use crate::support::state_files::tear_journal;
use crate::support::sync_settings::start_syncing_in;

/// Questions whose answers come from registry data alone (the SOA serial differs: a registry
/// file has no index, see docs/registry-file.md).
const QUESTIONS: [(&str, RecordType); 6] = [
    ("web.service.consul.", RecordType::A),
    ("v1.web.service.dc1.consul.", RecordType::A),
    ("_web._tcp.service.consul.", RecordType::SRV),
    ("cache.service.consul.", RecordType::SRV),
    ("n1.node.consul.", RecordType::A),
    ("db.service.consul.", RecordType::A),
];

/// Every answer of `server` to [`QUESTIONS`], sorted.
fn answers(server: &Server) -> Vec<String> {
    sorted_answers(server.addr, &QUESTIONS)
}

/// Every file in `dir` with its bytes and modification time.
fn snapshot_of(dir: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let modified = entry.metadata().unwrap().modified().unwrap();
            let bytes = std::fs::read(entry.path()).unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                (bytes, modified),
            )
        })
        .collect()
}

fn cache_entry() -> serde_json::Value {
    json!([entry("c1", "10.4.0.1", "cache", "", 6379, &[], "passing")])
}

#[test]
fn state_lists_the_persisted_generation_and_its_export_serves_the_same_answers() {
    let (mut consul, _consul_dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut server = start_syncing_in(dir.clone(), &consul.url(), &[]);
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    consul.put_service("cache", &cache_entry());
    assert_eventually!(health(&server).1["persistence"]["journal_records"] == 1);
    let before = answers(&server);
    let index = consul.index();
    server.signal("TERM");
    assert!(server.wait_exit().success());
    consul.stop();

    let state = dir.path().join("state");
    let state_arg = state.to_str().unwrap();
    let untouched = snapshot_of(&state);
    let (code, stdout, stderr) = run_with_output(&["state", "--state-dir", state_arg]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(&format!("state directory {state_arg}: 1 generation\n")),
        "{stdout}"
    );
    for line in [
        "generation 1: intact".to_string(),
        format!("  serial {index}, registry index {index}, datacenter dc1"),
        "  3 services, 6 instances, 6 passing".to_string(),
        "  journal: 1 record replayed".to_string(),
        "newest intact: generation 1".to_string(),
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in\n{stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("  saved 20") && l.ends_with(" ago)")),
        "{stdout}"
    );

    let out = tempfile::tempdir().unwrap();
    let exported = out.path().join("registry.json");
    let (code, stdout, stderr) = run_with_output(&[
        "state",
        "--state-dir",
        state_arg,
        "--export",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "exported generation 1 to {}: serve it with `snapdns serve --registry file:{} --datacenter dc1`",
            exported.display(),
            exported.display()
        )),
        "{stdout}"
    );
    assert_eq!(
        snapshot_of(&state),
        untouched,
        "the state directory is unchanged"
    );

    // A replica from the export, with Consul still down, answers as the original did.
    let source = format!("file:{}", exported.display());
    let replica = Server::start(&["--registry", source.as_str()]);
    assert_eq!(answers(&replica), before);
    let (code, stdout, _) = run_with_output(&["check", "--registry", source.as_str()]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains(": 3 services, 6 instances, 6 passing"),
        "{stdout}"
    );
}

#[test]
fn state_reports_a_damaged_newest_base_and_exports_the_older_one() {
    let (mut consul, _consul_dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut server = start_syncing_in(dir.clone(), &consul.url(), &[]);
    assert_eventually!(health(&server).1["persistence"]["generation"] == 1);
    // The next process writes the next base with its first save: the journal it would
    // append to ends in a torn record.
    server.kill();
    tear_journal(&dir.path().join("state"), 1);
    let mut server = start_syncing_in(dir.clone(), &consul.url(), &[]);
    consul.put_service("cache", &cache_entry());
    assert_eventually!(health(&server).1["persistence"]["generation"] == 2);
    server.kill();
    consul.stop();

    let state = dir.path().join("state");
    let state_arg = state.to_str().unwrap();
    let newest = state.join("state-000000000002.snapdns");
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&newest, &bytes).unwrap();

    let out = tempfile::tempdir().unwrap();
    let exported = out.path().join("registry.json");
    let export_args = [
        "state",
        "--state-dir",
        state_arg,
        "--export",
        exported.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = run_with_output(&export_args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "generation 2: not usable (bad CRC): {} is corrupt: checksum",
            newest.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("generation 1: intact"), "{stdout}");
    assert!(
        stdout.contains("  2 services, 5 instances, 5 passing"),
        "{stdout}"
    );
    assert!(stdout.contains("exported generation 1 to "), "{stdout}");
    // `check` on the same directory: start-up would skip the damaged base (a warning).
    let url = consul.url();
    let check = [
        "check",
        "--registry",
        &url,
        "--state-dir",
        state_arg,
        "--strict",
    ];
    let (code, stdout, _) = run_with_output(&check);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "state-dir: {state_arg}: writable; start-up serves generation 1 "
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("  warning: ") && stdout.contains("(start-up skips it; "),
        "{stdout}"
    );
    let registry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    let mut services: Vec<&String> = registry.as_object().unwrap().keys().collect();
    services.sort();
    assert_eq!(services, ["db", "web"], "generation 1 has no cache service");

    // A torn base too: nothing intact, exit 2, nothing exported.
    std::fs::remove_file(&exported).unwrap();
    let oldest = state.join("state-000000000001.snapdns");
    let bytes = std::fs::read(&oldest).unwrap();
    std::fs::write(&oldest, &bytes[..bytes.len() - 10]).unwrap();
    let (code, stdout, _) = run_with_output(&export_args);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.contains("generation 1: not usable (torn): "),
        "{stdout}"
    );
    assert!(
        stdout.contains("no intact generation: nothing to serve or export"),
        "{stdout}"
    );
    assert!(!exported.exists());

    let (code, _, stderr) = run_with_output(&["state", "--state-dir", "/nonexistent/snapdns"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read the state directory /nonexistent/snapdns"),
        "{stderr}"
    );
}
