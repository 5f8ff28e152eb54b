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

/// Gathers the data of one zone; [`ZoneBuilder::build`] encodes every answer once.
#[derive(Debug)]
pub struct ZoneBuilder {
    apex: Name,
    soa: Record,
    serial: u32,
    names: BTreeMap<Name, BTreeMap<u16, RrsetInput>>,
}

impl ZoneBuilder {
    /// Starts a zone at `apex` whose negative answers carry `soa` (its TTL is the negative TTL).
    pub fn new(apex: &Name, soa: Record, serial: u32) -> Self {
        let apex = apex.to_lowercase();
        let mut builder = Self {
            apex: apex.clone(),
            soa: soa.clone(),
            serial,
            names: BTreeMap::new(),
        };
        builder.add_answer(&apex, RecordType::SOA, vec![soa], Vec::new());
        builder
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
        let owner = owner.to_lowercase();
        debug_assert!(
            self.apex.zone_of(&owner),
            "{owner} is outside {}",
            self.apex
        );
        self.names.entry(owner).or_default().insert(
            u16::from(rtype),
            RrsetInput {
                answers,
                additionals,
            },
        );
    }

    /// Appends one record to the answer for (`owner`, its type), keeping earlier ones.
    pub fn push_record(&mut self, record: Record) {
        let owner = record.name.to_lowercase();
        let rtype = u16::from(record.record_type());
        self.names
            .entry(owner)
            .or_default()
            .entry(rtype)
            .or_default()
            .answers
            .push(record);
    }

    /// Appends an additional record to the answer for (`owner`, `rtype`).
    pub fn push_additional(&mut self, owner: &Name, rtype: RecordType, record: Record) {
        self.names
            .entry(owner.to_lowercase())
            .or_default()
            .entry(u16::from(rtype))
            .or_default()
            .additionals
            .push(record);
    }

    /// The records held for (`owner`, `rtype`), if any.
    pub fn records(&self, owner: &Name, rtype: RecordType) -> Option<&[Record]> {
        self.names
            .get(&owner.to_lowercase())
            .and_then(|types| types.get(&u16::from(rtype)))
            .map(|input| input.answers.as_slice())
    }

    /// True when the builder already has data of any type at `owner`.
    pub fn has_name(&self, owner: &Name) -> bool {
        self.names.contains_key(&owner.to_lowercase())
    }

    /// Names that hold data, in canonical order.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.names.keys()
    }

    /// Encodes every answer and indexes them by lower-cased wire name. Every ancestor of a name
    /// up to the apex becomes an empty non-terminal, so it answers NOERROR rather than NXDOMAIN.
    pub fn build(self) -> Result<Zone, ProtoError> {
        let mut names: FxHashMap<Box<[u8]>, NameAnswers> = FxHashMap::default();
        names.reserve(self.names.len() * 2);
        let mut record_count = 0;
        for (owner, types) in &self.names {
            let mut by_type = Vec::with_capacity(types.len());
            for (rtype, input) in types {
                record_count += input.answers.len() + input.additionals.len();
                let prepared = Prepared::encode(
                    owner,
                    RecordType::from(*rtype),
                    &input.answers,
                    &[],
                    &input.additionals,
                )?;
                by_type.push((*rtype, prepared));
            }
            names.insert(
                wire_key(owner)?,
                NameAnswers {
                    by_type: by_type.into_boxed_slice(),
                },
            );
            let mut ancestor = owner.base_name();
            while self.apex.zone_of(&ancestor) && ancestor.num_labels() >= self.apex.num_labels() {
                let key = wire_key(&ancestor)?;
                if names.contains_key(&key) || self.names.contains_key(&ancestor) {
                    break;
                }
                names.insert(key, NameAnswers::default());
                if ancestor.is_root() {
                    break;
                }
                ancestor = ancestor.base_name();
            }
        }
        Ok(Zone {
            apex_key: wire_key(&self.apex)?,
            names,
            negative_authority: uncompressed(&self.soa)?,
            serial: self.serial,
            record_count,
        })
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
