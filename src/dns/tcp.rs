//! DNS over TCP (RFC 7766): our own accept loop and one task per connection, answering each
//! length-prefixed query with the same [`Responder`] as the UDP path and writing the response
//! bytes as they are.
//!
//! Queries on one connection are answered in order, one at a time (a pipelining client such as
//! HAProxy gets its answers in the order it asked), so at most one query per connection is in
//! our hands; the rest wait in the kernel's buffers. A connection idle for `--tcp-idle-timeout`
//! is closed, and so is one whose query or answer does not move within that time (a client
//! that never reads). Connections beyond `--max-tcp-clients` (or an address's share) are
//! closed at once ([`TcpClients`]). A query's buffer grows as its bytes arrive: a length
//! prefix alone allocates nothing. On shutdown the listener is closed at once (new connections are refused), every
//! connection finishes the query it is answering, forwarded ones included, and is then closed;
//! [`serve`] returns when the last one has.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::respond::{Outcome, Responder, Scratch, Transport};
use super::tcp_clients::{Admitted, TcpClients};
use super::transfer::{signed, transfer, TransferEnd};
use super::Forwarding;
use crate::metrics::Metrics;

/// Answers DNS over TCP.
pub struct TcpHandler {
    responder: Responder,
    forwarding: Forwarding,
    metrics: Arc<Metrics>,
    clients: Arc<TcpClients>,
}

impl TcpHandler {
    /// A handler over the shared responder and forwarder, admitting `clients`.
    pub fn new(
        responder: Responder,
        forwarding: Forwarding,
        metrics: Arc<Metrics>,
        clients: Arc<TcpClients>,
    ) -> Self {
        Self {
            responder,
            forwarding,
            metrics,
            clients,
        }
    }

    /// Answers one query into `out` (framing not included).
    async fn answer(
        &self,
        message: &[u8],
        client: IpAddr,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Answered {
        let started = Instant::now();
        match self
            .responder
            .respond(message, client, Transport::Tcp, out, scratch)
        {
            Outcome::Reply => {}
            Outcome::Transfer => return Answered::Transfer,
            Outcome::Signed => {
                match signed(&self.responder, message, client, Transport::Tcp, scratch) {
                    Some(bytes) => *out = bytes,
                    None => return Answered::Nothing,
                }
            }
            Outcome::Ignore => {
                self.metrics.observe_ignored();
                return Answered::Nothing;
            }
            Outcome::Forward => match self
                .forwarding
                .resolve(message, scratch.forward_limits())
                .await
            {
                Some(bytes) => *out = bytes,
                None => return Answered::Nothing,
            },
        }
        self.metrics.observe_answer(out, started);
        Answered::Reply
    }
}

/// What [`TcpHandler::answer`] left to do.
enum Answered {
    /// Send `out`.
    Reply,
    /// Send nothing.
    Nothing,
    /// Stream a zone transfer.
    Transfer,
}

/// Accepts connections on `listener` until `shutdown` is cancelled, then closes it and waits
/// for every connection to finish the query in progress.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<TcpHandler>,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, mostly: wait a little rather than spin.
                    debug!(%error, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = handler.clients.admit(peer.ip()) else {
            handler
                .metrics
                .tcp_clients_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(stream); // closed at once: the client sees EOF and may retry later
            continue;
        };
        connections.spawn(connection(
            admitted,
            stream,
            peer,
            handler.clone(),
            idle_timeout,
            shutdown.clone(),
        ));
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn connection(
    _admitted: Admitted,
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<TcpHandler>,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut scratch = Scratch::default();
    let mut message = Vec::with_capacity(512);
    let mut out = Vec::with_capacity(4096);
    loop {
        let mut prefix = [0u8; 2];
        // Between queries, shutdown closes the connection.
        let read = tokio::select! {
            () = shutdown.cancelled() => break,
            read = tokio::time::timeout(idle_timeout, reader.read_exact(&mut prefix)) => read,
        };
        if !matches!(read, Ok(Ok(_))) {
            break; // idle, closed by the client, or reset
        }
        let len = usize::from(u16::from_be_bytes(prefix));
        message.clear();
        // A query that has started to arrive is read to its end and answered, shutdown or not,
        // within one deadline for the whole of it; the buffer grows only as bytes arrive.
        let mut body = (&mut reader).take(len as u64);
        match tokio::time::timeout(idle_timeout, body.read_to_end(&mut message)).await {
            Ok(Ok(read)) if read == len => {}
            _ => break,
        }
        match handler
            .answer(&message, peer.ip(), &mut scratch, &mut out)
            .await
        {
            Answered::Reply => {}
            Answered::Nothing => continue,
            Answered::Transfer => {
                let end = transfer(
                    &handler.responder,
                    &message,
                    peer.ip(),
                    &mut writer,
                    idle_timeout,
                )
                .await;
                match end {
                    // Only clients in --allow-transfer get this far: one line per transfer.
                    TransferEnd::Sent {
                        kind,
                        serial,
                        messages,
                        records,
                    } => info!(%peer, kind, serial, messages, records, "zone transfer sent"),
                    TransferEnd::Rejected(rcode) => debug!(%peer, %rcode, "zone transfer refused"),
                    TransferEnd::Failed => {
                        debug!(%peer, "zone transfer failed");
                        break;
                    }
                }
                continue;
            }
        }
        let Ok(len) = u16::try_from(out.len()) else {
            debug!(%peer, len = out.len(), "tcp response too long; dropped");
            continue;
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&out);
        // A client that does not read its answers is closed after the idle timeout too.
        match tokio::time::timeout(idle_timeout, writer.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                debug!(%error, %peer, "tcp send failed");
                break;
            }
            Err(_) => {
                debug!(%peer, "tcp client does not read its answers; closing");
                break;
            }
        }
    }
    let _ = writer.shutdown().await;
}
