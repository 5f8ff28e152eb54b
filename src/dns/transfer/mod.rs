//! Zone transfers to standard secondaries (RFC 5936 AXFR over TCP; an IXFR request gets the
//! AXFR-style answer RFC 1995 §4 allows): the registry zone and the static zones, from one
//! snapshot per transfer, streamed as it is read, to clients in `--allow-transfer`, signed with
//! `--tsig-key` when one is set (docs/transfer.md).
//!
//! Off the query path: the TCP handler hands a transfer request here, and it holds one
//! snapshot (an `Arc`) until the last message is written, so a snapshot swapped in meanwhile
//! does not mix into it.

mod ixfr;
mod key;
mod notify;
mod records;
mod signed;
mod stream;

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub use key::{TransferPolicy, TsigKey};
pub use notify::notify_changes;
pub use signed::signed;

use super::respond::Responder;
use crate::snapshot::serial_greater;
use crate::zone::Zone;
use key::Access;
use stream::{error_response, Packer};

/// Transfer settings that need a restart (`--ixfr-journal`, `--notify`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferSettings {
    /// Registry zone versions kept for IXFR.
    pub ixfr_journal: usize,
    /// Secondaries to NOTIFY of every change.
    pub notify: Vec<std::net::SocketAddr>,
}

/// How a transfer ended, for the caller's log and counters.
#[derive(Debug, PartialEq, Eq)]
pub enum TransferEnd {
    /// The transfer was sent.
    Sent {
        /// `axfr` (the whole zone), `ixfr` (a difference) or `current` (the SOA alone).
        kind: &'static str,
        /// The serial sent.
        serial: u32,
        /// How many messages it took.
        messages: usize,
    },
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
    let incremental = question.query_type() == RecordType::IXFR;
    let plan = match ixfr::requested_serial(&message).filter(|_| incremental) {
        Some(serial) if !serial_greater(zone.serial(), serial) => Plan::UpToDate,
        Some(serial) => responder
            .registry_since(&key, serial)
            .and_then(|base| {
                let base_soa = records::soa(&base.zone)?;
                let (deleted, added) = ixfr::difference(&base.zone, zone)?;
                Some(Plan::Difference(Box::new(base_soa), deleted, added))
            })
            .unwrap_or(Plan::Full),
        None => Plan::Full,
    };
    let mut packer = Packer::new(id, question, signed, now);
    let mut stream = Stream {
        writer,
        timeout,
        packer: &mut packer,
    };
    let serial = zone.serial();
    let kind = match plan {
        Plan::UpToDate => "current",
        Plan::Difference(..) => "ixfr",
        Plan::Full => "axfr",
    };
    let sent = match plan {
        // RFC 1995 §4: the secondary is current: the SOA alone.
        Plan::UpToDate => true,
        Plan::Difference(base_soa, deleted, added) => {
            stream.send(soa.clone()).await
                && stream.send(*base_soa).await
                && stream.send_all(deleted).await
                && stream.send(soa.clone()).await
                && stream.send_all(added).await
                && stream.send(soa).await
        }
        Plan::Full => {
            let mut sent = stream.send(soa.clone()).await;
            for records in records::zone_records(zone) {
                if !sent {
                    break;
                }
                sent = stream.send_all(records).await;
            }
            sent && stream.send(soa).await
        }
    };
    if !sent {
        return TransferEnd::Failed;
    }
    let messages = packer.messages + 1;
    match packer.finish() {
        Ok(bytes) if write_framed(writer, &bytes, timeout).await => TransferEnd::Sent {
            kind,
            serial,
            messages,
        },
        _ => TransferEnd::Failed,
    }
}

/// What a transfer sends.
enum Plan {
    /// The current SOA only: the secondary has this serial (or a newer one).
    UpToDate,
    /// The secondary's SOA, the records deleted since, and those added.
    Difference(Box<Record>, Vec<Record>, Vec<Record>),
    /// The whole zone between two SOAs.
    Full,
}

/// The packer and the connection its full messages go to.
struct Stream<'a, W> {
    writer: &'a mut W,
    timeout: Duration,
    packer: &'a mut Packer,
}

impl<W: AsyncWrite + Unpin> Stream<'_, W> {
    /// Adds `record`, writing the message it completes; false when the connection failed.
    async fn send(&mut self, record: Record) -> bool {
        match self.packer.push(record) {
            Ok(None) => true,
            Ok(Some(bytes)) => write_framed(self.writer, &bytes, self.timeout).await,
            Err(_) => false,
        }
    }

    async fn send_all(&mut self, records: Vec<Record>) -> bool {
        for record in records {
            if !self.send(record).await {
                return false;
            }
        }
        true
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
