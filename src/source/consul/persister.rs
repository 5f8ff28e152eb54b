//! Persistence as the sync engine uses it: the state from disk at start-up (a base and its
//! journal), and a writer task that saves the newest published state at most once per
//! `--persist-interval` ([`PERSIST_INTERVAL`] by default) as a journal record, compacting in
//! the background (`persist_writer.rs`). A save that
//! fails (disk full, directory gone) is retried with backoff, from [`RETRY_FIRST`] up to
//! [`RETRY_MAX`] apart, until one succeeds, whether or not the registry changes meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::persist_writer::{Writer, Written};
use super::SyncSettings;
use crate::persist::{self, PersistError, Persisted};
use crate::snapshot::SnapshotStore;
use crate::source::status::{SnapshotOrigin, SourceStatus};
use crate::source::{publish, Origin};

/// The state is saved at most this often by default (`--persist-interval`), however fast the
/// registry changes: a kill -9 loses at most about this much.
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
    if let Some(stopped) = &loaded.journal.stopped {
        // After a crash during an append this is the torn last record: expected, and the
        // records before it still apply.
        warn!(error = %stopped, replayed = loaded.journal.applied, "persisted state journal not replayed past this record; serving the state before it");
    }
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
                p.journal_records = loaded.journal.applied;
            }
        });
    }
}

/// The persister: writes the newest published state, at most once per `interval` and
/// [`SAVE_SPACING`] times the previous journal append's duration, and follows compactions.
pub(super) async fn persist_loop(
    mut updates: watch::Receiver<Option<Arc<Persisted>>>,
    dir: PathBuf,
    interval: Duration,
    status: Arc<SourceStatus>,
    shutdown: CancellationToken,
) {
    let mut writer = Writer::new(dir);
    // After a failed save: how long until the next try.
    let mut retry: Option<Duration> = None;
    let next_retry = |retry: Option<Duration>| {
        Some(retry.map_or(RETRY_FIRST, |delay| (delay * 2).min(RETRY_MAX)))
    };
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
            compacted = writer.compacted() => {
                if !record_compaction(compacted, &writer, &status) {
                    retry = next_retry(retry);
                }
                continue;
            }
        }
        let started = tokio::time::Instant::now();
        let pause = match save_latest(&mut updates, &mut writer, &status).await {
            Some(full) => {
                retry = None;
                // An append costs what changed; still, spacing saves by ten times the last one
                // keeps a registry that changes all the time under a tenth of a core. A whole
                // base is written once per start (or after a failure) only.
                let spent = if full {
                    Duration::ZERO
                } else {
                    started.elapsed()
                };
                interval.max(spent * SAVE_SPACING)
            }
            None => {
                retry = next_retry(retry);
                interval
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    if updates.has_changed().unwrap_or(false) {
        save_latest(&mut updates, &mut writer, &status).await;
    }
    if let Some(compacted) = writer.finish().await {
        record_compaction(compacted, &writer, &status);
    }
}

/// Saves the newest state sent, if any, and records the outcome in the status; `None` when
/// the save failed, else whether a whole base was written.
async fn save_latest(
    updates: &mut watch::Receiver<Option<Arc<Persisted>>>,
    writer: &mut Writer,
    status: &SourceStatus,
) -> Option<bool> {
    let latest = updates.borrow_and_update().clone()?;
    let result = writer.save(&latest).await;
    let full = result.as_ref().is_ok_and(|w| w.full);
    record(result, writer.dir(), status).then_some(full)
}

/// Records a finished compaction in the status; false when it failed (the next save writes a
/// whole base).
fn record_compaction(
    result: Result<Option<Written>, PersistError>,
    writer: &Writer,
    status: &SourceStatus,
) -> bool {
    match result {
        Ok(None) => true,
        Ok(Some(written)) => {
            debug!(
                generation = written.generation,
                bytes = written.wrote,
                "registry state journal compacted into a new base"
            );
            record(Ok(written), writer.dir(), status)
        }
        Err(error) => record(Err(error), writer.dir(), status),
    }
}

/// Records the outcome of a save or compaction in the status, logging a failure once; false
/// when it failed.
fn record(result: Result<Written, PersistError>, dir: &Path, status: &SourceStatus) -> bool {
    let was_ok = status.view().persistence.and_then(|p| p.ok);
    match result {
        Ok(written) => {
            debug!(
                generation = written.generation,
                index = written.index,
                bytes = written.wrote,
                full = written.full,
                "registry state persisted"
            );
            if was_ok == Some(false) {
                info!(dir = %dir.display(), "state directory writable again; registry state persisted");
            }
            status.update(|view| {
                if let Some(p) = view.persistence.as_mut() {
                    p.ok = Some(true);
                    p.last_saved = Some(SystemTime::now());
                    p.generation = written.generation;
                    p.index = written.index;
                    p.bytes = written.on_disk;
                    p.last_write_bytes = written.wrote;
                    p.journal_records = written.records;
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

    use crate::source::consul::persist_writer::task_failed;

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
