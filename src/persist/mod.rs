//! The persisted registry state: a versioned, checksummed file per generation in `--state-dir`.
//!
//! What is saved is the *input* of a snapshot, the [`RegistryState`] (plus when it was fetched
//! and for which datacenter); the indexed snapshot is rebuilt on load. A file is
//!
//! ```text
//! snapdns-state 1 <crc32 of the payload, 8 hex digits> <payload length>\n
//! <payload: JSON {"datacenter", "fetched_at_ms", "saved_at_ms", "state"}>
//! ```
//!
//! named `state-<generation>.snapdns`. Saving writes a temporary file, fsyncs it, renames it into
//! place and fsyncs the directory, so a crash leaves either the old or the new generation, never
//! a torn one. The newest [`KEEP_GENERATIONS`] files are kept; loading takes the newest one that
//! is intact, of a known format and for our datacenter, and reports every file it skipped.
//! Everything here is blocking file I/O: call it from `spawn_blocking`.
//!
//! The directory is created 0700 and every file 0600, whatever the umask: the state is the
//! registry's content. A state file that is not a regular file (a symbolic link, say) is skipped,
//! never followed, and a damaged file is described by a short, escaped excerpt at most, so
//! nothing of another file's content reaches the log or `/health`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::registry::RegistryState;

/// The format written by this version.
pub const FORMAT_VERSION: u32 = 1;

/// How many generations stay on disk.
pub const KEEP_GENERATIONS: usize = 3;

const MAGIC: &str = "snapdns-state";
const PREFIX: &str = "state-";
const SUFFIX: &str = ".snapdns";

/// A registry state as saved, with what it needs to be served again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    /// The datacenter the state belongs to (a file for another one is not served).
    pub datacenter: String,
    /// When the state was obtained from the registry, in ms since the Unix epoch.
    pub fetched_at_ms: u64,
    /// When the file was written, in ms since the Unix epoch.
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

/// A file that was written.
#[derive(Clone, Debug)]
pub struct Saved {
    /// Its path.
    pub path: PathBuf,
    /// Its generation number.
    pub generation: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// What loading found: the newest usable file, and every file it had to skip.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The newest usable state, its generation and path.
    pub found: Option<(Persisted, u64, PathBuf)>,
    /// Files that were skipped, newest first, and why.
    pub skipped: Vec<PersistError>,
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

/// Writes `persisted` as the next generation in `dir` (created if missing) and prunes old ones.
pub fn save(dir: &Path, persisted: &Persisted) -> Result<Saved, PersistError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| PersistError::Io { op, path, source }
    };
    create_private_dir(dir).map_err(io("create", dir))?;
    let generation = generations(dir)
        .map_err(io("list", dir))?
        .first()
        .map_or(1, |(g, _)| g + 1);
    let payload = serde_json::to_vec(persisted).map_err(|e| PersistError::Corrupt {
        path: dir.to_path_buf(),
        reason: format!("cannot encode the state: {e}"),
    })?;
    let header = format!(
        "{MAGIC} {FORMAT_VERSION} {:08x} {}\n",
        crc32fast::hash(&payload),
        payload.len()
    );
    let path = dir.join(file_name(generation));
    let temp = dir.join(format!(".{}.tmp", file_name(generation)));
    let write = || -> Result<(), PersistError> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(O_NOFOLLOW)
            .open(&temp)
            .map_err(io("create", &temp))?;
        // The umask may have taken bits from the mode; the state is for our user alone.
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io("chmod", &temp))?;
        file.write_all(header.as_bytes())
            .map_err(io("write", &temp))?;
        file.write_all(&payload).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("fsync", &temp))?;
        drop(file);
        fs::rename(&temp, &path).map_err(io("rename into", &path))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", dir))
    };
    if let Err(error) = write() {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    prune(dir);
    Ok(Saved {
        path,
        generation,
        bytes: (header.len() + payload.len()) as u64,
    })
}

/// Reads the newest usable generation in `dir`; a missing directory is not an error.
pub fn load(dir: &Path, datacenter: &str) -> Loaded {
    let mut loaded = Loaded::default();
    let list = match generations(dir) {
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
        match read_file(&path, datacenter) {
            Ok(persisted) => {
                loaded.found = Some((persisted, generation, path));
                break;
            }
            Err(error) => loaded.skipped.push(error),
        }
    }
    loaded
}

/// Reads and checks one state file; a symbolic link or any other non-regular file is not
/// followed.
pub fn read_file(path: &Path, datacenter: &str) -> Result<Persisted, PersistError> {
    let corrupt = |reason: String| PersistError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let io = |source| PersistError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    };
    let kind = fs::symlink_metadata(path).map_err(io)?.file_type();
    if !kind.is_file() {
        return Err(corrupt("not a regular file (not followed)".into()));
    }
    // O_NOFOLLOW too: the file may have been swapped for a link since it was looked at.
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .map_err(io)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io)?;
    let newline = bytes
        .iter()
        .take(128)
        .position(|b| *b == b'\n')
        .ok_or_else(|| corrupt("no header line".into()))?;
    let header = std::str::from_utf8(&bytes[..newline])
        .map_err(|_| corrupt(format!("unknown header {}", excerpt(&bytes))))?;
    let fields: Vec<&str> = header.split(' ').collect();
    if fields.len() != 4 || fields[0] != MAGIC {
        return Err(corrupt(format!("unknown header {}", excerpt(&bytes))));
    }
    let version: u32 = fields[1]
        .parse()
        .map_err(|_| corrupt(format!("bad version {}", excerpt(fields[1].as_bytes()))))?;
    if version > FORMAT_VERSION {
        return Err(PersistError::NewerFormat {
            path: path.to_path_buf(),
            version,
        });
    }
    let checksum = u32::from_str_radix(fields[2], 16).map_err(|_| {
        corrupt(format!(
            "bad checksum field {}",
            excerpt(fields[2].as_bytes())
        ))
    })?;
    let length: usize = fields[3]
        .parse()
        .map_err(|_| corrupt(format!("bad length {}", excerpt(fields[3].as_bytes()))))?;
    let payload = &bytes[newline + 1..];
    if payload.len() != length {
        return Err(corrupt(format!(
            "payload is {} bytes, header says {length}",
            payload.len()
        )));
    }
    let actual = crc32fast::hash(payload);
    if actual != checksum {
        return Err(corrupt(format!(
            "checksum {actual:08x} does not match {checksum:08x}"
        )));
    }
    // serde_json's message names a position and what it expected, never the content.
    let persisted: Persisted =
        serde_json::from_slice(payload).map_err(|e| corrupt(format!("invalid payload: {e}")))?;
    if !persisted.datacenter.eq_ignore_ascii_case(datacenter) {
        return Err(PersistError::OtherDatacenter {
            path: path.to_path_buf(),
            found: persisted.datacenter,
            expected: datacenter.to_string(),
        });
    }
    Ok(persisted)
}

/// `open(2)`'s O_NOFOLLOW on Linux (std does not name it, and no C bindings are needed for one
/// constant).
const O_NOFOLLOW: i32 = 0o400_000;

/// At most the first 16 bytes, escaped (`\xNN` for anything not printable ASCII) and quoted.
fn excerpt(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(16)];
    let more = if bytes.len() > shown.len() { "..." } else { "" };
    format!("\"{}\"{more}", shown.escape_ascii())
}

/// Creates `dir` (and its parents) if missing; the directory itself is made 0700.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn file_name(generation: u64) -> String {
    format!("{PREFIX}{generation:012}{SUFFIX}")
}

/// State files in `dir` as (generation, path), newest first.
fn generations(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let generation = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_suffix(SUFFIX))
            .and_then(|number| number.parse::<u64>().ok());
        if let Some(generation) = generation {
            out.push((generation, entry.path()));
        }
    }
    out.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    Ok(out)
}

/// Removes generations beyond [`KEEP_GENERATIONS`] and temporary files left by a crash.
fn prune(dir: &Path) {
    if let Ok(list) = generations(dir) {
        for (_, path) in list.into_iter().skip(KEEP_GENERATIONS) {
            let _ = fs::remove_file(path);
        }
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&format!(".{PREFIX}")) && name.ends_with(".tmp") {
                // Only ours, and only older than a minute: another save may be writing it.
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(60));
                if old {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::HealthEntry;

    fn persisted(index: u64) -> Persisted {
        let mut state = RegistryState {
            index,
            ..RegistryState::default()
        };
        state
            .services
            .insert("web".into(), Arc::new(vec![HealthEntry::default()]));
        Persisted {
            datacenter: "dc1".into(),
            fetched_at_ms: 1_700_000_000_000,
            saved_at_ms: 1_700_000_000_500,
            state: Arc::new(state),
        }
    }

    #[test]
    fn round_trip_and_generations() {
        let dir = tempfile::tempdir().unwrap();
        for index in 1..=5 {
            let saved = save(dir.path(), &persisted(index)).unwrap();
            assert_eq!(saved.generation, index);
        }
        let loaded = load(dir.path(), "dc1");
        let (found, generation, _) = loaded.found.unwrap();
        assert_eq!((found.state.index, generation), (5, 5));
        assert!(loaded.skipped.is_empty());
        assert_eq!(generations(dir.path()).unwrap().len(), KEEP_GENERATIONS);
    }

    #[test]
    fn damaged_files_fall_back_to_the_previous_generation() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &persisted(1)).unwrap();
        let newest = save(dir.path(), &persisted(2)).unwrap();
        let mut bytes = fs::read(&newest.path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        fs::write(&newest.path, &bytes).unwrap();
        let loaded = load(dir.path(), "dc1");
        assert_eq!(loaded.found.unwrap().0.state.index, 1);
        assert!(
            matches!(loaded.skipped[0], PersistError::Corrupt { .. }),
            "{:?}",
            loaded.skipped
        );

        // Truncated (torn) file.
        fs::write(&newest.path, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(load(dir.path(), "dc1").found.unwrap().0.state.index, 1);
    }

    #[test]
    fn newer_format_and_other_datacenter_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &persisted(1)).unwrap();
        fs::write(
            dir.path().join(file_name(7)),
            "snapdns-state 99 00000000 2\n{}",
        )
        .unwrap();
        let loaded = load(dir.path(), "dc1");
        assert!(matches!(
            loaded.skipped[0],
            PersistError::NewerFormat { version: 99, .. }
        ));
        assert_eq!(loaded.found.unwrap().1, 1);
        let other = load(dir.path(), "dc2");
        assert!(other.found.is_none());
        assert!(matches!(
            other.skipped[1],
            PersistError::OtherDatacenter { .. }
        ));
    }

    #[test]
    fn files_are_private_links_are_not_followed_and_garbage_is_not_echoed() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        let saved = save(&dir, &persisted(1)).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&saved.path), 0o600);

        // A newer "generation" that is a link to another file: skipped, its content unread.
        let secret = root.path().join("secret");
        fs::write(&secret, "snapdns-state 1 TOP-SECRET-CONTENT\n").unwrap();
        std::os::unix::fs::symlink(&secret, dir.join(file_name(5))).unwrap();
        let loaded = load(&dir, "dc1");
        assert_eq!(loaded.found.unwrap().1, 1);
        let message = loaded.skipped[0].to_string();
        assert!(message.contains("not a regular file"), "{message}");
        assert!(!message.contains("SECRET"), "{message}");

        // Garbage: at most a short, escaped excerpt.
        let mut garbage = b"\x1b[31mBINARY".to_vec();
        garbage.extend(std::iter::repeat_n(b'A', 100));
        garbage.push(b'\n');
        fs::write(dir.join(file_name(6)), &garbage).unwrap();
        let message = load(&dir, "dc1").skipped[0].to_string();
        assert!(message.contains(r#""\x1b[31mBINARYAAAAA"..."#), "{message}");
        assert!(
            !message.contains('\x1b') && !message.contains("AAAAAAAAAA"),
            "{message}"
        );
    }

    #[test]
    fn missing_directory_is_empty_and_unwritable_directory_errors() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load(&dir.path().join("absent"), "dc1");
        assert!(loaded.found.is_none() && loaded.skipped.is_empty());
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        let error = save(&file.join("state"), &persisted(1)).unwrap_err();
        assert!(
            matches!(error, PersistError::Io { op: "create", .. }),
            "{error}"
        );
    }
}
