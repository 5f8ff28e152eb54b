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

/// The largest DNS message: the TCP length prefix is 16 bits.
pub const MAX_MESSAGE_LEN: usize = 65_535;

/// Size budgets for which a truncated encoding is prepared alongside the full one: UDP without
/// EDNS (512), EDNS clients advertising 512 (HAProxy's default; 512 minus our 11-byte OPT
/// record) and the default `--max-udp-size` 1232 (minus OPT). Other budgets are cut per query.
pub const PREPARED_BUDGETS: [usize; 3] = [512, 501, 1221];

/// A response for one (name, type), encoded when the zone was built.
#[derive(Clone, Debug)]
pub struct Prepared {
    wire: Box<[u8]>,
    answers_start: u16,
    answers_end: u16,
    answer_count: u16,
    /// Length of every answer record when they all have the same type and size and can be
    /// permuted in place (A and AAAA with the owner compressed to the question); 0 otherwise.
    uniform_answer_len: u8,
    /// True when the records did not all fit even into a 64 KiB message at build time.
    truncated: bool,
    /// Offsets of compression pointers that point past the question, to move when the response
    /// is sent for an alias with a shorter question.
    relocations: Box<[u16]>,
    /// Truncated encodings (TC set, longest prefix of the answers that fits) for the
    /// [`PREPARED_BUDGETS`] this response exceeds.
    variants: Box<[(u16, Self)]>,
}

impl Prepared {
    /// Encodes the response for `owner`/`qtype` with the given sections.
    ///
    /// When the records do not fit into [`MAX_MESSAGE_LEN`], the answers are cut to the longest
    /// prefix that fits (additionals follow the kept answers) and the response is marked
    /// truncated, so even TCP clients learn the answer is incomplete.
    pub fn encode(
        owner: &Name,
        qtype: RecordType,
        answers: &[Record],
        authorities: &[Record],
        additionals: &[Record],
    ) -> Result<Self, ProtoError> {
        let owner = owner.to_lowercase();
        let mut keep = answers.len();
        loop {
            let kept = &answers[..keep];
            let cut = keep < answers.len();
            let kept_additionals;
            let extra = if cut {
                kept_additionals = additionals_for(kept, additionals);
                kept_additionals.as_slice()
            } else {
                additionals
            };
            match Self::emit(&owner, qtype, kept, authorities, extra, cut) {
                Ok(mut prepared) => {
                    let variants: Vec<(u16, Self)> = PREPARED_BUDGETS
                        .iter()
                        .filter(|budget| prepared.wire.len() > **budget)
                        .filter_map(|budget| {
                            let variant =
                                Self::longest_prefix(&owner, qtype, kept, extra, *budget)?;
                            Some((*budget as u16, variant))
                        })
                        .collect();
                    prepared.variants = variants.into_boxed_slice();
                    return Ok(prepared);
                }
                // Over 64 KiB: keep fewer answers.
                Err(_) if keep > 1 => keep = keep * 3 / 4,
                Err(error) => return Err(error),
            }
        }
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
        let mut wire = Vec::with_capacity(64 + 32 * (answers.len() + additionals.len()));
        let mut encoder = BinEncoder::new(&mut wire);
        let place = encoder.place::<Header>()?;
        Query::query(owner.clone(), qtype).emit(&mut encoder)?;
        let answers_start = encoder.offset();
        for record in answers {
            record.emit(&mut encoder)?;
        }
        let answers_end = encoder.offset();
        for record in authorities.iter().chain(additionals) {
            record.emit(&mut encoder)?;
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
        let uniform_answer_len = uniform_len(answers, answers_end - answers_start);
        Ok(Self {
            wire: wire.into_boxed_slice(),
            answers_start: answers_start as u16,
            answers_end: answers_end as u16,
            answer_count: answers.len() as u16,
            uniform_answer_len,
            truncated,
            relocations: Box::new([]),
            variants: Box::new([]),
        })
    }

    /// The response cut to `budget` bytes: the longest prefix of `answers` that fits with the
    /// additional records that belong to it, TC set. The same rule as the per-query cut.
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

    /// The prepared truncated encoding for exactly this budget, if there is one.
    pub fn variant(&self, budget: usize) -> Option<&Self> {
        self.variants
            .iter()
            .find(|(b, _)| usize::from(*b) == budget)
            .map(|(_, variant)| variant)
    }

    /// Encodes one response to be shared by several owners with the same records. `owner` must
    /// be the longest of them (relocation only ever moves pointers backwards), and every answer
    /// record must be owned by it. Returns `None` when the encoding cannot be shared: a
    /// compression pointer into the middle of the question (which an alias does not have), or
    /// answers with names in their data that may point anywhere (CNAME).
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
        let mut prepared = Self::encode(owner, qtype, answers, &[], additionals).ok()?;
        prepared.relocations = relocations(
            &prepared.wire,
            prepared.question_end(),
            prepared.answers_end as usize,
        )?;
        for (_, variant) in prepared.variants.iter_mut() {
            variant.relocations = relocations(
                &variant.wire,
                variant.question_end(),
                variant.answers_end as usize,
            )?;
        }
        Some(prepared)
    }

    /// Offset just past the question (header, name, type and class).
    pub fn question_end(&self) -> usize {
        self.answers_start as usize
    }

    /// Offsets of the compression pointers to move for a shorter question (see the module doc).
    pub fn relocations(&self) -> &[u16] {
        &self.relocations
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
        self.truncated
    }
}

/// The additional records that belong to the given answers: those whose owner is a name the
/// answers point at (SRV targets, CNAME targets, NS and MX hosts).
fn additionals_for(answers: &[Record], additionals: &[Record]) -> Vec<Record> {
    let targets: Vec<Name> = answers.iter().filter_map(target_of).collect();
    additionals
        .iter()
        .filter(|extra| targets.contains(&extra.name))
        .cloned()
        .collect()
}

fn target_of(record: &Record) -> Option<Name> {
    use hickory_proto::rr::RData;
    match &record.data {
        RData::SRV(srv) => Some(srv.target.clone()),
        RData::CNAME(cname) => Some(cname.0.clone()),
        RData::NS(ns) => Some(ns.0.clone()),
        RData::MX(mx) => Some(mx.exchange.clone()),
        _ => None,
    }
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
