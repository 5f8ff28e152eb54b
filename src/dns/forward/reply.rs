//! A forwarded answer as the client sees it: its ID, its question as sent, its flags, our
//! OPT record, and a size that fits its transport.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::HINFO;
use hickory_proto::rr::{RData, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};
use std::time::Instant;
use tracing::debug;

use super::cache::{Cached, Sections};
use crate::dns::flags;
use crate::dns::query::{EdnsInfo, ParsedQuery};

/// TTL of the synthesized RFC 8482 answer to ANY: an hour, so stubs do not come back soon.
const ANY_TTL: u32 = 3600;

/// What a client asked and how it wants the answer framed.
#[derive(Debug)]
pub(super) struct Client<'q> {
    id: u16,
    recursion_desired: bool,
    checking_disabled: bool,
    /// The client set DO or AD, so it understands AD in the answer (RFC 6840 §5.8).
    wants_authentic_data: bool,
    edns: Option<EdnsInfo>,
    /// The question decoded, with the client's case.
    pub(super) query: Query,
    /// The question bytes exactly as sent, for the fallback encoder.
    question: &'q [u8],
    max_udp_size: u16,
}

impl<'q> Client<'q> {
    /// The client of a parsed query; `None` if the question does not decode again.
    pub(super) fn new(parsed: &ParsedQuery<'q>, message: &[u8], max_udp_size: u16) -> Option<Self> {
        let query = Query::read(&mut BinDecoder::new(parsed.question)).ok()?;
        let authentic_data = message.get(3).is_some_and(|flags| flags & flags::AD != 0);
        let dnssec_ok = parsed.edns.is_some_and(|edns| edns.dnssec_ok);
        Some(Self {
            id: parsed.id,
            recursion_desired: parsed.recursion_desired,
            checking_disabled: parsed.checking_disabled,
            wants_authentic_data: authentic_data || dnssec_ok,
            edns: parsed.edns,
            query,
            question: parsed.question,
            max_udp_size,
        })
    }

    /// DO as sent.
    pub(super) fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|edns| edns.dnssec_ok)
    }

    /// CD as sent.
    pub(super) fn checking_disabled(&self) -> bool {
        self.checking_disabled
    }

    /// A cached answer at `now`, cut to `limit` bytes: in the upstream's own encoding when it
    /// was kept ([`Wire`]), else re-encoded by [`Self::answer`].
    pub(super) fn answer_cached(&self, cached: &Cached, now: Instant, limit: usize) -> Vec<u8> {
        if let Some(bytes) = self.answer_wire(cached, now, limit) {
            return bytes;
        }
        let sections = cached.sections_at(now);
        self.answer(cached.rcode, cached.authentic_data, sections, limit)
    }

    /// The upstream's records behind our header, question (the client's case) and OPT: with
    /// the additional section, or without it (no TC needed, RFC 2181 §9). `None` when there is
    /// no kept encoding or neither fits.
    fn answer_wire(&self, cached: &Cached, now: Instant, limit: usize) -> Option<Vec<u8>> {
        let wire = cached.wire.as_ref()?;
        if wire.question_len() != self.question.len() {
            return None;
        }
        let opt = self.opt_record();
        let [answers, authorities, additionals] = wire.counts();
        for with_additionals in [true, false] {
            let mut out = Vec::with_capacity(limit.min(4096));
            out.extend_from_slice(&self.id.to_be_bytes());
            out.extend_from_slice(&self.flags(cached.rcode, cached.authentic_data));
            let additional_count =
                if with_additionals { additionals } else { 0 } + u16::from(opt.is_some());
            for count in [1, answers, authorities, additional_count] {
                out.extend_from_slice(&count.to_be_bytes());
            }
            out.extend_from_slice(self.question);
            wire.write(&mut out, cached.ttls_at(now), with_additionals);
            if let Some(opt) = &opt {
                out.extend_from_slice(opt);
            }
            if out.len() <= limit {
                return Some(out);
            }
        }
        None
    }

    /// Our OPT record for a client that sent one, encoded by hickory.
    fn opt_record(&self) -> Option<Vec<u8>> {
        let client_edns = self.edns?;
        let mut edns = Edns::new();
        edns.set_max_payload(self.max_udp_size)
            .set_dnssec_ok(client_edns.dnssec_ok);
        Record::from(&edns).to_bytes().ok()
    }

    /// The answer, cut to `limit` bytes: first without the additional section (which needs no
    /// TC, RFC 2181 §9), then with no records and TC=1 so the client retries over TCP.
    pub(super) fn answer(
        &self,
        rcode: ResponseCode,
        authentic_data: bool,
        sections: Sections,
        limit: usize,
    ) -> Vec<u8> {
        let mut message = self.header(rcode, authentic_data);
        message.answers = sections.answers;
        message.authorities = sections.authorities;
        message.additionals = sections.additionals;
        for attempt in 0..3 {
            match attempt {
                0 => {}
                1 => message.additionals.clear(),
                _ => {
                    message.answers.clear();
                    message.authorities.clear();
                    message.metadata.truncation = true;
                }
            }
            match message.to_vec() {
                Ok(bytes) if bytes.len() <= limit => return bytes,
                Ok(_) => {}
                Err(error) => {
                    debug!(%error, "forwarded answer did not encode");
                    return self.error(ResponseCode::ServFail);
                }
            }
        }
        // Header, question and OPT alone exceed the limit: only for absurd limits.
        self.error(ResponseCode::ServFail)
    }

    /// RFC 8482 §4.2: ANY gets one synthesized HINFO record instead of everything the name has.
    pub(super) fn minimal_any(&self, limit: usize) -> Vec<u8> {
        let hinfo = HINFO::new("RFC8482".to_string(), String::new());
        let record = Record::from_rdata(self.query.name().clone(), ANY_TTL, RData::HINFO(hinfo));
        let sections = Sections {
            answers: vec![record],
            authorities: Vec::new(),
            additionals: Vec::new(),
        };
        self.answer(ResponseCode::NoError, false, sections, limit)
    }

    /// A response with no records and `rcode`.
    pub(super) fn error(&self, rcode: ResponseCode) -> Vec<u8> {
        match self.header(rcode, false).to_vec() {
            Ok(bytes) => bytes,
            Err(_) => self.error_by_hand(rcode),
        }
    }

    fn header(&self, rcode: ResponseCode, authentic_data: bool) -> Message {
        let mut message = Message::new(self.id, MessageType::Response, OpCode::Query);
        let metadata = &mut message.metadata;
        metadata.recursion_desired = self.recursion_desired;
        // Only clients allowed to recurse reach the forwarder.
        metadata.recursion_available = true;
        metadata.checking_disabled = self.checking_disabled;
        metadata.authentic_data = authentic_data && self.wants_authentic_data;
        metadata.response_code = rcode;
        message.add_query(self.query.clone());
        if let Some(client_edns) = self.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(self.max_udp_size)
                .set_dnssec_ok(client_edns.dnssec_ok);
            message.set_edns(edns);
        }
        message
    }

    /// The two flag bytes of our responses, as [`Self::header`] sets them: QR, RD as asked,
    /// RA, AD when the upstream validated and the client understands it, CD as asked, `rcode`.
    fn flags(&self, rcode: ResponseCode, authentic_data: bool) -> [u8; 2] {
        let mut high = flags::QR;
        if self.recursion_desired {
            high |= flags::RD;
        }
        let mut low = flags::RA | rcode.low();
        if authentic_data && self.wants_authentic_data {
            low |= flags::AD;
        }
        if self.checking_disabled {
            low |= flags::CD;
        }
        [high, low]
    }

    /// Header and question written out directly, for when hickory cannot encode the message.
    fn error_by_hand(&self, rcode: ResponseCode) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.question.len());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.flags(rcode, false));
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(self.question);
        out
    }
}
