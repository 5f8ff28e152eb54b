//! Every instance of the service a name asks for, with its state: served, or left out and
//! why. The verdicts are `snapshot::verdict`'s (the build's own rules) over the state the
//! served snapshot was built from, with the name's tag filter and the instances that
//! self-preservation holds marked.

use serde_json::{json, Value};

use crate::http::health::rfc3339;
use crate::registry::{CheckScope, RegistryState};
use crate::snapshot::verdict::{service_verdicts, InstanceVerdict, Reason};
use crate::snapshot::HealthFilter;
use crate::source::status::HeldInstance;

/// The most instances listed (the ones left out first); the counts cover them all.
pub const MAX_LISTED: usize = 1000;
/// The most reasons listed per instance.
const MAX_REASONS: usize = 32;

/// The instances of `service` (filtered by `tag`) in `state` as JSON: counts and the list.
pub fn instances_json(
    state: &RegistryState,
    health: HealthFilter,
    service: &str,
    tag: Option<&str>,
    held: &[HeldInstance],
) -> Value {
    let mut verdicts = service_verdicts(state, health, service);
    for verdict in &mut verdicts {
        if let Some(tag) = tag {
            verdict.filter_tag(tag);
        }
    }
    let served = verdicts.iter().filter(|v| v.served).count();
    // Left out first: what an operator asking "why not" is after.
    verdicts.sort_by_key(|v| v.served);
    let listed: Vec<Value> = verdicts
        .iter_mut()
        .take(MAX_LISTED)
        .map(|verdict| {
            let holding = held.iter().find(|h| {
                h.service == verdict.key
                    && h.node == verdict.entry.node.node
                    && h.id == verdict.entry.service.id
            });
            if holding.is_some() {
                verdict.hold();
            }
            instance_json(verdict, health, holding)
        })
        .collect();
    json!({
        "total": verdicts.len(),
        "served": served,
        "left_out": verdicts.len() - served,
        "listed": listed.len(),
        "list": listed,
    })
}

fn instance_json(
    verdict: &InstanceVerdict<'_>,
    health: HealthFilter,
    held: Option<&HeldInstance>,
) -> Value {
    let entry = verdict.entry;
    let address = if entry.service.address.is_empty() {
        entry.node.address.as_str()
    } else {
        entry.service.address.as_str()
    };
    let reasons: Vec<Value> = verdict
        .reasons
        .iter()
        .take(MAX_REASONS)
        .map(|reason| {
            let mut value = json!({
                "kind": reason.kind(),
                "excludes": reason.excludes(health),
                "text": reason.describe(entry),
            });
            if let Reason::Check(check) = reason {
                value["check"] = json!({
                    "id": check.check_id.as_str(),
                    "status": check.status.as_str(),
                    "on": match check.scope {
                        CheckScope::Node => "node",
                        CheckScope::Service => "instance",
                    },
                    "output": check.output.as_str(),
                });
            }
            value
        })
        .collect();
    let mut value = json!({
        "id": entry.service.id.as_str(),
        "service": entry.service.service.as_str(),
        "node": entry.node.node.as_str(),
        "address": address,
        "port": entry.service.port,
        "tags": entry.service.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "state": if verdict.served { "served" } else { "left out" },
        "served": verdict.served,
        "reasons": reasons,
    });
    if let Some(held) = held {
        value["held"] = json!({
            "since": rfc3339(held.since),
            "registry": held.registry,
        });
    }
    value
}
