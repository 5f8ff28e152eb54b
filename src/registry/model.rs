//! The registry's data as Consul's HTTP API spells it, and the state the sync engine hands on.
//!
//! These are the wire types of `GET /v1/health/service/<name>` (field names exactly as Consul's
//! API documents them) plus [`RegistryState`], the one value that flows from a registry source to
//! [`crate::snapshot::Snapshot::build`]. Unknown fields are ignored and absent ones default, so a
//! newer Consul with more fields still parses.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::small_map::SmallMap;

/// One entry of `GET /v1/health/service/<name>`: an instance, its node and every check on both.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthEntry {
    /// The node the instance runs on.
    pub node: Node,
    /// The service instance.
    pub service: NodeService,
    /// Node-level checks (`ServiceID` empty) and the instance's own checks, mixed.
    #[serde(deserialize_with = "null_as_default")]
    pub checks: Vec<HealthCheck>,
}

/// Consul's `structs.Node` as it appears inside a health entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    /// Node ID (a UUID); informational.
    #[serde(rename = "ID")]
    pub id: String,
    /// Node name, as registered (case kept).
    pub node: String,
    /// Node address: an IP, or a hostname.
    pub address: String,
    /// The node's datacenter.
    pub datacenter: String,
    /// `lan`, `lan_ipv4`, `lan_ipv6`, `wan`, ... -> address.
    #[serde(deserialize_with = "null_as_default")]
    pub tagged_addresses: SmallMap<String>,
    /// Node metadata.
    #[serde(deserialize_with = "null_as_default")]
    pub meta: SmallMap<String>,
    /// Raft index at creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// Consul's `structs.NodeService`: one registered instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeService {
    /// `""` for ordinary services, else `connect-proxy`, `mesh-gateway`, ...
    pub kind: String,
    /// Instance ID, unique on its node.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name.
    pub service: String,
    /// Tags; `null` reads as empty.
    #[serde(deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    /// Service address; empty means "use the node address".
    pub address: String,
    /// `lan_ipv4`, `lan_ipv6`, `wan`, ... -> `{Address, Port}`.
    #[serde(deserialize_with = "null_as_default")]
    pub tagged_addresses: SmallMap<ServiceAddress>,
    /// Service metadata; `null` reads as empty.
    #[serde(deserialize_with = "null_as_default")]
    pub meta: SmallMap<String>,
    /// Port the instance listens on.
    pub port: u16,
    /// SRV weights; absent means `{Passing: 1, Warning: 1}` as Consul stores it.
    #[serde(deserialize_with = "null_as_default")]
    pub weights: Weights,
    /// Raft index at creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// A tagged service address: `{"Address": "...", "Port": N}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceAddress {
    /// IP or hostname.
    pub address: String,
    /// Port.
    pub port: u16,
}

/// SRV weights by health state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Weights {
    /// Weight while every check passes.
    pub passing: u32,
    /// Weight while some check warns (unused: snapdns serves passing instances only).
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

/// Consul's `structs.HealthCheck`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthCheck {
    /// Node the check runs on.
    pub node: String,
    /// Check ID; `_node_maintenance` and `_service_maintenance:<id>` mark maintenance.
    #[serde(rename = "CheckID")]
    pub check_id: String,
    /// Human-readable name.
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    /// Empty for node-level checks.
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    /// Empty for node-level checks.
    pub service_name: String,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// Everything a registry source knows at one moment: the input of a snapshot build.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RegistryState {
    /// The registry's index for this state (`X-Consul-Index`), 0 when the source has none.
    pub index: u64,
    /// Service name -> every entry of `GET /v1/health/service/<name>` (unfiltered). Shared, so
    /// that a state derived from another (one service changed) copies pointers, not entries,
    /// and comparing the two skips every service they share.
    pub services: BTreeMap<String, Entries>,
}

/// One service's entries, shared between the states that hold them unchanged.
pub type Entries = Arc<Vec<HealthEntry>>;

impl RegistryState {
    /// Total number of instances over all services.
    pub fn instance_count(&self) -> usize {
        self.services.values().map(|entries| entries.len()).sum()
    }
}

impl HealthEntry {
    /// True when every check on the node and on the instance is `passing` (no checks: passing).
    ///
    /// Maintenance is a critical check in Consul, so it fails this too.
    pub fn is_passing(&self) -> bool {
        self.checks.iter().all(|check| check.status == "passing")
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
