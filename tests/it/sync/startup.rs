//! Start-up from the zone cache: a restart with the registry down answers from the cache of
//! the newest base, then from the base and its journal; a damaged cache falls back to building
//! the zone from the state, with the same answers; a base found unreadable once its cache is
//! served leaves the cache serving.

use std::sync::Arc;

use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::assert_eventually;
use crate::support::dns_client::{service_addresses, sorted_answers, udp};
use crate::support::http::health;
use crate::support::registry::{entry, web_addresses, web_and_db};
use crate::support::server::Server;
use crate::support::standin::Standin;
use crate::support::state_files::{spoil_base_payload, tear_journal};
use crate::support::sync_settings::start_syncing_in;

/// Questions covering services, tags, RFC 2782 names, nodes, the apex and a missing name.
const QUESTIONS: [(&str, RecordType); 8] = [
    ("web.service.consul.", RecordType::A),
    ("v1.web.service.dc1.consul.", RecordType::A),
    ("_web._tcp.service.consul.", RecordType::SRV),
    ("cache.service.consul.", RecordType::SRV),
    ("n1.node.consul.", RecordType::A),
    ("db.service.consul.", RecordType::AAAA),
    ("consul.", RecordType::SOA),
    ("missing.service.consul.", RecordType::A),
];

/// Every answer of `server` to [`QUESTIONS`], sorted.
fn answers(server: &Server) -> Vec<String> {
    sorted_answers(server.addr, &QUESTIONS)
}

#[test]
fn sync_restart_serves_the_zone_cache_then_the_state_and_a_damaged_cache_falls_back() {
    let (mut consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let state = dir.path().join("state");
    let cache = state.join("zone-000000000001.snapdns");
    let mut server = start_syncing_in(dir.clone(), &consul.url(), &[]);
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    assert_eventually!(cache.exists());
    // A change after the base: saved in its journal, not in the cache.
    consul.put_service(
        "cache",
        &json!([entry("c1", "10.4.0.1", "cache", "", 6379, &[], "passing")]),
    );
    assert_eventually!(health(&server).1["persistence"]["journal_records"] == 1);
    let before = answers(&server);
    let index = consul.index();
    server.kill();
    consul.stop();

    let mut server = start_syncing_in(dir.clone(), &consul.url(), &[]);
    // The very first answer comes from the cache (or already from the state).
    assert_eq!(service_addresses(&server, "web"), web_addresses());
    let report = health(&server).1;
    assert_eq!(report["snapshot"]["origin"], "disk", "{report}");
    assert!(server
        .log()
        .contains("serving the zone cache while the persisted state is read"));
    assert_eventually!(server.log().contains(
        "serving the persisted registry state until the first sync (built over the zone cache)"
    ));
    assert_eq!(answers(&server), before);
    let report = health(&server).1;
    assert_eq!(
        report["snapshot"]["index"].as_u64(),
        Some(index),
        "{report}"
    );
    assert_eq!(report["snapshot"]["instances"], 6, "{report}");
    assert_eq!(report["persistence"]["journal_records"], 1, "{report}");
    server.kill();

    // A damaged cache: logged once, and the state is built as without a cache.
    let mut bytes = std::fs::read(&cache).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&cache, &bytes).unwrap();
    let server = start_syncing_in(dir.clone(), &consul.url(), &[]);
    assert_eq!(answers(&server), before);
    assert_eq!(health(&server).1["snapshot"]["origin"], "disk");
    let log = server.log();
    assert_eq!(server.log_count("zone cache not usable"), 1, "{log}");
    assert!(log.contains("is corrupt: checksum"), "{log}");
    assert!(!log.contains("serving the zone cache"), "{log}");
}

#[test]
fn sync_a_zone_cache_built_with_other_options_is_not_served() {
    let (mut consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let cache = dir.path().join("state").join("zone-000000000001.snapdns");
    let mut server = start_syncing_in(dir.clone(), &consul.url(), &[]);
    assert_eventually!(cache.exists());
    server.kill();
    consul.stop();

    // Each start differs from the one before in one zone option: its cache is not served.
    for args in [
        &["--service-ttl", "42s"][..],
        &["--service-ttl-for", "web=42s"],
        &["--service-ttl-for", "w*=42s", "--serve-warning"],
    ] {
        let mut server = start_syncing_in(dir.clone(), &consul.url(), args);
        let reply = udp(server.addr, "web.service.consul.", RecordType::A);
        assert!(
            reply.answers.iter().all(|r| r.ttl == 42),
            "{args:?}: {:?}",
            reply.answers
        );
        assert_eq!(reply.answers.len(), 4);
        assert!(
            server.log().contains("built with other zone options"),
            "{args:?}"
        );
        server.kill();
    }
}

/// The base whose zone cache is being served turns out unreadable when it is read: the cache
/// keeps answering rather than the older generation's older state (answers never go back in
/// time), it is said once, and the first sync writes a whole new base. The base is spoiled so
/// that it passes the check made before its cache is served (header, length, CRC) and fails
/// the read after: the two happen a moment apart at start-up, too close to damage it between.
#[test]
fn sync_a_base_unreadable_after_its_zone_cache_was_served_keeps_the_cache() {
    let (mut consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let state = dir.path().join("state");
    let mut server = start_syncing_in(dir.clone(), &consul.url(), &[]);
    assert_eventually!(health(&server).1["persistence"]["ok"] == true);
    server.kill();
    // Generation 2, newer than 1 by the cache service: the journal of 1 is torn, so the next
    // process writes a whole base.
    tear_journal(&state, 1);
    consul.put_service(
        "cache",
        &json!([entry("c1", "10.4.0.1", "cache", "", 6379, &[], "passing")]),
    );
    let mut server = start_syncing_in(dir.clone(), &consul.url(), &[]);
    assert_eventually!(state.join("zone-000000000002.snapdns").exists());
    assert_eq!(service_addresses(&server, "cache"), ["10.4.0.1"]);
    let before = answers(&server);
    server.kill();
    consul.stop();

    spoil_base_payload(&state, 2);
    let mut server = start_syncing_in(dir.clone(), &consul.url(), &[]);
    assert_eventually!(server
        .log()
        .contains("older persisted state is older than the cache"));
    let log = server.log();
    assert!(
        log.contains("serving the zone cache while the persisted state is read"),
        "{log}"
    );
    assert!(
        log.contains("state-000000000002.snapdns is corrupt: invalid payload"),
        "{log}"
    );
    assert_eq!(
        server.log_count("state-000000000002.snapdns is corrupt"),
        1,
        "{log}"
    );
    assert_eq!(
        answers(&server),
        before,
        "the cache of generation 2 is still served"
    );
    let (code, report) = health(&server);
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["snapshot"]["origin"], "disk", "{report}");
    assert_eq!(
        report["persistence"]["skipped"].as_array().unwrap().len(),
        1,
        "{report}"
    );

    // The registry is back (as it started, without the cache service): its state replaces
    // the cache and is saved as a whole new base.
    consul.restart();
    assert_eventually!(service_addresses(&server, "cache").is_empty());
    assert_eventually!(health(&server).1["persistence"]["generation"] == 3);
    server.kill();
}
