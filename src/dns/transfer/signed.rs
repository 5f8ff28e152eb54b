//! TSIG-signed queries other than transfers, such as the SOA query a secondary sends before
//! it asks for a transfer: verified with `--tsig-key`, answered as any query is, and the
//! answer signed (RFC 8945 §5.3). Only with a key set; a bad signature gets NOTAUTH with its
//! TSIG error.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::TSigResponseContext;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::stream::error_response;
use crate::dns::respond::{Outcome, Responder, Scratch, Transport};

/// The largest reply the client takes: 64 KiB over TCP; over UDP its EDNS payload size
/// (at least 512) capped at `max_udp_size`, or 512 without EDNS.
fn limit(request: &Message, transport: Transport, max_udp_size: u16) -> usize {
    match (transport, &request.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, None) => 512,
        (Transport::Udp, Some(edns)) => {
            usize::from(edns.max_payload().clamp(512, max_udp_size.max(512)))
        }
    }
}

/// The signed answer to the signed query `message`, or `None` to stay silent.
pub fn signed(
    responder: &Responder,
    message: &[u8],
    client: IpAddr,
    transport: Transport,
    scratch: &mut Scratch,
) -> Option<Vec<u8>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let request = Message::from_vec(message).ok()?;
    let id = request.id;
    let question = request.queries.first();
    let policy = responder.policy();
    let key = policy.transfer.key.as_ref()?;
    let signed = match key.verify(message, &request, now) {
        Ok(signed) => signed,
        Err(context) => return Some(error_response(id, question, ResponseCode::NotAuth, context)),
    };
    let context = |signed: &super::key::Signed| {
        TSigResponseContext::new(
            id,
            now,
            signed.signer.clone(),
            signed.request_mac.clone(),
            None,
        )
    };
    let mut out = Vec::new();
    match responder.respond_verified(message, client, transport, &mut out, scratch) {
        Outcome::Reply => {}
        // Nothing to forward or transfer for a signed plain query: REFUSED, signed.
        Outcome::Forward | Outcome::Transfer | Outcome::Signed => {
            return Some(error_response(
                id,
                question,
                ResponseCode::Refused,
                Some(context(&signed)),
            ));
        }
        Outcome::Ignore => return None,
    }
    let record = context(&signed).sign(&out).ok()?;
    let mut tsig = Vec::with_capacity(128);
    record.emit(&mut BinEncoder::new(&mut tsig)).ok()?;
    if out.len() + tsig.len() > limit(&request, transport, policy.max_udp_size) {
        // RFC 8945 §5.3: no room for the TSIG record: the question alone, TC=1, signed, so
        // the client asks again over TCP.
        let mut cut = Message::new(id, MessageType::Response, OpCode::Query);
        cut.metadata.truncation = true;
        cut.metadata.authoritative = true;
        cut.queries.extend(question.cloned());
        let bytes = cut.to_vec().ok()?;
        cut.set_signature(context(&signed).sign(&bytes).ok()?);
        return cut.to_vec().ok();
    }
    // The TSIG record goes last, after the OPT record, and counts in ARCOUNT.
    let additionals = u16::from_be_bytes([out[10], out[11]]).checked_add(1)?;
    out[10..12].copy_from_slice(&additionals.to_be_bytes());
    out.extend_from_slice(&tsig);
    Some(out)
}
