//! The name index of a zone: lower-cased wire name -> prepared answers, built so that a new
//! zone that differs from the old one in a few names shares everything else with it.
//!
//! The index is split into shards by hash; a zone derived from another clones the list of
//! shards (one pointer each) and copies only the shards whose names change. So publishing a
//! change costs the changed names times the shard size plus the shard count, not the zone
//! (about 36 names per changed service, shards of about 100 names): `Arc::make_mut` on a
//! shard copies it only while an older zone still shares it.
//!
//! A name may be given by several contributors (fragments): every service whose instances run
//! on a node gives that node's name, every service gives the empty non-terminals above its
//! names. Each slot therefore counts its contributions by content, so a contributor leaving
//! takes away exactly its own, and what a lookup sees is a function of the set of
//! contributions, not of the order they came in: a full build and any sequence of incremental
//! ones give the same answers.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::hash_table::{Entry, HashTable};
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::NameAnswers;

/// Names per shard aimed at when a zone is sized; it is re-sized when it drifts 4x either way.
const SHARD_TARGET: usize = 128;

/// One shard: names whose hash picks it.
#[derive(Clone, Debug, Default)]
struct Shard {
    /// What lookups see, one pointer per name, hashed by [`hash_of`] its key: the name's key
    /// is inside its answers, so a bucket is 8 bytes. The hash that picked the shard is the
    /// table's hash too, so a lookup hashes its key once.
    names: HashTable<Arc<NameAnswers>>,
    /// The names given by several contributions (or one given several times): few (empty
    /// non-terminals, nodes shared by services), so they are kept aside.
    shared: FxHashMap<Box<[u8]>, Contributions>,
}

/// The hash of a key: it picks the shard and the slot in the shard's table.
fn hash_of(key: &[u8]) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// The distinct contributions to one name, each with how many contributors gave it.
#[derive(Clone, Debug)]
struct Contributions {
    /// Sorted by content, so the union picks the same answer whatever the insertion order.
    versions: Vec<(Arc<NameAnswers>, u32)>,
}

/// The name -> answers map of one zone. Cloning is cheap: one pointer per shard.
#[derive(Clone, Debug)]
pub(crate) struct NameIndex {
    shards: Box<[Arc<Shard>]>,
    len: usize,
}

impl Default for NameIndex {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Shard {
    fn find(&self, hash: u64, key: &[u8]) -> Option<&Arc<NameAnswers>> {
        self.names.find(hash, |answers| answers.key() == key)
    }

    /// Points the name `key` (present, with hash `hash`) at `answers`.
    fn set(&mut self, hash: u64, key: &[u8], answers: Arc<NameAnswers>) {
        if let Some(slot) = self.names.find_mut(hash, |a| a.key() == key) {
            *slot = answers;
        }
    }

    /// Adds one contribution of `answers`, whose key has hash `hash`: 1 when the name is new.
    fn add(&mut self, hash: u64, answers: &Arc<NameAnswers>) -> usize {
        let key = answers.key();
        if let Some(shared) = self.shared.get_mut(key) {
            shared.add(answers);
            let merged = shared.merged(key);
            self.set(hash, key, merged);
            return 0;
        }
        let entry = self
            .names
            .entry(hash, |a| a.key() == key, |a| hash_of(a.key()));
        let mut existing = match entry {
            Entry::Vacant(vacant) => {
                vacant.insert(answers.clone());
                return 1;
            }
            Entry::Occupied(existing) => existing,
        };
        let mut shared = Contributions {
            versions: vec![(existing.get().clone(), 1)],
        };
        shared.add(answers);
        *existing.get_mut() = shared.merged(key);
        self.shared.insert(key.into(), shared);
        0
    }

    /// Takes back one contribution of `answers`: 1 when the name is gone.
    fn remove(&mut self, hash: u64, answers: &Arc<NameAnswers>) -> usize {
        let key = answers.key();
        let Some(shared) = self.shared.get_mut(key) else {
            let found = self.names.find_entry(hash, |a| a.key() == key);
            debug_assert!(found.is_ok(), "removing a name that is not indexed");
            return found.map_or(0, |entry| {
                entry.remove();
                1
            });
        };
        let versions = &mut shared.versions;
        if let Some(at) = versions.iter().position(|(v, _)| same(v, answers)) {
            versions[at].1 -= 1;
            if versions[at].1 == 0 {
                versions.remove(at);
            }
        }
        match versions.as_slice() {
            [] => {
                self.shared.remove(key);
                if let Ok(entry) = self.names.find_entry(hash, |a| a.key() == key) {
                    entry.remove();
                }
                1
            }
            [(only, 1)] => {
                let only = only.clone();
                self.shared.remove(key);
                self.set(hash, key, only);
                0
            }
            _ => {
                let merged = shared.merged(key);
                self.set(hash, key, merged);
                0
            }
        }
    }
}

impl NameIndex {
    /// An empty index sized for about `names` names.
    pub(crate) fn with_capacity(names: usize) -> Self {
        let count = (names / SHARD_TARGET).max(1).next_power_of_two();
        // Room for a quarter more than the average, so that few shards outgrow their table
        // (a table that grows doubles, and would then stay half empty).
        let per_shard = names / count + names / count / 4 + 1;
        let shards = (0..count)
            .map(|_| {
                Arc::new(Shard {
                    names: HashTable::with_capacity(per_shard),
                    shared: FxHashMap::default(),
                })
            })
            .collect();
        Self { shards, len: 0 }
    }

    /// An index of every name of `lists`, each one contribution, sized for them and filled on
    /// several threads: the same index as adding them one by one, in order.
    pub(crate) fn of_all(lists: &[&[Arc<NameAnswers>]]) -> Self {
        let total = lists.iter().map(|list| list.len()).sum();
        let mut index = Self::with_capacity(total);
        let count = index.shards.len();
        index.len = super::fill::fill(
            &mut index.shards,
            lists,
            |answers| hash_of(answers.key()),
            |hash| shard_at(hash, count),
            |shard, hash, answers| Arc::make_mut(shard).add(hash, answers),
        );
        index
    }

    /// True when the shard count no longer suits the number of names: re-index then.
    pub(crate) fn is_out_of_shape(&self) -> bool {
        let ideal = (self.len / SHARD_TARGET).max(1).next_power_of_two();
        let count = self.shards.len();
        ideal > count * 4 || ideal * 4 < count
    }

    /// The same names and contributions in shards sized for the current number of names.
    pub(crate) fn resized(&self) -> Self {
        let mut index = Self::with_capacity(self.len);
        for shard in self.shards.iter() {
            for answers in shard.names.iter() {
                let hash = hash_of(answers.key());
                let at = index.shard_of(hash);
                Arc::make_mut(&mut index.shards[at]).names.insert_unique(
                    hash,
                    answers.clone(),
                    |a| hash_of(a.key()),
                );
            }
            for (key, contributions) in shard.shared.iter() {
                let at = index.shard_of(hash_of(key));
                Arc::make_mut(&mut index.shards[at])
                    .shared
                    .insert(key.clone(), contributions.clone());
            }
        }
        index.len = self.len;
        index
    }

    /// Number of names.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn shard_of(&self, hash: u64) -> usize {
        shard_at(hash, self.shards.len())
    }

    /// The answers for `key`.
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<&NameAnswers> {
        let hash = hash_of(key);
        self.shards[self.shard_of(hash)]
            .find(hash, key)
            .map(AsRef::as_ref)
    }

    /// Every name and what lookups see for it, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &NameAnswers)> + '_ {
        self.shards.iter().flat_map(|shard| {
            shard
                .names
                .iter()
                .map(|answers| (answers.key(), answers.as_ref()))
        })
    }

    /// The keys whose answers differ between `base` and `self` (added, changed or removed), or
    /// `None` when the two do not share their shard layout (one was re-indexed): shards that
    /// are still shared are skipped whole, so after a change this costs the shard count plus
    /// the changed shards.
    pub(crate) fn changed_keys(&self, base: &Self) -> Option<Vec<Box<[u8]>>> {
        if self.shards.len() != base.shards.len() {
            return None;
        }
        let mut keys = Vec::new();
        for (shard, old) in self.shards.iter().zip(base.shards.iter()) {
            if Arc::ptr_eq(shard, old) {
                continue;
            }
            for answers in shard.names.iter() {
                let key = answers.key();
                let same = old
                    .find(hash_of(key), key)
                    .is_some_and(|before| Arc::ptr_eq(before, answers));
                if !same {
                    keys.push(key.into());
                }
            }
            for before in old.names.iter() {
                let key = before.key();
                if shard.find(hash_of(key), key).is_none() {
                    keys.push(key.into());
                }
            }
        }
        Some(keys)
    }

    /// True when the two indexes have as many shards, so that a name sits in the same shard
    /// of both.
    pub(crate) fn same_layout(&self, other: &Self) -> bool {
        self.shards.len() == other.shards.len()
    }

    /// Adds one contribution of `answers` to its name.
    pub(crate) fn add(&mut self, answers: &Arc<NameAnswers>) {
        let hash = hash_of(answers.key());
        let at = self.shard_of(hash);
        self.len += Arc::make_mut(&mut self.shards[at]).add(hash, answers);
    }

    /// Takes back one contribution of `answers` (as given to [`Self::add`]) from its name.
    pub(crate) fn remove(&mut self, answers: &Arc<NameAnswers>) {
        let hash = hash_of(answers.key());
        let at = self.shard_of(hash);
        self.len -= Arc::make_mut(&mut self.shards[at]).remove(hash, answers);
    }
}

/// The shard of `count` (a power of two) that a hash picks. The shard's table uses the top and
/// low bits of the same hash: the shard is picked with bits from the middle, so the keys of
/// one shard still spread over its table.
fn shard_at(hash: u64, count: usize) -> usize {
    ((hash >> 24) as usize) & (count - 1)
}

impl NameIndex {
    /// Heap bytes of the index's tables, and of the names' keys and answer lists (each
    /// counted once however many shards or contributions share it).
    pub(crate) fn heap_bytes(&self) -> (usize, usize) {
        use super::footprint::{allocated, boxed, table};
        let mut index = boxed::<Arc<Shard>>(self.shards.len());
        let mut names = 0;
        let answers = |answers: &NameAnswers| {
            allocated(16 + std::mem::size_of::<NameAnswers>())
                + boxed::<u8>(answers.key.len())
                + boxed::<(u16, Arc<super::Prepared>)>(answers.by_type.len())
        };
        for shard in self.shards.iter() {
            index += allocated(16 + std::mem::size_of::<Shard>())
                + table(
                    shard.names.capacity(),
                    std::mem::size_of::<Arc<NameAnswers>>(),
                )
                + table(
                    shard.shared.capacity(),
                    std::mem::size_of::<(Box<[u8]>, Contributions)>(),
                );
            for entry in shard.names.iter() {
                if !shard.shared.contains_key(entry.key()) {
                    names += answers(entry);
                }
            }
            for (key, shared) in shard.shared.iter() {
                names += boxed::<u8>(key.len())
                    + boxed::<(Arc<NameAnswers>, u32)>(shared.versions.capacity())
                    + shared
                        .versions
                        .iter()
                        .map(|(v, _)| answers(v))
                        .sum::<usize>();
                if shared.versions.len() > 1 {
                    names += shard.find(hash_of(key), key).map_or(0, |e| answers(e));
                }
            }
        }
        (index, names)
    }
}

impl Contributions {
    /// Counts one more contribution of `answers`.
    fn add(&mut self, answers: &Arc<NameAnswers>) {
        match self.versions.iter_mut().find(|(v, _)| same(v, answers)) {
            Some((_, count)) => *count += 1,
            None => {
                self.versions.push((answers.clone(), 1));
                self.versions.sort_by(|(a, _), (b, _)| a.content_cmp(b));
            }
        }
    }

    /// What lookups see: the union of the contributions by type.
    fn merged(&self, key: &[u8]) -> Arc<NameAnswers> {
        match self.versions.as_slice() {
            [(only, _)] => only.clone(),
            _ => Arc::new(NameAnswers::union(
                key,
                self.versions.iter().map(|(v, _)| v.as_ref()),
            )),
        }
    }
}

/// Same contribution: the same allocation, or equal content (two services encode the same
/// node, every service the same empty non-terminal).
fn same(a: &Arc<NameAnswers>, b: &Arc<NameAnswers>) -> bool {
    Arc::ptr_eq(a, b) || a.content_cmp(b).is_eq()
}

impl NameAnswers {
    /// Orders answers by content: types, then the bytes of each response.
    fn content_cmp(&self, other: &Self) -> std::cmp::Ordering {
        let a = self.by_type.iter().map(|(t, p)| (*t, p.wire()));
        let b = other.by_type.iter().map(|(t, p)| (*t, p.wire()));
        a.cmp(b)
    }

    /// The types of all `parts`, each type's answer taken from the first part that has it.
    fn union<'a>(key: &[u8], parts: impl Iterator<Item = &'a Self>) -> Self {
        let mut by_type: Vec<(u16, Arc<super::Prepared>)> = Vec::new();
        for part in parts {
            for (rtype, prepared) in part.by_type.iter() {
                if !by_type.iter().any(|(t, _)| t == rtype) {
                    by_type.push((*rtype, prepared.clone()));
                }
            }
        }
        by_type.sort_by_key(|(rtype, _)| *rtype);
        Self::new(key.into(), by_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty(text: &str) -> Arc<NameAnswers> {
        Arc::new(NameAnswers::new(text.as_bytes().into(), Vec::new()))
    }

    #[test]
    fn contributions_are_counted_and_taken_back_one_by_one() {
        let mut index = NameIndex::with_capacity(10);
        let ent = "\x07service\x06consul\x00";
        let (a, b) = (empty(ent), empty(ent));
        index.add(&a);
        index.add(&b);
        assert_eq!(index.len(), 1);
        index.remove(&a);
        assert!(
            index.get(ent.as_bytes()).is_some(),
            "one contributor is left"
        );
        index.remove(&b);
        assert!(index.get(ent.as_bytes()).is_none());
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn a_derived_index_copies_only_what_it_changes() {
        let mut index = NameIndex::with_capacity(10_000);
        let names: Vec<Arc<NameAnswers>> = (0..10_000).map(|i| empty(&format!("{i}"))).collect();
        for answers in &names {
            index.add(answers);
        }
        let mut derived = index.clone();
        derived.remove(&names[0]);
        let shared = index
            .shards
            .iter()
            .zip(derived.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, index.shards.len() - 1);
        assert!(index.get(b"0").is_some());
        assert!(derived.get(b"0").is_none());
        assert!(!derived.is_out_of_shape());
    }
}
