//! What changed between a secondary's serial and the current zone (RFC 1995), from the
//! snapshots the store keeps (`--ixfr-journal`): the names whose answers differ are found by
//! comparing the two indexes' shards, so the cost is the change, not the zone.
//!
//! The answer is condensed to one difference (RFC 1995 §4 allows it): the current SOA, the
//! secondary's SOA and the records deleted since, the current SOA and the records added, and
//! the current SOA again.

use std::collections::HashSet;

use hickory_proto::op::Message;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use super::records::own_records;
use crate::zone::Zone;

/// The serial a secondary asks an IXFR from: the SOA in the request's authority section.
pub(super) fn requested_serial(message: &Message) -> Option<u32> {
    message
        .authorities
        .iter()
        .find_map(|record| match &record.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
}

/// The records deleted and added from `base` to `current`, or `None` when `current` was not
/// derived from `base` (then only a full transfer tells the difference).
pub(super) fn difference(base: &Zone, current: &Zone) -> Option<(Vec<Record>, Vec<Record>)> {
    let changed = current.changed_names(base)?;
    let mut deleted = Vec::new();
    let mut added = Vec::new();
    for key in changed {
        let before = name_records(base, &key);
        let after = name_records(current, &key);
        // Records compare by their encoding: an RRset may hold thousands.
        let encoded_before: HashSet<Vec<u8>> = before.iter().filter_map(encoded).collect();
        let encoded_after: HashSet<Vec<u8>> = after.iter().filter_map(encoded).collect();
        let missing = |set: &HashSet<Vec<u8>>, record: &Record| {
            encoded(record).is_some_and(|bytes| !set.contains(&bytes))
        };
        deleted.extend(
            before
                .iter()
                .filter(|r| missing(&encoded_after, r))
                .cloned(),
        );
        added.extend(
            after
                .iter()
                .filter(|r| missing(&encoded_before, r))
                .cloned(),
        );
    }
    Some((deleted, added))
}

/// A record's wire form (uncompressed), for comparing.
fn encoded(record: &Record) -> Option<Vec<u8>> {
    record.to_bytes().ok()
}

/// Every record `zone` holds for `key`, the apex SOA aside (a difference carries the SOAs
/// in its own places).
fn name_records(zone: &Zone, key: &[u8]) -> Vec<Record> {
    let soa = u16::from(RecordType::SOA);
    zone.answers_of(key)
        .iter()
        .filter(|(rtype, _)| !(key == zone.apex_key() && *rtype == soa))
        .flat_map(|(rtype, prepared)| own_records(key, *rtype, prepared))
        .collect()
}
