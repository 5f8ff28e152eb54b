//! Self-preservation: a sync that would stop serving more than a share of the served instances
//! at once is taken for a registry or network fault, not for reality.
//!
//! The departing instances keep being served (with their last known entry) until they have been
//! gone for the window, or until the registry serves them again. Only instances that were being
//! served count: an instance "departs" when it disappears from the registry or stops being
//! served by its checks (the zone's `HealthFilter`: passing, or with `--serve-warning` not
//! critical), so a partition that turns every node's `serfHealth` critical is held just like an
//! emptied catalog. The trade-off (a real mass failure is hidden for the window) is described in
//! docs/sync.md. Pure logic: the caller supplies the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use compact_str::CompactString;

use crate::registry::{HealthEntry, RegistryState};
use crate::snapshot::verdict::instance_verdict;
use crate::snapshot::HealthFilter;
use crate::source::status::HeldInstance;

/// (service key, node name, instance ID): one instance.
type InstanceKey = (String, CompactString, CompactString);

/// An instance kept although the registry no longer serves it.
#[derive(Clone, Debug)]
struct Held {
    entry: HealthEntry,
    since: Instant,
}

/// What one application of self-preservation did, for logs and health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// More than the threshold would have gone at once: `departing` of `served` are held.
    Triggered {
        /// Instances held now.
        departing: usize,
        /// Instances served before this sync.
        served: usize,
    },
    /// Held instances that the registry serves again.
    Returned(usize),
    /// Held instances let go after the window.
    Released(usize),
}

/// The self-preservation state of one sync engine.
#[derive(Debug)]
pub struct SelfPreservation {
    threshold: f64,
    window: Duration,
    /// Which instances the snapshot serves: the same rule as the zone's.
    health: HealthFilter,
    held: BTreeMap<InstanceKey, Held>,
    /// Instances that departed within [`DETECTION_WINDOW`] without being held. Changes arrive
    /// one service at a time, so a mass drop may come as several publishes: the departures of
    /// the last few seconds count together, and when they cross the threshold those already
    /// gone are held (served again) too.
    recent: BTreeMap<InstanceKey, Held>,
}

/// Departures this close together count as one drop.
pub const DETECTION_WINDOW: Duration = Duration::from_secs(10);

impl SelfPreservation {
    /// `threshold` is the share of served instances (0 disables); `window` how long to hold;
    /// `health` which instances are served (the zone options').
    pub fn new(threshold: f64, window: Duration, health: HealthFilter) -> Self {
        Self {
            threshold,
            window,
            health,
            held: BTreeMap::new(),
            recent: BTreeMap::new(),
        }
    }

    /// Instances held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The held instances (at most `limit`, in key order) with what `truth`, the registry's
    /// state, says of each: gone, or why it is not served. Run per publish while instances
    /// are held, so it is bounded.
    pub fn held_list(&self, truth: &RegistryState, limit: usize) -> Vec<HeldInstance> {
        let now = (Instant::now(), SystemTime::now());
        self.held
            .iter()
            .take(limit)
            .map(|((service, node, id), held)| {
                let current = truth.services.get(service).and_then(|entries| {
                    entries
                        .iter()
                        .find(|e| e.node.node == *node && e.service.id == *id)
                });
                let registry = match current {
                    None => "deregistered".to_string(),
                    Some(entry) => {
                        let verdict = instance_verdict(service, entry, self.health);
                        let why: Vec<String> = verdict
                            .reasons
                            .iter()
                            .filter(|reason| reason.excludes(self.health))
                            .map(|reason| reason.describe(entry))
                            .collect();
                        if why.is_empty() {
                            "not served".to_string()
                        } else {
                            why.join("; ")
                        }
                    }
                };
                HeldInstance {
                    service: service.clone(),
                    node: node.clone(),
                    id: id.clone(),
                    since: now.1 - now.0.saturating_duration_since(held.since),
                    registry,
                }
            })
            .collect()
    }

    /// When the oldest held instance is due for release.
    pub fn next_release(&self) -> Option<Instant> {
        self.held.values().map(|h| h.since + self.window).min()
    }

    /// When the current episode started (its oldest held instance).
    pub fn since(&self) -> Option<Instant> {
        self.held.values().map(|h| h.since).min()
    }

    /// The state to publish, given the registry's `truth`, the state served until now and how
    /// many instances it serves (the snapshot counts them: not counted again here).
    pub fn apply(
        &mut self,
        truth: &RegistryState,
        published: &RegistryState,
        published_served: usize,
        now: Instant,
    ) -> (RegistryState, Vec<Event>) {
        let mut events = Vec::new();
        // Only services that differ can depart or return (and those with held instances, which
        // differ too): unchanged ones share their entries, so this costs the change, not the
        // registry.
        let touched: BTreeSet<&str> = published
            .changes_to(truth)
            .map(|(name, _, _)| name)
            .chain(self.held.keys().map(|(service, _, _)| service.as_str()))
            .chain(self.recent.keys().map(|(service, _, _)| service.as_str()))
            .collect();
        let served_before = served(published, &touched, self.health);
        let served_now: BTreeSet<InstanceKey> =
            served(truth, &touched, self.health).into_keys().collect();
        self.recent.retain(|key, departed| {
            !served_now.contains(key)
                && now.saturating_duration_since(departed.since) < DETECTION_WINDOW
        });
        // The recent departures no longer count as served; before them, they did.
        let served_total = published_served + self.recent.len();

        let returned: Vec<InstanceKey> = self
            .held
            .keys()
            .filter(|k| served_now.contains(*k))
            .cloned()
            .collect();
        for key in &returned {
            self.held.remove(key);
        }
        if !returned.is_empty() {
            events.push(Event::Returned(returned.len()));
        }
        let window = self.window;
        let released: BTreeSet<InstanceKey> = self
            .held
            .iter()
            .filter(|(_, h)| now.saturating_duration_since(h.since) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &released {
            self.held.remove(key);
        }
        if !released.is_empty() {
            events.push(Event::Released(released.len()));
        }

        let departing: Vec<(&InstanceKey, &&HealthEntry)> = served_before
            .iter()
            .filter(|(k, _)| {
                !served_now.contains(*k) && !self.held.contains_key(*k) && !released.contains(*k)
            })
            .collect();
        let dropped = departing.len() + self.recent.len();
        let share = dropped as f64 / served_total.max(1) as f64;
        if self.threshold > 0.0 && !departing.is_empty() && share > self.threshold {
            events.push(Event::Triggered {
                departing: dropped,
                served: served_total,
            });
            self.held.append(&mut self.recent);
            for (key, entry) in departing {
                self.held.insert(
                    key.clone(),
                    Held {
                        entry: (*entry).clone(),
                        since: now,
                    },
                );
            }
        } else if self.threshold > 0.0 {
            for (key, entry) in departing {
                self.recent.insert(
                    key.clone(),
                    Held {
                        entry: (*entry).clone(),
                        since: now,
                    },
                );
            }
        }

        let mut state = truth.clone();
        for ((service, node, id), held) in &self.held {
            let entries = Arc::make_mut(state.services.entry(service.clone()).or_default());
            match entries
                .iter_mut()
                .find(|e| e.node.node == *node && e.service.id == *id)
            {
                Some(existing) => *existing = held.entry.clone(),
                None => entries.push(held.entry.clone()),
            }
        }
        (state, events)
    }
}

/// How many instances `state` serves.
#[cfg(test)]
fn served_count(state: &RegistryState) -> usize {
    served_count_by(state, HealthFilter::PassingOnly)
}

/// How many instances `state` serves under `health`.
#[cfg(test)]
fn served_count_by(state: &RegistryState, health: HealthFilter) -> usize {
    state
        .services
        .values()
        .flat_map(|entries| entries.iter())
        .filter(|e| health.serves(e))
        .count()
}

/// Every instance of the `services` that `state` serves (by `health`), by key.
fn served<'a>(
    state: &'a RegistryState,
    services: &BTreeSet<&str>,
    health: HealthFilter,
) -> BTreeMap<InstanceKey, &'a HealthEntry> {
    services
        .iter()
        .filter_map(|name| state.services.get_key_value(*name))
        .flat_map(|(service, entries)| {
            entries.iter().filter(|e| health.serves(e)).map(move |e| {
                (
                    (service.clone(), e.node.node.clone(), e.service.id.clone()),
                    e,
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::EntryCheck;

    fn state(instances: &[(&str, &str, &str)]) -> RegistryState {
        let mut state = RegistryState::default();
        for (service, node, status) in instances {
            let mut entry = HealthEntry::default();
            Arc::make_mut(&mut entry.node).node = (*node).into();
            entry.service.id = format!("{service}-{node}").into();
            entry.service.service = (*service).into();
            entry.checks.push(EntryCheck {
                status: (*status).into(),
                ..EntryCheck::default()
            });
            Arc::make_mut(state.services.entry((*service).into()).or_default()).push(entry);
        }
        state
    }

    #[test]
    fn small_drops_apply_at_once() {
        let mut sp = SelfPreservation::new(0.5, Duration::from_secs(60), HealthFilter::PassingOnly);
        let before = state(&[
            ("web", "a", "passing"),
            ("web", "b", "passing"),
            ("db", "c", "passing"),
        ]);
        let after = state(&[("web", "a", "passing"), ("db", "c", "passing")]);
        let (published, events) = sp.apply(&after, &before, served_count(&before), Instant::now());
        assert_eq!(served_count(&published), 2);
        assert!(events.is_empty());
    }

    #[test]
    fn with_serve_warning_a_warning_instance_has_not_departed() {
        let warning = HealthFilter::PassingOrWarning;
        let before = state(&[
            ("web", "a", "passing"),
            ("web", "b", "warning"),
            ("db", "c", "passing"),
        ]);
        // Every instance turning warning drops nothing that is served.
        let mut sp = SelfPreservation::new(0.5, Duration::from_secs(60), warning);
        let after = state(&[
            ("web", "a", "warning"),
            ("web", "b", "warning"),
            ("db", "c", "warning"),
        ]);
        let served = served_count_by(&before, warning);
        assert_eq!(served, 3);
        let (published, events) = sp.apply(&after, &before, served, Instant::now());
        assert!(events.is_empty());
        assert_eq!(served_count_by(&published, warning), 3);
        // Critical is a departure: two of three at once is held.
        let after = state(&[
            ("web", "a", "critical"),
            ("web", "b", "critical"),
            ("db", "c", "warning"),
        ]);
        let (published, events) = sp.apply(&after, &before, served, Instant::now());
        assert_eq!(
            events,
            vec![Event::Triggered {
                departing: 2,
                served: 3
            }]
        );
        assert_eq!(served_count_by(&published, warning), 3);
    }

    #[test]
    fn mass_drop_is_held_until_the_window_passes() {
        let mut sp = SelfPreservation::new(0.5, Duration::from_secs(60), HealthFilter::PassingOnly);
        let t0 = Instant::now();
        let before = state(&[
            ("web", "a", "passing"),
            ("web", "b", "passing"),
            ("db", "c", "passing"),
        ]);
        let after = state(&[("web", "a", "critical")]);
        let (published, events) = sp.apply(&after, &before, served_count(&before), t0);
        assert_eq!(
            events,
            vec![Event::Triggered {
                departing: 3,
                served: 3
            }]
        );
        assert_eq!(served_count(&published), 3);
        assert_eq!(sp.next_release(), Some(t0 + Duration::from_secs(60)));
        // What the registry says of each held instance, for `/v1/explain`; bounded.
        let held: Vec<(String, String)> = sp
            .held_list(&after, 10)
            .into_iter()
            .map(|h| (h.node.to_string(), h.registry))
            .collect();
        assert_eq!(
            held,
            [
                ("c".into(), "deregistered".into()),
                ("a".into(), "check  on node a is critical".into()),
                ("b".into(), "deregistered".into()),
            ]
        );
        assert_eq!(sp.held_list(&after, 1).len(), 1);

        // Still gone within the window: still held; a later sync compares with what is served.
        let (published, events) = sp.apply(
            &after,
            &published,
            served_count(&published),
            t0 + Duration::from_secs(30),
        );
        assert!(events.is_empty());
        assert_eq!(served_count(&published), 3);

        let (published, events) = sp.apply(
            &after,
            &published,
            served_count(&published),
            t0 + Duration::from_secs(61),
        );
        assert_eq!(events, vec![Event::Released(3)]);
        assert_eq!(served_count(&published), 0);
        assert_eq!(sp.held(), 0);
    }

    /// Per-service watches deliver a mass drop a few services at a time: drops within the
    /// detection window add up, and the ones already gone are served again.
    #[test]
    fn a_drop_spread_over_several_syncs_is_held_whole() {
        let mut sp = SelfPreservation::new(0.5, Duration::from_secs(60), HealthFilter::PassingOnly);
        let t0 = Instant::now();
        let all = [
            ("a", "n1", "passing"),
            ("b", "n2", "passing"),
            ("c", "n3", "passing"),
            ("d", "n4", "passing"),
            ("e", "n5", "passing"),
        ];
        let before = state(&all);
        // Two of five go: 40 %, under the threshold.
        let first = state(&all[2..]);
        let (published, events) = sp.apply(&first, &before, served_count(&before), t0);
        assert!(events.is_empty());
        assert_eq!(served_count(&published), 3);
        // One more a second later: three of five within the window.
        let second = state(&all[3..]);
        let (published, events) = sp.apply(
            &second,
            &published,
            served_count(&published),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(
            events,
            vec![Event::Triggered {
                departing: 3,
                served: 5
            }]
        );
        assert_eq!(
            served_count(&published),
            5,
            "the first two are served again"
        );
        assert_eq!(sp.held(), 3);

        // Outside the window, drops do not add up.
        let mut sp = SelfPreservation::new(0.5, Duration::from_secs(60), HealthFilter::PassingOnly);
        let (published, _) = sp.apply(&first, &before, served_count(&before), t0);
        let (published, events) = sp.apply(
            &second,
            &published,
            served_count(&published),
            t0 + DETECTION_WINDOW,
        );
        assert!(events.is_empty());
        assert_eq!(served_count(&published), 2);
    }

    #[test]
    fn returning_instances_end_the_episode() {
        let mut sp = SelfPreservation::new(0.5, Duration::from_secs(60), HealthFilter::PassingOnly);
        let t0 = Instant::now();
        let before = state(&[("web", "a", "passing"), ("web", "b", "passing")]);
        let (published, _) = sp.apply(
            &RegistryState::default(),
            &before,
            served_count(&before),
            t0,
        );
        assert_eq!(sp.held(), 2);
        let (published, events) = sp.apply(
            &before,
            &published,
            served_count(&published),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(events, vec![Event::Returned(2)]);
        assert_eq!(sp.held(), 0);
        assert_eq!(published, before);
    }

    #[test]
    fn zero_threshold_disables() {
        let mut sp = SelfPreservation::new(0.0, Duration::from_secs(60), HealthFilter::PassingOnly);
        let before = state(&[("web", "a", "passing")]);
        let (published, events) = sp.apply(
            &RegistryState::default(),
            &before,
            served_count(&before),
            Instant::now(),
        );
        assert!(events.is_empty());
        assert!(published.services.is_empty());
    }
}
