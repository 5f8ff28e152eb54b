//! `--generate SERVICES,INSTANCES,CHECKS`: a synthetic registry in Consul 1.17's JSON shape.
//!
//! Service `s` has its instances on nodes `s*I .. s*I+I-1` modulo the node count, which is a
//! quarter of all instances (at least I), so instances of one service sit on distinct nodes and
//! each node hosts about four services: a node check flip then wakes several services.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{Check, Node, Service, Text, Weights};
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
    let mut shared = Shared::new("", &reg.default_dc);
    for s in 0..spec.services {
        shared.for_service(&format!("svc-{s:0width$}"));
        let mut rec = Registry::new_service(shared.service.clone(), index);
        for j in 0..spec.instances {
            let n = (s * spec.instances + j) % node_count;
            let (node, inst) = instance(&shared, j, n as u64, spec.checks, index);
            let slot = nodes[n].get_or_insert(node);
            slot.hosts.push((rec.key.clone(), 1));
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

/// Values every generated instance shares, allocated once.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    service: Text,
    check_name: Text,
    dc: Text,
    empty: Text,
    passing: Text,
    http: Text,
    interval: Text,
    timeout: Text,
    serf_id: Text,
    serf_name: Text,
    serf_output: Text,
    address_keys: [Text; 4],
    node_meta: Arc<BTreeMap<Text, Text>>,
    tags: [Arc<[Text]>; 3],
}

impl Shared {
    pub(crate) fn new(service: &str, dc: &str) -> Self {
        let v1: Text = "v1".into();
        let mut shared = Self {
            service: service.into(),
            check_name: format!("Service '{service}' check").into(),
            dc: dc.into(),
            empty: "".into(),
            passing: "passing".into(),
            http: "http".into(),
            interval: "10s".into(),
            timeout: "2s".into(),
            serf_id: "serfHealth".into(),
            serf_name: "Serf Health Status".into(),
            serf_output: "Agent alive and reachable".into(),
            address_keys: [
                "lan".into(),
                "lan_ipv4".into(),
                "wan".into(),
                "wan_ipv4".into(),
            ],
            node_meta: Arc::new(BTreeMap::from([
                ("consul-network-segment".into(), "".into()),
                ("consul-version".into(), "1.17.0".into()),
            ])),
            tags: [
                Arc::from([v1.clone(), "primary".into()]),
                Arc::from([v1]),
                Arc::from([]),
            ],
        };
        shared.for_service(service);
        shared
    }

    fn for_service(&mut self, service: &str) {
        self.service = service.into();
        self.check_name = format!("Service '{service}' check").into();
    }
}

/// Node number `n` and instance `j` of the shared service with `checks - 1` service checks.
pub(crate) fn instance(
    sh: &Shared,
    j: usize,
    n: u64,
    checks: usize,
    index: u64,
) -> (NodeRec, Instance) {
    let node_name: Text = format!("node-{n:06}").into();
    let ip: Text = format!(
        "10.{}.{}.{}",
        (n + 1) >> 16 & 255,
        (n + 1) >> 8 & 255,
        (n + 1) & 255
    )
    .into();
    let tagged = sh
        .address_keys
        .iter()
        .map(|k| (k.clone(), ip.clone()))
        .collect();
    let node = Node {
        id: format!("{:08x}-0000-4000-8000-{:012x}", n & 0xffff_ffff, n).into(),
        node: node_name.clone(),
        address: ip.clone(),
        datacenter: sh.dc.clone(),
        partition: sh.empty.clone(),
        peer_name: sh.empty.clone(),
        tagged_addresses: Arc::new(tagged),
        meta: Some(sh.node_meta.clone()),
        locality: None,
        create_index: index,
        modify_index: index,
    };
    let serf = Check {
        check_id: sh.serf_id.clone(),
        name: sh.serf_name.clone(),
        status: sh.passing.clone(),
        notes: sh.empty.clone(),
        output: sh.serf_output.clone(),
        r#type: sh.empty.clone(),
        interval: sh.empty.clone(),
        timeout: sh.empty.clone(),
        exposed_port: 0,
        peer_name: sh.empty.clone(),
        definition: None,
        create_index: index,
        modify_index: index,
    };
    let port = 8080 + j as u64;
    let id: Text = format!("{}-{j}", sh.service).into();
    let output: Text = format!("HTTP GET http://{ip}:{port}/health: 200 OK Output: ok").into();
    let service_checks = (1..checks)
        .map(|k| Check {
            check_id: if k == 1 {
                format!("service:{id}")
            } else {
                format!("service:{id}:{k}")
            }
            .into(),
            name: sh.check_name.clone(),
            output: output.clone(),
            r#type: sh.http.clone(),
            interval: sh.interval.clone(),
            timeout: sh.timeout.clone(),
            ..serf.clone()
        })
        .collect();
    let svc = Service {
        kind: sh.empty.clone(),
        id,
        service: sh.service.clone(),
        tags: sh.tags[j % 3].clone(),
        address: sh.empty.clone(),
        tagged_addresses: None,
        meta: None,
        port,
        socket_path: sh.empty.clone(),
        weights: Weights::default(),
        enable_tag_override: false,
        locality: None,
        proxy: None,
        connect: None,
        peer_name: sh.empty.clone(),
        create_index: index,
        modify_index: index,
    };
    let rec = NodeRec {
        node,
        checks: vec![serf],
        hosts: Vec::new(),
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
