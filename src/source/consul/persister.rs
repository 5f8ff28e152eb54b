//! Persistence as the sync engine uses it (start-up from disk is `restore.rs`): a writer task
//! that saves the newest published state at most once per `--persist-interval`
//! ([`PERSIST_INTERVAL`] by default) as a journal record, compacting in the background
//! (`persist_writer.rs`); every base gets the zone cache of its state. A save that
//! fails (disk full, directory gone) is retried with backoff, from [`RETRY_FIRST`] up to
//! [`RETRY_MAX`] apart, until one succeeds, whether or not the registry changes meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::persist_writer::{Adoptable, Writer, Written};
use crate::persist::{PersistError, Persisted};
use crate::snapshot::Snapshot;
use crate::source::status::SourceStatus;

/// A published state to save, with the snapshot built from it (for the zone cache).
pub(super) type ToSave = (Arc<Persisted>, Arc<Snapshot>);

/// The state is saved at most this often by default (`--persist-interval`), however fast the
/// registry changes: a kill -9 loses at most about this much.
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// Saves are at least this many times their own duration apart.
const SAVE_SPACING: u32 = 10;
/// The first retry of a failed save comes this long after it; each further one twice as long.
pub(super) const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Failed saves are retried at least this often.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(30);

/// The persister: writes the newest published state, at most once per `interval` and
/// [`SAVE_SPACING`] times the previous journal append's duration, and follows compactions.
pub(super) async fn persist_loop(
    mut updates: watch::Receiver<Option<ToSave>>,
    dir: PathBuf,
    interval: Duration,
    status: Arc<SourceStatus>,
    adopted: Option<Adoptable>,
    shutdown: CancellationToken,
) {
    let mut writer = Writer::new(dir, adopted);
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
                // base is written by a compaction, or when a start found none to append to (or
                // after a failure) only.
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
    updates: &mut watch::Receiver<Option<ToSave>>,
    writer: &mut Writer,
    status: &SourceStatus,
) -> Option<bool> {
    let (latest, snapshot) = updates.borrow_and_update().clone()?;
    let result = writer.save(&latest, Some(snapshot)).await;
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
