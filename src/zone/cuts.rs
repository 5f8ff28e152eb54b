//! Where a prepared response can be cut to a client's size limit, worked out once when the
//! zone is built so that a cut costs a copy, like any prepared answer.
//!
//! The rule (docs/dns.md): the longest prefix of the answer records that fits, the additional
//! records whose owner one of the kept answers points at, no authority section, TC set. The
//! message with the first `k` answers is called cut `k` here; [`Cuts`] records its size for
//! every `k` and holds the pieces to assemble it with the bytes hickory's encoder would write:
//!
//! - The answers of cut `k` are a prefix of the prepared wire: the encoder compresses a name
//!   only against what precedes it, so a record's bytes do not depend on what follows it.
//! - An additional record is written in one of two ways: `packed` (its owner compressed, as in
//!   the smallest cut that keeps it) or `plain` (spelled out). hickory compresses at most
//!   [`COMPRESSED_NAME_LIMIT`] names per message, so in larger cuts the later additional
//!   records are spelled out. The cuts with fewer answers than that limit are encoded once
//!   each here to learn how many of their additional records are packed (an odd one is kept
//!   verbatim); from there on the question and the answers' owners alone reach the limit and
//!   every additional record is plain.

use hickory_proto::op::Query;
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use rustc_hash::FxHashMap;

#[cfg(test)]
use super::prepared::SMALLEST_BUDGET;
use super::prepared::{encode_sections, target_of, MAX_MESSAGE_LEN};

/// hickory-proto 0.26 compresses at most this many names per message (Unbound's limit after
/// CVE-2024-8508); later names are written in full. The question is one of them and every
/// answer's owner another, so from `COMPRESSED_NAME_LIMIT - 1` answers on nothing after the
/// answer section is compressed. The cut tests compare against hickory's own encoding, so a
/// change of this limit shows there.
const COMPRESSED_NAME_LIMIT: usize = 120;

/// The cuts of one prepared response.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cuts {
    /// Offset of the first answer record (just past the question) in the prepared wire.
    pub(super) question_end: u16,
    /// End offset in the prepared wire of each answer record.
    pub(super) answer_ends: Box<[u16]>,
    /// Length of cut `k` (no OPT record, the question as encoded); `u16::MAX` when over 64 KiB.
    pub(super) sizes: Box<[u16]>,
    /// The additional records some cut keeps, in the order of the additional section.
    pub(super) extras: Box<[Extra]>,
    /// True when `extras` are sorted by [`Extra::from`]: a cut keeps a prefix of them.
    pub(super) in_order: bool,
    /// For each `k` below its length: how many of the additional records of cut `k` are packed
    /// (the first ones; the others are plain).
    pub(super) packed: Box<[u16]>,
    /// Cuts whose additional section is not "packed, then plain": `(k, start, end)` in `arena`.
    pub(super) verbatim: Box<[(u16, u32, u32)]>,
    /// The encodings of the extras that the prepared wire does not hold as they are, and the
    /// verbatim sections (see [`IN_WIRE`]).
    pub(super) arena: Box<[u8]>,
}

/// Set in the start of an extra's encoding when it is the bytes at that offset (the flag
/// taken off) of the prepared wire rather than of the arena: the wire's own additional section
/// usually holds every extra as the cuts write it, so most cuts need no arena.
pub(super) const IN_WIRE: u32 = 1 << 31;

/// One additional record that a cut can keep.
#[derive(Clone, Debug)]
pub(super) struct Extra {
    /// The smallest number of answers that keeps it: one past its owner's first mention.
    pub(super) from: u16,
    /// Where its encodings are: (start in the arena or, with [`IN_WIRE`], the wire; length).
    pub(super) plain: (u32, u16),
    pub(super) packed: (u32, u16),
    /// Offset in the packed encoding of a compression pointer past the question, to move when
    /// the response is sent for an alias with a shorter question.
    pub(super) pointer: Option<u16>,
}

impl Cuts {
    /// Works out the cuts of the response to `owner`/`qtype` with `answers` and the candidate
    /// `additionals` (answers that would not fit into 64 KiB even alone get no cut). Returns
    /// them with the encoded header (ID 0), question and answers they refer to, which the
    /// prepared wire must begin with. `None` if an encoding fails.
    pub(crate) fn new(
        owner: &Name,
        qtype: RecordType,
        answers: &[Record],
        additionals: &[Record],
    ) -> Option<(Self, Vec<u8>)> {
        let (base, question_end, answer_ends) = answer_prefix(owner, qtype, answers)?;
        let answers = &answers[..answer_ends.len()];
        let mut cuts = Self {
            question_end: question_end as u16,
            answer_ends: answer_ends.into_boxed_slice(),
            ..Self::default()
        };
        let mut first_mention: FxHashMap<&Name, usize> = FxHashMap::default();
        for (index, answer) in answers.iter().enumerate() {
            if let Some(target) = target_of(answer) {
                first_mention.entry(target).or_insert(index);
            }
        }
        let mut arena = Vec::new();
        let mut extras = Vec::new();
        // Where each extra came from in `additionals`, for the exact encodings below.
        let mut sources = Vec::new();
        for (index, record) in additionals.iter().enumerate() {
            let Some(first) = first_mention.get(&record.name) else {
                continue;
            };
            let plain = push(&mut arena, &plain(record)?)?;
            extras.push(Extra {
                from: u16::try_from(first + 1).ok()?,
                plain,
                packed: plain,
                pointer: None,
            });
            sources.push(index);
        }
        cuts.in_order = extras.windows(2).all(|pair| pair[0].from <= pair[1].from);

        // Small cuts, encoded by hickory to learn which of their additional records are packed.
        let exact = (answers.len() + 1).min(COMPRESSED_NAME_LIMIT);
        let mut sizes = Vec::with_capacity(answers.len() + 1);
        let mut packed_counts = Vec::with_capacity(exact);
        let mut verbatim = Vec::new();
        for k in 0..exact {
            let answers_end = cuts.answer_end(k);
            let kept: Vec<usize> = (0..extras.len())
                .filter(|&i| usize::from(extras[i].from) <= k)
                .collect();
            if kept.is_empty() {
                sizes.push(answers_end);
                packed_counts.push(0);
                continue;
            }
            let records: Vec<Record> = kept
                .iter()
                .map(|&i| additionals[sources[i]].clone())
                .collect();
            let (message, ends) = encode_sections(owner, qtype, &answers[..k], &records).ok()?;
            if message.get(12..answers_end)? != base.get(12..answers_end)? {
                return None;
            }
            let mut start = answers_end;
            let mut section = Vec::with_capacity(kept.len());
            for (&i, &end) in kept.iter().zip(&ends[k..]) {
                let bytes = &message[start..end];
                // An extra's packed form is the one of the smallest cut that keeps it.
                if usize::from(extras[i].from) == k && bytes != slice(&[], &arena, extras[i].plain)
                {
                    extras[i].packed = push(&mut arena, bytes)?;
                }
                section.push(bytes);
                start = end;
            }
            let leading = kept
                .iter()
                .zip(&section)
                .take_while(|(&i, bytes)| **bytes == slice(&[], &arena, extras[i].packed))
                .count();
            let rest_plain = kept[leading..]
                .iter()
                .zip(&section[leading..])
                .all(|(&i, bytes)| *bytes == slice(&[], &arena, extras[i].plain));
            if !rest_plain {
                let (at, len) = push(&mut arena, &message[answers_end..])?;
                verbatim.push((k as u16, at, at + u32::from(len)));
            }
            packed_counts.push(leading as u16);
            sizes.push(message.len());
        }
        // Larger cuts: the answers, then every kept additional record plain.
        sizes.extend(cuts.plain_sizes(&extras, exact));
        for extra in &mut extras {
            if extra.packed != extra.plain {
                extra.pointer = owner_pointer(slice(&[], &arena, extra.packed))
                    .filter(|(_, target)| *target >= question_end)
                    .map(|(at, _)| at as u16);
            }
        }
        cuts.sizes = sizes
            .into_iter()
            .map(|size| u16::try_from(size).unwrap_or(u16::MAX))
            .collect();
        cuts.extras = extras.into_boxed_slice();
        cuts.packed = packed_counts.into_boxed_slice();
        cuts.verbatim = verbatim.into_boxed_slice();
        cuts.arena = arena.into_boxed_slice();
        Some((cuts, base))
    }

    /// The sizes of the cuts keeping `exact` answers and more, where every kept additional
    /// record is written plain after the answers.
    fn plain_sizes(&self, extras: &[Extra], exact: usize) -> Vec<usize> {
        let mut by_from: Vec<(usize, usize)> = extras
            .iter()
            .map(|extra| (usize::from(extra.from), usize::from(extra.plain.1)))
            .collect();
        by_from.sort_unstable();
        let mut sizes = Vec::new();
        let mut plain_total = 0;
        let mut next = 0;
        for k in 0..=self.answer_ends.len() {
            while next < by_from.len() && by_from[next].0 <= k {
                plain_total += by_from[next].1;
                next += 1;
            }
            if k >= exact {
                sizes.push(self.answer_end(k) + plain_total);
            }
        }
        sizes
    }

    /// Offset just past the last answer the cuts cover.
    pub(crate) fn answers_end(&self) -> usize {
        self.answer_end(self.answer_ends.len())
    }

    /// Number of answers the cuts cover.
    pub(crate) fn answer_count(&self) -> usize {
        self.answer_ends.len()
    }

    /// Keeps only the cuts of the first `answers` answers (the response kept no more).
    pub(crate) fn limit(&mut self, answers: usize) {
        if answers >= self.answer_ends.len() {
            return;
        }
        self.answer_ends = self.answer_ends[..answers].into();
        self.sizes = self.sizes[..=answers].into();
        self.packed = self.packed[..self.packed.len().min(answers + 1)].into();
        let extras: Vec<Extra> = self
            .extras
            .iter()
            .filter(|extra| usize::from(extra.from) <= answers)
            .cloned()
            .collect();
        self.extras = extras.into_boxed_slice();
        let verbatim: Vec<_> = self
            .verbatim
            .iter()
            .filter(|(k, _, _)| usize::from(*k) <= answers)
            .copied()
            .collect();
        self.verbatim = verbatim.into_boxed_slice();
    }

    /// Drops what `wire` (the prepared response these cuts belong to) makes redundant: the
    /// plain encodings no cut writes, and the arena's copies of records the wire holds.
    pub(crate) fn compact(&mut self, wire: &[u8]) {
        let plain_used = self.plain_used();
        // Where each additional record of the wire is, by its bytes.
        let mut in_wire: FxHashMap<&[u8], u32> = FxHashMap::default();
        let answers_end = usize::from(
            self.answer_ends
                .last()
                .copied()
                .unwrap_or(self.question_end),
        );
        let mut offset = answers_end;
        while let Some(end) = record_end(wire, offset) {
            in_wire.entry(&wire[offset..end]).or_insert(offset as u32);
            offset = end;
        }
        let old = std::mem::take(&mut self.arena);
        let mut arena = Vec::new();
        let mut place = |piece: (u32, u16)| -> (u32, u16) {
            let bytes = slice(wire, &old, piece);
            match in_wire.get(bytes) {
                Some(&at) => (IN_WIRE | at, piece.1),
                None => push(&mut arena, bytes).unwrap_or(piece),
            }
        };
        for (extra, plain_used) in self.extras.iter_mut().zip(plain_used) {
            extra.packed = place(extra.packed);
            extra.plain = if plain_used {
                place(extra.plain)
            } else {
                extra.packed
            };
        }
        for (_, start, end) in self.verbatim.iter_mut() {
            let at = arena.len() as u32;
            arena.extend_from_slice(&old[*start as usize..*end as usize]);
            (*start, *end) = (at, arena.len() as u32);
        }
        self.arena = arena.into_boxed_slice();
    }

    /// For each extra, whether some cut writes its plain encoding: the cuts past the packed
    /// table write every kept extra plain, the others those after their packed count.
    fn plain_used(&self) -> Vec<bool> {
        let mut used = vec![false; self.extras.len()];
        let all_plain_from = self.packed.len();
        for (extra, used) in self.extras.iter().zip(used.iter_mut()) {
            *used = usize::from(extra.from) < self.sizes.len()
                && usize::from(extra.from).max(all_plain_from) < self.sizes.len();
        }
        for (k, &packed) in self.packed.iter().enumerate() {
            if self.verbatim.iter().any(|&(at, _, _)| usize::from(at) == k) {
                continue;
            }
            let kept = self
                .extras
                .iter()
                .enumerate()
                .filter(|(_, extra)| usize::from(extra.from) <= k);
            for (i, _) in kept.skip(usize::from(packed)) {
                used[i] = true;
            }
        }
        used
    }

    /// Heap bytes these cuts point at (they are held inline in a response's `Rare`).
    pub(crate) fn heap_bytes(&self) -> usize {
        use super::footprint::boxed;
        boxed::<u16>(self.answer_ends.len())
            + boxed::<u16>(self.sizes.len())
            + boxed::<Extra>(self.extras.len())
            + boxed::<u16>(self.packed.len())
            + boxed::<(u16, u32, u32)>(self.verbatim.len())
            + boxed::<u8>(self.arena.len())
    }

    /// Length of cut `k`, `None` past the answers.
    pub(crate) fn size(&self, k: usize) -> Option<usize> {
        self.sizes.get(k).map(|&size| usize::from(size))
    }

    /// Number of answers of the cut that fits `budget`: the binary search of the encoder-driven
    /// cut this replaces, so the same answer for every budget.
    pub(crate) fn answers_for(&self, budget: usize) -> Option<usize> {
        let (mut low, mut high) = (0usize, self.answer_ends.len());
        let mut best = None;
        while low <= high {
            let keep = (low + high) / 2;
            match self.size(keep) {
                Some(size) if size <= budget && size <= MAX_MESSAGE_LEN => {
                    best = Some(keep);
                    low = keep + 1;
                }
                _ if keep == 0 => break,
                _ => high = keep - 1,
            }
        }
        best
    }

    /// True when an alias with a shorter question can be served from these cuts: every
    /// compression pointer of a packed record points at the question's start or past it.
    pub(crate) fn shareable(&self, wire: &[u8]) -> bool {
        self.verbatim.is_empty()
            && self.extras.iter().all(|extra| {
                extra.packed == extra.plain
                    || extra.pointer.is_some()
                    || owner_pointer(slice(wire, &self.arena, extra.packed))
                        .is_some_and(|(_, target)| target == 12)
            })
    }

    /// Appends the sections of cut `k` of `wire` to `out`, which holds a header and a question
    /// `shift` bytes longer than the encoded one (negative: shorter), and sets the counts.
    pub(crate) fn write(&self, wire: &[u8], k: usize, shift: isize, out: &mut Vec<u8>) {
        let question_end = usize::from(self.question_end);
        out.extend_from_slice(&wire[question_end..self.answer_end(k)]);
        let mut kept = 0usize;
        let verbatim = self
            .verbatim
            .iter()
            .find(|(at, _, _)| usize::from(*at) == k);
        let packed = self.packed.get(k).map_or(0, |&n| usize::from(n));
        for extra in self.extras.iter() {
            if usize::from(extra.from) > k {
                if self.in_order {
                    break;
                }
                continue;
            }
            if verbatim.is_none() {
                let form = if kept < packed {
                    extra.packed
                } else {
                    extra.plain
                };
                let at = out.len();
                out.extend_from_slice(slice(wire, &self.arena, form));
                if let (true, Some(pointer)) = (kept < packed && shift != 0, extra.pointer) {
                    let at = at + usize::from(pointer);
                    let value = u16::from_be_bytes([out[at], out[at + 1]]);
                    let target = ((value & 0x3FFF) as isize + shift) as u16;
                    out[at..at + 2].copy_from_slice(&(0xC000 | target).to_be_bytes());
                }
            }
            kept += 1;
        }
        if let Some(&(_, start, end)) = verbatim {
            out.extend_from_slice(&self.arena[start as usize..end as usize]);
        }
        out[6..8].copy_from_slice(&(k as u16).to_be_bytes());
        out[8..10].fill(0);
        out[10..12].copy_from_slice(&(kept as u16).to_be_bytes());
    }

    /// Offset just past the first `k` answers.
    fn answer_end(&self, k: usize) -> usize {
        match k {
            0 => usize::from(self.question_end),
            k => usize::from(self.answer_ends[k - 1]),
        }
    }
}

/// The bytes of an encoding in the arena, or in the wire (see [`IN_WIRE`]).
fn slice<'a>(wire: &'a [u8], arena: &'a [u8], (start, len): (u32, u16)) -> &'a [u8] {
    let (bytes, start) = if start & IN_WIRE != 0 {
        (wire, start & !IN_WIRE)
    } else {
        (arena, start)
    };
    &bytes[start as usize..][..usize::from(len)]
}

/// End of the resource record at `offset` of `wire` (owner name, fixed fields, data), or
/// `None` when no whole record starts there.
fn record_end(wire: &[u8], mut offset: usize) -> Option<usize> {
    loop {
        let byte = *wire.get(offset)?;
        if byte & 0xC0 == 0xC0 {
            offset += 2;
            break;
        }
        offset += usize::from(byte) + 1;
        if byte == 0 {
            break;
        }
    }
    let rdlength = u16::from_be_bytes([*wire.get(offset + 8)?, *wire.get(offset + 9)?]);
    let end = offset + 10 + usize::from(rdlength);
    (end <= wire.len()).then_some(end)
}

fn push(arena: &mut Vec<u8>, bytes: &[u8]) -> Option<(u32, u16)> {
    let at = u32::try_from(arena.len()).ok()?;
    arena.extend_from_slice(bytes);
    Some((at, u16::try_from(bytes.len()).ok()?))
}

/// Header (ID 0, counts left zero), question and as many of `answers` as fit into 64 KiB, with
/// the offset where the answers start and where each one ends.
fn answer_prefix(
    owner: &Name,
    qtype: RecordType,
    answers: &[Record],
) -> Option<(Vec<u8>, usize, Vec<u16>)> {
    let mut wire = Vec::with_capacity(64 + 32 * answers.len().min(4096));
    let mut ends = Vec::with_capacity(answers.len().min(4096));
    let mut encoder = BinEncoder::new(&mut wire);
    encoder.emit_vec(&[0; 12]).ok()?;
    Query::query(owner.clone(), qtype).emit(&mut encoder).ok()?;
    let question_end = encoder.offset();
    let mut good = question_end;
    for record in answers {
        if record.emit(&mut encoder).is_err() || encoder.offset() > MAX_MESSAGE_LEN {
            break;
        }
        good = encoder.offset();
        ends.push(good as u16);
    }
    #[cfg(test)]
    super::prepared::count_pass(ends.len());
    wire.truncate(good);
    Some((wire, question_end, ends))
}

/// A record with every name spelled out, as hickory writes it once the message has used up its
/// compressed names.
fn plain(record: &Record) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    record.emit(&mut encoder).ok()?;
    Some(buf)
}

/// The compression pointer ending the owner name of an encoded record: its offset in the
/// record and its target.
fn owner_pointer(record: &[u8]) -> Option<(usize, usize)> {
    let mut offset = 0;
    loop {
        let byte = *record.get(offset)?;
        if byte & 0xC0 == 0xC0 {
            let target = u16::from_be_bytes([byte, *record.get(offset + 1)?]) & 0x3FFF;
            return Some((offset, usize::from(target)));
        }
        if byte == 0 {
            return None;
        }
        offset += usize::from(byte) + 1;
    }
}

#[cfg(test)]
mod tests;
