//! Consul's wire types (`structs.Node`, `structs.NodeService`, `structs.HealthCheck`), typed so
//! that a million instances fit in memory and serialise in Go's field order (reference §7.3).
//! Unknown input fields are dropped; maps serialise with sorted keys, as Go's encoding/json does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// `structs.Node`, as `/v1/catalog/nodes` and the `Node` of a health entry show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    /// Node UUID.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Node name.
    pub node: String,
    /// Node address.
    #[serde(default)]
    pub address: String,
    /// Datacenter; empty means the stand-in's `--datacenter`.
    #[serde(default)]
    pub datacenter: String,
    /// Enterprise partition (omitempty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    /// Cluster peer (omitempty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_name: String,
    /// `lan`, `wan`, ... addresses.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tagged_addresses: BTreeMap<String, String>,
    /// Node metadata; `null` stays `null`.
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    /// Locality (omitempty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Value>,
    /// Raft index of creation.
    #[serde(default)]
    pub create_index: u64,
    /// Raft index of the last change.
    #[serde(default)]
    pub modify_index: u64,
}

/// `structs.Weights`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight while passing.
    pub passing: i64,
    /// Weight while warning.
    pub warning: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            passing: 1,
            warning: 1,
        }
    }
}

/// `structs.NodeService`: one registered service instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    /// `connect-proxy`, ...; omitted for ordinary services.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Instance ID.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Service name.
    #[serde(default)]
    pub service: String,
    /// Tags (`null` is sent as `[]`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    /// Service address; empty means the node's.
    #[serde(default)]
    pub address: String,
    /// `lan_ipv4` -> `{Address, Port}` (omitempty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tagged_addresses: Option<BTreeMap<String, Value>>,
    /// Metadata; `null` stays `null`.
    #[serde(default)]
    pub meta: Option<BTreeMap<String, String>>,
    /// Port (omitempty).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: u64,
    /// Unix socket path (omitempty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// DNS SRV weights.
    #[serde(default)]
    pub weights: Weights,
    /// Anti-entropy tag override flag.
    #[serde(default)]
    pub enable_tag_override: bool,
    /// Locality (omitempty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Value>,
    /// Connect proxy config; `None` is Consul's empty `{"Mode":"","MeshGateway":{},"Expose":{}}`.
    #[serde(default, serialize_with = "proxy_or_default")]
    pub proxy: Option<Box<Value>>,
    /// Connect config; `None` is `{}`.
    #[serde(default, serialize_with = "object_or_empty")]
    pub connect: Option<Box<Value>>,
    /// Cluster peer (always present).
    #[serde(default)]
    pub peer_name: String,
    /// Raft index of creation.
    #[serde(default)]
    pub create_index: u64,
    /// Raft index of the last change.
    #[serde(default)]
    pub modify_index: u64,
}

/// `structs.HealthCheck`: a node check (`ServiceID` empty) or a service check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    /// Node the check runs on.
    #[serde(default)]
    pub node: String,
    /// Check ID, unique per node.
    #[serde(rename = "CheckID", default)]
    pub check_id: String,
    /// Human name.
    #[serde(default)]
    pub name: String,
    /// `passing`, `warning` or `critical`.
    #[serde(default)]
    pub status: String,
    /// Notes.
    #[serde(default)]
    pub notes: String,
    /// Last output.
    #[serde(default)]
    pub output: String,
    /// Instance the check belongs to; empty for node checks.
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    /// Service name of that instance.
    #[serde(default)]
    pub service_name: String,
    /// Tags of that instance (`null` is sent as `[]`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub service_tags: Vec<String>,
    /// `http`, `tcp`, `ttl`, ... or empty.
    #[serde(default)]
    pub r#type: String,
    /// Duration string or empty.
    #[serde(default)]
    pub interval: String,
    /// Duration string or empty.
    #[serde(default)]
    pub timeout: String,
    /// Exposed port.
    #[serde(default)]
    pub exposed_port: u64,
    /// Cluster peer (omitempty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_name: String,
    /// Check definition; `None` is `{}`.
    #[serde(default, serialize_with = "object_or_empty")]
    pub definition: Option<Box<Value>>,
    /// Raft index of creation.
    #[serde(default)]
    pub create_index: u64,
    /// Raft index of the last change.
    #[serde(default)]
    pub modify_index: u64,
}

/// One `/v1/health/service` entry as given to `--state` or `PUT /_standin/service/<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EntryIn {
    /// The node.
    pub node: Node,
    /// The instance.
    pub service: Service,
    /// Node and service checks, mixed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub checks: Vec<Check>,
}

/// A borrowed health entry for serialisation: node checks first, then the instance's.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EntryOut<'a> {
    pub(crate) node: &'a Node,
    pub(crate) service: &'a Service,
    pub(crate) checks: Chain<'a>,
}

/// Two check slices serialised as one JSON array.
pub(crate) struct Chain<'a>(pub(crate) &'a [Check], pub(crate) &'a [Check]);

impl Serialize for Chain<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().chain(self.1))
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn proxy_or_default<S: Serializer>(v: &Option<Box<Value>>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[allow(non_snake_case)]
    struct Empty {
        Mode: &'static str,
        MeshGateway: BTreeMap<(), ()>,
        Expose: BTreeMap<(), ()>,
    }
    match v {
        Some(v) => v.serialize(s),
        None => Empty {
            Mode: "",
            MeshGateway: BTreeMap::new(),
            Expose: BTreeMap::new(),
        }
        .serialize(s),
    }
}

fn object_or_empty<S: Serializer>(v: &Option<Box<Value>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => v.serialize(s),
        None => s.collect_map(std::iter::empty::<((), ())>()),
    }
}
