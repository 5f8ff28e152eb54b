//! The registry snapshot: an immutable, indexed view of the registry, and the handle that
//! publishes it.
//!
//! A [`Snapshot`] is built off to the side from a [`RegistryState`] (see [`build`]), then
//! swapped in whole through [`SnapshotStore::publish`]. Readers take a wait-free
//! [`SnapshotStore::load`] per query and never see a half-built state. This module does no
//! I/O and names neither tokio, reqwest nor hickory-server.

mod build;

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::{ArcSwapOption, Guard};

pub use build::{BuildError, ZoneOptions};

use crate::registry::RegistryState;
use crate::zone::Zone;

/// One published view of the registry: the prepared registry zone plus the state it came from.
#[derive(Debug)]
pub struct Snapshot {
    /// Answers for the registry domain.
    pub zone: Zone,
    /// The registry state this snapshot was built from (kept for persistence and health).
    pub state: Arc<RegistryState>,
    /// When the state was obtained from the registry (not when it was built).
    pub fetched_at: SystemTime,
    /// Counts for health and metrics.
    pub stats: SnapshotStats,
}

/// What a snapshot holds, for health and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Services in the registry state.
    pub services: usize,
    /// Instances in the registry state, whatever their health.
    pub instances: usize,
    /// Instances served: every check passing.
    pub passing_instances: usize,
}

impl Snapshot {
    /// Builds the snapshot of `state` with the zone options.
    pub fn build(
        state: Arc<RegistryState>,
        fetched_at: SystemTime,
        options: &ZoneOptions,
    ) -> Result<Self, BuildError> {
        let (zone, stats) = build::registry_zone(&state, options)?;
        Ok(Self {
            zone,
            state,
            fetched_at,
            stats,
        })
    }

    /// The registry index the snapshot reflects.
    pub fn index(&self) -> u64 {
        self.state.index
    }
}

/// Handle to the published snapshot. Cloning is shallow: one `Arc` increment.
///
/// `None` means no snapshot was ever loaded or synced: registry names then get SERVFAIL
/// ("unknown"), never NXDOMAIN ("absent").
#[derive(Clone, Default)]
pub struct SnapshotStore(Arc<ArcSwapOption<Snapshot>>);

impl SnapshotStore {
    /// The snapshot to answer one query with. Do not hold the guard across `.await`.
    pub fn load(&self) -> Guard<Option<Arc<Snapshot>>> {
        self.0.load()
    }

    /// The current snapshot as an owned `Arc`, for slow paths.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.0.load_full()
    }

    /// Replaces the whole view at once.
    pub fn publish(&self, next: Arc<Snapshot>) {
        self.0.store(Some(next));
    }
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current();
        f.debug_struct("SnapshotStore")
            .field("index", &current.map(|s| s.index()))
            .finish()
    }
}
