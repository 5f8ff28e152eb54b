//! Zone transfers to standard secondaries: AXFR over TCP (RFC 5936) of the registry zone and
//! the static zones, IXFR (RFC 1995) as the difference to a kept snapshot over TCP (the
//! AXFR-style answer when there is none) and as the SOA alone over UDP, from one snapshot per
//! transfer, streamed as it is read, to clients in `--allow-transfer`, signed with
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
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub use key::{TransferPolicy, TsigKey};
pub use notify::notify_changes;
pub use signed::signed;

use super::respond::Responder;
use crate::snapshot::{serial_greater, Snapshot};
use crate::zone::{Zone, ZoneSet};
use key::{Access, Signed};
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
        /// How many records, the SOAs included.
        records: usize,
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
    let now = unix_now();
    let mut admitted = match admit(responder, request, client, now) {
        Ok(admitted) => admitted,
        Err((response, rcode)) => return reject(writer, &response, rcode, timeout).await,
    };
    let signed = admitted.signed.take();
    let Admitted {
        message,
        question,
        key,
        ..
    } = &admitted;
    let id = message.id;
    let Some((zone, soa)) = admitted.zone() else {
        let (response, rcode) = admitted.zone_error();
        return reject(writer, &response, rcode, timeout).await;
    };
    let question = question.clone();
    let incremental = question.query_type() == RecordType::IXFR;
    let plan = match ixfr::requested_serial(message).filter(|_| incremental) {
        Some(serial) if !serial_greater(zone.serial(), serial) => Plan::UpToDate,
        Some(serial) => responder
            .registry_since(key, serial)
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
    let (messages, records) = (packer.messages + 1, packer.records);
    match packer.finish() {
        Ok(bytes) if write_framed(writer, &bytes, timeout).await => TransferEnd::Sent {
            kind,
            serial,
            messages,
            records,
        },
        _ => TransferEnd::Failed,
    }
}

/// A transfer request that passed the access checks, with the zones it may ask for.
struct Admitted {
    message: Message,
    question: Query,
    /// The verified signature, taken by the response that signs with it.
    signed: Option<Signed>,
    /// The question's name, lower-cased wire format.
    key: Vec<u8>,
    registry: Option<Arc<Snapshot>>,
    statics: Arc<ZoneSet>,
}

impl Admitted {
    /// The zone asked for and its SOA, if it is one of ours.
    fn zone(&self) -> Option<(&Zone, Record)> {
        let zone = match &self.registry {
            Some(snapshot) => &snapshot.zone,
            None => self
                .statics
                .zones()
                .iter()
                .find(|zone| zone.apex_key() == &self.key[..])?,
        };
        Some((zone, records::soa(zone)?))
    }

    /// The response when [`Admitted::zone`] has none: not a zone of ours (RFC 5936 §2.2.1).
    fn zone_error(&self) -> (Vec<u8>, ResponseCode) {
        let rcode = ResponseCode::NotAuth;
        (
            error_response(self.message.id, Some(&self.question), rcode, None),
            rcode,
        )
    }
}

/// Decodes `request` and checks it against the transfer policy: the admitted request, or the
/// error response to send.
fn admit(
    responder: &Responder,
    request: &[u8],
    client: IpAddr,
    now: u64,
) -> Result<Admitted, (Vec<u8>, ResponseCode)> {
    let Ok(message) = Message::from_vec(request) else {
        let id = request
            .get(..2)
            .map_or(0, |id| u16::from_be_bytes([id[0], id[1]]));
        let rcode = ResponseCode::FormErr;
        return Err((error_response(id, None, rcode, None), rcode));
    };
    let id = message.id;
    let Some(question) = message.queries.first().cloned() else {
        let rcode = ResponseCode::FormErr;
        return Err((error_response(id, None, rcode, None), rcode));
    };
    let policy = responder.policy();
    let signed = match policy.transfer.check(client, request, &message, now) {
        Access::Granted(signed) => signed,
        Access::Refused => {
            let rcode = ResponseCode::Refused;
            return Err((error_response(id, Some(&question), rcode, None), rcode));
        }
        Access::NotAuth(context) => {
            let rcode = ResponseCode::NotAuth;
            return Err((error_response(id, Some(&question), rcode, context), rcode));
        }
    };
    let key = wire_key(&question);
    Ok(Admitted {
        registry: responder.registry_snapshot_for(&key),
        statics: responder.static_zones(),
        message,
        question,
        signed,
        key,
    })
}

/// IXFR over UDP (RFC 1995 §2): the current SOA alone, which tells a current secondary it is
/// current and any other to ask again over TCP, where the difference is streamed. Checked
/// and signed as over TCP.
pub fn ixfr_over_udp(responder: &Responder, request: &[u8], client: IpAddr) -> Vec<u8> {
    let mut admitted = match admit(responder, request, client, unix_now()) {
        Ok(admitted) => admitted,
        Err((response, _)) => return response,
    };
    let signed = admitted.signed.take();
    let Some((_, soa)) = admitted.zone() else {
        return admitted.zone_error().0;
    };
    let mut packer = Packer::new(
        admitted.message.id,
        admitted.question.clone(),
        signed,
        unix_now(),
    );
    match packer.push(soa) {
        Ok(None) => packer.finish().unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
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
