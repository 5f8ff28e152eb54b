//! Where a zone's heap bytes go, counted by walking its structures: what
//! `benches/footprint.rs` prints so a change in layout shows up as a number.
//!
//! Sizes are what each allocation asks for rounded up to mimalloc's size classes (the
//! binary's allocator), so the totals come close to resident memory without a counting
//! allocator (which would need `unsafe`).

use std::sync::Arc;

use rustc_hash::FxHashSet;

use super::{Prepared, Zone};

/// Heap bytes of one zone by structure, and how many of each there are.
#[derive(Clone, Debug, Default)]
pub struct Footprint {
    /// Owner names.
    pub names: usize,
    /// The index: hash tables (buckets and control bytes) and their shard list.
    pub index_bytes: usize,
    /// The names' keys and per-name answer lists (types and pointers to responses).
    pub name_bytes: usize,
    /// Distinct prepared responses.
    pub responses: usize,
    /// Their headers (the `Prepared` values with their reference counts).
    pub header_bytes: usize,
    /// Their encoded messages.
    pub wire_bytes: usize,
    /// Their relocation lists.
    pub relocation_bytes: usize,
    /// Responses with cuts, and the cuts' bytes.
    pub cut_responses: usize,
    /// Bytes of the cuts (sizes, answer ends, extras and their encodings).
    pub cut_bytes: usize,
    /// The fragments' own lists of their names (filled in by whoever holds the fragments).
    pub fragment_bytes: usize,
    /// Reverse names (PTR) answered.
    pub pointers: usize,
    /// The reverse index: hash tables and their shard list.
    pub pointer_index_bytes: usize,
    /// The reverse names' slots: keys and counted contributions with their targets.
    pub pointer_slot_bytes: usize,
    /// The reverse names' prepared answers: headers and wire.
    pub pointer_answer_bytes: usize,
    /// The fragments' lists of the reverse names they give (filled in by whoever holds the
    /// fragments), with what those lists own alone.
    pub fragment_pointer_bytes: usize,
}

impl Footprint {
    /// Every byte counted.
    pub fn total(&self) -> usize {
        self.index_bytes
            + self.name_bytes
            + self.header_bytes
            + self.wire_bytes
            + self.relocation_bytes
            + self.cut_bytes
            + self.fragment_bytes
            + self.pointer_index_bytes
            + self.pointer_slot_bytes
            + self.pointer_answer_bytes
            + self.fragment_pointer_bytes
    }
}

/// Bytes mimalloc hands out for a request of `size` bytes: exact 8-byte steps up to 64
/// bytes, then four size classes per power of two.
pub(crate) fn allocated(size: usize) -> usize {
    if size == 0 {
        return 0;
    }
    let words = size.div_ceil(8);
    if words <= 8 {
        return words * 8;
    }
    let top = usize::BITS - 1 - (words - 1).leading_zeros();
    let step = 1usize << (top - 2);
    words.div_ceil(step) * step * 8
}

/// Bytes of a hashbrown table with room for `capacity` buckets of `bucket` bytes: a power
/// of two of buckets at most 7/8 full, a control byte each, and a group of spare ones.
pub(crate) fn table(capacity: usize, bucket: usize) -> usize {
    let buckets = match capacity {
        0 => return 0,
        c if c < 4 => 4,
        c if c < 8 => 8,
        c => (c * 8 / 7).next_power_of_two(),
    };
    allocated(buckets * (bucket + 1) + 16)
}

/// Bytes of a boxed slice of `len` items of `T`.
pub(crate) fn boxed<T>(len: usize) -> usize {
    allocated(len * std::mem::size_of::<T>())
}

impl Zone {
    /// Heap bytes of this zone by structure (the fragments it was assembled from share them).
    pub fn footprint(&self) -> Footprint {
        let mut footprint = Footprint {
            names: self.names.len(),
            ..Footprint::default()
        };
        let (index, names) = self.names.heap_bytes();
        footprint.index_bytes = index;
        footprint.name_bytes = names;
        let mut seen: FxHashSet<*const Prepared> = FxHashSet::default();
        for (_, by_type) in self.names() {
            for (_, prepared) in by_type {
                if seen.insert(Arc::as_ptr(prepared)) {
                    prepared.count_into(&mut footprint);
                }
            }
        }
        self.reverse.count_into(&mut footprint);
        footprint
    }
}

impl Prepared {
    /// Heap bytes of this response: its header (with the `Arc`'s counts when `shared`), wire,
    /// relocations and cuts.
    pub(crate) fn heap_bytes(&self, shared: bool) -> usize {
        let header = if shared {
            allocated(16 + std::mem::size_of::<Self>())
        } else {
            0
        };
        header + boxed::<u8>(self.wire.len()) + self.rare_bytes()
    }

    /// Heap bytes of the relocations and cuts, with the box holding them.
    fn rare_bytes(&self) -> usize {
        self.rare.as_deref().map_or(0, |rare| {
            allocated(std::mem::size_of_val(rare))
                + boxed::<u16>(rare.relocations.len())
                + rare.cuts.as_ref().map_or(0, |cuts| cuts.heap_bytes())
        })
    }

    fn count_into(&self, footprint: &mut Footprint) {
        footprint.responses += 1;
        footprint.header_bytes += allocated(16 + std::mem::size_of::<Self>());
        footprint.wire_bytes += boxed::<u8>(self.wire.len());
        // The box is counted with the cuts when there are some, else with the relocations.
        if self.cuts().is_some() {
            footprint.cut_responses += 1;
            footprint.cut_bytes += self.rare_bytes() - boxed::<u16>(self.relocations().len());
            footprint.relocation_bytes += boxed::<u16>(self.relocations().len());
        } else {
            footprint.relocation_bytes += self.rare_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::allocated;

    #[test]
    fn size_classes_round_up() {
        assert_eq!(allocated(0), 0);
        assert_eq!(allocated(1), 8);
        assert_eq!(allocated(64), 64);
        assert_eq!(allocated(65), 80);
        assert_eq!(allocated(100), 112);
        assert_eq!(allocated(1000), 1024);
    }
}
