//! NOTIFY (RFC 1996): tells every `--notify` secondary when the registry zone's serial
//! changes, so it asks for the change at once instead of at its SOA refresh.
//!
//! A task watches the published serial (a load per tick, off the query path). A change starts
//! a round: one NOTIFY per secondary over UDP, resent with a doubling interval until the
//! secondary answers (RFC 1996 §3.6), given up after a few tries. A newer serial ends the
//! round still going and starts its own, so changes in quick succession are coalesced.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::records;
use crate::dns::respond::Responder;
use crate::snapshot::SnapshotStore;

/// How often the published serial is looked at.
const TICK: Duration = Duration::from_millis(100);
/// The first wait for an answer; doubled at every resend.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// Sends per secondary and change before giving up (the secondary still refreshes on its
/// own timer).
const TRIES: u32 = 5;

/// Sends NOTIFY to `targets` for every new serial of the registry zone `apex` until
/// `shutdown`.
pub async fn notify_changes(
    store: SnapshotStore,
    responder: Responder,
    apex: Name,
    targets: Vec<SocketAddr>,
    shutdown: CancellationToken,
) {
    if targets.is_empty() {
        return;
    }
    let mut notified = None;
    let mut round = CancellationToken::new();
    let mut rounds = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(TICK) => {}
        }
        while rounds.try_join_next().is_some() {}
        let Some(snapshot) = store.current() else {
            continue;
        };
        let serial = snapshot.zone.serial();
        if notified == Some(serial) {
            continue;
        }
        notified = Some(serial);
        round.cancel();
        round = shutdown.child_token();
        let Some(soa) = records::soa(&snapshot.zone) else {
            continue;
        };
        for target in &targets {
            let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Notify);
            message.metadata.authoritative = true;
            message.add_query(Query::query(apex.clone(), RecordType::SOA));
            message.add_answer(soa.clone());
            let key = responder.policy().transfer.key.clone();
            if let Some(key) = key {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_secs());
                if let Err(error) = message.finalize(&key.signer(), now) {
                    warn!(%error, "cannot sign NOTIFY");
                    continue;
                }
            }
            let Ok(bytes) = message.to_vec() else {
                continue;
            };
            let target = *target;
            let id = message.id;
            let round = round.clone();
            rounds.spawn(async move {
                tokio::select! {
                    () = round.cancelled() => {}
                    acked = send_until_acked(target, id, &bytes) => {
                        if acked {
                            debug!(%target, serial, "NOTIFY acknowledged");
                        } else {
                            warn!(%target, serial, tries = TRIES, "secondary did not answer NOTIFY");
                        }
                    }
                }
            });
        }
    }
    round.cancel();
    rounds.shutdown().await;
}

/// Sends `bytes` to `target` until an answer with `id` arrives; false after [`TRIES`].
async fn send_until_acked(target: SocketAddr, id: u16, bytes: &[u8]) -> bool {
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let Ok(socket) = UdpSocket::bind(bind).await else {
        return false;
    };
    if socket.connect(target).await.is_err() {
        return false;
    }
    let mut wait = FIRST_WAIT;
    let mut buffer = vec![0u8; 4096];
    for _ in 0..TRIES {
        // A refused send (nothing listens yet) counts as a try.
        let _ = socket.send(bytes).await;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await {
                Ok(Ok(len)) if is_ack(&buffer[..len], id) => return true,
                Ok(Ok(_)) => {}
                // Port unreachable: nothing listens yet; wait out the interval all the same.
                Ok(Err(_)) => {
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
                Err(_) => break,
            }
        }
        wait *= 2;
    }
    false
}

/// True for a NOTIFY response to the message `id`.
fn is_ack(reply: &[u8], id: u16) -> bool {
    Message::from_vec(reply).is_ok_and(|reply| {
        reply.id == id
            && reply.message_type == MessageType::Response
            && reply.op_code == OpCode::Notify
    })
}
