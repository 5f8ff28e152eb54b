//! Answers from the registry zone: every behaviour of the core issue, asked over real UDP and
//! TCP of a running snapdns serving the demo registry (zones/demo.registry.json) or a registry
//! the test writes.

use std::collections::BTreeSet;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::support;
use crate::support::dns_client::{
    assert_rcode, dig, query_message, rdata, rrs, soa, sorted_rdata, tcp, udp, udp_edns, udp_raw,
};
use crate::support::registry::{entry, many};
use crate::support::server::Server;

#[test]
fn service_a_lists_only_passing_instances() {
    let server = Server::demo(&[], &[]);
    for transport in ["udp", "tcp"] {
        let answer = match transport {
            "udp" => udp(server.addr, "web.service.consul.", RecordType::A),
            _ => tcp(server.addr, "web.service.consul.", RecordType::A),
        };
        assert_rcode(&answer, ResponseCode::NoError);
        assert!(answer.metadata.authoritative, "AA over {transport}");
        // web-03 warns, web-04 is critical, web-05's node check is critical.
        assert_eq!(
            sorted_rdata(&answer.answers),
            ["10.0.1.11", "10.0.1.12"],
            "over {transport}"
        );
        assert!(answer
            .answers
            .iter()
            .all(|r| r.ttl == 0 && r.name.to_string() == "web.service.consul."));
        assert!(answer.authorities.is_empty() && answer.additionals.is_empty());
    }
}

#[test]
fn service_in_maintenance_and_instances_on_one_node() {
    let server = Server::demo(&[], &[]);
    // api-02 is in maintenance; api-01 runs two instances with the same address.
    let a = udp(server.addr, "api.service.consul.", RecordType::A);
    assert_eq!(
        rdata(&a.answers),
        ["10.0.2.21"],
        "duplicate addresses are merged"
    );
    let srv = udp(server.addr, "api.service.consul.", RecordType::SRV);
    assert_eq!(
        rdata(&srv.answers),
        [
            "1 1 7001 api-01.node.dc1.consul.",
            "1 1 7002 api-01.node.dc1.consul."
        ]
    );
    assert_eq!(
        rrs(&srv.additionals),
        [(
            "api-01.node.dc1.consul.".to_string(),
            RecordType::A,
            "10.0.2.21".to_string()
        )]
    );
}

#[test]
fn srv_targets_weights_and_additional_addresses() {
    let server = Server::demo(&[], &[]);
    let srv = udp(server.addr, "web.service.consul.", RecordType::SRV);
    assert_rcode(&srv, ResponseCode::NoError);
    // Node address -> node target; own service address -> addr target; weight = Weights.Passing.
    assert_eq!(
        rdata(&srv.answers),
        [
            "1 1 8080 web-01.node.dc1.consul.",
            "1 10 9090 0a00010c.addr.dc1.consul."
        ]
    );
    assert_eq!(
        rrs(&srv.additionals),
        [
            (
                "web-01.node.dc1.consul.".to_string(),
                RecordType::A,
                "10.0.1.11".to_string()
            ),
            (
                "0a00010c.addr.dc1.consul.".to_string(),
                RecordType::A,
                "10.0.1.12".to_string()
            ),
        ]
    );
    // Both target forms resolve on their own.
    let node = udp(server.addr, "web-01.node.dc1.consul.", RecordType::A);
    assert_eq!(rdata(&node.answers), ["10.0.1.11"]);
    let addr = udp(server.addr, "0a00010c.addr.dc1.consul.", RecordType::A);
    assert_eq!(rdata(&addr.answers), ["10.0.1.12"]);
}

#[test]
fn ipv6_and_hostname_instances() {
    let server = Server::demo(&[], &[]);
    let aaaa = udp(server.addr, "v6svc.service.consul.", RecordType::AAAA);
    assert_eq!(rdata(&aaaa.answers), ["fd00::51"]);
    let a = udp(server.addr, "v6svc.service.consul.", RecordType::A);
    assert_rcode(&a, ResponseCode::NoError);
    assert!(a.answers.is_empty(), "no IPv4 address: NODATA");
    assert_eq!(
        soa(&a).map(|s| s.serial),
        Some(1346),
        "NODATA carries the SOA"
    );
    let srv = udp(server.addr, "v6svc.service.consul.", RecordType::SRV);
    assert_eq!(rdata(&srv.answers), ["1 1 8443 v6-01.node.dc1.consul."]);
    assert_eq!(rdata(&srv.additionals), ["fd00::51"]);

    let cname = udp(server.addr, "external.service.consul.", RecordType::A);
    assert_eq!(
        rrs(&cname.answers),
        [(
            "external.service.consul.".to_string(),
            RecordType::CNAME,
            "legacy.example.org.".to_string()
        )]
    );
    let srv = udp(server.addr, "external.service.consul.", RecordType::SRV);
    assert_eq!(rdata(&srv.answers), ["1 1 443 legacy.example.org."]);
    assert!(srv.additionals.is_empty());
}

#[test]
fn tag_and_rfc2782_forms() {
    let server = Server::demo(&[], &[]);
    let sorted = |name: &str, qtype| sorted_rdata(&udp(server.addr, name, qtype).answers);
    assert_eq!(
        sorted("v1.web.service.consul.", RecordType::A),
        ["10.0.1.11", "10.0.1.12"]
    );
    assert_eq!(
        sorted("HTTP.web.service.consul.", RecordType::A),
        ["10.0.1.11"],
        "tags are case-insensitive"
    );
    // v2 instances warn or fail: no passing instance with the tag.
    assert_rcode(
        &udp(server.addr, "v2.web.service.consul.", RecordType::A),
        ResponseCode::NXDomain,
    );
    // _tcp means no tag filter; any other _x filters on tag x, _udp included.
    assert_eq!(
        sorted("_web._tcp.service.consul.", RecordType::SRV),
        [
            "1 1 8080 web-01.node.dc1.consul.",
            "1 10 9090 0a00010c.addr.dc1.consul."
        ]
    );
    assert_eq!(
        sorted("_api._primary.service.consul.", RecordType::SRV),
        ["1 1 7001 api-01.node.dc1.consul."]
    );
    assert_eq!(
        sorted("_api._secondary.service.dc1.consul.", RecordType::SRV),
        ["1 1 7002 api-01.node.dc1.consul."]
    );
    assert_rcode(
        &udp(server.addr, "_web._udp.service.consul.", RecordType::SRV),
        ResponseCode::NXDomain,
    );
}

#[test]
fn datacenters_and_nodes() {
    let server = Server::demo(&[], &[]);
    let local = udp(server.addr, "db.service.consul.", RecordType::A);
    assert_eq!(rdata(&local.answers), ["10.0.3.31"]);
    assert_eq!(
        rdata(&udp(server.addr, "db.service.dc1.consul.", RecordType::A).answers),
        ["10.0.3.31"]
    );
    let remote = udp(server.addr, "db.service.dc2.consul.", RecordType::SRV);
    assert_eq!(
        rdata(&remote.answers),
        ["1 1 5432 db-dc2-01.node.dc2.consul."]
    );
    assert_eq!(rdata(&remote.additionals), ["10.1.3.31"]);
    assert_rcode(
        &udp(server.addr, "db.service.dc3.consul.", RecordType::A),
        ResponseCode::NXDomain,
    );

    // Node lookups do no health filtering (web-05's node check is critical).
    assert_eq!(
        rdata(&udp(server.addr, "web-05.node.consul.", RecordType::A).answers),
        ["10.0.1.15"]
    );
    assert_eq!(
        rdata(&udp(server.addr, "v6-01.node.dc1.consul.", RecordType::AAAA).answers),
        ["fd00::51"]
    );
    let nodata = udp(server.addr, "v6-01.node.dc1.consul.", RecordType::A);
    assert_rcode(&nodata, ResponseCode::NoError);
    assert!(nodata.answers.is_empty() && soa(&nodata).is_some());
}

#[test]
fn apex_negative_answers_and_empty_non_terminals() {
    let server = Server::demo(&[], &[]);
    let apex = udp(server.addr, "consul.", RecordType::SOA);
    assert_eq!(
        rdata(&apex.answers),
        ["ns.consul. hostmaster.consul. 1346 3600 600 86400 0"]
    );
    let ns = udp(server.addr, "consul.", RecordType::NS);
    assert_eq!(rdata(&ns.answers), ["ns.consul."]);
    assert_eq!(
        rrs(&ns.additionals),
        [(
            "ns.consul.".to_string(),
            RecordType::A,
            "127.0.0.1".to_string()
        )]
    );

    let missing = udp(server.addr, "nope.service.consul.", RecordType::A);
    assert_rcode(&missing, ResponseCode::NXDomain);
    assert!(missing.answers.is_empty());
    assert_eq!(missing.authorities.len(), 1);
    assert_eq!(missing.authorities[0].name.to_string(), "consul.");
    assert_eq!(
        soa(&missing).map(|s| (s.serial, s.minimum)),
        Some((1346, 0))
    );

    let no_type = udp(server.addr, "web.service.consul.", RecordType::TXT);
    assert_rcode(&no_type, ResponseCode::NoError);
    assert!(no_type.answers.is_empty() && soa(&no_type).is_some());

    // Empty non-terminals answer NOERROR/NODATA so QNAME-minimising resolvers can walk down.
    for name in [
        "service.consul.",
        "node.consul.",
        "dc1.consul.",
        "service.dc1.consul.",
        "node.dc1.consul.",
        "_tcp.service.consul.",
    ] {
        let message = udp(server.addr, name, RecordType::A);
        assert_rcode(&message, ResponseCode::NoError);
        assert!(message.answers.is_empty(), "{name}");
        assert!(soa(&message).is_some(), "{name} carries the SOA");
    }
}

#[test]
fn service_without_passing_instances_is_nxdomain() {
    let registry = json!({
        "down": [entry("d1", "10.1.0.1", "down", "", 80, &[], "critical")],
        "up": [entry("u1", "10.1.0.2", "up", "", 80, &[], "passing")]
    });
    let (server, _) = Server::with_registry_file(&registry, &["--negative-ttl", "30s"]);
    let down = udp(server.addr, "down.service.consul.", RecordType::A);
    assert_rcode(&down, ResponseCode::NXDomain);
    assert_eq!(soa(&down).map(|s| s.minimum), Some(30));
    assert_eq!(
        down.authorities[0].ttl, 30,
        "negative TTL from --negative-ttl"
    );
    assert_rcode(
        &udp(server.addr, "up.service.consul.", RecordType::A),
        ResponseCode::NoError,
    );
}

#[test]
fn names_are_case_insensitive_and_echo_the_question() {
    let server = Server::demo(&[], &[]);
    let answer = udp(server.addr, "WeB.SeRvIcE.CoNsUl.", RecordType::A);
    assert_eq!(answer.queries[0].name().to_string(), "WeB.SeRvIcE.CoNsUl.");
    assert!(answer
        .answers
        .iter()
        .all(|r| r.name.to_string() == "WeB.SeRvIcE.CoNsUl."));
    assert_eq!(sorted_rdata(&answer.answers), ["10.0.1.11", "10.0.1.12"]);
    let node = udp(server.addr, "WEB-01.NODE.DC1.CONSUL.", RecordType::A);
    assert_eq!(rdata(&node.answers), ["10.0.1.11"]);
}

#[test]
fn ttls_follow_the_settings() {
    let server = {
        let registry = format!(
            "file:{}",
            support::repo().join("zones/demo.registry.json").display()
        );
        Server::start(&[
            "--registry",
            &registry,
            "--service-ttl",
            "15s",
            "--node-ttl",
            "7s",
        ])
    };
    let srv = udp(server.addr, "web.service.consul.", RecordType::SRV);
    assert!(
        srv.answers
            .iter()
            .chain(&srv.additionals)
            .all(|r| r.ttl == 15),
        "{srv:?}"
    );
    let node = udp(server.addr, "web-01.node.consul.", RecordType::A);
    assert_eq!(node.answers[0].ttl, 7);
}

#[test]
fn a_answers_are_shuffled_and_srv_answers_are_stable() {
    let (server, _) = Server::with_registry_file(&many("big", 8), &[]);
    let mut orders = BTreeSet::new();
    for _ in 0..40 {
        orders.insert(rdata(
            &udp(server.addr, "big.service.consul.", RecordType::A).answers,
        ));
    }
    assert!(orders.len() > 1, "A answers should vary between queries");
    assert!(orders.iter().all(|o| o.len() == 8));
    let srv: BTreeSet<Vec<String>> = (0..20)
        .map(|_| rdata(&udp(server.addr, "big.service.consul.", RecordType::SRV).answers))
        .collect();
    assert_eq!(srv.len(), 1, "SRV order is stable");
    let order = srv.into_iter().next().unwrap();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "SRV answers sorted by node name");

    let (fixed, _) = Server::with_registry_file(&many("big", 8), &["--no-shuffle"]);
    let orders: BTreeSet<Vec<String>> = (0..20)
        .map(|_| rdata(&udp(fixed.addr, "big.service.consul.", RecordType::A).answers))
        .collect();
    assert_eq!(orders.len(), 1, "--no-shuffle keeps one order");
}

#[test]
fn udp_answers_fit_the_client_limit_with_tc_and_a_stable_prefix() {
    let (server, _) = Server::with_registry_file(&many("big", 100), &[]);
    // No EDNS: at most 512 bytes, TC set, and the same prefix each time.
    let query = query_message("_big._tcp.service.consul.", RecordType::SRV, None)
        .to_vec()
        .unwrap();
    let first = udp_raw(server.addr, &query).unwrap();
    let second = udp_raw(server.addr, &query).unwrap();
    assert!(first.len() <= 512, "{} bytes", first.len());
    let parsed = Message::from_vec(&first).unwrap();
    assert!(
        parsed.metadata.truncation,
        "TC set: flags {:02x} {:02x} len {} answers {}",
        first[2],
        first[3],
        first.len(),
        parsed.answers.len()
    );
    assert!(!parsed.answers.is_empty() && parsed.answers.len() < 100);
    assert_eq!(first[2..], second[2..], "deterministic prefix");
    // Every kept SRV target has its address; none of the dropped ones.
    let targets: BTreeSet<String> = parsed
        .answers
        .iter()
        .map(|r| r.data.to_string().split(' ').nth(3).unwrap().to_string())
        .collect();
    let extra: BTreeSet<String> = parsed
        .additionals
        .iter()
        .map(|r| r.name.to_string())
        .collect();
    assert_eq!(targets, extra);

    // EDNS 4096 is capped at the default --max-udp-size 1232.
    let edns = udp_edns(
        server.addr,
        "big.service.consul.",
        RecordType::SRV,
        Some(4096),
    );
    assert!(edns.metadata.truncation);
    assert!(edns.to_vec().unwrap().len() <= 1232);
    assert_eq!(edns.edns.as_ref().map(|e| e.max_payload()), Some(1232));

    // TCP carries everything.
    let all = tcp(server.addr, "big.service.consul.", RecordType::SRV);
    assert!(!all.metadata.truncation);
    assert_eq!(all.answers.len(), 100);
    assert_eq!(all.additionals.len(), 100);

    // A raised --max-udp-size lets a large EDNS client get everything over UDP.
    let (lan, _) = Server::with_registry_file(&many("big", 100), &["--max-udp-size", "8192"]);
    let full = udp_edns(lan.addr, "big.service.consul.", RecordType::SRV, Some(8192));
    assert!(!full.metadata.truncation);
    assert_eq!(full.answers.len(), 100);
}

#[test]
fn malformed_unsupported_and_foreign_queries() {
    let server = Server::demo(&[], &[]);
    // Garbage after a valid header: FORMERR with the same ID.
    let garbage = [
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
    ];
    let reply = Message::from_vec(&udp_raw(server.addr, &garbage).unwrap()).unwrap();
    assert_eq!(reply.metadata.id, 0x1234);
    assert_rcode(&reply, ResponseCode::FormErr);
    // Two questions: FORMERR.
    let mut two = query_message("web.service.consul.", RecordType::A, None);
    two.add_query(hickory_proto::op::Query::query(
        "api.service.consul.".parse().unwrap(),
        RecordType::A,
    ));
    let reply = Message::from_vec(&udp_raw(server.addr, &two.to_vec().unwrap()).unwrap()).unwrap();
    assert_rcode(&reply, ResponseCode::FormErr);
    // NOTIFY (opcode 4): NOTIMP.
    let mut notify = query_message("consul.", RecordType::SOA, None)
        .to_vec()
        .unwrap();
    notify[2] = (notify[2] & 0x87) | (4 << 3);
    let reply = Message::from_vec(&udp_raw(server.addr, &notify).unwrap()).unwrap();
    assert_rcode(&reply, ResponseCode::NotImp);
    // A name outside every served zone, with forwarding off: REFUSED.
    let refused = udp(server.addr, "example.org.", RecordType::A);
    assert_rcode(&refused, ResponseCode::Refused);
    assert!(!refused.metadata.recursion_available);
    // Unsupported EDNS version: BADVERS.
    let mut query = query_message("web.service.consul.", RecordType::A, Some(1232));
    query.edns.as_mut().unwrap().set_version(1);
    let reply =
        Message::from_vec(&udp_raw(server.addr, &query.to_vec().unwrap()).unwrap()).unwrap();
    // BADVERS is extended rcode 16 (hickory names 16 BADSIG, the TSIG meaning of the same value).
    assert_eq!(u16::from(reply.metadata.response_code), 16);
    assert_eq!(reply.edns.as_ref().map(|e| e.version()), Some(0));
    // Zone transfers only for --allow-transfer clients (none by default): REFUSED.
    assert_rcode(
        &tcp(server.addr, "consul.", RecordType::AXFR),
        ResponseCode::Refused,
    );
    // Still answering after all that.
    assert_rcode(
        &udp(server.addr, "web.service.consul.", RecordType::A),
        ResponseCode::NoError,
    );
}

#[test]
fn dig_lists_passing_instances_with_node_targets() {
    let server = Server::demo(&[], &[]);
    let port = server.addr.port().to_string();
    let out = dig(&[
        "@127.0.0.1",
        "-p",
        &port,
        "web.service.consul",
        "SRV",
        "+norecurse",
    ]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("flags: qr aa;"), "{out}");
    assert!(
        out.contains("web.service.consul.\t0\tIN\tSRV\t1 1 8080 web-01.node.dc1.consul."),
        "{out}"
    );
    assert!(
        out.contains("web-01.node.dc1.consul.\t0\tIN\tA\t10.0.1.11"),
        "{out}"
    );
    assert!(
        !out.contains("10.0.1.13") && !out.contains("10.0.1.14") && !out.contains("10.0.1.15"),
        "{out}"
    );
    let tcp_out = dig(&[
        "@127.0.0.1",
        "-p",
        &port,
        "+tcp",
        "+short",
        "api.service.consul",
        "SRV",
    ]);
    assert_eq!(
        tcp_out.lines().collect::<Vec<_>>(),
        [
            "1 1 7001 api-01.node.dc1.consul.",
            "1 1 7002 api-01.node.dc1.consul."
        ]
    );
}

#[test]
fn every_alias_of_an_instance_set_gets_the_same_records() {
    let server = Server::demo(&[], &[]);
    let expected_srv = [
        "1 1 8080 web-01.node.dc1.consul.",
        "1 10 9090 0a00010c.addr.dc1.consul.",
    ];
    // One answer is shared by these names; shorter questions move its compression pointers.
    for name in [
        "web.service.consul.",
        "web.service.dc1.consul.",
        "_web._tcp.service.consul.",
        "_WEB._TCP.service.dc1.consul.",
        "v1.web.service.consul.",
        "_web._v1.service.dc1.consul.",
    ] {
        for message in [
            udp(server.addr, name, RecordType::SRV),
            tcp(server.addr, name, RecordType::SRV),
        ] {
            assert_eq!(rdata(&message.answers), expected_srv, "{name}");
            assert!(
                message.answers.iter().all(|r| r.name.to_string() == name),
                "{name}"
            );
            assert_eq!(
                rrs(&message.additionals),
                [
                    (
                        "web-01.node.dc1.consul.".to_string(),
                        RecordType::A,
                        "10.0.1.11".to_string()
                    ),
                    (
                        "0a00010c.addr.dc1.consul.".to_string(),
                        RecordType::A,
                        "10.0.1.12".to_string()
                    ),
                ],
                "{name}"
            );
        }
        assert_eq!(
            sorted_rdata(&udp(server.addr, name, RecordType::A).answers),
            ["10.0.1.11", "10.0.1.12"],
            "{name}"
        );
    }
    for name in ["web-01.node.consul.", "web-01.node.dc1.consul."] {
        assert_eq!(
            rdata(&udp(server.addr, name, RecordType::A).answers),
            ["10.0.1.11"]
        );
    }
}

/// A query with `record` (owner, type, class, rdata) added to its additional section.
fn with_additional(name: &str, owner: &[u8], rtype: u16, class: u16, rdata: &[u8]) -> Vec<u8> {
    let mut query = query_message(name, RecordType::A, None).to_vec().unwrap();
    query[11] += 1; // ARCOUNT
    query.extend_from_slice(owner);
    query.extend_from_slice(&rtype.to_be_bytes());
    query.extend_from_slice(&class.to_be_bytes());
    query.extend_from_slice(&[0, 0, 0, 0]); // TTL
    query.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    query.extend_from_slice(rdata);
    query
}

/// Signed queries are never answered unsigned: no key is configured, so a TSIG-signed query
/// gets NOTAUTH (RFC 8945, unknown key) and a SIG(0)-signed one REFUSED; a query of a class
/// we do not serve gets REFUSED without AA (issue 10, item 14).
#[test]
fn signed_queries_and_foreign_classes_are_refused_without_authority() {
    let server = Server::demo(&[], &[]);
    // TSIG: key "k.", hmac-sha256, time signed, fudge 300, a 32-byte MAC, original ID, no error.
    let mut tsig = b"\x0bhmac-sha256\x00".to_vec();
    tsig.extend_from_slice(&[0, 0, 0x65, 0x00, 0x00, 0x00, 0x01, 0x2c, 0, 32]);
    tsig.extend_from_slice(&[0xab; 32]);
    tsig.extend_from_slice(&[0x12, 0x34, 0, 0, 0, 0]);
    let signed = with_additional("web.service.consul.", b"\x01k\x00", 250, 255, &tsig);
    let reply = Message::from_vec(&udp_raw(server.addr, &signed).unwrap()).unwrap();
    assert_rcode(&reply, ResponseCode::NotAuth);
    assert!(reply.answers.is_empty() && !reply.metadata.authoritative);

    // SIG(0): type covered 0, algorithm 15, labels 0, TTL 0, expiration, inception, key tag,
    // signer "k.", a 64-byte signature.
    let mut sig = vec![
        0, 0, 15, 0, 0, 0, 0, 0, 0x70, 0, 0, 0, 0x60, 0, 0, 0, 0x12, 0x34,
    ];
    sig.extend_from_slice(b"\x01k\x00");
    sig.extend_from_slice(&[0xcd; 64]);
    let signed = with_additional("web.service.consul.", b"\x00", 24, 255, &sig);
    let reply = Message::from_vec(&udp_raw(server.addr, &signed).unwrap()).unwrap();
    assert_rcode(&reply, ResponseCode::Refused);
    assert!(reply.answers.is_empty() && !reply.metadata.authoritative);

    // CHAOS class: REFUSED, not authoritative.
    let mut chaos = query_message("web.service.consul.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let len = chaos.len();
    chaos[len - 1] = 3; // QCLASS CH
    let reply = Message::from_vec(&udp_raw(server.addr, &chaos).unwrap()).unwrap();
    assert_rcode(&reply, ResponseCode::Refused);
    assert!(!reply.metadata.authoritative);
}
