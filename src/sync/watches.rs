//! The two blocking queries that tell what changed, and the diffs that name changed services.
//!
//! `/v1/catalog/services` names services that appeared, disappeared or changed tags;
//! `/v1/health/state/any` names services whose checks changed (a node check names every service
//! with an instance on that node). Each query runs as its own task so that the sync loop can
//! select on both; the loop owns their indexes and baselines.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::retry::Backoff;
use crate::registry::consul::{ConsulError, Fetched, ServiceList};
use crate::registry::{HealthCheck, RegistryState};

/// Watch requests per endpoint: a burst of this many, then one per [`WATCH_REFILL`].
pub(super) const WATCH_BURST: f64 = 3.0;
pub(super) const WATCH_REFILL: Duration = Duration::from_secs(1);

/// (node, check ID) -> what matters about a check for DNS.
pub(super) type CheckMap = BTreeMap<(String, String), CheckSig>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CheckSig {
    status: String,
    service_name: String,
    service_id: String,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Endpoint {
    Catalog,
    Checks,
}

impl Endpoint {
    pub(super) fn channel(self) -> &'static str {
        match self {
            Self::Catalog => "catalog watch",
            Self::Checks => "checks watch",
        }
    }
}

pub(super) enum WatchValue {
    Catalog(ServiceList),
    Checks(Vec<HealthCheck>),
}

pub(super) type WatchResult = Result<Fetched<WatchValue>, ConsulError>;

/// One blocking query loop's state; the request itself runs as a task.
pub(super) struct Watch {
    pub(super) endpoint: Endpoint,
    /// The newest index whose answer is the baseline for diffs.
    pub(super) index: u64,
    /// The index the running request was sent with, and the request.
    pub(super) in_flight: Option<(u64, JoinHandle<WatchResult>)>,
    pub(super) not_before: Instant,
    pub(super) tokens: f64,
    pub(super) refilled: Instant,
    pub(super) backoff: Backoff,
}

/// Waits for the watch's request, or forever when none is running.
pub(super) async fn join_watch(watch: &mut Watch) -> (u64, WatchResult) {
    let Some((sent, handle)) = watch.in_flight.as_mut() else {
        return std::future::pending().await;
    };
    let sent = *sent;
    let result = handle.await.unwrap_or_else(|e| {
        Err(ConsulError::BadResponse {
            path: "watch".into(),
            message: format!("watch task failed: {e}"),
        })
    });
    watch.in_flight = None;
    (sent, result)
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
    let keys: BTreeSet<&(String, String)> = old.keys().chain(new.keys()).collect();
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
                changed.insert(sig.service_name.clone());
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
        entry.node.node = "n1".into();
        truth.services.insert("web".into(), vec![entry]);
        truth
            .services
            .insert("db".into(), vec![HealthEntry::default()]);
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
}
