//! Persistence as the sync engine uses it: the state from disk at start-up, and a writer task
//! that saves the newest published state at most once per [`PERSIST_INTERVAL`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::status::SyncStatus;
use super::SyncSettings;
use crate::persist::{self, Persisted};
use crate::snapshot::{Snapshot, SnapshotStore};

/// The state file is written at most this often, however fast the registry changes.
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// Loads the newest usable persisted state from `state_dir` and publishes it, so DNS answers from
/// disk before the first sync. Every skipped file is logged; nothing here can fail start-up.
pub fn restore(settings: &SyncSettings, store: &SnapshotStore, status: &SyncStatus) {
    let loaded = persist::load(&settings.state_dir, &settings.datacenter);
    for problem in &loaded.skipped {
        error!(error = %problem, "persisted registry state not usable; trying an older generation");
    }
    let skipped: Vec<String> = loaded.skipped.iter().map(ToString::to_string).collect();
    status.update(|view| {
        if let Some(p) = view.persistence.as_mut() {
            p.skipped = skipped;
        }
    });
    let Some((persisted, generation, path)) = loaded.found else {
        info!(dir = %settings.state_dir.display(), "no persisted registry state; DNS answers SERVFAIL for registry names until the first sync");
        return;
    };
    let fetched_at = persisted.fetched_at();
    match Snapshot::build(persisted.state.clone(), fetched_at, &settings.zone) {
        Ok(snapshot) => {
            info!(
                path = %path.display(),
                generation,
                index = snapshot.index(),
                services = snapshot.stats.services,
                instances = snapshot.stats.instances,
                age_s = fetched_at.elapsed().unwrap_or_default().as_secs(),
                "serving the persisted registry state until the first sync"
            );
            store.publish(Arc::new(snapshot));
            status.update(|view| {
                view.snapshot_origin = "disk";
                if let Some(p) = view.persistence.as_mut() {
                    p.loaded_from = Some(path);
                    p.generation = generation;
                }
            });
        }
        Err(error) => {
            error!(path = %path.display(), %error, "persisted registry state cannot be served")
        }
    }
}

/// The persister: writes the newest published state, at most once per [`PERSIST_INTERVAL`].
pub(super) async fn persist_loop(
    mut updates: watch::Receiver<Option<Arc<Persisted>>>,
    dir: PathBuf,
    status: Arc<SyncStatus>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = updates.changed() => if changed.is_err() { break },
        }
        save_latest(&mut updates, &dir, &status).await;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(PERSIST_INTERVAL) => {}
        }
    }
    if updates.has_changed().unwrap_or(false) {
        save_latest(&mut updates, &dir, &status).await;
    }
}

pub(super) async fn save_latest(
    updates: &mut watch::Receiver<Option<Arc<Persisted>>>,
    dir: &std::path::Path,
    status: &SyncStatus,
) {
    let Some(latest) = updates.borrow_and_update().clone() else {
        return;
    };
    let target = dir.to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        let mut persisted = (*latest).clone();
        persisted.saved_at_ms = persist::unix_ms(SystemTime::now());
        persist::save(&target, &persisted)
    })
    .await
    .unwrap_or_else(|e| {
        Err(persist::PersistError::Corrupt {
            path: dir.to_path_buf(),
            reason: format!("save task failed: {e}"),
        })
    });
    let was_ok = status.view().persistence.and_then(|p| p.ok);
    match result {
        Ok(saved) => {
            debug!(path = %saved.path.display(), bytes = saved.bytes, "registry state persisted");
            if was_ok == Some(false) {
                info!(dir = %dir.display(), "state directory writable again; registry state persisted");
            }
            status.update(|view| {
                if let Some(p) = view.persistence.as_mut() {
                    p.ok = Some(true);
                    p.last_saved = Some(SystemTime::now());
                    p.generation = saved.generation;
                    p.bytes = saved.bytes;
                    p.error = None;
                }
            });
        }
        Err(error) => {
            if was_ok != Some(false) {
                error!(%error, "cannot persist the registry state; serving goes on, but a restart will not find it");
            } else {
                debug!(%error, "persisting still fails");
            }
            status.update(|view| {
                if let Some(p) = view.persistence.as_mut() {
                    p.ok = Some(false);
                    p.error = Some(error.to_string());
                }
            });
        }
    }
}
