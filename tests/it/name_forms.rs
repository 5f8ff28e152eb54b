//! The Consul name forms without names of their own in the zone (issue 13, items 1-4): `<dc>.dc`
//! locality labels, the RFC 2782 form without `.service`, `addr` names of any address, and
//! hostname addresses inside the registry domain (loops included), over UDP and TCP.

use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::support;
use crate::support::dns_client::{assert_rcode, dig, rrs, soa, tcp, ttls, udp};
use crate::support::registry::{entry, replace_registry_file};
use crate::support::server::Server;

/// Asks `name` over both transports.
fn both(server: &Server, name: &str, qtype: RecordType) -> [(&'static str, Message); 2] {
    [
        ("udp", udp(server.addr, name, qtype)),
        ("tcp", tcp(server.addr, name, qtype)),
    ]
}

/// Answers as (type, data, TTL), additionals as (owner, type, data).
type Sections = (
    Vec<(RecordType, String, u32)>,
    Vec<(String, RecordType, String)>,
);

/// The answer and additional sections with the owners of the answers left out (they echo
/// the question, which differs between the forms compared), and the TTLs.
fn sections(message: &Message) -> Sections {
    let answers = message
        .answers
        .iter()
        .map(|r| (r.record_type(), r.data.to_string(), r.ttl))
        .collect();
    (answers, rrs(&message.additionals))
}

#[test]
fn dc_locality_labels_answer_like_the_plain_datacenter_form() {
    let server = Server::demo(&[], &["--service-ttl", "9s"]);
    for (asked, plain, qtype) in [
        (
            "db.service.dc2.dc.consul.",
            "db.service.dc2.consul.",
            RecordType::A,
        ),
        (
            "replica.db.service.dc2.dc.consul.",
            "replica.db.service.dc2.consul.",
            RecordType::A,
        ),
        (
            "_db._tcp.service.dc2.dc.consul.",
            "_db._tcp.service.dc2.consul.",
            RecordType::SRV,
        ),
        (
            "web.service.dc1.dc.consul.",
            "web.service.dc1.consul.",
            RecordType::SRV,
        ),
        (
            "db-dc2-01.node.dc2.dc.consul.",
            "db-dc2-01.node.dc2.consul.",
            RecordType::A,
        ),
    ] {
        let expected = udp(server.addr, plain, qtype);
        assert_rcode(&expected, ResponseCode::NoError);
        for (transport, answer) in both(&server, asked, qtype) {
            assert_rcode(&answer, ResponseCode::NoError);
            assert!(answer.metadata.authoritative, "{asked} over {transport}");
            assert_eq!(
                sections(&answer),
                sections(&expected),
                "{asked} over {transport}"
            );
            assert!(!answer.answers.is_empty());
            assert!(
                answer.answers.iter().all(|r| r.name.to_string() == asked),
                "owners echo the question: {asked} over {transport}"
            );
        }
    }
    // An unknown datacenter: NXDOMAIN with the SOA; the names above a known one exist.
    for (transport, answer) in both(&server, "db.service.dc9.dc.consul.", RecordType::A) {
        assert_rcode(&answer, ResponseCode::NXDomain);
        assert!(soa(&answer).is_some(), "over {transport}");
    }
    for name in ["dc.consul.", "dc2.dc.consul.", "service.dc2.dc.consul."] {
        let answer = udp(server.addr, name, RecordType::A);
        assert_rcode(&answer, ResponseCode::NoError);
        assert!(
            answer.answers.is_empty() && soa(&answer).is_some(),
            "{name}"
        );
    }
    assert_rcode(
        &udp(server.addr, "dc9.dc.consul.", RecordType::A),
        ResponseCode::NXDomain,
    );
    // dig sees the same (the case of the question is echoed).
    let text = dig(&[
        &format!("@{}", server.addr.ip()),
        "-p",
        &server.addr.port().to_string(),
        "+short",
        "DB.service.DC2.dc.consul",
        "A",
    ]);
    assert_eq!(text.trim(), "10.1.3.31");
}

#[test]
fn rfc2782_names_without_service_answer_srv_like_the_service_form() {
    let server = Server::demo(&[], &[]);
    for (short, full) in [
        ("_web._tcp.consul.", "_web._tcp.service.consul."),
        ("_web._v1.consul.", "_web._v1.service.consul."),
        ("_web._tcp.dc1.consul.", "_web._tcp.service.dc1.consul."),
        ("_web._v1.dc1.consul.", "_web._v1.service.dc1.consul."),
        ("_db._tcp.dc2.dc.consul.", "_db._tcp.service.dc2.consul."),
    ] {
        let expected = udp(server.addr, full, RecordType::SRV);
        assert!(!expected.answers.is_empty(), "{full}");
        for (transport, answer) in both(&server, short, RecordType::SRV) {
            assert_rcode(&answer, ResponseCode::NoError);
            assert_eq!(
                sections(&answer),
                sections(&expected),
                "{short} over {transport}"
            );
            assert!(answer.answers.iter().all(|r| r.name.to_string() == short));
        }
        // Consul's shortcut is for SRV only.
        for (transport, answer) in both(&server, short, RecordType::A) {
            assert_rcode(&answer, ResponseCode::NXDomain);
            assert!(soa(&answer).is_some(), "{short} A over {transport}");
        }
    }
    assert_rcode(
        &udp(server.addr, "_nothing._tcp.consul.", RecordType::SRV),
        ResponseCode::NXDomain,
    );
}

#[test]
fn addr_names_decode_any_address() {
    let server = Server::demo(&[], &["--node-ttl", "7s"]);
    for name in [
        "7f000001.addr.consul.",
        "7F000001.addr.dc1.consul.",
        "7f000001.addr.dc2.consul.",
    ] {
        for (transport, answer) in both(&server, name, RecordType::A) {
            assert_rcode(&answer, ResponseCode::NoError);
            assert!(answer.metadata.authoritative);
            assert_eq!(
                rrs(&answer.answers),
                [(name.to_string(), RecordType::A, "127.0.0.1".to_string())],
                "{name} over {transport}"
            );
            assert_eq!(ttls(&answer.answers), [7]);
        }
        for (transport, answer) in both(&server, name, RecordType::AAAA) {
            assert_rcode(&answer, ResponseCode::NoError);
            assert!(answer.answers.is_empty(), "NODATA over {transport}");
            assert!(soa(&answer).is_some());
        }
    }
    let v6 = "20010DB800010002cafe000000001337.addr.consul.";
    for (transport, answer) in both(&server, v6, RecordType::AAAA) {
        assert_eq!(
            rrs(&answer.answers),
            [(
                v6.to_string(),
                RecordType::AAAA,
                "2001:db8:1:2:cafe::1337".to_string()
            )],
            "over {transport}"
        );
    }
    assert_rcode(&udp(server.addr, v6, RecordType::A), ResponseCode::NoError);
    // An address the registry hands out answers with or without the datacenter.
    for name in ["0a00010c.addr.dc1.consul.", "0a00010c.addr.consul."] {
        let answer = udp(server.addr, name, RecordType::A);
        assert_eq!(rrs(&answer.answers)[0].2, "10.0.1.12", "{name}");
    }
    for bad in [
        "7f00001.addr.consul.",
        "7f0000011.addr.consul.",
        "7f00000g.addr.consul.",
        "x.7f000001.addr.consul.",
    ] {
        for (transport, answer) in both(&server, bad, RecordType::A) {
            assert_rcode(&answer, ResponseCode::NXDomain);
            assert!(soa(&answer).is_some(), "{bad} over {transport}");
        }
    }
    // The name above them exists, with no data.
    let above = udp(server.addr, "addr.consul.", RecordType::A);
    assert_rcode(&above, ResponseCode::NoError);
    assert!(above.answers.is_empty() && soa(&above).is_some());
}

/// `web` at `db.service.consul`, `a` and `b` pointing at each other, `me` at itself, and a
/// node whose address is `db.service.consul`.
fn in_domain_registry(db_address: &str) -> serde_json::Value {
    json!({
        "db": [entry("db-1", db_address, "db", "", 5432, &[], "passing")],
        "web": [entry("web-1", "10.0.0.9", "web", "db.service.consul", 80, &[], "passing")],
        "a": [entry("a-1", "10.0.0.10", "a", "b.service.consul", 1, &[], "passing")],
        "b": [entry("b-1", "10.0.0.11", "b", "a.service.consul", 2, &[], "passing")],
        "me": [entry("me-1", "10.0.0.12", "me", "me.service.consul", 3, &[], "passing")],
        "hosted": [entry("hostnode", "db.service.consul", "hosted", "", 4, &[], "passing")],
    })
}

#[test]
fn hostnames_inside_the_domain_answer_their_records() {
    let (server, path) = Server::with_registry_file(
        &in_domain_registry("10.0.0.5"),
        &["--service-ttl", "5s", "--node-ttl", "6s"],
    );
    let cname =
        |owner: &str, target: &str| (owner.to_string(), RecordType::CNAME, target.to_string());
    let a = |owner: &str, ip: &str| (owner.to_string(), RecordType::A, ip.to_string());
    for (transport, answer) in both(&server, "web.service.consul.", RecordType::A) {
        assert_rcode(&answer, ResponseCode::NoError);
        assert_eq!(
            rrs(&answer.answers),
            [
                cname("web.service.consul.", "db.service.consul."),
                a("db.service.consul.", "10.0.0.5")
            ],
            "over {transport}"
        );
        assert_eq!(ttls(&answer.answers), [5, 5]);
    }
    for (transport, answer) in both(&server, "web.service.consul.", RecordType::SRV) {
        assert_eq!(
            rrs(&answer.answers),
            [(
                "web.service.consul.".to_string(),
                RecordType::SRV,
                "1 1 80 db.service.consul.".to_string()
            )],
            "over {transport}"
        );
        assert_eq!(
            rrs(&answer.additionals),
            [a("db.service.consul.", "10.0.0.5")]
        );
    }
    // A node at such a name: the node's name and SRV targets alike.
    let node = udp(server.addr, "hostnode.node.consul.", RecordType::A);
    assert_eq!(
        rrs(&node.answers),
        [
            cname("hostnode.node.consul.", "db.service.consul."),
            a("db.service.consul.", "10.0.0.5")
        ]
    );
    assert_eq!(ttls(&node.answers), [6, 5], "each record with its own TTL");
    // The other forms of the name too (this one re-encoded per query: a CNAME answer).
    let dc = tcp(server.addr, "web.service.dc1.dc.consul.", RecordType::A);
    assert_eq!(
        rrs(&dc.answers),
        [
            cname("web.service.dc1.dc.consul.", "db.service.consul."),
            a("db.service.consul.", "10.0.0.5")
        ]
    );

    // Loops end, with what was found.
    for (transport, answer) in both(&server, "a.service.consul.", RecordType::A) {
        assert_rcode(&answer, ResponseCode::NoError);
        assert_eq!(
            rrs(&answer.answers),
            [
                cname("a.service.consul.", "b.service.consul."),
                cname("b.service.consul.", "a.service.consul.")
            ],
            "over {transport}"
        );
    }
    for (transport, answer) in both(&server, "me.service.consul.", RecordType::A) {
        assert_rcode(&answer, ResponseCode::NoError);
        assert_eq!(
            rrs(&answer.answers),
            [cname("me.service.consul.", "me.service.consul.")],
            "over {transport}"
        );
    }
    for (transport, answer) in both(&server, "_a._tcp.service.consul.", RecordType::SRV) {
        assert_rcode(&answer, ResponseCode::NoError);
        // The chain from the target until a name comes back.
        assert_eq!(
            rrs(&answer.additionals),
            [
                cname("b.service.consul.", "a.service.consul."),
                cname("a.service.consul.", "b.service.consul.")
            ],
            "over {transport}"
        );
    }

    // The target changes: the services that depend on it follow (incremental rebuild).
    replace_registry_file(&path, &in_domain_registry("10.0.0.6"));
    assert!(support::eventually(Duration::from_secs(20), || {
        rrs(&udp(server.addr, "web.service.consul.", RecordType::A).answers)
            .contains(&a("db.service.consul.", "10.0.0.6"))
    }));
    let srv = tcp(server.addr, "web.service.consul.", RecordType::SRV);
    assert_eq!(rrs(&srv.additionals), [a("db.service.consul.", "10.0.0.6")]);
    let node = tcp(server.addr, "hostnode.node.consul.", RecordType::A);
    assert_eq!(rrs(&node.answers)[1], a("db.service.consul.", "10.0.0.6"));
}

#[test]
fn a_longer_alias_question_is_cut_like_the_plain_form() {
    let (server, _) = Server::with_registry_file(&crate::support::registry::many("big", 100), &[]);
    let full = tcp(
        server.addr,
        "_big._tcp.service.dc1.consul.",
        RecordType::SRV,
    );
    assert_eq!(full.answers.len(), 100);
    for name in [
        "_big._tcp.service.dc1.dc.consul.",
        "big.service.dc1.dc.consul.",
    ] {
        // Three bytes longer than any name the answer was encoded for: the pointers move on.
        let all = tcp(server.addr, name, RecordType::SRV);
        assert_eq!(sections(&all), sections(&full), "{name} over tcp");
        let query = crate::support::dns_client::query_message(name, RecordType::SRV, None);
        let bytes = crate::support::dns_client::udp_raw(server.addr, &query.to_vec().unwrap())
            .expect("an answer");
        assert!(bytes.len() <= 512, "{name}: {} bytes", bytes.len());
        let cut = Message::from_vec(&bytes).expect("decodable");
        assert!(cut.metadata.truncation, "{name}: TC");
        assert!(!cut.answers.is_empty());
        let kept = cut.answers.len();
        assert_eq!(
            sections(&cut).0,
            sections(&full).0[..kept],
            "{name}: a prefix"
        );
    }
}
