//! The persisted registry state in `--state-dir`: a checksummed base file per generation plus
//! an append-only journal of per-service changes on top of it.
//!
//! What is saved is the *input* of a snapshot, the [`RegistryState`] (plus when it was fetched
//! and for which datacenter); the indexed snapshot is rebuilt on load.
//!
//! * A base, `state-<generation>.snapdns` ([`base`]), holds a whole state:
//!
//!   ```text
//!   snapdns-state 1 <crc32 of the payload, 8 hex digits> <payload length>\n
//!   <payload: JSON {"datacenter", "fetched_at_ms", "saved_at_ms", "state"}>
//!   ```
//!
//!   It is written to a temporary file, fsynced, renamed into place and the directory fsynced,
//!   so a crash leaves either the old or the new generation, never a torn one. The newest
//!   [`KEEP_GENERATIONS`] are kept. The format is unchanged since version 1, so files written
//!   before the journal existed load as bases without one.
//! * Its journal, `journal-<generation>.snapdns` ([`journal`]), holds one checksummed record per
//!   save after the base: the services that changed and the new index. A save costs what
//!   changed, and any prefix of the journal is a state that was published.
//!
//! * Its zone cache, `zone-<generation>.snapdns` ([`zone_cache`]), holds the zone built from
//!   the base's state, so a restart serves it at once and reads the base meanwhile.
//!
//! Loading takes the newest base that is intact, of a known format and for our datacenter, and
//! replays its journal up to the first record that is torn or damaged; it reports every base it
//! skipped. A journal is replayed onto its own base only (the records name it). When a journal
//! outgrows its base, the writer writes the current state as a new base (compaction) and starts
//! its journal; a restarted writer appends to the journal of the base it loaded when
//! [`Loaded::resumable`] allows ([`Journal::resume`]); see `source/consul/persister.rs`. Everything here is blocking file I/O: call it
//! from `spawn_blocking`.
//!
//! The directory is created 0700 and every file 0600, whatever the umask: the state is the
//! registry's content. A file that is not a regular file (a symbolic link, say) is skipped,
//! never followed, and a damaged file is described by a short, escaped excerpt at most, so
//! nothing of another file's content reaches the log or `/health`.

mod base;
mod files;
pub mod inspect;
pub mod journal;
pub mod zone_cache;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::registry::RegistryState;
pub use base::{check_generation, newest_generation, next_generation, read_file, save_generation};
pub use journal::{BaseId, Delta, Journal, Replay, Resumable, JOURNAL_VERSION};

/// The base file format written by this version.
pub const FORMAT_VERSION: u32 = 1;

/// How many base generations (each with its journal) stay on disk.
pub const KEEP_GENERATIONS: usize = 3;

/// A registry state as saved, with what it needs to be served again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The datacenter the state belongs to (a file for another one is not served).
    pub datacenter: String,
    /// When the state was obtained from the registry, in ms since the Unix epoch.
    pub fetched_at_ms: u64,
    /// When the file (or journal record) was written, in ms since the Unix epoch.
    pub saved_at_ms: u64,
    /// The registry state, index included (shared with the published snapshot, not copied).
    pub state: Arc<RegistryState>,
}

impl Persisted {
    /// When the state was fetched.
    pub fn fetched_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.fetched_at_ms)
    }
}

/// A base file that was written.
#[derive(Clone, Debug)]
pub struct Saved {
    /// Its path.
    pub path: PathBuf,
    /// Its generation number.
    pub generation: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What loading found: the newest usable state, and every base file it had to skip.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The newest usable state (its base with the journal replayed), its generation and the
    /// base's path.
    pub found: Option<(Persisted, u64, PathBuf)>,
    /// Base files that were skipped, newest first, and why.
    pub skipped: Vec<PersistError>,
    /// What replaying the found base's journal did.
    pub journal: Replay,
    /// The found base's identity and its state before the journal (shared, not copied).
    pub base: Option<(BaseId, Arc<RegistryState>)>,
    /// The found base's file size.
    pub base_bytes: u64,
}

impl Loaded {
    /// The found base, when the next save may append to its journal rather than write a whole
    /// base; else why not. It must be the newest base in the directory (a newer one that could
    /// not be used is not built upon), its journal replayed to its very end (one that stopped
    /// at a torn, damaged or newer-format record is not appended to: what follows would never
    /// be replayed), and that journal not larger than the base (it would be compacted at once).
    pub fn resumable(&self) -> Result<Resumable, &'static str> {
        let Some((base, _)) = &self.base else {
            return Err("no usable persisted state");
        };
        if !self.skipped.is_empty() {
            return Err("a newer base was not usable");
        }
        if self.journal.stopped.is_some() {
            return Err("its journal was not replayed to its end");
        }
        if self.journal.bytes > self.base_bytes {
            return Err("its journal has outgrown it");
        }
        Ok(Resumable {
            base: *base,
            base_bytes: self.base_bytes,
            records: self.journal.applied,
            journal_bytes: self.journal.bytes,
        })
    }
}

/// Why a state file could not be written or used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// A file system operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is damaged: bad header, wrong length, checksum mismatch or invalid JSON.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The save ran on a blocking thread that panicked or was cancelled; no file was judged.
    #[error("saving the state in {dir} did not finish: {reason}")]
    Task {
        /// The state directory.
        dir: PathBuf,
        /// Why the task ended.
        reason: String,
    },
    /// The file was written by a newer snapdns.
    #[error("{path} has format version {version}, newer than {FORMAT_VERSION}")]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its format version.
        version: u32,
    },
    /// The file holds another datacenter's registry.
    #[error("{path} holds datacenter {found:?}, not {expected:?}")]
    OtherDatacenter {
        /// The file.
        path: PathBuf,
        /// The datacenter in the file.
        found: String,
        /// The datacenter served.
        expected: String,
    },
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Writes `persisted` as a new base generation in `dir` (created if missing), without a
/// journal, and prunes old ones.
pub fn save(dir: &Path, persisted: &Persisted) -> Result<Saved, PersistError> {
    save_generation(dir, next_generation(dir)?, persisted)
}

/// Reads the newest usable base in `dir` and replays its journal; a missing directory is not an
/// error.
pub fn load(dir: &Path, datacenter: &str) -> Loaded {
    let mut loaded = Loaded::default();
    let list = match base::generations(dir) {
        Ok(list) => list,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return loaded,
        Err(source) => {
            loaded.skipped.push(PersistError::Io {
                op: "list",
                path: dir.to_path_buf(),
                source,
            });
            return loaded;
        }
    };
    for (generation, path) in list {
        match base::read_sized(&path, datacenter) {
            Ok((mut persisted, bytes)) => {
                let base = BaseId::of(generation, &persisted);
                loaded.base = Some((base, persisted.state.clone()));
                loaded.base_bytes = bytes;
                loaded.journal = journal::replay(dir, base, &mut persisted);
                loaded.found = Some((persisted, generation, path));
                break;
            }
            Err(error) => loaded.skipped.push(error),
        }
    }
    loaded
}

#[cfg(test)]
mod tests;
