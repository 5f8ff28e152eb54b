//! A zone's records for a transfer, read back from its prepared answers: the records each
//! name answers with, exactly as served (passing instances, SRV sets in their stable order,
//! A/AAAA in the order they were prepared).
//!
//! A prepared answer may be shared by several names (`web.service.consul` and
//! `_web._tcp.service.dc1.consul` send the same bytes) and carries the records of other names
//! (a CNAME's target, SRV glue): only the answer records owned by its question are the name's
//! own, and they are given the name being listed.

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::zone::{Lookup, Prepared, Zone};

/// The zone's SOA record, the first and last record of every transfer.
pub(super) fn soa(zone: &Zone) -> Option<Record> {
    let soa = u16::from(RecordType::SOA);
    match zone.lookup(zone.apex_key(), soa) {
        Lookup::Answer(prepared) => own_records(zone.apex_key(), soa, prepared)
            .into_iter()
            .next(),
        Lookup::NoData | Lookup::NxDomain => None,
    }
}

/// The records of every name but the apex SOA, one name at a time, in no particular order.
pub(super) fn zone_records(zone: &Zone) -> impl Iterator<Item = Vec<Record>> + '_ {
    let apex = zone.apex_key();
    zone.names().filter_map(move |(key, by_type)| {
        let mut records = Vec::new();
        for (rtype, prepared) in by_type {
            if key == apex && *rtype == u16::from(RecordType::SOA) {
                continue;
            }
            records.extend(own_records(key, *rtype, prepared));
        }
        (!records.is_empty()).then_some(records)
    })
}

/// The answer records of `prepared` that belong to the name `key` for type `rtype`, owned by
/// `key`. An unreadable answer (it was encoded by us, so never) gives nothing.
pub(super) fn own_records(key: &[u8], rtype: u16, prepared: &Prepared) -> Vec<Record> {
    let Ok(message) = Message::from_vec(prepared.wire()) else {
        return Vec::new();
    };
    let Some(question) = message.queries.first() else {
        return Vec::new();
    };
    let Some(owner) = name_of(key) else {
        return Vec::new();
    };
    let rtype = RecordType::from(rtype);
    message
        .answers
        .into_iter()
        .filter(|record| record.record_type() == rtype && record.name == *question.name())
        .map(|mut record| {
            record.name = owner.clone();
            record
        })
        .collect()
}

/// The name of a lower-cased wire-format key.
pub(super) fn name_of(key: &[u8]) -> Option<Name> {
    Name::read(&mut BinDecoder::new(key)).ok()
}
