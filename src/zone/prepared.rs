//! One response encoded once, ready to be copied and patched per query.
//!
//! The bytes are a whole DNS message built by hickory-proto: a header with ID 0, the question
//! in lower case, and the answer, authority and additional sections with names compressed
//! against the question. Per query the ID, a few flag bits and the question change.
//!
//! One prepared response can serve several owner names with the same records (an alias such as
//! `web.service.consul` and `web.service.dc1.consul`): the answers' owners are a pointer to the
//! question (offset 12) whatever its name, and the other compression pointers point into the
//! sections after the question, so when a shorter question is written in front of them they
//! only need to move by the difference in length. [`Prepared::relocations`] lists where those
//! pointers are; it is empty when the response is not shared.

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_proto::ProtoError;
use rustc_hash::FxHashSet;

use super::cuts::Cuts;

/// The largest DNS message: the TCP length prefix is 16 bits.
pub const MAX_MESSAGE_LEN: usize = 65_535;

/// The smallest budget a response is ever cut to: a UDP client's 512 bytes minus our 11-byte
/// OPT record. Responses up to this size always fit and get no [`Cuts`].
pub(super) const SMALLEST_BUDGET: usize = 512 - 11;

/// [`Prepared::flags`]: the records did not all fit even into a 64 KiB message at build time.
pub(super) const TRUNCATED: u8 = 1;
/// [`Prepared::flags`]: every compression pointer points at the question's start or is listed
/// in the relocations, so the response may be sent for any other question.
pub(super) const ALIAS_SAFE: u8 = 4;

/// A response for one (name, type), encoded when the zone was built.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub(super) wire: Box<[u8]>,
    pub(super) answers_start: u16,
    pub(super) answers_end: u16,
    pub(super) answer_count: u16,
    /// Length of every answer record when they all have the same type and size and can be
    /// permuted in place (A and AAAA with the owner compressed to the question); 0 otherwise.
    pub(super) uniform_answer_len: u8,
    /// [`TRUNCATED`] and [`ALIAS_SAFE`]; one byte for both, since the struct is held once
    /// per answer (a second `bool` would grow it by 8 bytes).
    pub(super) flags: u8,
    /// Relocations and cuts, which few responses have: behind one pointer, so that the
    /// header held once per answer is 32 bytes; `None` when it has neither.
    pub(super) rare: Option<Box<Rare>>,
}

/// What a response may have besides its bytes.
#[derive(Clone, Debug, Default)]
pub(super) struct Rare {
    /// Offsets of compression pointers that point past the question, to move when the
    /// response is sent for an alias with a shorter question.
    pub(super) relocations: Box<[u16]>,
    /// Where to cut the response for a client whose limit it exceeds (see [`Cuts`]); `None`
    /// when it fits every limit.
    pub(super) cuts: Option<Cuts>,
}

impl Prepared {
    /// Encodes the response for `owner`/`qtype` with the given sections.
    ///
    /// When the records do not fit into [`MAX_MESSAGE_LEN`], the answers are cut to a prefix
    /// that fits (a quarter fewer at a time; additionals follow the kept answers) and the
    /// response is marked truncated, so even TCP clients learn the answer is incomplete.
    pub fn encode(
        owner: &Name,
        qtype: RecordType,
        answers: &[Record],
        authorities: &[Record],
        additionals: &[Record],
    ) -> Result<Self, ProtoError> {
        let owner = owner.to_lowercase();
        let (mut prepared, cuts) =
            match Self::emit(&owner, qtype, answers, authorities, additionals, false) {
                Ok(prepared) => {
                    let cuts = (prepared.wire.len() > SMALLEST_BUDGET)
                        .then(|| Cuts::new(&owner, qtype, answers, additionals))
                        .flatten();
                    (prepared, cuts)
                }
                Err(error) if answers.len() <= 1 => return Err(error),
                Err(error) => Self::trim(&owner, qtype, answers, authorities, additionals, error)?,
            };
        if let Some((cuts, base)) = cuts {
            // The cuts copy the answers from the wire: they must be the ones measured.
            let same = prepared.wire.get(12..base.len()) == base.get(12..)
                && cuts.answer_count() == prepared.answer_count();
            if same {
                let mut cuts = cuts;
                cuts.compact(&prepared.wire);
                // Relocations come later, for a shared response (`encode_shared`).
                prepared.set_rare(Box::new([]), Some(cuts));
            }
        }
        Ok(prepared)
    }

    /// The records are over 64 KiB: the first of `answers.len()` times 3/4, 9/16, ... answers
    /// that fits. The sizes of every prefix are measured once, so only the one that fits is
    /// encoded (each encoding of a large answer costs as much as the measuring).
    #[allow(clippy::type_complexity)]
    fn trim(
        owner: &Name,
        qtype: RecordType,
        answers: &[Record],
        authorities: &[Record],
        additionals: &[Record],
        mut error: ProtoError,
    ) -> Result<(Self, Option<(Cuts, Vec<u8>)>), ProtoError> {
        // The cuts leave out the authority section, so they only measure responses without one.
        let measured = if authorities.is_empty() {
            Cuts::new(owner, qtype, answers, additionals)
        } else {
            None
        };
        let mut keep = answers.len();
        while keep > 1 {
            keep = keep * 3 / 4;
            if let Some((cuts, _)) = &measured {
                if cuts.size(keep).is_none_or(|size| size > MAX_MESSAGE_LEN) {
                    continue;
                }
            }
            let kept = &answers[..keep];
            let extra = additionals_for(kept, additionals);
            match Self::emit(owner, qtype, kept, authorities, &extra, true) {
                Ok(prepared) => {
                    let cuts = measured.map(|(mut cuts, mut base)| {
                        cuts.limit(keep);
                        base.truncate(cuts.answers_end());
                        (cuts, base)
                    });
                    return Ok((prepared, cuts));
                }
                Err(failed) => error = failed,
            }
        }
        Err(error)
    }

    /// One pass of hickory's encoder, noting where the answer section starts and ends.
    fn emit(
        owner: &Name,
        qtype: RecordType,
        answers: &[Record],
        authorities: &[Record],
        additionals: &[Record],
        truncated: bool,
    ) -> Result<Self, ProtoError> {
        let (wire, answers_start, ends) =
            encode_message(owner, qtype, answers, authorities, additionals, truncated)?;
        let answers_end = ends.get(answers.len().wrapping_sub(1)).copied();
        let answers_end = answers_end.unwrap_or(answers_start);
        let uniform_answer_len = uniform_len(answers, answers_end - answers_start);
        Ok(Self {
            wire: wire.into_boxed_slice(),
            answers_start: answers_start as u16,
            answers_end: answers_end as u16,
            answer_count: answers.len() as u16,
            uniform_answer_len,
            flags: if truncated { TRUNCATED } else { 0 },
            rare: None,
        })
    }

    /// The response cut to `budget` bytes by encoding: the longest prefix of `answers` that
    /// fits with the additional records that belong to it, TC set. What [`Cuts`] replaced,
    /// kept as the tests' reference.
    #[cfg(test)]
    pub(crate) fn longest_prefix(
        owner: &Name,
        qtype: RecordType,
        answers: &[Record],
        additionals: &[Record],
        budget: usize,
    ) -> Option<Self> {
        let (mut low, mut high) = (0usize, answers.len());
        let mut best = None;
        while low <= high {
            let keep = (low + high) / 2;
            let kept = &answers[..keep];
            let extra = additionals_for(kept, additionals);
            match Self::emit(owner, qtype, kept, &[], &extra, true) {
                Ok(prepared) if prepared.wire.len() <= budget => {
                    best = Some(prepared);
                    low = keep + 1;
                }
                _ if keep == 0 => break,
                _ => high = keep - 1,
            }
        }
        best
    }

    /// Writes into `out` (cleared first) the response cut to `budget` bytes for a client
    /// whose question is `question` (the encoded one or an alias's, possibly shorter): the
    /// longest prefix of the answers that fits, with the additional records that belong to it,
    /// TC set, ID 0. Copies bytes prepared when the zone was built; nothing is encoded.
    /// False when there is nothing to cut (the response fits every limit).
    pub fn write_cut(&self, budget: usize, question: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        let Some(cuts) = self.cuts() else {
            return false;
        };
        // An alias's shorter question leaves room for more: the cut is the one that fits with
        // the question the client sent, as when cuts were encoded per query.
        let shift = (12 + question.len()) as isize - self.question_end() as isize;
        let Some(keep) = cuts.answers_for(budget.saturating_add_signed(-shift)) else {
            return false;
        };
        out.extend_from_slice(&self.wire[..12]);
        out.extend_from_slice(question);
        cuts.write(&self.wire, keep, shift, out);
        out[2] |= 0x02;
        true
    }

    /// Encodes one response to be shared by several owners with the same records. `owner` must
    /// be the longest of them (relocation only ever moves pointers backwards), and every answer
    /// record must be owned by it. Returns `None` when the encoding cannot be shared: a
    /// compression pointer into the middle of the question (which an alias does not have), or
    /// records with names in their data that may point anywhere (CNAME answers, additional
    /// records other than A/AAAA).
    pub fn encode_shared(
        owner: &Name,
        qtype: RecordType,
        answers: &[Record],
        additionals: &[Record],
    ) -> Option<Self> {
        if answers.iter().any(|r| {
            !matches!(
                r.record_type(),
                RecordType::A | RecordType::AAAA | RecordType::SRV
            )
        }) {
            return None;
        }
        // Only owner names of additional records are relocated: none may hold a name in its
        // data (a CNAME followed for an SRV target inside the domain).
        if additionals
            .iter()
            .any(|r| !matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        {
            return None;
        }
        let mut prepared = Self::encode(owner, qtype, answers, &[], additionals).ok()?;
        let relocations = relocations(
            &prepared.wire,
            prepared.question_end(),
            prepared.answers_end as usize,
        )?;
        if prepared
            .cuts()
            .is_some_and(|cuts| !cuts.shareable(&prepared.wire))
        {
            return None;
        }
        let cuts = prepared.rare.take().and_then(|rare| rare.cuts);
        prepared.set_rare(relocations, cuts);
        prepared.flags |= ALIAS_SAFE;
        Some(prepared)
    }

    /// Where the response is cut for small clients.
    pub(crate) fn cuts(&self) -> Option<&Cuts> {
        self.rare.as_deref().and_then(|rare| rare.cuts.as_ref())
    }

    /// Sets the relocations and cuts, allocating only when there is one of them.
    pub(super) fn set_rare(&mut self, relocations: Box<[u16]>, cuts: Option<Cuts>) {
        self.rare = (!relocations.is_empty() || cuts.is_some())
            .then(|| Box::new(Rare { relocations, cuts }));
    }

    /// Offset just past the question (header, name, type and class).
    pub fn question_end(&self) -> usize {
        self.answers_start as usize
    }

    /// Offsets of the compression pointers to move for a shorter question (see the module doc).
    pub fn relocations(&self) -> &[u16] {
        self.rare.as_deref().map_or(&[], |rare| &rare.relocations)
    }

    /// True when the response can be sent, pointers moved, for a question `shift` bytes
    /// longer (negative: shorter) than the encoded one: it was encoded to be shared, and no
    /// moved pointer would leave the 14-bit range.
    pub fn fits_alias(&self, shift: isize) -> bool {
        self.flags & ALIAS_SAFE != 0
            && (shift <= 0 || self.wire.len() + shift.unsigned_abs() <= 0x3FFF)
    }

    /// The same response re-encoded for the question `question` (wire format, as the client
    /// sent it): answers owned by the encoded question are owned by the new one, the rest is
    /// kept. For the rare names answered under another name whose response was not encoded to
    /// be shared ([`Self::fits_alias`]); this allocates.
    pub fn renamed(&self, question: &[u8]) -> Option<Self> {
        use hickory_proto::op::Message;
        use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
        let client = Query::read(&mut BinDecoder::new(question)).ok()?;
        let message = Message::from_vec(&self.wire).ok()?;
        let encoded = message.queries.first()?;
        let (old_owner, qtype) = (encoded.name().clone(), encoded.query_type());
        let owner = client.name().to_lowercase();
        let answers: Vec<Record> = message
            .answers
            .iter()
            .map(|record| {
                let mut record = record.clone();
                if record.name == old_owner {
                    record.name = owner.clone();
                }
                record
            })
            .collect();
        Self::encode(
            &owner,
            qtype,
            &answers,
            &message.authorities,
            &message.additionals,
        )
        .ok()
    }

    /// The encoded message (ID 0, lower-case question, no OPT record).
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// Byte range of the answer section within [`Self::wire`].
    pub fn answer_range(&self) -> std::ops::Range<usize> {
        self.answers_start as usize..self.answers_end as usize
    }

    /// Number of answer records.
    pub fn answer_count(&self) -> usize {
        self.answer_count as usize
    }

    /// Size of each answer record when the answers may be reordered in place, else `None`.
    pub fn shuffle_unit(&self) -> Option<usize> {
        (self.uniform_answer_len > 0 && self.answer_count > 1)
            .then_some(self.uniform_answer_len as usize)
    }

    /// True when the records did not fit into 64 KiB when the zone was built.
    pub fn is_truncated(&self) -> bool {
        self.flags & TRUNCATED != 0
    }
}

/// The additional records that belong to the given answers: those whose owner is a name the
/// answers point at (SRV targets, CNAME targets, NS and MX hosts).
fn additionals_for(answers: &[Record], additionals: &[Record]) -> Vec<Record> {
    let targets: FxHashSet<&Name> = answers.iter().filter_map(target_of).collect();
    additionals
        .iter()
        .filter(|extra| targets.contains(&extra.name))
        .cloned()
        .collect()
}

/// The name an answer record points at, whose addresses go in the additional section.
pub(super) fn target_of(record: &Record) -> Option<&Name> {
    use hickory_proto::rr::RData;
    match &record.data {
        RData::SRV(srv) => Some(&srv.target),
        RData::CNAME(cname) => Some(&cname.0),
        RData::NS(ns) => Some(&ns.0),
        RData::MX(mx) => Some(&mx.exchange),
        _ => None,
    }
}

/// Encodes a response: header (ID 0, AA, NOERROR), the question, then the sections. Returns
/// the message, where the answers start and where each record ends, in section order.
fn encode_message(
    owner: &Name,
    qtype: RecordType,
    answers: &[Record],
    authorities: &[Record],
    additionals: &[Record],
    truncated: bool,
) -> Result<(Vec<u8>, usize, Vec<usize>), ProtoError> {
    let records = answers.len() + authorities.len() + additionals.len();
    #[cfg(test)]
    count_pass(0);
    let mut wire = Vec::with_capacity(64 + 32 * records.min(4096));
    let mut ends = Vec::with_capacity(records);
    let mut encoder = BinEncoder::new(&mut wire);
    let place = encoder.place::<Header>()?;
    Query::query(owner.clone(), qtype).emit(&mut encoder)?;
    let answers_start = encoder.offset();
    for record in answers.iter().chain(authorities).chain(additionals) {
        record.emit(&mut encoder)?;
        ends.push(encoder.offset());
        #[cfg(test)]
        count_records(1);
    }
    let count = |n: usize| u16::try_from(n).map_err(|_| ProtoError::from("too many records"));
    let mut metadata = Metadata::new(0, MessageType::Response, OpCode::Query);
    metadata.authoritative = true;
    metadata.truncation = truncated;
    metadata.response_code = ResponseCode::NoError;
    let header = Header {
        metadata,
        counts: HeaderCounts {
            queries: 1,
            answers: count(answers.len())?,
            authorities: count(authorities.len())?,
            additionals: count(additionals.len())?,
        },
    };
    place.replace(&mut encoder, header)?;
    if wire.len() > MAX_MESSAGE_LEN {
        return Err(ProtoError::from("message over 64 KiB"));
    }
    Ok((wire, answers_start, ends))
}

/// A truncated response with `answers` and `additionals` (no authority section), as a cut is
/// encoded, with where each record ends.
pub(super) fn encode_sections(
    owner: &Name,
    qtype: RecordType,
    answers: &[Record],
    additionals: &[Record],
) -> Result<(Vec<u8>, Vec<usize>), ProtoError> {
    encode_message(owner, qtype, answers, &[], additionals, true)
        .map(|(wire, _, ends)| (wire, ends))
}

#[cfg(test)]
thread_local! {
    /// Messages encoded and records in them, on this thread: the tests count work with it.
    static ENCODED: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// Counts one encoding pass that wrote `records` records.
#[cfg(test)]
pub(super) fn count_pass(records: usize) {
    ENCODED.with(|cell| {
        let (passes, total) = cell.get();
        cell.set((passes + 1, total + records));
    });
}

/// Counts records written by the pass under way.
#[cfg(test)]
fn count_records(records: usize) {
    ENCODED.with(|cell| {
        let (passes, total) = cell.get();
        cell.set((passes, total + records));
    });
}

/// Messages encoded and records encoded in them on this thread so far.
#[cfg(test)]
pub(crate) fn encoded_so_far() -> (usize, usize) {
    ENCODED.with(std::cell::Cell::get)
}

/// Finds the compression pointers in the additional section of a shared response (the answer
/// records are A/AAAA/SRV: their owners point at offset 12 and their data holds no pointer).
/// Only owner names of additional records are walked: label by label to the first pointer.
/// `None` when a pointer lands inside the question other than at its start.
fn relocations(wire: &[u8], question_end: usize, answers_end: usize) -> Option<Box<[u16]>> {
    let additionals = u16::from_be_bytes([wire[10], wire[11]]);
    let mut found = Vec::new();
    let mut offset = answers_end;
    for _ in 0..additionals {
        // Owner name: labels until the root label or a pointer.
        loop {
            let byte = *wire.get(offset)?;
            if byte & 0xC0 == 0xC0 {
                let target =
                    usize::from(u16::from_be_bytes([byte, *wire.get(offset + 1)?]) & 0x3FFF);
                if target >= question_end {
                    found.push(offset as u16);
                } else if target != 12 {
                    return None;
                }
                offset += 2;
                break;
            }
            offset += usize::from(byte) + 1;
            if byte == 0 {
                break;
            }
        }
        // Type, class, TTL, then RDATA of RDLENGTH bytes.
        let rdlength = usize::from(u16::from_be_bytes([
            *wire.get(offset + 8)?,
            *wire.get(offset + 9)?,
        ]));
        offset += 10 + rdlength;
    }
    Some(found.into_boxed_slice())
}

/// Per-record length when all answers are A (16 bytes) or all AAAA (28 bytes) with the owner
/// compressed to a 2-byte pointer, which is the case when the owner is the question.
fn uniform_len(answers: &[Record], section_len: usize) -> u8 {
    let Some(first) = answers.first() else {
        return 0;
    };
    let unit = match first.record_type() {
        RecordType::A => 16,
        RecordType::AAAA => 28,
        _ => return 0,
    };
    let same_type = answers
        .iter()
        .all(|r| r.record_type() == first.record_type());
    if same_type && section_len == unit * answers.len() {
        unit as u8
    } else {
        0
    }
}
