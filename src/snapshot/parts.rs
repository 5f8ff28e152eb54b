//! What a registry snapshot was assembled from, kept with it so that the next build does only
//! what the change needs.
//!
//! [`Parts`] holds, in persistent maps that a new snapshot shares with the old one except
//! along the changed paths: the encoded fragment of every served service, which registry keys
//! each served service gathers its entries from, what each registry key leaves out of DNS,
//! and the instance counts. [`Parts::apply`] takes the registry keys that differ between two
//! states and returns the served services whose fragments must be encoded again: a change to
//! one service costs that service, whatever the size of the registry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use imbl::OrdMap;

use super::health::HealthFilter;
use super::names::served_by;
use super::{Skipped, ZoneOptions};
use crate::registry::{HealthEntry, RegistryState, ServiceChange};
use crate::zone::Fragment;

/// Names in lower-cased wire format.
pub(super) type Names = Arc<[Arc<[u8]>]>;

/// The bookkeeping of one registry snapshot. Cloning is cheap (persistent maps).
#[derive(Clone, Debug, Default)]
pub(super) struct Parts {
    /// The options the fragments were encoded with: other options mean a full build.
    pub(super) options: Option<ZoneOptions>,
    /// Served service (lower-cased name) -> its encoded names and its nodes' names.
    pub(super) fragments: OrdMap<Arc<str>, Arc<Fragment>>,
    /// Served service -> the registry keys whose entries it serves, in key order (almost
    /// always one: the key of the same name).
    pub(super) served_from: OrdMap<Arc<str>, Arc<[Arc<str>]>>,
    pub(super) skips: SkipIndex,
    /// Served service whose addresses are hostnames inside the domain -> the names (lower-cased
    /// wire format) its last resolution looked up (see `targets`).
    pub(super) watching: OrdMap<Arc<str>, Names>,
    /// Name -> the served services whose resolution looked it up: when the name's fragment
    /// changes, they are resolved again.
    pub(super) watchers: OrdMap<Arc<[u8]>, Arc<[Arc<str>]>>,
    /// Instances in the state, whatever their health.
    pub(super) instances: usize,
    /// Instances served (every check passing, or none critical with `--serve-warning`).
    pub(super) passing: usize,
}

/// What each registry key leaves out of DNS, by reason, so the totals and the first example
/// (in key order, the same on every replica) follow a change without a pass over the registry.
#[derive(Clone, Debug, Default)]
pub(super) struct SkipIndex {
    /// Reason -> registry key -> (count, example) for that key.
    pub(super) by_reason: BTreeMap<&'static str, OrdMap<Arc<str>, (usize, String)>>,
    /// Reason -> the sum of the counts above.
    pub(super) totals: BTreeMap<&'static str, usize>,
}

impl Parts {
    /// Empty parts for a first build with `options`.
    pub(super) fn new(options: &ZoneOptions) -> Self {
        Self {
            options: Some(options.clone()),
            ..Self::default()
        }
    }

    /// Takes in `changes` (registry keys, old and new entries): counts, what is left out, and
    /// which keys serve which services. Returns the served services to encode again.
    pub(super) fn apply(
        &mut self,
        changes: &[ServiceChange<'_>],
        health: HealthFilter,
    ) -> BTreeSet<Arc<str>> {
        let mut affected = BTreeSet::new();
        for (key, old, new) in changes {
            let key: Arc<str> = Arc::from(*key);
            let mut skipped = Skipped::default();
            let old_served =
                old.map(|entries| served_by(&key, entries, health, &mut Skipped::default()));
            let new_served = new.map(|entries| served_by(&key, entries, health, &mut skipped));
            for entries in old.iter() {
                self.instances -= entries.len();
                self.passing -= entries.iter().filter(|e| health.serves(e)).count();
            }
            for entries in new.iter() {
                self.instances += entries.len();
                self.passing += entries.iter().filter(|e| health.serves(e)).count();
            }
            self.skips.set(&key, skipped);
            let names = |served: &Option<BTreeMap<String, Vec<&HealthEntry>>>| -> BTreeSet<String> {
                served
                    .as_ref()
                    .map(|s| s.keys().cloned().collect())
                    .unwrap_or_default()
            };
            let (before, after) = (names(&old_served), names(&new_served));
            for gone in before.difference(&after) {
                self.unlink(gone, &key);
            }
            for came in after.difference(&before) {
                self.link(came, &key);
            }
            affected.extend(before.union(&after).map(|name| Arc::from(name.as_str())));
        }
        affected
    }

    fn link(&mut self, served: &str, key: &Arc<str>) {
        let mut keys: Vec<Arc<str>> = self
            .served_from
            .get(served)
            .map(|keys| keys.to_vec())
            .unwrap_or_default();
        if let Err(at) = keys.binary_search(key) {
            keys.insert(at, key.clone());
        }
        self.served_from.insert(Arc::from(served), keys.into());
    }

    fn unlink(&mut self, served: &str, key: &Arc<str>) {
        let Some(keys) = self.served_from.get(served) else {
            return;
        };
        let keys: Vec<Arc<str>> = keys.iter().filter(|k| *k != key).cloned().collect();
        if keys.is_empty() {
            self.served_from.remove(served);
        } else {
            self.served_from.insert(Arc::from(served), keys.into());
        }
    }

    /// Notes that `served`'s in-domain targets looked up `keys` (replacing what it looked up
    /// before).
    pub(super) fn watch(&mut self, served: &Arc<str>, keys: impl IntoIterator<Item = Arc<[u8]>>) {
        self.unwatch(served);
        let keys: Names = keys.into_iter().collect();
        for key in keys.iter() {
            let mut services: Vec<Arc<str>> = self
                .watchers
                .get(key)
                .map(|services| services.to_vec())
                .unwrap_or_default();
            if let Err(at) = services.binary_search(served) {
                services.insert(at, served.clone());
            }
            self.watchers.insert(key.clone(), services.into());
        }
        self.watching.insert(served.clone(), keys);
    }

    /// Forgets what `served` looked up: it has no in-domain targets (any more).
    pub(super) fn unwatch(&mut self, served: &str) {
        let Some(keys) = self.watching.remove(served) else {
            return;
        };
        for key in keys.iter() {
            let Some(services) = self.watchers.get(key) else {
                continue;
            };
            let services: Vec<Arc<str>> = services
                .iter()
                .filter(|s| s.as_ref() != served)
                .cloned()
                .collect();
            if services.is_empty() {
                self.watchers.remove(key);
            } else {
                self.watchers.insert(key.clone(), services.into());
            }
        }
    }

    /// The served services whose in-domain targets looked up `key`.
    pub(super) fn watchers_of(&self, key: &[u8]) -> impl Iterator<Item = Arc<str>> + '_ {
        self.watchers
            .get(key)
            .into_iter()
            .flat_map(|services| services.iter().cloned())
    }

    /// The entries `state` has for the served service `served`, in registry key order.
    pub(super) fn entries_of<'a>(
        &self,
        served: &str,
        state: &'a RegistryState,
    ) -> Vec<&'a HealthEntry> {
        let mut out = Vec::new();
        for key in self
            .served_from
            .get(served)
            .iter()
            .flat_map(|keys| keys.iter())
        {
            let Some((key, entries)) = state.services.get_key_value(key.as_ref()) else {
                continue;
            };
            // Grouping does not depend on health: any filter gives the same groups.
            let mut grouped = served_by(
                key,
                entries,
                HealthFilter::PassingOnly,
                &mut Skipped::default(),
            );
            if let Some(group) = grouped.remove(served) {
                out.extend(group);
            }
        }
        out
    }

    /// Everything left out of DNS, by reason: the totals and the first key's example.
    pub(super) fn skipped(&self) -> Skipped {
        let mut skipped = Skipped::default();
        for (reason, keys) in &self.skips.by_reason {
            if let Some((_, (_, example))) = keys.get_min() {
                let total = self.skips.totals.get(reason).copied().unwrap_or(0);
                skipped.0.insert(reason, (total, example.clone()));
            }
        }
        skipped
    }
}

impl SkipIndex {
    /// Replaces what `key` leaves out.
    fn set(&mut self, key: &Arc<str>, skipped: Skipped) {
        for (reason, keys) in self.by_reason.iter_mut() {
            if let Some((count, _)) = keys.remove(key.as_ref()) {
                *self.totals.entry(reason).or_default() -= count;
            }
        }
        for (reason, (count, example)) in skipped.0 {
            *self.totals.entry(reason).or_default() += count;
            self.by_reason
                .entry(reason)
                .or_default()
                .insert(key.clone(), (count, example));
        }
        self.by_reason.retain(|_, keys| !keys.is_empty());
    }
}

#[cfg(test)]
mod tests;
