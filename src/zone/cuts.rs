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
    question_end: u16,
    /// End offset in the prepared wire of each answer record.
    answer_ends: Box<[u16]>,
    /// Length of cut `k` (no OPT record, the question as encoded); `u16::MAX` when over 64 KiB.
    sizes: Box<[u16]>,
    /// The additional records some cut keeps, in the order of the additional section.
    extras: Box<[Extra]>,
    /// True when `extras` are sorted by [`Extra::from`]: a cut keeps a prefix of them.
    in_order: bool,
    /// For each `k` below its length: how many of the additional records of cut `k` are packed
    /// (the first ones; the others are plain).
    packed: Box<[u16]>,
    /// Cuts whose additional section is not "packed, then plain": `(k, start, end)` in `arena`.
    verbatim: Box<[(u16, u32, u32)]>,
    /// Both encodings of every extra, and the verbatim sections.
    arena: Box<[u8]>,
}

/// One additional record that a cut can keep.
#[derive(Clone, Debug)]
struct Extra {
    /// The smallest number of answers that keeps it: one past its owner's first mention.
    from: u16,
    /// Where its encodings are in the arena: (start, length).
    plain: (u32, u16),
    packed: (u32, u16),
    /// Offset in the packed encoding of a compression pointer past the question, to move when
    /// the response is sent for an alias with a shorter question.
    pointer: Option<u16>,
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
                if usize::from(extras[i].from) == k && bytes != slice(&arena, extras[i].plain) {
                    extras[i].packed = push(&mut arena, bytes)?;
                }
                section.push(bytes);
                start = end;
            }
            let leading = kept
                .iter()
                .zip(&section)
                .take_while(|(&i, bytes)| **bytes == slice(&arena, extras[i].packed))
                .count();
            let rest_plain = kept[leading..]
                .iter()
                .zip(&section[leading..])
                .all(|(&i, bytes)| *bytes == slice(&arena, extras[i].plain));
            if !rest_plain {
                let (at, len) = push(&mut arena, &message[answers_end..])?;
                verbatim.push((k as u16, at, at + u32::from(len)));
            }
            packed_counts.push(leading as u16);
            sizes.push(message.len());
        }
        // Larger cuts: the answers, then every kept additional record plain.
        let mut by_from: Vec<(usize, usize)> = extras
            .iter()
            .map(|extra| (usize::from(extra.from), usize::from(extra.plain.1)))
            .collect();
        by_from.sort_unstable();
        let mut plain_total = 0;
        let mut next = 0;
        for k in 0..=answers.len() {
            while next < by_from.len() && by_from[next].0 <= k {
                plain_total += by_from[next].1;
                next += 1;
            }
            if k >= exact {
                sizes.push(cuts.answer_end(k) + plain_total);
            }
        }
        for extra in &mut extras {
            if extra.packed != extra.plain {
                extra.pointer = owner_pointer(slice(&arena, extra.packed))
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
    pub(crate) fn shareable(&self) -> bool {
        self.verbatim.is_empty()
            && self.extras.iter().all(|extra| {
                extra.packed == extra.plain
                    || extra.pointer.is_some()
                    || owner_pointer(slice(&self.arena, extra.packed))
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
                out.extend_from_slice(slice(&self.arena, form));
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

fn slice(arena: &[u8], (start, len): (u32, u16)) -> &[u8] {
    &arena[start as usize..][..usize::from(len)]
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
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::op::Message;
    use hickory_proto::rr::rdata::{A, AAAA, SRV};
    use hickory_proto::rr::RData;

    use super::*;
    use crate::zone::prepared::encoded_so_far;
    use crate::zone::Prepared;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn srv(owner: &Name, target: &Name, port: u16) -> Record {
        Record::from_rdata(
            owner.clone(),
            0,
            RData::SRV(SRV::new(1, 1, port, target.clone())),
        )
    }

    fn a(owner: &Name, i: usize) -> Record {
        let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
        Record::from_rdata(owner.clone(), 0, RData::A(A(ip)))
    }

    fn aaaa(owner: &Name, i: usize) -> Record {
        let ip = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (i >> 16) as u16, i as u16);
        Record::from_rdata(owner.clone(), 0, RData::AAAA(AAAA(ip)))
    }

    const OWNER: &str = "_web._tcp.service.dc1.consul.";

    /// An SRV answer of `count` instances the way the registry zone builds one: node-named
    /// and address-named targets, each with its address in the additional section.
    fn service(count: usize) -> (Vec<Record>, Vec<Record>) {
        let owner = name(OWNER);
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        for i in 0..count {
            let target = if i % 3 == 0 {
                name(&format!("{:08x}.addr.dc1.consul.", 0x0a00_0000 + i))
            } else {
                name(&format!("node-{i}.node.dc1.consul."))
            };
            answers.push(srv(&owner, &target, 8000 + i as u16));
            additionals.push(a(&target, i));
        }
        (answers, additionals)
    }

    /// Harder shapes: two addresses per target, additionals out of answer order, targets
    /// mentioned twice, targets without an address, and an additional nothing points at.
    fn odd_service(count: usize) -> (Vec<Record>, Vec<Record>) {
        let owner = name(OWNER);
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        for i in 0..count {
            let target = name(&format!("host-{}.example.com.", i % (count / 2 + 1)));
            answers.push(srv(&owner, &target, 9000 + i as u16));
            if i % 5 != 4 {
                additionals.push(aaaa(&target, i));
                additionals.push(a(&target, i));
            }
        }
        additionals.reverse();
        additionals.push(a(&name("unrelated.example.com."), 1));
        (answers, additionals)
    }

    /// The old per-query cut: decode the prepared response, encode prefixes.
    fn reference(prepared: &Prepared, budget: usize) -> Option<Vec<u8>> {
        let full = Message::from_vec(prepared.wire()).unwrap();
        let owner = full.queries[0].name().clone();
        let qtype = full.queries[0].query_type();
        Prepared::longest_prefix(&owner, qtype, &full.answers, &full.additionals, budget)
            .map(|cut| cut.wire().to_vec())
    }

    fn cut(prepared: &Prepared, budget: usize, question: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        prepared
            .write_cut(budget, question, &mut out)
            .then_some(out)
    }

    fn check(prepared: &Prepared, budgets: impl IntoIterator<Item = usize>, label: &str) {
        let question = prepared.wire()[12..prepared.question_end()].to_vec();
        for budget in budgets {
            let expected = reference(prepared, budget);
            let actual = cut(prepared, budget, &question);
            assert_eq!(actual, expected, "{label}: cut at {budget} bytes");
        }
    }

    /// Budgets either side of every cut size up to `up_to`, where an off-by-one would show.
    fn boundaries(prepared: &Prepared, up_to: usize) -> Vec<usize> {
        let cuts = prepared.cuts().unwrap();
        (0..=cuts.answer_count())
            .filter_map(|k| cuts.size(k))
            .filter(|size| *size <= up_to)
            .flat_map(|size| [size - 1, size, size + 1])
            .filter(|budget| *budget >= SMALLEST_BUDGET)
            .collect()
    }

    #[test]
    fn every_size_is_cut_as_the_encoder_cut_it() {
        let owner = name(OWNER);
        for count in [8, 60] {
            let (answers, additionals) = service(count);
            let prepared =
                Prepared::encode(&owner, RecordType::SRV, &answers, &[], &additionals).unwrap();
            check(
                &prepared,
                (SMALLEST_BUDGET..=4096).chain([65_535]),
                &format!("{count} instances"),
            );
        }
        // Past hickory's 120 compressed names: every cut size, and budgets in between.
        let (answers, additionals) = service(130);
        let prepared =
            Prepared::encode(&owner, RecordType::SRV, &answers, &[], &additionals).unwrap();
        let mut budgets = boundaries(&prepared, 65_535);
        budgets.extend((SMALLEST_BUDGET..=4096).step_by(13).chain([65_535]));
        check(&prepared, budgets, "130 instances");
        let (answers, additionals) = odd_service(70);
        let prepared =
            Prepared::encode(&owner, RecordType::SRV, &answers, &[], &additionals).unwrap();
        check(
            &prepared,
            (SMALLEST_BUDGET..=4096).chain([65_535]),
            "odd shapes",
        );
    }

    #[test]
    fn large_answers_are_cut_as_the_encoder_cut_them() {
        let owner = name(OWNER);
        // 500 SRV records with addresses (about 30 KiB), 900 (over 64 KiB: trimmed when
        // built), and 3,000 addresses.
        for count in [500, 900] {
            let (answers, additionals) = service(count);
            let prepared =
                Prepared::encode(&owner, RecordType::SRV, &answers, &[], &additionals).unwrap();
            let mut budgets = boundaries(&prepared, 8192);
            budgets.extend((SMALLEST_BUDGET..=4096).step_by(97));
            budgets.extend([16_384, 32_768, 65_524, 65_535]);
            check(&prepared, budgets, &format!("{count} instances"));
        }
        let addresses: Vec<Record> = (0..3000).map(|i| a(&owner, i)).collect();
        let prepared = Prepared::encode(&owner, RecordType::A, &addresses, &[], &[]).unwrap();
        let mut budgets = boundaries(&prepared, 4096);
        budgets.extend([600, 1000, 1400, 4096, 65_535]);
        check(&prepared, budgets, "3000 addresses");
    }

    #[test]
    fn an_alias_gets_the_encoded_cut_with_its_own_question() {
        let (answers, additionals) = service(60);
        let prepared =
            Prepared::encode_shared(&name(OWNER), RecordType::SRV, &answers, &additionals)
                .expect("shareable");
        let mut question = b"\x03WEB\x07service\x06consul\x00".to_vec();
        question.extend_from_slice(&[0, 33, 0, 1]);
        let canonical = prepared.wire()[12..prepared.question_end()].to_vec();
        for budget in SMALLEST_BUDGET..=4096 {
            let Some(reply) = cut(&prepared, budget, &question) else {
                panic!("no cut at {budget}");
            };
            let ours = Message::from_vec(&reply).unwrap();
            let room = budget + canonical.len() - question.len();
            let expected = Message::from_vec(&cut(&prepared, room, &canonical).unwrap()).unwrap();
            assert!(reply.len() <= budget);
            assert!(ours.metadata.truncation);
            assert_eq!(ours.queries[0].name().to_string(), "WEB.service.consul.");
            let data = |m: &Message| m.answers.iter().map(|r| r.data.clone()).collect::<Vec<_>>();
            assert_eq!(data(&ours), data(&expected), "answers at {budget}");
            assert_eq!(
                ours.additionals, expected.additionals,
                "additionals at {budget}"
            );
        }
    }

    #[test]
    fn cutting_encodes_nothing() {
        let (answers, additionals) = service(500);
        let prepared =
            Prepared::encode(&name(OWNER), RecordType::SRV, &answers, &[], &additionals).unwrap();
        let question = prepared.wire()[12..prepared.question_end()].to_vec();
        let before = encoded_so_far();
        let mut out = Vec::new();
        for budget in [600, 1000, 1400, 4096, 65_524] {
            assert!(prepared.write_cut(budget, &question, &mut out));
            assert!(out.len() <= budget && out[2] & 0x02 != 0);
        }
        assert_eq!(encoded_so_far(), before, "no message encoded per cut");
    }

    #[test]
    fn a_huge_answer_is_trimmed_by_the_quarter_rule_in_bounded_work() {
        let owner = name(OWNER);
        let mut work = Vec::new();
        for count in [20_000, 40_000] {
            let (answers, additionals) = service(count);
            let before = encoded_so_far();
            let prepared =
                Prepared::encode(&owner, RecordType::SRV, &answers, &[], &additionals).unwrap();
            let after = encoded_so_far();
            work.push(after.1 - before.1);
            // The rule of before: a quarter fewer answers at a time until the message fits.
            let mut keep = count;
            let expected = loop {
                keep = keep * 3 / 4;
                // Each answer here has its own address record, in the same order.
                if let Ok((wire, _)) = encode_sections(
                    &owner,
                    RecordType::SRV,
                    &answers[..keep],
                    &additionals[..keep],
                ) {
                    break wire;
                }
            };
            assert_eq!(prepared.answer_count(), keep, "{count} instances");
            assert!(prepared.is_truncated());
            assert!(prepared.wire().len() <= MAX_MESSAGE_LEN);
            let cuts = prepared.cuts().expect("cuts of the kept answers");
            assert_eq!(cuts.answer_count(), keep);
            assert_eq!(prepared.wire(), &expected[..], "{count} instances");
        }
        // Encoding work depends on what fits into 64 KiB, not on the number of instances.
        assert!(
            work[1] <= work[0] + work[0] / 10,
            "records encoded for 20,000 and 40,000 instances: {work:?}"
        );
    }
}
