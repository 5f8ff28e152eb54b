//! Why each instance of a service is in DNS answers, or is not: the one account that
//! `snapdns check`, `/v1/explain` and the status page give. It applies the same rules as the
//! build ([`HealthFilter`], the DNS name rules of `names.rs`, Consul's address selection), so
//! what it says is what the zone serves.
//!
//! Not on the query path: it walks a service's entries when an operator asks.

use super::address::{service_address, Address, Family};
use super::health::{worst, HealthFilter, Worst};
use super::names::{is_hostname, is_label};
use crate::registry::{CheckScope, CheckStatus, EntryCheck, HealthEntry, RegistryState};

/// Consul's check ID for a node in maintenance mode.
const NODE_MAINTENANCE: &str = "_node_maintenance";
/// The prefix of Consul's check ID for an instance in maintenance mode.
const SERVICE_MAINTENANCE: &str = "_service_maintenance:";

/// Why one instance is, or is not, in the answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceVerdict<'a> {
    /// The registry key (service name) the entry is listed under.
    pub key: &'a str,
    /// The registry entry.
    pub entry: &'a HealthEntry,
    /// True when the service's A/AAAA/SRV answers include this instance.
    pub served: bool,
    /// Everything noteworthy about the instance: why it is left out, or (when served) what
    /// still deserves a look (a warning check served under `--serve-warning`, a node name
    /// that gets no node record).
    pub reasons: Vec<Reason<'a>>,
}

/// One thing that keeps an instance out of the answers, or that an operator should know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason<'a> {
    /// A check on the node or the instance that is not passing (maintenance excluded).
    Check(&'a EntryCheck),
    /// The node is in maintenance mode.
    NodeMaintenance,
    /// The instance is in maintenance mode.
    ServiceMaintenance,
    /// The service name is not a DNS label: DNS serves no instance of it.
    ServiceNameInvalid,
    /// The node name is not a DNS label: the instance may be served, but the node has no
    /// `<node>.node` name and SRV answers cannot name it.
    NodeNameInvalid,
    /// The address is neither an IP address nor a hostname.
    AddressUnusable,
    /// The name asked filters by a tag (`<tag>.<service>.service`, `_<service>._<tag>`) that the
    /// instance does not carry (compared case-insensitively, as DNS names are).
    TagMissing(&'a str),
    /// Self-preservation serves the instance's last known entry although the registry no
    /// longer serves it (see `source/consul/preserve.rs`): served, and worth a look.
    HeldBySelfPreservation,
}

impl Reason<'_> {
    /// True when this reason alone keeps the instance out of the answers under `health`.
    pub fn excludes(&self, health: HealthFilter) -> bool {
        match self {
            Self::Check(check) => {
                check.status != CheckStatus::Warning || health == HealthFilter::PassingOnly
            }
            Self::NodeMaintenance
            | Self::ServiceMaintenance
            | Self::ServiceNameInvalid
            | Self::AddressUnusable
            | Self::TagMissing(_) => true,
            Self::NodeNameInvalid | Self::HeldBySelfPreservation => false,
        }
    }

    /// One line for an operator, naming the check, node or value concerned.
    pub fn describe(&self, entry: &HealthEntry) -> String {
        match self {
            Self::Check(check) => {
                let on = match check.scope {
                    CheckScope::Node => format!("node {}", entry.node.node),
                    CheckScope::Service => format!("instance {}", entry.service.id),
                };
                // One line, whatever the check printed: its words, single-spaced.
                let words: Vec<&str> = check.output.as_str().split_whitespace().collect();
                let output = if words.is_empty() {
                    String::new()
                } else {
                    format!(": {}", words.join(" "))
                };
                format!(
                    "check {} on {} is {}{}",
                    check.check_id,
                    on,
                    check.status.as_str(),
                    output
                )
            }
            Self::NodeMaintenance => format!("node {} is in maintenance", entry.node.node),
            Self::ServiceMaintenance => {
                format!("instance {} is in maintenance", entry.service.id)
            }
            Self::ServiceNameInvalid => {
                format!(
                    "service name {:?} is not a DNS label",
                    entry.service.service
                )
            }
            Self::NodeNameInvalid => {
                format!("node name {:?} is not a DNS label", entry.node.node)
            }
            Self::AddressUnusable => "address is neither an IP address nor a hostname".into(),
            Self::TagMissing(tag) => format!("instance lacks the tag {tag:?} the name asks for"),
            Self::HeldBySelfPreservation => {
                "held by self-preservation: served from its last known entry although the registry no longer serves it".into()
            }
        }
    }

    /// A short name for the kind of reason, for JSON readers (`check`, `node-maintenance`...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Check(_) => "check",
            Self::NodeMaintenance => "node-maintenance",
            Self::ServiceMaintenance => "service-maintenance",
            Self::ServiceNameInvalid => "service-name-invalid",
            Self::NodeNameInvalid => "node-name-invalid",
            Self::AddressUnusable => "address-unusable",
            Self::TagMissing(_) => "tag-filter",
            Self::HeldBySelfPreservation => "held-by-self-preservation",
        }
    }
}

impl<'a> InstanceVerdict<'a> {
    /// Applies the tag filter of a name that asks for `tag`: an instance without it (compared
    /// case-insensitively) is not in that name's answers.
    pub fn filter_tag(&mut self, tag: &'a str) {
        let carries = self
            .entry
            .service
            .tags
            .iter()
            .any(|t| t.eq_ignore_ascii_case(tag));
        if !carries {
            self.reasons.push(Reason::TagMissing(tag));
            self.served = false;
        }
    }

    /// Marks the instance as held by self-preservation: the published state serves its last
    /// known entry, whatever the registry says now.
    pub fn hold(&mut self) {
        self.reasons.push(Reason::HeldBySelfPreservation);
    }
}

/// The verdict on every instance of the service DNS names `service` (case-insensitive: the
/// entries whose `Service.Service`, or registry key when that is empty, matches), in registry
/// order. Empty when the state has no such service.
pub fn service_verdicts<'a>(
    state: &'a RegistryState,
    health: HealthFilter,
    service: &str,
) -> Vec<InstanceVerdict<'a>> {
    let mut verdicts = Vec::new();
    let exact = state.services.get_key_value(service);
    // Entries almost always sit under their own name; another key (other case, or a key that
    // differs from the entries' name) is rare, and this is not the query path.
    let others = state
        .services
        .iter()
        .filter(|(key, _)| Some(key.as_str()) != exact.map(|(k, _)| k.as_str()));
    for (key, entries) in exact.into_iter().chain(others) {
        for entry in entries.iter() {
            let name = entry_service_name(key, entry);
            if name.eq_ignore_ascii_case(service) {
                verdicts.push(instance_verdict(key, entry, health));
            }
        }
    }
    verdicts
}

/// The verdict on one entry listed under registry key `key`.
pub fn instance_verdict<'a>(
    key: &'a str,
    entry: &'a HealthEntry,
    health: HealthFilter,
) -> InstanceVerdict<'a> {
    let mut reasons = Vec::new();
    if !is_label(entry_service_name(key, entry)) {
        reasons.push(Reason::ServiceNameInvalid);
    }
    for check in &entry.checks {
        if check.status == CheckStatus::Passing {
            continue;
        }
        if check.check_id == NODE_MAINTENANCE {
            reasons.push(Reason::NodeMaintenance);
        } else if check.check_id.starts_with(SERVICE_MAINTENANCE) {
            reasons.push(Reason::ServiceMaintenance);
        } else {
            reasons.push(Reason::Check(check));
        }
    }
    if !is_label(&entry.node.node) {
        reasons.push(Reason::NodeNameInvalid);
    }
    if let Some((Address::Host(host), _)) = service_address(entry, Family::Any) {
        if !is_hostname(&host) {
            reasons.push(Reason::AddressUnusable);
        }
    }
    let served =
        reasons.iter().all(|reason| !reason.excludes(health)) && (worst(entry) != Worst::Failing);
    InstanceVerdict {
        key,
        entry,
        served,
        reasons,
    }
}

/// The name DNS serves an entry under: `Service.Service`, or the registry key when empty.
fn entry_service_name<'a>(key: &'a str, entry: &'a HealthEntry) -> &'a str {
    if entry.service.service.is_empty() {
        key
    } else {
        entry.service.service.as_str()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::registry::Node;

    fn entry(service: &str, node: &str, address: &str, checks: &[(&str, &str)]) -> HealthEntry {
        let mut entry = HealthEntry {
            node: Arc::new(Node {
                node: node.into(),
                address: "10.0.0.1".into(),
                ..Node::default()
            }),
            ..HealthEntry::default()
        };
        entry.service.service = service.into();
        entry.service.id = format!("{service}-{node}").into();
        entry.service.address = address.into();
        entry.checks = checks
            .iter()
            .map(|(id, status)| EntryCheck {
                check_id: (*id).into(),
                status: (*status).into(),
                scope: if id.starts_with("service:") {
                    CheckScope::Service
                } else {
                    CheckScope::Node
                },
                modify_index: 1,
                output: crate::registry::CheckOutput::new(
                    &(*status).into(),
                    &format!("{id} says {status}"),
                ),
            })
            .collect();
        entry
    }

    fn state(entries: Vec<(&str, HealthEntry)>) -> RegistryState {
        let mut state = RegistryState::default();
        for (key, entry) in entries {
            let mut list = state
                .services
                .get(key)
                .map(|e| e.as_ref().clone())
                .unwrap_or_default();
            list.push(entry);
            state.services.insert(key.to_string(), Arc::new(list));
        }
        state
    }

    #[test]
    fn every_reason_is_named_and_only_the_excluding_ones_keep_an_instance_out() {
        let state = state(vec![
            (
                "web",
                entry("web", "n1", "10.0.0.1", &[("serfHealth", "passing")]),
            ),
            ("web", entry("web", "n2", "", &[("service:web", "warning")])),
            ("web", entry("web", "n3", "", &[("serfHealth", "critical")])),
            (
                "web",
                entry("web", "n4", "", &[("_node_maintenance", "critical")]),
            ),
            (
                "web",
                entry(
                    "web",
                    "n5",
                    "",
                    &[("_service_maintenance:web-n5", "critical")],
                ),
            ),
            ("web", entry("web", "bad_node", "", &[])),
            ("web", entry("web", "n7", "bad host", &[])),
            ("WEB", entry("Web", "n8", "", &[])),
            ("other", entry("other", "n9", "", &[])),
        ]);
        let verdicts = service_verdicts(&state, HealthFilter::PassingOnly, "web");
        let summary: Vec<(&str, bool, Vec<String>)> = verdicts
            .iter()
            .map(|v| {
                (
                    v.entry.node.node.as_str(),
                    v.served,
                    v.reasons.iter().map(|r| r.describe(v.entry)).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("n1", true, vec![]),
                (
                    "n2",
                    false,
                    vec![
                        "check service:web on instance web-n2 is warning: service:web says warning"
                            .into()
                    ]
                ),
                (
                    "n3",
                    false,
                    vec![
                        "check serfHealth on node n3 is critical: serfHealth says critical".into()
                    ]
                ),
                ("n4", false, vec!["node n4 is in maintenance".into()]),
                (
                    "n5",
                    false,
                    vec!["instance web-n5 is in maintenance".into()]
                ),
                (
                    "bad_node",
                    true,
                    vec!["node name \"bad_node\" is not a DNS label".into()]
                ),
                (
                    "n7",
                    false,
                    vec!["address is neither an IP address nor a hostname".into()]
                ),
                ("n8", true, vec![]),
            ]
        );
        let warning = service_verdicts(&state, HealthFilter::PassingOrWarning, "web");
        assert!(
            warning[1].served,
            "a warning instance is served with --serve-warning"
        );
        assert!(service_verdicts(&state, HealthFilter::PassingOnly, "nope").is_empty());

        let mut tagged = service_verdicts(&state, HealthFilter::PassingOnly, "web");
        let mut first = tagged.remove(0);
        first.filter_tag("primary");
        assert!(!first.served);
        assert_eq!(first.reasons, vec![Reason::TagMissing("primary")]);
        first.hold();
        assert!(!Reason::HeldBySelfPreservation.excludes(HealthFilter::PassingOnly));
    }

    #[test]
    fn a_service_name_that_is_not_a_label_is_never_served() {
        let state = state(vec![("v1.web", entry("v1.web", "n1", "", &[]))]);
        let verdicts = service_verdicts(&state, HealthFilter::PassingOnly, "v1.web");
        assert_eq!(verdicts.len(), 1);
        assert!(!verdicts[0].served);
        assert_eq!(verdicts[0].reasons, vec![Reason::ServiceNameInvalid]);
    }
}
