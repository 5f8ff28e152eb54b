//! Following the registry through the catalog watch and, in cluster mode, the cluster-wide
//! checks watch: what an answer names as changed, and fetching those services.
//!
//! In per-service mode only the catalog watch runs here, and its answer goes to
//! [`super::service_sync`]: each service's own watch carries everything else.

use std::collections::BTreeSet;

use tokio::time::Instant;
use tracing::debug;

use super::diff::{check_map, diff_catalog, diff_checks};
use super::fetch::fetch_services;
use super::log::log_transition;
use super::retry::Cost;
use super::watches::{Endpoint, WatchResult, WatchValue};
use super::{SyncTask, UNEXPLAINED_RESYNC_GAP};
use crate::registry::consul::FaultKind;
use crate::source::status::SyncKind;

impl SyncTask {
    /// Takes in a watch's answer to the request sent with index `sent`.
    pub(super) fn on_watch(&mut self, endpoint: Endpoint, sent: u64, result: WatchResult) {
        let now = Instant::now();
        let channel = endpoint.channel();
        self.count_request(&result);
        let fetched = match result {
            Ok(fetched) => fetched,
            Err(error) => {
                self.report_fault(channel, &error);
                self.watches.get_mut(endpoint).failed(now);
                return;
            }
        };
        self.report_ok(channel, &fetched);
        let watch = self.watches.get_mut(endpoint);
        watch.succeeded(fetched.wire_bytes);
        if sent > watch.index {
            return; // a full sync followed an index reset while this request was out: stale
        }
        if fetched.index < sent {
            // Consul's rule: an index that goes backwards resets the watch to 0; the data may
            // have changed arbitrarily (snapshot restore), so resync everything.
            watch.index = 0;
            let message = format!(
                "{channel}: registry index went backwards from {sent} to {}; resyncing",
                fetched.index
            );
            log_transition(
                self.status
                    .fault("index", FaultKind::IndexBackwards, &message),
                &message,
            );
            self.pending.full_resync(now);
            return;
        }
        if fetched.index <= watch.index {
            return; // the wait ran out, or nothing newer than a full sync already saw
        }
        let previous = std::mem::replace(&mut watch.index, fetched.index);
        let changed = self.diff_answer(fetched.value, previous, fetched.index, now);
        self.pending.add(changed, fetched.index, now);
    }

    /// The services a watch answer at `index` (newer than `previous`) names as changed; it
    /// becomes the baseline for the next diff.
    fn diff_answer(
        &mut self,
        value: WatchValue,
        previous: u64,
        index: u64,
        now: Instant,
    ) -> BTreeSet<String> {
        match value {
            WatchValue::Catalog(list) if self.per_service => {
                self.on_catalog_per_service(list);
                BTreeSet::new()
            }
            WatchValue::Catalog(list) => {
                let changed = diff_catalog(&self.catalog, &list);
                self.catalog = list;
                // The catalog index moved but not its content: an instance without checks came,
                // went or changed, or (where one index covers every table) a check changed. Only
                // the checks watch can tell which.
                if changed.is_empty() && self.last_check_change <= previous {
                    let checks_index = self.watches.get(Endpoint::Checks).index;
                    self.pending
                        .catalog_unexplained(previous, index, checks_index, now);
                }
                // The services may fit the connection budget now.
                self.plan_watches();
                changed
            }
            WatchValue::Checks(checks) => {
                let map = check_map(checks);
                let (changed, any) = diff_checks(&self.checks, &map, &self.truth);
                self.checks = map;
                if any {
                    self.last_check_change = index;
                }
                self.pending.checks_answered(self.last_check_change, index);
                changed
            }
        }
    }

    /// Applies what the watches saw: fetches the changed services, or schedules a full resync.
    pub(super) async fn apply_pending(&mut self) {
        let now = Instant::now();
        let due = self.pending.take(now);
        if due.full {
            self.request_full(now);
            return;
        }
        if due.resync {
            let earliest = self
                .last_full_start
                .map_or(now, |at| at + UNEXPLAINED_RESYNC_GAP);
            self.request_full(earliest.max(now));
            debug!("catalog changed without naming a service; full resync scheduled");
        }
        if due.services.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut cost = Cost::default();
        let names: Vec<String> = due.services.iter().cloned().collect();
        let concurrency = self.settings.max_concurrent_requests;
        match fetch_services(&self.client, concurrency, names, &mut cost).await {
            Ok(fetched) => {
                self.truth.index = self.truth.index.max(due.index);
                for (name, answer) in fetched {
                    self.take_service(&name, answer);
                }
                self.change_backoff.reset();
                let report = self.report(SyncKind::Changes, started, cost, due.services.len());
                self.publish(Some(report)).await;
            }
            Err(error) => {
                self.sync_failed(&error, cost);
                let retry = Instant::now() + self.change_backoff.next();
                self.pending.retry(due.services, due.index, retry);
            }
        }
    }
}
