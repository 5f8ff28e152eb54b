//! Zone cache files: the built zone of a base's state, `zone-<generation>.snapdns` next to
//! `state-<generation>.snapdns`, so that a restart serves it before the base is even read (the
//! payload is `snapshot/cache.rs`'s).
//!
//! ```text
//! snapdns-zone 2 <crc32 of the payload, 8 hex digits> <payload length, 20 digits>\n
//! <payload>
//! ```
//!
//! Same rules as a base: written to a temporary file (streamed, the header filled in last),
//! fsynced, renamed into place, the directory fsynced; 0600, never through a link; checked by
//! length and CRC when read. A cache belongs to its base alone: it is pruned with it, and the
//! payload names the base (generation, save time, index) and the zone options it was built
//! with, so a cache for another base or other options is never served.

use std::fs;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::files::{
    check_payload, create_private, io, numbered, parse_header, read_regular, sync_dir,
};
use super::PersistError;

const MAGIC: &str = "snapdns-zone";
/// The zone cache format written by this version.
pub const ZONE_CACHE_VERSION: u32 = 3;
pub(super) const PREFIX: &str = "zone-";
const SUFFIX: &str = ".snapdns";

/// The path of the zone cache of base `generation` in `dir`.
pub fn path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation:012}{SUFFIX}"))
}

/// Zone cache files in `dir` as (generation, path), newest first.
pub(super) fn caches(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    numbered(dir, PREFIX, SUFFIX)
}

/// The header line; fixed width, so it is written last over a placeholder.
fn header_line(checksum: u32, length: u64) -> String {
    format!("{MAGIC} {ZONE_CACHE_VERSION} {checksum:08x} {length:020}\n")
}

/// Counts and checksums what goes through it.
struct Checked<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    length: u64,
}

impl<W: Write> Write for Checked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.length += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the zone cache of base `generation` in `dir` (which must exist): `payload` writes
/// the content. Returns the file's size.
pub fn save(
    dir: &Path,
    generation: u64,
    payload: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<u64, PersistError> {
    let path = path(dir, generation);
    let temp = dir.join(format!(".{PREFIX}{generation:012}{SUFFIX}.tmp"));
    let write = || -> Result<u64, PersistError> {
        let file = create_private(&temp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let placeholder = header_line(0, 0);
        out.write_all(placeholder.as_bytes())
            .map_err(io("write", &temp))?;
        let mut checked = Checked {
            inner: out,
            hasher: crc32fast::Hasher::new(),
            length: 0,
        };
        payload(&mut checked).map_err(io("write", &temp))?;
        let (checksum, length) = (checked.hasher.finalize(), checked.length);
        let mut file = checked.inner.into_inner().map_err(|e| PersistError::Io {
            op: "write",
            path: temp.clone(),
            source: e.into_error(),
        })?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(header_line(checksum, length).as_bytes()))
            .map_err(io("write", &temp))?;
        file.sync_all().map_err(io("fsync", &temp))?;
        drop(file);
        fs::rename(&temp, &path).map_err(io("rename into", &path))?;
        sync_dir(dir)?;
        Ok(placeholder.len() as u64 + length)
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// A zone cache's checked payload.
#[derive(Debug)]
pub struct CacheFile {
    bytes: Vec<u8>,
    start: usize,
}

impl CacheFile {
    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// The file's size.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True for an empty file (never, once read).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Reads and checks the zone cache of base `generation` in `dir`: header, version, length and
/// CRC. A symbolic link or other non-regular file is not followed.
pub fn read(dir: &Path, generation: u64) -> Result<CacheFile, PersistError> {
    let path = path(dir, generation);
    let corrupt = |reason: String| PersistError::Corrupt {
        path: path.clone(),
        reason,
    };
    let bytes = read_regular(&path)?;
    let header = parse_header(&bytes, MAGIC).map_err(|e| match e {
        super::files::HeaderError::Incomplete => corrupt("no header line".into()),
        super::files::HeaderError::Bad(reason) => corrupt(reason),
    })?;
    if header.version != ZONE_CACHE_VERSION {
        return Err(corrupt(format!(
            "format version {} is not {ZONE_CACHE_VERSION}",
            header.version
        )));
    }
    check_payload(&bytes, &header).map_err(corrupt)?;
    Ok(CacheFile {
        start: header.size,
        bytes,
    })
}
