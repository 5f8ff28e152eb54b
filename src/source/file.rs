//! The registry file as a source: loaded at start, then polled for changes.
//!
//! Polling the file's metadata every [`POLL_INTERVAL`] notices edits, atomic replacements
//! (rename over the file) and truncations alike, with no platform-specific watcher. A file
//! that fails to parse keeps the previous snapshot serving; the error is logged once per
//! version of the file, with line and column, and shown as the last error in the status.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::status::{SnapshotOrigin, SourceStatus};
use super::{publish, Origin};
use crate::registry::consul::FaultKind;
use crate::registry::file::{self, FileStamp};
use crate::snapshot::{SnapshotStore, ZoneOptions};

/// How often the file's metadata is checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The status channel of the file source's errors.
const CHANNEL: &str = "file";

/// Keeps the store in step with a registry file.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    options: ZoneOptions,
    store: SnapshotStore,
    status: Arc<SourceStatus>,
    last_stamp: Option<FileStamp>,
}

impl FileSource {
    /// A source for `path` publishing into `store` and reporting in `status`.
    pub fn new(
        path: PathBuf,
        options: ZoneOptions,
        store: SnapshotStore,
        status: Arc<SourceStatus>,
    ) -> Self {
        Self {
            path,
            options,
            store,
            status,
            last_stamp: None,
        }
    }

    /// Reads the file now and publishes it when it parses.
    pub fn load_once(&mut self) {
        self.last_stamp = FileStamp::of(&self.path);
        let state = match file::load(&self.path) {
            Ok(state) => Arc::new(state),
            Err(err) => {
                if self.store.current().is_some() {
                    error!("{err}; keeping the previous snapshot");
                } else {
                    error!("{err}; no registry data yet: registry names get SERVFAIL until the file loads");
                }
                self.status
                    .failed(CHANNEL, FaultKind::BadResponse, err.to_string());
                return;
            }
        };
        let origin = Origin::File(&self.path);
        let published = publish(
            &self.store,
            state,
            SystemTime::now(),
            &self.options,
            origin,
            &self.status,
        );
        match published {
            Ok(snapshot) => self
                .status
                .served(SnapshotOrigin::File, snapshot.fetched_at),
            Err(err) => self
                .status
                .failed(CHANNEL, FaultKind::BadResponse, err.to_string()),
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
                info!(path = %self.path.display(), "registry file changed; loading it");
                // Snapshot building is CPU work; keep it off the runtime's worker threads. A
                // build still running at shutdown is abandoned: nothing of it was published.
                let loading = tokio::task::spawn_blocking(move || {
                    self.load_once();
                    self
                });
                self = tokio::select! {
                    () = shutdown.cancelled() => break,
                    loaded = loading => match loaded {
                        Ok(source) => source,
                        Err(_) => break,
                    },
                };
            }
        }
    }
}
