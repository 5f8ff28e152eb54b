//! Reverse lookups of registry addresses (PTR under `in-addr.arpa.` and `ip6.arpa.`) and node
//! metadata as TXT records, asked over UDP and TCP of a running snapdns.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

use crate::support::dns_client::{
    assert_forwarded, assert_rcode, dig, rdata, rrs, soa, tcp, ttls, udp,
};
use crate::support::fake_upstream::{Behaviour, FakeUpstream};
use crate::support::registry::entry;
use crate::support::server::Server;

/// Nodes and instances on shared addresses:
/// - `n1` (10.1.0.1, metadata) runs `web`, and `db`'s instance on `n2` uses 10.1.0.1 as its
///   own address: the node wins;
/// - `web` on `n2` and `api` on `n3` both use 10.2.0.5 as their own address;
/// - `n4` and `n5` share 10.1.0.4; `n6` (fd00::6) runs only a critical instance, and that
///   instance's own address 10.2.0.9 is not served.
fn registry() -> Value {
    let mut n1 = entry("n1", "10.1.0.1", "web", "", 80, &[], "passing");
    n1["Node"]["Meta"] = json!({
        "zone": "z1", "rack": "r`1", "a=b": "c", "rfc1035-note": "free text", " pad": "v"
    });
    json!({
        "web": [
            n1,
            entry("n2", "10.1.0.2", "web", "10.2.0.5", 81, &[], "passing"),
        ],
        "api": [
            entry("n3", "10.1.0.3", "api", "10.2.0.5", 82, &[], "passing"),
            entry("n4", "10.1.0.4", "api", "", 83, &[], "passing"),
            entry("n5", "10.1.0.4", "api", "", 84, &[], "passing"),
        ],
        "db": [
            entry("n2", "10.1.0.2", "db", "10.1.0.1", 5432, &[], "passing"),
            entry("n6", "fd00::6", "db", "10.2.0.9", 5433, &[], "critical"),
        ],
    })
}

fn ask(server: &Server, transport: &str, name: &str, qtype: RecordType) -> Message {
    match transport {
        "udp" => udp(server.addr, name, qtype),
        _ => tcp(server.addr, name, qtype),
    }
}

#[test]
fn registry_addresses_answer_ptr_over_udp_and_tcp() {
    let (server, _) = Server::with_registry_file(&registry(), &["--node-ttl", "7s"]);
    for transport in ["udp", "tcp"] {
        let ask = |name: &str| ask(&server, transport, name, RecordType::PTR);
        // A node's address: the node, TTL node-ttl, authoritative.
        let node = ask("2.0.1.10.in-addr.arpa.");
        assert_rcode(&node, ResponseCode::NoError);
        assert!(node.metadata.authoritative, "AA over {transport}");
        assert_eq!(
            rrs(&node.answers),
            [(
                "2.0.1.10.in-addr.arpa.".to_string(),
                RecordType::PTR,
                "n2.node.dc1.consul.".to_string()
            )]
        );
        assert_eq!(ttls(&node.answers), [7]);
        assert!(node.authorities.is_empty() && node.additionals.is_empty());
        // A node match wins over a service using the same address as its own.
        let wins = ask("1.0.1.10.in-addr.arpa.");
        assert_eq!(rdata(&wins.answers), ["n1.node.dc1.consul."]);
        // Two services on one address: both, in name order; service-ttl (0) applies.
        let services = ask("5.0.2.10.in-addr.arpa.");
        assert_eq!(
            rdata(&services.answers),
            ["api.service.dc1.consul.", "web.service.dc1.consul."]
        );
        assert_eq!(ttls(&services.answers), [0, 0]);
        // Two nodes on one address: both.
        let nodes = ask("4.0.1.10.in-addr.arpa.");
        assert_eq!(
            rdata(&nodes.answers),
            ["n4.node.dc1.consul.", "n5.node.dc1.consul."]
        );
        // IPv6: a node whose only instance is critical still answers, as in Consul.
        let v6 = ask("6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.");
        assert_rcode(&v6, ResponseCode::NoError);
        assert_eq!(rdata(&v6.answers), ["n6.node.dc1.consul."]);
        // A critical instance's own address is not served: with forwarding off, NXDOMAIN
        // with the registry zone's SOA.
        let critical = ask("9.0.2.10.in-addr.arpa.");
        assert_rcode(&critical, ResponseCode::NXDomain);
        assert!(critical.answers.is_empty());
        assert_eq!(
            soa(&critical).map(|s| s.mname.to_string()),
            Some("ns.consul.".into())
        );
        assert_eq!(critical.authorities[0].name.to_string(), "consul.");
        // Another type on a known reverse name: NODATA with the SOA; ANY gets the PTR.
        let other = ask_type(&server, transport, "2.0.1.10.in-addr.arpa.", RecordType::A);
        assert_rcode(&other, ResponseCode::NoError);
        assert!(other.answers.is_empty() && soa(&other).is_some());
        let any = ask_type(
            &server,
            transport,
            "2.0.1.10.in-addr.arpa.",
            RecordType::ANY,
        );
        assert_eq!(rdata(&any.answers), ["n2.node.dc1.consul."]);
    }
    // The question's case is kept, and dig's own reverse form agrees.
    let mixed = udp(server.addr, "2.0.1.10.IN-ADDR.Arpa.", RecordType::PTR);
    assert_eq!(mixed.answers[0].name.to_string(), "2.0.1.10.IN-ADDR.Arpa.");
    let port = server.addr.port().to_string();
    let text = dig(&["@127.0.0.1", "-p", &port, "+short", "-x", "10.2.0.5"]);
    assert_eq!(text, "api.service.dc1.consul.\nweb.service.dc1.consul.\n");
    let text = dig(&["@127.0.0.1", "-p", &port, "+short", "+tcp", "-x", "fd00::6"]);
    assert_eq!(text, "n6.node.dc1.consul.\n");
}

fn ask_type(server: &Server, transport: &str, name: &str, qtype: RecordType) -> Message {
    ask(server, transport, name, qtype)
}

#[test]
fn reverse_names_follow_registry_changes() {
    let (server, path) = Server::with_registry_file(&registry(), &[]);
    assert_eq!(
        rdata(&udp(server.addr, "5.0.2.10.in-addr.arpa.", RecordType::PTR).answers),
        ["api.service.dc1.consul.", "web.service.dc1.consul."]
    );
    // web leaves the shared address; n4 leaves the shared node address.
    let mut changed = registry();
    changed["web"][1] = entry("n2", "10.1.0.2", "web", "", 81, &[], "passing");
    changed["api"].as_array_mut().unwrap().remove(1);
    crate::support::registry::replace_registry_file(&path, &changed);
    let converged = crate::support::eventually(std::time::Duration::from_secs(20), || {
        rdata(&udp(server.addr, "5.0.2.10.in-addr.arpa.", RecordType::PTR).answers)
            == ["api.service.dc1.consul."]
    });
    assert!(converged, "{}", server.log());
    let nodes = udp(server.addr, "4.0.1.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(rdata(&nodes.answers), ["n5.node.dc1.consul."]);
}

#[test]
fn unknown_reverse_names_are_forwarded() {
    let upstream = FakeUpstream::start(Behaviour::Answer, [192, 0, 2, 1]);
    let upstream_addr = upstream.addr.to_string();
    let (server, _) = Server::with_registry_file(&registry(), &["--upstream", &upstream_addr]);
    for transport in ["udp", "tcp"] {
        let unknown = ask(
            &server,
            transport,
            "8.0.0.10.in-addr.arpa.",
            RecordType::PTR,
        );
        assert_forwarded(&unknown, ResponseCode::NoError);
        let known = ask(
            &server,
            transport,
            "2.0.1.10.in-addr.arpa.",
            RecordType::PTR,
        );
        assert!(known.metadata.authoritative);
        assert_eq!(rdata(&known.answers), ["n2.node.dc1.consul."]);
    }
    assert!(upstream.was_asked("8.0.0.10.in-addr.arpa."));
    assert!(!upstream.was_asked("2.0.1.10.in-addr.arpa."));
}

#[test]
fn node_metadata_answers_txt_sorted_and_escaped() {
    let (server, _) = Server::with_registry_file(&registry(), &["--node-ttl", "3s"]);
    let expected = ["` pad=v", "a`=b=c", "rack=r``1", "free text", "zone=z1"];
    for transport in ["udp", "tcp"] {
        for name in ["n1.node.consul.", "n1.node.dc1.consul.", "N1.Node.Consul."] {
            let txt = ask(&server, transport, name, RecordType::TXT);
            assert_rcode(&txt, ResponseCode::NoError);
            assert!(txt.metadata.authoritative);
            // One record per pair, in key order.
            assert_eq!(rdata(&txt.answers), expected, "{name} over {transport}");
            assert_eq!(ttls(&txt.answers), [3; 5]);
            assert!(txt.answers.iter().all(|r| r.name.to_string() == name));
        }
        // A node without metadata: NODATA with the SOA.
        let none = ask(&server, transport, "n2.node.consul.", RecordType::TXT);
        assert_rcode(&none, ResponseCode::NoError);
        assert!(none.answers.is_empty() && soa(&none).is_some());
        // The node's A answer is unchanged.
        let a = ask(&server, transport, "n1.node.consul.", RecordType::A);
        assert_eq!(rdata(&a.answers), ["10.1.0.1"]);
        assert!(a.additionals.is_empty());
    }
    // Off by default: SRV answers carry only the targets' addresses.
    let srv = udp(server.addr, "web.service.consul.", RecordType::SRV);
    assert!(srv
        .additionals
        .iter()
        .all(|r| r.record_type() != RecordType::TXT));
}

#[test]
fn srv_node_meta_txt_adds_the_targets_metadata() {
    let (server, _) =
        Server::with_registry_file(&registry(), &["--srv-node-meta-txt", "--service-ttl", "5s"]);
    for transport in ["udp", "tcp"] {
        let srv = ask(&server, transport, "web.service.consul.", RecordType::SRV);
        assert_rcode(&srv, ResponseCode::NoError);
        assert_eq!(
            rdata(&srv.answers),
            [
                "1 1 80 n1.node.dc1.consul.",
                "1 1 81 0a020005.addr.dc1.consul."
            ]
        );
        let owner = "n1.node.dc1.consul.".to_string();
        let txt = |text: &str| (owner.clone(), RecordType::TXT, text.to_string());
        assert_eq!(
            rrs(&srv.additionals),
            [
                (owner.clone(), RecordType::A, "10.1.0.1".to_string()),
                txt("` pad=v"),
                txt("a`=b=c"),
                txt("rack=r``1"),
                txt("free text"),
                txt("zone=z1"),
                (
                    "0a020005.addr.dc1.consul.".to_string(),
                    RecordType::A,
                    "10.2.0.5".to_string()
                ),
            ],
            "over {transport}"
        );
        assert!(ttls(&srv.additionals).iter().all(|ttl| *ttl == 5));
    }
}
