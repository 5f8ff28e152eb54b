//! Static zones from `--zones-dir` (issue #4): served authoritatively beside the registry
//! and forwarding; a broken zone file is reported and not served; the shipped example zone.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::dns_client::{assert_forwarded, rdata, sorted_rdata, ttls, udp};
use crate::support::knot::{example_zone, Knot, STATIC_ZONE};
use crate::support::server::Server;
use crate::support::{self, write};

/// Line 5 has an unknown record type; lines 1-4 are fine.
const BROKEN_ZONE: &str = "$ORIGIN broken.test.\n$TTL 120\n\
    @ IN SOA ns.broken.test. hostmaster.broken.test. 1 3600 900 604800 30\n\
    ok IN A 10.8.0.1\n\
    bad IN NOSUCHTYPE 10.8.0.2\n";

#[test]
fn static_zones_are_served_and_a_broken_file_is_reported() {
    let knot = Knot::start("example.test.", &example_zone());
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "static.test.zone", STATIC_ZONE);
    write(dir.path(), "broken.test.zone", BROKEN_ZONE);
    write(dir.path(), "ignored.txt", "not a zone file");
    let zones = dir.path().to_str().unwrap();
    let server = Server::demo(&[knot.upstream()], &["--zones-dir", zones]);

    let log = server.log();
    let broken = dir.path().join("broken.test.zone");
    assert!(
        log.contains(&format!("zone file {} line 5", broken.display())),
        "{log}"
    );
    assert!(log.contains("the other zones are still served"), "{log}");

    let answer = udp(server.addr, "DB.static.test.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative && answer.metadata.recursion_available);
    assert_eq!(rdata(&answer.answers), ["10.9.0.5"]);
    assert_eq!(ttls(&answer.answers), [120]);
    let missing = udp(server.addr, "nothing.static.test.", RecordType::A);
    assert_eq!(
        missing.metadata.response_code,
        ResponseCode::NXDomain,
        "served, not forwarded"
    );
    assert!(missing.metadata.authoritative && missing.answers.is_empty());
    assert_eq!(missing.authorities[0].name.to_string(), "static.test.");
    assert_eq!(missing.authorities[0].ttl, 30, "the zone's negative TTL");
    // The broken zone is not served: its names go upstream, where Knot refuses them.
    let not_served = udp(server.addr, "ok.broken.test.", RecordType::A);
    assert_forwarded(&not_served, ResponseCode::ServFail);
    // Forwarding still works beside the static zones.
    let forwarded = udp(server.addr, "www.example.test.", RecordType::A);
    assert_forwarded(&forwarded, ResponseCode::NoError);
}

#[test]
fn the_shipped_example_zone_is_served() {
    let zones = support::repo().join("zones");
    let server = Server::demo(
        &[],
        &["--no-forward", "--zones-dir", zones.to_str().unwrap()],
    );
    let gateway = udp(server.addr, "gateway.example.internal.", RecordType::A);
    assert_eq!(gateway.metadata.response_code, ResponseCode::NoError);
    assert!(gateway.metadata.authoritative);
    assert_eq!(rdata(&gateway.answers), ["10.0.0.1"]);
    let www = udp(server.addr, "www.example.internal.", RecordType::A);
    assert_eq!(www.answers[0].record_type(), RecordType::CNAME);
    let ldap = udp(server.addr, "_ldap._tcp.example.internal.", RecordType::SRV);
    assert_eq!(rdata(&ldap.answers), ["10 0 389 gateway.example.internal."]);
    assert_eq!(sorted_rdata(&ldap.additionals), ["10.0.0.1", "fd00::1"]);
}
