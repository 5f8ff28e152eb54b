//! What a registry source reports for `/health` and `/metrics`: where the served snapshot came
//! from, registry faults, sync cost, self-preservation and persistence, behind a mutex that the
//! DNS path never touches. Both sources write it; the file source only its loads and errors.
//!
//! Faults are tracked per channel (each watch, the sync itself, persistence) so that one
//! channel's success cannot hide another's failure; the registry state shown in health, and
//! logged once per change, is derived from all of them.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use compact_str::CompactString;

use super::changes::{Change, CHANGE_LOG_LEN};

use super::RegistrySource;
use crate::registry::consul::FaultKind;

/// Where the served snapshot came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SnapshotOrigin {
    /// Nothing served yet.
    #[default]
    None,
    /// The persisted state, read at start-up.
    Disk,
    /// A sync with Consul.
    Registry,
    /// The registry file.
    File,
}

impl SnapshotOrigin {
    /// The name shown in `/health` and `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Disk => "disk",
            Self::Registry => "registry",
            Self::File => "file",
        }
    }
}

/// What a sync fetched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncKind {
    /// Every service (a full resync).
    #[default]
    Full,
    /// Only the services the watches named.
    Changes,
}

impl SyncKind {
    /// The name shown in `/health` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Changes => "changes",
        }
    }
}

/// A fault that is going on.
#[derive(Clone, Debug)]
pub struct ActiveFault {
    /// Its kind.
    pub kind: FaultKind,
    /// The latest error message.
    pub message: String,
    /// When it started.
    pub since: SystemTime,
}

/// The most recent error, whatever its channel.
#[derive(Clone, Debug)]
pub struct ErrorRecord {
    /// When it happened.
    pub at: SystemTime,
    /// Which channel: `sync`, `catalog watch`, `checks watch`, `file`.
    pub channel: &'static str,
    /// Its kind.
    pub kind: FaultKind,
    /// The message.
    pub message: String,
}

/// The cost and outcome of one sync.
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    /// Every service, or only the changed ones.
    pub kind: SyncKind,
    /// When it finished.
    pub at: Option<SystemTime>,
    /// How long it took.
    pub duration: Duration,
    /// Registry requests made, retries included.
    pub requests: u64,
    /// Body bytes received on the wire (gzip-compressed where Consul compressed).
    pub wire_bytes: u64,
    /// Body bytes after decompression.
    pub json_bytes: u64,
    /// Services fetched.
    pub services_fetched: usize,
    /// Registry index of the resulting state.
    pub index: u64,
}

/// Running totals since start.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Registry requests, watches included.
    pub requests: u64,
    /// Body bytes on the wire.
    pub wire_bytes: u64,
    /// Body bytes after decompression.
    pub json_bytes: u64,
    /// Full syncs that succeeded.
    pub full_syncs: u64,
    /// Change syncs that succeeded.
    pub change_syncs: u64,
    /// Syncs that failed.
    pub failed_syncs: u64,
}

/// Self-preservation as seen from outside.
#[derive(Clone, Debug, Default)]
pub struct PreservationStatus {
    /// The configured threshold (0 = off).
    pub threshold: f64,
    /// The configured window.
    pub window: Duration,
    /// Instances kept although the registry no longer serves them.
    pub held_instances: usize,
    /// When the current episode started.
    pub since: Option<SystemTime>,
    /// When the held instances that went first will be let go.
    pub next_release: Option<SystemTime>,
    /// Episodes since start.
    pub episodes: u64,
    /// The held instances, at most [`HELD_LIST_LIMIT`] of them (in service, node, ID order),
    /// so that `/v1/explain` can say which answers are held. Shared: the view is cloned per
    /// request.
    pub held: Arc<[HeldInstance]>,
}

/// The most held instances the status lists (their count is `held_instances`).
pub const HELD_LIST_LIMIT: usize = 1000;

/// One instance self-preservation holds: served from its last known entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldInstance {
    /// The registry key (service name) of its entry.
    pub service: String,
    /// Its node.
    pub node: CompactString,
    /// Its instance ID.
    pub id: CompactString,
    /// Since when it is held.
    pub since: SystemTime,
    /// What the registry says of it now: `deregistered`, or why it is not served.
    pub registry: String,
}

/// Persistence as seen from outside.
#[derive(Clone, Debug, Default)]
pub struct PersistStatus {
    /// The state directory.
    pub dir: PathBuf,
    /// Whether the last save worked (`None` before the first save).
    pub ok: Option<bool>,
    /// When the last save worked.
    pub last_saved: Option<SystemTime>,
    /// Generation of the base last written (or loaded), whose journal saves append to.
    pub generation: u64,
    /// Registry index of the state last saved.
    pub index: u64,
    /// Size of that base and its journal: what a restart reads.
    pub bytes: u64,
    /// Bytes the last save wrote (a journal record, or a whole base).
    pub last_write_bytes: u64,
    /// Records in the journal of that base (replayed ones at start-up).
    pub journal_records: u64,
    /// The last save error, while saving fails.
    pub error: Option<String>,
    /// The file served at start-up, if any.
    pub loaded_from: Option<PathBuf>,
    /// Files skipped at start-up, and why.
    pub skipped: Vec<String>,
}

/// Everything `/health` shows about the registry side. Cloned out for rendering.
#[derive(Clone, Debug)]
pub struct StatusView {
    /// The source.
    pub source: RegistrySource,
    /// The datacenter queried (Consul source).
    pub datacenter: String,
    /// Active faults by channel.
    pub faults: BTreeMap<&'static str, ActiveFault>,
    /// When the aggregate registry state last changed.
    pub state_since: SystemTime,
    /// The most recent error.
    pub last_error: Option<ErrorRecord>,
    /// When a sync last succeeded.
    pub last_success: Option<SystemTime>,
    /// The last sync of any kind.
    pub last_sync: Option<SyncReport>,
    /// The last full sync.
    pub last_full_sync: Option<SyncReport>,
    /// Totals.
    pub totals: Totals,
    /// `X-Consul-KnownLeader` of the last answer.
    pub known_leader: Option<bool>,
    /// `X-Consul-LastContact` of the last answer, ms.
    pub last_contact_ms: u64,
    /// Self-preservation.
    pub preservation: PreservationStatus,
    /// Changes are followed by a blocking query per service (else by the cluster-wide ones).
    pub per_service_watches: bool,
    /// Services with their own blocking query.
    pub service_watches: usize,
    /// Persistence (Consul source only).
    pub persistence: Option<PersistStatus>,
    /// Where the served snapshot came from.
    pub snapshot_origin: SnapshotOrigin,
    /// The last [`CHANGE_LOG_LEN`] changes published, oldest first. Shared, so that copying
    /// the view out for every request copies a pointer.
    pub changes: Arc<VecDeque<Change>>,
}

impl StatusView {
    /// The aggregate registry state: `ok`, or the most basic fault going on.
    pub fn registry_state(&self) -> Option<FaultKind> {
        self.faults
            .iter()
            .filter(|(channel, _)| **channel != PERSIST_CHANNEL)
            .map(|(_, fault)| fault.kind)
            .min()
    }
}

/// The channel name of persistence faults (not a registry fault).
pub const PERSIST_CHANNEL: &str = "persist";

/// Shared, lock-protected status. Never held across `.await`.
#[derive(Debug)]
pub struct SourceStatus(Mutex<StatusView>);

/// What a fault report changed, for logging once per change of state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing new: the same state as before.
    Same,
    /// The aggregate state changed to this fault.
    Faulted(FaultKind),
    /// The aggregate state is ok again after this long.
    Recovered(Duration),
}

impl SourceStatus {
    /// A fresh status for `source` in `datacenter`, persisting to `persistence` if given.
    pub fn new(source: RegistrySource, datacenter: String, persistence: Option<PathBuf>) -> Self {
        Self(Mutex::new(StatusView {
            source,
            datacenter,
            faults: BTreeMap::new(),
            state_since: SystemTime::now(),
            last_error: None,
            last_success: None,
            last_sync: None,
            last_full_sync: None,
            totals: Totals::default(),
            known_leader: None,
            last_contact_ms: 0,
            preservation: PreservationStatus::default(),
            per_service_watches: false,
            service_watches: 0,
            persistence: persistence.map(|dir| PersistStatus {
                dir,
                ..PersistStatus::default()
            }),
            snapshot_origin: SnapshotOrigin::None,
            changes: Arc::default(),
        }))
    }

    /// Records a snapshot served from `origin`, its data confirmed at `at`.
    pub fn served(&self, origin: SnapshotOrigin, at: SystemTime) {
        self.update(|view| {
            view.snapshot_origin = origin;
            view.last_success = Some(at);
        });
    }

    /// Records an error of a source with no fault channels (the file source): shown as the last
    /// error, while the previous snapshot stays served.
    pub fn failed(&self, channel: &'static str, kind: FaultKind, message: String) {
        self.update(|view| {
            view.last_error = Some(ErrorRecord {
                at: SystemTime::now(),
                channel,
                kind,
                message,
            });
        });
    }

    /// Appends `changes` to the change log, dropping the oldest beyond [`CHANGE_LOG_LEN`].
    pub fn record_changes(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        self.update(|view| {
            // Copies the ring only while a reader still holds the previous one.
            let log = Arc::make_mut(&mut view.changes);
            log.extend(changes);
            while log.len() > CHANGE_LOG_LEN {
                log.pop_front();
            }
        });
    }

    /// A copy of the current status.
    pub fn view(&self) -> StatusView {
        self.lock().clone()
    }

    /// Changes the status under the lock.
    pub fn update<R>(&self, change: impl FnOnce(&mut StatusView) -> R) -> R {
        change(&mut self.lock())
    }

    /// Records a fault on `channel`; says whether the aggregate registry state changed.
    pub fn fault(&self, channel: &'static str, kind: FaultKind, message: &str) -> Transition {
        let mut view = self.lock();
        let now = SystemTime::now();
        let before = view.registry_state();
        view.last_error = Some(ErrorRecord {
            at: now,
            channel,
            kind,
            message: message.to_string(),
        });
        let fault = view.faults.entry(channel).or_insert_with(|| ActiveFault {
            kind,
            message: String::new(),
            since: now,
        });
        if fault.kind != kind {
            fault.kind = kind;
            fault.since = now;
        }
        fault.message = message.to_string();
        let after = view.registry_state();
        if after != before && channel != PERSIST_CHANNEL {
            view.state_since = now;
            return after.map_or(Transition::Same, Transition::Faulted);
        }
        Transition::Same
    }

    /// Clears `channel`'s fault; says whether the aggregate registry state became ok.
    pub fn clear(&self, channel: &'static str) -> Transition {
        let mut view = self.lock();
        if view.faults.remove(channel).is_none() {
            return Transition::Same;
        }
        if view.registry_state().is_none() && channel != PERSIST_CHANNEL {
            let now = SystemTime::now();
            let lasted = now.duration_since(view.state_since).unwrap_or_default();
            view.state_since = now;
            return Transition::Recovered(lasted);
        }
        Transition::Same
    }

    fn lock(&self) -> MutexGuard<'_, StatusView> {
        // A panic elsewhere must not take health down with it: the data is plain values.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_reported_once() {
        let status = SourceStatus::new(
            RegistrySource::File(PathBuf::from("r.json")),
            "dc1".into(),
            None,
        );
        assert_eq!(
            status.fault("sync", FaultKind::Unreachable, "down"),
            Transition::Faulted(FaultKind::Unreachable)
        );
        assert_eq!(
            status.fault("sync", FaultKind::Unreachable, "down"),
            Transition::Same
        );
        assert_eq!(
            status.fault("catalog watch", FaultKind::Timeout, "slow"),
            Transition::Same
        );
        assert_eq!(status.clear("sync"), Transition::Same);
        assert!(matches!(
            status.clear("catalog watch"),
            Transition::Recovered(_)
        ));
        assert_eq!(status.clear("catalog watch"), Transition::Same);
        assert_eq!(
            status.fault(PERSIST_CHANNEL, FaultKind::Setup, "ro"),
            Transition::Same
        );
        assert!(status.view().registry_state().is_none());
    }
}
