//! `--generate SERVICES,INSTANCES,CHECKS`: a synthetic registry in Consul 1.17's JSON shape.
//!
//! Service `s` has its instances on nodes `s*I .. s*I+I-1` modulo the node count, which is a
//! quarter of all instances (at least I), so instances of one service sit on distinct nodes and
//! each node hosts about four services: a node check flip then wakes several services.

use std::collections::{BTreeMap, HashMap};

use crate::model::{Check, Node, Service, Weights};
use crate::registry::{Instance, NodeRec, Registry};

/// Parsed `SERVICES,INSTANCES,CHECKS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Number of services.
    pub services: usize,
    /// Instances per service.
    pub instances: usize,
    /// Checks per instance: `serfHealth` plus CHECKS-1 service checks.
    pub checks: usize,
}

impl std::str::FromStr for Spec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<usize> = s
            .split(',')
            .map(|p| p.trim().parse::<usize>().map_err(|e| format!("{p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        match parts[..] {
            [services, instances, checks] if checks >= 1 => Ok(Self {
                services,
                instances,
                checks,
            }),
            _ => Err("expected SERVICES,INSTANCES,CHECKS with CHECKS >= 1".into()),
        }
    }
}

/// Fills `reg` with the generated registry, every index at `index`.
pub fn generate(reg: &Registry, spec: Spec, index: u64) {
    let total = spec.services * spec.instances;
    let node_count = (total / 4).max(spec.instances).max(1);
    let width = spec.services.saturating_sub(1).to_string().len().max(5);
    let mut nodes: Vec<Option<NodeRec>> = (0..node_count).map(|_| None).collect();
    let mut services = Vec::with_capacity(spec.services);
    for s in 0..spec.services {
        let name = format!("svc-{s:0width$}");
        let key = name.clone();
        let mut rec = Registry::new_service(name.clone(), index);
        for j in 0..spec.instances {
            let n = (s * spec.instances + j) % node_count;
            let (node, inst) = instance(&name, j, n as u64, spec.checks, index, &reg.default_dc);
            let slot = nodes[n].get_or_insert(node);
            *slot.hosts.entry(key.clone()).or_default() += 1;
            rec.instances.push(inst);
        }
        rec.sort();
        services.push(rec);
    }
    reg.install(
        nodes.into_iter().flatten().collect(),
        services,
        node_count as u64,
    );
}

/// Node number `n` and instance `j` of `service` with `checks - 1` service checks.
pub(crate) fn instance(
    service: &str,
    j: usize,
    n: u64,
    checks: usize,
    index: u64,
    dc: &str,
) -> (NodeRec, Instance) {
    let node_name = format!("node-{n:06}");
    let ip = format!(
        "10.{}.{}.{}",
        (n + 1) >> 16 & 255,
        (n + 1) >> 8 & 255,
        (n + 1) & 255
    );
    let tagged = ["lan", "lan_ipv4", "wan", "wan_ipv4"]
        .iter()
        .map(|k| ((*k).to_owned(), ip.clone()))
        .collect();
    let meta = BTreeMap::from([
        ("consul-network-segment".to_owned(), String::new()),
        ("consul-version".to_owned(), "1.17.0".to_owned()),
    ]);
    let node = Node {
        id: format!("{:08x}-0000-4000-8000-{:012x}", n & 0xffff_ffff, n),
        node: node_name.clone(),
        address: ip.clone(),
        datacenter: dc.to_owned(),
        partition: String::new(),
        peer_name: String::new(),
        tagged_addresses: tagged,
        meta: Some(meta),
        locality: None,
        create_index: index,
        modify_index: index,
    };
    let serf = Check {
        node: node_name.clone(),
        check_id: "serfHealth".into(),
        name: "Serf Health Status".into(),
        status: "passing".into(),
        notes: String::new(),
        output: "Agent alive and reachable".into(),
        service_id: String::new(),
        service_name: String::new(),
        service_tags: Vec::new(),
        r#type: String::new(),
        interval: String::new(),
        timeout: String::new(),
        exposed_port: 0,
        peer_name: String::new(),
        definition: None,
        create_index: index,
        modify_index: index,
    };
    let tags: Vec<String> = match j % 3 {
        0 => vec!["v1".into(), "primary".into()],
        1 => vec!["v1".into()],
        _ => Vec::new(),
    };
    let port = 8080 + j as u64;
    let id = format!("{service}-{j}");
    let service_checks = (1..checks)
        .map(|k| Check {
            node: node_name.clone(),
            check_id: if k == 1 {
                format!("service:{id}")
            } else {
                format!("service:{id}:{k}")
            },
            name: format!("Service '{service}' check"),
            status: "passing".into(),
            output: format!("HTTP GET http://{ip}:{port}/health: 200 OK Output: ok"),
            service_id: id.clone(),
            service_name: service.to_owned(),
            service_tags: tags.clone(),
            r#type: "http".into(),
            interval: "10s".into(),
            timeout: "2s".into(),
            ..serf.clone()
        })
        .collect();
    let svc = Service {
        kind: String::new(),
        id,
        service: service.to_owned(),
        tags,
        address: String::new(),
        tagged_addresses: None,
        meta: None,
        port,
        socket_path: String::new(),
        weights: Weights::default(),
        enable_tag_override: false,
        locality: None,
        proxy: None,
        connect: None,
        peer_name: String::new(),
        create_index: index,
        modify_index: index,
    };
    let rec = NodeRec {
        node,
        checks: vec![serf],
        hosts: HashMap::new(),
    };
    (
        rec,
        Instance {
            node: node_name,
            service: svc,
            checks: service_checks,
        },
    )
}
