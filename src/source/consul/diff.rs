//! The diffs that name changed services: between two answers of `/v1/catalog/services`
//! (services added, removed or retagged) and between two check lists (services whose checks
//! changed; a node check names every service with an instance on that node). The check lists
//! are the non-passing checks the checks watch follows, or every check
//! (`/v1/health/state/any`) against the ones the state implies.

use std::collections::{BTreeMap, BTreeSet};

use crate::registry::consul::ServiceList;
use compact_str::CompactString;

use crate::registry::{CheckStatus, HealthCheck, RegistryState};

/// (node, check ID) -> what matters about a check for DNS.
pub(super) type CheckMap = BTreeMap<(CompactString, CompactString), CheckSig>;

/// What matters about a check for DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CheckSig {
    status: CheckStatus,
    service_name: CompactString,
    service_id: CompactString,
}

pub(super) fn check_map(checks: Vec<HealthCheck>) -> CheckMap {
    checks
        .into_iter()
        .map(|c| {
            (
                (c.node, c.check_id),
                CheckSig {
                    status: c.status,
                    service_name: c.service_name,
                    service_id: c.service_id,
                },
            )
        })
        .collect()
}

/// The check list the registry state implies: the baseline of a checks watch that starts after
/// the state was fetched, so that its first answer names only what changed since.
pub(super) fn implied_checks(truth: &RegistryState) -> CheckMap {
    truth
        .services
        .values()
        .flat_map(|entries| entries.iter())
        .flat_map(|entry| entry.checks.iter().map(|c| c.to_health_check(entry)))
        .map(|c| {
            (
                (c.node, c.check_id),
                CheckSig {
                    status: c.status,
                    service_name: c.service_name,
                    service_id: c.service_id,
                },
            )
        })
        .collect()
}

/// The checks of `map` that are not passing: what `/v1/health/state/critical` and `/warning`
/// list together, and so the checks watch's baseline when it starts from a state.
pub(super) fn non_passing(mut map: CheckMap) -> CheckMap {
    map.retain(|_, sig| sig.status != CheckStatus::Passing);
    map
}

/// Services added, removed or with changed tags.
pub(super) fn diff_catalog(old: &ServiceList, new: &ServiceList) -> BTreeSet<String> {
    let mut changed: BTreeSet<String> = old
        .iter()
        .filter(|(name, tags)| new.get(*name) != Some(*tags))
        .map(|(name, _)| name.clone())
        .collect();
    changed.extend(new.keys().filter(|name| !old.contains_key(*name)).cloned());
    changed
}

/// Services touched by check changes (a node check touches every service on its node), and
/// whether anything differed at all.
pub(super) fn diff_checks(
    old: &CheckMap,
    new: &CheckMap,
    truth: &RegistryState,
) -> (BTreeSet<String>, bool) {
    let mut changed = BTreeSet::new();
    let mut nodes = BTreeSet::new();
    let keys: BTreeSet<&(CompactString, CompactString)> = old.keys().chain(new.keys()).collect();
    let mut any = false;
    for key in keys {
        let (before, after) = (old.get(key), new.get(key));
        if before == after {
            continue;
        }
        any = true;
        for sig in [before, after].into_iter().flatten() {
            if sig.service_name.is_empty() {
                nodes.insert(key.0.to_ascii_lowercase());
            } else {
                changed.insert(sig.service_name.to_string());
            }
        }
    }
    if !nodes.is_empty() {
        for (name, entries) in &truth.services {
            if entries
                .iter()
                .any(|e| nodes.contains(&e.node.node.to_ascii_lowercase()))
            {
                changed.insert(name.clone());
            }
        }
    }
    (changed, any)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::HealthEntry;
    use std::sync::Arc;

    fn check(node: &str, id: &str, service: &str, status: &str) -> HealthCheck {
        HealthCheck {
            node: node.into(),
            check_id: id.into(),
            status: status.into(),
            service_name: service.into(),
            service_id: service.into(),
            ..HealthCheck::default()
        }
    }

    #[test]
    fn catalog_diff_names_added_removed_and_retagged() {
        let old: ServiceList = [
            ("a".into(), vec![]),
            ("b".into(), vec!["x".into()]),
            ("c".into(), vec![]),
        ]
        .into();
        let new: ServiceList = [
            ("b".into(), vec!["y".into()]),
            ("c".into(), vec![]),
            ("d".into(), vec![]),
        ]
        .into();
        let got: Vec<String> = diff_catalog(&old, &new).into_iter().collect();
        assert_eq!(got, ["a", "b", "d"]);
    }

    #[test]
    fn check_diff_maps_node_checks_to_their_services() {
        let mut truth = RegistryState::default();
        let mut entry = HealthEntry::default();
        Arc::make_mut(&mut entry.node).node = "n1".into();
        truth.services.insert("web".into(), Arc::new(vec![entry]));
        truth
            .services
            .insert("db".into(), Arc::new(vec![HealthEntry::default()]));
        let old = check_map(vec![
            check("n1", "serfHealth", "", "passing"),
            check("n2", "svc:db", "db", "passing"),
        ]);
        let new = check_map(vec![
            check("N1", "serfHealth", "", "critical"),
            check("n2", "svc:db", "db", "passing"),
        ]);
        let (changed, any) = diff_checks(&old, &new, &truth);
        assert!(any);
        assert_eq!(changed.into_iter().collect::<Vec<_>>(), ["web"]);
        let (changed, any) = diff_checks(&new, &new, &truth);
        assert!(!any && changed.is_empty());
    }

    #[test]
    fn a_recovered_check_leaves_the_non_passing_list_and_names_its_service() {
        let truth = RegistryState::default();
        let all = check_map(vec![
            check("n1", "svc:web", "web", "critical"),
            check("n1", "svc:db", "db", "passing"),
            check("n2", "svc:api", "api", "warning"),
        ]);
        let before = non_passing(all);
        assert_eq!(before.len(), 2);
        let after = non_passing(check_map(vec![
            check("n1", "svc:web", "web", "passing"),
            check("n2", "svc:api", "api", "warning"),
        ]));
        let (changed, any) = diff_checks(&before, &after, &truth);
        assert!(any);
        assert_eq!(changed.into_iter().collect::<Vec<_>>(), ["web"]);
    }
}
