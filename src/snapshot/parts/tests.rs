//! Incremental rebuilds against full builds, over random sequences of registry changes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::SystemTime;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::registry::{
    CheckOutput, CheckStatus, EntryCheck, HealthEntry, Node, NodeService, RegistryState, Weights,
};
use crate::snapshot::tests::contents;
use crate::snapshot::{HealthFilter, NameServer, NameServers, Snapshot, ZoneOptions};

fn options(srv_node_meta_txt: bool) -> ZoneOptions {
    ZoneOptions {
        domain: "consul.".parse().unwrap(),
        datacenter: "dc1".into(),
        service_ttl: 0,
        service_ttls: Default::default(),
        health: Default::default(),
        node_ttl: 0,
        negative_ttl: 0,
        // Named servers, one of them named like the datacenter `dc2` the generator uses, so
        // its answers share a name with the registry's empty non-terminal `dc2.consul.`.
        nameservers: NameServers::Named(vec![
            NameServer {
                name: "ns1.consul.".parse().unwrap(),
                addresses: vec![
                    IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ],
            },
            NameServer {
                name: "dc2.consul.".parse().unwrap(),
                addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))],
            },
            NameServer {
                name: "dns.example.net.".parse().unwrap(),
                addresses: Vec::new(),
            },
        ]),
        srv_node_meta_txt,
    }
}

/// Registry keys: case variants, a key whose entries name another service, a bad name.
const KEYS: [&str; 7] = ["web", "Web", "api", "db", "alias", "cache", "bad_name"];
const TAGS: [&str; 4] = ["v1", "v2", "tcp", "not a label"];
/// Service addresses inside the registry domain.
const IN_DOMAIN: [&str; 6] = [
    "db.service.consul",
    "web.service.consul",
    "v1.web.service.dc1.consul",
    "api.service.consul",
    "node-1.node.consul",
    "hostnode2.node.consul",
];

fn random_entry(rng: &mut StdRng, key: &str, nodes: &[(String, String)]) -> HealthEntry {
    let (node, address) = nodes[rng.random_range(0..nodes.len())].clone();
    let service = match key {
        "alias" => "web".to_string(),
        _ if rng.random_bool(0.1) => String::new(),
        _ => key.to_string(),
    };
    // Hostnames inside the domain make one service's answers depend on another's (loops
    // included: web at web, web at db at web).
    let service_address = match rng.random_range(0..12) {
        0 => "10.9.0.1".to_string(),
        1 => "fd00::9".to_string(),
        2 => "host.example".to_string(),
        3 => IN_DOMAIN[rng.random_range(0..IN_DOMAIN.len())].to_string(),
        _ => String::new(),
    };
    // Node metadata differs now and then between the entries of one node, as when one
    // service's answer is seen before another's.
    let mut meta = crate::registry::SmallMap::default();
    if rng.random_bool(0.5) {
        meta.insert("rack", format!("r{}", rng.random_range(0..2)).into());
        meta.insert("a=b", "`c".into());
    }
    HealthEntry {
        node: Arc::new(Node {
            node: node.into(),
            address: address.into(),
            datacenter: if rng.random_bool(0.1) { "dc2" } else { "dc1" }.into(),
            meta,
            ..Node::default()
        }),
        service: NodeService {
            id: format!("{key}-{}", rng.random_range(0..4)).into(),
            service: service.into(),
            tags: TAGS
                .iter()
                .filter(|_| rng.random_bool(0.4))
                .map(|t| (*t).into())
                .collect(),
            address: service_address.into(),
            port: rng.random_range(1..4),
            weights: Weights {
                passing: rng.random_range(1..3),
                warning: rng.random_range(0..2),
            },
            ..NodeService::default()
        },
        checks: vec![{
            let status: CheckStatus = ["passing", "passing", "passing", "warning", "critical"]
                [rng.random_range(0..5)]
            .into();
            // Output-only changes of a failing check make a new state but no new answers:
            // the rebuild must still equal a full build.
            let output = ["", "timeout", "HTTP 503"][rng.random_range(0..3)];
            EntryCheck {
                output: CheckOutput::new(&status, output),
                status,
                ..EntryCheck::default()
            }
        }],
    }
}

#[test]
fn incremental_rebuilds_equal_full_builds_over_random_changes() {
    rebuild_randomly(12, &options(false));
}

#[test]
fn incremental_rebuilds_equal_full_builds_with_node_meta_in_srv_answers() {
    rebuild_randomly(13, &options(true));
}

#[test]
fn with_warning_instances_and_per_service_ttls_too() {
    let mut options = options(false);
    options.health = HealthFilter::PassingOrWarning;
    options.service_ttl = 4;
    for (pattern, ttl) in [("web", 10), ("w*", 20), ("a*", 30)] {
        options.service_ttls.insert(pattern, ttl).unwrap();
    }
    rebuild_randomly(14, &options);
}

fn rebuild_randomly(seed: u64, options: &ZoneOptions) {
    let mut rng = StdRng::seed_from_u64(seed);
    // Node addresses change now and then, so services may disagree about a node for a while.
    let mut nodes: Vec<(String, String)> = (0..6)
        .map(|i| (format!("node-{i}"), format!("10.0.0.{}", i + 1)))
        .collect();
    nodes.push(("Bad Node".into(), "10.0.0.99".into()));
    nodes.push(("hostnode".into(), "node.example".into()));
    nodes.push(("hostnode2".into(), "cache.service.consul".into()));
    let mut state = RegistryState::default();
    let now = SystemTime::now();
    let mut served = Snapshot::build(Arc::new(state.clone()), now, options).unwrap();
    let mut steps_with_dependents = 0;
    for step in 0..300 {
        if rng.random_bool(0.1) {
            // A few addresses, so nodes share them (and services' own addresses) at times.
            let at = rng.random_range(0..6);
            nodes[at].1 = match rng.random_range(0..4) {
                0 => "10.9.0.1".to_string(),
                1 => "fd00::9".to_string(),
                _ => format!("10.0.1.{}", rng.random_range(1..4)),
            };
        }
        for _ in 0..rng.random_range(1..3) {
            let key = KEYS[rng.random_range(0..KEYS.len())];
            if rng.random_bool(0.2) {
                state.services.remove(key);
            } else {
                let entries = (0..rng.random_range(0..5))
                    .map(|_| random_entry(&mut rng, key, &nodes))
                    .collect();
                state.services.insert(key.to_string(), Arc::new(entries));
            }
        }
        state.index = step + 1;
        let next = Arc::new(state.clone());
        let rebuilt = Snapshot::rebuild(Some(&served), next.clone(), now, options).unwrap();
        let fresh = Snapshot::build(next, now, options).unwrap();
        assert_eq!(
            contents(&rebuilt.zone),
            contents(&fresh.zone),
            "step {step}"
        );
        assert_eq!(rebuilt.zone.name_count(), fresh.zone.name_count());
        assert_eq!(rebuilt.zone.pointer_count(), fresh.zone.pointer_count());
        assert_eq!(rebuilt.zone.record_count(), fresh.zone.record_count());
        assert_eq!(rebuilt.stats, fresh.stats);
        assert_eq!(rebuilt.skipped, fresh.skipped, "step {step}");
        // The names each service's in-domain targets depend on are the same too.
        assert_eq!(rebuilt.parts.watching, fresh.parts.watching, "step {step}");
        assert_eq!(rebuilt.parts.watchers, fresh.parts.watchers, "step {step}");
        if !fresh.parts.watching.is_empty() {
            steps_with_dependents += 1;
        }
        served = rebuilt;
    }
    assert!(steps_with_dependents > 100, "{steps_with_dependents}");
}
