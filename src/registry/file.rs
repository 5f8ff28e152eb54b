//! The registry file: a JSON object mapping each service name to the array that Consul's
//! `GET /v1/health/service/<name>` returns, so an operator can seed or pin a registry with
//! `curl`. See docs/registry-file.md.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use imbl::OrdMap;

use super::{Entries, RegistryState};

/// Why a registry file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read at all.
    #[error("cannot read registry file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write registry file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("registry file {path} line {line} column {column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// Parses registry file contents. The registry index is 0: a file has none. A UTF-8 byte
/// order mark at the start (as some Windows editors write) is skipped.
pub fn parse(path: &Path, text: &str) -> Result<RegistryState, FileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let services: OrdMap<String, Entries> =
        serde_json::from_str(text).map_err(|error| FileError::Parse {
            path: path.to_path_buf(),
            line: error.line(),
            column: error.column(),
            message: strip_position(&error.to_string()),
        })?;
    let mut state = RegistryState { index: 0, services };
    state.share_nodes();
    Ok(state)
}

/// Reads and parses a registry file.
pub fn load(path: &Path) -> Result<RegistryState, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Writes `state` as a registry file at `path` (the index is not written: the format has
/// none). The entries are written as Consul spells them, so [`load`] reads back the same
/// services. Written aside (0600: it is the registry's content), fsynced and renamed over
/// `path`, so a server watching `path` never reads half of it.
pub fn save(path: &Path, state: &RegistryState) -> Result<(), FileError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let error = |source| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    let aside = PathBuf::from(aside);
    let write = || -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&aside)?;
        let mut writer = std::io::BufWriter::new(file);
        serde_json::to_writer_pretty(&mut writer, &state.services)?;
        writer.write_all(b"\n")?;
        writer
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        std::fs::rename(&aside, path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&aside);
        error(source)
    })
}

/// What identifies one version of the file on disk, to notice changes by polling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// The stamp of the file now, `None` when it cannot be read.
    pub fn of(path: &Path) -> Option<Self> {
        let metadata = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode,
        })
    }
}

/// serde_json appends " at line X column Y"; we report those fields separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let text = "\u{feff}{\"web\": []}";
        let state = parse(Path::new("registry.json"), text).unwrap();
        assert!(state.services.contains_key("web"));
    }

    #[test]
    fn parse_error_names_line_and_column() {
        let text = "{\n  \"web\": [\n    {\"Node\": }\n  ]\n}\n";
        let error = parse(Path::new("r.json"), text).unwrap_err();
        let FileError::Parse { line, column, .. } = &error else {
            panic!("expected a parse error, got {error}");
        };
        assert_eq!((*line, *column), (3, 14));
        assert!(error
            .to_string()
            .starts_with("registry file r.json line 3 column 14: "));
    }

    #[test]
    fn a_saved_state_reads_back_the_same_services() {
        let text = r#"{"web": [{"Node": {"Node": "n1", "Address": "10.0.0.1", "ModifyIndex": 5},
            "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1"], "Port": 80},
            "Checks": [{"Node": "n1", "CheckID": "serfHealth", "Status": "passing"},
                       {"Node": "n1", "CheckID": "service:web-1", "Status": "critical",
                        "ServiceID": "web-1", "ServiceName": "web"}]}]}"#;
        let state = parse(Path::new("r.json"), text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exported.json");
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap().services, state.services);
        assert!(!dir.path().join("exported.json.tmp").exists());
    }

    #[test]
    fn null_fields_read_as_empty() {
        let text = r#"{"web": [{"Node": {"Node": "n1", "Address": "10.0.0.1", "TaggedAddresses": null,
            "Meta": null}, "Service": {"Service": "web", "Tags": null, "Meta": null, "Port": 80,
            "Weights": null}, "Checks": null}]}"#;
        let state = parse(Path::new("r.json"), text).unwrap();
        let entry = &state.services["web"][0];
        assert!(entry.service.tags.is_empty());
        assert_eq!(entry.service.weights.passing, 1);
        assert!(entry.is_passing());
    }
}
