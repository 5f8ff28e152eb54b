//! Unit tests of `respond.rs`: answers through the responder at many EDNS sizes against the
//! old per-query re-encoding, and no encoding per query.
use std::net::Ipv4Addr;
use std::time::SystemTime;

use hickory_proto::op::{Edns, MessageType, OpCode};
use hickory_proto::rr::{Name, RecordType};

use super::*;
use crate::dns::{RrlSettings, ServerIdentity};
use crate::registry::{HealthEntry, Node, NodeService, RegistryState};
use crate::snapshot::{NameServers, Snapshot, ZoneOptions};
use crate::zone::{encoded_so_far, wire_key};

/// A registry with `big` (60 instances) and `huge` (500), answered with
/// `--max-udp-size 65535` so that every EDNS size is the client's.
fn responder() -> Responder {
    let mut state = RegistryState::default();
    let mut index = 0u32;
    for (service, count) in [("big", 60), ("huge", 500)] {
        let entries = (0..count)
            .map(|i| {
                index += 1;
                let ip = Ipv4Addr::from(0x0a00_0000 + index);
                HealthEntry {
                    node: Arc::new(Node {
                        node: format!("{service}-node-{i}").into(),
                        address: ip.to_string().into(),
                        datacenter: "dc1".into(),
                        ..Node::default()
                    }),
                    service: NodeService {
                        id: format!("{service}-{i}").into(),
                        service: service.into(),
                        port: 20_000 + i as u16,
                        ..NodeService::default()
                    },
                    checks: Vec::new(),
                }
            })
            .collect();
        state.services.insert(service.into(), Arc::new(entries));
    }
    let options = ZoneOptions {
        domain: Name::from_ascii("consul.").unwrap(),
        datacenter: "dc1".into(),
        service_ttl: 0,
        service_ttls: Default::default(),
        health: Default::default(),
        node_ttl: 0,
        negative_ttl: 0,
        nameservers: NameServers::Listen(Vec::new()),
        srv_node_meta_txt: false,
    };
    let store = SnapshotStore::default();
    let snapshot = Snapshot::build(Arc::new(state), SystemTime::now(), &options).unwrap();
    store.publish(Arc::new(snapshot));
    let policy = AnswerPolicy {
        max_udp_size: 65_535,
        shuffle: true,
        forwarding: false,
        allow_recursion: Vec::new(),
        rrl: RrlSettings::default(),
        identity: ServerIdentity::default(),
        transfer: Default::default(),
    };
    let apex = wire_key(&Name::from_ascii("consul.").unwrap()).unwrap();
    Responder::new(store, &apex, Arc::default(), policy)
}

fn query(name: &str, payload: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(
        Name::from_ascii(name).unwrap(),
        RecordType::SRV,
    ));
    if let Some(payload) = payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
    }
    message.to_vec().unwrap()
}

/// What the responder sent before cuts were prepared: decode and encode per query.
fn reencoded(responder: &Responder, bytes: &[u8]) -> Vec<u8> {
    let query = ParsedQuery::parse(bytes).ok().unwrap();
    let policy = responder.policy();
    let reply = Reply {
        query: &query,
        recursion_available: false,
        limit: limit(&policy, &query, Transport::Udp),
        max_udp_size: policy.max_udp_size,
        shuffle: false,
        nsid: None,
    };
    let guard = responder.registry.load();
    let zone = &guard.as_deref().unwrap().zone;
    let Lookup::Answer(prepared) = zone.lookup(query.key(), query.qtype) else {
        panic!("no answer");
    };
    let mut out = Vec::new();
    reply.prepared(prepared, &mut out);
    if out.len() > reply.limit {
        reply.truncated_by_reencoding(prepared, &mut out);
    }
    out
}

#[test]
fn odd_udp_sizes_are_cut_as_before_without_encoding() {
    let responder = responder();
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut cut = 0;
    for name in [
        "_big._tcp.service.dc1.consul.",
        "_huge._tcp.service.dc1.consul.",
    ] {
        let sizes = (512..=1400)
            .step_by(7)
            .chain([600, 1000, 1400, 4096, 65_535]);
        for payload in sizes.map(Some).chain([None]) {
            let bytes = query(name, payload);
            let before = encoded_so_far();
            let outcome = responder.respond(&bytes, client, Transport::Udp, &mut out, &mut scratch);
            assert_eq!(outcome, Outcome::Reply);
            assert_eq!(
                encoded_so_far(),
                before,
                "{name} at {payload:?}: nothing encoded"
            );
            assert_eq!(out, reencoded(&responder, &bytes), "{name} at {payload:?}");
            cut += usize::from(out[2] & flags::TC != 0);
        }
    }
    assert!(cut > 200, "most of these sizes cut the answer: {cut}");
}
