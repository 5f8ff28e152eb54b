//! Turns a [`RegistryState`] into the registry zone, following Consul's DNS interface.
//!
//! Every name Consul answers for a service, tag, node or address is computed here once, with
//! its records in a stable order, so a query is a single lookup. See docs/dns.md for each rule
//! and where it comes from.

mod pointers;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{CNAME, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::ProtoError;
use rustc_hash::FxHashSet;

use super::address::{
    addr_label, datacenter_of, family_matches, fqdn, ip_record, node_address, service_address,
    Address, Family, Origin,
};
use super::health::{srv_weight, HealthFilter};
use super::meta_txt::node_meta_records;
use super::names::is_label;
use super::nameservers::{apex, NameServers};
use super::parts::Parts;
use super::serial::{next_serial, serial_of};
use super::service_ttl::ServiceTtls;
use super::targets::Targets;
use super::threads::in_parallel;
use super::{Skipped, SnapshotStats};
use crate::registry::{HealthEntry, Node, RegistryState};
use crate::zone::{Fragment, FragmentBuilder, Zone};

/// How the registry zone is shaped: domain, local datacenter, TTLs, name servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneOptions {
    /// The registry domain, e.g. `consul.`.
    pub domain: Name,
    /// The local datacenter: names without a datacenter label mean this one.
    pub datacenter: String,
    /// TTL of service answers (A/AAAA/CNAME/SRV and their additional records), unless
    /// `service_ttls` names the service.
    pub service_ttl: u32,
    /// Per-service TTLs (`--service-ttl-for`), over `service_ttl`.
    pub service_ttls: ServiceTtls,
    /// Which instances are served: passing only, or warning too (`--serve-warning`).
    pub health: HealthFilter,
    /// TTL of node and addr answers and of NS records.
    pub node_ttl: u32,
    /// SOA minimum and TTL: how long resolvers cache NXDOMAIN and NODATA (RFC 2308).
    pub negative_ttl: u32,
    /// The name servers named in NS and SOA, with their addresses (`--nameserver`).
    pub nameservers: NameServers,
    /// SRV answers carry their nodes' metadata TXT records in the additional section
    /// (Consul's `enable_additional_node_meta_txt`).
    pub srv_node_meta_txt: bool,
}

impl ZoneOptions {
    /// The TTL of the answers of the served (lower-case) `service`.
    pub fn service_ttl_for(&self, service: &str) -> u32 {
        self.service_ttls
            .ttl_for(service)
            .unwrap_or(self.service_ttl)
    }
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Encoding an answer failed (a name or message over DNS limits).
    #[error("encoding the registry zone failed")]
    Encode(#[from] ProtoError),
}

/// One instance chosen to be served, with the addresses Consul's rules pick for it.
struct Served<'a> {
    entry: &'a HealthEntry,
    datacenter: String,
}

/// A zone is derived from the previous one (its index shared, the changed names replaced)
/// when at most one in this many served services changed; else its index is built afresh.
const DERIVE_RATIO: usize = 4;

/// Up to this many served services a zone is always derived: either way costs next to
/// nothing, and a derived zone lets IXFR find what changed without comparing whole zones.
const SMALL_ZONE: usize = 256;

/// Builds the registry zone of `state`. With `previous` (the state, parts and zone of the
/// snapshot being replaced), only the services that differ are encoded again and the zone is
/// derived from the previous one: the cost follows the change, not the registry.
pub(super) fn registry_zone(
    state: &RegistryState,
    options: &ZoneOptions,
    previous: Option<(&RegistryState, &Parts, &Zone)>,
) -> Result<(Zone, SnapshotStats, Skipped, Parts, bool), BuildError> {
    let previous_serial = previous.map(|(_, _, zone)| zone.serial());
    let previous = previous.filter(|(_, parts, _)| parts.options.as_ref() == Some(options));
    let empty = RegistryState::default();
    let (old_state, mut parts, old_zone) = match previous {
        Some((old_state, parts, zone)) => (old_state, parts.clone(), Some(zone)),
        None => (&empty, Parts::new(options), None),
    };
    let domain = options.domain.to_lowercase();
    let local_dc = options.datacenter.to_ascii_lowercase();
    let changes: Vec<_> = old_state.changes_to(state).collect();
    let changed = previous.is_none() || !changes.is_empty();
    let serial = next_serial(serial_of(state), previous_serial, changed);
    let zone = apex(&domain, serial, options)?;
    let ctx = Context {
        domain: &domain,
        local_dc: &local_dc,
        options,
    };
    let apex_key = zone.apex_key().to_vec();

    let affected = parts.apply(&changes, options.health);
    let jobs: Vec<(Arc<str>, Vec<&HealthEntry>)> = affected
        .into_iter()
        .map(|served| {
            let entries = parts.entries_of(&served, state);
            (served, entries)
        })
        .collect();
    let built = in_parallel(&jobs, |(served, entries)| {
        (!entries.is_empty()).then(|| ctx.service_fragment(served, entries, &apex_key, None))
    });
    let mut removed = Vec::new();
    let mut added = Vec::new();
    let mut dependents = BTreeSet::new();
    for ((served, _), fragment) in jobs.iter().zip(built) {
        let old = match fragment {
            Some((fragment, targets)) => {
                if targets.dependent {
                    dependents.insert(served.clone());
                } else {
                    parts.unwatch(served);
                }
                added.push(fragment.clone());
                parts.fragments.insert(served.clone(), fragment)
            }
            None => {
                parts.unwatch(served);
                parts.fragments.remove(served.as_ref())
            }
        };
        removed.extend(old);
    }
    // Services whose in-domain targets may answer differently: the re-encoded ones with such
    // targets, and those that looked at a name whose fragment changed.
    for fragment in removed.iter().chain(&added) {
        for key in fragment.keys() {
            dependents.extend(parts.watchers_of(key));
        }
    }
    let derive = |old_zone: &Zone| {
        jobs.len() * DERIVE_RATIO <= parts.fragments.len()
            || parts.fragments.len() <= SMALL_ZONE
            || old_zone.name_count() == 0
    };
    let derived = old_zone.is_some_and(derive);
    let zone = match old_zone {
        Some(old_zone) if derived => {
            let removed: Vec<&Fragment> = removed.iter().map(AsRef::as_ref).collect();
            let added: Vec<&Fragment> = added.iter().map(AsRef::as_ref).collect();
            zone.build_over(old_zone, &removed, &added)?
        }
        _ => {
            let all: Vec<&Fragment> = parts.fragments.values().map(AsRef::as_ref).collect();
            zone.build_with(&all)?
        }
    };
    let zone = if dependents.is_empty() {
        zone
    } else {
        resolve_targets(&ctx, state, &mut parts, zone, &dependents)?
    };
    let stats = SnapshotStats {
        services: state.services.len(),
        instances: parts.instances,
        passing_instances: parts.passing,
    };
    Ok((zone, stats, parts.skipped(), parts, derived))
}

/// The second pass over the services with in-domain targets (`targets`): each encoded again
/// with its targets looked up in `zone` (every other service's answers as this build gives
/// them), and the zone derived with those fragments in place of the first pass's.
fn resolve_targets(
    ctx: &Context<'_>,
    state: &RegistryState,
    parts: &mut Parts,
    zone: Zone,
    dependents: &BTreeSet<Arc<str>>,
) -> Result<Zone, BuildError> {
    let jobs: Vec<(Arc<str>, Vec<&HealthEntry>)> = dependents
        .iter()
        .filter(|served| parts.fragments.contains_key(served.as_ref()))
        .map(|served| (served.clone(), parts.entries_of(served, state)))
        .collect();
    let apex_key = zone.apex_key().to_vec();
    let built = in_parallel(&jobs, |(served, entries)| {
        ctx.service_fragment(served, entries, &apex_key, Some(&zone))
    });
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for ((served, _), (fragment, targets)) in jobs.iter().zip(built) {
        removed.extend(parts.fragments.insert(served.clone(), fragment.clone()));
        added.push(fragment);
        if targets.dependent {
            parts.watch(served, targets.watched);
        } else {
            parts.unwatch(served);
        }
    }
    let removed: Vec<&Fragment> = removed.iter().map(AsRef::as_ref).collect();
    let added: Vec<&Fragment> = added.iter().map(AsRef::as_ref).collect();
    let builder = apex(ctx.domain, zone.serial(), ctx.options)?;
    Ok(builder.build_over(&zone, &removed, &added)?)
}

struct Context<'a> {
    domain: &'a Name,
    local_dc: &'a str,
    options: &'a ZoneOptions,
}

impl Context<'_> {
    /// The answers of one registry service: its served instances grouped by datacenter, in
    /// one stable order on every replica (node, instance ID, port).
    /// `service` is the lower-cased name all `entries` serve (`names::served_by`).
    /// In-domain hostname targets are looked up in `over` (see [`Targets`]).
    fn service_fragment<'s>(
        &'s self,
        service: &str,
        entries: &[&HealthEntry],
        apex_key: &[u8],
        over: Option<&'s Zone>,
    ) -> (Arc<Fragment>, Targets<'s>) {
        let mut targets = Targets::new(self.domain, over);
        let mut groups: BTreeMap<(String, String), Vec<Served<'_>>> = BTreeMap::new();
        let health = self.options.health;
        for entry in entries.iter().copied().filter(|entry| health.serves(entry)) {
            let datacenter = datacenter_of(&entry.node, self.local_dc);
            groups
                .entry((datacenter.clone(), service.to_string()))
                .or_default()
                .push(Served { entry, datacenter });
        }
        let mut builder = FragmentBuilder::new();
        for ((datacenter, service), mut instances) in groups {
            instances.sort_by(|a, b| {
                let key = |s: &Served<'_>| {
                    (
                        s.entry.node.node.to_ascii_lowercase(),
                        s.entry.service.id.clone(),
                        s.entry.service.port,
                    )
                };
                key(a).cmp(&key(b))
            });
            self.add_service(
                &mut builder,
                &mut targets,
                &datacenter,
                &service,
                &instances,
            );
        }
        // The nodes of every instance, whatever its health (Consul does not filter nodes).
        // A node shared with other services is encoded in each of their fragments; the zone
        // counts them, and when services disagree about a node (one service's answer seen
        // before another's) picks by content (`zone::index`), so answers depend on the state
        // alone, not on the order of builds.
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        for entry in entries
            .iter()
            .copied()
            .filter(|entry| is_label(&entry.node.node))
        {
            let datacenter = datacenter_of(&entry.node, self.local_dc);
            if seen.insert((
                datacenter.clone(),
                entry.node.node.to_ascii_lowercase().into(),
            )) {
                self.add_node(&mut builder, &mut targets, &datacenter, &entry.node);
            }
        }
        self.add_pointers(&mut builder, service, entries);
        (Arc::new(builder.finish(apex_key)), targets)
    }

    /// Names under `<kind>.<dc>.<domain>`, plus `<kind>.<domain>` for the local datacenter.
    fn names(&self, labels: &[&str], kind: &str, datacenter: &str) -> Vec<Name> {
        let mut suffixes = vec![format!("{kind}.{datacenter}")];
        if datacenter == self.local_dc {
            suffixes.push(kind.to_string());
        }
        suffixes
            .iter()
            .filter_map(|suffix| {
                let text = if labels.is_empty() {
                    suffix.clone()
                } else {
                    format!("{}.{suffix}", labels.join("."))
                };
                Name::from_ascii(text).ok()?.append_domain(self.domain).ok()
            })
            .collect()
    }

    fn add_service(
        &self,
        zone: &mut FragmentBuilder,
        targets: &mut Targets<'_>,
        datacenter: &str,
        service: &str,
        instances: &[Served<'_>],
    ) {
        // Owners grouped by the instances they serve: the plain and RFC 2782 names, with and
        // without the datacenter label, and every tag that all instances carry, share one
        // answer per type.
        let mut sets: BTreeMap<Vec<usize>, Vec<Name>> = BTreeMap::new();
        let rfc_service = format!("_{service}");
        let all: Vec<usize> = (0..instances.len()).collect();
        let owners = sets.entry(all).or_default();
        owners.extend(self.names(&[service], "service", datacenter));
        owners.extend(self.names(&[&rfc_service, "_tcp"], "service", datacenter));

        // Every tag with the instances carrying it, in one pass: a registry can have as many
        // tags as instances.
        let mut tags: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, served) in instances.iter().enumerate() {
            for tag in served.entry.service.tags.iter().filter(|tag| is_label(tag)) {
                let tagged = tags.entry(tag.to_ascii_lowercase().into()).or_default();
                if tagged.last() != Some(&index) {
                    tagged.push(index);
                }
            }
        }
        for (tag, tagged) in tags {
            let owners = sets.entry(tagged).or_default();
            owners.extend(self.names(&[&tag, service], "service", datacenter));
            if tag != "tcp" && !tag.contains('.') {
                let rfc_tag = format!("_{tag}");
                owners.extend(self.names(&[&rfc_service, &rfc_tag], "service", datacenter));
            }
        }
        // Every name of the service, tag and RFC 2782 forms included, takes the service's TTL,
        // as Consul looks the TTL up by the service a query names.
        let ttl = self.options.service_ttl_for(service);
        for (members, owners) in sets {
            let served: Vec<&Served<'_>> = members.iter().map(|&i| &instances[i]).collect();
            self.add_instance_set(zone, targets, &owners, &served, ttl);
        }
    }

    /// A, AAAA and SRV answers for one set of instances, shared by all `owners`.
    fn add_instance_set(
        &self,
        zone: &mut FragmentBuilder,
        targets: &mut Targets<'_>,
        owners: &[Name],
        instances: &[&Served<'_>],
        ttl: u32,
    ) {
        let Some(owner) = owners.iter().max_by_key(|owner| owner.len()) else {
            return;
        };
        {
            for (rtype, family) in [(RecordType::A, Family::V4), (RecordType::AAAA, Family::V6)] {
                let mut records: Vec<Record> = Vec::new();
                let mut addresses: FxHashSet<IpAddr> = FxHashSet::default();
                let mut first_host: Option<String> = None;
                for served in instances {
                    match service_address(served.entry, family) {
                        Some((Address::Ip(ip), _))
                            if family_matches(ip, family) && addresses.insert(ip) =>
                        {
                            // Each address once, in first-seen order.
                            records.push(ip_record(owner, ttl, ip));
                        }
                        Some((Address::Host(host), _)) if first_host.is_none() => {
                            first_host = Some(host);
                        }
                        _ => {}
                    }
                }
                if records.is_empty() {
                    // Consul answers with a CNAME only when no instance has an address of the
                    // asked family, and then only the first hostname instance's.
                    if let Some(target) = first_host.and_then(|h| fqdn(&h)) {
                        // A name inside the domain answers its records too, as Consul.
                        let chased = targets.resolve(&target, rtype, owners);
                        records.push(Record::from_rdata(
                            owner.clone(),
                            ttl,
                            RData::CNAME(CNAME(target)),
                        ));
                        records.extend(chased);
                    }
                }
                if !records.is_empty() {
                    zone.add_shared(owners, rtype, &records, &[]);
                }
            }

            let mut srv_records: Vec<Record> = Vec::new();
            let mut additionals: Vec<Record> = Vec::new();
            let mut glued: FxHashSet<(Name, IpAddr)> = FxHashSet::default();
            let mut meta_glued: FxHashSet<Name> = FxHashSet::default();
            let mut seen: BTreeSet<(String, String, u16)> = BTreeSet::new();
            for served in instances {
                let Some((address, origin)) = service_address(served.entry, Family::Any) else {
                    continue;
                };
                let port = served.entry.service.port;
                let address_text = match &address {
                    Address::Ip(ip) => ip.to_string(),
                    Address::Host(host) => host.clone(),
                };
                let dedup = (
                    served.entry.node.node.to_ascii_lowercase().into(),
                    address_text,
                    port,
                );
                if !seen.insert(dedup) {
                    continue;
                }
                let target = match &address {
                    Address::Ip(ip) => {
                        let node_form = origin == Origin::Node
                            && served.entry.node.address.parse::<IpAddr>().ok() == Some(*ip);
                        let target = if node_form {
                            self.node_name(&served.entry.node.node, &served.datacenter)
                        } else {
                            self.addr_name(*ip, &served.datacenter)
                        };
                        let Some(target) = target else { continue };
                        if glued.insert((target.clone(), *ip)) {
                            additionals.push(ip_record(&target, ttl, *ip));
                        }
                        if !node_form {
                            self.add_addr_name(zone, &target, *ip);
                        }
                        target
                    }
                    Address::Host(host) => {
                        let Some(target) = fqdn(host) else { continue };
                        // A name inside the domain: its records, as the registry serves them.
                        for rtype in [RecordType::A, RecordType::AAAA] {
                            for record in targets.resolve(&target, rtype, &[]) {
                                if !additionals.contains(&record) {
                                    additionals.push(record);
                                }
                            }
                        }
                        target
                    }
                };
                if self.options.srv_node_meta_txt {
                    // Consul adds the node's TXT whatever the target's form; once per node here.
                    let node = &served.entry.node;
                    if let Some(owner) = self.node_name(&node.node, &served.datacenter) {
                        if is_label(&node.node) && meta_glued.insert(owner.clone()) {
                            additionals.extend(node_meta_records(&owner, ttl, node));
                        }
                    }
                }
                let weight = srv_weight(served.entry);
                srv_records.push(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::SRV(SRV::new(1, weight, port, target)),
                ));
            }
            if !srv_records.is_empty() {
                zone.add_shared(owners, RecordType::SRV, &srv_records, &additionals);
            }
        }
    }

    fn add_node(
        &self,
        zone: &mut FragmentBuilder,
        targets: &mut Targets<'_>,
        datacenter: &str,
        node: &Node,
    ) {
        let ttl = self.options.node_ttl;
        let owners = self.names(&[node.node.as_str()], "node", datacenter);
        let Some(owner) = owners.iter().max_by_key(|owner| owner.len()) else {
            return;
        };
        for (rtype, family) in [(RecordType::A, Family::V4), (RecordType::AAAA, Family::V6)] {
            let records = match node_address(node, family) {
                Some(Address::Ip(ip)) if family_matches(ip, family) => {
                    vec![ip_record(owner, ttl, ip)]
                }
                Some(Address::Host(host)) => match fqdn(&host) {
                    Some(target) => {
                        let chased = targets.resolve(&target, rtype, &owners);
                        let cname = RData::CNAME(CNAME(target));
                        let mut records = vec![Record::from_rdata(owner.clone(), ttl, cname)];
                        records.extend(chased);
                        records
                    }
                    None => continue,
                },
                _ => continue,
            };
            zone.add_shared(&owners, rtype, &records, &[]);
        }
        let meta = node_meta_records(owner, ttl, node);
        if !meta.is_empty() {
            zone.add_shared(&owners, RecordType::TXT, &meta, &[]);
        }
    }

    /// `<hex>.addr.<dc>.<domain>` answers with the address it encodes.
    fn add_addr_name(&self, zone: &mut FragmentBuilder, owner: &Name, ip: IpAddr) {
        let rtype = match ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::AAAA,
        };
        if !zone.has(owner, rtype) {
            zone.add_answer(
                owner,
                rtype,
                &[ip_record(owner, self.options.node_ttl, ip)],
                &[],
            );
        }
    }

    fn node_name(&self, node: &str, datacenter: &str) -> Option<Name> {
        Name::from_ascii(format!("{node}.node.{datacenter}"))
            .ok()?
            .append_domain(self.domain)
            .ok()
    }

    fn service_name(&self, service: &str, datacenter: &str) -> Option<Name> {
        Name::from_ascii(format!("{service}.service.{datacenter}"))
            .ok()?
            .append_domain(self.domain)
            .ok()
    }

    fn addr_name(&self, ip: IpAddr, datacenter: &str) -> Option<Name> {
        Name::from_ascii(format!("{}.addr.{datacenter}", addr_label(ip)))
            .ok()?
            .append_domain(self.domain)
            .ok()
    }
}
