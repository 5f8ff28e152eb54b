//! A binary encoding of [`Fragment`]s, so a built zone can be saved and served again without
//! encoding a single record (the zone cache, `snapshot/cache.rs`).
//!
//! A fragment is written as a table of its prepared responses, each once, then its names with
//! an index into that table per type: a response shared by several names (an alias) is shared
//! again when read back. Integers are little-endian; counts and lengths are LEB128.
//!
//! Reading checks every length, offset and count against the input and every decoded response
//! against the invariants answering relies on (offsets inside the message, cut pieces inside
//! their arena, owner names that are wire names), so no input, however damaged, makes the
//! decoder or a later answer panic: it is rejected with a [`DecodeError`].

use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::cuts::{Cuts, Extra, IN_WIRE};
use super::prepared::{ALIAS_SAFE, TRUNCATED};
use super::reverse::Pointer;
use super::{Fragment, NameAnswers, Prepared, PtrKind};

/// Why bytes could not be read as fragments.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("zone cache data is damaged: {0}")]
pub struct DecodeError(pub &'static str);

/// Appends the encoding of values to a buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    /// The bytes written so far.
    pub out: Vec<u8>,
}

impl Encoder {
    /// A non-negative integer in LEB128.
    pub fn uint(&mut self, mut value: u64) {
        loop {
            let byte = (value & 0x7F) as u8;
            value >>= 7;
            if value == 0 {
                self.out.push(byte);
                return;
            }
            self.out.push(byte | 0x80);
        }
    }

    fn u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    /// A length, then the bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.uint(bytes.len() as u64);
        self.out.extend_from_slice(bytes);
    }

    fn u16s(&mut self, values: &[u16]) {
        self.uint(values.len() as u64);
        for &value in values {
            self.u16(value);
        }
    }

    /// One fragment: its prepared responses once each, then its names.
    pub fn fragment(&mut self, fragment: &Fragment) {
        self.uint(fragment.record_count as u64);
        let mut table: FxHashMap<*const Prepared, usize> = FxHashMap::default();
        let mut order: Vec<&Prepared> = Vec::new();
        for answers in &fragment.names {
            for (_, prepared) in answers.by_type.iter() {
                table.entry(Arc::as_ptr(prepared)).or_insert_with(|| {
                    order.push(prepared);
                    order.len() - 1
                });
            }
        }
        self.uint(order.len() as u64);
        for prepared in order {
            self.prepared(prepared);
        }
        self.uint(fragment.names.len() as u64);
        for answers in &fragment.names {
            self.bytes(answers.key());
            self.uint(answers.by_type.len() as u64);
            for (rtype, prepared) in answers.by_type.iter() {
                self.u16(*rtype);
                self.uint(table[&Arc::as_ptr(prepared)] as u64);
            }
        }
        self.uint(fragment.pointers.len() as u64);
        for pointer in fragment.pointers.iter() {
            match pointer.address {
                IpAddr::V4(v4) => self.bytes(&v4.octets()),
                IpAddr::V6(v6) => self.bytes(&v6.octets()),
            }
            self.out.push(pointer.kind as u8);
            self.u32(pointer.ttl);
            self.bytes(&pointer.target);
        }
    }

    fn prepared(&mut self, prepared: &Prepared) {
        self.bytes(&prepared.wire);
        self.u16(prepared.answers_start);
        self.u16(prepared.answers_end);
        self.u16(prepared.answer_count);
        self.out.push(prepared.uniform_answer_len);
        // The bit 1 << 1 says cuts follow; the others are the response's own flags.
        self.out
            .push(prepared.flags | (u8::from(prepared.cuts().is_some()) << 1));
        self.u16s(prepared.relocations());
        if let Some(cuts) = prepared.cuts() {
            self.cuts(cuts);
        }
    }

    fn cuts(&mut self, cuts: &Cuts) {
        self.u16(cuts.question_end);
        self.u16s(&cuts.answer_ends);
        self.u16s(&cuts.sizes);
        self.uint(cuts.extras.len() as u64);
        for extra in cuts.extras.iter() {
            self.u16(extra.from);
            self.u32(extra.plain.0);
            self.u16(extra.plain.1);
            self.u32(extra.packed.0);
            self.u16(extra.packed.1);
            match extra.pointer {
                Some(pointer) => {
                    self.out.push(1);
                    self.u16(pointer);
                }
                None => self.out.push(0),
            }
        }
        self.out.push(u8::from(cuts.in_order));
        self.u16s(&cuts.packed);
        self.uint(cuts.verbatim.len() as u64);
        for &(k, start, end) in cuts.verbatim.iter() {
            self.u16(k);
            self.u32(start);
            self.u32(end);
        }
        self.bytes(&cuts.arena);
    }
}

/// Reads values from a byte slice; every read is bounds-checked.
#[derive(Debug)]
pub struct Decoder<'a> {
    input: &'a [u8],
}

type Result<T> = std::result::Result<T, DecodeError>;

impl<'a> Decoder<'a> {
    /// A decoder over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { input }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.input.len()
    }

    /// `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.input.len() {
            return Err(DecodeError("truncated"));
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }

    /// A LEB128 integer of at most 64 bits.
    pub fn uint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            let bits = u64::from(byte & 0x7F);
            if shift == 63 && bits > 1 {
                return Err(DecodeError("integer too large"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("integer too long"))
    }

    /// A count of items of at least `min_size` bytes each: never more than the input holds.
    pub fn count(&mut self, min_size: usize) -> Result<usize> {
        let count = self.uint()?;
        usize::try_from(count)
            .ok()
            .filter(|&count| count.saturating_mul(min_size.max(1)) <= self.remaining())
            .ok_or(DecodeError("count past the end"))
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let bytes = self.take(2)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A length, then that many bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.count(1)?;
        self.take(len)
    }

    fn u16s(&mut self) -> Result<Box<[u16]>> {
        let count = self.count(2)?;
        (0..count).map(|_| self.u16()).collect()
    }

    /// One fragment, as [`Encoder::fragment`] wrote it.
    pub fn fragment(&mut self) -> Result<Fragment> {
        let record_count =
            usize::try_from(self.uint()?).map_err(|_| DecodeError("record count"))?;
        let count = self.count(10)?;
        let table: Vec<Arc<Prepared>> = (0..count)
            .map(|_| self.prepared().map(Arc::new))
            .collect::<Result<_>>()?;
        let count = self.count(3)?;
        let mut names = Vec::with_capacity(count);
        for _ in 0..count {
            let key = self.bytes()?;
            if !is_wire_name(key) {
                return Err(DecodeError("owner is not a wire name"));
            }
            let types = self.count(3)?;
            let mut by_type = Vec::with_capacity(types);
            for _ in 0..types {
                let rtype = self.u16()?;
                let at = usize::try_from(self.uint()?).unwrap_or(usize::MAX);
                let prepared = table.get(at).ok_or(DecodeError("answer index"))?;
                by_type.push((rtype, prepared.clone()));
            }
            names.push(Arc::new(NameAnswers::with_key(key, by_type)));
        }
        let count = self.count(8)?;
        let mut pointers = Vec::with_capacity(count);
        // Equal targets share one allocation, as the build made them.
        let mut targets: FxHashSet<Arc<[u8]>> = FxHashSet::default();
        for _ in 0..count {
            let address = match self.bytes()? {
                &[a, b, c, d] => IpAddr::from([a, b, c, d]),
                octets => match <[u8; 16]>::try_from(octets) {
                    Ok(octets) => IpAddr::from(octets),
                    Err(_) => return Err(DecodeError("pointer address")),
                },
            };
            let kind = match self.u8()? {
                0 => PtrKind::Node,
                1 => PtrKind::Service,
                _ => return Err(DecodeError("pointer kind")),
            };
            let ttl = self.u32()?;
            let target = self.bytes()?;
            if !is_wire_name(target) {
                return Err(DecodeError("pointer is not a wire name"));
            }
            let target = match targets.get(target) {
                Some(shared) => shared.clone(),
                None => {
                    let shared: Arc<[u8]> = target.into();
                    targets.insert(shared.clone());
                    shared
                }
            };
            pointers.push(Pointer {
                address,
                kind,
                target,
                ttl,
            });
        }
        // The index takes contributions back by content: they must be as the build made them.
        if !pointers.is_sorted() {
            return Err(DecodeError("pointers out of order"));
        }
        Ok(Fragment {
            names: names.into_boxed_slice(),
            pointers: pointers.into_boxed_slice(),
            record_count,
        })
    }

    fn prepared(&mut self) -> Result<Prepared> {
        let wire: Box<[u8]> = self.bytes()?.into();
        let answers_start = self.u16()?;
        let answers_end = self.u16()?;
        let answer_count = self.u16()?;
        let uniform_answer_len = self.u8()?;
        let flags = self.u8()?;
        let relocations = self.u16s()?;
        let cuts = if flags & 2 != 0 {
            Some(self.cuts()?)
        } else {
            None
        };
        let mut prepared = Prepared {
            wire,
            answers_start,
            answers_end,
            answer_count,
            uniform_answer_len,
            flags: flags & (TRUNCATED | ALIAS_SAFE),
            rare: None,
        };
        prepared.set_rare(relocations, cuts);
        check_prepared(&prepared)?;
        Ok(prepared)
    }

    fn cuts(&mut self) -> Result<Cuts> {
        let question_end = self.u16()?;
        let answer_ends = self.u16s()?;
        let sizes = self.u16s()?;
        let count = self.count(15)?;
        let extras = (0..count)
            .map(|_| {
                Ok(Extra {
                    from: self.u16()?,
                    plain: (self.u32()?, self.u16()?),
                    packed: (self.u32()?, self.u16()?),
                    pointer: match self.u8()? {
                        0 => None,
                        1 => Some(self.u16()?),
                        _ => return Err(DecodeError("pointer flag")),
                    },
                })
            })
            .collect::<Result<_>>()?;
        let in_order = self.u8()? != 0;
        let packed = self.u16s()?;
        let count = self.count(10)?;
        let verbatim = (0..count)
            .map(|_| Ok((self.u16()?, self.u32()?, self.u32()?)))
            .collect::<Result<_>>()?;
        let arena = self.bytes()?.into();
        Ok(Cuts {
            question_end,
            answer_ends,
            sizes,
            extras,
            in_order,
            packed,
            verbatim,
            arena,
        })
    }
}

/// True when `key` is an uncompressed wire name: labels of 1 to 63 bytes, the root label last,
/// 255 bytes at most.
fn is_wire_name(key: &[u8]) -> bool {
    if key.len() > 255 {
        return false;
    }
    let mut offset = 0;
    while let Some(&len) = key.get(offset) {
        if len == 0 {
            return offset + 1 == key.len();
        }
        if len > 63 {
            return false;
        }
        offset += usize::from(len) + 1;
    }
    false
}

/// What answering a query with `prepared` assumes of it (see `dns/respond.rs`).
fn check_prepared(prepared: &Prepared) -> Result<()> {
    let len = prepared.wire.len();
    let (start, end) = (
        usize::from(prepared.answers_start),
        usize::from(prepared.answers_end),
    );
    if !(12 <= start && start <= end && end <= len) {
        return Err(DecodeError("answer section outside the message"));
    }
    let unit = usize::from(prepared.uniform_answer_len);
    if unit > 0 && unit * usize::from(prepared.answer_count) != end - start {
        return Err(DecodeError("answer records of another size"));
    }
    if prepared
        .relocations()
        .iter()
        .any(|&at| usize::from(at) < start || usize::from(at) + 2 > len)
    {
        return Err(DecodeError("relocation outside the message"));
    }
    match prepared.cuts() {
        Some(cuts) => check_cuts(cuts, start, len),
        None => Ok(()),
    }
}

/// What [`Cuts::write`] and [`Cuts::answers_for`] assume of `cuts` for a message of `len`
/// bytes whose question ends at `question_end`.
fn check_cuts(cuts: &Cuts, question_end: usize, len: usize) -> Result<()> {
    let len_of_wire = len;
    if usize::from(cuts.question_end) != question_end {
        return Err(DecodeError("cuts of another question"));
    }
    let mut previous = question_end;
    for &end in cuts.answer_ends.iter() {
        let end = usize::from(end);
        if end < previous || end > len {
            return Err(DecodeError("cut answer outside the message"));
        }
        previous = end;
    }
    if cuts.sizes.len() != cuts.answer_ends.len() + 1
        || cuts.packed.len() > cuts.answer_ends.len() + 1
    {
        return Err(DecodeError("cut tables of the wrong length"));
    }
    let arena = cuts.arena.len();
    let inside = |(start, len): (u32, u16)| {
        let (start, limit) = if start & IN_WIRE != 0 {
            (start & !IN_WIRE, len_of_wire)
        } else {
            (start, arena)
        };
        (start as usize)
            .checked_add(usize::from(len))
            .is_some_and(|end| end <= limit)
    };
    for extra in cuts.extras.iter() {
        let fits = inside(extra.plain)
            && inside(extra.packed)
            && extra
                .pointer
                .is_none_or(|at| usize::from(at) + 2 <= usize::from(extra.packed.1));
        if !fits {
            return Err(DecodeError("cut record outside its arena or message"));
        }
    }
    if cuts
        .verbatim
        .iter()
        .any(|&(_, start, end)| start > end || end as usize > arena)
    {
        return Err(DecodeError("cut section outside its arena"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
