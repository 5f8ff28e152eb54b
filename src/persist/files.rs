//! File primitives every persisted file shares: a private directory, private files created
//! without following links, regular files read without following links, directory fsync, and
//! the short escaped excerpt that is all a damaged file may show of itself.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::PersistError;

/// `open(2)`'s O_NOFOLLOW on Linux (std does not name it, and no C bindings are needed for one
/// constant).
pub(super) const O_NOFOLLOW: i32 = 0o400_000;

/// Maps an I/O error of `op` on `path` into a [`PersistError::Io`].
pub(super) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PersistError {
    let path = path.to_path_buf();
    move |source| PersistError::Io { op, path, source }
}

/// Creates `dir` (and its parents) if missing; the directory itself is made 0700.
pub(super) fn create_private_dir(dir: &Path) -> Result<(), PersistError> {
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o700)))
            .map_err(io("create", dir))?;
    }
    Ok(())
}

/// Creates `path`, which must not exist, 0600 whatever the umask, never through a link.
pub(super) fn create_private(path: &Path) -> Result<fs::File, PersistError> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .map_err(io("create", path))?;
    // The umask may have taken bits from the mode; the state is for our user alone.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io("chmod", path))?;
    Ok(file)
}

/// Fsyncs the directory, so that a rename or a new file in it survives a crash.
pub(super) fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

/// `path` opened for reading; a symbolic link or any other non-regular file is not followed.
pub(super) fn open_regular(path: &Path) -> Result<fs::File, PersistError> {
    let kind = fs::symlink_metadata(path)
        .map_err(io("read", path))?
        .file_type();
    if !kind.is_file() {
        return Err(PersistError::Corrupt {
            path: path.to_path_buf(),
            reason: "not a regular file (not followed)".into(),
        });
    }
    // O_NOFOLLOW too: the file may have been swapped for a link since it was looked at.
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .map_err(io("read", path))
}

/// The whole content of `path`; a symbolic link or any other non-regular file is not followed.
pub(super) fn read_regular(path: &Path) -> Result<Vec<u8>, PersistError> {
    let mut file = open_regular(path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io("read", path))?;
    Ok(bytes)
}

/// At most the first 16 bytes, escaped (`\xNN` for anything not printable ASCII) and quoted.
pub(super) fn excerpt(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(16)];
    let more = if bytes.len() > shown.len() { "..." } else { "" };
    format!("\"{}\"{more}", shown.escape_ascii())
}

/// Files `<prefix><number><suffix>` in `dir` as (number, path), highest first.
pub(super) fn numbered(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .and_then(|number| number.parse::<u64>().ok());
        if let Some(number) = number {
            out.push((number, entry.path()));
        }
    }
    out.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    Ok(out)
}

/// A header line `<magic> <version> <crc32, 8 hex digits> <payload length>` of a file or record.
#[derive(Debug)]
pub(super) struct Header {
    /// The format version.
    pub version: u32,
    /// The CRC-32 of the payload.
    pub checksum: u32,
    /// The payload's length in bytes.
    pub length: usize,
    /// Bytes of the header line, newline included.
    pub size: usize,
}

/// Why a header could not be read: too short to hold one (a torn write), or not one at all.
#[derive(Debug)]
pub(super) enum HeaderError {
    /// No newline within the first 128 bytes, and fewer than 128 bytes there.
    Incomplete,
    /// Not a header of `magic`: what is wrong, with a short escaped excerpt.
    Bad(String),
}

/// Reads the header line at the start of `bytes`.
pub(super) fn parse_header(bytes: &[u8], magic: &str) -> Result<Header, HeaderError> {
    let Some(newline) = bytes.iter().take(128).position(|b| *b == b'\n') else {
        return Err(
            if bytes.len() < 128
                && magic
                    .as_bytes()
                    .starts_with(&bytes[..bytes.len().min(magic.len())])
            {
                HeaderError::Incomplete
            } else {
                HeaderError::Bad("no header line".into())
            },
        );
    };
    let bad = |what: &str, field: &[u8]| HeaderError::Bad(format!("{what} {}", excerpt(field)));
    let header =
        std::str::from_utf8(&bytes[..newline]).map_err(|_| bad("unknown header", bytes))?;
    let fields: Vec<&str> = header.split(' ').collect();
    if fields.len() != 4 || fields[0] != magic {
        return Err(bad("unknown header", bytes));
    }
    Ok(Header {
        version: fields[1]
            .parse()
            .map_err(|_| bad("bad version", fields[1].as_bytes()))?,
        checksum: u32::from_str_radix(fields[2], 16)
            .map_err(|_| bad("bad checksum field", fields[2].as_bytes()))?,
        length: fields[3]
            .parse()
            .map_err(|_| bad("bad length", fields[3].as_bytes()))?,
        size: newline + 1,
    })
}

/// The header line for `payload`.
/// Why the payload after `header` in `bytes` is not the one the header describes (its length
/// or its CRC-32), if it is not.
pub(super) fn check_payload(bytes: &[u8], header: &Header) -> Result<(), String> {
    let payload = &bytes[header.size..];
    if payload.len() != header.length {
        return Err(format!(
            "payload is {} bytes, header says {}",
            payload.len(),
            header.length
        ));
    }
    let actual = crc32fast::hash(payload);
    if actual != header.checksum {
        return Err(format!(
            "checksum {actual:08x} does not match {:08x}",
            header.checksum
        ));
    }
    Ok(())
}

pub(super) fn header_line(magic: &str, version: u32, payload: &[u8]) -> String {
    format!(
        "{magic} {version} {:08x} {}\n",
        crc32fast::hash(payload),
        payload.len()
    )
}
