//! Zone transfers to standard secondaries (RFC 5936 AXFR over TCP; an IXFR request gets the
//! AXFR-style answer RFC 1995 §4 allows): the registry zone and the static zones, from one
//! snapshot per transfer, streamed as it is read, to clients in `--allow-transfer`, signed with
//! `--tsig-key` when one is set (docs/transfer.md).
//!
//! Off the query path: the TCP handler hands a transfer request here, and it holds one
//! snapshot (an `Arc`) until the last message is written, so a snapshot swapped in meanwhile
//! does not mix into it.

mod key;
mod records;
mod stream;

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub use key::{TransferPolicy, TsigKey};

use super::respond::Responder;
use crate::zone::Zone;
use key::Access;
use stream::{error_response, Packer};

/// How a transfer ended, for the caller's log and counters.
#[derive(Debug, PartialEq, Eq)]
pub enum TransferEnd {
    /// The whole zone was sent in this many messages.
    Sent(usize),
    /// An error response was sent (REFUSED, NOTAUTH, FORMERR, SERVFAIL).
    Rejected(ResponseCode),
    /// The client stopped reading, or the connection failed.
    Failed,
}

/// Answers the transfer request `request` from `client`, writing its messages (length
/// prefixed) to `writer`; each write must finish within `timeout`.
pub async fn transfer<W: AsyncWrite + Unpin>(
    responder: &Responder,
    request: &[u8],
    client: IpAddr,
    writer: &mut W,
    timeout: Duration,
) -> TransferEnd {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let Ok(message) = Message::from_vec(request) else {
        let id = request
            .get(..2)
            .map_or(0, |id| u16::from_be_bytes([id[0], id[1]]));
        let response = error_response(id, None, ResponseCode::FormErr, None);
        return reject(writer, &response, ResponseCode::FormErr, timeout).await;
    };
    let id = message.id;
    let Some(question) = message.queries.first().cloned() else {
        let response = error_response(id, None, ResponseCode::FormErr, None);
        return reject(writer, &response, ResponseCode::FormErr, timeout).await;
    };
    let policy = responder.policy();
    let signed = match policy.transfer.check(client, request, &message, now) {
        Access::Granted(signed) => signed,
        Access::Refused => {
            let response = error_response(id, Some(&question), ResponseCode::Refused, None);
            return reject(writer, &response, ResponseCode::Refused, timeout).await;
        }
        Access::NotAuth(context) => {
            let response = error_response(id, Some(&question), ResponseCode::NotAuth, context);
            return reject(writer, &response, ResponseCode::NotAuth, timeout).await;
        }
    };
    let key = wire_key(&question);
    let registry = responder.registry_snapshot_for(&key);
    let statics = responder.static_zones();
    let zone: Option<&Zone> = match &registry {
        Some(snapshot) => Some(&snapshot.zone),
        None => statics
            .zones()
            .iter()
            .find(|zone| zone.apex_key() == &key[..]),
    };
    let Some(zone) = zone else {
        // Not a zone we are authoritative for (RFC 5936 §2.2.1).
        let response = error_response(id, Some(&question), ResponseCode::NotAuth, None);
        return reject(writer, &response, ResponseCode::NotAuth, timeout).await;
    };
    let Some(soa) = records::soa(zone) else {
        let response = error_response(id, Some(&question), ResponseCode::ServFail, None);
        return reject(writer, &response, ResponseCode::ServFail, timeout).await;
    };
    let mut packer = Packer::new(id, question, signed, now);
    let first = packer.push(soa.clone());
    if !send_if_full(writer, first, timeout).await {
        return TransferEnd::Failed;
    }
    for records in records::zone_records(zone) {
        for record in records {
            let full = packer.push(record);
            if !send_if_full(writer, full, timeout).await {
                return TransferEnd::Failed;
            }
        }
    }
    let last = packer.push(soa);
    if !send_if_full(writer, last, timeout).await {
        return TransferEnd::Failed;
    }
    let messages = packer.messages + 1;
    match packer.finish() {
        Ok(bytes) if write_framed(writer, &bytes, timeout).await => TransferEnd::Sent(messages),
        _ => TransferEnd::Failed,
    }
}

/// The question's name, lower-cased, in wire format.
fn wire_key(question: &Query) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    for label in question.name().iter() {
        key.push(label.len() as u8);
        key.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    key.push(0);
    key
}

async fn send_if_full<W: AsyncWrite + Unpin>(
    writer: &mut W,
    full: Result<Option<Vec<u8>>, String>,
    timeout: Duration,
) -> bool {
    match full {
        Ok(None) => true,
        Ok(Some(bytes)) => write_framed(writer, &bytes, timeout).await,
        Err(_) => false,
    }
}

async fn reject<W: AsyncWrite + Unpin>(
    writer: &mut W,
    response: &[u8],
    rcode: ResponseCode,
    timeout: Duration,
) -> TransferEnd {
    if write_framed(writer, response, timeout).await {
        TransferEnd::Rejected(rcode)
    } else {
        TransferEnd::Failed
    }
}

/// Writes one length-prefixed message; false when it is too long, fails or stalls.
async fn write_framed<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    timeout: Duration,
) -> bool {
    let Ok(len) = u16::try_from(bytes.len()) else {
        return false;
    };
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    matches!(
        tokio::time::timeout(timeout, writer.write_all(&framed)).await,
        Ok(Ok(()))
    )
}

/// True for the query types answered by a transfer.
pub(super) fn is_transfer(qtype: u16) -> bool {
    qtype == u16::from(RecordType::AXFR) || qtype == u16::from(RecordType::IXFR)
}
