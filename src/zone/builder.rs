//! Collects RRsets per owner name and compiles them into a [`Zone`].

use std::sync::Arc;

use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::ProtoError;
use rustc_hash::FxHashMap;
use tracing::warn;

use super::{NameAnswers, Prepared, Zone};

/// The prepared answers of one owner name, by record type.
type TypedAnswers = Vec<(u16, Arc<Prepared>)>;

/// Gathers the data of one zone, encoding each answer as soon as it is added so the records
/// themselves never pile up; [`ZoneBuilder::build`] indexes the results.
///
/// Names are keyed by their lower-cased wire form, the same key queries are looked up with.
#[derive(Debug)]
pub struct ZoneBuilder {
    apex_key: Box<[u8]>,
    soa: Record,
    serial: u32,
    names: FxHashMap<Box<[u8]>, TypedAnswers>,
    record_count: usize,
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
            record_count: 0,
        };
        builder.add_answer(&apex, RecordType::SOA, &[soa], &[]);
        builder
    }

    /// Sets the answer for (`owner`, `rtype`): the answer records and the additional records
    /// that go with them (addresses of SRV targets, for instance), encoded now. A later call
    /// for the same pair replaces the earlier one. `owner` must be the apex or below it.
    ///
    /// An answer that cannot be encoded (a name over DNS limits) is left out and logged: one
    /// odd registration must not take the whole zone down.
    pub fn add_answer(
        &mut self,
        owner: &Name,
        rtype: RecordType,
        answers: &[Record],
        additionals: &[Record],
    ) {
        let key = match wire_key(owner) {
            Ok(key) => key,
            Err(error) => {
                warn!(%owner, %error, "name left out of the zone");
                return;
            }
        };
        let prepared = match Prepared::encode(owner, rtype, answers, &[], additionals) {
            Ok(prepared) => prepared,
            Err(error) => {
                warn!(%owner, %rtype, %error, "answer left out of the zone");
                return;
            }
        };
        self.record_count += answers.len() + additionals.len();
        self.insert(key, rtype, Arc::new(prepared));
    }

    /// Sets one answer for several owners with the same records (`web.service.consul` and
    /// `web.service.dc1.consul`, say): encoded once and shared, when the encoding allows it
    /// (see [`Prepared::encode_shared`]), else once per owner. The answer records must be
    /// owned by the longest of `owners`.
    pub fn add_shared(
        &mut self,
        owners: &[Name],
        rtype: RecordType,
        answers: &[Record],
        additionals: &[Record],
    ) {
        let Some(canonical) = owners.iter().max_by_key(|owner| owner.len()) else {
            return;
        };
        let keys: Option<Vec<Box<[u8]>>> =
            owners.iter().map(|owner| wire_key(owner).ok()).collect();
        if let (Some(keys), Some(prepared)) = (
            keys,
            Prepared::encode_shared(canonical, rtype, answers, additionals),
        ) {
            self.record_count += answers.len() + additionals.len();
            let prepared = Arc::new(prepared);
            for key in keys {
                self.insert(key, rtype, prepared.clone());
            }
            return;
        }
        for owner in owners {
            let owned: Vec<Record> = answers
                .iter()
                .map(|record| {
                    let mut record = record.clone();
                    record.name = owner.clone();
                    record
                })
                .collect();
            self.add_answer(owner, rtype, &owned, additionals);
        }
    }

    fn insert(&mut self, key: Box<[u8]>, rtype: RecordType, prepared: Arc<Prepared>) {
        let types = self.names.entry(key).or_default();
        let rtype = u16::from(rtype);
        match types.iter_mut().find(|(t, _)| *t == rtype) {
            Some(slot) => slot.1 = prepared,
            None => types.push((rtype, prepared)),
        }
    }

    /// True when the builder holds data of type `rtype` at `owner`.
    pub fn has(&self, owner: &Name, rtype: RecordType) -> bool {
        wire_key(owner)
            .ok()
            .and_then(|key| self.names.get(&key))
            .is_some_and(|types| types.iter().any(|(t, _)| *t == u16::from(rtype)))
    }

    /// Indexes the encoded answers. Every ancestor of a name up to the apex becomes an empty
    /// non-terminal, so it answers NOERROR rather than NXDOMAIN.
    pub fn build(self) -> Result<Zone, ProtoError> {
        let mut names: FxHashMap<Box<[u8]>, NameAnswers> = FxHashMap::default();
        names.reserve(self.names.len() + self.names.len() / 4);
        let keys: Vec<Box<[u8]>> = self.names.keys().cloned().collect();
        for (key, mut by_type) in self.names {
            by_type.sort_by_key(|(rtype, _)| *rtype);
            names.insert(
                key,
                NameAnswers {
                    by_type: by_type.into_boxed_slice(),
                },
            );
        }
        for key in &keys {
            add_empty_ancestors(&mut names, key, &self.apex_key);
        }
        Ok(Zone {
            apex_key: self.apex_key,
            names,
            negative_authority: uncompressed(&self.soa)?,
            serial: self.serial,
            record_count: self.record_count,
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
