//! Static zones: every `*.zone` file in the zones directory, an RFC 1035 master file parsed
//! with hickory-proto's zone-file parser and compiled into a prepared [`Zone`].
//!
//! These names resolve even when the registry has never been reached. A file that fails to
//! parse is reported with its path and line, and the other zones are still served.
//! Wildcards and delegations are not interpreted (see docs/forwarding.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;
use tracing::{error, info};

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
        Err(_) => Vec::new(),
    };
    paths.sort();
    let mut zones = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match load_file(&path) {
            Ok(zone) => {
                info!(path = %path.display(), names = zone.name_count(), "static zone loaded");
                zones.push(zone);
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
            builder.add_answer(name, *rtype, answers, additionals);
        }
        if let Some(cname) = types.get(&RecordType::CNAME) {
            builder.add_answer(name, RecordType::CNAME, cname.clone(), Vec::new());
        }
    }
    builder.build().map_err(|error| ZoneFileError::Encode {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
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
