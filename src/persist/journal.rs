//! The journal of a base: `journal-<base generation>.snapdns`, one record per save holding the
//! services that changed since the save before (removed ones as tombstones) and the new index.
//!
//! ```text
//! snapdns-journal 1 <crc32 of the payload, 8 hex digits> <payload length>\n
//! <payload: JSON {"base", "seq", "index", "fetched_at_ms", "saved_at_ms", "delta"}>\n
//! ```
//!
//! Each record is appended with one write and fdatasync'd. Every record names its base (its
//! generation, and when it was saved at which index) and its sequence number, so a journal is
//! never replayed onto another base, and replay stops at the first record that is torn,
//! damaged, of a newer format or out of sequence: the records before it are a state that was
//! published, the records after it are not applied.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::files::{
    create_private, header_line, io, numbered, open_regular, parse_header, read_regular, sync_dir,
    HeaderError, O_NOFOLLOW,
};
use super::{PersistError, Persisted};
use crate::registry::{Entries, RegistryState};

/// The journal record format written by this version.
pub const JOURNAL_VERSION: u32 = 1;

pub(super) const MAGIC: &str = "snapdns-journal";
const PREFIX: &str = "journal-";
const SUFFIX: &str = ".snapdns";

/// The name of the journal of base `generation`.
pub(super) fn journal_name(generation: u64) -> String {
    format!("{PREFIX}{generation:012}{SUFFIX}")
}

/// Journal files in `dir` as (base generation, path), newest first.
pub(super) fn journals(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    numbered(dir, PREFIX, SUFFIX)
}

/// The base a journal belongs to: its generation, and the save time and index written in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseId {
    /// The base's generation.
    pub generation: u64,
    /// The base's `saved_at_ms`.
    pub saved_at_ms: u64,
    /// The registry index of the base's state.
    pub index: u64,
}

impl BaseId {
    /// The identity of `persisted` written as base `generation`.
    pub fn of(generation: u64, persisted: &Persisted) -> Self {
        Self {
            generation,
            saved_at_ms: persisted.saved_at_ms,
            index: persisted.state.index,
        }
    }
}

/// The services that differ between two states: changed or added ones with their new entries,
/// and removed ones by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// Services added or changed, with their entries (shared with the state, not copied).
    pub changed: Vec<(String, Entries)>,
    /// Services removed.
    pub removed: Vec<String>,
}

impl Delta {
    /// What turns `old` into `new` (the index aside). Parts of the two states' maps that are
    /// shared are skipped whole; only a service whose entries were replaced is compared by
    /// value.
    pub fn between(old: &RegistryState, new: &RegistryState) -> Self {
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        for (name, _, entries) in old.changes_to(new) {
            match entries {
                Some(entries) => changed.push((name.to_string(), entries.clone())),
                None => removed.push(name.to_string()),
            }
        }
        Self { changed, removed }
    }

    /// Number of services it names.
    pub fn len(&self) -> usize {
        self.changed.len() + self.removed.len()
    }

    /// True when no service changed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies it to `state`.
    fn apply(self, state: &mut RegistryState) {
        for (name, entries) in self.changed {
            state.services.insert(name, entries);
        }
        for name in self.removed {
            state.services.remove(&name);
        }
    }
}

/// One journal record.
#[derive(Serialize, Deserialize)]
struct Record<D> {
    base: BaseId,
    seq: u64,
    index: u64,
    fetched_at_ms: u64,
    saved_at_ms: u64,
    delta: D,
}

/// An open journal, appended to by one writer.
#[derive(Debug)]
pub struct Journal {
    file: fs::File,
    path: PathBuf,
    base: BaseId,
    records: u64,
    bytes: u64,
    /// An append failed: the file may end in a partial record, so nothing more is appended.
    broken: bool,
}

impl Journal {
    /// Starts the (empty) journal of `base` in `dir`, replacing any file of that name, and
    /// makes it durable.
    pub fn create(dir: &Path, base: BaseId) -> Result<Self, PersistError> {
        let path = dir.join(journal_name(base.generation));
        match fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove", &path)(error))
            }
            _ => {}
        }
        let file = create_private(&path)?;
        file.sync_all().map_err(io("fsync", &path))?;
        sync_dir(dir)?;
        Ok(Self {
            file,
            path,
            base,
            records: 0,
            bytes: 0,
            broken: false,
        })
    }

    /// Opens the journal of a base found at start-up to append to it after its last record,
    /// as [`Resumable`] describes it (created when the base has none yet). Fails when the file
    /// is no longer the one that was replayed. The directory is fsynced first: the process that
    /// wrote the base may have died before its rename was durable, and a record must not
    /// outlive the base it names.
    pub fn resume(dir: &Path, found: &Resumable) -> Result<Self, PersistError> {
        let path = dir.join(journal_name(found.base.generation));
        sync_dir(dir)?;
        let opened = open_regular(&path).and_then(|_| {
            fs::OpenOptions::new()
                .append(true)
                .custom_flags(O_NOFOLLOW)
                .open(&path)
                .map_err(io("open", &path))
        });
        let file = match opened {
            Ok(file) => file,
            Err(PersistError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && found.journal_bytes == 0 =>
            {
                return Self::create(dir, found.base);
            }
            Err(error) => return Err(error),
        };
        let length = file.metadata().map_err(io("read", &path))?.len();
        if length != found.journal_bytes {
            return Err(PersistError::Corrupt {
                path,
                reason: format!(
                    "is {length} bytes, {} when it was replayed",
                    found.journal_bytes
                ),
            });
        }
        Ok(Self {
            file,
            path,
            base: found.base,
            records: found.records,
            bytes: found.journal_bytes,
            broken: false,
        })
    }

    /// Appends the record turning the journal's last state into `to`, `delta` being the
    /// difference, and fdatasyncs it. Returns the bytes written.
    pub fn append(&mut self, delta: &Delta, to: &Persisted) -> Result<u64, PersistError> {
        if self.broken {
            return Err(PersistError::Corrupt {
                path: self.path.clone(),
                reason: "an earlier append failed".into(),
            });
        }
        let record = Record {
            base: self.base,
            seq: self.records + 1,
            index: to.state.index,
            fetched_at_ms: to.fetched_at_ms,
            saved_at_ms: to.saved_at_ms,
            delta,
        };
        let payload = serde_json::to_vec(&record).map_err(|e| PersistError::Corrupt {
            path: self.path.clone(),
            reason: format!("cannot encode a record: {e}"),
        })?;
        let mut bytes = header_line(MAGIC, JOURNAL_VERSION, &payload).into_bytes();
        bytes.extend_from_slice(&payload);
        bytes.push(b'\n');
        let written = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            self.broken = true;
            // Best effort: a partial record would hide nothing (replay stops there), but cut
            // it off anyway so the file ends with what was published.
            let _ = self.file.set_len(self.bytes);
            return Err(io("append to", &self.path)(error));
        }
        self.records += 1;
        self.bytes += bytes.len() as u64;
        Ok(bytes.len() as u64)
    }

    /// The base it belongs to.
    pub fn base(&self) -> BaseId {
        self.base
    }

    /// Records appended.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A base found at start-up whose journal the next save may append to, so that a restart does
/// not write a whole base: see [`super::Loaded::resumable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resumable {
    /// The base.
    pub base: BaseId,
    /// Its file's size.
    pub base_bytes: u64,
    /// Records in its journal, all replayed.
    pub records: u64,
    /// Its journal's size (0 when it has none).
    pub journal_bytes: u64,
}

/// What replaying a journal did.
#[derive(Debug, Default)]
pub struct Replay {
    /// Records applied.
    pub applied: u64,
    /// Bytes of the records applied: where the next record goes.
    pub bytes: u64,
    /// The record replay stopped at, and why (`None`: the journal ended cleanly or is absent).
    pub stopped: Option<PersistError>,
}

/// Applies the journal of `base` in `dir` to `persisted`, record by record, up to its end or
/// the first record that cannot be used.
pub(super) fn replay(dir: &Path, base: BaseId, persisted: &mut Persisted) -> Replay {
    let path = dir.join(journal_name(base.generation));
    let mut replay = Replay::default();
    let bytes = match read_regular(&path) {
        Ok(bytes) => bytes,
        Err(PersistError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return replay
        }
        Err(error) => {
            replay.stopped = Some(error);
            return replay;
        }
    };
    let mut at = 0;
    while at < bytes.len() {
        let seq = replay.applied + 1;
        let stop = |reason: String| PersistError::Corrupt {
            path: path.clone(),
            reason: format!("record {seq} at byte {at}: {reason}"),
        };
        let rest = &bytes[at..];
        let header = match parse_header(rest, MAGIC) {
            Ok(header) => header,
            Err(HeaderError::Incomplete) => {
                replay.stopped = Some(stop("cut short (torn write)".into()));
                break;
            }
            Err(HeaderError::Bad(reason)) => {
                replay.stopped = Some(stop(reason));
                break;
            }
        };
        if header.version > JOURNAL_VERSION {
            replay.stopped = Some(stop(format!(
                "format version {}, newer than {JOURNAL_VERSION}",
                header.version
            )));
            break;
        }
        let end = header.size.saturating_add(header.length);
        if rest.len() <= end {
            replay.stopped = Some(stop("cut short (torn write)".into()));
            break;
        }
        let payload = &rest[header.size..end];
        let actual = crc32fast::hash(payload);
        if actual != header.checksum || rest[end] != b'\n' {
            replay.stopped = Some(stop(format!(
                "checksum {actual:08x} does not match {:08x}",
                header.checksum
            )));
            break;
        }
        let record: Record<Delta> = match serde_json::from_slice(payload) {
            Ok(record) => record,
            Err(e) => {
                replay.stopped = Some(stop(format!("invalid payload: {e}")));
                break;
            }
        };
        if record.base != base {
            replay.stopped = Some(stop(format!(
                "belongs to another base (generation {}, index {})",
                record.base.generation, record.base.index
            )));
            break;
        }
        if record.seq != seq {
            replay.stopped = Some(stop(format!("out of sequence ({})", record.seq)));
            break;
        }
        let state = Arc::make_mut(&mut persisted.state);
        record.delta.apply(state);
        state.index = record.index;
        persisted.fetched_at_ms = record.fetched_at_ms;
        persisted.saved_at_ms = record.saved_at_ms;
        replay.applied = seq;
        at += end + 1;
        replay.bytes = at as u64;
    }
    replay
}
