//! Static zones: every `*.zone` file in the zones directory, an RFC 1035 master file parsed
//! with hickory-proto's zone-file parser and compiled into a prepared [`Zone`].
//!
//! These names resolve even when the registry has never been reached. A file that fails to
//! parse is reported with its path and line, and the other zones are still served; so is a
//! second file for an origin that is already loaded. Records outside the zone's origin are
//! skipped with a warning (as `named-checkzone` does). Wildcards and delegations are not
//! interpreted (see docs/forwarding.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use hickory_proto::serialize::txt::Parser;
use tracing::{error, info, warn};

use crate::zone::{Zone, ZoneBuilder, ZoneSet};

/// Why one zone file could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ZoneFileError {
    /// Reading the file failed.
    #[error("zone file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid master file.
    #[error("zone file {path} line {line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line where parsing first fails.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// The zone has no SOA at its apex.
    #[error("zone file {path}: no SOA record at the apex {origin}")]
    NoSoa {
        /// The file.
        path: PathBuf,
        /// The zone's origin.
        origin: String,
    },
    /// Another file already serves this origin.
    #[error("zone file {path}: origin {origin} is already served from {first}")]
    Duplicate {
        /// The file that was skipped.
        path: PathBuf,
        /// The zone's origin.
        origin: String,
        /// The file that serves it.
        first: PathBuf,
    },
    /// Encoding an answer failed.
    #[error("zone file {path}: {message}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Loads every `*.zone` file in `dir`; broken files are logged and skipped.
pub fn load_dir(dir: &Path) -> ZoneSet {
    let (zones, errors) = load_dir_reporting(dir);
    for error in &errors {
        error!("{error}; the other zones are still served");
    }
    ZoneSet::new(zones)
}

/// Loads every `*.zone` file in `dir`, returning the zones and the errors of broken files.
pub fn load_dir_reporting(dir: &Path) -> (Vec<Zone>, Vec<ZoneFileError>) {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "zone"))
            .collect(),
        Err(error) => {
            // The default `zones/` need not exist; say so once rather than fail.
            info!(dir = %dir.display(), %error, "no static zones directory; serving no static zones");
            Vec::new()
        }
    };
    paths.sort();
    let mut zones: Vec<Zone> = Vec::new();
    let mut origins: Vec<PathBuf> = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match load_file(&path) {
            Ok(zone) => {
                // Two files for one origin: the first in name order wins, deterministically.
                if let Some(index) = zones.iter().position(|z| z.apex_key() == zone.apex_key()) {
                    errors.push(ZoneFileError::Duplicate {
                        origin: origin_text(&zone),
                        first: origins[index].clone(),
                        path,
                    });
                    continue;
                }
                info!(path = %path.display(), names = zone.name_count(), "static zone loaded");
                zones.push(zone);
                origins.push(path);
            }
            Err(error) => errors.push(error),
        }
    }
    (zones, errors)
}

/// Parses one master file. Without `$ORIGIN`, the origin is the file name minus `.zone`.
pub fn load_file(path: &Path) -> Result<Zone, ZoneFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ZoneFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let default_origin = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| Name::from_ascii(format!("{stem}.")).ok());
    let (origin, rrsets) = Parser::new(
        text.as_str(),
        Some(path.to_path_buf()),
        default_origin.clone(),
    )
    .parse()
    .map_err(|error| ZoneFileError::Parse {
        path: path.to_path_buf(),
        line: failing_line(&text, path, default_origin.as_ref()),
        message: error.to_string(),
    })?;
    let origin = origin.to_lowercase();
    let mut by_name: BTreeMap<Name, BTreeMap<RecordType, Vec<Record>>> = BTreeMap::new();
    for rrset in rrsets.values() {
        if !origin.zone_of(&rrset.name().to_lowercase()) {
            warn!(path = %path.display(), name = %rrset.name(), %origin, "record outside the zone's origin skipped");
            continue;
        }
        let records: Vec<Record> = rrset.records_without_rrsigs().cloned().collect();
        by_name
            .entry(rrset.name().to_lowercase())
            .or_default()
            .insert(rrset.record_type(), records);
    }
    let soa = by_name
        .get(&origin)
        .and_then(|types| types.get(&RecordType::SOA))
        .and_then(|records| records.first())
        .cloned()
        .ok_or_else(|| ZoneFileError::NoSoa {
            path: path.to_path_buf(),
            origin: origin.to_string(),
        })?;
    let serial = match &soa.data {
        RData::SOA(soa) => soa.serial,
        _ => 0,
    };
    // Negative answers carry the SOA with TTL = min(SOA TTL, SOA minimum) (RFC 2308 §3).
    let mut negative_soa = soa.clone();
    if let RData::SOA(data) = &soa.data {
        negative_soa.ttl = soa.ttl.min(data.minimum);
    }
    let mut builder = ZoneBuilder::new(&origin, negative_soa, serial);
    for (name, types) in &by_name {
        for (rtype, records) in types {
            let mut answers = records.clone();
            let mut additionals = Vec::new();
            if *rtype == RecordType::CNAME {
                continue; // added below, once per name
            }
            for record in records {
                if let Some(target) = target_of(record) {
                    additionals.extend(addresses_at(&by_name, &target));
                }
            }
            if *rtype == RecordType::SOA {
                answers.truncate(1);
            }
            builder.add_answer(name, *rtype, &answers, &additionals);
        }
        if let Some(cname) = types.get(&RecordType::CNAME) {
            builder.add_answer(name, RecordType::CNAME, cname, &[]);
        }
    }
    builder.build().map_err(|error| ZoneFileError::Encode {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// The apex of a zone as text, for messages.
fn origin_text(zone: &Zone) -> String {
    let mut decoder = BinDecoder::new(zone.apex_key());
    Name::read(&mut decoder).map_or_else(|_| "?".to_string(), |name| name.to_string())
}

fn target_of(record: &Record) -> Option<Name> {
    match &record.data {
        RData::SRV(srv) => Some(srv.target.clone()),
        RData::MX(mx) => Some(mx.exchange.clone()),
        RData::NS(ns) => Some(ns.0.clone()),
        _ => None,
    }
}

fn addresses_at(
    by_name: &BTreeMap<Name, BTreeMap<RecordType, Vec<Record>>>,
    target: &Name,
) -> Vec<Record> {
    let Some(types) = by_name.get(&target.to_lowercase()) else {
        return Vec::new();
    };
    [RecordType::A, RecordType::AAAA]
        .iter()
        .filter_map(|t| types.get(t))
        .flatten()
        .cloned()
        .collect()
}

/// hickory's parse errors carry no position: find the first line at which a prefix of the
/// file stops parsing (skipping prefixes that end inside parentheses).
fn failing_line(text: &str, path: &Path, origin: Option<&Name>) -> usize {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut prefix = String::new();
    let mut depth: i32 = 0;
    for (index, line) in lines.iter().enumerate() {
        prefix.push_str(line);
        let code = line.split(';').next().unwrap_or("");
        depth += code.matches('(').count() as i32 - code.matches(')').count() as i32;
        if depth > 0 || index > 20_000 {
            continue;
        }
        if Parser::new(prefix.as_str(), Some(path.to_path_buf()), origin.cloned())
            .parse()
            .is_err()
        {
            return index + 1;
        }
    }
    lines.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::{wire_key, Lookup};
    use hickory_proto::op::Message;

    const GOOD: &str = "$ORIGIN good.test.\n$TTL 120\n\
        @ IN SOA ns hostmaster (\n\
        \x20   1 3600 900 604800\n\
        \x20   30 )\n\
        ns IN A 10.9.0.1\n\
        db IN A 10.9.0.5\n";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// The rdata of the prepared answer for `name`/`rtype`, as text.
    fn answer(zone: &Zone, name: &str, rtype: RecordType) -> Vec<String> {
        let key = wire_key(&Name::from_ascii(name).expect("name")).expect("key");
        match zone.lookup(&key, u16::from(rtype)) {
            Lookup::Answer(prepared) => {
                let message = Message::from_vec(prepared.wire()).expect("decodes");
                message.answers.iter().map(|r| r.data.to_string()).collect()
            }
            Lookup::NoData => vec!["NODATA".to_string()],
            Lookup::NxDomain => vec!["NXDOMAIN".to_string()],
        }
    }

    #[test]
    fn the_shipped_example_zone_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/example.zone");
        let zone = load_file(&path).expect("zones/example.zone is valid");
        assert_eq!(zone.serial(), 2026112201);
        assert_eq!(
            answer(&zone, "gateway.example.internal.", RecordType::A),
            ["10.0.0.1"]
        );
        assert_eq!(
            answer(&zone, "gateway.example.internal.", RecordType::AAAA),
            ["fd00::1"]
        );
        assert_eq!(
            answer(&zone, "gateway.example.internal.", RecordType::TXT),
            ["NODATA"]
        );
        assert_eq!(
            answer(&zone, "nope.example.internal.", RecordType::A),
            ["NXDOMAIN"]
        );
    }

    #[test]
    fn the_origin_defaults_to_the_file_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = GOOD.replace("$ORIGIN good.test.\n", "");
        let zone = load_file(&write(dir.path(), "named.test.zone", &text)).expect("loads");
        assert_eq!(answer(&zone, "db.named.test.", RecordType::A), ["10.9.0.5"]);
    }

    #[test]
    fn parse_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Line 8 (after the multi-line SOA) has an address that is not one.
        let text = format!("{GOOD}broken IN A 10.9.0.300\nlater IN A 10.9.0.6\n");
        let path = write(dir.path(), "good.test.zone", &text);
        match load_file(&path) {
            Err(ZoneFileError::Parse {
                path: got, line, ..
            }) => {
                assert_eq!(got, path);
                assert_eq!(line, 8);
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn a_zone_needs_an_soa() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "nosoa.test.zone",
            "$ORIGIN nosoa.test.\n$TTL 60\nwww IN A 10.0.0.1\n",
        );
        assert!(matches!(load_file(&path), Err(ZoneFileError::NoSoa { .. })));
    }

    #[test]
    fn records_outside_the_origin_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("{GOOD}www.elsewhere.example. IN A 10.0.0.9\n");
        let zone = load_file(&write(dir.path(), "good.test.zone", &text)).expect("loads");
        assert_eq!(zone.name_count(), 3, "apex, ns and db only");
        assert_eq!(answer(&zone, "db.good.test.", RecordType::A), ["10.9.0.5"]);
    }

    #[test]
    fn a_directory_serves_the_good_files_and_reports_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "a-good.zone", GOOD);
        write(dir.path(), "b-same-origin.zone", GOOD);
        write(
            dir.path(),
            "c-broken.zone",
            "$ORIGIN broken.test.\n@ 60 IN SOA ns hm 1 2 3 4 5\nx IN NOSUCHTYPE 1\n",
        );
        write(dir.path(), "notes.txt", "not a zone");
        let (zones, errors) = load_dir_reporting(dir.path());
        assert_eq!(zones.len(), 1);
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].contains("b-same-origin.zone: origin good.test. is already served from"),
            "{messages:?}"
        );
        assert!(
            messages[1].contains("c-broken.zone line 3:"),
            "{messages:?}"
        );
        let (zones, errors) = load_dir_reporting(&dir.path().join("missing"));
        assert!(
            zones.is_empty() && errors.is_empty(),
            "a missing directory is no error"
        );
    }
}
