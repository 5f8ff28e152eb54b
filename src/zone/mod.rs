//! Authoritative data prepared for answering: one [`Zone`] per DNS zone, immutable once built.
//!
//! A zone maps each owner name (lower-cased wire format) to responses that were encoded once,
//! when the zone was built, so that answering copies bytes and patches the header instead of
//! building records per query. Both the registry zone (see `crate::snapshot`) and the static
//! zones from `zones/` are compiled into this one shape.
//!
//! This module does no I/O and knows nothing about Consul or sockets.

mod builder;
pub mod codec;
mod cuts;
mod fill;
mod footprint;
mod index;
mod prepared;
mod reverse;

pub use builder::{wire_key, Fragment, FragmentBuilder, ZoneBuilder};
pub use footprint::Footprint;
pub use prepared::{Prepared, MAX_MESSAGE_LEN};
pub use reverse::{PtrKind, PtrTarget};

#[cfg(test)]
pub(crate) use prepared::encoded_so_far;

use std::sync::Arc;

use hickory_proto::rr::RecordType;

use index::NameIndex;
use reverse::ReverseIndex;

/// The answers of one zone, keyed by lower-cased wire-format owner name.
#[derive(Debug)]
pub struct Zone {
    pub(crate) apex_key: Box<[u8]>,
    pub(crate) names: NameIndex,
    /// PTR answers for the reverse names of the addresses the zone's data hands out (they
    /// lie outside the apex); empty for static zones.
    pub(crate) reverse: ReverseIndex,
    /// The zone's own answers (apex SOA and NS, the name server's addresses), replaced
    /// whole when a zone is derived from this one.
    pub(crate) own: Fragment,
    /// The zone's SOA record in uncompressed wire format, placed in the authority section of
    /// NXDOMAIN and NODATA answers. Uncompressed so it can follow any question.
    pub(crate) negative_authority: Box<[u8]>,
    pub(crate) serial: u32,
    pub(crate) record_count: usize,
}

/// What one owner name holds: its key and a prepared response per record type it has data
/// for. An empty list marks an empty non-terminal (the name exists, with no data).
#[derive(Debug, Default)]
pub struct NameAnswers {
    /// The lower-cased wire name, or nothing when it is the question of the first response
    /// (most names: a response prepared for the name alone), which then holds it.
    pub(crate) key: Box<[u8]>,
    pub(crate) by_type: Box<[(u16, Arc<Prepared>)]>,
}

impl NameAnswers {
    /// The answers of the name `key` with `by_type` (sorted by type here).
    pub(crate) fn new(key: Box<[u8]>, mut by_type: Vec<(u16, Arc<Prepared>)>) -> Self {
        by_type.sort_by_key(|(rtype, _)| *rtype);
        let mut answers = Self {
            key: Box::new([]),
            by_type: by_type.into_boxed_slice(),
        };
        // A key the first response's question spells is not stored twice.
        if answers.question_key() != Some(&key[..]) {
            answers.key = key;
        }
        answers
    }

    /// The answers of the name `key` with `by_type` (sorted by type here), the key copied only
    /// when the first response's question does not spell it (a cache read makes most names).
    pub(crate) fn with_key(key: &[u8], mut by_type: Vec<(u16, Arc<Prepared>)>) -> Self {
        by_type.sort_by_key(|(rtype, _)| *rtype);
        let mut answers = Self {
            key: Box::new([]),
            by_type: by_type.into_boxed_slice(),
        };
        if answers.question_key() != Some(key) {
            answers.key = key.into();
        }
        answers
    }

    /// The lower-cased wire name these answers are for.
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        match self.question_key() {
            Some(question) if self.key.is_empty() => question,
            _ => &self.key,
        }
    }

    /// The question name of the first response (lower-cased, uncompressed: the first name of
    /// a message is never compressed).
    #[inline]
    fn question_key(&self) -> Option<&[u8]> {
        let (_, first) = self.by_type.first()?;
        first.wire.get(12..first.question_end().checked_sub(4)?)
    }
}

/// The outcome of looking a name up in a zone.
#[derive(Debug)]
pub enum Lookup<'z> {
    /// A response prepared for this name and type.
    Answer(&'z Prepared),
    /// The name exists but has no data of this type: NOERROR with the SOA.
    NoData,
    /// The name does not exist in the zone: NXDOMAIN with the SOA.
    NxDomain,
}

impl Zone {
    /// Finds the prepared answer for a lower-cased wire-format name and a query type.
    ///
    /// One hash lookup; ANY is answered with a single RRset in the spirit of RFC 8482
    /// (A, else AAAA, else the first type the name has).
    pub fn lookup(&self, key: &[u8], qtype: u16) -> Lookup<'_> {
        let Some(name) = self.names.get(key) else {
            return Lookup::NxDomain;
        };
        let by_type = &name.by_type;
        let found = if qtype == u16::from(RecordType::ANY) {
            [RecordType::A, RecordType::AAAA]
                .iter()
                .find_map(|t| by_type.iter().find(|(ty, _)| *ty == u16::from(*t)))
                .or_else(|| by_type.first())
        } else {
            // An alias answers every type it does not hold itself (RFC 1034 §3.6.2).
            by_type.iter().find(|(ty, _)| *ty == qtype).or_else(|| {
                by_type
                    .iter()
                    .find(|(ty, _)| *ty == u16::from(RecordType::CNAME))
            })
        };
        match found {
            Some((_, prepared)) => Lookup::Answer(prepared),
            None => Lookup::NoData,
        }
    }

    /// The PTR answer for a reverse name (lower-cased wire format) of an address the zone's
    /// data knows. One hash probe.
    #[inline]
    pub fn pointer(&self, key: &[u8]) -> Option<&Prepared> {
        self.reverse.get(key)
    }

    /// Number of reverse names answered.
    pub fn pointer_count(&self) -> usize {
        self.reverse.len()
    }

    /// Every reverse name (lower-cased wire format) with its PTR answer, in no particular order.
    pub fn pointers(&self) -> impl Iterator<Item = (&[u8], &Prepared)> + '_ {
        self.reverse.iter()
    }

    /// Whether `key` (lower-cased wire format) holds data: `None` when the name does not
    /// exist, `Some(false)` for an empty non-terminal.
    pub fn has_data(&self, key: &[u8]) -> Option<bool> {
        self.names.get(key).map(|name| !name.by_type.is_empty())
    }

    /// True when `key` (lower-cased wire format) is the apex or below it.
    pub fn contains(&self, key: &[u8]) -> bool {
        is_subdomain_key(key, &self.apex_key)
    }

    /// The apex in lower-cased wire format.
    pub fn apex_key(&self) -> &[u8] {
        &self.apex_key
    }

    /// SOA serial of this zone.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Number of owner names, empty non-terminals included.
    pub fn name_count(&self) -> usize {
        self.names.len()
    }

    /// Number of records the zone was built from (answers and additionals, per name and type).
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// The SOA record, uncompressed, for negative answers.
    pub fn negative_authority(&self) -> &[u8] {
        &self.negative_authority
    }

    /// Every owner name (lower-cased wire format) with its prepared answers by type, in no
    /// particular order.
    pub fn names(&self) -> impl Iterator<Item = (&[u8], &[(u16, Arc<Prepared>)])> + '_ {
        self.names
            .iter()
            .map(|(key, answers)| (key, answers.by_type.as_ref()))
    }
}

impl Zone {
    /// The owner names (lower-cased wire format) whose answers differ from `base`'s, or
    /// `None` when this zone was not derived from `base` (then only a full comparison would
    /// tell). Costs the changed part of the index, not the zone.
    pub fn changed_names(&self, base: &Self) -> Option<Vec<Box<[u8]>>> {
        self.names.changed_keys(&base.names)
    }

    /// True when this zone's index has the shard layout of `other`'s, so that
    /// [`Zone::changed_names`] can compare them.
    pub fn shares_layout_with(&self, other: &Self) -> bool {
        self.names.same_layout(&other.names)
    }

    /// The prepared answers of `key` by type; empty for an empty non-terminal or an unknown
    /// name.
    pub fn answers_of(&self, key: &[u8]) -> &[(u16, Arc<Prepared>)] {
        self.names.get(key).map_or(&[], |name| &name.by_type)
    }
}

/// A set of zones searched by longest matching apex: the static zones.
#[derive(Debug, Default)]
pub struct ZoneSet {
    zones: Vec<Zone>,
}

impl ZoneSet {
    /// A set of zones; on overlap the deeper apex wins.
    pub fn new(mut zones: Vec<Zone>) -> Self {
        zones.sort_by_key(|zone| std::cmp::Reverse(zone.apex_key.len()));
        Self { zones }
    }

    /// The zone holding `key` (lower-cased wire format), if any.
    pub fn find(&self, key: &[u8]) -> Option<&Zone> {
        self.zones.iter().find(|zone| zone.contains(key))
    }

    /// The zones, deepest apex first.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }
}

/// True when wire-format `name` equals `zone` or ends with it on a label boundary.
/// Both must be lower-cased, uncompressed wire names.
pub fn is_subdomain_key(name: &[u8], zone: &[u8]) -> bool {
    if name.len() < zone.len() {
        return false;
    }
    // Walk label boundaries of `name` so a match cannot start inside a label.
    let mut offset = 0;
    while offset < name.len() {
        if name.len() - offset == zone.len() {
            return &name[offset..] == zone;
        }
        let label_len = name[offset] as usize;
        if label_len == 0 {
            return false;
        }
        offset += label_len + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::is_subdomain_key;

    #[test]
    fn a_prepared_answer_stays_32_bytes() {
        // One per answer of every name: a field more is memory on every replica (issue 12).
        assert_eq!(std::mem::size_of::<super::Prepared>(), 32);
    }

    #[test]
    fn subdomain_keys_respect_label_boundaries() {
        let consul = b"\x06consul\x00";
        assert!(is_subdomain_key(
            b"\x03web\x07service\x06consul\x00",
            consul
        ));
        assert!(is_subdomain_key(consul, consul));
        assert!(!is_subdomain_key(b"\x07xconsul\x00", consul));
        assert!(!is_subdomain_key(b"\x03com\x00", consul));
        // "consul" appearing inside a label is not a suffix match.
        assert!(!is_subdomain_key(b"\x0aabc\x06consul\x00", consul));
    }
}
