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

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rustc_hash::FxBuildHasher;
use tracing::warn;

use super::Prepared;

/// Names per shard aimed at; re-sized when the count drifts 4x either way (as `NameIndex`).
const SHARD_TARGET: usize = 128;

/// What a node or a service contributes to the reverse name of an address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PtrTarget {
    /// Whether a node or a service has the address; nodes come first and win.
    pub kind: PtrKind,
    /// The PTR target in uncompressed wire format, case as registered; one allocation for
    /// every contribution of a fragment to the same target, which the index's slots share.
    pub target: Arc<[u8]>,
    /// TTL of the PTR record.
    pub ttl: u32,
}

/// One reverse name a fragment gives: the address and what it points at, flat (40 bytes; a
/// fragment holds one per node and instance address).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pointer {
    pub(crate) address: IpAddr,
    pub(crate) kind: PtrKind,
    pub(crate) target: Arc<[u8]>,
    pub(crate) ttl: u32,
}

impl Pointer {
    /// What it contributes to its reverse name.
    pub(crate) fn target(&self) -> PtrTarget {
        PtrTarget {
            kind: self.kind,
            target: self.target.clone(),
            ttl: self.ttl,
        }
    }
}

/// Who has an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PtrKind {
    /// A node's address: answers `<node>.node.<dc>.<domain>`.
    Node = 0,
    /// A service instance's own address: answers `<service>.service.<dc>.<domain>`.
    Service = 1,
}

/// One contribution to a reverse name, with how many fragments gave it.
type Counted = (PtrTarget, u32);

/// One reverse name: the answer its contributions make and the contributions, counted. One
/// allocation per name: the key is the answer's question, and almost every address has one
/// contribution (one node, or one instance), kept inline.
#[derive(Debug)]
struct Slot {
    answer: Prepared,
    /// The first contribution by content.
    first: Counted,
    /// The others, sorted by content; empty (no allocation) for most names.
    rest: Box<[Counted]>,
}

impl Slot {
    /// The reverse name (lower-cased wire format): the question of its answer.
    fn key(&self) -> &[u8] {
        question_of(&self.answer)
    }

    /// Every contribution, sorted by content.
    fn contributions(&self) -> Vec<Counted> {
        let mut all = Vec::with_capacity(1 + self.rest.len());
        all.push(self.first.clone());
        all.extend(self.rest.iter().cloned());
        all
    }
}

/// The question name of a prepared response (lower-cased, uncompressed: the first name of a
/// message is never compressed).
fn question_of(prepared: &Prepared) -> &[u8] {
    let end = prepared.question_end().saturating_sub(4);
    prepared.wire.get(12..end).unwrap_or_default()
}

/// A name in a shard's table, hashed and compared by its key, which its answer holds.
#[derive(Clone, Debug)]
struct Entry(Arc<Slot>);

impl Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.0.key()
    }
}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The same hash as the `[u8]` a lookup probes with (`Borrow`'s contract).
        self.0.key().hash(state);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl Eq for Entry {}

type Shard = HashSet<Entry, FxBuildHasher>;

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
        // Room for a quarter more than the average, as `NameIndex`.
        let per_shard = names / count + names / count / 4 + 1;
        let shards = (0..count)
            .map(|_| Arc::new(HashSet::with_capacity_and_hasher(per_shard, FxBuildHasher)))
            .collect();
        Self { shards, len: 0 }
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
        for entry in self.shards.iter().flat_map(|shard| shard.iter()) {
            let at = index.shard_of(entry.0.key());
            Arc::make_mut(&mut index.shards[at]).insert(entry.clone());
        }
        index.len = self.len;
        index
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        let hash = FxBuildHasher.hash_one(key);
        ((hash >> 24) as usize) & (self.shards.len() - 1)
    }

    /// The PTR answer for a reverse name (lower-cased wire format).
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Prepared> {
        self.shards[self.shard_of(key)]
            .get(key)
            .map(|entry| &entry.0.answer)
    }

    /// Every reverse name and its answer, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &Prepared)> + '_ {
        self.shards
            .iter()
            .flat_map(|shard| shard.iter().map(|entry| (entry.0.key(), &entry.0.answer)))
    }

    /// Adds one contribution of `target` to the reverse name of `address`.
    pub(crate) fn add(&mut self, address: IpAddr, target: &PtrTarget) {
        let key = ReverseKey::of(address);
        let mut targets = self.taken(&key);
        match targets.binary_search_by(|(t, _)| t.cmp(target)) {
            Ok(found) => targets[found].1 += 1,
            Err(at) => targets.insert(at, (target.clone(), 1)),
        }
        self.store(&key, targets);
    }

    /// Takes back one contribution of `target` (as given to [`Self::add`]) from the reverse
    /// name of `address`.
    pub(crate) fn remove(&mut self, address: IpAddr, target: &PtrTarget) {
        let key = ReverseKey::of(address);
        let mut targets = self.taken(&key);
        debug_assert!(!targets.is_empty(), "removing a reverse name not indexed");
        if let Ok(found) = targets.binary_search_by(|(t, _)| t.cmp(target)) {
            targets[found].1 -= 1;
            if targets[found].1 == 0 {
                targets.remove(found);
            }
        }
        self.store(&key, targets);
    }

    /// The contributions to `key`, taken out of the index (none when it is not there).
    fn taken(&mut self, key: &[u8]) -> Vec<Counted> {
        let at = self.shard_of(key);
        match Arc::make_mut(&mut self.shards[at]).take(key) {
            Some(entry) => {
                self.len -= 1;
                entry.0.contributions()
            }
            None => Vec::new(),
        }
    }

    /// Puts `targets` at `key` (not in the index) with their answer; leaves the name out when
    /// none are left.
    fn store(&mut self, key: &[u8], mut targets: Vec<Counted>) {
        if targets.is_empty() {
            return;
        }
        // Nothing left, or an answer that cannot be encoded: the name is not served.
        let Some(answer) = answer(key, &targets) else {
            return;
        };
        let first = targets.remove(0);
        let slot = Slot {
            answer,
            first,
            rest: targets.into_boxed_slice(),
        };
        let at = self.shard_of(key);
        Arc::make_mut(&mut self.shards[at]).insert(Entry(Arc::new(slot)));
        self.len += 1;
    }
}

impl ReverseIndex {
    /// Adds this index's heap bytes to `footprint`: the tables, the slots with their
    /// contributions, and the answers.
    pub(super) fn count_into(&self, footprint: &mut super::Footprint) {
        use super::footprint::{allocated, boxed, table};
        footprint.pointers += self.len;
        footprint.pointer_index_bytes += boxed::<Arc<Shard>>(self.shards.len());
        for shard in self.shards.iter() {
            footprint.pointer_index_bytes += allocated(16 + std::mem::size_of::<Shard>())
                + table(shard.capacity(), std::mem::size_of::<Entry>());
            for entry in shard.iter() {
                let slot = &entry.0;
                footprint.pointer_slot_bytes +=
                    allocated(16 + std::mem::size_of::<Slot>()) + boxed::<Counted>(slot.rest.len());
                // The targets are the fragments' (counted with them).
                footprint.pointer_answer_bytes += slot.answer.heap_bytes(false);
            }
        }
    }
}

/// The reverse name of an address (`in-addr.arpa`, `ip6.arpa`) in lower-cased wire format,
/// written without allocating: what `wire_key(&Name::from(address))` gives.
pub(crate) struct ReverseKey {
    bytes: [u8; 74],
    len: usize,
}

impl ReverseKey {
    /// The reverse name of `address`.
    pub(crate) fn of(address: IpAddr) -> Self {
        let mut key = Self {
            bytes: [0; 74],
            len: 0,
        };
        match address {
            IpAddr::V4(v4) => {
                for &octet in v4.octets().iter().rev() {
                    let digits = [
                        b'0' + octet / 100,
                        b'0' + octet / 10 % 10,
                        b'0' + octet % 10,
                    ];
                    let skip = match octet {
                        100.. => 0,
                        10..=99 => 1,
                        _ => 2,
                    };
                    key.label(&digits[skip..]);
                }
                key.label(b"in-addr");
            }
            IpAddr::V6(v6) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for octet in v6.octets().iter().rev() {
                    key.label(&[HEX[usize::from(octet & 0xf)]]);
                    key.label(&[HEX[usize::from(octet >> 4)]]);
                }
                key.label(b"ip6");
            }
        }
        key.label(b"arpa");
        key.bytes[key.len] = 0;
        key.len += 1;
        key
    }

    fn label(&mut self, label: &[u8]) {
        self.bytes[self.len] = label.len() as u8;
        self.bytes[self.len + 1..self.len + 1 + label.len()].copy_from_slice(label);
        self.len += 1 + label.len();
    }
}

impl std::ops::Deref for ReverseKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The PTR answer of a reverse name: the node targets if there is one, else the service
/// targets; each name once, in content order.
fn answer(key: &[u8], targets: &[Counted]) -> Option<Prepared> {
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
        // The slot finds its key in the question; a key that does not spell it could not be
        // found (reverse keys are written lower-cased, so it always does).
        Ok(prepared) if question_of(&prepared) == key => Some(prepared),
        Ok(_) => {
            warn!(%owner, "PTR answer left out: its question is not its key");
            None
        }
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
            target: super::super::wire_key(&name).unwrap().into(),
            ttl: 0,
        }
    }

    fn ptrs(index: &ReverseIndex, address: IpAddr) -> Vec<String> {
        let Some(prepared) = index.get(&ReverseKey::of(address)) else {
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
        let address: IpAddr = "10.0.0.1".parse().unwrap();
        let web = target(PtrKind::Service, "web.service.dc1.consul.");
        let api = target(PtrKind::Service, "api.service.dc1.consul.");
        let node = target(PtrKind::Node, "n1.node.dc1.consul.");
        index.add(address, &web);
        index.add(address, &api);
        assert_eq!(
            ptrs(&index, address),
            ["api.service.dc1.consul.", "web.service.dc1.consul."]
        );
        index.add(address, &node);
        index.add(address, &node);
        assert_eq!(ptrs(&index, address), ["n1.node.dc1.consul."]);
        index.remove(address, &node);
        assert_eq!(
            ptrs(&index, address),
            ["n1.node.dc1.consul."],
            "one is left"
        );
        index.remove(address, &node);
        index.remove(address, &api);
        assert_eq!(ptrs(&index, address), ["web.service.dc1.consul."]);
        assert_eq!(index.len(), 1);
        index.remove(address, &web);
        assert!(ptrs(&index, address).is_empty());
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn reverse_keys_are_what_hickory_writes() {
        for address in [
            "0.0.0.0",
            "10.0.0.1",
            "192.168.99.255",
            "1.22.103.9",
            "::",
            "::1",
            "2001:db8::abcd:ef01",
            "fe80::1:2:3:4",
        ] {
            let address: IpAddr = address.parse().unwrap();
            let expected = super::super::wire_key(&Name::from(address)).unwrap();
            assert_eq!(&*ReverseKey::of(address), &*expected, "{address}");
        }
    }

    #[test]
    fn a_slot_is_one_small_allocation() {
        // Per reverse name on every replica (issue 12): the answer, one contribution inline.
        assert_eq!(std::mem::size_of::<Slot>(), 80);
        // Per node and instance address in every fragment.
        assert_eq!(std::mem::size_of::<Pointer>(), 40);
    }
}
