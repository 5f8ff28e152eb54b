//! Following the registry through per-service watches: which services are watched, what an
//! answer changes, and when the changes are published.
//!
//! In per-service mode the truth changes one service at a time, straight from that service's
//! blocking query: no cluster-wide list is read, and the catalog watch only says which services
//! came and went. Changes that arrive close together are published together, and never more
//! often than the snapshot builds allow (see [`PUBLISH_GAP_BUILDS`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::diff::{implied_checks, non_passing};
use super::retry::Cost;
use super::service_watches::ServiceAnswer;
use super::watches::Endpoint;
use super::{SyncTask, WatchMode};
use crate::registry::consul::{Fetched, ServiceList};
use crate::registry::HealthEntry;
use crate::source::status::SyncKind;

/// The status channel of service watch faults.
const SERVICE_CHANNEL: &str = "service watches";

/// Answers arriving within this long of the first are published together.
const COALESCE: Duration = Duration::from_millis(20);

/// A publish waits at least this many times the last snapshot build after the previous one,
/// so that sustained churn spends at most about a quarter of a core on builds.
const PUBLISH_GAP_BUILDS: u32 = 3;

/// Registry requests kept free of watches: the catalog and checks watches and a resync's
/// concurrent fetches use them.
fn reserved(concurrency: usize) -> usize {
    concurrency + 2
}

/// Service changes applied to the truth and not yet published.
#[derive(Debug)]
pub(super) struct Unpublished {
    /// When the first of them arrived.
    first: Instant,
    /// When they are due.
    due: Instant,
    cost: Cost,
    services: usize,
}

impl Unpublished {
    /// When they are due.
    pub(super) fn due(&self) -> Instant {
        self.due
    }
}

impl SyncTask {
    /// Chooses between per-service and cluster-wide watches for the services in `catalog`,
    /// and starts or stops service watches to match. Runs after every full resync and catalog
    /// answer.
    pub(super) fn plan_watches(&mut self) {
        let (capacity, per_lane) = self
            .client
            .watch_capacity(reserved(self.settings.max_concurrent_requests));
        // The catalog watch is one more blocking query.
        let fits = self.catalog.len() < capacity;
        let per_service = match self.settings.watch_mode {
            WatchMode::PerService => true,
            WatchMode::Cluster => false,
            WatchMode::Auto => fits,
        };
        let entering_cluster = !per_service && (self.per_service || !self.planned);
        if entering_cluster && (self.per_service || self.watches.get(Endpoint::Checks).index == 0) {
            // Cluster mode without a current check list of its own: the state implies one (its
            // non-passing checks), and the checks watch's first answer (index 0 returns at
            // once) is diffed with it.
            self.checks = non_passing(implied_checks(&self.truth));
            self.watches.get_mut(Endpoint::Checks).index = 0;
        }
        if per_service != self.per_service || !self.planned {
            info!(
                services = self.catalog.len(),
                capacity,
                mode = if per_service {
                    "per-service"
                } else {
                    "cluster"
                },
                "registry watch mode"
            );
            if per_service && !fits {
                warn!(
                    services = self.catalog.len(),
                    capacity,
                    "--watch-mode per-service: more blocking queries than --registry-connections allows; Consul may refuse connections over its limit"
                );
            }
            self.per_service = per_service;
            self.planned = true;
            self.status
                .update(|view| view.per_service_watches = per_service);
        }
        if !per_service {
            self.services.clear();
            return;
        }
        let gone: Vec<String> = self
            .services
            .names()
            .filter(|name| !self.catalog.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.services.remove(&name);
        }
        let wait = self.settings.blocking_wait;
        for name in self.catalog.keys() {
            if !self.services.contains(name) {
                let index = self.service_index.get(name).copied().unwrap_or(0);
                self.services.add(name, index, per_lane, &self.client, wait);
            }
        }
        self.status
            .update(|view| view.service_watches = self.services.len());
    }

    /// Per-service mode: a catalog answer only adds and removes services (each service's own
    /// watch sees everything else).
    pub(super) fn on_catalog_per_service(&mut self, list: ServiceList) {
        let now = Instant::now();
        let removed: Vec<String> = self
            .catalog
            .keys()
            .filter(|name| !list.contains_key(*name))
            .cloned()
            .collect();
        self.catalog = list;
        for name in removed {
            self.service_index.remove(&name);
            if self.full.is_some() {
                self.changed_during_full.insert(name.clone());
            }
            if self.truth.services.remove(&name).is_some() {
                self.mark_unpublished(now, Cost::default());
            }
        }
        self.plan_watches();
    }

    /// Takes in one service watch's answer and sends that watch's next request.
    pub(super) fn on_service_answer(&mut self, answer: ServiceAnswer) {
        let ServiceAnswer {
            name,
            sent,
            number,
            result,
            ..
        } = answer;
        let wait = self.settings.blocking_wait;
        let fetched = match result {
            Ok(fetched) => fetched,
            Err(error) => {
                self.status.update(|view| view.totals.requests += 1);
                // Answers to requests sent before this one do not end the fault: many watches
                // share the channel, and one held since before the fault may still succeed.
                self.service_fault_after = self.services.last_request();
                self.report_fault(SERVICE_CHANNEL, &error);
                self.services
                    .next_request(&name, None, true, &self.client, wait);
                return;
            }
        };
        if number > self.service_fault_after {
            self.report_ok(SERVICE_CHANNEL, &fetched);
        } else {
            self.note_leader(&fetched);
        }
        let known = self.services.index(&name).unwrap_or(0);
        // Newer than what is applied; or older than what was asked for, which is Consul's
        // "index went backwards" (a snapshot restore): start over from this answer.
        let applied = (fetched.index > known || fetched.index < sent).then_some(fetched.index);
        let (wire_bytes, json_bytes) = (fetched.wire_bytes, fetched.json_bytes);
        // A changed service is counted with the publish it causes.
        if applied.is_none() || !self.apply_service(&name, fetched) {
            self.status.update(|view| {
                view.totals.requests += 1;
                view.totals.wire_bytes += wire_bytes;
                view.totals.json_bytes += json_bytes;
            });
        }
        self.services
            .next_request(&name, applied, false, &self.client, wait);
    }

    /// Makes `fetched` the truth of service `name`; whether that changed the truth.
    fn apply_service(&mut self, name: &str, fetched: Fetched<Vec<HealthEntry>>) -> bool {
        let cost = Cost {
            requests: 1,
            wire_bytes: fetched.wire_bytes,
            json_bytes: fetched.json_bytes,
        };
        if !self.take_service(name, fetched) {
            return false;
        }
        self.mark_unpublished(Instant::now(), cost);
        true
    }

    /// Takes a fetched answer of service `name` into the truth (its index, and its entries
    /// when they differ, so unchanged entries stay shared); whether the entries changed. A
    /// full resync running meanwhile keeps this newer answer.
    pub(super) fn take_service(&mut self, name: &str, fetched: Fetched<Vec<HealthEntry>>) -> bool {
        self.service_index.insert(name.to_string(), fetched.index);
        self.truth.index = self.truth.index.max(fetched.index);
        if self.full.is_some() {
            self.changed_during_full.insert(name.to_string());
        }
        let same = match self.truth.services.get(name) {
            Some(entries) => **entries == fetched.value,
            None => fetched.value.is_empty(),
        };
        if same {
            return false;
        }
        if fetched.value.is_empty() {
            self.truth.services.remove(name);
        } else {
            self.truth
                .services
                .insert(name.to_string(), Arc::new(fetched.value));
        }
        true
    }

    fn mark_unpublished(&mut self, now: Instant, cost: Cost) {
        let earliest = self.publish_free_at;
        let pending = self.unpublished.get_or_insert_with(|| Unpublished {
            first: now,
            due: (now + COALESCE).max(earliest),
            cost: Cost::default(),
            services: 0,
        });
        pending.cost.add(cost);
        pending.services += 1;
    }

    /// Publishes the service changes applied since the last publish.
    pub(super) async fn publish_unpublished(&mut self) {
        let Some(pending) = self.unpublished.take() else {
            return;
        };
        let report = self.report(
            SyncKind::Changes,
            pending.first,
            pending.cost,
            pending.services,
        );
        let started = Instant::now();
        self.publish(Some(report)).await;
        self.publish_free_at = Instant::now() + started.elapsed() * PUBLISH_GAP_BUILDS;
    }
}
