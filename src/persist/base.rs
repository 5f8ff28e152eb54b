//! Base files: the whole registry state as one checksummed file per generation,
//! `state-<generation>.snapdns`, written by temp file, fsync, rename and directory fsync, and
//! the pruning of old generations and of the journals that went with them.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::{
    check_payload, create_private, create_private_dir, header_line, io, numbered, open_regular,
    parse_header, read_regular, sync_dir, HeaderError,
};
use super::journal::journals;
use super::zone_cache;
use super::{PersistError, Persisted, Saved, FORMAT_VERSION, KEEP_GENERATIONS};

const MAGIC: &str = "snapdns-state";
const PREFIX: &str = "state-";
const SUFFIX: &str = ".snapdns";

/// The name of base generation `generation`.
pub(super) fn file_name(generation: u64) -> String {
    format!("{PREFIX}{generation:012}{SUFFIX}")
}

/// The newest base generation in `dir` by file name (not read, so not known to be intact).
pub fn newest_generation(dir: &Path) -> Option<u64> {
    generations(dir)
        .ok()?
        .first()
        .map(|(generation, _)| *generation)
}

/// Base files in `dir` as (generation, path), newest first.
pub(super) fn generations(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    numbered(dir, PREFIX, SUFFIX)
}

/// The generation the next base in `dir` (created if missing) gets: above every base and every
/// journal there, so that a journal left by an unfinished base never meets a new one of its
/// number.
pub fn next_generation(dir: &Path) -> Result<u64, PersistError> {
    create_private_dir(dir)?;
    let highest = |list: std::io::Result<Vec<(u64, PathBuf)>>| {
        list.map(|l| l.first().map_or(0, |(g, _)| *g))
            .map_err(io("list", dir))
    };
    Ok(highest(generations(dir))?.max(highest(journals(dir))?) + 1)
}

/// Writes `persisted` as base `generation` in `dir` and prunes old generations. Only one base
/// is written at a time.
pub fn save_generation(
    dir: &Path,
    generation: u64,
    persisted: &Persisted,
) -> Result<Saved, PersistError> {
    create_private_dir(dir)?;
    let payload = serde_json::to_vec(persisted).map_err(|e| PersistError::Corrupt {
        path: dir.to_path_buf(),
        reason: format!("cannot encode the state: {e}"),
    })?;
    let header = header_line(MAGIC, FORMAT_VERSION, &payload);
    let path = dir.join(file_name(generation));
    let temp = dir.join(format!(".{}.tmp", file_name(generation)));
    let write = || -> Result<(), PersistError> {
        let mut file = create_private(&temp)?;
        file.write_all(header.as_bytes())
            .map_err(io("write", &temp))?;
        file.write_all(&payload).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("fsync", &temp))?;
        drop(file);
        fs::rename(&temp, &path).map_err(io("rename into", &path))?;
        sync_dir(dir)
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

/// Reads and checks one base file; a symbolic link or any other non-regular file is not
/// followed.
pub fn read_file(path: &Path, datacenter: &str) -> Result<Persisted, PersistError> {
    read_sized(path, datacenter).map(|(persisted, _)| persisted)
}

/// [`read_file`], and the file's size (what a journal is measured against for compaction).
pub(super) fn read_sized(path: &Path, datacenter: &str) -> Result<(Persisted, u64), PersistError> {
    let (persisted, bytes) = read_counted(path)?;
    if !persisted.datacenter.eq_ignore_ascii_case(datacenter) {
        return Err(PersistError::OtherDatacenter {
            path: path.to_path_buf(),
            found: persisted.datacenter,
            expected: datacenter.to_string(),
        });
    }
    Ok((persisted, bytes))
}

/// Reads and checks one base file, whatever its datacenter (`snapdns state` lists them all).
pub(super) fn read_any(path: &Path) -> Result<Persisted, PersistError> {
    read_counted(path).map(|(persisted, _)| persisted)
}

/// [`read_any`], and the file's size.
fn read_counted(path: &Path) -> Result<(Persisted, u64), PersistError> {
    let (bytes, start) = checked(path)?;
    // serde_json's message names a position and what it expected, never the content.
    let persisted = serde_json::from_slice(&bytes[start..]).map_err(|e| PersistError::Corrupt {
        path: path.to_path_buf(),
        reason: format!("invalid payload: {e}"),
    })?;
    Ok((persisted, bytes.len() as u64))
}

/// Checks that base `generation` in `dir` is intact (header, format, length, checksum) without
/// decoding it or holding it in memory: what serving its zone cache before it is read needs.
pub fn check_generation(dir: &Path, generation: u64) -> Result<(), PersistError> {
    let path = dir.join(file_name(generation));
    let corrupt = |reason: String| PersistError::Corrupt {
        path: path.clone(),
        reason,
    };
    let mut file = open_regular(&path)?;
    let mut buffer = vec![0; 1 << 20];
    let mut filled = 0;
    // The header line is within the first 128 bytes.
    while filled < 128 {
        match file
            .read(&mut buffer[filled..])
            .map_err(io("read", &path))?
        {
            0 => break,
            n => filled += n,
        }
    }
    let header = parse_header(&buffer[..filled], MAGIC).map_err(|e| match e {
        HeaderError::Incomplete => corrupt("no header line".into()),
        HeaderError::Bad(reason) => corrupt(reason),
    })?;
    if header.version > FORMAT_VERSION {
        return Err(PersistError::NewerFormat {
            path: path.clone(),
            version: header.version,
        });
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&buffer[header.size..filled]);
    let mut length = filled - header.size;
    loop {
        match file.read(&mut buffer).map_err(io("read", &path))? {
            0 => break,
            n => {
                hasher.update(&buffer[..n]);
                length += n;
            }
        }
    }
    if length != header.length {
        return Err(corrupt(format!(
            "payload is {length} bytes, header says {}",
            header.length
        )));
    }
    let actual = hasher.finalize();
    if actual != header.checksum {
        return Err(corrupt(format!(
            "checksum {actual:08x} does not match {:08x}",
            header.checksum
        )));
    }
    Ok(())
}

/// The bytes of a base file whose header, format version, length and checksum are right, and
/// where its payload starts.
fn checked(path: &Path) -> Result<(Vec<u8>, usize), PersistError> {
    let corrupt = |reason: String| PersistError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = read_regular(path)?;
    let header = parse_header(&bytes, MAGIC).map_err(|e| match e {
        HeaderError::Incomplete => corrupt("no header line".into()),
        HeaderError::Bad(reason) => corrupt(reason),
    })?;
    if header.version > FORMAT_VERSION {
        return Err(PersistError::NewerFormat {
            path: path.to_path_buf(),
            version: header.version,
        });
    }
    check_payload(&bytes, &header).map_err(corrupt)?;
    Ok((bytes, header.size))
}

/// Removes bases beyond [`KEEP_GENERATIONS`], journals and zone caches whose base is gone (one
/// newer than every base belongs to a base being written and stays), and temporary files left
/// by a crash.
pub(super) fn prune(dir: &Path) {
    if let Ok(list) = generations(dir) {
        let kept: Vec<u64> = list
            .iter()
            .take(KEEP_GENERATIONS)
            .map(|(g, _)| *g)
            .collect();
        for (_, path) in list.into_iter().skip(KEEP_GENERATIONS) {
            let _ = fs::remove_file(path);
        }
        let newest = kept.first().copied().unwrap_or(0);
        let others = journals(dir)
            .unwrap_or_default()
            .into_iter()
            .chain(zone_cache::caches(dir).unwrap_or_default());
        for (generation, path) in others {
            if generation <= newest && !kept.contains(&generation) {
                let _ = fs::remove_file(path);
            }
        }
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name.starts_with(&format!(".{PREFIX}"))
                || name.starts_with(&format!(".{}", zone_cache::PREFIX));
            if ours && name.ends_with(".tmp") {
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
