//! Collects RRsets per owner name and compiles them into a [`Zone`].

use std::collections::BTreeMap;

use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::ProtoError;
use rustc_hash::FxHashMap;

use super::{NameAnswers, Prepared, Zone};

/// The records to answer one (name, type) with.
#[derive(Debug, Default)]
struct RrsetInput {
    answers: Vec<Record>,
    additionals: Vec<Record>,
}

/// One owner name and what it holds, by record type.
#[derive(Debug)]
struct OwnerInput {
    name: Name,
    types: BTreeMap<u16, RrsetInput>,
}

/// Gathers the data of one zone; [`ZoneBuilder::build`] encodes every answer once.
///
/// Names are keyed by their lower-cased wire form, the same key queries are looked up with.
#[derive(Debug)]
pub struct ZoneBuilder {
    apex_key: Box<[u8]>,
    soa: Record,
    serial: u32,
    names: FxHashMap<Box<[u8]>, OwnerInput>,
}

impl ZoneBuilder {
    /// Starts a zone at `apex` whose negative answers carry `soa` (its TTL is the negative TTL).
    pub fn new(apex: &Name, soa: Record, serial: u32) -> Self {
        let apex = apex.to_lowercase();
        let apex_key = wire_key(&apex).unwrap_or_else(|_| Box::new([0]));
        let mut builder = Self {
            apex_key,
            soa: soa.clone(),
            serial,
            names: FxHashMap::default(),
        };
        builder.add_answer(&apex, RecordType::SOA, vec![soa], Vec::new());
        builder
    }

    fn owner(&mut self, owner: &Name) -> &mut OwnerInput {
        let key = wire_key(owner).unwrap_or_else(|_| Box::new([0]));
        self.names.entry(key).or_insert_with(|| OwnerInput {
            name: owner.to_lowercase(),
            types: BTreeMap::new(),
        })
    }

    /// Sets the answer for (`owner`, `rtype`): the answer records and the additional records
    /// that go with them (addresses of SRV targets, for instance). A later call for the same
    /// pair replaces the earlier one. `owner` must be the apex or below it.
    pub fn add_answer(
        &mut self,
        owner: &Name,
        rtype: RecordType,
        answers: Vec<Record>,
        additionals: Vec<Record>,
    ) {
        self.owner(owner).types.insert(
            u16::from(rtype),
            RrsetInput {
                answers,
                additionals,
            },
        );
    }

    /// Appends one record to the answer for (`owner`, its type), keeping earlier ones.
    pub fn push_record(&mut self, record: Record) {
        let rtype = u16::from(record.record_type());
        let name = record.name.clone();
        self.owner(&name)
            .types
            .entry(rtype)
            .or_default()
            .answers
            .push(record);
    }

    /// True when the builder holds data of type `rtype` at `owner`.
    pub fn has(&self, owner: &Name, rtype: RecordType) -> bool {
        wire_key(owner)
            .ok()
            .and_then(|key| self.names.get(&key))
            .is_some_and(|input| input.types.contains_key(&u16::from(rtype)))
    }

    /// Encodes every answer and indexes them by lower-cased wire name. Every ancestor of a name
    /// up to the apex becomes an empty non-terminal, so it answers NOERROR rather than NXDOMAIN.
    pub fn build(self) -> Result<Zone, ProtoError> {
        let mut names: FxHashMap<Box<[u8]>, NameAnswers> = FxHashMap::default();
        names.reserve(self.names.len() + self.names.len() / 4);
        let mut record_count = 0;
        for (key, owner) in &self.names {
            let mut by_type = Vec::with_capacity(owner.types.len());
            for (rtype, input) in &owner.types {
                record_count += input.answers.len() + input.additionals.len();
                let prepared = Prepared::encode(
                    &owner.name,
                    RecordType::from(*rtype),
                    &input.answers,
                    &[],
                    &input.additionals,
                )?;
                by_type.push((*rtype, prepared));
            }
            names.insert(
                key.clone(),
                NameAnswers {
                    by_type: by_type.into_boxed_slice(),
                },
            );
        }
        for key in self.names.keys() {
            add_empty_ancestors(&mut names, key, &self.apex_key);
        }
        Ok(Zone {
            apex_key: self.apex_key,
            names,
            negative_authority: uncompressed(&self.soa)?,
            serial: self.serial,
            record_count,
        })
    }
}

/// Inserts every ancestor of `key` below or at the apex that is not a name yet, as an empty
/// non-terminal. Ancestors are the suffixes of the wire name at label boundaries.
fn add_empty_ancestors(names: &mut FxHashMap<Box<[u8]>, NameAnswers>, key: &[u8], apex: &[u8]) {
    let mut offset = 0;
    loop {
        let label_len = usize::from(key[offset]);
        if label_len == 0 {
            return;
        }
        offset += label_len + 1;
        let suffix = &key[offset..];
        if suffix.len() <= apex.len() || names.contains_key(suffix) {
            return;
        }
        names.insert(suffix.into(), NameAnswers::default());
    }
}

/// Lower-cased, uncompressed wire format of a name: the lookup key of every zone.
pub fn wire_key(name: &Name) -> Result<Box<[u8]>, ProtoError> {
    let mut buf = Vec::with_capacity(name.len() + 1);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_name_encoding(NameEncoding::UncompressedLowercase);
    name.emit(&mut encoder)?;
    Ok(buf.into_boxed_slice())
}

/// A record in wire format without name compression, so it can be appended anywhere.
fn uncompressed(record: &Record) -> Result<Box<[u8]>, ProtoError> {
    let mut buf = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    record.emit(&mut encoder)?;
    Ok(buf.into_boxed_slice())
}
