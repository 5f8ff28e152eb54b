//! Reverse names (`in-addr.arpa`, `ip6.arpa`) of the addresses a zone's data hands out, and
//! their prepared PTR answers.
//!
//! They live outside the zone's apex, so they have an index of their own beside the name
//! index, built and derived the same way: shards picked by hash, each behind an `Arc`, so a
//! derived index copies only the shards whose names change. A reverse name is given by every
//! fragment that knows the address (each service on a node gives the node's name), so a slot
//! counts its contributions, [`PtrTarget`]s, by content: taking a fragment out removes exactly
//! what it gave, and the answer is a function of the set of contributions. The answer is
//! encoded when a slot changes, never per query: the node names when there is one (a node
//! match wins, as in Consul's `handlePtr`), else the service names, each once, in content
//! order so that every replica gives the same answer.

use std::hash::BuildHasher;
use std::sync::Arc;

use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rustc_hash::{FxBuildHasher, FxHashMap};
use tracing::warn;

use super::Prepared;

/// Names per shard aimed at; re-sized when the count drifts 4x either way (as `NameIndex`).
const SHARD_TARGET: usize = 128;

/// What a node or a service contributes to the reverse name of an address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PtrTarget {
    /// Whether a node or a service has the address; nodes come first and win.
    pub kind: PtrKind,
    /// The PTR target in uncompressed wire format, case as registered.
    pub target: Box<[u8]>,
    /// TTL of the PTR record.
    pub ttl: u32,
}

/// A reverse name (lower-cased wire format) and what one contributor says it points at.
pub(crate) type Pointer = (Arc<[u8]>, PtrTarget);

/// Who has an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PtrKind {
    /// A node's address: answers `<node>.node.<dc>.<domain>`.
    Node = 0,
    /// A service instance's own address: answers `<service>.service.<dc>.<domain>`.
    Service = 1,
}

/// One reverse name: its contributions with their counts, and the answer they make.
#[derive(Clone, Debug)]
struct Slot {
    /// Sorted by content; the count is how many fragments gave that target.
    targets: Vec<(PtrTarget, u32)>,
    answer: Arc<Prepared>,
}

type Shard = FxHashMap<Arc<[u8]>, Slot>;

/// The contributions to the names of one shard, before their answers are encoded.
type Gathered = FxHashMap<Arc<[u8]>, Vec<(PtrTarget, u32)>>;

/// The shard of `count` (a power of two) that a key's hash picks: bits from the middle, since
/// the shard's table uses the top and low bits of the same hash.
fn shard_at(hash: u64, count: usize) -> usize {
    ((hash >> 24) as usize) & (count - 1)
}

/// Reverse name (lower-cased wire format) -> prepared PTR answer. Cloning is one pointer per
/// shard.
#[derive(Clone, Debug)]
pub(crate) struct ReverseIndex {
    shards: Box<[Arc<Shard>]>,
    len: usize,
}

impl Default for ReverseIndex {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl ReverseIndex {
    /// An empty index sized for about `names` names.
    pub(crate) fn with_capacity(names: usize) -> Self {
        let count = (names / SHARD_TARGET).max(1).next_power_of_two();
        let per_shard = names / count + 1;
        let shards = (0..count)
            .map(|_| {
                Arc::new(FxHashMap::with_capacity_and_hasher(
                    per_shard,
                    FxBuildHasher,
                ))
            })
            .collect();
        Self { shards, len: 0 }
    }

    /// An index of every pointer of `lists`, each one contribution, filled on several threads:
    /// each name's answer is encoded once, from all its contributions. The same answers as
    /// adding the pointers one by one.
    pub(crate) fn of_all(lists: &[&[Pointer]]) -> Self {
        let total = lists.iter().map(|list| list.len()).sum();
        let mut index = Self::with_capacity(total);
        let count = index.shards.len();
        let per_shard = total / count + 1;
        // The contributions to each name first, sorted as a slot keeps them.
        let mut gathered: Vec<Gathered> = (0..count)
            .map(|_| FxHashMap::with_capacity_and_hasher(per_shard, FxBuildHasher))
            .collect();
        super::fill::fill(
            &mut gathered,
            lists,
            |(key, _)| FxBuildHasher.hash_one(key),
            |hash| shard_at(hash, count),
            |shard, _, (key, target)| {
                let targets = shard.entry(key.clone()).or_default();
                match targets.binary_search_by(|(t, _)| t.cmp(target)) {
                    Ok(found) => targets[found].1 += 1,
                    Err(at) => targets.insert(at, (target.clone(), 1)),
                }
                0
            },
        );
        let shards = super::fill::map(&mut gathered, |gathered| {
            let mut shard = Shard::with_capacity_and_hasher(gathered.len(), FxBuildHasher);
            for (key, targets) in gathered.drain() {
                // An answer that cannot be encoded: the name is not served (as in `store`).
                if let Some(answer) = answer(&key, &targets) {
                    shard.insert(key, Slot { targets, answer });
                }
            }
            Arc::new(shard)
        });
        index.len = shards.iter().map(|shard| shard.len()).sum();
        index.shards = shards.into_boxed_slice();
        index
    }

    /// Number of reverse names.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when the shard count no longer suits the number of names.
    pub(crate) fn is_out_of_shape(&self) -> bool {
        let ideal = (self.len / SHARD_TARGET).max(1).next_power_of_two();
        let count = self.shards.len();
        ideal > count * 4 || ideal * 4 < count
    }

    /// The same names in shards sized for their number.
    pub(crate) fn resized(&self) -> Self {
        let mut index = Self::with_capacity(self.len);
        for (key, slot) in self.shards.iter().flat_map(|shard| shard.iter()) {
            let at = index.shard_of(key);
            Arc::make_mut(&mut index.shards[at]).insert(key.clone(), slot.clone());
        }
        index.len = self.len;
        index
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        shard_at(FxBuildHasher.hash_one(key), self.shards.len())
    }

    /// The PTR answer for a reverse name (lower-cased wire format).
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Prepared> {
        self.shards[self.shard_of(key)]
            .get(key)
            .map(|slot| slot.answer.as_ref())
    }

    /// Every reverse name and its answer, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &Prepared)> + '_ {
        self.shards.iter().flat_map(|shard| {
            shard
                .iter()
                .map(|(key, slot)| (key.as_ref(), slot.answer.as_ref()))
        })
    }

    /// Adds one contribution of `target` to `key`.
    pub(crate) fn add(&mut self, key: &Arc<[u8]>, target: &PtrTarget) {
        let at = self.shard_of(key);
        let shard = Arc::make_mut(&mut self.shards[at]);
        let mut targets = match shard.get_mut(key.as_ref()) {
            Some(slot) => std::mem::take(&mut slot.targets),
            None => Vec::new(),
        };
        match targets.binary_search_by(|(t, _)| t.cmp(target)) {
            Ok(found) => targets[found].1 += 1,
            Err(at) => targets.insert(at, (target.clone(), 1)),
        }
        self.store(key, targets);
    }

    /// Takes back one contribution of `target` (as given to [`Self::add`]) from `key`.
    pub(crate) fn remove(&mut self, key: &Arc<[u8]>, target: &PtrTarget) {
        let at = self.shard_of(key);
        let shard = Arc::make_mut(&mut self.shards[at]);
        let Some(slot) = shard.get_mut(key.as_ref()) else {
            debug_assert!(false, "removing a reverse name that is not indexed");
            return;
        };
        let mut targets = std::mem::take(&mut slot.targets);
        if let Ok(found) = targets.binary_search_by(|(t, _)| t.cmp(target)) {
            targets[found].1 -= 1;
            if targets[found].1 == 0 {
                targets.remove(found);
            }
        }
        self.store(key, targets);
    }

    /// Puts `targets` at `key` with their answer, or removes `key` when none are left.
    fn store(&mut self, key: &Arc<[u8]>, targets: Vec<(PtrTarget, u32)>) {
        let at = self.shard_of(key);
        let shard = Arc::make_mut(&mut self.shards[at]);
        let answer = if targets.is_empty() {
            None
        } else {
            answer(key, &targets)
        };
        let existed = match answer {
            Some(answer) => shard
                .insert(key.clone(), Slot { targets, answer })
                .is_some(),
            None => {
                // Nothing left, or an answer that cannot be encoded: the name is not served.
                shard.remove(key.as_ref()).is_some()
            }
        };
        match (existed, shard.contains_key(key.as_ref())) {
            (false, true) => self.len += 1,
            (true, false) => self.len -= 1,
            _ => {}
        }
    }
}

/// The PTR answer of a reverse name: the node targets if there is one, else the service
/// targets; each name once, in content order.
fn answer(key: &[u8], targets: &[(PtrTarget, u32)]) -> Option<Arc<Prepared>> {
    let owner = read_name(key)?;
    let winner = targets.first()?.0.kind;
    let mut records: Vec<Record> = Vec::new();
    let mut previous: Option<&[u8]> = None;
    for (target, _) in targets.iter().filter(|(t, _)| t.kind == winner) {
        if previous == Some(target.target.as_ref()) {
            continue; // The same name with another TTL: the first (lowest) TTL answers.
        }
        previous = Some(&target.target);
        let name = read_name(&target.target)?;
        records.push(Record::from_rdata(
            owner.clone(),
            target.ttl,
            RData::PTR(PTR(name)),
        ));
    }
    match Prepared::encode(&owner, RecordType::PTR, &records, &[], &[]) {
        Ok(prepared) => Some(Arc::new(prepared)),
        Err(error) => {
            warn!(%owner, %error, "PTR answer left out");
            None
        }
    }
}

/// A name from its uncompressed wire format.
fn read_name(wire: &[u8]) -> Option<Name> {
    Name::read(&mut BinDecoder::new(wire)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: PtrKind, name: &str) -> PtrTarget {
        let name: Name = name.parse().unwrap();
        PtrTarget {
            kind,
            target: super::super::wire_key(&name).unwrap(),
            ttl: 0,
        }
    }

    fn ptrs(index: &ReverseIndex, key: &Arc<[u8]>) -> Vec<String> {
        let Some(prepared) = index.get(key) else {
            return Vec::new();
        };
        let message = hickory_proto::op::Message::from_vec(prepared.wire()).unwrap();
        message
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::PTR(ptr) => ptr.0.to_ascii(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_node_wins_and_contributions_are_counted() {
        let mut index = ReverseIndex::default();
        let owner = Name::from("10.0.0.1".parse::<std::net::IpAddr>().unwrap());
        let key: Arc<[u8]> = super::super::wire_key(&owner).unwrap().into();
        let web = target(PtrKind::Service, "web.service.dc1.consul.");
        let api = target(PtrKind::Service, "api.service.dc1.consul.");
        let node = target(PtrKind::Node, "n1.node.dc1.consul.");
        index.add(&key, &web);
        index.add(&key, &api);
        assert_eq!(
            ptrs(&index, &key),
            ["api.service.dc1.consul.", "web.service.dc1.consul."]
        );
        index.add(&key, &node);
        index.add(&key, &node);
        assert_eq!(ptrs(&index, &key), ["n1.node.dc1.consul."]);
        index.remove(&key, &node);
        assert_eq!(ptrs(&index, &key), ["n1.node.dc1.consul."], "one is left");
        index.remove(&key, &node);
        index.remove(&key, &api);
        assert_eq!(ptrs(&index, &key), ["web.service.dc1.consul."]);
        index.remove(&key, &web);
        assert!(index.get(&key).is_none());
        assert_eq!(index.len(), 0);
    }
}
