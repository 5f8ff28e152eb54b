//! Start-up from disk: the newest persisted state is served before the first sync.
//!
//! When the newest base has a zone cache (`persist/zone_cache.rs`) built with the zone options
//! in force, that is published at once: no record is encoded, so the first answer comes within
//! a second even at a million instances. The base and its journal are then read on a blocking
//! thread and the snapshot rebuilt over the cache (only the services the journal changed are
//! encoded) and published; only then does the sync start ([`Restoring::finished`]), so it
//! diffs against the real state, never against the cache's empty one. A missing, damaged or
//! mismatched cache is logged once and the state is read and built as without one.
//!
//! The base read is handed to the persister ([`Restoring::finished`]) when its journal can take
//! the next record, so that the first save after a restart appends what changed rather than
//! writing a whole base (`persist_writer.rs`).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tracing::{debug, error, info, warn};

use super::persist_writer::{cache_base, Adoptable};
use super::SyncSettings;
use crate::persist::{self, zone_cache, Loaded, PersistError};
use crate::snapshot::{BaseId, Snapshot, SnapshotStore};
use crate::source::changes::changes;
use crate::source::status::{SnapshotOrigin, SourceStatus};
use crate::source::{publish, Origin};

/// The part of start-up from disk still under way: the sync waits for it.
#[derive(Debug)]
pub struct Restoring(Loading);

#[derive(Debug)]
enum Loading {
    Done(Option<Adoptable>),
    Reading(tokio::task::JoinHandle<Option<Adoptable>>),
}

impl Default for Restoring {
    fn default() -> Self {
        Self(Loading::Done(None))
    }
}

impl Restoring {
    /// Returns once the persisted state is read and its snapshot published (at once when the
    /// state was read before start-up went on), with the base the first save may append to.
    pub async fn finished(self) -> Option<Adoptable> {
        match self.0 {
            Loading::Done(adoptable) => adoptable,
            Loading::Reading(task) => task.await.unwrap_or_else(|error| {
                error!(%error, "loading the persisted registry state failed");
                None
            }),
        }
    }
}

/// Publishes the newest usable persisted state from `state_dir`, so DNS answers from disk
/// before the first sync: its zone cache at once when there is one (the state is then read in
/// the background), else the state read and built now. Every skipped file is logged; nothing
/// here can fail start-up. Call it within the runtime.
pub fn restore(
    settings: &SyncSettings,
    store: &SnapshotStore,
    status: &Arc<SourceStatus>,
) -> Restoring {
    let Some(cached) = serve_cache(settings, store, status) else {
        return Restoring(Loading::Done(load(settings, store, status, None)));
    };
    let (settings, store, status) = (settings.clone(), store.clone(), status.clone());
    Restoring(Loading::Reading(tokio::task::spawn_blocking(move || {
        load(&settings, &store, &status, Some(cached))
    })))
}

/// Publishes the zone cache of the newest base, if it has a usable one; returns the snapshot
/// and the base it was built from.
fn serve_cache(
    settings: &SyncSettings,
    store: &SnapshotStore,
    status: &SourceStatus,
) -> Option<(Arc<Snapshot>, BaseId)> {
    let dir = &settings.state_dir;
    let generation = persist::newest_generation(dir)?;
    let path = zone_cache::path(dir, generation);
    let started = Instant::now();
    let fallback = "building the zone from the persisted state instead";
    // Only the cache of an intact base: a damaged one is reported when the state is loaded,
    // which then falls back to an older generation (whose cache would not be newest).
    if let Err(error) = persist::check_generation(dir, generation) {
        debug!(%error, "newest persisted state damaged; its zone cache is not served");
        return None;
    }
    let file = match zone_cache::read(dir, generation) {
        Ok(file) => file,
        Err(PersistError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            info!(path = %path.display(), "no zone cache for the newest persisted state; {fallback}");
            return None;
        }
        Err(error) => {
            warn!(%error, "zone cache not usable; {fallback}");
            return None;
        }
    };
    let cached = match Snapshot::from_cache(file.payload(), &settings.zone) {
        Ok(cached) if cached.base.generation == generation => cached,
        Ok(_) => {
            warn!(path = %path.display(), "zone cache names another base; {fallback}");
            return None;
        }
        Err(error) => {
            warn!(path = %path.display(), %error, "zone cache not usable; {fallback}");
            return None;
        }
    };
    let bytes = file.len();
    drop(file);
    let snapshot = Arc::new(cached.snapshot);
    store.publish(snapshot.clone());
    // The change log's first line; the state read later over it is not a change.
    let first = changes(None, &snapshot, settings.zone.health, SystemTime::now());
    status.record_changes(first);
    let stats = snapshot.stats;
    info!(
        path = %path.display(),
        generation,
        bytes,
        index = snapshot.index(),
        services = stats.services,
        instances = stats.instances,
        took_ms = started.elapsed().as_millis() as u64,
        "serving the zone cache while the persisted state is read"
    );
    for (reason, count, example) in snapshot.skipped.reasons() {
        warn!(
            reason,
            count, example, "registry entries not served: {reason}"
        );
    }
    status.update(|view| {
        view.snapshot_origin = SnapshotOrigin::Disk;
        if let Some(p) = view.persistence.as_mut() {
            p.loaded_from = Some(path);
            p.generation = generation;
        }
    });
    Some((snapshot, cached.base))
}

/// Reads the newest usable base and its journal and publishes their state: built over `cached`
/// (the zone cache served meanwhile, and its base) when that is the base found, else in full.
/// Returns that base when the first save may append to its journal.
///
/// When the cache's base itself turns out unusable (it was checked intact before the cache was
/// served, so it was damaged since or holds an unreadable payload), an older generation replaces
/// the cache only if its state is at least as new (its index not below the cache's): the answers
/// never go back in time. Else the cache keeps being served until the first sync.
fn load(
    settings: &SyncSettings,
    store: &SnapshotStore,
    status: &SourceStatus,
    cached: Option<(Arc<Snapshot>, BaseId)>,
) -> Option<Adoptable> {
    let started = Instant::now();
    let loaded = persist::load(&settings.state_dir, &settings.datacenter);
    report_skipped(&loaded, status);
    let resumable = loaded.resumable();
    let Some((persisted, generation, path)) = loaded.found else {
        match cached {
            // Its base was readable when the cache was written: keep answering from it.
            Some(_) => {
                warn!(dir = %settings.state_dir.display(), "no persisted registry state readable; serving the zone cache until the first sync")
            }
            None => {
                info!(dir = %settings.state_dir.display(), "no persisted registry state; DNS answers SERVFAIL for registry names until the first sync")
            }
        }
        return None;
    };
    if let Some((_, id)) = cached.as_ref() {
        let older = loaded
            .base
            .as_ref()
            .is_some_and(|(base, _)| cache_base(*base) != *id);
        if older && persisted.state.index < id.index {
            warn!(
                path = %path.display(),
                generation,
                index = persisted.state.index,
                cache_index = id.index,
                "the zone cache's base is not usable and the older persisted state is older than the cache; serving the zone cache until the first sync"
            );
            return None;
        }
    }
    let fetched_at = persisted.fetched_at();
    let over = cached
        .zip(loaded.base)
        .filter(|((_, id), (base, _))| *id == cache_base(*base));
    let published = match over {
        Some(((snapshot, _), (_, base_state))) => {
            let built = Snapshot::rebuild_over(
                &snapshot,
                base_state,
                persisted.state.clone(),
                fetched_at,
                &settings.zone,
            );
            match built {
                Ok(built) => {
                    let built = Arc::new(built);
                    store.publish(built.clone());
                    info!(
                        path = %path.display(),
                        generation,
                        index = built.index(),
                        journal_records = loaded.journal.applied,
                        took_ms = started.elapsed().as_millis() as u64,
                        "serving the persisted registry state until the first sync (built over the zone cache)"
                    );
                    Some(built)
                }
                Err(error) => {
                    error!(path = %path.display(), %error, "persisted registry state cannot be served");
                    None
                }
            }
        }
        None => {
            let origin = Origin::Disk(&path, generation);
            publish(
                store,
                persisted.state.clone(),
                fetched_at,
                &settings.zone,
                origin,
                status,
            )
            .ok()
        }
    };
    let snapshot = published?;
    status.update(|view| {
        view.snapshot_origin = SnapshotOrigin::Disk;
        if let Some(p) = view.persistence.as_mut() {
            p.loaded_from = Some(path);
            p.generation = generation;
            p.journal_records = loaded.journal.applied;
        }
    });
    match resumable {
        Ok(found) => Some(Adoptable::new(found, persisted, Some(snapshot))),
        Err(reason) => {
            info!(
                generation,
                "the first save writes a whole base: not appending to this one ({reason})"
            );
            None
        }
    }
}

/// Logs and records in the status every base that loading skipped, and where replaying the
/// journal stopped.
fn report_skipped(loaded: &Loaded, status: &SourceStatus) {
    for problem in &loaded.skipped {
        error!(error = %problem, "persisted registry state not usable; trying an older generation");
    }
    let skipped: Vec<String> = loaded.skipped.iter().map(ToString::to_string).collect();
    status.update(|view| {
        if let Some(p) = view.persistence.as_mut() {
            p.skipped = skipped;
        }
    });
    if let Some(stopped) = &loaded.journal.stopped {
        // After a crash during an append this is the torn last record: expected, and the
        // records before it still apply.
        warn!(error = %stopped, replayed = loaded.journal.applied, "persisted state journal not replayed past this record; serving the state before it");
    }
}
