//! TSIG-signed queries other than transfers, such as the SOA query a secondary sends before
//! it asks for a transfer: verified with `--tsig-key`, answered as any query is, and the
//! answer signed (RFC 8945 §5.3). Only with a key set; a bad signature gets NOTAUTH with its
//! TSIG error.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::TSigResponseContext;
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use super::stream::error_response;
use crate::dns::respond::{Outcome, Responder, Scratch, Transport};

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
    let context = TSigResponseContext::new(id, now, signed.signer, signed.request_mac, None);
    let mut out = Vec::new();
    match responder.respond_verified(message, client, transport, &mut out, scratch) {
        Outcome::Reply => {}
        // Nothing to forward or transfer for a signed plain query: REFUSED, signed.
        Outcome::Forward | Outcome::Transfer | Outcome::Signed => {
            return Some(error_response(
                id,
                question,
                ResponseCode::Refused,
                Some(context),
            ));
        }
        Outcome::Ignore => return None,
    }
    let record = context.sign(&out).ok()?;
    let mut tsig = Vec::with_capacity(128);
    record.emit(&mut BinEncoder::new(&mut tsig)).ok()?;
    // The TSIG record goes last, after the OPT record, and counts in ARCOUNT.
    let additionals = u16::from_be_bytes([out[10], out[11]]).checked_add(1)?;
    out[10..12].copy_from_slice(&additionals.to_be_bytes());
    out.extend_from_slice(&tsig);
    Some(out)
}
