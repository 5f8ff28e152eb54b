//! Reads an incoming query with hickory-proto and keeps what answering needs: the header
//! fields, the raw question (to echo it with the client's case), the lower-cased lookup key
//! and the EDNS parameters.

use hickory_proto::op::{Header, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsCode;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::zone::is_subdomain_key;

/// Longest wire-format name (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;

/// The parts of a well-formed standard query that answering uses.
#[derive(Debug)]
pub struct ParsedQuery<'a> {
    /// Query ID.
    pub id: u16,
    /// Recursion desired.
    pub recursion_desired: bool,
    /// Checking disabled: copied into the response.
    pub checking_disabled: bool,
    /// The question exactly as sent: name (client's case), type, class.
    pub question: &'a [u8],
    /// The query name, lower-cased, uncompressed wire format.
    key: [u8; MAX_NAME_LEN],
    key_len: u8,
    /// Query type.
    pub qtype: u16,
    /// Query class.
    pub qclass: u16,
    /// EDNS parameters when the query carried an OPT record.
    pub edns: Option<EdnsInfo>,
    /// The query is signed (a TSIG or SIG(0) record in the additional section).
    pub signature: Option<Signature>,
}

/// How a query is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signature {
    /// A TSIG record (RFC 8945).
    Tsig,
    /// A SIG(0) record (RFC 2931).
    Sig0,
}

/// What the client's OPT record said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdnsInfo {
    /// Advertised UDP payload size (values below 512 count as 512).
    pub payload: u16,
    /// EDNS version; only 0 is supported (others get BADVERS).
    pub version: u8,
    /// DNSSEC OK bit.
    pub dnssec_ok: bool,
    /// The query carries an NSID option (RFC 5001): the client asks who answers.
    pub nsid: bool,
}

/// Why a message is not answered normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Too short to carry a header, or a response: never answered (answering responses could
    /// start a loop between two servers).
    Ignore,
    /// Malformed: FORMERR with this ID and opcode.
    FormErr {
        /// Query ID.
        id: u16,
        /// The opcode as sent.
        op_code: u8,
        /// RD as sent.
        recursion_desired: bool,
    },
    /// An opcode other than QUERY: NOTIMP.
    NotImp {
        /// Query ID.
        id: u16,
        /// The opcode as sent.
        op_code: u8,
        /// RD as sent.
        recursion_desired: bool,
    },
}

impl<'a> ParsedQuery<'a> {
    /// Parses `message`; anything but a well-formed standard query with one question is a
    /// [`Rejection`].
    pub fn parse(message: &'a [u8]) -> Result<Self, Rejection> {
        if message.len() < 12 {
            return Err(Rejection::Ignore);
        }
        let mut decoder = BinDecoder::new(message);
        let header = Header::read(&mut decoder).map_err(|_| Rejection::Ignore)?;
        let metadata = header.metadata;
        if metadata.message_type == MessageType::Response {
            return Err(Rejection::Ignore);
        }
        let op_code = u8::from(metadata.op_code);
        let form_err = Rejection::FormErr {
            id: metadata.id,
            op_code,
            recursion_desired: metadata.recursion_desired,
        };
        if metadata.op_code != OpCode::Query {
            return Err(Rejection::NotImp {
                id: metadata.id,
                op_code,
                recursion_desired: metadata.recursion_desired,
            });
        }
        if header.counts.queries != 1 {
            return Err(form_err);
        }
        let query = Query::read(&mut decoder).map_err(|_| form_err)?;
        let question = &message[12..decoder.index()];
        let name_len = question.len() - 4;
        // A compression pointer in the first question can only point backwards into the
        // header: the name must be written out in full.
        if name_len > MAX_NAME_LEN || name_len != wire_len(query.name()) {
            return Err(form_err);
        }
        let mut key = [0u8; MAX_NAME_LEN];
        for (dst, src) in key.iter_mut().zip(&question[..name_len]) {
            *dst = src.to_ascii_lowercase();
        }
        let mut edns = None;
        let mut signature = None;
        let skipped = usize::from(header.counts.answers) + usize::from(header.counts.authorities);
        for _ in 0..skipped {
            Record::read(&mut decoder).map_err(|_| form_err)?;
        }
        for _ in 0..header.counts.additionals {
            let record = Record::read(&mut decoder).map_err(|_| form_err)?;
            match record.record_type() {
                RecordType::TSIG => signature = Some(Signature::Tsig),
                RecordType::SIG => signature = Some(Signature::Sig0),
                _ => {}
            }
            if record.record_type() == RecordType::OPT {
                if edns.is_some() || !record.name.is_root() {
                    return Err(form_err);
                }
                edns = Some(EdnsInfo {
                    payload: u16::from(record.dns_class).max(512),
                    version: ((record.ttl >> 16) & 0xff) as u8,
                    dnssec_ok: record.ttl & 0x8000 != 0,
                    nsid: matches!(&record.data, RData::OPT(opt) if opt.get(EdnsCode::NSID).is_some()),
                });
            }
        }
        Ok(Self {
            id: metadata.id,
            recursion_desired: metadata.recursion_desired,
            checking_disabled: metadata.checking_disabled,
            question,
            key,
            key_len: name_len as u8,
            qtype: u16::from(query.query_type()),
            qclass: u16::from(query.query_class()),
            edns,
            signature,
        })
    }

    /// The lower-cased wire-format query name.
    pub fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len)]
    }

    /// True when the query name is `zone` or below it (`zone` in lower-cased wire format).
    pub fn is_in(&self, zone: &[u8]) -> bool {
        is_subdomain_key(self.key(), zone)
    }

    /// The query name as sent, in wire format.
    pub fn raw_name(&self) -> &[u8] {
        &self.question[..usize::from(self.key_len)]
    }
}

fn wire_len(name: &hickory_proto::rr::Name) -> usize {
    if name.is_root() {
        1
    } else {
        name.len() + 1
    }
}
