//! Consul's wire types (`structs.Node`, `structs.NodeService`, `structs.HealthCheck`), typed so
//! that a million instances fit in memory and serialise in Go's field order (reference §7.3).
//! Unknown input fields are dropped; maps serialise with sorted keys, as Go's encoding/json does.
//! Strings are `Arc<str>` so a generated registry shares its repeated values ("passing", tags,
//! the service name) instead of holding a million copies.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// A shared immutable string.
pub type Text = Arc<str>;

/// `structs.Node`, as `/v1/catalog/nodes` and the `Node` of a health entry show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    /// Node UUID.
    #[serde(rename = "ID", default)]
    pub id: Text,
    /// Node name.
    pub node: Text,
    /// Node address.
    #[serde(default)]
    pub address: Text,
    /// Datacenter; empty means the stand-in's `--datacenter`.
    #[serde(default)]
    pub datacenter: Text,
    /// Enterprise partition (omitempty).
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub partition: Text,
    /// Cluster peer (omitempty).
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub peer_name: Text,
    /// `lan`, `wan`, ... addresses.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tagged_addresses: Arc<BTreeMap<Text, Text>>,
    /// Node metadata; `null` stays `null`.
    #[serde(default)]
    pub meta: Option<Arc<BTreeMap<Text, Text>>>,
    /// Locality (omitempty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Box<Value>>,
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
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub kind: Text,
    /// Instance ID.
    #[serde(rename = "ID", default)]
    pub id: Text,
    /// Service name.
    #[serde(default)]
    pub service: Text,
    /// Tags (`null` is sent as `[]`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Arc<[Text]>,
    /// Service address; empty means the node's.
    #[serde(default)]
    pub address: Text,
    /// `lan_ipv4` -> `{Address, Port}` (omitempty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tagged_addresses: Option<Box<BTreeMap<Text, Value>>>,
    /// Metadata; `null` stays `null`.
    #[serde(default)]
    pub meta: Option<Arc<BTreeMap<Text, Text>>>,
    /// Port (omitempty).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: u64,
    /// Unix socket path (omitempty).
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub socket_path: Text,
    /// DNS SRV weights.
    #[serde(default)]
    pub weights: Weights,
    /// Anti-entropy tag override flag.
    #[serde(default)]
    pub enable_tag_override: bool,
    /// Locality (omitempty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Box<Value>>,
    /// Connect proxy config; `None` is Consul's empty `{"Mode":"","MeshGateway":{},"Expose":{}}`.
    #[serde(default, serialize_with = "proxy_or_default")]
    pub proxy: Option<Box<Value>>,
    /// Connect config; `None` is `{}`.
    #[serde(default, serialize_with = "object_or_empty")]
    pub connect: Option<Box<Value>>,
    /// Cluster peer (always present).
    #[serde(default)]
    pub peer_name: Text,
    /// Raft index of creation.
    #[serde(default)]
    pub create_index: u64,
    /// Raft index of the last change.
    #[serde(default)]
    pub modify_index: u64,
}

/// `structs.HealthCheck` as given in input: a node check (`ServiceID` empty) or a service check.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckIn {
    /// Instance the check belongs to; empty for node checks.
    #[serde(rename = "ServiceID", default)]
    pub service_id: Text,
    /// Everything else.
    #[serde(flatten)]
    pub check: Check,
}

/// A stored check. Its `Node`, `ServiceID`, `ServiceName` and `ServiceTags` are not stored but
/// written from the node and instance it belongs to, as Consul fills them on registration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    /// Check ID, unique per node.
    #[serde(rename = "CheckID", default)]
    pub check_id: Text,
    /// Human name.
    #[serde(default)]
    pub name: Text,
    /// `passing`, `warning` or `critical`.
    #[serde(default)]
    pub status: Text,
    /// Notes.
    #[serde(default)]
    pub notes: Text,
    /// Last output.
    #[serde(default)]
    pub output: Text,
    /// `http`, `tcp`, `ttl`, ... or empty.
    #[serde(default)]
    pub r#type: Text,
    /// Duration string or empty.
    #[serde(default)]
    pub interval: Text,
    /// Duration string or empty.
    #[serde(default)]
    pub timeout: Text,
    /// Exposed port.
    #[serde(default)]
    pub exposed_port: u64,
    /// Cluster peer (omitempty).
    #[serde(default)]
    pub peer_name: Text,
    /// Check definition; `None` is `{}`.
    #[serde(default)]
    pub definition: Option<Box<Value>>,
    /// Raft index of creation.
    #[serde(default)]
    pub create_index: u64,
    /// Raft index of the last change.
    #[serde(default)]
    pub modify_index: u64,
}

/// A check with the node and instance it belongs to, serialised as `structs.HealthCheck`.
pub(crate) struct CheckOut<'a> {
    pub(crate) node: &'a str,
    pub(crate) service: Option<&'a Service>,
    pub(crate) check: &'a Check,
}

impl Serialize for CheckOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.check;
        let (id, name, tags): (&str, &str, &[Text]) = match self.service {
            Some(svc) => (&svc.id, &svc.service, &svc.tags),
            None => ("", "", &[]),
        };
        let mut st = s.serialize_struct("HealthCheck", 17)?;
        st.serialize_field("Node", self.node)?;
        st.serialize_field("CheckID", &*c.check_id)?;
        st.serialize_field("Name", &*c.name)?;
        st.serialize_field("Status", &*c.status)?;
        st.serialize_field("Notes", &*c.notes)?;
        st.serialize_field("Output", &*c.output)?;
        st.serialize_field("ServiceID", id)?;
        st.serialize_field("ServiceName", name)?;
        st.serialize_field("ServiceTags", tags)?;
        st.serialize_field("Type", &*c.r#type)?;
        st.serialize_field("Interval", &*c.interval)?;
        st.serialize_field("Timeout", &*c.timeout)?;
        st.serialize_field("ExposedPort", &c.exposed_port)?;
        if !c.peer_name.is_empty() {
            st.serialize_field("PeerName", &*c.peer_name)?;
        }
        match &c.definition {
            Some(d) => st.serialize_field("Definition", d)?,
            None => st.serialize_field("Definition", &BTreeMap::<(), ()>::new())?,
        }
        st.serialize_field("CreateIndex", &c.create_index)?;
        st.serialize_field("ModifyIndex", &c.modify_index)?;
        st.end()
    }
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
    pub checks: Vec<CheckIn>,
}

/// A borrowed health entry for serialisation: node checks first, then the instance's.
pub(crate) struct EntryOut<'a> {
    pub(crate) node: &'a Node,
    pub(crate) service: &'a Service,
    pub(crate) checks: Chain<'a>,
}

impl Serialize for EntryOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("CheckServiceNode", 3)?;
        st.serialize_field("Node", self.node)?;
        st.serialize_field("Service", self.service)?;
        st.serialize_field(
            "Checks",
            &EntryChecks {
                node: self.node,
                service: self.service,
                checks: &self.checks,
            },
        )?;
        st.end()
    }
}

/// The node's checks and then the instance's, serialised as one JSON array.
pub(crate) struct Chain<'a>(pub(crate) &'a [Check], pub(crate) &'a [Check]);

impl Chain<'_> {
    /// Every check of the entry.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Check> {
        self.0.iter().chain(self.1)
    }
}

impl Serialize for EntryChecks<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let node = &*self.node.node;
        let node_checks = self.checks.0.iter().map(|check| CheckOut {
            node,
            service: None,
            check,
        });
        let own = self.checks.1.iter().map(|check| CheckOut {
            node,
            service: Some(self.service),
            check,
        });
        s.collect_seq(node_checks.chain(own))
    }
}

/// What [`EntryOut`] serialises as its `Checks`.
pub(crate) struct EntryChecks<'a> {
    node: &'a Node,
    service: &'a Service,
    checks: &'a Chain<'a>,
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
