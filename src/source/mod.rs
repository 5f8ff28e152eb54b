//! The registry sources, side by side: the registry file ([`mod@file`]) and Consul ([`consul`]).
//!
//! Each source produces [`crate::registry::RegistryState`]s, hands every one to [`publish`]
//! (build the snapshot, publish it, log its stats and what it changed) and reports how it
//! fares in the one [`status::SourceStatus`] that `/health`, `/metrics` and the status page read.

pub mod changes;
pub mod consul;
pub mod file;
pub mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{debug, error, info, warn};

use crate::registry::RegistryState;
use crate::snapshot::{BuildError, Snapshot, SnapshotStore, ZoneOptions};
use status::{SnapshotOrigin, SourceStatus};

/// Where the registry state comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrySource {
    /// A JSON file of Consul health entries, watched for changes.
    File(PathBuf),
    /// Consul's HTTP API at this base URL (`http://host:port`, no trailing slash).
    Consul(String),
}

impl RegistrySource {
    /// How the source is shown in logs and `/health`: a path, or the URL without user info.
    pub fn shown(&self) -> String {
        match self {
            Self::File(path) => path.display().to_string(),
            Self::Consul(url) => crate::registry::consul::redacted(url),
        }
    }
}

/// Where a state handed to [`publish`] was read, for its log line.
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    /// The registry file at this path.
    File(&'a Path),
    /// A sync with Consul.
    Registry,
    /// A persisted state file, and its generation.
    Disk(&'a Path, u64),
}

impl Origin<'_> {
    /// The origin as `/health` and `/metrics` name it.
    pub fn kind(self) -> SnapshotOrigin {
        match self {
            Self::File(_) => SnapshotOrigin::File,
            Self::Registry => SnapshotOrigin::Registry,
            Self::Disk(..) => SnapshotOrigin::Disk,
        }
    }
}

/// Builds the snapshot of `state` (re-using what it can of the one served), publishes it into
/// `store`, logs its stats and records what it changed in `status`'s change log. On error the
/// previous snapshot stays served; the error is logged and returned. CPU work: async callers
/// run it on a blocking thread.
pub fn publish(
    store: &SnapshotStore,
    state: Arc<RegistryState>,
    fetched_at: SystemTime,
    options: &ZoneOptions,
    origin: Origin<'_>,
    status: &SourceStatus,
) -> Result<Arc<Snapshot>, BuildError> {
    let previous = store.current();
    let snapshot = match Snapshot::rebuild(previous.as_deref(), state, fetched_at, options) {
        Ok(snapshot) => Arc::new(snapshot),
        Err(error) => {
            match origin {
                Origin::File(path) if previous.is_none() => {
                    error!(path = %path.display(), %error, "registry file not served; no registry data yet: registry names get SERVFAIL")
                }
                Origin::File(path) => {
                    error!(path = %path.display(), %error, "registry file not served; keeping the previous snapshot")
                }
                Origin::Registry => {
                    error!(%error, "registry snapshot not built; serving the previous one")
                }
                Origin::Disk(path, _) => {
                    error!(path = %path.display(), %error, "persisted registry state cannot be served")
                }
            }
            return Err(error);
        }
    };
    let stats = snapshot.stats;
    // What DNS leaves out of the registry, when it differs from what the served snapshot left
    // out: one line per reason, with a count and an example. `/health` always shows it.
    if previous
        .as_ref()
        .is_none_or(|p| p.skipped != snapshot.skipped)
    {
        for (reason, count, example) in snapshot.skipped.reasons() {
            warn!(
                reason,
                count, example, "registry entries not served: {reason}"
            );
        }
    }
    match origin {
        Origin::File(path) => info!(
            path = %path.display(),
            services = stats.services,
            instances = stats.instances,
            passing = stats.passing_instances,
            serial = snapshot.zone.serial(),
            "registry file loaded"
        ),
        Origin::Registry => debug!(
            index = snapshot.index(),
            services = stats.services,
            instances = stats.instances,
            passing = stats.passing_instances,
            "registry snapshot published"
        ),
        Origin::Disk(path, generation) => info!(
            path = %path.display(),
            generation,
            index = snapshot.index(),
            services = stats.services,
            instances = stats.instances,
            age_s = fetched_at.elapsed().unwrap_or_default().as_secs(),
            "serving the persisted registry state until the first sync"
        ),
    }
    let changed = changes::changes(
        previous.as_deref(),
        &snapshot,
        options.health,
        SystemTime::now(),
    );
    store.publish(snapshot.clone());
    status.record_changes(changed);
    Ok(snapshot)
}
