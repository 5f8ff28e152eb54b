//! How a [`HealthEntry`] and a [`RegistryState`] are (de)serialised: as Consul spells an entry,
//! every check with its `Node`, `ServiceID` and `ServiceName`, although the model keeps those
//! once per entry (see [`EntryCheck`]).
//!
//! Reading trims spare capacity (serde grows vectors by doubling) and, for a whole state, makes
//! the entries on one node share it; writing borrows the model and allocates nothing per check.

use std::sync::Arc;

use imbl::OrdMap;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::{null_as_default, Entries, EntryCheck, HealthCheck, HealthEntry, Node};
use super::model::{CheckScope, NodeService, RegistryState};

/// A health entry as Consul sends it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", default)]
#[derive(Default)]
struct EntryWire {
    #[serde(deserialize_with = "null_as_default")]
    node: Node,
    #[serde(deserialize_with = "null_as_default")]
    service: NodeService,
    #[serde(deserialize_with = "null_as_default")]
    checks: Vec<HealthCheck>,
}

impl<'de> Deserialize<'de> for HealthEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = EntryWire::deserialize(deserializer)?;
        let mut service = wire.service;
        service.tags.shrink_to_fit();
        // Collected in place, the checks would keep the wire checks' buffer (four of them, as
        // serde grows it, at twice an `EntryCheck`'s size): ~400 B per instance.
        let mut checks: Vec<EntryCheck> = wire.checks.into_iter().map(EntryCheck::from).collect();
        checks.shrink_to_fit();
        Ok(Self {
            node: Arc::new(wire.node),
            service,
            checks,
        })
    }
}

impl Serialize for HealthEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut entry = serializer.serialize_struct("HealthEntry", 3)?;
        entry.serialize_field("Node", &*self.node)?;
        entry.serialize_field("Service", &self.service)?;
        entry.serialize_field("Checks", &ChecksOut(self))?;
        entry.end()
    }
}

/// An entry's checks as Consul lists them.
struct ChecksOut<'a>(&'a HealthEntry);

impl Serialize for ChecksOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entry = self.0;
        serializer.collect_seq(entry.checks.iter().map(|check| CheckOut { entry, check }))
    }
}

/// One check of an entry, with the entry's node and service.
struct CheckOut<'a> {
    entry: &'a HealthEntry,
    check: &'a EntryCheck,
}

impl Serialize for CheckOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (service_id, service_name) = match self.check.scope {
            CheckScope::Node => ("", ""),
            CheckScope::Service => (
                self.entry.service.id.as_str(),
                self.entry.service.service.as_str(),
            ),
        };
        let output = self.check.output.as_str();
        let fields = if output.is_empty() { 6 } else { 7 };
        let mut check = serializer.serialize_struct("HealthCheck", fields)?;
        check.serialize_field("Node", &self.entry.node.node)?;
        check.serialize_field("CheckID", &self.check.check_id)?;
        check.serialize_field("Status", self.check.status.as_str())?;
        check.serialize_field("ServiceID", service_id)?;
        check.serialize_field("ServiceName", service_name)?;
        check.serialize_field("ModifyIndex", &self.check.modify_index)?;
        // Only failing checks have one: a state of passing checks is written as before.
        if !output.is_empty() {
            check.serialize_field("Output", output)?;
        }
        check.end()
    }
}

/// A [`RegistryState`] as written; read back, its entries share nodes again.
#[derive(Deserialize)]
#[serde(default)]
#[derive(Default)]
pub(super) struct StateWire {
    index: u64,
    services: OrdMap<String, Entries>,
}

impl From<StateWire> for RegistryState {
    fn from(wire: StateWire) -> Self {
        let mut state = Self {
            index: wire.index,
            services: wire.services,
        };
        state.share_nodes();
        state
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{CheckStatus, RegistryState};
    use super::HealthEntry;

    const ENTRY: &str = r#"{
        "Node": {"ID": "3f7a", "Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1",
                 "TaggedAddresses": {"lan": "10.0.0.1"}, "Meta": null, "ModifyIndex": 7},
        "Service": {"ID": "web-1", "Service": "web", "Tags": ["a", "b"], "Port": 80},
        "Checks": [
            {"Node": "n1", "CheckID": "serfHealth", "Name": "Serf", "Status": "passing",
             "ServiceID": "", "ServiceName": "", "ModifyIndex": 3},
            {"Node": "n1", "CheckID": "service:web-1", "Status": "weird",
             "ServiceID": "web-1", "ServiceName": "web", "ModifyIndex": 4,
             "Output": "connection refused"},
            {"Node": "n1", "CheckID": "service:web-1:2", "Status": "passing",
             "ServiceID": "web-1", "ServiceName": "web", "ModifyIndex": 5,
             "Output": "HTTP 200 OK"}
        ]
    }"#;

    #[test]
    fn an_entry_round_trips_with_its_checks_spelled_out() {
        let entry: HealthEntry = serde_json::from_str(ENTRY).unwrap();
        assert_eq!(entry.checks[1].status, CheckStatus::from("weird"));
        assert!(!entry.is_passing());
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["Checks"][1]["ServiceName"], "web");
        assert_eq!(json["Checks"][0]["ServiceID"], "");
        assert_eq!(json["Checks"][0]["Node"], "n1");
        // A failing check keeps its output; a passing one neither keeps nor writes it.
        assert_eq!(json["Checks"][1]["Output"], "connection refused");
        assert!(json["Checks"][2].get("Output").is_none());
        assert!(json["Checks"][0].get("Output").is_none());
        let back: HealthEntry = serde_json::from_value(json).unwrap();
        assert_eq!(back, entry);
    }

    #[test]
    fn only_a_failing_checks_output_makes_an_entry_differ() {
        let entry: HealthEntry = serde_json::from_str(ENTRY).unwrap();
        let changed = |from: &str, to: &str| -> HealthEntry {
            serde_json::from_str(&ENTRY.replace(from, to)).unwrap()
        };
        // The sync publishes a state when entries differ: a passing check's output never makes
        // them differ, a failing one's does (one service rebuilt).
        assert_eq!(changed("HTTP 200 OK", "HTTP 200 OK, 3 ms"), entry);
        assert_ne!(changed("connection refused", "timeout"), entry);
        // A state written before outputs were kept reads as one without them.
        let old = changed(
            "\"ModifyIndex\": 4,\n             \"Output\": \"connection refused\"}",
            "\"ModifyIndex\": 4}",
        );
        assert!(old.checks[1].output.is_empty());
        assert_eq!(old.checks.len(), 3);
    }

    #[test]
    fn a_state_read_back_shares_its_nodes() {
        let text = format!(r#"{{"index": 9, "services": {{"web": [{ENTRY}], "db": [{ENTRY}]}}}}"#);
        let state: RegistryState = serde_json::from_str(&text).unwrap();
        let (db, web) = (&state.services["db"][0], &state.services["web"][0]);
        assert!(std::sync::Arc::ptr_eq(&db.node, &web.node));
        let back: RegistryState =
            serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
        assert_eq!(back, state);
    }
}
