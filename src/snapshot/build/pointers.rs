//! The reverse names (PTR) a service's fragment gives: see docs/dns.md, "Reverse lookups".

use std::net::IpAddr;

use super::super::names::is_label;
use super::{datacenter_of, Context};
use crate::registry::HealthEntry;
use crate::zone::{FragmentBuilder, PtrKind};

impl Context<'_> {
    /// The reverse names of the local datacenter's addresses that `entries` hand out (Consul's
    /// `handlePtr` looks in the agent's datacenter): each node's address, whatever its health,
    /// points at the node, and a passing instance's own address at the service. Which of
    /// several wins is the zone's business (`zone::reverse`).
    pub(super) fn add_pointers(
        &self,
        zone: &mut FragmentBuilder,
        service: &str,
        entries: &[&HealthEntry],
    ) {
        for entry in entries {
            if datacenter_of(&entry.node, self.local_dc) != self.local_dc {
                continue;
            }
            let node = &entry.node;
            if let (true, Ok(ip)) = (is_label(&node.node), node.address.trim().parse()) {
                if let Some(target) = self.node_name(&node.node, self.local_dc) {
                    zone.add_pointer(ip, PtrKind::Node, &target, self.options.node_ttl);
                }
            }
            // The instances DNS serves (passing; warning too with --serve-warning).
            if !self.options.health.serves(entry) {
                continue;
            }
            if let Ok(ip) = entry.service.address.trim().parse::<IpAddr>() {
                if let Some(target) = self.service_name(service, self.local_dc) {
                    let ttl = self.options.service_ttl_for(service);
                    zone.add_pointer(ip, PtrKind::Service, &target, ttl);
                }
            }
        }
    }
}
