//! The registry's data as Consul's HTTP API spells it, and the state the sync engine hands on.
//!
//! These are the wire types of `GET /v1/health/service/<name>` (field names exactly as Consul's
//! API documents them) plus [`RegistryState`], the one value that flows from a registry source to
//! [`crate::snapshot::Snapshot::build`]. Unknown fields are ignored and absent ones default, so a
//! newer Consul with more fields still parses.
//!
//! The state is held for the life of the process (100,000 instances and more), so it keeps
//! only what DNS, the sync, persistence and explaining an answer need, and keeps it compactly
//! (docs/PERFORMANCE.md, "Registry state in memory"): strings are [`CompactString`]s (up to 24
//! bytes inline, which covers node names, instance IDs, addresses, tags and check IDs), a node
//! is one [`Arc<Node>`] shared by the entries on it ([`NodeInterner`]), and a check inside an
//! entry ([`EntryCheck`]) does not repeat the node and service of its entry.

use std::sync::Arc;

use compact_str::CompactString;
use imbl::ordmap::DiffItem;
use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use super::entry_serde::StateWire;
use super::nodes::NodeInterner;
use super::small_map::SmallMap;

/// One entry of `GET /v1/health/service/<name>`: an instance, its node and every check on both.
///
/// (De)serialised as Consul spells it (`Node`, `Service`, `Checks` with every check's `Node`,
/// `ServiceID` and `ServiceName`), see `entry_serde.rs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthEntry {
    /// The node the instance runs on, shared with the node's other entries.
    pub node: Arc<Node>,
    /// The service instance.
    pub service: NodeService,
    /// Node-level checks and the instance's own checks, mixed, in Consul's order.
    pub checks: Vec<EntryCheck>,
}

/// Consul's `structs.Node` as it appears inside a health entry.
///
/// Left out: `ID` (a UUID that no DNS name or rule uses), `CreateIndex`, `PeerName`,
/// `Partition`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    /// Node name, as registered (case kept).
    pub node: CompactString,
    /// Node address: an IP, or a hostname.
    pub address: CompactString,
    /// The node's datacenter.
    pub datacenter: CompactString,
    /// `lan`, `lan_ipv4`, `lan_ipv6`, `wan`, ... -> address.
    #[serde(deserialize_with = "null_as_default")]
    pub tagged_addresses: SmallMap<CompactString>,
    /// Node metadata.
    #[serde(deserialize_with = "null_as_default")]
    pub meta: SmallMap<CompactString>,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// Consul's `structs.NodeService`: one registered instance.
///
/// Left out: `CreateIndex`, `EnableTagOverride`, `Proxy`, `Connect`, `PeerName`, `Locality`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeService {
    /// `""` for ordinary services, else `connect-proxy`, `mesh-gateway`, ...
    pub kind: CompactString,
    /// Instance ID, unique on its node.
    #[serde(rename = "ID")]
    pub id: CompactString,
    /// Service name.
    pub service: CompactString,
    /// Tags; `null` reads as empty.
    #[serde(deserialize_with = "null_as_default")]
    pub tags: Vec<CompactString>,
    /// Service address; empty means "use the node address".
    pub address: CompactString,
    /// `lan_ipv4`, `lan_ipv6`, `wan`, ... -> `{Address, Port}`.
    #[serde(deserialize_with = "null_as_default")]
    pub tagged_addresses: SmallMap<ServiceAddress>,
    /// Service metadata; `null` reads as empty.
    #[serde(deserialize_with = "null_as_default")]
    pub meta: SmallMap<CompactString>,
    /// Port the instance listens on.
    pub port: u16,
    /// SRV weights; absent means `{Passing: 1, Warning: 1}` as Consul stores it.
    #[serde(deserialize_with = "null_as_default")]
    pub weights: Weights,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// A tagged service address: `{"Address": "...", "Port": N}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceAddress {
    /// IP or hostname.
    pub address: CompactString,
    /// Port.
    pub port: u16,
}

/// SRV weights by health state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Weights {
    /// Weight while every check passes.
    pub passing: u32,
    /// Weight while some check warns (served only with `--serve-warning`).
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            passing: 1,
            warning: 1,
        }
    }
}

/// Consul's `structs.HealthCheck` as `GET /v1/health/state/any` lists it (one check, with the
/// node and service it belongs to). Left out: `Name`, `Notes`, `Type`, intervals,
/// `Definition`, `CreateIndex`; `Output` is read cut to [`OUTPUT_LIMIT`] bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheck {
    /// Node the check runs on.
    pub node: CompactString,
    /// Check ID; `_node_maintenance` and `_service_maintenance:<id>` mark maintenance.
    #[serde(rename = "CheckID")]
    pub check_id: CompactString,
    /// `passing`, `warning` or `critical`.
    pub status: CheckStatus,
    /// Empty for node-level checks.
    #[serde(rename = "ServiceID")]
    pub service_id: CompactString,
    /// Empty for node-level checks.
    pub service_name: CompactString,
    /// Raft index of the last change.
    pub modify_index: u64,
    /// What the check last printed, cut to [`OUTPUT_LIMIT`] bytes as it is read (never
    /// written: a persisted state keeps it in its [`EntryCheck`]s).
    #[serde(deserialize_with = "bounded_output", skip_serializing)]
    pub output: CompactString,
}

/// The most bytes of a check's `Output` kept (cut at a character boundary): enough to tell an
/// operator why a check fails (`HTTP GET http://10.0.0.1:80/health: 503`), small enough that
/// a registry of failing checks stays small.
pub const OUTPUT_LIMIT: usize = 256;

/// A check inside a [`HealthEntry`]: Consul's `HealthCheck` without the node, service ID and
/// service name, which are the entry's own (a service-level check) or empty (a node-level
/// check) in every entry Consul returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryCheck {
    /// Check ID; `_node_maintenance` and `_service_maintenance:<id>` mark maintenance.
    pub check_id: CompactString,
    /// `passing`, `warning` or `critical`.
    pub status: CheckStatus,
    /// Whether the check is on the node (`ServiceID` empty) or on the instance.
    pub scope: CheckScope,
    /// Raft index of the last change.
    pub modify_index: u64,
    /// The output of a check that is not passing; always empty for a passing one, so that a
    /// registry of passing checks costs what it cost before outputs were kept.
    pub output: CheckOutput,
}

/// The output of a check that is not passing, at most [`OUTPUT_LIMIT`] bytes. One pointer
/// (null when empty): [`EntryCheck`] stays 64 bytes with it (`model::tests`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckOutput(Option<Box<Box<str>>>);

impl CheckOutput {
    /// The output kept for a check in `status`: `output` cut to [`OUTPUT_LIMIT`] bytes when
    /// the check is not passing, nothing when it is.
    pub fn new(status: &CheckStatus, output: &str) -> Self {
        if *status == CheckStatus::Passing || output.is_empty() {
            return Self::default();
        }
        Self(Some(Box::new(truncated(output, OUTPUT_LIMIT).into())))
    }

    /// The output, empty when none was kept.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().map_or("", |output| output)
    }

    /// True when no output was kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// `text` cut to at most `limit` bytes, at a character boundary.
pub fn truncated(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What a check in an entry watches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CheckScope {
    /// The node: `ServiceID` and `ServiceName` are empty; a failing node check fails every
    /// instance on the node.
    #[default]
    Node,
    /// The entry's own instance.
    Service,
}

/// A check's status. Consul sets `passing`, `warning` or `critical` (maintenance is a critical
/// check); any other string is kept as it came, and like `warning` and `critical` it is not
/// passing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "CompactString", into = "CompactString")]
pub enum CheckStatus {
    /// Healthy.
    Passing,
    /// Degraded: served only with `--serve-warning` (Consul's default `only_passing = false`).
    Warning,
    /// Failing, or in maintenance; also Consul's initial status of a new check.
    #[default]
    Critical,
    /// A status Consul does not document, kept for the round trip (boxed twice: one pointer
    /// keeps the status at 16 bytes, which pays for [`EntryCheck::output`]).
    Other(Box<Box<str>>),
}

/// Everything a registry source knows at one moment: the input of a snapshot build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(from = "StateWire")]
pub struct RegistryState {
    /// The registry's index for this state (`X-Consul-Index`), 0 when the source has none.
    pub index: u64,
    /// Service name -> every entry of `GET /v1/health/service/<name>` (unfiltered), in name
    /// order. A persistent map with shared entries, so that a state derived from another (one
    /// service changed) costs O(log n) and copies pointers, not entries, and comparing the two
    /// skips every service they share.
    pub services: OrdMap<String, Entries>,
}

/// One service's entries, shared between the states that hold them unchanged.
pub type Entries = Arc<Vec<HealthEntry>>;

/// A service whose entries differ between two states: its name, old and new entries (`None`
/// where the state does not have it).
pub type ServiceChange<'a> = (&'a str, Option<&'a Entries>, Option<&'a Entries>);

impl RegistryState {
    /// The services whose entries differ from `self` to `next`, in name order. Walks only the
    /// parts of the two maps that are not shared, so after one service changed it costs that
    /// service, not the registry.
    pub fn changes_to<'a>(&'a self, next: &'a Self) -> impl Iterator<Item = ServiceChange<'a>> {
        self.services.diff(&next.services).map(|item| match item {
            DiffItem::Add(name, entries) => (name.as_str(), None, Some(entries)),
            DiffItem::Remove(name, entries) => (name.as_str(), Some(entries), None),
            DiffItem::Update {
                old: (name, old),
                new: (_, new),
            } => (name.as_str(), Some(old), Some(new)),
        })
    }

    /// True when `next` holds the same index and the same entries for every service.
    pub fn same_as(&self, next: &Self) -> bool {
        self.index == next.index && self.changes_to(next).next().is_none()
    }

    /// Total number of instances over all services.
    pub fn instance_count(&self) -> usize {
        self.services.values().map(|entries| entries.len()).sum()
    }

    /// Makes entries on the same node (equal node data) share one [`Node`], and trims spare
    /// capacity: for a state read in one piece (a registry file, a persisted state).
    pub fn share_nodes(&mut self) {
        let mut nodes = NodeInterner::default();
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            if let Some(entries) = self.services.get_mut(&name) {
                nodes.share(Arc::make_mut(entries));
            }
        }
    }
}

impl HealthEntry {
    /// True when every check on the node and on the instance is `passing` (no checks: passing).
    ///
    /// Maintenance is a critical check in Consul, so it fails this too.
    pub fn is_passing(&self) -> bool {
        self.checks
            .iter()
            .all(|check| check.status == CheckStatus::Passing)
    }
}

impl EntryCheck {
    /// Consul's full check, with the node, service ID and service name of `entry`.
    pub fn to_health_check(&self, entry: &HealthEntry) -> HealthCheck {
        let (service_id, service_name) = match self.scope {
            CheckScope::Node => (CompactString::default(), CompactString::default()),
            CheckScope::Service => (entry.service.id.clone(), entry.service.service.clone()),
        };
        HealthCheck {
            node: entry.node.node.clone(),
            check_id: self.check_id.clone(),
            status: self.status.clone(),
            service_id,
            service_name,
            modify_index: self.modify_index,
            output: self.output.as_str().into(),
        }
    }
}

impl From<HealthCheck> for EntryCheck {
    /// The check inside an entry; its node and service are the entry's.
    fn from(check: HealthCheck) -> Self {
        Self {
            output: CheckOutput::new(&check.status, &check.output),
            check_id: check.check_id,
            status: check.status,
            scope: if check.service_id.is_empty() {
                CheckScope::Node
            } else {
                CheckScope::Service
            },
            modify_index: check.modify_index,
        }
    }
}

impl CheckStatus {
    /// The status as Consul spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Passing => "passing",
            Self::Warning => "warning",
            Self::Critical => "critical",
            Self::Other(other) => other,
        }
    }
}

impl From<CompactString> for CheckStatus {
    fn from(status: CompactString) -> Self {
        match status.as_str() {
            "passing" => Self::Passing,
            "warning" => Self::Warning,
            "critical" => Self::Critical,
            other => Self::Other(Box::new(other.into())),
        }
    }
}

impl From<&str> for CheckStatus {
    fn from(status: &str) -> Self {
        CompactString::from(status).into()
    }
}

impl From<CheckStatus> for CompactString {
    fn from(status: CheckStatus) -> Self {
        Self::from(status.as_str())
    }
}

/// A check's `Output` (`null` reads as empty) cut to [`OUTPUT_LIMIT`] bytes as it is read, so
/// a long output costs no more than the bound even while an answer is parsed.
fn bounded_output<'de, D>(deserializer: D) -> Result<CompactString, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Bounded;
    impl serde::de::Visitor<'_> for Bounded {
        type Value = CompactString;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(truncated(text, OUTPUT_LIMIT).into())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(CompactString::default())
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(CompactString::default())
        }
    }
    deserializer.deserialize_any(Bounded)
}

pub(super) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_costs_no_more_for_keeping_the_output_of_failing_ones() {
        // 64 bytes, as before outputs were kept: a registry of passing checks costs the same.
        assert_eq!(std::mem::size_of::<EntryCheck>(), 64);
        assert_eq!(std::mem::size_of::<CheckOutput>(), 8);
    }

    #[test]
    fn only_failing_checks_keep_their_output_cut_at_a_character_boundary() {
        assert!(CheckOutput::new(&CheckStatus::Passing, "HTTP 200 OK").is_empty());
        let long = "é".repeat(200); // 400 bytes, 2 per character
        let kept = CheckOutput::new(&CheckStatus::Critical, &long);
        assert_eq!(kept.as_str().len(), OUTPUT_LIMIT);
        let odd = format!("x{long}");
        let kept = CheckOutput::new(&CheckStatus::Warning, &odd);
        assert_eq!(kept.as_str().len(), OUTPUT_LIMIT - 1);
        let check: HealthCheck = serde_json::from_str(&format!(
            r#"{{"CheckID": "c", "Status": "critical", "Output": "{}"}}"#,
            "a".repeat(10_000)
        ))
        .unwrap();
        assert_eq!(check.output.len(), OUTPUT_LIMIT);
        let check: HealthCheck = serde_json::from_str(r#"{"Output": null}"#).unwrap();
        assert!(check.output.is_empty());
    }
}
