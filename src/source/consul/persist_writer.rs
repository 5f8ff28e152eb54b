//! The persister's view of the state directory: the journal of the newest base and the state
//! its last record holds, and the compaction (a new base written on a blocking thread) in
//! progress, if any.
//!
//! A save appends one record to the journal: the services that changed since the last save.
//! When the journal outgrows its base, the state just saved is written as the next base on a
//! blocking thread while saves go on; the new base's journal is created first and gets every
//! record the old one gets meanwhile, so whichever base a crash leaves newest, its journal
//! holds every save. The first save of a process appends to the journal of the base it started
//! from ([`Adoptable`], found by `restore.rs`) when that base is still the newest and its journal
//! was replayed to its end; else it writes a whole base, as does the first save after any
//! failure: a journal that may end in a failed append is never appended to again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::task::JoinHandle;

use tracing::{debug, warn};

use crate::persist::{
    self, zone_cache, BaseId, Delta, Journal, PersistError, Persisted, Resumable, Saved,
};
use crate::snapshot::Snapshot;

/// What one save or compaction left on disk.
#[derive(Clone, Debug)]
pub(super) struct Written {
    /// The base the journal belongs to.
    pub(super) generation: u64,
    /// Registry index of the state saved.
    pub(super) index: u64,
    /// Bytes of the base and its journal: what a restart reads.
    pub(super) on_disk: u64,
    /// Bytes this save wrote.
    pub(super) wrote: u64,
    /// Records in the journal.
    pub(super) records: u64,
    /// A whole base was written (not a journal record).
    pub(super) full: bool,
}

/// The base a process started from, for its first save to append to: what the start-up read
/// and replayed, and the state that reached, as published.
pub struct Adoptable {
    found: Resumable,
    last: Arc<Persisted>,
    snapshot: Option<Arc<Snapshot>>,
}

impl Adoptable {
    /// `found`, whose base and journal hold `last`, published as `snapshot`.
    pub(super) fn new(found: Resumable, last: Persisted, snapshot: Option<Arc<Snapshot>>) -> Self {
        Self {
            found,
            last: Arc::new(last),
            snapshot,
        }
    }
}

impl std::fmt::Debug for Adoptable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adoptable")
            .field("found", &self.found)
            .finish_non_exhaustive()
    }
}

/// The newest base's journal and the state it reaches.
struct Tail {
    journal: Journal,
    last: Arc<Persisted>,
    /// The snapshot built from `last`'s state, whose zone cache goes with a base of it.
    snapshot: Option<Arc<Snapshot>>,
    base_bytes: u64,
}

/// A base being written, and its journal (taken while a save appends to it; `None` once the
/// compaction is abandoned).
struct Compaction {
    journal: Option<Journal>,
    task: JoinHandle<Result<Saved, PersistError>>,
}

/// Writes saves as journal records and compacts; see the module documentation.
pub(super) struct Writer {
    dir: PathBuf,
    tail: Option<Tail>,
    compaction: Option<Compaction>,
    /// The base found at start-up, until the first save takes it up.
    adopted: Option<Adoptable>,
}

impl Writer {
    /// A writer for `dir` that has written nothing yet; its first save appends to `adopted`'s
    /// journal, if given and still possible.
    pub(super) fn new(dir: PathBuf, adopted: Option<Adoptable>) -> Self {
        Self {
            dir,
            tail: None,
            compaction: None,
            adopted,
        }
    }

    /// Opens the journal of the base found at start-up, if any, as the tail; `None` (the save
    /// then writes a whole base) when it cannot be opened as it was replayed.
    async fn adopt(&self, adopted: Adoptable) -> Option<Tail> {
        let (dir, found) = (self.dir.clone(), adopted.found);
        let resumed = tokio::task::spawn_blocking(move || Journal::resume(&dir, &found))
            .await
            .unwrap_or_else(|e| Err(task_failed(&self.dir, &e)));
        match resumed {
            Ok(journal) => {
                debug!(
                    generation = found.base.generation,
                    records = found.records,
                    "appending to the journal of the persisted state found at start-up"
                );
                Some(Tail {
                    journal,
                    last: adopted.last,
                    snapshot: adopted.snapshot,
                    base_bytes: found.base_bytes,
                })
            }
            Err(error) => {
                warn!(%error, "the persisted state's journal cannot be appended to; writing a whole base");
                None
            }
        }
    }

    /// Saves `latest`: a journal record, or a whole base when there is no journal to append to.
    /// A failure leaves no journal, so the next save writes a base. `snapshot`, the snapshot
    /// built from `latest`'s state, is written as the zone cache of every base of that state.
    pub(super) async fn save(
        &mut self,
        latest: &Persisted,
        snapshot: Option<Arc<Snapshot>>,
    ) -> Result<Written, PersistError> {
        let mut persisted = latest.clone();
        persisted.saved_at_ms = persist::unix_ms(SystemTime::now());
        let persisted = Arc::new(persisted);
        if let Some(adopted) = self.adopted.take().filter(|_| self.tail.is_none()) {
            self.tail = self.adopt(adopted).await;
        }
        let Some(tail) = self.tail.take() else {
            return self.save_base(persisted, snapshot).await;
        };
        let follower = self.compaction.as_mut().and_then(|c| c.journal.take());
        let to = persisted.clone();
        let appended = tokio::task::spawn_blocking(move || append(tail, follower, &to))
            .await
            .map_err(|e| task_failed(&self.dir, &e));
        let (tail, follower, wrote) = match appended {
            Ok(Ok(appended)) => appended,
            Ok(Err(error)) | Err(error) => {
                // The compaction's journal may lack this record: its base must not be followed.
                if let Some(c) = self.compaction.as_mut() {
                    c.journal = None;
                }
                return Err(error);
            }
        };
        if let Some(c) = self.compaction.as_mut() {
            c.journal = follower;
        }
        let tail = self.tail.insert(Tail {
            last: persisted,
            snapshot,
            ..tail
        });
        let written = Written {
            generation: tail.journal.base().generation,
            index: tail.last.state.index,
            on_disk: tail.base_bytes + tail.journal.bytes(),
            wrote,
            records: tail.journal.records(),
            full: false,
        };
        if self.compaction.is_none() && tail.journal.bytes() > tail.base_bytes {
            self.start_compaction().await;
        }
        Ok(written)
    }

    /// Writes `persisted` as a new base with an empty journal, after any compaction in
    /// progress (one base is written at a time).
    async fn save_base(
        &mut self,
        persisted: Arc<Persisted>,
        snapshot: Option<Arc<Snapshot>>,
    ) -> Result<Written, PersistError> {
        if let Some(compaction) = self.compaction.take() {
            let _ = compaction.task.await;
        }
        let dir = self.dir.clone();
        let (to, zone) = (persisted.clone(), snapshot.clone());
        let (saved, journal) = tokio::task::spawn_blocking(move || {
            let generation = persist::next_generation(&dir)?;
            let saved = save_base_and_cache(&dir, generation, &to, zone.as_deref())?;
            let journal = Journal::create(&dir, BaseId::of(generation, &to))?;
            Ok::<_, PersistError>((saved, journal))
        })
        .await
        .unwrap_or_else(|e| Err(task_failed(&self.dir, &e)))?;
        let written = Written {
            generation: saved.generation,
            index: persisted.state.index,
            on_disk: saved.bytes,
            wrote: saved.bytes,
            records: 0,
            full: true,
        };
        self.tail = Some(Tail {
            journal,
            last: persisted,
            snapshot,
            base_bytes: saved.bytes,
        });
        Ok(written)
    }

    /// Starts writing the tail's state as the next base, its journal created first. A
    /// compaction that cannot start is tried again after the next save.
    async fn start_compaction(&mut self) {
        let Some(tail) = self.tail.as_ref() else {
            return;
        };
        let (dir, base) = (self.dir.clone(), tail.last.clone());
        let created = tokio::task::spawn_blocking(move || {
            let generation = persist::next_generation(&dir)?;
            Journal::create(&dir, BaseId::of(generation, &base))
        })
        .await
        .unwrap_or_else(|e| Err(task_failed(&self.dir, &e)));
        let journal = match created {
            Ok(journal) => journal,
            Err(error) => {
                tracing::debug!(%error, "compaction of the state journal not started");
                return;
            }
        };
        let (dir, base, zone) = (self.dir.clone(), tail.last.clone(), tail.snapshot.clone());
        let generation = journal.base().generation;
        let task = tokio::task::spawn_blocking(move || {
            save_base_and_cache(&dir, generation, &base, zone.as_deref())
        });
        self.compaction = Some(Compaction {
            journal: Some(journal),
            task,
        });
    }

    /// Waits for the compaction in progress (forever when there is none), then follows the new
    /// base's journal. `Ok(None)`: the compaction had been abandoned. Cancel-safe.
    pub(super) async fn compacted(&mut self) -> Result<Option<Written>, PersistError> {
        let Some(compaction) = self.compaction.as_mut() else {
            return std::future::pending().await;
        };
        let result = (&mut compaction.task).await;
        let journal = self.compaction.take().and_then(|c| c.journal);
        let saved = result.unwrap_or_else(|e| Err(task_failed(&self.dir, &e)));
        let (saved, journal, tail) = match (saved, journal, self.tail.take()) {
            (Ok(saved), Some(journal), Some(tail)) => (saved, journal, tail),
            (Ok(_), _, tail) => {
                self.tail = tail;
                return Ok(None);
            }
            // The base may be in place without being durable: start over with a whole base.
            (Err(error), _, _) => return Err(error),
        };
        let tail = self.tail.insert(Tail {
            journal,
            base_bytes: saved.bytes,
            ..tail
        });
        Ok(Some(Written {
            generation: saved.generation,
            index: tail.last.state.index,
            on_disk: saved.bytes + tail.journal.bytes(),
            wrote: saved.bytes,
            records: tail.journal.records(),
            full: true,
        }))
    }

    /// Waits for the compaction in progress, if any (at shutdown).
    pub(super) async fn finish(&mut self) -> Option<Result<Option<Written>, PersistError>> {
        if self.compaction.is_some() {
            Some(self.compacted().await)
        } else {
            None
        }
    }

    /// The state directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Writes `persisted` as base `generation`, then `snapshot` (when it was built from that very
/// state) as the base's zone cache. A cache that cannot be written is logged, not a failed save:
/// a restart then builds the zone from the base.
fn save_base_and_cache(
    dir: &Path,
    generation: u64,
    persisted: &Persisted,
    snapshot: Option<&Snapshot>,
) -> Result<Saved, PersistError> {
    let saved = persist::save_generation(dir, generation, persisted)?;
    let Some(snapshot) = snapshot.filter(|s| Arc::ptr_eq(&s.state, &persisted.state)) else {
        return Ok(saved);
    };
    let base = cache_base(BaseId::of(generation, persisted));
    match zone_cache::save(dir, generation, |out| snapshot.write_cache(&base, out)) {
        Ok(bytes) => debug!(generation, bytes, "zone cache written"),
        Err(error) => {
            warn!(%error, "zone cache not written; a restart builds the zone from the state")
        }
    }
    Ok(saved)
}

/// A base's identity as its zone cache names it.
pub(super) fn cache_base(id: BaseId) -> crate::snapshot::BaseId {
    crate::snapshot::BaseId {
        generation: id.generation,
        saved_at_ms: id.saved_at_ms,
        index: id.index,
    }
}

/// Appends the record from `tail`'s state to `to` to the tail's journal and to the journal of
/// the compaction in progress, if any. Returns both and the bytes of one record.
fn append(
    mut tail: Tail,
    follower: Option<Journal>,
    to: &Persisted,
) -> Result<(Tail, Option<Journal>, u64), PersistError> {
    let delta = Delta::between(&tail.last.state, &to.state);
    let wrote = tail.journal.append(&delta, to)?;
    let follower = match follower {
        Some(mut journal) => {
            journal.append(&delta, to)?;
            Some(journal)
        }
        None => None,
    };
    Ok((tail, follower, wrote))
}

/// A save whose blocking task panicked or was cancelled: nothing was found wrong with a file.
pub(super) fn task_failed(dir: &Path, error: &tokio::task::JoinError) -> PersistError {
    PersistError::Task {
        dir: dir.to_path_buf(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{HealthEntry, RegistryState};

    /// A state of four services, `svc-0` to `svc-3`.
    fn four_services() -> Persisted {
        let empty = Persisted {
            datacenter: "dc1".into(),
            fetched_at_ms: 1,
            saved_at_ms: 0,
            state: Arc::new(RegistryState::default()),
        };
        (0..4).fold(empty, |latest, n| changed(&latest, n))
    }

    /// `previous` with service `svc-<n % 4>` replaced (port `n`) and the index bumped.
    fn changed(previous: &Persisted, n: u16) -> Persisted {
        let mut next = previous.clone();
        let state = Arc::make_mut(&mut next.state);
        state.index += 1;
        let mut entry = HealthEntry::default();
        entry.service.port = n;
        state
            .services
            .insert(format!("svc-{}", n % 4), Arc::new(vec![entry]));
        next
    }

    #[tokio::test]
    async fn saves_append_and_a_compaction_hands_over_to_the_new_base_without_losing_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::new(dir.path().to_path_buf(), None);
        let mut latest = four_services();
        let first = writer.save(&latest, None).await.unwrap();
        assert!(first.full && first.generation == 1 && first.records == 0);
        let mut generations = vec![];
        for n in 4..40 {
            latest = changed(&latest, n);
            let written = writer.save(&latest, None).await.unwrap();
            assert!(!written.full, "save {n} appends");
            assert!(written.wrote < first.wrote * 2, "one service per record");
            if n % 5 == 0 {
                if let Some(compacted) = writer.finish().await {
                    generations.push(compacted.unwrap().unwrap().generation);
                }
            }
            let loaded = persist::load(dir.path(), "dc1");
            assert_eq!(loaded.found.unwrap().0.state, latest.state, "save {n}");
        }
        assert!(!generations.is_empty(), "the journal outgrew its base");
        assert!(
            generations.windows(2).all(|g| g[0] < g[1]),
            "{generations:?}"
        );
    }

    /// What a restart hands the writer: the base and journal loaded, as `restore.rs` does.
    fn adoptable(dir: &Path) -> Result<Adoptable, &'static str> {
        let loaded = persist::load(dir, "dc1");
        let found = loaded.resumable()?;
        let (persisted, _, _) = loaded.found.unwrap();
        Ok(Adoptable::new(found, persisted, None))
    }

    #[tokio::test]
    async fn a_restarted_writer_appends_to_the_base_it_started_from() {
        let dir = tempfile::tempdir().unwrap();
        let mut latest = four_services();
        // Large enough a base that the records below do not outgrow it (no compaction).
        let state = Arc::make_mut(&mut latest.state);
        for k in 0..40 {
            state
                .services
                .insert(format!("big-{k}"), Arc::new(vec![HealthEntry::default()]));
        }
        let mut writer = Writer::new(dir.path().to_path_buf(), None);
        let base = writer.save(&latest, None).await.unwrap();
        latest = changed(&latest, 4);
        writer.save(&latest, None).await.unwrap();
        drop(writer);

        // Two restarts in a row, each saving one change: both append to base 1.
        for (n, records) in [(5, 2), (6, 3)] {
            let adopted = adoptable(dir.path()).unwrap();
            let mut writer = Writer::new(dir.path().to_path_buf(), Some(adopted));
            latest = changed(&latest, n);
            let written = writer.save(&latest, None).await.unwrap();
            assert!(!written.full, "{written:?}");
            assert_eq!((written.generation, written.records), (1, records));
            assert!(written.wrote < base.wrote, "{written:?} {base:?}");
            let loaded = persist::load(dir.path(), "dc1");
            assert_eq!(loaded.journal.applied, records);
            assert_eq!(loaded.found.unwrap().0.state, latest.state);
        }

        // A journal that changed since it was replayed is not appended to: a whole base.
        let adopted = adoptable(dir.path()).unwrap();
        let journal = dir.path().join("journal-000000000001.snapdns");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        std::io::Write::write_all(&mut file, b"snapdns-jou").unwrap();
        let mut writer = Writer::new(dir.path().to_path_buf(), Some(adopted));
        latest = changed(&latest, 7);
        let written = writer.save(&latest, None).await.unwrap();
        assert!(written.full && written.generation == 2, "{written:?}");
        assert_eq!(
            persist::load(dir.path(), "dc1").found.unwrap().0.state,
            latest.state
        );

        // A journal ending in a torn record is not adopted either.
        let journal = dir.path().join("journal-000000000002.snapdns");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        std::io::Write::write_all(&mut file, b"snapdns-jou").unwrap();
        let error = adoptable(dir.path()).unwrap_err();
        assert!(error.contains("not replayed to its end"), "{error}");
    }
}
