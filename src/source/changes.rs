//! The change log: what each published state changed, service by service, for the status page.
//!
//! [`changes`] diffs the served state against the next one with
//! [`RegistryState::changes_to`], which walks only what the two do not share, so a publish
//! pays for its change and not for the registry. A change too large to list (a first sync, a
//! full resync that touched thousands of services) becomes one summary line. The lines are
//! kept in a bounded ring in the source status ([`super::status::SourceStatus::record_changes`]).

use std::time::SystemTime;

use crate::registry::Entries;
use crate::snapshot::{HealthFilter, Snapshot};

/// Changes the ring keeps, newest last.
pub const CHANGE_LOG_LEN: usize = 50;

/// A publish that changes more services than this is logged as one summary line.
const MAX_LINES_PER_PUBLISH: usize = 20;

/// Service names longer than this are cut in the log: registry data can be anything.
const MAX_NAME_CHARS: usize = 128;

/// One line of the change log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// When the state was published.
    pub at: SystemTime,
    /// What changed.
    pub what: ChangeKind,
}

/// Instances of a service, and how many of them DNS serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    /// Instances, whatever their health.
    pub instances: usize,
    /// Instances served (passing, or warning too with `--serve-warning`).
    pub passing: usize,
}

impl std::fmt::Display for Count {
    /// `3 instances, 2 passing`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.instances == 1 { "" } else { "s" };
        write!(
            f,
            "{} instance{plural}, {} passing",
            self.instances, self.passing
        )
    }
}

/// What one publish changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The first state served by this process.
    First(Count, usize),
    /// A service appeared.
    Added(String, Count),
    /// A service went away.
    Removed(String, Count),
    /// A service's entries changed: counts before and after.
    Changed(String, Count, Count),
    /// Too many services changed to list: how many were added, removed and changed.
    Many {
        /// Services added.
        added: usize,
        /// Services removed.
        removed: usize,
        /// Services whose entries changed.
        changed: usize,
    },
}

impl ChangeKind {
    /// The service concerned, or what stands for it in a summary line.
    pub fn service(&self) -> String {
        match self {
            Self::First(_, services) => format!("({services} services)"),
            Self::Added(name, _) | Self::Removed(name, _) | Self::Changed(name, _, _) => {
                name.clone()
            }
            Self::Many {
                added,
                removed,
                changed,
            } => format!("({} services)", added + removed + changed),
        }
    }

    /// What changed, in a few words.
    pub fn describe(&self) -> String {
        match self {
            Self::First(count, _) => format!("first state served: {count}"),
            Self::Added(_, count) => format!("added: {count}"),
            Self::Removed(_, count) => format!("removed: had {count}"),
            Self::Changed(_, before, after) if before == after => {
                format!("entries changed: {after}")
            }
            Self::Changed(_, before, after) => format!(
                "instances {} -> {}, passing {} -> {}",
                before.instances, after.instances, before.passing, after.passing
            ),
            Self::Many {
                added,
                removed,
                changed,
            } => format!("{added} added, {removed} removed, {changed} changed"),
        }
    }
}

/// What publishing `next` over `previous` (the snapshot served, if any) changed, at `at`:
/// a line per service, or one summary line when more than a screenful changed.
pub fn changes(
    previous: Option<&Snapshot>,
    next: &Snapshot,
    health: HealthFilter,
    at: SystemTime,
) -> Vec<Change> {
    let line = |what| Change { at, what };
    let Some(previous) = previous else {
        let count = Count {
            instances: next.stats.instances,
            passing: next.stats.passing_instances,
        };
        return vec![line(ChangeKind::First(count, next.stats.services))];
    };
    let mut lines = Vec::new();
    let (mut added, mut removed, mut changed) = (0, 0, 0);
    for (name, old, new) in previous.state.changes_to(&next.state) {
        match (old, new) {
            (None, Some(_)) => added += 1,
            (Some(_), None) => removed += 1,
            _ => changed += 1,
        }
        // Past the limit only the kinds are counted: entries are not walked.
        if lines.len() > MAX_LINES_PER_PUBLISH {
            continue;
        }
        let name: String = name.chars().take(MAX_NAME_CHARS).collect();
        let what = match (old, new) {
            (None, Some(new)) => ChangeKind::Added(name, count(new, health)),
            (Some(old), None) => ChangeKind::Removed(name, count(old, health)),
            (Some(old), Some(new)) => {
                ChangeKind::Changed(name, count(old, health), count(new, health))
            }
            (None, None) => continue,
        };
        lines.push(line(what));
    }
    if lines.len() > MAX_LINES_PER_PUBLISH {
        return vec![line(ChangeKind::Many {
            added,
            removed,
            changed,
        })];
    }
    lines
}

/// The instances of one service's entries and how many are served.
fn count(entries: &Entries, health: HealthFilter) -> Count {
    Count {
        instances: entries.len(),
        passing: entries.iter().filter(|entry| health.serves(entry)).count(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::registry::{CheckScope, EntryCheck, HealthEntry, RegistryState};
    use crate::snapshot::{NameServers, ServiceTtls, ZoneOptions};

    fn entries(passing: usize, critical: usize) -> Entries {
        let entry = |status: &str| {
            let mut entry = HealthEntry::default();
            entry.service.service = "svc".into();
            entry.checks = vec![EntryCheck {
                check_id: "serfHealth".into(),
                status: status.into(),
                scope: CheckScope::Node,
                modify_index: 1,
                ..EntryCheck::default()
            }];
            entry
        };
        let mut list = vec![entry("passing"); passing];
        list.extend(vec![entry("critical"); critical]);
        Arc::new(list)
    }

    fn snapshot(services: &[(&str, Entries)]) -> Snapshot {
        let mut state = RegistryState::default();
        for (name, entries) in services {
            state.services.insert((*name).to_string(), entries.clone());
        }
        let options = ZoneOptions {
            domain: "consul.".parse().unwrap(),
            datacenter: "dc1".into(),
            service_ttl: 0,
            service_ttls: ServiceTtls::default(),
            health: HealthFilter::PassingOnly,
            node_ttl: 0,
            negative_ttl: 0,
            nameservers: NameServers::Listen(Vec::new()),
            srv_node_meta_txt: false,
        };
        Snapshot::build(Arc::new(state), SystemTime::now(), &options).expect("build")
    }

    fn described(lines: &[Change]) -> Vec<(String, String)> {
        lines
            .iter()
            .map(|c| (c.what.service(), c.what.describe()))
            .collect()
    }

    #[test]
    fn each_changed_service_is_one_line_with_counts_before_and_after() {
        let (web, db) = (entries(2, 1), entries(1, 0));
        let before = snapshot(&[("web", web.clone()), ("db", db.clone()), ("old", db)]);
        let after = snapshot(&[("web", entries(3, 0)), ("cache", entries(0, 2))]);
        let at = SystemTime::now();
        let lines = changes(Some(&before), &after, HealthFilter::PassingOnly, at);
        assert_eq!(
            described(&lines),
            vec![
                ("cache".into(), "added: 2 instances, 0 passing".into()),
                ("db".into(), "removed: had 1 instance, 1 passing".into()),
                ("old".into(), "removed: had 1 instance, 1 passing".into()),
                ("web".into(), "instances 3 -> 3, passing 2 -> 3".into()),
            ]
        );
        assert!(lines.iter().all(|line| line.at == at));
        let first = changes(None, &after, HealthFilter::PassingOnly, at);
        assert_eq!(
            described(&first),
            vec![(
                "(2 services)".into(),
                "first state served: 5 instances, 3 passing".into()
            )]
        );
    }

    #[test]
    fn a_change_to_many_services_is_one_summary_line() {
        let shared = entries(1, 0);
        let names: Vec<String> = (0..1000).map(|i| format!("s{i:04}")).collect();
        let before: Vec<(&str, Entries)> =
            names.iter().map(|n| (n.as_str(), shared.clone())).collect();
        let mut after: Vec<(&str, Entries)> = before[10..].to_vec();
        for slot in after.iter_mut().take(500) {
            slot.1 = entries(0, 1);
        }
        after.push(("new", shared.clone()));
        let lines = changes(
            Some(&snapshot(&before)),
            &snapshot(&after),
            HealthFilter::PassingOnly,
            SystemTime::now(),
        );
        assert_eq!(
            described(&lines),
            vec![(
                "(511 services)".into(),
                "1 added, 10 removed, 500 changed".into()
            )]
        );
    }
}
