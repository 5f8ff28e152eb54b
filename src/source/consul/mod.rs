//! The sync engine: keeps the published snapshot in step with Consul, persists it, and keeps
//! serving the last good state through every registry fault.
//!
//! One [`SyncTask`] per process. It does a full resync (every service) at start and then every
//! `--sync-interval` with jitter, and follows changes in between: per service (one blocking
//! query each, when they fit the connection budget), or in cluster mode through two blocking
//! queries whatever the number of services:
//!
//! * `/v1/catalog/services` (services and tags) and
//! * the checks that are not passing (`/v1/health/state/critical`, then `/warning`).
//!
//! When either returns a newer index, the difference with the previous answer names the changed
//! services (a node check names every service on that node); only those are fetched with
//! `/v1/health/service/<name>`. A catalog change that names no service (a passing instance
//! that came or went, a move) reads `/v1/health/state/any` once to name it, and schedules a
//! full resync, at most every [`UNEXPLAINED_RESYNC_GAP`], when that names none either.
//!
//! Every state goes through [`preserve::SelfPreservation`] before it is built and published, and
//! every published state is handed to the persister, which appends it to the state journal at
//! most once per `--persist-interval` ([`PERSIST_INTERVAL`] by default). A failed request never clears the snapshot; faults are logged once per
//! change of state and shown in [`SourceStatus`]. See docs/sync.md.

mod cluster_sync;
mod diff;
mod fetch;
mod log;
mod pending;
mod persist_writer;
mod persister;
pub mod preserve;
mod restore;
mod retry;
mod service_sync;
mod service_watches;
mod watches;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::status::{
    HeldInstance, SnapshotOrigin, SourceStatus, SyncKind, SyncReport, HELD_LIST_LIMIT,
};
use super::{publish, Origin};
use crate::persist::{self, Persisted};
use crate::registry::consul::{ConsulClient, FaultKind, ServiceList};
use crate::registry::RegistryState;
use crate::snapshot::{SnapshotStore, ZoneOptions};
use diff::{check_map, CheckMap};
use fetch::{join_full, FullResult, Merged, RunningFull};
use log::log_transition;
use pending::Pending;
pub use persist_writer::Adoptable;
use persister::persist_loop;
pub use persister::PERSIST_INTERVAL;
use preserve::SelfPreservation;
pub use restore::{restore, Restoring};
use retry::{jittered, Backoff};
use service_sync::Unpublished;
use service_watches::{ServiceAnswer, ServiceWatches};
use watches::{Endpoint, WatchResult, Watches};

/// Backoff after failed requests grows at most to this (or `--sync-interval`, if shorter).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A catalog change that names no service triggers a full resync at most this often.
pub const UNEXPLAINED_RESYNC_GAP: Duration = Duration::from_secs(5);

/// Settings of the sync engine.
#[derive(Clone, Debug)]
pub struct SyncSettings {
    /// Full resync period (jittered by up to a tenth either way).
    pub sync_interval: Duration,
    /// How long Consul may hold a blocking query.
    pub blocking_wait: Duration,
    /// Registry requests in flight at once during a sync.
    pub max_concurrent_requests: usize,
    /// Self-preservation threshold, a share of the served instances (0 = off).
    pub self_preservation_threshold: f64,
    /// How long departing instances are held.
    pub self_preservation_window: Duration,
    /// Where the state is persisted.
    pub state_dir: PathBuf,
    /// The state is saved at most this often (a kill -9 loses at most about this much).
    pub persist_interval: Duration,
    /// The datacenter (recorded in the state file).
    pub datacenter: String,
    /// How changes are followed.
    pub watch_mode: WatchMode,
    /// The zone shape for snapshot builds.
    pub zone: ZoneOptions,
}

/// How the sync follows changes between full resyncs (`--watch-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    /// Per-service when every service's blocking query fits the connection budget.
    Auto,
    /// A blocking query per service, whatever the budget.
    PerService,
    /// The two cluster-wide blocking queries.
    Cluster,
}

/// What woke the sync loop.
enum Wake {
    Watch(Endpoint, u64, WatchResult),
    Service(ServiceAnswer),
    Full(Instant, FullResult),
    Timer,
}

/// Keeps the store in step with Consul. See the module documentation.
pub struct SyncTask {
    client: ConsulClient,
    settings: SyncSettings,
    store: SnapshotStore,
    status: Arc<SourceStatus>,
    /// The registry's state as last fetched (before self-preservation).
    truth: RegistryState,
    /// The state being served.
    published: Arc<RegistryState>,
    catalog: ServiceList,
    checks: CheckMap,
    watches: Watches,
    preserve: SelfPreservation,
    pending: Pending,
    /// Index of the last checks-watch answer that differed from the one before.
    last_check_change: u64,
    synced: bool,
    next_full: Instant,
    last_full_start: Option<Instant>,
    /// The full resync in progress, if any.
    full: Option<RunningFull>,
    /// A full resync asked for while one was running, and from when.
    full_again: Option<Instant>,
    /// Services a change sync updated while the full resync ran.
    changed_during_full: BTreeSet<String>,
    full_backoff: Backoff,
    change_backoff: Backoff,
    persist: watch::Sender<Option<persister::ToSave>>,
    /// The persisted base start-up read, for the first save to append to.
    adopted: Option<Adoptable>,
    /// Per-service watches (per-service mode only).
    services: ServiceWatches,
    /// Per-service mode is on.
    per_service: bool,
    /// The mode was chosen once.
    planned: bool,
    /// The index each service was last fetched at.
    service_index: HashMap<String, u64>,
    /// Service changes applied and not yet published.
    unpublished: Option<Unpublished>,
    /// The next publish of service changes waits until then.
    publish_free_at: Instant,
    /// Only an answer to a service request sent after this one ends a service watch fault.
    service_fault_after: u64,
}

impl SyncTask {
    /// A task publishing into `store`; the snapshot already there (from disk) is the baseline.
    pub fn new(
        client: ConsulClient,
        settings: SyncSettings,
        store: SnapshotStore,
        status: Arc<SourceStatus>,
    ) -> Self {
        let published = store
            .current()
            .map_or_else(Default::default, |s| s.state.clone());
        let now = Instant::now();
        // Retries back off up to this: a registry that comes back is seen within it.
        let cap = settings.sync_interval.min(MAX_BACKOFF);
        status.update(|view| {
            view.preservation.threshold = settings.self_preservation_threshold;
            view.preservation.window = settings.self_preservation_window;
        });
        Self {
            preserve: SelfPreservation::new(
                settings.self_preservation_threshold,
                settings.self_preservation_window,
                settings.zone.health,
            ),
            truth: (*published).clone(),
            published,
            client,
            store,
            status,
            catalog: ServiceList::new(),
            checks: CheckMap::new(),
            watches: Watches::new(now, cap),
            pending: Pending::default(),
            last_check_change: 0,
            synced: false,
            next_full: now,
            last_full_start: None,
            full: None,
            full_again: None,
            changed_during_full: BTreeSet::new(),
            full_backoff: Backoff::new(Duration::from_millis(500), cap),
            change_backoff: Backoff::new(Duration::from_millis(250), cap),
            persist: watch::channel(None).0,
            adopted: None,
            services: ServiceWatches::new(cap),
            per_service: false,
            planned: false,
            service_index: HashMap::new(),
            unpublished: None,
            publish_free_at: now,
            service_fault_after: 0,
            settings,
        }
    }

    /// The first save appends to the journal of `base`, the persisted base start-up served
    /// (from [`Restoring::finished`]), rather than writing a whole base.
    pub fn adopting(mut self, base: Option<Adoptable>) -> Self {
        self.adopted = base;
        self
    }

    /// Syncs until `shutdown` is cancelled, then writes the last unsaved state.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let persister = tokio::spawn(persist_loop(
            self.persist.subscribe(),
            self.settings.state_dir.clone(),
            self.settings.persist_interval,
            self.status.clone(),
            self.adopted.take(),
            shutdown.clone(),
        ));
        info!(url = self.client.url(), "registry sync started");
        loop {
            if self.synced {
                let checks = !self.per_service;
                self.watches
                    .arm(&self.client, self.settings.blocking_wait, checks);
            }
            let wake = self.next_wake();
            let event = tokio::select! {
                () = shutdown.cancelled() => break,
                (endpoint, sent, result) = self.watches.next() => Wake::Watch(endpoint, sent, result),
                answer = self.services.next() => Wake::Service(answer),
                (started, result) = join_full(&mut self.full) => Wake::Full(started, result),
                () = tokio::time::sleep_until(wake) => Wake::Timer,
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.handle(event) => {}
            }
        }
        self.watches.abort();
        self.services.clear();
        if let Some(full) = self.full.take() {
            full.abort();
        }
        let _ = persister.await;
        debug!("registry sync stopped");
    }

    /// Takes in what woke the loop, then does what is due.
    async fn handle(&mut self, event: Wake) {
        let now = Instant::now();
        match event {
            Wake::Watch(endpoint, sent, result) => self.on_watch(endpoint, sent, result),
            Wake::Service(answer) => self.on_service_answer(answer),
            Wake::Full(started, result) => self.on_full(started, result).await,
            Wake::Timer => {}
        }
        if now >= self.next_full && self.full.is_none() {
            self.start_full();
        }
        if self
            .unpublished
            .as_ref()
            .is_some_and(|pending| now >= pending.due())
        {
            self.publish_unpublished().await;
        }
        if self.pending.is_due(now) {
            self.apply_pending().await;
        } else if self
            .preserve
            .next_release()
            .is_some_and(|at| now >= at.into())
        {
            self.publish(None).await;
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = if self.full.is_some() {
            Instant::now() + self.settings.sync_interval
        } else {
            self.next_full
        };
        if self.synced {
            if let Some(start) = self.watches.next_start(!self.per_service) {
                wake = wake.min(start);
            }
        }
        if let Some(due) = self.pending.due() {
            wake = wake.min(due);
        }
        if let Some(pending) = &self.unpublished {
            wake = wake.min(pending.due());
        }
        if let Some(release) = self.preserve.next_release() {
            wake = wake.min(release.into());
        }
        wake
    }

    /// Starts a full resync in the background; changes keep being applied meanwhile.
    fn start_full(&mut self) {
        // The non-passing checks are the checks watch's baseline: not needed per service.
        let full = RunningFull::start(
            self.client.clone(),
            self.settings.max_concurrent_requests,
            if self.planned {
                !self.per_service
            } else {
                self.settings.watch_mode == WatchMode::Cluster
            },
        );
        self.last_full_start = Some(full.started);
        self.changed_during_full.clear();
        self.full = Some(full);
    }

    /// Asks for a full resync no sooner than `at` (after the running one, if any).
    fn request_full(&mut self, at: Instant) {
        if self.full.is_some() {
            self.full_again = Some(self.full_again.map_or(at, |again| again.min(at)));
        } else {
            self.next_full = self.next_full.min(at);
        }
    }

    /// Takes in a finished full resync: the new truth, the watches' baselines, then publishes.
    async fn on_full(&mut self, started: Instant, (result, cost): FullResult) {
        let again = self.full_again.take();
        let answer = match result {
            Ok(answer) => answer,
            Err(error) => {
                self.sync_failed(&error, cost);
                let retry = Instant::now() + self.full_backoff.next();
                self.next_full = again.map_or(retry, |at| at.min(retry));
                return;
            }
        };
        let previous = self.truth.index;
        for (name, fetched) in &answer.services {
            self.service_index.insert(name.clone(), fetched.index);
            self.services.caught_up(name, fetched.index);
        }
        let changed = std::mem::take(&mut self.changed_during_full);
        let merged = answer.merge(&self.truth, self.synced, changed);
        let (backwards, fetched) = (merged.backwards, merged.fetched);
        self.adopt(merged);
        let first = !self.synced;
        self.synced = true;
        self.full_backoff.reset();
        let next = Instant::now() + jittered(self.settings.sync_interval);
        self.next_full = again.map_or(next, |at| at.min(next));
        if backwards {
            // A snapshot restore (or a lagging server): follow the registry, and say so.
            let message = format!(
                "full sync: registry index went backwards from {previous} to {}; following it",
                self.truth.index
            );
            let transition = self
                .status
                .fault("index", FaultKind::IndexBackwards, &message);
            log_transition(transition, &message);
        } else {
            log_transition(self.status.clear("index"), "");
        }
        let report = self.report(SyncKind::Full, started, cost, fetched);
        if first {
            info!(
                services = self.truth.services.len(),
                instances = self.truth.instance_count(),
                index = self.truth.index,
                requests = report.requests,
                wire_bytes = report.wire_bytes,
                json_bytes = report.json_bytes,
                duration_ms = report.duration.as_millis() as u64,
                "first registry sync done"
            );
        }
        self.publish(Some(report)).await;
    }

    /// Makes a full resync's state the truth, and its answers the baselines of the watches
    /// that have not moved past them.
    fn adopt(&mut self, merged: Merged) {
        let Merged {
            truth,
            backwards,
            checks,
            catalog,
            ..
        } = merged;
        self.note_leader(&catalog);
        let watch = self.watches.get_mut(Endpoint::Catalog);
        if backwards || watch.index <= catalog.index {
            watch.index = catalog.index;
            self.catalog = catalog.value;
        }
        if let Some(checks) = checks {
            let watch = self.watches.get_mut(Endpoint::Checks);
            if backwards || watch.index <= checks.index {
                watch.index = checks.index;
                self.checks = check_map(checks.value);
            }
        }
        self.truth = truth;
        self.plan_watches();
    }

    /// Self-preservation, then build and publish the state if it differs, then persist it.
    async fn publish(&mut self, report: Option<SyncReport>) {
        // The served snapshot counts the instances it serves: self-preservation needs not.
        let published_served = self
            .store
            .current()
            .map_or(0, |snapshot| snapshot.stats.passing_instances);
        let (state, events) = self.preserve.apply(
            &self.truth,
            &self.published,
            published_served,
            std::time::Instant::now(),
        );
        self.log_preservation(&events);
        // Recorded first: a client that sees the new answers finds the sync in `/health` too.
        self.record(report);
        log_transition(self.status.clear("sync"), "");
        if !state.same_as(&self.published) {
            let state = Arc::new(state);
            let fetched_at = SystemTime::now();
            let (store, options, input, status) = (
                self.store.clone(),
                self.settings.zone.clone(),
                state.clone(),
                self.status.clone(),
            );
            let built = tokio::task::spawn_blocking(move || {
                publish(
                    &store,
                    input,
                    fetched_at,
                    &options,
                    Origin::Registry,
                    &status,
                )
            })
            .await;
            match built {
                Ok(Ok(snapshot)) => {
                    self.published = state.clone();
                    let persisted = Arc::new(Persisted {
                        datacenter: self.settings.datacenter.clone(),
                        fetched_at_ms: persist::unix_ms(fetched_at),
                        saved_at_ms: 0,
                        state,
                    });
                    self.persist.send_replace(Some((persisted, snapshot)));
                }
                Ok(Err(_)) => {} // logged by `publish`; the previous snapshot stays served
                Err(error) => {
                    error!(%error, "registry snapshot build panicked; serving the previous one")
                }
            }
        }
        self.record_held();
    }

    /// Lists the held instances in the status once the snapshot holding them is served, so
    /// that `/v1/explain` marks what the served answers hold.
    fn record_held(&self) {
        let held: Arc<[HeldInstance]> = if self.preserve.held() == 0 {
            Arc::new([])
        } else {
            self.preserve.held_list(&self.truth, HELD_LIST_LIMIT).into()
        };
        self.status.update(|view| view.preservation.held = held);
    }

    /// Records self-preservation and the sync's report in the status.
    fn record(&self, report: Option<SyncReport>) {
        let held = self.preserve.held();
        let since = self
            .preserve
            .since()
            .map(|at| SystemTime::now() - at.elapsed());
        let next_release = self
            .preserve
            .next_release()
            .map(|at| SystemTime::now() + at.saturating_duration_since(std::time::Instant::now()));
        self.status.update(|view| {
            view.preservation.held_instances = held;
            view.preservation.since = since;
            view.preservation.next_release = next_release;
            if let Some(report) = report {
                view.snapshot_origin = SnapshotOrigin::Registry;
                view.last_success = report.at;
                match report.kind {
                    SyncKind::Full => {
                        view.totals.full_syncs += 1;
                        view.last_full_sync = Some(report.clone());
                    }
                    SyncKind::Changes => view.totals.change_syncs += 1,
                }
                view.last_sync = Some(report);
            }
        });
    }
}
