//! Collects RRsets per owner name and compiles them into a [`Zone`].

use std::sync::Arc;

use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use hickory_proto::ProtoError;
use rustc_hash::{FxHashMap, FxHashSet};
use tracing::warn;

use super::index::NameIndex;
use super::reverse::{Pointer, PtrKind, ReverseIndex};
use super::{NameAnswers, Prepared, Zone};

/// The prepared answers of one owner name, by record type.
type TypedAnswers = Vec<(u16, Arc<Prepared>)>;

/// The answers of a group of names built together (one service, one node), kept by the
/// snapshot so a rebuild reuses them when their input did not change. Holds the empty
/// non-terminals above its names too.
#[derive(Debug, Default)]
pub struct Fragment {
    /// Exactly as long as it needs to be: a zone keeps one fragment per service and node.
    pub(super) names: Box<[Arc<NameAnswers>]>,
    /// The addresses it hands out with what it says their reverse names point at, sorted.
    pub(super) pointers: Box<[Pointer]>,
    pub(super) record_count: usize,
}

impl Fragment {
    /// Number of names, empty non-terminals included.
    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    /// Every name it gives (lower-cased wire format), empty non-terminals included.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.names.iter().map(|answers| answers.key())
    }

    /// Heap bytes of this fragment's own list of names (the names and answers it lists are
    /// counted with the zone).
    pub fn list_bytes(&self) -> usize {
        super::footprint::allocated(16 + std::mem::size_of::<Self>())
            + super::footprint::boxed::<Arc<NameAnswers>>(self.names.len())
    }

    /// Heap bytes of this fragment's list of reverse names, with their targets (one
    /// allocation per distinct target, which the reverse index's slots share).
    pub fn pointer_bytes(&self) -> usize {
        use super::footprint::{allocated, boxed};
        let mut seen: FxHashSet<*const u8> = FxHashSet::default();
        let targets: usize = self
            .pointers
            .iter()
            .filter(|pointer| seen.insert(pointer.target.as_ptr()))
            .map(|pointer| allocated(16 + pointer.target.len()))
            .sum();
        boxed::<Pointer>(self.pointers.len()) + targets
    }

    fn add_to(&self, index: &mut NameIndex, reverse: &mut ReverseIndex) {
        for answers in &self.names {
            index.add(answers);
        }
        for pointer in self.pointers.iter() {
            reverse.add(pointer.address, &pointer.target());
        }
    }

    fn remove_from(&self, index: &mut NameIndex, reverse: &mut ReverseIndex) {
        for answers in &self.names {
            index.remove(answers);
        }
        for pointer in self.pointers.iter() {
            reverse.remove(pointer.address, &pointer.target());
        }
    }
}

/// Encodes answers as they are added, so the records themselves never pile up; names are
/// keyed by their lower-cased wire form, the same key queries are looked up with.
#[derive(Debug, Default)]
pub struct FragmentBuilder {
    names: FxHashMap<Box<[u8]>, TypedAnswers>,
    pointers: Vec<Pointer>,
    /// The pointers' targets, one allocation each.
    targets: FxHashSet<Arc<[u8]>>,
    record_count: usize,
}

impl FragmentBuilder {
    /// An empty fragment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the answer for (`owner`, `rtype`): the answer records and the additional records
    /// that go with them (addresses of SRV targets, for instance), encoded now. A later call
    /// for the same pair replaces the earlier one.
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
            // The records of other names (a CNAME's target, followed) keep their owners.
            let owned: Vec<Record> = answers
                .iter()
                .map(|record| {
                    let mut record = record.clone();
                    if record.name == *canonical {
                        record.name = owner.clone();
                    }
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

    /// Says that the reverse name of `ip` points at `target` (a node's or a service's name);
    /// each (address, target) once per fragment.
    pub fn add_pointer(&mut self, ip: std::net::IpAddr, kind: PtrKind, target: &Name, ttl: u32) {
        let Ok(target) = wire_key_as_is(target) else {
            return;
        };
        let target = match self.targets.get(&target[..]) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<[u8]> = target.into();
                self.targets.insert(shared.clone());
                shared
            }
        };
        // Repeats are dropped when the fragment is finished.
        self.pointers.push(Pointer {
            address: ip,
            kind,
            target,
            ttl,
        });
    }

    /// True when the builder holds data of type `rtype` at `owner`.
    pub fn has(&self, owner: &Name, rtype: RecordType) -> bool {
        wire_key(owner)
            .ok()
            .and_then(|key| self.names.get(&key))
            .is_some_and(|types| types.iter().any(|(t, _)| *t == u16::from(rtype)))
    }

    /// The finished fragment: its names, then every ancestor below the apex (`apex_key`) that
    /// it does not hold itself, as an empty non-terminal.
    pub fn finish(self, apex_key: &[u8]) -> Fragment {
        let mut names: Vec<Arc<NameAnswers>> = Vec::with_capacity(self.names.len() + 4);
        let mut ancestors: FxHashMap<&[u8], ()> = FxHashMap::default();
        for key in self.names.keys() {
            let mut offset = 0;
            while key[offset] != 0 {
                offset += usize::from(key[offset]) + 1;
                let suffix = &key[offset..];
                if suffix.len() <= apex_key.len() || self.names.contains_key(suffix) {
                    break;
                }
                if ancestors.insert(suffix, ()).is_some() {
                    break;
                }
            }
        }
        for suffix in ancestors.keys() {
            names.push(Arc::new(NameAnswers::new((*suffix).into(), Vec::new())));
        }
        for (key, by_type) in self.names {
            names.push(Arc::new(NameAnswers::new(key, by_type)));
        }
        let mut pointers = self.pointers;
        pointers.sort();
        pointers.dedup();
        Fragment {
            names: names.into_boxed_slice(),
            pointers: pointers.into_boxed_slice(),
            record_count: self.record_count,
        }
    }
}

/// Gathers a whole zone in one fragment (static zones): the apex SOA first, then
/// [`FragmentBuilder`]'s methods, then [`ZoneBuilder::build`].
#[derive(Debug)]
pub struct ZoneBuilder {
    apex_key: Box<[u8]>,
    soa: Record,
    serial: u32,
    fragment: FragmentBuilder,
}

impl ZoneBuilder {
    /// Starts a zone at `apex` whose negative answers carry `soa` (its TTL is the negative TTL).
    pub fn new(apex: &Name, soa: Record, serial: u32) -> Self {
        let apex = apex.to_lowercase();
        let apex_key = wire_key(&apex).unwrap_or_else(|_| Box::new([0]));
        let mut fragment = FragmentBuilder::new();
        fragment.add_answer(&apex, RecordType::SOA, std::slice::from_ref(&soa), &[]);
        Self {
            apex_key,
            soa,
            serial,
            fragment,
        }
    }

    /// The zone's apex in lower-cased wire format.
    pub fn apex_key(&self) -> &[u8] {
        &self.apex_key
    }

    /// Indexes the encoded answers of this builder and of `fragments` into a zone.
    pub fn build_with(self, fragments: &[&Fragment]) -> Result<Zone, ProtoError> {
        let own = self.fragment.finish(&self.apex_key);
        let all: Vec<&Fragment> = std::iter::once(&own)
            .chain(fragments.iter().copied())
            .collect();
        let lists: Vec<&[Arc<NameAnswers>]> = all.iter().map(|f| &f.names[..]).collect();
        let names = NameIndex::of_all(&lists);
        // Sized for the reverse names, not the contributions (about two per name): a table
        // twice too big would be most of the index's bytes.
        let addresses: FxHashSet<std::net::IpAddr> = all
            .iter()
            .flat_map(|f| f.pointers.iter().map(|p| p.address))
            .collect();
        let mut reverse = ReverseIndex::with_capacity(addresses.len());
        for pointer in all.iter().flat_map(|f| f.pointers.iter()) {
            reverse.add(pointer.address, &pointer.target());
        }
        let record_count = all.iter().map(|f| f.record_count).sum();
        Self::zone(
            self.apex_key,
            &self.soa,
            self.serial,
            (names, reverse, own, record_count),
        )
    }

    /// The zone of an apex and SOA over an index of `names`, its own answers `own` among them.
    fn zone(
        apex_key: Box<[u8]>,
        soa: &Record,
        serial: u32,
        (names, reverse, own, record_count): (NameIndex, ReverseIndex, Fragment, usize),
    ) -> Result<Zone, ProtoError> {
        Ok(Zone {
            negative_authority: uncompressed(soa)?,
            apex_key,
            names,
            reverse,
            own,
            serial,
            record_count,
        })
    }

    /// Indexes the encoded answers into a zone.
    pub fn build(self) -> Result<Zone, ProtoError> {
        self.build_with(&[])
    }

    /// A zone derived from `previous` (same apex): its own answers replaced by this builder's,
    /// the `removed` fragments (each as it was given to `previous`) taken out, `added` put in.
    /// Shares every unchanged part of `previous`'s index, so it costs what changed.
    pub fn build_over(
        self,
        previous: &Zone,
        removed: &[&Fragment],
        added: &[&Fragment],
    ) -> Result<Zone, ProtoError> {
        let own = self.fragment.finish(&self.apex_key);
        let mut names = previous.names.clone();
        let mut reverse = previous.reverse.clone();
        let mut record_count = previous.record_count;
        for fragment in std::iter::once(&previous.own).chain(removed.iter().copied()) {
            fragment.remove_from(&mut names, &mut reverse);
            record_count -= fragment.record_count;
        }
        for fragment in std::iter::once(&own).chain(added.iter().copied()) {
            fragment.add_to(&mut names, &mut reverse);
            record_count += fragment.record_count;
        }
        if names.is_out_of_shape() {
            names = names.resized();
        }
        if reverse.is_out_of_shape() {
            reverse = reverse.resized();
        }
        Self::zone(
            self.apex_key,
            &self.soa,
            self.serial,
            (names, reverse, own, record_count),
        )
    }
}

impl std::ops::Deref for ZoneBuilder {
    type Target = FragmentBuilder;
    fn deref(&self) -> &FragmentBuilder {
        &self.fragment
    }
}

impl std::ops::DerefMut for ZoneBuilder {
    fn deref_mut(&mut self) -> &mut FragmentBuilder {
        &mut self.fragment
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

/// Uncompressed wire format of a name, case kept: a PTR target as registered.
fn wire_key_as_is(name: &Name) -> Result<Box<[u8]>, ProtoError> {
    let mut buf = Vec::with_capacity(name.len() + 1);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
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
