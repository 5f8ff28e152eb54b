//! Zone transfers (AXFR over TCP) to real secondaries: what a transfer holds, who may have
//! it (`--allow-transfer`, `--tsig-key`), one snapshot per transfer, and Knot as a secondary
//! serving the same answers as snapdns.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::json;

use crate::support::dns_client::{assert_rcode, query_message, tcp, udp_raw};
use crate::support::knot::STATIC_ZONE;
use crate::support::registry::{entry, many, replace_registry_file, web_and_db};
use crate::support::secondaries::{assert_same_answers_by_dnspython, Secondary};
use crate::support::server::Server;
use crate::support::transfer::{
    axfr, key_flag, read_message, send_request, signer, soa_serial, KEY_NAME, KEY_SECRET,
};
use crate::support::{eventually, free_port, write};

/// (owner, type) -> rdata set, the records of a transfer or of the answers to queries.
type RecordSets = BTreeMap<(String, RecordType), BTreeSet<String>>;

fn record_sets(records: &[Record]) -> RecordSets {
    let mut sets = RecordSets::new();
    for record in records {
        sets.entry((record.name.to_ascii().to_lowercase(), record.record_type()))
            .or_default()
            .insert(format!("{} {}", record.ttl, record.data));
    }
    sets
}

/// The answers to a TCP query for every owner and type of `sets`, from `addr`: only the
/// records the name owns (a CNAME's target records are the target's).
fn answered_sets(addr: SocketAddr, sets: &RecordSets) -> RecordSets {
    let mut answered = RecordSets::new();
    for (name, rtype) in sets.keys() {
        let reply = tcp(addr, name, *rtype);
        let own: Vec<Record> = reply
            .answers
            .iter()
            .filter(|r| r.name.to_ascii().eq_ignore_ascii_case(name) && r.record_type() == *rtype)
            .cloned()
            .collect();
        answered.extend(record_sets(&own));
    }
    answered
}

/// web_and_db with web on n4 critical: served are n1..n3.
fn registry_with_a_failing_instance() -> serde_json::Value {
    let mut registry = web_and_db(&["v1"]);
    registry["web"][3] = entry("n4", "10.1.0.4", "web", "", 8080, &["v1"], "critical");
    registry
}

#[test]
fn axfr_gives_every_served_record_between_two_soas() {
    let (server, _) = Server::with_registry_file(
        &registry_with_a_failing_instance(),
        &["--allow-transfer", "127.0.0.1/32"],
    );
    let transfer = axfr(server.addr, "consul", None);
    assert_eq!(transfer.rcode(), ResponseCode::NoError);
    let first = &transfer.messages[0];
    assert!(first.metadata.authoritative, "AA on transfer responses");
    assert_eq!(first.queries.len(), 1, "the question in the first message");
    let records = transfer.records();
    let serial = soa_serial(&records[0]).expect("SOA first");
    assert_eq!(
        soa_serial(records.last().unwrap()),
        Some(serial),
        "SOA last"
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count(),
        2,
        "the SOA only first and last"
    );
    let sets = record_sets(&records[1..records.len() - 1]);
    let web_a = &sets[&("web.service.consul.".to_string(), RecordType::A)];
    assert_eq!(
        web_a
            .iter()
            .map(|r| r.split(' ').nth(1).unwrap())
            .collect::<Vec<_>>(),
        ["10.1.0.1", "10.1.0.2", "10.1.0.3"],
        "passing instances only, as served"
    );
    for name in [
        "web.service.dc1.consul.",
        "v1.web.service.consul.",
        "_web._tcp.service.consul.",
        "db.service.consul.",
        "n1.node.consul.",
        "n4.node.dc1.consul.",
    ] {
        assert!(
            sets.keys().any(|(owner, _)| owner == name),
            "{name} in the transfer: {:?}",
            sets.keys()
        );
    }
    assert!(sets.contains_key(&("consul.".to_string(), RecordType::NS)));
    // Everything transferred is exactly what a query for it answers.
    assert_eq!(answered_sets(server.addr, &sets), sets);
}

#[test]
fn static_zones_are_transferable() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "static.test.zone", STATIC_ZONE);
    let zones = dir.path().to_str().unwrap();
    let server = Server::demo(
        &[],
        &["--zones-dir", zones, "--allow-transfer", "127.0.0.0/8"],
    );
    let records = axfr(server.addr, "static.test", None).records();
    let sets = record_sets(&records[1..records.len() - 1]);
    let expected: RecordSets = [
        (("static.test.", RecordType::NS), "120 ns.static.test."),
        (("ns.static.test.", RecordType::A), "120 10.9.0.1"),
        (("db.static.test.", RecordType::A), "120 10.9.0.5"),
    ]
    .into_iter()
    .map(|((name, rtype), rdata)| {
        (
            (name.to_string(), rtype),
            BTreeSet::from([rdata.to_string()]),
        )
    })
    .collect();
    assert_eq!(sets, expected);
    assert_eq!(soa_serial(&records[0]), Some(7));
}

#[test]
fn transfers_need_an_allowed_address_and_a_zone_apex() {
    let refusing = Server::demo(&[], &[]);
    assert_eq!(
        axfr(refusing.addr, "consul", None).rcode(),
        ResponseCode::Refused
    );
    let elsewhere = Server::demo(&[], &["--allow-transfer", "10.0.0.0/8"]);
    assert_eq!(
        axfr(elsewhere.addr, "consul", None).rcode(),
        ResponseCode::Refused
    );
    let allowed = Server::demo(&[], &["--allow-transfer", "127.0.0.1/32"]);
    // Not a zone of ours, or a name inside one: not authoritative for it as a zone.
    assert_eq!(
        axfr(allowed.addr, "web.service.consul", None).rcode(),
        ResponseCode::NotAuth
    );
    assert_eq!(
        axfr(allowed.addr, "example.com", None).rcode(),
        ResponseCode::NotAuth
    );
    // IXFR over UDP: the current SOA alone, from which a secondary behind asks over TCP.
    let serial = current_serial(&allowed);
    for asked in [serial, serial.wrapping_sub(5)] {
        let reply = udp_ixfr(allowed.addr, asked);
        assert_rcode(&reply, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 1, "{reply:?}");
        assert_eq!(soa_serial(&reply.answers[0]), Some(serial));
    }
    assert_rcode(&udp_ixfr(elsewhere.addr, 1), ResponseCode::Refused);
    // AXFR is not defined over UDP (RFC 5936 §4.2).
    let query = query_message("consul", RecordType::AXFR, None)
        .to_vec()
        .unwrap();
    let reply = Message::from_vec(&udp_raw(allowed.addr, &query).unwrap()).unwrap();
    assert_rcode(&reply, ResponseCode::NotImp);
}

#[test]
fn with_a_key_transfers_are_signed_and_unsigned_or_badly_signed_ones_get_notauth() {
    let key = key_flag();
    let (server, _) = Server::with_registry_file(
        &many("web", 1500),
        &["--allow-transfer", "127.0.0.1/32", "--tsig-key", &key],
    );
    // Signed: every message verifies in the chain, and there are several.
    let signed = axfr(server.addr, "consul", Some(&signer(KEY_NAME, KEY_SECRET)));
    assert_eq!(signed.rcode(), ResponseCode::NoError);
    assert!(
        signed.messages.len() > 1,
        "{} messages",
        signed.messages.len()
    );
    assert!(signed.messages.iter().all(|m| m.signature.is_some()));
    let records = signed.records();
    assert_eq!(soa_serial(&records[0]), soa_serial(records.last().unwrap()));
    // Unsigned: NOTAUTH, nothing to sign with.
    let unsigned = axfr(server.addr, "consul", None);
    assert_eq!(unsigned.rcode(), ResponseCode::NotAuth);
    assert!(unsigned.records().is_empty());
    // A wrong secret: NOTAUTH with TSIG error BADSIG (16); an unknown key: BADKEY (17).
    let wrong = axfr(
        server.addr,
        "consul",
        Some(&signer(
            KEY_NAME,
            "d3JvbmcgZG9lcyBub3QgbWF0dGVyIGhvdyBsb25nIGl0IGlz",
        )),
    );
    assert_eq!(wrong.rcode(), ResponseCode::NotAuth);
    assert_eq!(tsig_error(&wrong.messages[0]), Some(16));
    let unknown = axfr(
        server.addr,
        "consul",
        Some(&signer("other-key", KEY_SECRET)),
    );
    assert_eq!(unknown.rcode(), ResponseCode::NotAuth);
    assert_eq!(tsig_error(&unknown.messages[0]), Some(17));
    // kdig (Knot's libknot, an independent TSIG implementation) agrees.
    let port = server.addr.port().to_string();
    let out = kdig(&[
        "@127.0.0.1",
        "-p",
        &port,
        "AXFR",
        "consul",
        "-y",
        &format!("hmac-sha256:{KEY_NAME}:{KEY_SECRET}"),
    ]);
    assert!(!out.contains(";; ERROR"), "{out}");
    assert!(
        out.contains(&format!("({} messages,", signed.messages.len())),
        "{out}"
    );
}

fn tsig_error(message: &Message) -> Option<u16> {
    let signature = message.signature.as_ref()?;
    signature.data.error.map(u16::from)
}

fn kdig(args: &[&str]) -> String {
    let output = std::process::Command::new("kdig")
        .args(args)
        .output()
        .expect("kdig is installed (apt-get install knot-dnsutils)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_transfer_is_one_snapshot_even_when_a_new_one_is_published_meanwhile() {
    let (server, path) = Server::with_registry_file(
        &services_of_fifty(300),
        &[
            "--allow-transfer",
            "127.0.0.1/32",
            "--tcp-idle-timeout",
            "60s",
        ],
    );
    let before = current_serial(&server);
    // A tiny receive window keeps the server blocked after the first few messages.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    send_request(&mut stream, "consul", RecordType::AXFR, None);
    let first = Message::from_vec(&read_message(&mut stream).unwrap()).unwrap();
    assert_eq!(soa_serial(&first.answers[0]), Some(before));
    // A new registry: web gone, db added. Wait until it is served.
    // A later modify index: the serial of a registry file without one follows the data's.
    let mut db = entry("d1", "10.2.0.1", "db", "", 5432, &[], "passing");
    db["Service"]["ModifyIndex"] = json!(1000);
    replace_registry_file(&path, &json!({ "db": [db] }));
    assert!(eventually(Duration::from_secs(20), || current_serial(
        &server
    ) != before));
    let mut records = first.answers.clone();
    let mut bytes_read = 0;
    while let Some(bytes) = read_message(&mut stream) {
        bytes_read += bytes.len();
        let message = Message::from_vec(&bytes).unwrap();
        let done = message
            .answers
            .iter()
            .any(|r| r.record_type() == RecordType::SOA);
        records.extend(message.answers);
        if done {
            break;
        }
    }
    // Only a transfer larger than the kernel's socket buffers kept the server waiting for
    // this client while the new snapshot was published.
    let buffers = tcp_buffer_max("tcp_wmem") + tcp_buffer_max("tcp_rmem") / 64;
    assert!(
        bytes_read > buffers,
        "the transfer ({bytes_read} bytes) fits in the socket buffers ({buffers}): grow it"
    );
    assert_eq!(
        soa_serial(records.last().unwrap()),
        Some(before),
        "one serial, SOA to SOA"
    );
    let sets = record_sets(&records);
    assert!(sets.contains_key(&("svc299.service.consul.".to_string(), RecordType::A)));
    assert!(
        !sets.keys().any(|(name, _)| name.starts_with("db.")),
        "nothing of the new snapshot"
    );
}

/// `count` services `svc0`, `svc1`, ... of 50 instances each on nodes `n000`..`n049`: the
/// many names per service make a transfer of several megabytes.
fn services_of_fifty(count: usize) -> serde_json::Value {
    let mut registry = serde_json::Map::new();
    for i in 0..count {
        let name = format!("svc{i}");
        registry.insert(name.clone(), many(&name, 50)[&name].clone());
    }
    serde_json::Value::Object(registry)
}

/// The largest buffer `/proc/sys/net/ipv4/<name>` allows a TCP socket.
fn tcp_buffer_max(name: &str) -> usize {
    let text = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
    text.split_whitespace().last().unwrap().parse().unwrap()
}

fn current_serial(server: &Server) -> u32 {
    let reply = tcp(server.addr, "consul", RecordType::SOA);
    soa_serial(&reply.answers[0]).expect("SOA")
}

#[test]
fn knot_and_nsd_serve_what_snapdns_serves_and_get_a_change_by_notify_and_ixfr() {
    let key = key_flag();
    let (knot_port, nsd_port) = (free_port(), free_port());
    let (to_knot, to_nsd) = (
        format!("127.0.0.1:{knot_port}"),
        format!("127.0.0.1:{nsd_port}"),
    );
    let (server, path) = Server::with_registry_file(
        &web_and_db(&["v1"]),
        &[
            "--allow-transfer",
            "127.0.0.1/32",
            "--tsig-key",
            &key,
            "--notify",
            &to_knot,
            "--notify",
            &to_nsd,
        ],
    );
    let secondaries = [
        ("knot", Secondary::knot(knot_port, "consul", server.addr)),
        ("nsd", Secondary::nsd(nsd_port, "consul", server.addr)),
    ];
    let served = |server: &Server| {
        let records = axfr(server.addr, "consul", Some(&signer(KEY_NAME, KEY_SECRET))).records();
        record_sets(&records[1..records.len() - 1])
    };
    let sets = served(&server);
    for (name, secondary) in &secondaries {
        assert_eq!(
            answered_sets(secondary.addr, &sets),
            answered_sets(server.addr, &sets),
            "{name}'s log:\n{}",
            secondary.log()
        );
        assert_same_answers_by_dnspython(server.addr, secondary.addr, sets.keys().cloned());
    }
    let before = current_serial(&server);
    // n4's check turns critical, at a later index.
    let mut registry = web_and_db(&["v1"]);
    registry["web"][3] = entry("n4", "10.1.0.4", "web", "", 8080, &["v1"], "critical");
    registry["web"][3]["Checks"][1]["ModifyIndex"] = json!(1000);
    replace_registry_file(&path, &registry);
    assert!(eventually(Duration::from_secs(20), || current_serial(
        &server
    ) != before));
    let web = |addr| sorted_addresses(addr, "web.service.consul");
    for (name, secondary) in &secondaries {
        // NOTIFY, then IXFR: the change is answered within 2 s of snapdns serving it.
        assert!(
            eventually(Duration::from_secs(2), || web(secondary.addr).len() == 3),
            "{name} still answers {:?}; its log:\n{}",
            web(secondary.addr),
            secondary.log()
        );
    }
    // Incremental transfers, not full ones: snapdns sent one difference to each, Knot logs an
    // IXFR, and NSD's update is smaller than its first, full transfer.
    let sent = server.log();
    let after = &sent[sent.find("serial=1000").expect("a transfer of the change")..];
    assert_eq!(after.matches("kind=\"ixfr\"").count(), 2, "{sent}");
    assert!(!after.contains("kind=\"axfr\""), "{sent}");
    let knot_log = secondaries[0].1.log();
    assert!(knot_log.contains("IXFR, incoming"), "{knot_log}");
    assert!(!knot_log.contains("AXFR-style"), "{knot_log}");
    let nsd_log = secondaries[1].1.log();
    let sizes: Vec<usize> = nsd_log
        .split(" of ")
        .skip(1)
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    assert!(sizes.len() == 2 && sizes[1] < sizes[0], "{nsd_log}");
    let sets = served(&server);
    for (name, secondary) in &secondaries {
        assert_eq!(
            answered_sets(secondary.addr, &sets),
            answered_sets(server.addr, &sets),
            "{name}"
        );
        assert_same_answers_by_dnspython(server.addr, secondary.addr, sets.keys().cloned());
    }
}

#[test]
fn unbound_with_an_auth_zone_answers_registry_names_after_the_transfer() {
    let unbound_port = free_port();
    let to_unbound = format!("127.0.0.1:{unbound_port}");
    let (server, _) = Server::with_registry_file(
        &registry_with_a_failing_instance(),
        &["--allow-transfer", "127.0.0.1/32", "--notify", &to_unbound],
    );
    let unbound = Secondary::unbound(unbound_port, "consul", server.addr);
    assert_eq!(
        sorted_addresses(unbound.addr, "web.service.consul"),
        ["10.1.0.1", "10.1.0.2", "10.1.0.3"],
        "{}",
        unbound.log()
    );
    let srv = tcp(unbound.addr, "_web._tcp.service.consul", RecordType::SRV);
    assert_eq!(srv.answers.len(), 3, "{}", unbound.log());
    let records = axfr(server.addr, "consul", None).records();
    let sets = record_sets(&records[1..records.len() - 1]);
    assert_eq!(
        answered_sets(unbound.addr, &sets),
        answered_sets(server.addr, &sets)
    );
    assert_same_answers_by_dnspython(server.addr, unbound.addr, sets.keys().cloned());
}

/// An IXFR question over UDP for `consul.` from `serial`.
fn udp_ixfr(addr: SocketAddr, serial: u32) -> Message {
    let mut query = query_message("consul", RecordType::IXFR, None);
    let soa = SOA::new(
        Name::from_ascii("ns.consul.").unwrap(),
        Name::from_ascii("hostmaster.consul.").unwrap(),
        serial,
        3600,
        600,
        86400,
        0,
    );
    let owner = Name::from_ascii("consul.").unwrap();
    query
        .authorities
        .push(Record::from_rdata(owner, 0, RData::SOA(soa)));
    Message::from_vec(&udp_raw(addr, &query.to_vec().unwrap()).expect("an answer")).unwrap()
}

/// The addresses `name` answers over TCP, sorted.
fn sorted_addresses(addr: SocketAddr, name: &str) -> Vec<String> {
    let reply = tcp(addr, name, RecordType::A);
    let mut found: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
    found.sort();
    found
}

#[test]
fn notify_is_signed_and_sent_again_until_the_secondary_answers() {
    let secondary = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    secondary
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let notify = secondary.local_addr().unwrap().to_string();
    let key = key_flag();
    let (server, _) = Server::with_registry_file(
        &web_and_db(&[]),
        &[
            "--allow-transfer",
            "127.0.0.1/32",
            "--tsig-key",
            &key,
            "--notify",
            &notify,
        ],
    );
    let serial = current_serial(&server);
    let mut buffer = [0u8; 4096];
    let mut receive = || {
        let (len, from) = secondary.recv_from(&mut buffer).expect("a NOTIFY");
        let bytes = buffer[..len].to_vec();
        signer(KEY_NAME, KEY_SECRET)
            .verify_message_byte(&bytes, None, true)
            .expect("NOTIFY signed with the key");
        (Message::from_vec(&bytes).unwrap(), from)
    };
    let (first, _) = receive();
    assert_eq!(first.metadata.op_code, OpCode::Notify);
    assert!(first.metadata.authoritative);
    assert_eq!(first.queries[0].query_type(), RecordType::SOA);
    assert_eq!(first.queries[0].name().to_ascii(), "consul.");
    assert_eq!(soa_serial(&first.answers[0]), Some(serial));
    // Not answered: the same NOTIFY comes again (RFC 1996 §3.6); this time it is answered.
    let (again, from) = receive();
    assert_eq!(again.metadata.id, first.metadata.id);
    let mut ack = Message::new(again.metadata.id, MessageType::Response, OpCode::Notify);
    ack.add_query(again.queries[0].clone());
    secondary.send_to(&ack.to_vec().unwrap(), from).unwrap();
    assert!(eventually(Duration::from_secs(10), || server
        .log()
        .contains(&format!(
            "NOTIFY acknowledged target={notify} serial={serial}"
        ))));
}

/// A registry of `services` services `s0`, `s1`, ... of `per_service` passing instances each,
/// every instance on a node of its own, written compactly to `path`.
fn write_large_registry(path: &std::path::Path, services: usize, per_service: usize) {
    let mut registry = serde_json::Map::new();
    for s in 0..services {
        let name = format!("s{s}");
        let entries: Vec<serde_json::Value> = (0..per_service)
            .map(|i| {
                let n = s * per_service + i;
                let addr = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255);
                entry(&format!("n{n}"), &addr, &name, "", 8000, &["v1"], "passing")
            })
            .collect();
        registry.insert(name, serde_json::Value::Array(entries));
    }
    std::fs::write(path, serde_json::to_vec(&registry).unwrap()).unwrap();
}

/// kdig's count of the records of an AXFR of `consul.` from `addr`, its transfer verified.
fn kdig_axfr_records(addr: SocketAddr) -> usize {
    let port = addr.port().to_string();
    let output = std::process::Command::new("kdig")
        .args(["@127.0.0.1", "-p", &port, "+tcp", "AXFR", "consul"])
        .output()
        .expect("kdig is installed (apt-get install knot-dnsutils)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains(";; ERROR"),
        "{}",
        &text[text.len().saturating_sub(2000)..]
    );
    let summary = text
        .lines()
        .find(|line| line.starts_with(";; Received"))
        .unwrap_or_else(|| panic!("no summary: {}", &text[text.len().saturating_sub(2000)..]));
    // ";; Received 152414242 B (2445 messages, 2600004 records)"
    summary
        .split(", ")
        .nth(1)
        .and_then(|records| records.split(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"))
}

#[test]
fn a_zone_of_100000_instances_transfers_completely() {
    // The records one service of this shape gives, from a registry of one service.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let one = dir.path().join("one.json");
    write_large_registry(&one, 1, 10);
    let one_source = format!("file:{}", one.display());
    let small = Server::start(&[
        "--registry",
        &one_source,
        "--allow-transfer",
        "127.0.0.1/32",
    ]);
    let small_records = kdig_axfr_records(small.addr);
    let apex_records = 2 + 1 + 1; // the SOA twice, the NS, its name server's A (ns.consul.)
    let per_service = small_records - apex_records;
    drop(small);
    // 10,000 such services: every record of each, between the two SOAs.
    let large = dir.path().join("large.json");
    write_large_registry(&large, 10_000, 10);
    let large_source = format!("file:{}", large.display());
    let server = Server::start_within(
        dir.clone(),
        &[
            "--registry",
            &large_source,
            "--allow-transfer",
            "127.0.0.1/32",
        ],
        Duration::from_secs(300),
    );
    let records = kdig_axfr_records(server.addr);
    assert_eq!(records, 10_000 * per_service + apex_records);
    let log = server.log();
    let logged = log
        .lines()
        .find(|line| line.contains("zone transfer sent"))
        .expect("the transfer logged");
    assert!(logged.contains(&format!("records={records}")), "{logged}");
}

#[test]
fn a_signed_query_is_answered_signed_and_cut_to_its_question_when_the_signature_would_not_fit() {
    let key = key_flag();
    let (server, _) = Server::with_registry_file(&many("web", 100), &["--tsig-key", &key]);
    let ask = |name: &str, qtype| {
        let mut query = query_message(name, qtype, None);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut verifier = query
            .finalize(&signer(KEY_NAME, KEY_SECRET), now)
            .unwrap()
            .expect("a verifier");
        let reply = udp_raw(server.addr, &query.to_vec().unwrap()).expect("an answer");
        assert!(reply.len() <= 512, "{} bytes without EDNS", reply.len());
        verifier
            .verify(&reply)
            .expect("signed with the key")
            .into_message()
    };
    // A small answer, signed.
    let soa = ask("consul", RecordType::SOA);
    assert_rcode(&soa, ResponseCode::NoError);
    assert_eq!(soa.answers.len(), 1);
    // 100 addresses cut to 512 bytes leave no room for the TSIG record: the question alone,
    // TC=1, signed (RFC 8945 §5.3), so the client asks again over TCP.
    let web = ask("web.service.consul", RecordType::A);
    assert!(web.metadata.truncation);
    assert!(web.answers.is_empty());
    assert_eq!(web.queries.len(), 1);
}
