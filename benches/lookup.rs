//! Micro-benchmark of the answering path alone: query bytes in, response bytes out, against a
//! registry of 1,000 services x 5 instances (the load benchmark's default data set).
//!
//! `cargo bench --bench lookup`. No sockets: this isolates parsing, lookup and patching so a
//! regression shows without a load test. The `truncate` group asks SRV of a 60- and a
//! 500-instance service at odd EDNS sizes with `--max-udp-size 65535`: every one of them is
//! cut to the client's size.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use snapdns::dns::{AnswerPolicy, Responder, Scratch, Transport};
use snapdns::registry::{HealthEntry, Node, NodeService, RegistryState};
use snapdns::snapshot::{NameServers, Snapshot, SnapshotStore, ZoneOptions};
use snapdns::zone::{wire_key, ZoneSet};

/// The same allocator as the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn registry(services: usize, instances: usize) -> RegistryState {
    let mut state = RegistryState::default();
    let mut index = 0usize;
    for s in 0..services {
        let name = format!("web-{s}");
        let entries = (0..instances)
            .map(|i| {
                let address = format!(
                    "10.{}.{}.{}",
                    index / (254 * 256),
                    (index / 254) % 256,
                    index % 254 + 1
                );
                index += 1;
                HealthEntry {
                    node: Arc::new(Node {
                        node: format!("node-{s}-{i}").into(),
                        address: address.into(),
                        datacenter: "dc1".into(),
                        ..Node::default()
                    }),
                    service: NodeService {
                        id: format!("{name}-{i}").into(),
                        service: name.as_str().into(),
                        tags: vec!["v1".into()],
                        port: 20000 + (index % 40000) as u16,
                        ..NodeService::default()
                    },
                    checks: Vec::new(),
                }
            })
            .collect();
        state.services.insert(name, Arc::new(entries));
    }
    state.index = 42;
    state
}

fn options() -> ZoneOptions {
    ZoneOptions {
        domain: Name::from_ascii("consul.").unwrap(),
        datacenter: "dc1".into(),
        service_ttl: 0,
        service_ttls: Default::default(),
        health: Default::default(),
        node_ttl: 0,
        negative_ttl: 0,
        nameservers: NameServers::Listen(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        srv_node_meta_txt: false,
    }
}

fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    query_sized(name, qtype, edns.then_some(1232))
}

fn query_sized(name: &str, qtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(4242, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(payload) = payload {
        let mut opt = Edns::new();
        opt.set_max_payload(payload);
        message.set_edns(opt);
    }
    message.to_vec().unwrap()
}

/// The load benchmark's data set plus two large services, `big-60` and `big-500`.
fn responder(max_udp_size: u16) -> Responder {
    let store = SnapshotStore::default();
    let mut state = registry(1000, 5);
    for (name, size) in [("big-60", 60), ("big-500", 500)] {
        let first = registry(1, size).services.without_min().0.unwrap();
        let mut big = (*first).clone();
        for (i, entry) in big.iter_mut().enumerate() {
            entry.service.service = name.into();
            Arc::make_mut(&mut entry.node).node = format!("{name}-node-{i}").into();
        }
        state.services.insert(name.into(), Arc::new(big));
    }
    let snapshot = Snapshot::build(Arc::new(state), SystemTime::now(), &options()).unwrap();
    store.publish(Arc::new(snapshot));
    let apex = wire_key(&Name::from_ascii("consul.").unwrap()).unwrap();
    let policy = AnswerPolicy {
        max_udp_size,
        shuffle: true,
        forwarding: false,
        allow_recursion: Vec::new(),
        rrl: Default::default(),
        identity: Default::default(),
        transfer: Default::default(),
    };
    Responder::new(
        store,
        &apex,
        Arc::new(ArcSwap::from_pointee(ZoneSet::default())),
        policy,
    )
}

fn bench_lookup(c: &mut Criterion) {
    let responder = responder(1232);
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let cases = [
        ("a", query("web-500.service.consul.", RecordType::A, false)),
        (
            "a_edns",
            query("web-500.service.consul.", RecordType::A, true),
        ),
        (
            "srv",
            query("_web-500._tcp.service.consul.", RecordType::SRV, false),
        ),
        (
            "nxdomain",
            query("missing-1234.service.consul.", RecordType::A, false),
        ),
        (
            "node",
            query("node-500-1.node.dc1.consul.", RecordType::A, false),
        ),
    ];
    let mut group = c.benchmark_group("respond");
    group.throughput(Throughput::Elements(1));
    for (label, bytes) in &cases {
        let mut out = Vec::with_capacity(4096);
        let mut scratch = Scratch::default();
        group.bench_function(*label, |b| {
            b.iter(|| {
                responder.respond(
                    black_box(bytes),
                    client,
                    Transport::Udp,
                    &mut out,
                    &mut scratch,
                );
                black_box(out.len())
            })
        });
    }
    group.finish();

    let wide = crate::responder(65535);
    let mut truncate = c.benchmark_group("truncate");
    truncate.throughput(Throughput::Elements(1));
    for service in ["big-60", "big-500"] {
        let name = format!("{service}.service.consul.");
        let mut sizes = vec![None];
        sizes.extend([600, 1000, 1400, 4096, 65535].map(Some));
        for payload in sizes {
            let bytes = query_sized(&name, RecordType::SRV, payload);
            let label = match payload {
                Some(payload) => format!("{service}_srv_edns{payload}"),
                None => format!("{service}_srv_512"),
            };
            let mut out = Vec::with_capacity(65535);
            let mut scratch = Scratch::default();
            truncate.bench_function(label, |b| {
                b.iter(|| {
                    wide.respond(
                        black_box(&bytes),
                        client,
                        Transport::Udp,
                        &mut out,
                        &mut scratch,
                    );
                    black_box(out.len())
                })
            });
        }
    }
    truncate.finish();

    let mut builds = c.benchmark_group("snapshot_build");
    builds.sample_size(10);
    for (services, instances) in [(1000, 5), (10_000, 10)] {
        let state = Arc::new(registry(services, instances));
        builds.bench_function(format!("{services}x{instances}"), |b| {
            b.iter(|| Snapshot::build(state.clone(), SystemTime::now(), &options()).unwrap())
        });
    }
    builds.finish();
}

criterion_group!(benches, bench_lookup);
criterion_main!(benches);
