//! Incremental rebuilds against full builds, over random sequences of registry changes.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::SystemTime;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::registry::{EntryCheck, HealthEntry, Node, NodeService, RegistryState};
use crate::snapshot::tests::contents;
use crate::snapshot::{Snapshot, ZoneOptions};

fn options() -> ZoneOptions {
    ZoneOptions {
        domain: "consul.".parse().unwrap(),
        datacenter: "dc1".into(),
        service_ttl: 0,
        node_ttl: 0,
        negative_ttl: 0,
        nameserver_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
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
    HealthEntry {
        node: Arc::new(Node {
            node: node.into(),
            address: address.into(),
            datacenter: if rng.random_bool(0.1) { "dc2" } else { "dc1" }.into(),
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
            ..NodeService::default()
        },
        checks: vec![EntryCheck {
            status: if rng.random_bool(0.8) {
                "passing"
            } else {
                "critical"
            }
            .into(),
            ..EntryCheck::default()
        }],
    }
}

#[test]
fn incremental_rebuilds_equal_full_builds_over_random_changes() {
    let mut rng = StdRng::seed_from_u64(12);
    // Node addresses change now and then, so services may disagree about a node for a while.
    let mut nodes: Vec<(String, String)> = (0..6)
        .map(|i| (format!("node-{i}"), format!("10.0.0.{}", i + 1)))
        .collect();
    nodes.push(("Bad Node".into(), "10.0.0.99".into()));
    nodes.push(("hostnode".into(), "node.example".into()));
    nodes.push(("hostnode2".into(), "cache.service.consul".into()));
    let mut state = RegistryState::default();
    let now = SystemTime::now();
    let mut served = Snapshot::build(Arc::new(state.clone()), now, &options()).unwrap();
    let mut steps_with_dependents = 0;
    for step in 0..300 {
        if rng.random_bool(0.1) {
            let at = rng.random_range(0..6);
            nodes[at].1 = format!("10.0.1.{}", rng.random_range(1..200));
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
        let rebuilt = Snapshot::rebuild(Some(&served), next.clone(), now, &options()).unwrap();
        let fresh = Snapshot::build(next, now, &options()).unwrap();
        assert_eq!(
            contents(&rebuilt.zone),
            contents(&fresh.zone),
            "step {step}"
        );
        assert_eq!(rebuilt.zone.name_count(), fresh.zone.name_count());
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
