//! The served-state view: what `/health`, `/metrics` and the status page report on, and the judgements
//! they share (the registry state, whether the registry is up, how old the served data is).
//!
//! One [`Served::read`] per request loads the snapshot once and copies the source status out of
//! its mutex, so every figure of one answer describes the same moment.

use std::sync::Arc;
use std::time::SystemTime;

use crate::metrics::Metrics;
use crate::snapshot::{HealthFilter, Snapshot, SnapshotStore};
use crate::source::status::{SourceStatus, StatusView};

/// Everything the HTTP endpoint reports on. Cloning is shallow.
#[derive(Clone, Debug)]
pub struct Served {
    /// The published snapshot.
    pub store: SnapshotStore,
    /// The registry source's status.
    pub status: Arc<SourceStatus>,
    /// When the process started.
    pub started: SystemTime,
    /// The query-path counters.
    pub metrics: Arc<Metrics>,
    /// What answers `/v1/explain` (`crate::explain`, wired by the app); `None` turns it off.
    pub explain: Option<Arc<dyn super::explain::Explain>>,
    /// The replica's identity (`--identity`) at start-up, for the status page.
    pub identity: Arc<str>,
    /// Which instances DNS serves, for the status page's verdicts.
    pub health: HealthFilter,
}

impl Served {
    /// The state served at `now`.
    pub fn read(&self, now: SystemTime) -> Reading {
        Reading {
            view: self.status.view(),
            snapshot: self.store.current(),
            now,
        }
    }
}

/// The state served at one moment.
#[derive(Debug)]
pub struct Reading {
    /// The source's status.
    pub view: StatusView,
    /// The snapshot served, if any.
    pub snapshot: Option<Arc<Snapshot>>,
    /// The moment.
    pub now: SystemTime,
}

/// The overall verdict of `/health`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overall {
    /// Serving, and the source is fine.
    Ok,
    /// Serving, but the registry has a fault, self-preservation holds instances, or the state
    /// cannot be persisted.
    Degraded,
    /// Nothing to serve yet.
    Unavailable,
}

impl Overall {
    /// The name shown in `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Unavailable => "unavailable",
        }
    }
}

impl Reading {
    /// The registry state: the most basic fault going on, `ok` once the source has succeeded,
    /// `syncing` before.
    pub fn registry_state(&self) -> &'static str {
        match self.view.registry_state() {
            Some(kind) => kind.as_str(),
            None if self.view.last_success.is_some() => "ok",
            None => "syncing",
        }
    }

    /// Whether the registry answers (no fault on any channel) and a snapshot is served.
    pub fn registry_up(&self) -> bool {
        self.snapshot.is_some() && self.registry_state() == "ok"
    }

    /// The overall verdict.
    pub fn overall(&self) -> Overall {
        let preserving = self.view.preservation.held_instances > 0;
        let persist_failing = self
            .view
            .persistence
            .as_ref()
            .is_some_and(|p| p.ok == Some(false));
        if self.snapshot.is_none() {
            Overall::Unavailable
        } else if self.registry_state() != "ok" || preserving || persist_failing {
            Overall::Degraded
        } else {
            Overall::Ok
        }
    }

    /// When the source last confirmed the served data: the later of the snapshot's fetch and
    /// the last success (a sync that found nothing new confirms the snapshot).
    pub fn confirmed_at(&self) -> Option<SystemTime> {
        let snapshot = self.snapshot.as_ref()?;
        let last_success = self.view.last_success;
        Some(last_success.map_or(snapshot.fetched_at, |t| t.max(snapshot.fetched_at)))
    }

    /// Seconds from `then` to the reading, never negative.
    pub fn seconds_since(&self, then: SystemTime) -> f64 {
        self.now
            .duration_since(then)
            .unwrap_or_default()
            .as_secs_f64()
    }
}
