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

use rustc_hash::{FxBuildHasher, FxHashMap};

use super::NameAnswers;

/// Names per shard aimed at when a zone is sized; it is re-sized when it drifts 4x either way.
const SHARD_TARGET: usize = 128;

/// One shard: names whose hash picks it.
type Shard = FxHashMap<Arc<[u8]>, Slot>;

/// What the index holds for one name.
#[derive(Clone, Debug)]
enum Slot {
    /// One contribution (the usual case).
    One(Arc<NameAnswers>),
    /// Several contributions, or one given several times.
    Many(Box<Contributions>),
}

/// The distinct contributions to one name, each with how many contributors gave it, and
/// what lookups see: their union by type.
#[derive(Clone, Debug)]
struct Contributions {
    merged: Arc<NameAnswers>,
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

impl NameIndex {
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
            for (key, slot) in shard.iter() {
                let at = index.shard_of(key);
                Arc::make_mut(&mut index.shards[at]).insert(key.clone(), slot.clone());
            }
        }
        index.len = self.len;
        index
    }

    /// Number of names.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        // The shard map hashes the same key with the same hasher and uses the top and low
        // bits of the hash: the shard is picked with bits from the middle, so the keys of one
        // shard still spread over its table.
        let hash = FxBuildHasher.hash_one(key);
        ((hash >> 24) as usize) & (self.shards.len() - 1)
    }

    /// The answers for `key`.
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<&NameAnswers> {
        match self.shards[self.shard_of(key)].get(key)? {
            Slot::One(answers) => Some(answers),
            Slot::Many(many) => Some(&many.merged),
        }
    }

    /// Every name and what lookups see for it, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &NameAnswers)> + '_ {
        self.shards.iter().flat_map(|shard| {
            shard.iter().map(|(key, slot)| {
                let answers: &NameAnswers = match slot {
                    Slot::One(answers) => answers,
                    Slot::Many(many) => &many.merged,
                };
                (key.as_ref(), answers)
            })
        })
    }

    /// Adds one contribution of `answers` to `key`.
    pub(crate) fn add(&mut self, key: &Arc<[u8]>, answers: &Arc<NameAnswers>) {
        let shard = self.shard_of(key);
        let shard = Arc::make_mut(&mut self.shards[shard]);
        match shard.get_mut(key.as_ref()) {
            None => {
                shard.insert(key.clone(), Slot::One(answers.clone()));
                self.len += 1;
            }
            Some(slot) => {
                let mut versions = match slot {
                    Slot::One(existing) => vec![(existing.clone(), 1)],
                    Slot::Many(many) => std::mem::take(&mut many.versions),
                };
                match versions.iter_mut().find(|(v, _)| same(v, answers)) {
                    Some((_, count)) => *count += 1,
                    None => {
                        versions.push((answers.clone(), 1));
                        versions.sort_by(|(a, _), (b, _)| a.content_cmp(b));
                    }
                }
                *slot = Slot::Many(Box::new(Contributions::new(versions)));
            }
        }
    }

    /// Takes back one contribution of `answers` (as given to [`Self::add`]) from `key`.
    pub(crate) fn remove(&mut self, key: &[u8], answers: &Arc<NameAnswers>) {
        let shard = self.shard_of(key);
        let shard = Arc::make_mut(&mut self.shards[shard]);
        let Some(slot) = shard.get_mut(key) else {
            debug_assert!(false, "removing a name that is not indexed");
            return;
        };
        let remaining = match slot {
            Slot::One(_) => None,
            Slot::Many(many) => {
                let mut versions = std::mem::take(&mut many.versions);
                if let Some(at) = versions.iter().position(|(v, _)| same(v, answers)) {
                    versions[at].1 -= 1;
                    if versions[at].1 == 0 {
                        versions.remove(at);
                    }
                }
                Some(versions)
            }
        };
        match remaining {
            None => {
                shard.remove(key);
                self.len -= 1;
            }
            Some(versions) if versions.is_empty() => {
                shard.remove(key);
                self.len -= 1;
            }
            Some(mut versions) if versions.len() == 1 && versions[0].1 == 1 => {
                let (only, _) = versions.pop().expect("one version");
                *slot = Slot::One(only);
            }
            Some(versions) => *slot = Slot::Many(Box::new(Contributions::new(versions))),
        }
    }
}

impl Contributions {
    fn new(versions: Vec<(Arc<NameAnswers>, u32)>) -> Self {
        let merged = match versions.as_slice() {
            [(only, _)] => only.clone(),
            _ => Arc::new(NameAnswers::union(versions.iter().map(|(v, _)| v.as_ref()))),
        };
        Self { merged, versions }
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
    fn union<'a>(parts: impl Iterator<Item = &'a Self>) -> Self {
        let mut by_type: Vec<(u16, Arc<super::Prepared>)> = Vec::new();
        for part in parts {
            for (rtype, prepared) in part.by_type.iter() {
                if !by_type.iter().any(|(t, _)| t == rtype) {
                    by_type.push((*rtype, prepared.clone()));
                }
            }
        }
        by_type.sort_by_key(|(rtype, _)| *rtype);
        Self {
            by_type: by_type.into_boxed_slice(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Arc<NameAnswers> {
        Arc::new(NameAnswers::default())
    }

    fn key(text: &str) -> Arc<[u8]> {
        Arc::from(text.as_bytes())
    }

    #[test]
    fn contributions_are_counted_and_taken_back_one_by_one() {
        let mut index = NameIndex::with_capacity(10);
        let ent = key("\x07service\x06consul\x00");
        let (a, b) = (empty(), empty());
        index.add(&ent, &a);
        index.add(&ent, &b);
        assert_eq!(index.len(), 1);
        index.remove(&ent, &a);
        assert!(index.get(&ent).is_some(), "one contributor is left");
        index.remove(&ent, &b);
        assert!(index.get(&ent).is_none());
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn a_derived_index_copies_only_what_it_changes() {
        let mut index = NameIndex::with_capacity(10_000);
        let answers = empty();
        let keys: Vec<Arc<[u8]>> = (0..10_000).map(|i| key(&format!("{i}"))).collect();
        for k in &keys {
            index.add(k, &answers);
        }
        let mut derived = index.clone();
        derived.remove(&keys[0], &answers);
        let shared = index
            .shards
            .iter()
            .zip(derived.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, index.shards.len() - 1);
        assert!(index.get(&keys[0]).is_some());
        assert!(derived.get(&keys[0]).is_none());
        assert!(!derived.is_out_of_shape());
    }
}
