//! Answers cut to the client's UDP size: every size is cut at record boundaries worked out when
//! the snapshot is built, and the cut is the one snapdns sent when it encoded cuts per query:
//! the same records, and for the name the answer was encoded for, the same bytes (the
//! fingerprints below were taken from that version).

use std::collections::BTreeSet;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::support::dns_client::{query_message, tcp, udp_raw};
use crate::support::registry::many;
use crate::support::server::Server;
use crate::support::write;

/// FNV-1a of the reply with its ID zeroed: compact evidence that the bytes did not change.
fn fingerprint(reply: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, byte) in reply.iter().enumerate() {
        let byte = if i < 2 { 0 } else { *byte };
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn server(max_udp_size: &str) -> Server {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut registry = many("big", 100);
    registry
        .as_object_mut()
        .unwrap()
        .extend(many("huge", 500).as_object().unwrap().clone());
    let path = write(
        dir.path(),
        "registry.json",
        &serde_json::to_string(&registry).unwrap(),
    );
    let source = format!("file:{}", path.display());
    Server::start_in(
        dir,
        &["--registry", &source, "--max-udp-size", max_udp_size],
    )
}

/// The reply to `name` SRV over UDP at EDNS `payload`, raw.
fn ask(server: &Server, name: &str, payload: u16) -> Vec<u8> {
    let mut query = query_message(name, RecordType::SRV, Some(payload));
    query.metadata.id = 0x4242;
    udp_raw(server.addr, &query.to_vec().unwrap())
        .unwrap_or_else(|| panic!("no answer for {name} at {payload}"))
}

#[test]
fn odd_udp_sizes_get_the_same_cut_as_before() {
    let server = server("4096");
    // (name, EDNS size, answers kept, fingerprint of the reply the per-query encoder sent)
    let cases: [(&str, u16, usize, u64); 8] = [
        (
            "_big._tcp.service.dc1.consul.",
            1000,
            16,
            0xe5f5e70d3abfef87,
        ),
        (
            "_big._tcp.service.dc1.consul.",
            4096,
            64,
            0x44ef8c6a68b51e8d,
        ),
        ("big.service.consul.", 1000, 16, 0x637dc8ce76f56de4),
        ("big.service.consul.", 4096, 64, 0x57e37f9dc73c1b76),
        (
            "_huge._tcp.service.dc1.consul.",
            1000,
            16,
            0x1e68524bc661ef45,
        ),
        (
            "_huge._tcp.service.dc1.consul.",
            4096,
            64,
            0xd5e92d1957a68162,
        ),
        ("huge.service.consul.", 600, 9, 0x141a3cc47d07ab86),
        ("huge.service.consul.", 1400, 23, 0x9dc3e8eeb39f08ae),
    ];
    for (name, payload, kept, print) in cases {
        let reply = ask(&server, name, payload);
        let parsed = Message::from_vec(&reply).expect("decodable");
        assert!(reply.len() <= usize::from(payload), "{name} at {payload}");
        assert!(parsed.metadata.truncation, "TC for {name} at {payload}");
        // The stable prefix of what TCP carries, with the addresses of the kept targets only.
        let all = tcp(server.addr, name, RecordType::SRV);
        assert_eq!(
            parsed.answers[..],
            all.answers[..parsed.answers.len()],
            "{name} at {payload}"
        );
        let targets: BTreeSet<String> = parsed
            .answers
            .iter()
            .map(|r| r.data.to_string().split(' ').nth(3).unwrap().to_string())
            .collect();
        let glue: BTreeSet<String> = parsed
            .additionals
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(targets, glue, "{name} at {payload}");
        assert_eq!(parsed.answers.len(), kept, "{name} at {payload}");
        // An alias shares the longest name's encoding, whose additional records can be
        // compressed differently from an encoding around the alias's question (hickory keeps
        // 64 names to compress against): the same records, not always the same bytes.
        if !name.starts_with('_') {
            continue;
        }
        assert_eq!(fingerprint(&reply), print, "bytes of {name} at {payload}");
    }
}
