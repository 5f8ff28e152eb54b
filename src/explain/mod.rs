//! Why a name is (not) answered the way it is: the engine behind `GET /v1/explain` and
//! `snapdns explain` ([`client`]).
//!
//! For one question it names the rule the name falls under ([`rule`]: service, tag, RFC 2782,
//! node, addr, static zone, reverse, forwarded, refused), the answer it gets now from the real
//! [`Responder`] ([`answer`]), and for a service every instance with its state ([`instances`],
//! from `snapshot::verdict`), with the serial and age of the snapshot served. It reads the
//! serving side (the responder, the snapshot store, the static zones) and the source status
//! (held instances), and is handed to the HTTP endpoint as an [`Explain`] value by the app.
//! Off the query path: it runs only when asked, and takes no lock the DNS path takes.

pub mod answer;
pub mod client;
pub mod instances;
pub mod rule;

use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use hickory_proto::rr::{Name, RecordType};
use serde_json::{json, Value};

use crate::dns::Responder;
use crate::http::explain::Explain;
use crate::http::health::rfc3339;
use crate::snapshot::{HealthFilter, Snapshot, SnapshotStore};
use crate::source::status::SourceStatus;
use crate::zone::{is_subdomain_key, wire_key, ZoneSet};
use answer::{ask, Answered};
use rule::{classify, RegistryRule};

/// What `/v1/explain` reads. Cloning is shallow.
#[derive(Clone)]
pub struct Explainer {
    /// The responder the DNS sockets use (its policy follows SIGHUP).
    pub responder: Responder,
    /// The published snapshot.
    pub store: SnapshotStore,
    /// The static zones (replaced on SIGHUP).
    pub static_zones: Arc<ArcSwap<ZoneSet>>,
    /// The registry source's status: self-preservation's held instances.
    pub status: Arc<SourceStatus>,
    /// The registry domain.
    pub domain: Name,
    /// The local datacenter.
    pub datacenter: String,
    /// Which instances are served (`--serve-warning`).
    pub health: HealthFilter,
    /// The upstreams forwarded names go to.
    pub upstreams: Vec<String>,
}

impl std::fmt::Debug for Explainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Explainer")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl Explain for Explainer {
    fn explain(&self, name: &str, qtype: Option<&str>) -> Result<Value, String> {
        let name = parse_name(name)?;
        let qtype = match qtype {
            Some(qtype) => parse_type(qtype)?,
            None => default_type(&name),
        };
        Ok(self.account(&name, qtype, SystemTime::now()))
    }
}

impl Explainer {
    /// The account of one question at `now`.
    fn account(&self, name: &Name, qtype: RecordType, now: SystemTime) -> Value {
        let client = answer::client(&self.responder);
        let answered = ask(&self.responder, name, qtype, client);
        // The snapshot read after the answer: at worst a newer one than answered, never an
        // older one.
        let snapshot = self.store.current();
        let key = wire_key(name).unwrap_or_default();
        let apex = wire_key(&self.domain).unwrap_or_default();
        let mut rule = if is_subdomain_key(&key, &apex) {
            self.registry_rule(name, snapshot.as_deref())
        } else {
            self.outside_rule(&key, snapshot.as_deref(), &answered)
        };
        rule["client"] = json!(client.to_string());
        let answer = match &answered {
            Answered::Reply(reply) => answer::reply_json(reply),
            Answered::Forward => json!({
                "forwarded": true,
                "upstreams": self.upstreams,
                "note": "not sent: explain never asks upstreams",
            }),
            Answered::Nothing => json!({"rcode": null, "note": "no reply"}),
        };
        let mut account = json!({
            "name": name.to_ascii(),
            "type": qtype.to_string(),
            "rule": rule,
            "answer": answer,
            "snapshot": snapshot.as_deref().map(|s| snapshot_json(s, now)),
        });
        if let Some(service) = rule_service(&account["rule"]) {
            let tag = account["rule"]["tag"].as_str().map(str::to_string);
            let held = self.status.view().preservation.held;
            account["instances"] = match &snapshot {
                Some(snapshot) => instances::instances_json(
                    &snapshot.state,
                    self.health,
                    &service,
                    tag.as_deref(),
                    &held,
                ),
                None => Value::Null,
            };
        }
        account
    }

    /// The rule of a name under the registry domain.
    fn registry_rule(&self, name: &Name, snapshot: Option<&Snapshot>) -> Value {
        let below = name.num_labels().saturating_sub(self.domain.num_labels());
        let labels: Vec<String> = name
            .iter()
            .take(usize::from(below))
            .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
            .collect();
        let RegistryRule {
            rule,
            form,
            service,
            tag,
            node,
            datacenter,
        } = classify(&labels);
        let mut value = json!({
            "rule": rule,
            "form": form,
            "zone": self.domain.to_ascii(),
            "datacenter": datacenter.clone().unwrap_or_else(|| self.datacenter.clone()),
        });
        if let Some(dc) = datacenter.filter(|dc| !dc.eq_ignore_ascii_case(&self.datacenter)) {
            value["note"] = json!(format!(
                "datacenter {dc} is not this one ({}): its names are not served here",
                self.datacenter
            ));
        }
        for (key, field) in [("service", service), ("tag", tag), ("node", node)] {
            if let Some(field) = field {
                value[key] = json!(field);
            }
        }
        if snapshot.is_none() {
            value["note"] = json!("no snapshot yet: registry names get SERVFAIL");
        }
        value
    }

    /// The rule of a name outside the registry domain, in the responder's order: a reverse
    /// name of a registry address, a static zone, else forwarded or refused.
    fn outside_rule(&self, key: &[u8], snapshot: Option<&Snapshot>, answered: &Answered) -> Value {
        let reverse = is_reverse(key);
        if reverse && snapshot.is_some_and(|s| s.zone.pointer(key).is_some()) {
            return json!({"rule": "reverse", "zone": "registry"});
        }
        if let Some(zone) = self.static_zones.load().find(key) {
            return json!({"rule": "static", "zone": presentation(zone.apex_key())});
        }
        match answered {
            Answered::Forward => json!({"rule": "forwarded", "upstreams": self.upstreams}),
            Answered::Reply(_) if reverse => json!({
                "rule": "reverse",
                "zone": "registry",
                "note": "no registry address has this name and nothing is forwarded",
            }),
            _ => json!({
                "rule": "refused",
                "note": "outside every zone served here, and not forwarded for this client",
            }),
        }
    }
}

/// The service whose instances a rule's answers hold.
fn rule_service(rule: &Value) -> Option<String> {
    match rule["rule"].as_str()? {
        "service" | "tag" | "rfc2782" => rule["service"].as_str().map(str::to_string),
        _ => None,
    }
}

fn snapshot_json(snapshot: &Snapshot, now: SystemTime) -> Value {
    let age = now
        .duration_since(snapshot.fetched_at)
        .unwrap_or_default()
        .as_secs_f64();
    json!({
        "serial": snapshot.zone.serial(),
        "index": snapshot.index(),
        "fetched_at": rfc3339(snapshot.fetched_at),
        "age_seconds": (age * 1000.0).round() / 1000.0,
    })
}

/// A name as asked: absolute, at most 253 characters, labels of at most 63 bytes.
fn parse_name(name: &str) -> Result<Name, String> {
    let name = name.trim();
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err("name is empty".into());
    }
    if bare.len() > crate::http::explain::MAX_NAME_LEN {
        return Err(format!("name is {} bytes long; at most 253", bare.len()));
    }
    let mut parsed = Name::from_ascii(bare)
        .map_err(|error| format!("name {bare:?} is not a DNS name: {error}"))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

/// A type mnemonic (any case) or `TYPE<n>`.
fn parse_type(qtype: &str) -> Result<RecordType, String> {
    let upper = qtype.trim().to_ascii_uppercase();
    if let Some(number) = upper.strip_prefix("TYPE") {
        if let Ok(number) = number.parse::<u16>() {
            return Ok(RecordType::from(number));
        }
    }
    RecordType::from_str(&upper).map_err(|_| {
        format!(
            "unknown type {:?}: use a mnemonic (A, AAAA, SRV, PTR, TXT...) or TYPE<n>",
            crate::registry::truncated(qtype, 16)
        )
    })
}

/// The type asked when none is given: SRV for `_service._tag` names, PTR for reverse names,
/// else A.
fn default_type(name: &Name) -> RecordType {
    let key = wire_key(name).unwrap_or_default();
    if is_reverse(&key) {
        RecordType::PTR
    } else if name
        .iter()
        .next()
        .is_some_and(|label| label.starts_with(b"_"))
    {
        RecordType::SRV
    } else {
        RecordType::A
    }
}

/// True for names under `in-addr.arpa.` and `ip6.arpa.` (lower-cased wire format).
fn is_reverse(key: &[u8]) -> bool {
    key.ends_with(b"\x07in-addr\x04arpa\x00") || key.ends_with(b"\x03ip6\x04arpa\x00")
}

/// A lower-cased, uncompressed wire name in presentation format (labels as they are).
fn presentation(key: &[u8]) -> String {
    let mut text = String::new();
    let mut at = 0;
    while let Some(&len) = key.get(at) {
        let Some(label) = key.get(at + 1..at + 1 + usize::from(len)) else {
            break;
        };
        if len == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(label));
        text.push('.');
        at += 1 + usize::from(len);
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_are_checked() {
        assert!(parse_name("web.service.consul").is_ok());
        assert!(parse_name("").is_err());
        assert!(
            parse_name(&"a".repeat(64)).is_err(),
            "a label over 63 bytes"
        );
        assert!(parse_name(&"a.".repeat(150)).is_err());
        assert_eq!(parse_type("srv"), Ok(RecordType::SRV));
        assert_eq!(parse_type("TYPE65"), Ok(RecordType::from(65)));
        assert!(parse_type("BOGUS").unwrap_err().contains("unknown type"));
        let name = |n: &str| Name::from_ascii(n).unwrap();
        assert_eq!(default_type(&name("_web._tcp.consul.")), RecordType::SRV);
        assert_eq!(
            default_type(&name("1.0.0.10.in-addr.arpa.")),
            RecordType::PTR
        );
        assert_eq!(default_type(&name("web.service.consul.")), RecordType::A);
    }
}
