//! The messages of one transfer: records packed into responses of at most 64 KiB, each signed
//! when the request was (RFC 8945 §5.3.1: the first over the request's MAC, every later one
//! over the previous MAC and the timers only).

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{make_tsig_record, TSIG};
use hickory_proto::rr::{Record, TSigResponseContext};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::key::{Signed, FUDGE};

/// Room kept below 64 KiB for the header, the question and a TSIG record.
const BUDGET: usize = 65_535 - 1_024;

/// Packs records into the messages of one transfer.
pub(super) struct Packer {
    id: u16,
    question: Query,
    signing: Option<Chain>,
    now: u64,
    pending: Vec<Record>,
    pending_len: usize,
    scratch: Vec<u8>,
    /// Messages produced so far.
    pub(super) messages: usize,
    /// Records packed so far.
    pub(super) records: usize,
}

/// The TSIG chain of a signed transfer.
struct Chain {
    signed: Signed,
    /// The MAC of the last message sent; `None` before the first.
    previous: Option<Vec<u8>>,
}

impl Packer {
    /// A packer for the answer to `id` asking `question`, signing from `signed`, with TSIG
    /// time `now` (seconds since the epoch).
    pub(super) fn new(id: u16, question: Query, signed: Option<Signed>, now: u64) -> Self {
        Self {
            id,
            question,
            signing: signed.map(|signed| Chain {
                signed,
                previous: None,
            }),
            now,
            pending: Vec::new(),
            pending_len: 0,
            scratch: Vec::new(),
            messages: 0,
            records: 0,
        }
    }

    /// Adds `record`; returns a full message to send when it no longer fits in the one being
    /// packed.
    pub(super) fn push(&mut self, record: Record) -> Result<Option<Vec<u8>>, String> {
        self.scratch.clear();
        record
            .emit(&mut BinEncoder::new(&mut self.scratch))
            .map_err(|e| e.to_string())?;
        // Uncompressed length: the message is at most this long.
        let len = self.scratch.len();
        let full = if self.pending_len + len > BUDGET && !self.pending.is_empty() {
            Some(self.flush()?)
        } else {
            None
        };
        self.pending_len += len;
        self.pending.push(record);
        self.records += 1;
        Ok(full)
    }

    /// The last message, with whatever is pending.
    pub(super) fn finish(mut self) -> Result<Vec<u8>, String> {
        self.flush()
    }

    fn flush(&mut self) -> Result<Vec<u8>, String> {
        let mut message = Message::new(self.id, MessageType::Response, OpCode::Query);
        message.metadata.authoritative = true;
        // RFC 5936 §2.2: the question in the first message; later ones may leave it out.
        if self.messages == 0 {
            message.add_query(self.question.clone());
        }
        message.answers = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        self.messages += 1;
        let bytes = message.to_vec().map_err(|e| e.to_string())?;
        let Some(chain) = self.signing.as_mut() else {
            return Ok(bytes);
        };
        let record = chain.sign(self.id, &bytes, self.now)?;
        message.set_signature(record);
        message.to_vec().map_err(|e| e.to_string())
    }
}

impl Chain {
    fn sign(
        &mut self,
        id: u16,
        bytes: &[u8],
        now: u64,
    ) -> Result<Box<hickory_proto::rr::Record<TSIG>>, String> {
        let signer = &self.signed.signer;
        let record = match &self.previous {
            None => TSigResponseContext::new(
                id,
                now,
                signer.clone(),
                self.signed.request_mac.clone(),
                None,
            )
            .sign(bytes)
            .map_err(|e| e.to_string())?,
            Some(previous) => {
                // RFC 8945 §5.3.1: prior MAC (with its length), the message, the timers.
                let mut tbs = Vec::with_capacity(previous.len() + bytes.len() + 10);
                tbs.extend_from_slice(&(previous.len() as u16).to_be_bytes());
                tbs.extend_from_slice(previous);
                tbs.extend_from_slice(bytes);
                tbs.extend_from_slice(&now.to_be_bytes()[2..]);
                tbs.extend_from_slice(&FUDGE.to_be_bytes());
                let mac = signer.sign(&tbs).map_err(|e| e.to_string())?;
                let tsig = TSIG::new(
                    signer.algorithm().clone(),
                    now,
                    FUDGE,
                    mac,
                    id,
                    None,
                    Vec::new(),
                );
                Box::new(make_tsig_record(signer.signer_name().clone(), tsig))
            }
        };
        self.previous = Some(record.data.mac.clone());
        Ok(record)
    }
}

/// A response without records: `rcode`, the question, and the TSIG record `context` gives.
pub(super) fn error_response(
    id: u16,
    question: Option<&Query>,
    rcode: ResponseCode,
    context: Option<TSigResponseContext>,
) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Response, OpCode::Query);
    message.metadata.response_code = rcode;
    if let Some(question) = question {
        message.add_query(question.clone());
    }
    let Ok(bytes) = message.to_vec() else {
        return Vec::new();
    };
    let Some(context) = context else {
        return bytes;
    };
    match context.sign(&bytes) {
        Ok(record) => {
            message.set_signature(record);
            message.to_vec().unwrap_or(bytes)
        }
        Err(_) => bytes,
    }
}
