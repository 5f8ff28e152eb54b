//! SIGHUP (issue #5): the config file and the static zones reloaded, a bad config or zone file
//! rejected keeping the old state (naming the key or line), settings that need a restart
//! reported, no query dropped under load, and a new UDP size cap applied.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::assert_eventually;
use crate::support::dns_client::{query_message, rdata, udp, udp_edns};
use crate::support::fake_upstream::{Behaviour, FakeUpstream};
use crate::support::metrics::{metric, sample, scrape};
use crate::support::registry::{demo_registry, many};
use crate::support::server::Server;
use crate::support::{eventually, write};

const ZONE_V1: &str = "$ORIGIN static.test.\n$TTL 60\n\
    @ IN SOA ns.static.test. hostmaster.static.test. 1 3600 900 604800 30\n\
    @ IN NS ns\n\
    ns IN A 10.9.0.1\n\
    db IN A 10.9.0.5\n";

const ZONE_V2: &str = "$ORIGIN static.test.\n$TTL 60\n\
    @ IN SOA ns.static.test. hostmaster.static.test. 2 3600 900 604800 30\n\
    @ IN NS ns\n\
    ns IN A 10.9.0.1\n\
    db IN A 10.9.0.6\n\
    new IN A 10.9.0.7\n";

/// Line 5 has an unknown record type.
const ZONE_BROKEN: &str = "$ORIGIN static.test.\n$TTL 60\n\
    @ IN SOA ns.static.test. hostmaster.static.test. 3 3600 900 604800 30\n\
    ns IN A 10.9.0.1\n\
    db IN NOSUCHTYPE 10.9.0.8\n";

fn static_a(server: &Server, name: &str) -> (ResponseCode, Vec<String>) {
    let reply = udp(server.addr, name, RecordType::A);
    (reply.metadata.response_code, rdata(&reply.answers))
}

fn ok(addresses: &[&str]) -> (ResponseCode, Vec<String>) {
    (
        ResponseCode::NoError,
        addresses.iter().map(|a| a.to_string()).collect(),
    )
}

#[test]
fn sighup_reloads_zones_and_rejects_a_bad_config_keeping_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    write(&zones, "static.test.zone", ZONE_V1);
    let config = write(
        dir.path(),
        "snapdns.toml",
        "negative-ttl = \"5s\"\nno-forward = true\n",
    );
    let server = Server::start(&[
        "--registry",
        &demo_registry(),
        "--config",
        config.to_str().unwrap(),
        "--zones-dir",
        zones.to_str().unwrap(),
    ]);
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.5"]));

    // A zone edit takes effect on SIGHUP.
    write(&zones, "static.test.zone", ZONE_V2);
    server.signal("HUP");
    assert_eventually!(server.log_count("configuration reloaded") == 1);
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.6"]));
    assert_eq!(static_a(&server, "new.static.test."), ok(&["10.9.0.7"]));
    assert_eq!(metric(&server, "snapdns_config_reloads_total"), Some(1.0));

    // A bad value in the config file: rejected, naming the key; nothing changes.
    write(dir.path(), "snapdns.toml", "max-udp-size = 100\n");
    write(&zones, "static.test.zone", ZONE_V1);
    server.signal("HUP");
    assert_eventually!(server.log_count("configuration reload rejected") == 1);
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("configuration reload rejected"))
        .unwrap();
    assert!(
        line.contains("ERROR") && line.contains("max-udp-size: 100 is below 512"),
        "{line}"
    );
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.6"]));
    let text = scrape(&server);
    assert_eq!(
        sample(&text, "snapdns_config_reload_failures_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "snapdns_config_last_reload_successful"),
        Some(0.0)
    );

    // An unknown key is named too.
    write(dir.path(), "snapdns.toml", "negative-tll = \"5s\"\n");
    server.signal("HUP");
    assert_eventually!(server.log_count("configuration reload rejected") == 2);
    assert!(server.log().contains("negative-tll"), "{}", server.log());

    // A broken zone file rejects the reload: every old zone stays served as it was.
    write(dir.path(), "snapdns.toml", "negative-ttl = \"5s\"\n");
    write(&zones, "static.test.zone", ZONE_BROKEN);
    server.signal("HUP");
    assert_eventually!(server.log_count("configuration reload rejected") >= 3);
    let broken = zones.join("static.test.zone");
    assert!(
        server
            .log()
            .contains(&format!("zone file {} line 5", broken.display())),
        "{}",
        server.log()
    );
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.6"]));
    assert_eq!(static_a(&server, "new.static.test."), ok(&["10.9.0.7"]));

    // A setting that needs a restart: the reload applies the zones and says what it left.
    write(
        dir.path(),
        "snapdns.toml",
        "negative-ttl = \"5s\"\nservice-ttl = \"30s\"\n",
    );
    write(&zones, "static.test.zone", ZONE_V1);
    server.signal("HUP");
    assert_eventually!(server.log_count("configuration reloaded") == 2);
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("take effect only after a restart") && l.contains("service-ttl")),
        "{}",
        server.log()
    );
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.5"]));
    let web = udp(server.addr, "web.service.consul.", RecordType::A);
    assert!(
        web.answers.iter().all(|r| r.ttl == 0),
        "TTL unchanged until a restart"
    );
    let text = scrape(&server);
    assert_eq!(sample(&text, "snapdns_config_reloads_total"), Some(2.0));
    assert_eq!(
        sample(&text, "snapdns_config_last_reload_successful"),
        Some(1.0)
    );
}

#[test]
fn sighup_under_load_drops_no_query() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    write(&zones, "static.test.zone", ZONE_V1);
    let server = Server::start(&[
        "--registry",
        &demo_registry(),
        "--zones-dir",
        zones.to_str().unwrap(),
    ]);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // One client, one query at a time, no retries: a dropped query shows as a timeout.
    let client = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let names = ["db.static.test.", "web.service.consul."];
        let mut failures = Vec::new();
        let mut sent = 0usize;
        let mut buf = vec![0u8; 4096];
        while !flag.load(Ordering::Relaxed) && sent < 50_000 {
            let name = names[sent % 2];
            let mut query = query_message(name, RecordType::A, None);
            query.metadata.id = sent as u16;
            socket.send_to(&query.to_vec().unwrap(), addr).unwrap();
            sent += 1;
            match socket.recv_from(&mut buf) {
                Ok((len, _)) => {
                    let reply = Message::from_vec(&buf[..len]).unwrap();
                    if reply.metadata.id != query.metadata.id
                        || reply.metadata.response_code != ResponseCode::NoError
                        || reply.answers.is_empty()
                    {
                        failures.push(format!("{name}: {reply:?}"));
                    }
                }
                Err(error) => failures.push(format!("{name}: no answer: {error}")),
            }
        }
        (sent, failures)
    });
    // Alternate the zone between two versions, five reloads while the client keeps asking.
    let started = Instant::now();
    for round in 1..=5 {
        let text = if round % 2 == 1 { ZONE_V2 } else { ZONE_V1 };
        write(&zones, "static.test.zone", text);
        server.signal("HUP");
        assert!(
            eventually(Duration::from_secs(10), || server
                .log_count("configuration reloaded")
                == round),
            "reload {round} not applied:\n{}",
            server.log()
        );
    }
    // A few more queries after the last reload.
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let (sent, failures) = client.join().unwrap();
    eprintln!("{sent} queries during 5 reloads in {:?}", started.elapsed());
    assert!(sent >= 100, "the client kept asking: {sent}");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(metric(&server, "snapdns_config_reloads_total"), Some(5.0));
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.6"]));
}

#[test]
fn sighup_applies_a_new_udp_size_cap_from_the_config_file() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let registry = write(
        dir.path(),
        "registry.json",
        &serde_json::to_string(&many("big", 60)).unwrap(),
    );
    let config = write(dir.path(), "snapdns.toml", "max-udp-size = 1232\n");
    let source = format!("file:{}", registry.display());
    let server = Server::start_in(
        dir.clone(),
        &["--config", config.to_str().unwrap(), "--registry", &source],
    );
    let before = udp_edns(
        server.addr,
        "big.service.consul.",
        RecordType::SRV,
        Some(8192),
    );
    assert!(
        before.metadata.truncation,
        "60 SRV records and addresses do not fit in 1232 bytes"
    );
    assert_eq!(before.edns.as_ref().map(|e| e.max_payload()), Some(1232));

    std::fs::write(&config, "max-udp-size = 8192\n").unwrap();
    server.signal("HUP");
    assert_eventually!(
        server.log_count("configuration reloaded") == 1,
        "{}",
        server.log()
    );
    let after = udp_edns(
        server.addr,
        "big.service.consul.",
        RecordType::SRV,
        Some(8192),
    );
    assert!(!after.metadata.truncation);
    assert_eq!(after.answers.len(), 60);
    assert_eq!(after.edns.as_ref().map(|e| e.max_payload()), Some(8192));
    assert!(
        !server.log().contains("max-udp-size"),
        "applied, not reported as needing a restart"
    );
}

/// `max-udp-size` has one home: after a SIGHUP changes it, forwarded answers advertise and
/// keep the new size as local answers do (they kept the start-up value before).
#[test]
fn sighup_applies_the_udp_size_cap_to_forwarded_answers_too() {
    let upstream = FakeUpstream::start(Behaviour::Answer, [192, 0, 2, 99]);
    let upstream_addr = upstream.addr.to_string();
    let (server, config) =
        Server::demo_with_config("max-udp-size = 1232\n", &["--upstream", &upstream_addr]);
    let forwarded = |name: &str| udp_edns(server.addr, name, RecordType::A, Some(8192));
    let before = forwarded("before.example.test.");
    assert_eq!(rdata(&before.answers), ["192.0.2.99"]);
    assert_eq!(before.edns.as_ref().map(|e| e.max_payload()), Some(1232));

    std::fs::write(&config, "max-udp-size = 4096\n").unwrap();
    server.signal("HUP");
    assert_eventually!(
        server.log_count("configuration reloaded") == 1,
        "{}",
        server.log()
    );
    // A new name (asked upstream) and the cached one: both carry the new size.
    for name in ["after.example.test.", "before.example.test."] {
        let after = forwarded(name);
        assert_eq!(rdata(&after.answers), ["192.0.2.99"], "{name}");
        assert_eq!(
            after.edns.as_ref().map(|e| e.max_payload()),
            Some(4096),
            "{name}"
        );
    }
    let local = udp_edns(
        server.addr,
        "web.service.consul.",
        RecordType::A,
        Some(8192),
    );
    assert_eq!(local.edns.as_ref().map(|e| e.max_payload()), Some(4096));
}
