//! Changes the watches saw and the sync loop has not applied yet.
//!
//! Answers are coalesced for [`COALESCE`] so that a change seen by both watches costs one fetch.
//! A catalog change that names no service (a passing instance that came or went, a move, or an
//! index shared by every table) waits up to [`UNEXPLAINED_GRACE`] for the checks watch to
//! explain it; if nothing does, it is due as `resync`: the sync loop reads every check once to
//! name it, and resyncs everything when that names nothing either.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

/// How long a catalog change with no visible cause waits for the checks watch to explain it.
const UNEXPLAINED_GRACE: Duration = Duration::from_millis(1500);

/// After a watch reports a change, wait this long for the other one before fetching.
const COALESCE: Duration = Duration::from_millis(30);

/// Changes seen by the watches and not yet applied.
#[derive(Debug, Default)]
pub(super) struct Pending {
    services: BTreeSet<String>,
    /// The catalog index moved from the first to the second index with no change in its content,
    /// and no check change explains it yet; unexplained for good after the deadline.
    unexplained: Option<(u64, u64, Instant)>,
    /// A change nothing explains: read every check, else resync everything (rate-limited).
    resync: bool,
    /// A full resync is needed (index went backwards).
    full: bool,
    /// Highest watch index behind these changes.
    index: u64,
    due: Option<Instant>,
}

/// What is due to be applied now.
#[derive(Debug, Default)]
pub(super) struct Due {
    /// Resync everything now (the changes are dropped: the resync covers them).
    pub(super) full: bool,
    /// A catalog change nothing explained: read every check to name it, else resync
    /// everything (rate-limited).
    pub(super) resync: bool,
    /// Services to fetch.
    pub(super) services: BTreeSet<String>,
    /// The highest watch index behind them.
    pub(super) index: u64,
}

impl Pending {
    /// When the pending changes are due, if any are.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Whether the pending changes are due at `now`.
    pub(super) fn is_due(&self, now: Instant) -> bool {
        self.due.is_some_and(|due| now >= due)
    }

    /// `changed` services named by a watch answer at `index`; applied after [`COALESCE`].
    pub(super) fn add(&mut self, changed: BTreeSet<String>, index: u64, now: Instant) {
        self.services.extend(changed);
        self.index = self.index.max(index);
        let soon = now + COALESCE;
        self.due = Some(self.due.map_or(soon, |due| due.min(soon)));
    }

    /// A watch's index went backwards: everything must be resynced, now.
    pub(super) fn full_resync(&mut self, now: Instant) {
        self.full = true;
        self.due = Some(now);
    }

    /// The catalog index moved from `previous` to `index` with no change in its content. When
    /// the checks watch is already at `index` it cannot explain it any more: resync.
    pub(super) fn catalog_unexplained(
        &mut self,
        previous: u64,
        index: u64,
        checks_index: u64,
        now: Instant,
    ) {
        if checks_index >= index {
            self.resync = true;
        } else {
            let deadline = now + UNEXPLAINED_GRACE;
            self.unexplained.get_or_insert((previous, index, deadline));
        }
    }

    /// The checks watch answered at `index`, its content last changed at `last_change`: it
    /// explains an unexplained catalog change (a check change at the catalog's very index,
    /// where one index covers every table), or shows that nothing will.
    pub(super) fn checks_answered(&mut self, last_change: u64, index: u64) {
        if let Some((_, until, _)) = self.unexplained {
            if last_change == until {
                self.unexplained = None;
            } else if index >= until {
                self.unexplained = None;
                self.resync = true;
            }
        }
    }

    /// Takes what is due at `now`; an unexplained change still within its grace stays pending.
    pub(super) fn take(&mut self, now: Instant) -> Due {
        let mut pending = std::mem::take(self);
        if pending.full {
            return Due {
                full: true,
                ..Due::default()
            };
        }
        if let Some((_, _, deadline)) = pending.unexplained {
            if now >= deadline {
                pending.resync = true;
            } else {
                // Still waiting for the checks watch: keep it pending until the deadline.
                self.unexplained = pending.unexplained.take();
                self.due = Some(deadline);
            }
        }
        Due {
            full: false,
            resync: pending.resync,
            services: pending.services,
            index: pending.index,
        }
    }

    /// Fetching `services` failed: they are due again at `at`.
    pub(super) fn retry(&mut self, services: BTreeSet<String>, index: u64, at: Instant) {
        self.services.extend(services);
        self.index = self.index.max(index);
        self.due = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unexplained_catalog_change_waits_for_the_checks_watch() {
        let now = Instant::now();
        let mut pending = Pending::default();
        pending.catalog_unexplained(10, 11, 5, now);
        pending.add(BTreeSet::new(), 11, now);
        let due = pending.take(now + COALESCE);
        assert!(!due.resync && due.services.is_empty());
        assert_eq!(pending.due(), Some(now + UNEXPLAINED_GRACE));
        // The checks watch reaches the catalog's index with no change: nothing will explain it.
        pending.checks_answered(5, 11);
        assert!(pending.take(now + COALESCE).resync);
    }

    #[test]
    fn a_check_change_explains_it() {
        let now = Instant::now();
        let mut pending = Pending::default();
        pending.catalog_unexplained(10, 11, 5, now);
        pending.checks_answered(11, 11);
        let due = pending.take(now + UNEXPLAINED_GRACE);
        assert!(!due.resync);
    }

    #[test]
    fn an_earlier_check_change_explains_nothing() {
        // Each table has its own index: a flip at 8, then an instance registers at 11.
        let now = Instant::now();
        let mut pending = Pending::default();
        pending.catalog_unexplained(5, 11, 8, now);
        pending.checks_answered(8, 11);
        assert!(pending.take(now).resync);
    }
}
