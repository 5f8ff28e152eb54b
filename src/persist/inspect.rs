//! A read-only look at every generation in a state directory, for `snapdns state`: each base
//! read and checked as start-up reads it (whatever its datacenter), its journal replayed onto
//! it, and for a damaged base the journal records that are still whole.
//!
//! Nothing here creates, locks, renames or removes a file, so it is safe beside a running
//! server (which holds no lock: it writes by rename and appends whole, checksummed records, so
//! a reader sees either the old or the new file and at worst a torn last record).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::base::{check_generation, generations, read_any};
use super::files::{parse_header, read_regular};
use super::journal::{self, journal_name, BaseId, Replay};
use super::{PersistError, Persisted};

/// One base generation as found on disk.
#[derive(Debug)]
pub struct Generation {
    /// Its generation number.
    pub generation: u64,
    /// The base file.
    pub path: PathBuf,
    /// The base file's size in bytes (0 when it cannot be looked at).
    pub bytes: u64,
    /// The base file's modification time.
    pub modified: Option<SystemTime>,
    /// The state it gives (base plus journal, exactly as start-up restores it), or why the
    /// base cannot be used.
    pub state: Result<Persisted, PersistError>,
    /// Journal records: applied onto an intact base, or still whole beside a damaged one.
    pub journal_records: u64,
    /// Where the journal stopped before its end, and why (a torn last record after a crash).
    pub journal_stopped: Option<PersistError>,
}

/// Every base generation in `dir`, newest first. Fails only when the directory cannot be
/// listed.
pub fn inspect(dir: &Path) -> std::io::Result<Vec<Generation>> {
    let mut found = Vec::new();
    for (generation, path) in generations(dir)? {
        let metadata = fs::symlink_metadata(&path).ok();
        let state = read_any(&path);
        let (state, journal_records, journal_stopped) = match state {
            Ok(mut persisted) => {
                let base = BaseId::of(generation, &persisted);
                let Replay {
                    applied, stopped, ..
                } = journal::replay(dir, base, &mut persisted);
                (Ok(persisted), applied, stopped)
            }
            Err(error) => (Err(error), whole_records(dir, generation), None),
        };
        found.push(Generation {
            generation,
            path,
            bytes: metadata.as_ref().map_or(0, fs::Metadata::len),
            modified: metadata.and_then(|m| m.modified().ok()),
            state,
            journal_records,
            journal_stopped,
        });
    }
    Ok(found)
}

/// The base generations in `dir`, newest first, down to the first intact one, each with
/// whether it is intact (header, format, length and checksum), read as a stream and not
/// decoded: the quick look `snapdns check` takes before a start.
pub fn newest_intact(dir: &Path) -> std::io::Result<Vec<(u64, Result<(), PersistError>)>> {
    let mut found = Vec::new();
    for (generation, _) in generations(dir)? {
        let checked = check_generation(dir, generation);
        let intact = checked.is_ok();
        found.push((generation, checked));
        if intact {
            break;
        }
    }
    Ok(found)
}

/// The journal records of base `generation` whose framing and checksum are whole, up to the
/// first that is not (a damaged base cannot be replayed onto, but its journal can be counted).
fn whole_records(dir: &Path, generation: u64) -> u64 {
    let Ok(bytes) = read_regular(&dir.join(journal_name(generation))) else {
        return 0;
    };
    let (mut at, mut records) = (0, 0);
    while let Ok(header) = parse_header(&bytes[at..], journal::MAGIC) {
        let end = (at + header.size).saturating_add(header.length);
        let whole = bytes.get(at + header.size..end).is_some_and(|payload| {
            crc32fast::hash(payload) == header.checksum && bytes.get(end) == Some(&b'\n')
        });
        if !whole {
            break;
        }
        records += 1;
        at = end + 1;
    }
    records
}
