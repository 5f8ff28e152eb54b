//! An upstream answer kept as the upstream encoded it: the bytes of its records, where each
//! record's TTL sits and where the additional section starts. The client then gets the
//! upstream's own encoding, with only the header, the question's case, the TTLs and the OPT
//! record changed; hickory's re-encoding of an answer can be larger than the upstream's (an
//! MX answer from Knot grows by about 30 %), which would set TC=1 on answers that fit.
//!
//! Compression pointers in the records point at offsets from the start of the message, so the
//! records are written back at the offset they came from: after a 12-byte header and a question
//! of the same length (the same name, in the client's case). An upstream can point into the
//! header, whose bytes differ in our reply (found by the `forward_reply` fuzz target): a
//! layout is kept only when the records decode to the same thing behind any header we write
//! ([`Wire::verified`]); otherwise the answer is re-encoded.

use hickory_proto::op::{Header, Message, Query};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// The records of an upstream answer as they were on the wire.
#[derive(Debug)]
pub(super) struct Wire {
    /// Where the question ended, and so where the records start, in the upstream's message.
    records_at: usize,
    /// Answers, authorities and additionals (its OPT record left out), as sent.
    records: Box<[u8]>,
    /// Offset in `records` of each record's TTL, in section order.
    ttl_at: Box<[usize]>,
    /// Offset in `records` where the additional section starts.
    additional_at: usize,
    /// Records per section: answers, authorities, additionals (without OPT).
    counts: [u16; 3],
}

impl Wire {
    /// The layout of `message`; `None` when it cannot be kept as it is: not exactly one
    /// question, an OPT record that is not the last one, a TSIG or SIG(0) record, or anything
    /// that does not decode.
    pub(super) fn new(message: &[u8]) -> Option<Self> {
        let mut decoder = BinDecoder::new(message);
        let header = Header::read(&mut decoder).ok()?;
        if header.counts.queries != 1 {
            return None;
        }
        Query::read(&mut decoder).ok()?;
        let records_at = decoder.index();
        let counts = [
            header.counts.answers,
            header.counts.authorities,
            header.counts.additionals,
        ];
        let total: usize = counts.iter().map(|c| usize::from(*c)).sum();
        let mut ttl_at = Vec::with_capacity(total);
        let mut additional_at = None;
        let mut end = records_at;
        let mut kept = counts;
        for index in 0..total {
            let start = decoder.index();
            if index == usize::from(counts[0]) + usize::from(counts[1]) {
                additional_at = Some(start - records_at);
            }
            let mut name = decoder.clone(u16::try_from(start).ok()?);
            Name::read(&mut name).ok()?;
            let type_at = name.index();
            let record = Record::read(&mut decoder).ok()?;
            match record.record_type() {
                RecordType::OPT if index + 1 == total => {
                    kept[2] -= 1;
                    break;
                }
                RecordType::OPT | RecordType::TSIG | RecordType::SIG => return None,
                _ => {}
            }
            ttl_at.push(type_at + 4 - records_at);
            end = decoder.index();
        }
        Some(Self {
            records_at,
            records: message[records_at..end].into(),
            ttl_at: ttl_at.into(),
            additional_at: additional_at.unwrap_or(end - records_at),
            counts: kept,
        })
    }

    /// `self`, if its records decode to `expected` (name, type, class and data, in section
    /// order; TTLs aside) behind every header we may write: any ID and flags, with or without
    /// the additional section and our OPT record. `question` is the upstream's, as it was sent.
    pub(super) fn verified(self, question: &[u8], expected: &[&Record]) -> Option<Self> {
        if question.len() != self.question_len() {
            return None;
        }
        let [answers, authorities, additionals] = self.counts;
        for with_additionals in [true, false] {
            let kept = if with_additionals { additionals } else { 0 };
            for (id_and_flags, extra) in [([0u8; 4], 0u16), ([0xff, 0xff, 0x81, 0xb0], 1)] {
                let mut message = id_and_flags.to_vec();
                // QR and opcode QUERY in the flags whatever else is set, so it parses as ours.
                message[2] = (message[2] & 0x87) | 0x80;
                for count in [1, answers, authorities, kept + extra] {
                    message.extend_from_slice(&count.to_be_bytes());
                }
                message.extend_from_slice(question);
                self.write(&mut message, std::iter::repeat(0), with_additionals);
                if extra == 1 {
                    // An OPT record, as our replies may carry.
                    message.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
                }
                let decoded = Message::from_vec(&message).ok()?;
                let records: Vec<&Record> = decoded
                    .answers
                    .iter()
                    .chain(&decoded.authorities)
                    .chain(&decoded.additionals)
                    .collect();
                let wanted = if with_additionals {
                    expected
                } else {
                    &expected[..expected.len() - usize::from(additionals)]
                };
                let same = records.len() == wanted.len()
                    && records.iter().zip(wanted).all(|(got, want)| {
                        got.name == want.name
                            && got.dns_class == want.dns_class
                            && got.data == want.data
                    });
                if !same {
                    return None;
                }
            }
        }
        Some(self)
    }

    /// Records per section, as kept: answers, authorities, additionals.
    pub(super) fn counts(&self) -> [u16; 3] {
        self.counts
    }

    /// The length of the question the records were encoded after.
    pub(super) fn question_len(&self) -> usize {
        self.records_at - 12
    }

    /// Appends the records to `out` (which holds the header and question), the answers' and
    /// authorities' always and the additionals' when `additionals` is set, each with its TTL
    /// from `ttls` (in section order). The bytes added.
    pub(super) fn write(
        &self,
        out: &mut Vec<u8>,
        mut ttls: impl Iterator<Item = u32>,
        additionals: bool,
    ) -> usize {
        let len = if additionals {
            self.records.len()
        } else {
            self.additional_at
        };
        let start = out.len();
        out.extend_from_slice(&self.records[..len]);
        for at in self.ttl_at.iter().take_while(|at| **at < len) {
            let ttl = ttls.next().unwrap_or(0);
            out[start + at..start + at + 4].copy_from_slice(&ttl.to_be_bytes());
        }
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, MX};
    use hickory_proto::rr::RData;

    fn answer(with_opt: bool) -> Vec<u8> {
        let name = Name::from_ascii("mx.example.test.").unwrap();
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(name.clone(), RecordType::MX));
        for i in 0..3u8 {
            let host = Name::from_ascii(format!("mail{i}.example.test.")).unwrap();
            let mx = MX::new(u16::from(i), host.clone());
            message.add_answer(Record::from_rdata(name.clone(), 300, RData::MX(mx)));
            let a = A::new(192, 0, 2, i);
            message.add_additional(Record::from_rdata(host, 60, RData::A(a)));
        }
        if with_opt {
            message.set_edns(Edns::new());
        }
        message.to_vec().unwrap()
    }

    #[test]
    fn keeps_the_records_and_patches_their_ttls() {
        let bytes = answer(true);
        let wire = Wire::new(&bytes).unwrap();
        assert_eq!(wire.counts(), [3, 0, 3]);
        let mut out = bytes[..12 + wire.question_len()].to_vec();
        wire.write(&mut out, [1, 2, 3, 4, 5, 6].into_iter(), true);
        out[11] = 3; // ARCOUNT without the OPT record
        let decoded = Message::from_vec(&out).unwrap();
        let ttls: Vec<u32> = decoded
            .answers
            .iter()
            .chain(&decoded.additionals)
            .map(|r| r.ttl)
            .collect();
        assert_eq!(ttls, [1, 2, 3, 4, 5, 6]);

        let mut short = bytes[..12 + wire.question_len()].to_vec();
        wire.write(&mut short, [9, 9, 9].into_iter(), false);
        short[11] = 0;
        let decoded = Message::from_vec(&short).unwrap();
        assert_eq!(decoded.answers.len(), 3);
        assert!(decoded.additionals.is_empty());
    }

    #[test]
    fn an_answer_without_opt_is_kept_whole() {
        let wire = Wire::new(&answer(false)).unwrap();
        assert_eq!(wire.counts(), [3, 0, 3]);
    }
}
