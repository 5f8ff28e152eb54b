//! The sync engine: keeps the published snapshot in step with Consul, persists it, and keeps
//! serving the last good state through every registry fault.
//!
//! One [`SyncTask`] per process. It does a full resync (every service) at start and then every
//! `--sync-interval` with jitter, and follows changes in between through two blocking queries on
//! cluster-wide endpoints, whatever the number of services:
//!
//! * `/v1/catalog/services` (services and tags) and
//! * `/v1/health/state/any` (every check, with its node, service and status).
//!
//! When either returns a newer index, the difference with the previous answer names the changed
//! services (a node check names every service on that node); only those are fetched with
//! `/v1/health/service/<name>`. A catalog change that names no service (an instance without
//! checks) schedules a full resync, at most every [`UNEXPLAINED_RESYNC_GAP`].
//!
//! Every state goes through [`preserve::SelfPreservation`] before it is built and published, and
//! every published state is handed to the persister, which writes at most once per
//! [`PERSIST_INTERVAL`]. A failed request never clears the snapshot; faults are logged once per
//! change of state and shown in [`status::SyncStatus`]. See docs/sync.md.

mod fetch;
mod persister;
pub mod preserve;
mod report;
mod retry;
pub mod status;
mod watches;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use crate::persist::{self, Persisted};
use crate::registry::consul::{Blocking, ConsulClient, FaultKind, ServiceList};
use crate::registry::RegistryState;
use crate::snapshot::{Snapshot, SnapshotStore, ZoneOptions};
use fetch::{fetch_services, join_full, FullAnswer, FullResult, RunningFull};
use persister::persist_loop;
pub use persister::{restore, PERSIST_INTERVAL};
use preserve::SelfPreservation;
use report::log_transition;
use retry::{jittered, Backoff, Cost};
use status::{SyncReport, SyncStatus};
use watches::{
    check_map, diff_catalog, diff_checks, join_watch, CheckMap, Endpoint, Watch, WatchResult,
    WatchValue, WATCH_BURST, WATCH_REFILL,
};

/// A catalog change that names no service triggers a full resync at most this often.
pub const UNEXPLAINED_RESYNC_GAP: Duration = Duration::from_secs(5);

/// How long a catalog change with no visible cause waits for the checks watch to explain it.
const UNEXPLAINED_GRACE: Duration = Duration::from_millis(1500);

/// After a watch reports a change, wait this long for the other one before fetching.
const COALESCE: Duration = Duration::from_millis(30);

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
    /// The datacenter (recorded in the state file).
    pub datacenter: String,
    /// The zone shape for snapshot builds.
    pub zone: ZoneOptions,
}

/// Changes seen by the watches and not yet applied.
#[derive(Debug, Default)]
struct Pending {
    services: BTreeSet<String>,
    /// The catalog index moved from the first to the second index with no change in its content,
    /// and no check change explains it yet; unexplained for good after the deadline.
    unexplained: Option<(u64, u64, Instant)>,
    /// A change nothing explains: resync everything (rate-limited).
    resync: bool,
    /// A full resync is needed (index went backwards).
    full: bool,
    /// Highest watch index behind these changes.
    index: u64,
    due: Option<Instant>,
}

/// What woke the sync loop.
enum Wake {
    Watch(usize, u64, WatchResult),
    Full(Instant, FullResult),
    Timer,
}

/// Keeps the store in step with Consul. See the module documentation.
pub struct SyncTask {
    client: ConsulClient,
    settings: SyncSettings,
    store: SnapshotStore,
    status: Arc<SyncStatus>,
    /// The registry's state as last fetched (before self-preservation).
    truth: RegistryState,
    /// The state being served.
    published: Arc<RegistryState>,
    catalog: ServiceList,
    checks: CheckMap,
    watches: [Watch; 2],
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
    persist: watch::Sender<Option<Arc<Persisted>>>,
}

impl SyncTask {
    /// A task publishing into `store`; the snapshot already there (from disk) is the baseline.
    pub fn new(
        client: ConsulClient,
        settings: SyncSettings,
        store: SnapshotStore,
        status: Arc<SyncStatus>,
    ) -> Self {
        let published = store
            .current()
            .map_or_else(Default::default, |s| s.state.clone());
        let now = Instant::now();
        let cap = settings.sync_interval;
        let watch = |endpoint| Watch {
            endpoint,
            index: 0,
            in_flight: None,
            not_before: now,
            tokens: WATCH_BURST,
            refilled: now,
            backoff: Backoff::new(Duration::from_millis(250), cap),
        };
        status.update(|view| {
            view.preservation.threshold = settings.self_preservation_threshold;
            view.preservation.window = settings.self_preservation_window;
        });
        Self {
            preserve: SelfPreservation::new(
                settings.self_preservation_threshold,
                settings.self_preservation_window,
            ),
            truth: (*published).clone(),
            published,
            client,
            store,
            status,
            catalog: ServiceList::new(),
            checks: CheckMap::new(),
            watches: [watch(Endpoint::Catalog), watch(Endpoint::Checks)],
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
            settings,
        }
    }

    /// Syncs until `shutdown` is cancelled, then writes the last unsaved state.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let persister = tokio::spawn(persist_loop(
            self.persist.subscribe(),
            self.settings.state_dir.clone(),
            self.status.clone(),
            shutdown.clone(),
        ));
        info!(url = self.client.url(), "registry sync started");
        loop {
            self.arm_watches();
            let wake = self.next_wake();
            let event = {
                let [catalog, checks] = &mut self.watches;
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    (sent, result) = join_watch(catalog) => Wake::Watch(0, sent, result),
                    (sent, result) = join_watch(checks) => Wake::Watch(1, sent, result),
                    (started, result) = join_full(&mut self.full) => Wake::Full(started, result),
                    () = tokio::time::sleep_until(wake) => Wake::Timer,
                }
            };
            let now = Instant::now();
            let work = async {
                match event {
                    Wake::Watch(slot, sent, result) => self.on_watch(slot, sent, result),
                    Wake::Full(started, result) => self.on_full(started, result).await,
                    Wake::Timer => {}
                }
                if now >= self.next_full && self.full.is_none() {
                    self.start_full();
                }
                if self.pending.due.is_some_and(|due| now >= due) {
                    self.apply_pending().await;
                } else if self
                    .preserve
                    .next_release()
                    .is_some_and(|at| now >= at.into())
                {
                    self.publish(None).await;
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = work => {}
            }
        }
        for watch in &mut self.watches {
            if let Some((_, handle)) = watch.in_flight.take() {
                handle.abort();
            }
        }
        if let Some(full) = self.full.take() {
            full.abort();
        }
        let _ = persister.await;
        debug!("registry sync stopped");
    }

    /// Starts the blocking queries that are not running, within their rate limit and backoff.
    fn arm_watches(&mut self) {
        if !self.synced {
            return;
        }
        let now = Instant::now();
        for watch in &mut self.watches {
            if watch.in_flight.is_some() || now < watch.not_before {
                continue;
            }
            let elapsed = now.duration_since(watch.refilled).as_secs_f64();
            watch.tokens = (watch.tokens + elapsed / WATCH_REFILL.as_secs_f64()).min(WATCH_BURST);
            watch.refilled = now;
            if watch.tokens < 1.0 {
                watch.not_before = now + WATCH_REFILL.mul_f64(1.0 - watch.tokens);
                continue;
            }
            watch.tokens -= 1.0;
            let client = self.client.clone();
            let blocking = Blocking {
                index: watch.index,
                wait: self.settings.blocking_wait,
            };
            let endpoint = watch.endpoint;
            let handle = tokio::spawn(async move {
                match endpoint {
                    Endpoint::Catalog => client
                        .services(Some(blocking))
                        .await
                        .map(|f| f.map(WatchValue::Catalog)),
                    Endpoint::Checks => client
                        .checks(Some(blocking))
                        .await
                        .map(|f| f.map(WatchValue::Checks)),
                }
            });
            watch.in_flight = Some((blocking.index, handle));
        }
    }

    fn next_wake(&self) -> Instant {
        let mut wake = if self.full.is_some() {
            Instant::now() + self.settings.sync_interval
        } else {
            self.next_full
        };
        for watch in &self.watches {
            if watch.in_flight.is_none() && self.synced {
                wake = wake.min(watch.not_before);
            }
        }
        if let Some(due) = self.pending.due {
            wake = wake.min(due);
        }
        if let Some(release) = self.preserve.next_release() {
            wake = wake.min(release.into());
        }
        wake
    }

    fn on_watch(&mut self, slot: usize, sent: u64, result: WatchResult) {
        let now = Instant::now();
        let channel = self.watches[slot].endpoint.channel();
        self.count_request(&result);
        let fetched = match result {
            Ok(fetched) => fetched,
            Err(error) => {
                self.report_fault(channel, &error);
                let watch = &mut self.watches[slot];
                watch.not_before = now + watch.backoff.next();
                return;
            }
        };
        self.report_ok(channel, &fetched);
        self.watches[slot].backoff.reset();
        if sent > self.watches[slot].index {
            return; // a full sync followed an index reset while this request was out: stale
        }
        if fetched.index < sent {
            // Consul's rule: an index that goes backwards resets the watch to 0; the data may
            // have changed arbitrarily (snapshot restore), so resync everything.
            let message = format!(
                "{channel}: registry index went backwards from {sent} to {}; resyncing",
                fetched.index
            );
            log_transition(
                self.status
                    .fault("index", FaultKind::IndexBackwards, &message),
                &message,
            );
            self.watches[slot].index = 0;
            self.pending.full = true;
            self.pending.due = Some(now);
            return;
        }
        if fetched.index <= self.watches[slot].index {
            return; // the wait ran out, or nothing newer than a full sync already saw
        }
        let previous = std::mem::replace(&mut self.watches[slot].index, fetched.index);
        let changed = match fetched.value {
            WatchValue::Catalog(list) => {
                let changed = diff_catalog(&self.catalog, &list);
                self.catalog = list;
                // The catalog index moved but not its content: an instance without checks came,
                // went or changed, or (where one index covers every table) a check changed. Only
                // the checks watch can tell which.
                if changed.is_empty() && self.last_check_change <= previous {
                    if self.watches[1].index >= fetched.index {
                        self.pending.resync = true;
                    } else {
                        let deadline = now + UNEXPLAINED_GRACE;
                        self.pending
                            .unexplained
                            .get_or_insert((previous, fetched.index, deadline));
                    }
                }
                changed
            }
            WatchValue::Checks(checks) => {
                let map = check_map(checks);
                let (changed, any) = diff_checks(&self.checks, &map, &self.truth);
                self.checks = map;
                if any {
                    self.last_check_change = fetched.index;
                }
                if let Some((since, until, _)) = self.pending.unexplained {
                    if self.last_check_change > since {
                        self.pending.unexplained = None;
                    } else if fetched.index >= until {
                        self.pending.unexplained = None;
                        self.pending.resync = true;
                    }
                }
                changed
            }
        };
        self.pending.services.extend(changed);
        self.pending.index = self.pending.index.max(fetched.index);
        self.pending.due = Some(
            self.pending
                .due
                .map_or(now + COALESCE, |due| due.min(now + COALESCE)),
        );
    }

    /// Applies what the watches saw: fetches the changed services, or schedules a full resync.
    async fn apply_pending(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        let now = Instant::now();
        if pending.full {
            self.request_full(now);
            return;
        }
        if let Some((_, _, deadline)) = pending.unexplained {
            if now >= deadline {
                pending.resync = true;
            } else {
                // Still waiting for the checks watch: keep it pending until the deadline.
                self.pending.unexplained = pending.unexplained.take();
                self.pending.due = Some(deadline);
            }
        }
        if pending.resync {
            let earliest = self
                .last_full_start
                .map_or(now, |at| at + UNEXPLAINED_RESYNC_GAP);
            self.request_full(earliest.max(now));
            debug!("catalog changed without naming a service; full resync scheduled");
        }
        if pending.services.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut cost = Cost::default();
        let names: Vec<String> = pending.services.iter().cloned().collect();
        let concurrency = self.settings.max_concurrent_requests;
        match fetch_services(&self.client, concurrency, names, &mut cost).await {
            Ok(fetched) => {
                let mut index = self.truth.index.max(pending.index);
                for (name, answer) in fetched {
                    index = index.max(answer.index);
                    if self.full.is_some() {
                        self.changed_during_full.insert(name.clone());
                    }
                    if answer.value.is_empty() {
                        self.truth.services.remove(&name);
                    } else {
                        self.truth.services.insert(name, answer.value);
                    }
                }
                self.truth.index = index;
                self.change_backoff.reset();
                let report = self.report("changes", started, cost, pending.services.len());
                self.publish(Some(report)).await;
            }
            Err(error) => {
                self.sync_failed(&error, cost);
                let retry = self.change_backoff.next();
                self.pending.services.extend(pending.services);
                self.pending.index = self.pending.index.max(pending.index);
                self.pending.due = Some(Instant::now() + retry);
            }
        }
    }

    /// Starts a full resync in the background; changes keep being applied meanwhile.
    fn start_full(&mut self) {
        let full = RunningFull::start(self.client.clone(), self.settings.max_concurrent_requests);
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
        let FullAnswer {
            checks,
            catalog,
            services,
        } = answer;
        let mut truth = RegistryState {
            index: checks.index.max(catalog.index),
            services: BTreeMap::new(),
        };
        let count = services.len();
        for (name, answer) in services {
            truth.index = truth.index.max(answer.index);
            if !answer.value.is_empty() {
                truth.services.insert(name, answer.value);
            }
        }
        let backwards = self.synced && truth.index < self.truth.index;
        let previous = self.truth.index;
        if !backwards {
            // Services a change sync fetched while this ran are at least as new: keep them.
            for name in std::mem::take(&mut self.changed_during_full) {
                match self.truth.services.get(&name) {
                    Some(entries) => truth.services.insert(name, entries.clone()),
                    None => truth.services.remove(&name),
                };
            }
            truth.index = truth.index.max(self.truth.index);
        }
        self.note_leader(&catalog);
        // A watch that moved past this sync's baseline keeps its own (newer) one.
        if backwards || self.watches[0].index <= catalog.index {
            self.watches[0].index = catalog.index;
            self.catalog = catalog.value;
        }
        if backwards || self.watches[1].index <= checks.index {
            self.watches[1].index = checks.index;
            self.checks = check_map(checks.value);
        }
        self.truth = truth;
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
        let report = self.report("full", started, cost, count);
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

    /// Self-preservation, then build and publish the state if it differs, then persist it.
    async fn publish(&mut self, report: Option<SyncReport>) {
        let (state, events) =
            self.preserve
                .apply(&self.truth, &self.published, std::time::Instant::now());
        self.log_preservation(&events);
        if state != *self.published {
            let state = Arc::new(state);
            let fetched_at = SystemTime::now();
            let options = self.settings.zone.clone();
            let input = state.clone();
            let previous = self.store.current();
            match tokio::task::spawn_blocking(move || {
                Snapshot::rebuild(previous.as_deref(), input, fetched_at, &options)
            })
            .await
            {
                Ok(Ok(snapshot)) => {
                    debug!(
                        index = snapshot.index(),
                        services = snapshot.stats.services,
                        instances = snapshot.stats.instances,
                        passing = snapshot.stats.passing_instances,
                        "registry snapshot published"
                    );
                    self.store.publish(Arc::new(snapshot));
                    self.published = state.clone();
                    self.persist.send_replace(Some(Arc::new(Persisted {
                        datacenter: self.settings.datacenter.clone(),
                        fetched_at_ms: persist::unix_ms(fetched_at),
                        saved_at_ms: 0,
                        state: state.clone(),
                    })));
                }
                Ok(Err(error)) => {
                    error!(%error, "registry snapshot not built; serving the previous one")
                }
                Err(error) => {
                    error!(%error, "registry snapshot build panicked; serving the previous one")
                }
            }
        }
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
                view.snapshot_origin = "registry";
                view.last_success = report.at;
                if report.kind == "full" {
                    view.totals.full_syncs += 1;
                    view.last_full_sync = Some(report.clone());
                } else {
                    view.totals.change_syncs += 1;
                }
                view.last_sync = Some(report);
            }
        });
        log_transition(self.status.clear("sync"), "");
    }
}
