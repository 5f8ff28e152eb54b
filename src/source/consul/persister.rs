//! Persistence as the sync engine uses it: the state from disk at start-up, and a writer task
//! that saves the newest published state at most once per [`PERSIST_INTERVAL`]. A save that
//! fails (disk full, directory gone) is retried with backoff, from [`RETRY_FIRST`] up to
//! [`RETRY_MAX`] apart, until one succeeds, whether or not the registry changes meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::SyncSettings;
use crate::persist::{self, PersistError, Persisted};
use crate::snapshot::SnapshotStore;
use crate::source::status::{SnapshotOrigin, SourceStatus};
use crate::source::{publish, Origin};

/// The state file is written at most this often, however fast the registry changes.
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// Saves are at least this many times their own duration apart.
const SAVE_SPACING: u32 = 10;
/// The first retry of a failed save comes this long after it; each further one twice as long.
pub(super) const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Failed saves are retried at least this often.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(30);

/// Loads the newest usable persisted state from `state_dir` and publishes it, so DNS answers from
/// disk before the first sync. Every skipped file is logged; nothing here can fail start-up.
pub fn restore(settings: &SyncSettings, store: &SnapshotStore, status: &SourceStatus) {
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
    let origin = Origin::Disk(&path, generation);
    let fetched_at = persisted.fetched_at();
    if publish(
        store,
        persisted.state.clone(),
        fetched_at,
        &settings.zone,
        origin,
    )
    .is_ok()
    {
        status.update(|view| {
            view.snapshot_origin = SnapshotOrigin::Disk;
            if let Some(p) = view.persistence.as_mut() {
                p.loaded_from = Some(path);
                p.generation = generation;
            }
        });
    }
}

/// The persister: writes the newest published state, at most once per [`PERSIST_INTERVAL`]
/// and [`SAVE_SPACING`] times the previous save's duration.
pub(super) async fn persist_loop(
    mut updates: watch::Receiver<Option<Arc<Persisted>>>,
    dir: PathBuf,
    status: Arc<SourceStatus>,
    shutdown: CancellationToken,
) {
    // After a failed save: how long until the next try.
    let mut retry: Option<Duration> = None;
    loop {
        let retry_due = async {
            match retry {
                Some(delay) => tokio::time::sleep(delay).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = updates.changed() => if changed.is_err() { break },
            () = retry_due => {}
        }
        let started = tokio::time::Instant::now();
        retry = if save_latest(&mut updates, &dir, &status).await {
            None
        } else {
            Some(retry.map_or(RETRY_FIRST, |delay| (delay * 2).min(RETRY_MAX)))
        };
        // A save writes the whole state: under constant change, a large registry would spend a
        // core on saves alone. Spacing saves by ten times the last one keeps that under a tenth.
        let pause = PERSIST_INTERVAL.max(started.elapsed() * SAVE_SPACING);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    if updates.has_changed().unwrap_or(false) {
        save_latest(&mut updates, &dir, &status).await;
    }
}

/// A save whose blocking task panicked or was cancelled: nothing was found wrong with a file.
fn task_failed(dir: &Path, error: &tokio::task::JoinError) -> PersistError {
    PersistError::Task {
        dir: dir.to_path_buf(),
        reason: error.to_string(),
    }
}

/// Saves the newest state sent, if any, and records the outcome in the status; false when the
/// save failed.
pub(super) async fn save_latest(
    updates: &mut watch::Receiver<Option<Arc<Persisted>>>,
    dir: &Path,
    status: &SourceStatus,
) -> bool {
    let Some(latest) = updates.borrow_and_update().clone() else {
        return true;
    };
    let target = dir.to_path_buf();
    let index = latest.state.index;
    let result = tokio::task::spawn_blocking(move || {
        let mut persisted = (*latest).clone();
        persisted.saved_at_ms = persist::unix_ms(SystemTime::now());
        persist::save(&target, &persisted)
    })
    .await
    .unwrap_or_else(|e| Err(task_failed(dir, &e)));
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
                    p.index = index;
                    p.bytes = saved.bytes;
                    p.error = None;
                }
            });
            true
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
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_save_task_is_not_called_corruption() {
        let join_error = tokio::spawn(async { panic!("disk gremlin") })
            .await
            .expect_err("the task panics");
        let error = task_failed(Path::new("/var/lib/snapdns"), &join_error);
        assert!(matches!(error, PersistError::Task { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("/var/lib/snapdns"), "{message}");
        assert!(!message.contains("corrupt"), "{message}");
    }
}
