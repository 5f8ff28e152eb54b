//! The registry file as a source: loaded at start, then polled for changes.
//!
//! Polling the file's metadata every [`POLL_INTERVAL`] notices edits, atomic replacements
//! (rename over the file) and truncations alike, with no platform-specific watcher. A file
//! that fails to parse keeps the previous snapshot serving; the error is logged once per
//! version of the file, with line and column.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::registry::file::{self, FileStamp};
use crate::snapshot::{Snapshot, SnapshotStore, ZoneOptions};

/// How often the file's metadata is checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Keeps the store in step with a registry file.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    options: ZoneOptions,
    store: SnapshotStore,
    last_stamp: Option<FileStamp>,
}

impl FileSource {
    /// A source for `path` publishing into `store`.
    pub fn new(path: PathBuf, options: ZoneOptions, store: SnapshotStore) -> Self {
        Self {
            path,
            options,
            store,
            last_stamp: None,
        }
    }

    /// Reads the file now and publishes it when it parses.
    pub fn load_once(&mut self) {
        self.last_stamp = FileStamp::of(&self.path);
        match file::load(&self.path) {
            Ok(state) => {
                let state = Arc::new(state);
                let previous = self.store.current();
                match Snapshot::rebuild(
                    previous.as_deref(),
                    state,
                    SystemTime::now(),
                    &self.options,
                ) {
                    Ok(snapshot) => {
                        info!(
                            path = %self.path.display(),
                            services = snapshot.stats.services,
                            instances = snapshot.stats.instances,
                            passing = snapshot.stats.passing_instances,
                            serial = snapshot.zone.serial(),
                            "registry file loaded"
                        );
                        self.store.publish(Arc::new(snapshot));
                    }
                    Err(err) => {
                        error!(path = %self.path.display(), error = %err, "registry file not served; keeping the previous snapshot")
                    }
                }
            }
            Err(err) => error!("{err}; keeping the previous snapshot"),
        }
    }

    /// Polls the file until `shutdown` is cancelled, reloading it whenever it changes.
    pub async fn watch(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            let stamp = FileStamp::of(&self.path);
            if stamp != self.last_stamp {
                // Snapshot building is CPU work; keep it off the runtime's worker threads.
                self = match tokio::task::spawn_blocking(move || {
                    self.load_once();
                    self
                })
                .await
                {
                    Ok(source) => source,
                    Err(_) => break,
                };
            }
        }
    }
}
