//! One response encoded once, ready to be copied and patched per query.
//!
//! The bytes are a whole DNS message built by hickory-proto: a header with ID 0, the question
//! in lower case, and the answer, authority and additional sections with names compressed
//! against the question. Per query only the ID, a few flag bits and the question's case change,
//! and the question has the same length as the one encoded here, so every compression pointer
//! stays valid.

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::ProtoError;

/// The largest DNS message: the TCP length prefix is 16 bits.
pub const MAX_MESSAGE_LEN: usize = 65_535;

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
            let kept_additionals = if keep == answers.len() {
                additionals.to_vec()
            } else {
                additionals_for(kept, additionals)
            };
            let message = response(&owner, qtype, kept, authorities, &kept_additionals, false);
            let wire = match message.to_vec() {
                Ok(wire) if wire.len() <= MAX_MESSAGE_LEN => wire,
                Ok(_) | Err(_) if keep > 1 => {
                    keep = keep * 3 / 4;
                    continue;
                }
                Ok(_) => return Err(ProtoError::from("a single record exceeds 64 KiB")),
                Err(error) => return Err(error),
            };
            let answers_start = 12 + encoded_name_len(&owner) + 4;
            let answers_end = answers_start + answers_len(&owner, qtype, kept)?;
            let uniform_answer_len = uniform_len(kept, answers_end - answers_start);
            let mut prepared = Self {
                wire: wire.into_boxed_slice(),
                answers_start: answers_start as u16,
                answers_end: answers_end as u16,
                answer_count: keep as u16,
                uniform_answer_len,
                truncated: keep < answers.len(),
            };
            if prepared.truncated {
                prepared.wire[2] |= 0x02;
            }
            return Ok(prepared);
        }
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

/// Builds the response message for a query; the ID and per-query flags are patched later.
pub(crate) fn response(
    owner: &Name,
    qtype: RecordType,
    answers: &[Record],
    authorities: &[Record],
    additionals: &[Record],
    truncated: bool,
) -> Message {
    let mut message = Message::new(0, MessageType::Response, OpCode::Query);
    message.metadata.authoritative = true;
    message.metadata.truncation = truncated;
    message.metadata.response_code = ResponseCode::NoError;
    message.add_query(Query::query(owner.clone(), qtype));
    message.add_answers(answers.iter().cloned());
    message.add_authorities(authorities.iter().cloned());
    message.add_additionals(additionals.iter().cloned());
    message
}

/// The additional records that belong to the given answers: those whose owner is a name the
/// answers point at (SRV targets, CNAME targets, NS and MX hosts).
pub(crate) fn additionals_for(answers: &[Record], additionals: &[Record]) -> Vec<Record> {
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

/// Wire length of an uncompressed name.
pub(crate) fn encoded_name_len(name: &Name) -> usize {
    if name.is_root() {
        1
    } else {
        name.len() + 1
    }
}

/// Length of the answer section alone, measured by encoding the message without the other
/// sections (compression of answers only depends on what precedes them).
fn answers_len(owner: &Name, qtype: RecordType, answers: &[Record]) -> Result<usize, ProtoError> {
    let question_only = response(owner, qtype, &[], &[], &[], false).to_vec()?;
    let with_answers = response(owner, qtype, answers, &[], &[], false).to_vec()?;
    Ok(with_answers.len() - question_only.len())
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
