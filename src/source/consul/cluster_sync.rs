//! Following the registry through the catalog watch and, in cluster mode, the checks watch
//! on the non-passing checks: what an answer names as changed, and fetching those services.
//!
//! What the non-passing checks cannot show (a passing instance that registers or leaves) moves
//! the catalog's index without naming a service: one read of every check
//! (`/v1/health/state/any`), diffed with the checks the state implies, names the services it
//! touched; only a change it does not explain either (a move, an instance without checks)
//! costs a full resync.
//!
//! In per-service mode only the catalog watch runs here, and its answer goes to
//! [`super::service_sync`]: each service's own watch carries everything else.

use std::collections::BTreeSet;

use tokio::time::Instant;
use tracing::debug;

use super::diff::{check_map, diff_catalog, diff_checks, implied_checks};
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
                // The catalog index moved but not its content: an instance came, went or moved,
                // or (where one index covers every table) a check changed. The checks watch may
                // tell which; if it does not, every check is read once (`apply_pending`).
                // Only a check change at this very index explains it: where each table has its
                // own index (Consul), a check that flipped since `previous` explains nothing.
                if changed.is_empty() && self.last_check_change != index {
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
        let mut due = self.pending.take(now);
        if due.full {
            self.request_full(now);
            return;
        }
        let started = Instant::now();
        let mut cost = Cost::default();
        // Services the check list named for a catalog change nothing else explained.
        let mut explaining = BTreeSet::new();
        if due.resync {
            explaining = self.explain_catalog_change(&mut cost).await;
            if explaining.is_empty() {
                self.resync_unexplained(now);
            }
            due.services.extend(explaining.iter().cloned());
        }
        if due.services.is_empty() {
            self.count_alone(cost);
            return;
        }
        let names: Vec<String> = due.services.iter().cloned().collect();
        let concurrency = self.settings.max_concurrent_requests;
        match fetch_services(&self.client, concurrency, names, &mut cost).await {
            Ok(fetched) => {
                self.truth.index = self.truth.index.max(due.index);
                let mut explained = explaining.is_empty();
                for (name, answer) in fetched {
                    let changed = self.take_service(&name, answer);
                    explained |= changed && explaining.contains(&name);
                }
                if !explained {
                    // The check list differed from the state's, but not in what DNS serves
                    // (a difference between the two views of the same checks): it did not
                    // explain the catalog's move after all.
                    self.resync_unexplained(now);
                }
                self.change_backoff.reset();
                let report = self.report(SyncKind::Changes, started, cost, due.services.len());
                self.publish(Some(report)).await;
            }
            Err(error) => {
                self.sync_failed(&error, cost);
                let retry = Instant::now() + self.change_backoff.next();
                self.pending.retry(due.services, due.index, retry);
                if !explaining.is_empty() {
                    // Not fetched, so not known to explain it: the resync still covers it.
                    self.resync_unexplained(now);
                }
            }
        }
    }

    /// The catalog's index moved and nothing it or the non-passing checks showed explains it:
    /// reads every check once (not blocking) and names the services whose checks differ from
    /// the ones the state implies (an instance with checks that registered or left). Names none
    /// when the read fails: the full resync then covers the change.
    async fn explain_catalog_change(&mut self, cost: &mut Cost) -> BTreeSet<String> {
        let implied = implied_checks(&self.truth);
        self.client.expect_checks(implied.len());
        cost.requests += 1;
        let fetched = match self.client.checks(None).await {
            Ok(fetched) => fetched,
            Err(error) => {
                debug!(%error, "reading every check to explain a catalog change failed; full resync");
                return BTreeSet::new();
            }
        };
        cost.wire_bytes += fetched.wire_bytes;
        cost.json_bytes += fetched.json_bytes;
        let (named, _) = diff_checks(&implied, &check_map(fetched.value), &self.truth);
        debug!(
            services = named.len(),
            wire_bytes = fetched.wire_bytes,
            "catalog change without a named service: the check list names these"
        );
        named
    }

    /// Schedules the full resync for a change nothing explained, at most one per
    /// [`UNEXPLAINED_RESYNC_GAP`].
    fn resync_unexplained(&mut self, now: Instant) {
        let earliest = self
            .last_full_start
            .map_or(now, |at| at + UNEXPLAINED_RESYNC_GAP);
        self.request_full(earliest.max(now));
        debug!("catalog changed without naming a service; full resync scheduled");
    }

    /// Counts requests that led to no sync report.
    fn count_alone(&self, cost: Cost) {
        if cost.requests > 0 {
            self.status.update(|view| {
                view.totals.requests += cost.requests;
                view.totals.wire_bytes += cost.wire_bytes;
                view.totals.json_bytes += cost.json_bytes;
            });
        }
    }
}
