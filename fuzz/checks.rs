//! What the fuzz targets run against and what they check, shared by the targets
//! (`fuzz/fuzz_targets/*.rs`) and their stable replay (`tests/it/fuzz_replay.rs`), so the
//! coverage-guided runs and the replay of their findings can never drift apart.
//!
//! Every `check_*` function takes the raw input of one target and panics when a property
//! fails; returning normally is a pass. A panic (or a crash, a hang, an allocation over the
//! limit) is what the fuzzer reports.

#![allow(dead_code)] // each target uses only its own check

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use snapdns::dns::forward::fuzz_upstream_reply;
use snapdns::dns::{
    transfer, AnswerPolicy, ForwardLimits, Outcome, Responder, Scratch, ServerIdentity,
    TransferPolicy, Transport, TsigKey,
};
use snapdns::registry::{EntryCheck, HealthEntry, Node, NodeService, RegistryState};
use snapdns::snapshot::{NameServers, Snapshot, SnapshotStore, ZoneOptions};
use snapdns::zone::{wire_key, ZoneSet};

/// The demo registry shipped in `zones/`.
pub const DEMO_REGISTRY: &str = include_str!("../zones/demo.registry.json");
/// The example static zone shipped in `zones/`.
pub const EXAMPLE_ZONE: &str = include_str!("../zones/example.zone");

/// `--max-udp-size` values the `respond` target switches between (chosen by the query ID).
const MAX_UDP_SIZES: [u16; 4] = [512, 1232, 4096, 65535];
/// The client allowed to recurse, and one that is not.
const RECURSING_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const OTHER_CLIENT: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

/// The registry zone's options (domain `consul.`, datacenter `dc1`).
pub fn zone_options() -> ZoneOptions {
    ZoneOptions {
        domain: Name::from_ascii("consul.").expect("domain"),
        datacenter: "dc1".into(),
        service_ttl: 0,
        service_ttls: Default::default(),
        health: Default::default(),
        node_ttl: 0,
        negative_ttl: 30,
        nameservers: NameServers::Listen(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        srv_node_meta_txt: false,
    }
}

fn entry(service: &str, id: &str, node: &str, node_address: &str, port: u16) -> HealthEntry {
    HealthEntry {
        node: Arc::new(Node {
            node: node.into(),
            address: node_address.into(),
            datacenter: "dc1".into(),
            ..Node::default()
        }),
        service: NodeService {
            id: id.into(),
            service: service.into(),
            port,
            ..NodeService::default()
        },
        checks: Vec::new(),
    }
}

/// The demo registry plus services that stress the answer code: `big` (400 instances, IPv4
/// and IPv6, answers over every UDP size and over 64 KiB for ANY), `odd` (hostname
/// addresses, IPv6 service addresses, tagged addresses, a node in dc2, a failing check,
/// port 0, many tags), and names that alias each other (`WEB`, `v1.web`, `_web._tcp`, a file
/// key that differs from the entries' service name, a 63-byte name, a node shared by several
/// services).
pub fn fixture_registry() -> RegistryState {
    let mut state: RegistryState =
        snapdns::registry::file::parse(Path::new("demo.registry.json"), DEMO_REGISTRY)
            .expect("demo registry parses");
    let big = (0..400)
        .map(|i| {
            let address = if i % 3 == 0 {
                format!("fd00::{:x}", i + 1)
            } else {
                format!("10.9.{}.{}", i / 250, i % 250 + 1)
            };
            let mut e = entry(
                "big",
                &format!("big-{i}"),
                &format!("big-node-{i}"),
                &address,
                8000,
            );
            e.service.tags = vec![format!("shard{}", i % 7).into(), "v1".into()];
            e
        })
        .collect();
    state.services.insert("big".into(), Arc::new(big));

    let mut odd = Vec::new();
    let mut hostname = entry("odd", "odd-host", "odd-node-1", "10.8.0.1", 443);
    hostname.service.address = "db.example.com".into();
    odd.push(hostname);
    let mut v6 = entry("odd", "odd-v6", "odd-node-2", "10.8.0.2", 0);
    v6.service.address = "2001:db8::53".into();
    v6.service.tags = (0..40).map(|t| format!("t{t}").into()).collect();
    odd.push(v6);
    let mut tagged = entry("odd", "odd-tagged", "odd-node-3", "10.8.0.3", 53);
    let tagged_node = Arc::make_mut(&mut tagged.node);
    tagged_node
        .tagged_addresses
        .insert("wan", "198.51.100.3".into());
    tagged_node
        .tagged_addresses
        .insert("lan_ipv6", "fd00::3".into());
    odd.push(tagged);
    let mut dc2 = entry("odd", "odd-dc2", "odd-node-4", "10.8.0.4", 54);
    Arc::make_mut(&mut dc2.node).datacenter = "dc2".into();
    odd.push(dc2);
    let mut failing = entry("odd", "odd-failing", "odd-node-5", "10.8.0.5", 55);
    failing.checks.push(EntryCheck {
        check_id: "serfHealth".into(),
        status: "critical".into(),
        ..EntryCheck::default()
    });
    odd.push(failing);
    let mut bad = entry("odd", "odd-bad", "bad node", "fe80::1%eth0", 56);
    bad.service.address = "-leading.example".into();
    odd.push(bad);
    let mut shared = entry("odd", "odd-shared", "big-node-1", "10.9.0.2", 57);
    shared.service.address = "Mixed.Case.Example.".into();
    odd.push(shared);
    state.services.insert("odd".into(), Arc::new(odd));

    for (key, service) in [
        ("WEB", "WEB"),
        ("v1.web", "v1.web"),
        ("_web._tcp", "_web._tcp"),
        ("aaa", "web"),
        ("x".repeat(63).as_str(), "x".repeat(63).as_str()),
        ("y".repeat(64).as_str(), "y".repeat(64).as_str()),
    ] {
        state.services.insert(
            key.to_string(),
            Arc::new(vec![entry(
                service,
                &format!("{key}-1"),
                "alias-node",
                "10.7.0.1",
                80,
            )]),
        );
    }
    state.index = 7;
    state
}

/// A responder over `state` (when it builds) and the example static zone, with `policy`.
pub fn responder_over(state: RegistryState, statics: ZoneSet) -> Option<Responder> {
    let store = SnapshotStore::default();
    let snapshot = Snapshot::build(Arc::new(state), SystemTime::now(), &zone_options()).ok()?;
    store.publish(Arc::new(snapshot));
    let apex = wire_key(&zone_options().domain).expect("apex");
    Some(Responder::new(
        store,
        &apex,
        Arc::new(ArcSwap::from_pointee(statics)),
        policy(1232),
    ))
}

fn policy(max_udp_size: u16) -> AnswerPolicy {
    AnswerPolicy {
        max_udp_size,
        shuffle: true,
        forwarding: true,
        allow_recursion: vec!["127.0.0.0/8".parse().expect("net")],
        rrl: Default::default(),
        // Non-empty, so fuzzed queries reach the NSID and CHAOS paths.
        identity: ServerIdentity {
            identity: "fuzz-replica".into(),
            version: "fuzz-version".into(),
        },
        // Transfers allowed to the recursing client and a key set, so that fuzzed queries
        // reach the transfer, IXFR-over-UDP and signed-query paths.
        transfer: TransferPolicy {
            allow: vec!["127.0.0.0/8".parse().expect("net")],
            key: Some(TsigKey::parse(FUZZ_KEY).expect("key")),
        },
    }
}

/// The key the fuzzed server holds (`fuzz-key`, hmac-sha256).
pub const FUZZ_KEY: &str = "fuzz-key:hmac-sha256:ZnV6eiBrZXkgZm9yIHNuYXBkbnMgdHJhbnNmZXJzIQ==";

/// The example static zone, loaded through the zone-file loader.
pub fn example_zones() -> ZoneSet {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("example.zone");
    std::fs::write(&path, EXAMPLE_ZONE).expect("write zone");
    let zone = snapdns::static_zones::load_file(&path).expect("example zone loads");
    ZoneSet::new(vec![zone])
}

/// The `respond` target's fixture: the stress registry and the example zone.
pub fn fixture_responder() -> Responder {
    responder_over(fixture_registry(), example_zones()).expect("fixture snapshot builds")
}

/// The size a reply must fit, worked out from the query with hickory-proto (not with the
/// code under test). A query hickory cannot decode gets the loosest bound the policy allows.
fn size_limit(query: &[u8], transport: Transport, max_udp_size: u16) -> usize {
    let max_udp = usize::from(max_udp_size).max(512);
    match transport {
        Transport::Tcp => 65535,
        Transport::Udp => match Message::from_vec(query) {
            Ok(message) => match &message.edns {
                Some(edns) => usize::from(edns.max_payload()).min(max_udp).max(512),
                None => 512,
            },
            Err(_) => max_udp,
        },
    }
}

/// Answers `query` and checks the reply: it decodes, fits its size limit, carries the
/// query's ID with QR=1, and echoes the query's question when it has one. Returns the
/// outcome and the reply bytes.
pub fn answer_and_check(
    responder: &Responder,
    query: &[u8],
    client: IpAddr,
    transport: Transport,
    scratch: &mut Scratch,
) -> (Outcome, Vec<u8>) {
    let mut out = Vec::with_capacity(4096);
    let outcome = responder.respond(query, client, transport, &mut out, scratch);
    if outcome != Outcome::Reply {
        assert!(
            out.is_empty(),
            "{outcome:?} with {} bytes written",
            out.len()
        );
        // Signed queries and transfer requests are answered off the query path: their
        // replies must be as well-formed, and fit, as any other.
        let side_reply = match (&outcome, transport) {
            (Outcome::Signed, _) => transfer::signed(responder, query, client, transport, scratch),
            (Outcome::Transfer, Transport::Udp) => {
                Some(transfer::ixfr_over_udp(responder, query, client))
                    .filter(|reply| !reply.is_empty())
            }
            _ => None,
        };
        if let Some(reply) = side_reply {
            check_reply(query, &reply, transport, responder.policy().max_udp_size);
        }
        if outcome == Outcome::Forward {
            assert!(
                responder.may_recurse(client),
                "forwarded for a client without recursion"
            );
        }
        return (outcome, out);
    }
    let limit = size_limit(query, transport, responder.policy().max_udp_size);
    assert!(
        out.len() <= limit,
        "reply of {} bytes over the {limit}-byte limit ({transport:?})",
        out.len()
    );
    let reply = Message::from_vec(&out)
        .unwrap_or_else(|e| panic!("reply does not decode: {e}; reply {out:02x?}"));
    assert!(
        query.len() >= 2,
        "replied to a {}-byte message",
        query.len()
    );
    assert_eq!(
        reply.metadata.id,
        u16::from_be_bytes([query[0], query[1]]),
        "reply ID"
    );
    assert_eq!(
        reply.metadata.message_type,
        MessageType::Response,
        "QR=0 in a reply"
    );
    if let (Ok(asked), Some(echoed)) = (Message::from_vec(query), reply.queries.first()) {
        if let Some(question) = asked.queries.first() {
            assert_eq!(question, echoed, "question not echoed");
        }
    }
    (outcome, out)
}

/// A reply to `query` decodes, fits the client's limit and carries its ID with QR=1.
fn check_reply(query: &[u8], reply: &[u8], transport: Transport, max_udp_size: u16) {
    let limit = size_limit(query, transport, max_udp_size);
    assert!(
        reply.len() <= limit,
        "reply of {} bytes over {limit}",
        reply.len()
    );
    let decoded = Message::from_vec(reply)
        .unwrap_or_else(|e| panic!("reply does not decode: {e}; reply {reply:02x?}"));
    assert_eq!(
        decoded.metadata.id,
        u16::from_be_bytes([query[0], query[1]])
    );
    assert_eq!(decoded.metadata.message_type, MessageType::Response);
}

/// `respond`: one query through the whole answering path. The query's ID picks the transport
/// (bit 0), the client (bit 1: one allowed to recurse, or not) and `--max-udp-size` (bits 2-3).
pub fn check_respond(responder: &Responder, scratch: &mut Scratch, data: &[u8]) {
    let id = data.get(1).copied().unwrap_or(0);
    let transport = if id & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let client = if id & 2 == 0 {
        RECURSING_CLIENT
    } else {
        OTHER_CLIENT
    };
    let max_udp_size = MAX_UDP_SIZES[usize::from(id >> 2) & 3];
    if responder.policy().max_udp_size != max_udp_size {
        responder.set_policy(policy(max_udp_size));
    }
    answer_and_check(responder, data, client, transport, scratch);
}

/// `tcp_framing`: `data` as the byte stream of one TCP connection: length-prefixed queries
/// (RFC 1035 §4.2.2), read in order until the stream ends or a query is cut short, each
/// answered over TCP and framed back; every reply must fit its 2-byte length prefix.
pub fn check_tcp_stream(responder: &Responder, scratch: &mut Scratch, data: &[u8]) {
    responder.set_policy(policy(1232));
    let mut rest = data;
    let mut answered = 0;
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        if tail.len() < len {
            break; // the server closes a connection whose query is cut short
        }
        let (query, next) = tail.split_at(len);
        let (outcome, out) =
            answer_and_check(responder, query, RECURSING_CLIENT, Transport::Tcp, scratch);
        if outcome == Outcome::Reply {
            let framed_len = u16::try_from(out.len()).expect("reply fits the length prefix");
            assert_eq!(usize::from(framed_len), out.len());
            answered += 1;
        }
        rest = next;
        if answered > 64 {
            break;
        }
    }
}

/// `registry_json`: a registry file's bytes through the parser and, when they parse, the
/// snapshot builder; then every service's names asked through a responder over it.
pub fn check_registry_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // the file source reads UTF-8 only
    };
    let Ok(state) = snapdns::registry::file::parse(Path::new("fuzz.json"), text) else {
        return;
    };
    let names: Vec<String> = state.services.keys().take(8).cloned().collect();
    let Some(responder) = responder_over(state, ZoneSet::default()) else {
        return;
    };
    let mut scratch = Scratch::default();
    for name in names {
        for (owner, qtype) in [
            (format!("{name}.service.consul."), RecordType::A),
            (format!("_{name}._tcp.service.consul."), RecordType::SRV),
            (format!("{name}.service.dc1.consul."), RecordType::ANY),
        ] {
            let Ok(owner) = Name::from_ascii(&owner) else {
                continue;
            };
            for edns in [None, Some(1232)] {
                let query = query_bytes(owner.clone(), qtype, edns);
                answer_and_check(
                    &responder,
                    &query,
                    RECURSING_CLIENT,
                    Transport::Udp,
                    &mut scratch,
                );
            }
        }
    }
}

/// A query for `name` and `qtype` with ID 0x4242, EDNS with `payload` when given.
pub fn query_bytes(name: Name, qtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name, qtype));
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
    }
    message.to_vec().expect("query encodes")
}

/// `state_file`: a persisted-state file through the decoder and, when it is accepted, the
/// snapshot builder (what start-up does with it). First byte 0: the rest is the whole file;
/// otherwise the rest is the payload and a valid header is written before it, so the JSON
/// decoder is reached past the checksum.
pub fn check_state_file(dir: &Path, data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = Vec::with_capacity(rest.len() + 64);
    if *mode != 0 {
        let header = format!(
            "snapdns-state 1 {:08x} {}\n",
            crc32fast::hash(rest),
            rest.len()
        );
        file.extend_from_slice(header.as_bytes());
    }
    file.extend_from_slice(rest);
    let path = dir.join("state-00000000000000000001.snapdns");
    std::fs::write(&path, &file).expect("write state file");
    if let Ok(persisted) = snapdns::persist::read_file(&path, "dc1") {
        let fetched_at = persisted.fetched_at();
        let _ = Snapshot::build(persisted.state, fetched_at, &zone_options());
    }
}

/// `zone_cache`: bytes through the zone cache reader (`Snapshot::from_cache`). A cache that
/// reads is published and every name it holds (the first 64) asked for each of its types, A
/// and ANY, over UDP at 512 bytes (so cut answers too), with EDNS and over TCP. Only a panic is
/// a fault: the reader checks every length and offset answering relies on, while the record
/// bytes themselves are the file checksum's to guard, so odd replies are no finding here.
pub fn check_zone_cache(data: &[u8]) {
    let Ok(cached) = Snapshot::from_cache(data, &zone_options()) else {
        return;
    };
    let snapshot = Arc::new(cached.snapshot);
    let questions: Vec<(Name, u16)> = snapshot
        .zone
        .names()
        .take(64)
        .filter_map(|(key, by_type)| {
            let name = decode_key(key)?;
            let types: Vec<u16> = by_type.iter().map(|(rtype, _)| *rtype).collect();
            Some((name, types))
        })
        .flat_map(|(name, types)| {
            types
                .into_iter()
                .chain([1, 255])
                .map(move |rtype| (name.clone(), rtype))
        })
        .collect();
    let store = SnapshotStore::default();
    store.publish(snapshot);
    let responder = Responder::new(
        store,
        &wire_key(&zone_options().domain).expect("apex"),
        Arc::new(ArcSwap::from_pointee(ZoneSet::default())),
        policy(512),
    );
    let mut scratch = Scratch::default();
    let mut out = Vec::with_capacity(4096);
    for (name, rtype) in questions {
        for (transport, edns) in [
            (Transport::Udp, None),
            (Transport::Udp, Some(1232)),
            (Transport::Tcp, None),
        ] {
            let query = query_bytes(name.clone(), RecordType::from(rtype), edns);
            out.clear();
            responder.respond(&query, RECURSING_CLIENT, transport, &mut out, &mut scratch);
        }
    }
}

/// The `zone_cache` seed: the zone cache of the fixture registry's snapshot.
pub fn zone_cache_seed() -> Vec<u8> {
    let state = Arc::new(fixture_registry());
    let snapshot = Snapshot::build(state, SystemTime::UNIX_EPOCH, &zone_options())
        .expect("fixture snapshot builds");
    let base = snapdns::snapshot::BaseId {
        generation: 1,
        saved_at_ms: 0,
        index: 7,
    };
    let mut bytes = Vec::new();
    snapshot
        .write_cache(&base, &mut bytes)
        .expect("write to memory");
    bytes
}

/// `zone_file`: text through the static zone loader; a zone that loads is then asked for its
/// apex SOA, NS and ANY and a missing name through a responder, and every reply checked.
pub fn check_zone_file(dir: &Path, data: &[u8]) {
    let path = dir.join("fuzz.example.zone");
    std::fs::write(&path, data).expect("write zone file");
    let Ok(zone) = snapdns::static_zones::load_file(&path) else {
        return;
    };
    let apex = decode_key(zone.apex_key());
    let responder = Responder::new(
        SnapshotStore::default(),
        &wire_key(&zone_options().domain).expect("apex"),
        Arc::new(ArcSwap::from_pointee(ZoneSet::new(vec![zone]))),
        policy(1232),
    );
    let Some(apex) = apex else {
        return;
    };
    let mut scratch = Scratch::default();
    let missing = Name::from_ascii("no-such-name-here")
        .ok()
        .and_then(|label| label.append_domain(&apex).ok());
    for (name, qtype) in [
        (Some(apex.clone()), RecordType::SOA),
        (Some(apex.clone()), RecordType::NS),
        (Some(apex.clone()), RecordType::ANY),
        (missing, RecordType::A),
    ] {
        let Some(name) = name else { continue };
        for (transport, edns) in [
            (Transport::Udp, None),
            (Transport::Udp, Some(1232)),
            (Transport::Tcp, None),
        ] {
            let query = query_bytes(name.clone(), qtype, edns);
            answer_and_check(
                &responder,
                &query,
                RECURSING_CLIENT,
                transport,
                &mut scratch,
            );
        }
    }
}

fn decode_key(key: &[u8]) -> Option<Name> {
    use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
    Name::read(&mut BinDecoder::new(key)).ok()
}

/// Client queries the `forward_reply` target answers (chosen by the input's first byte): the
/// EDNS payload advertised (if any), and the transport's limit.
const FORWARD_CLIENTS: [(Option<u16>, Transport); 6] = [
    (None, Transport::Udp),
    (Some(512), Transport::Udp),
    (Some(1232), Transport::Udp),
    (Some(4096), Transport::Udp),
    (None, Transport::Tcp),
    (Some(1232), Transport::Tcp),
];

/// `forward_reply`: `data[1..]` as an upstream's reply bytes, through the forwarder's decoding,
/// TTL capping and client framing, for the client query picked by `data[0]` (asking the
/// upstream's own question when it has one). The reply to the client must decode, carry the
/// client's ID and question and fit the client's limit.
pub fn check_forward_reply(data: &[u8]) {
    let Some((selector, upstream)) = data.split_first() else {
        return;
    };
    let (payload, transport) = FORWARD_CLIENTS[usize::from(*selector) % FORWARD_CLIENTS.len()];
    let question = Message::from_vec(upstream)
        .ok()
        .and_then(|message| message.queries.first().cloned())
        .unwrap_or_else(|| {
            Query::query(
                Name::from_ascii("example.com.").expect("name"),
                RecordType::A,
            )
        });
    let mut message = Message::new(0x2b2b, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.metadata.checking_disabled = selector & 0x80 != 0;
    message.add_query(question.clone());
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload)
            .set_dnssec_ok(selector & 0x40 != 0);
        message.set_edns(edns);
    }
    let Ok(query) = message.to_vec() else {
        return; // a question hickory cannot encode is not one a client sends
    };
    let max_udp_size = 1232u16;
    let limit = size_limit(&query, transport, max_udp_size);
    let limits = ForwardLimits {
        limit,
        advertised: max_udp_size,
        nsid: None,
    };
    let Some(out) = fuzz_upstream_reply(&query, upstream, limits) else {
        return;
    };
    assert!(
        out.len() <= limit,
        "forwarded reply of {} bytes over {limit}",
        out.len()
    );
    let reply = Message::from_vec(&out)
        .unwrap_or_else(|e| panic!("forwarded reply does not decode: {e}; reply {out:02x?}"));
    assert_eq!(reply.metadata.id, 0x2b2b, "reply ID");
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert_eq!(reply.queries.as_slice(), [question], "question not echoed");
}
