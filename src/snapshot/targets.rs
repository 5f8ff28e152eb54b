//! Hostname addresses inside the registry domain (`web.service.consul` as a service's or a
//! node's address): what they answer, as the registry serves them.
//!
//! Consul resolves such names internally (`resolveCNAME`, at most 3 levels): an A/AAAA answer
//! is the CNAME plus the target's records, an SRV answer keeps the name as target and carries
//! the target's records in the additional section. So one service's answers depend on another
//! service's: a build encodes the services with such addresses twice. The first pass (no zone
//! to look in) only notes that a fragment has such targets; once every other fragment of the
//! build is indexed, the second pass looks the targets up in that zone and notes every name it
//! looked at, so that a later build re-resolves the service when one of those names changes
//! (`Parts::watchers`).
//!
//! A name's records are taken as it answers **by itself**: its CNAME when its answer starts
//! with one (what follows is its own target's, resolved when it was built), else its
//! addresses. That view depends only on the name's own service, whichever pass encoded it, so
//! a rebuild resolves exactly as a full build does.

use std::collections::BTreeSet;
use std::sync::Arc;

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::zone::{wire_key, Lookup, Prepared, Zone};

/// Names looked up per target at most: Consul's `maxRecursionLevelDefault`.
const MAX_HOPS: usize = 3;

/// Resolves the in-domain targets of one fragment and notes what that looked at.
pub(super) struct Targets<'z> {
    domain: &'z Name,
    /// The zone to resolve in; `None` in the first pass.
    zone: Option<&'z Zone>,
    /// Some address was a hostname inside the domain.
    pub(super) dependent: bool,
    /// The names looked up (lower-cased wire format).
    pub(super) watched: BTreeSet<Arc<[u8]>>,
}

impl<'z> Targets<'z> {
    /// Resolves names under `domain` (lower-cased) in `zone`; with `None`, notes only.
    pub(super) fn new(domain: &'z Name, zone: Option<&'z Zone>) -> Self {
        Self {
            domain,
            zone,
            dependent: false,
            watched: BTreeSet::new(),
        }
    }

    /// The records `target` answers for `rtype` (A or AAAA) as the registry serves them: the
    /// CNAMEs followed and the addresses they end at. Stops after [`MAX_HOPS`] names, at a
    /// name seen before or one of `stop` (the names being built: a loop), at a name outside
    /// the domain or without an answer, with what was found so far.
    pub(super) fn resolve(
        &mut self,
        target: &Name,
        rtype: RecordType,
        stop: &[Name],
    ) -> Vec<Record> {
        if !self.domain.zone_of(target) {
            return Vec::new();
        }
        self.dependent = true;
        let Some(zone) = self.zone.filter(|_| !stop.contains(target)) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        let mut seen: Vec<Name> = Vec::new();
        let mut name = target.clone();
        for _ in 0..MAX_HOPS {
            let Ok(key) = wire_key(&name) else { break };
            let Lookup::Answer(prepared) = zone.lookup(&key, u16::from(rtype)) else {
                self.watched.insert(key.into());
                break;
            };
            self.watched.insert(key.into());
            let records = own_records(prepared, rtype);
            let next = match records.first().map(|r| &r.data) {
                Some(RData::CNAME(cname)) => Some(cname.0.clone()),
                _ => None,
            };
            found.extend(records.into_iter().map(|mut record| {
                record.name = name.clone();
                record
            }));
            seen.push(name);
            match next {
                Some(next)
                    if self.domain.zone_of(&next)
                        && !stop.contains(&next)
                        && !seen.contains(&next) =>
                {
                    name = next;
                }
                _ => break,
            }
        }
        found
    }
}

/// What a prepared answer's name answers by itself: its CNAME when the answer starts with
/// one, else its records of `rtype`.
fn own_records(prepared: &Prepared, rtype: RecordType) -> Vec<Record> {
    let Ok(message) = Message::from_vec(prepared.wire()) else {
        return Vec::new();
    };
    match message.answers.first() {
        Some(first) if first.record_type() == RecordType::CNAME => vec![first.clone()],
        _ => message
            .answers
            .into_iter()
            .filter(|record| record.record_type() == rtype)
            .collect(),
    }
}
