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
