//! The exchange with upstream resolvers, through hickory-net's client streams.
//!
//! hickory-net does the parts that make a relay safe: every UDP query goes out from a fresh
//! socket on a random port with a random ID, and replies from another address, with another
//! ID or another question are dropped while waiting (`UdpClientStream`); the sockets are
//! connected ([`super::connected_udp`]), so a port unreachable fails the attempt at once. Over TCP, the
//! multiplexer matches IDs and this module checks the question. Here: the order of
//! upstreams, the per-upstream deadline, the TCP retry of truncated answers, and which
//! rcodes count as failures.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, Edns, Message, MessageType, OpCode, Query, ResponseCode,
};
use hickory_server::net::tcp::TcpClientStream;
use hickory_server::net::udp::UdpClientStream;
use hickory_server::net::xfer::{DnsExchange, DnsHandle, FirstAnswer};
use hickory_server::net::NetError;
use tracing::{debug, warn};

use super::connected_udp::ConnectedUdpRuntime;
use crate::metrics::Metrics;

/// The UDP payload we advertise upstream: the DNS Flag Day 2020 size, which avoids IP
/// fragmentation; larger answers come back truncated and are fetched over TCP.
pub(super) const UPSTREAM_PAYLOAD: u16 = 1232;
/// Log "every upstream failed" at most this often; the metrics count every failure.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// An upstream that timed out or failed at the network level is tried after the others for
/// this long, so a dead first upstream costs one timeout per period, not one per cache miss.
pub(super) const HOLD_DOWN: Duration = Duration::from_secs(30);

/// Why one upstream attempt did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    /// No usable answer within the per-upstream timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The network layer failed (port unreachable, connection refused or reset, decode
    /// error).
    #[error("{0}")]
    Net(#[from] NetError),
    /// The upstream answered with an rcode that means "ask someone else".
    #[error("answered {0}")]
    Rcode(ResponseCode),
    /// The reply was not an answer to the question asked.
    #[error("reply does not match the question")]
    Mismatch,
}

/// Every upstream failed; the client gets SERVFAIL.
#[derive(Debug, thiserror::Error)]
#[error("every upstream failed")]
pub(super) struct AllFailed;

/// The upstream resolvers in the order they are tried.
pub(super) struct Upstreams {
    upstreams: Vec<Upstream>,
    timeout: Duration,
    provider: ConnectedUdpRuntime,
    metrics: Arc<Metrics>,
    started: Instant,
    /// Milliseconds after `started` of the last "every upstream failed" warning.
    last_warning: AtomicU64,
}

struct Upstream {
    addr: SocketAddr,
    /// Shared UDP exchange: each query still gets its own socket, port and ID.
    udp: DnsExchange<ConnectedUdpRuntime>,
    /// Milliseconds after `Upstreams::started` until which this upstream is tried last.
    held_until: AtomicU64,
}

impl Upstreams {
    /// Sets up one UDP exchange per upstream. Must run inside the tokio runtime (the exchange
    /// spawns its background task there).
    pub(super) fn new(addrs: &[SocketAddr], timeout: Duration, metrics: Arc<Metrics>) -> Self {
        let provider = ConnectedUdpRuntime::default();
        let upstreams = addrs
            .iter()
            .map(|addr| Upstream {
                addr: *addr,
                udp: UdpClientStream::builder(*addr, provider.clone())
                    .with_timeout(Some(timeout))
                    .exchange(),
                held_until: AtomicU64::new(0),
            })
            .collect();
        Self {
            upstreams,
            timeout,
            provider,
            metrics,
            started: Instant::now(),
            last_warning: AtomicU64::new(0),
        }
    }

    /// The upstream addresses, in order.
    pub(super) fn addrs(&self) -> Vec<SocketAddr> {
        self.upstreams
            .iter()
            .map(|upstream| upstream.addr)
            .collect()
    }

    /// Asks each upstream in turn until one answers NOERROR or NXDOMAIN: the configured
    /// order, except that upstreams held down after a recent failure come last.
    pub(super) async fn exchange(
        &self,
        question: &Query,
        dnssec_ok: bool,
        checking_disabled: bool,
    ) -> Result<(Message, Vec<u8>), AllFailed> {
        let now = self.now_ms();
        let mut order: Vec<&Upstream> = self.upstreams.iter().collect();
        order.sort_by_key(|upstream| upstream.held_until.load(Ordering::Relaxed) > now);
        for upstream in order {
            let attempt = self.ask(upstream, question, dnssec_ok, checking_disabled);
            let result = match tokio::time::timeout(self.timeout, attempt).await {
                Ok(result) => result,
                Err(_) => Err(AttemptError::Timeout(self.timeout)),
            };
            match result {
                Ok(answer) => {
                    upstream.held_until.store(0, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(error) => {
                    self.metrics
                        .upstream_failures
                        .fetch_add(1, Ordering::Relaxed);
                    if matches!(error, AttemptError::Timeout(_) | AttemptError::Net(_)) {
                        let until = self.now_ms() + HOLD_DOWN.as_millis() as u64;
                        upstream.held_until.store(until, Ordering::Relaxed);
                    }
                    debug!(upstream = %upstream.addr, name = %question.name(), qtype = %question.query_type(), %error, "upstream attempt failed");
                }
            }
        }
        self.warn_all_failed(question);
        Err(AllFailed)
    }

    /// One upstream: UDP first, TCP again when the UDP answer is truncated.
    async fn ask(
        &self,
        upstream: &Upstream,
        question: &Query,
        dnssec_ok: bool,
        checking_disabled: bool,
    ) -> Result<(Message, Vec<u8>), AttemptError> {
        let query = request(question, dnssec_ok, checking_disabled);
        let (mut response, mut bytes) = upstream.udp.send(query).first_answer().await?.into_parts();
        check(question, &response)?;
        if response.metadata.truncation {
            let tcp = TcpClientStream::exchange(
                upstream.addr,
                None,
                self.timeout,
                Some(1),
                self.provider.clone(),
            )
            .await?;
            // A new request: the TCP multiplexer assigns its own random ID.
            let query = request(question, dnssec_ok, checking_disabled);
            (response, bytes) = tcp.send(query).first_answer().await?.into_parts();
            check(question, &response)?;
        }
        match response.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => Ok((response, bytes)),
            other => Err(AttemptError::Rcode(other)),
        }
    }

    /// Milliseconds since these upstreams were set up.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn warn_all_failed(&self, question: &Query) {
        let now = self.now_ms();
        let last = self.last_warning.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_INTERVAL.as_millis() as u64;
        if due
            && self
                .last_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(name = %question.name(), qtype = %question.query_type(), upstreams = ?self.addrs(), "every upstream failed; answering SERVFAIL (repeats within {WARN_INTERVAL:?} are not logged)");
        }
    }
}

/// The query we send: a new random ID every time (never the client's), RD=1, the client's
/// DO and CD, AD=1 to learn whether the upstream validated (RFC 6840 §5.7).
fn request(question: &Query, dnssec_ok: bool, checking_disabled: bool) -> DnsRequest {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.metadata.authentic_data = true;
    message.metadata.checking_disabled = checking_disabled;
    message.add_query(question.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(UPSTREAM_PAYLOAD)
        .set_dnssec_ok(dnssec_ok);
    message.set_edns(edns);
    let mut options = DnsRequestOptions::default();
    options.edns_payload_len = UPSTREAM_PAYLOAD;
    options.edns_set_dnssec_ok = dnssec_ok;
    DnsRequest::new(message, options)
}

/// A reply must be a response to a standard query with exactly our question (names compare
/// case-insensitively). hickory's UDP stream already drops others while waiting; over TCP
/// this is the only check besides the ID.
pub(super) fn check(question: &Query, response: &Message) -> Result<(), AttemptError> {
    let matches = response.metadata.message_type == MessageType::Response
        && response.metadata.op_code == OpCode::Query
        && matches!(response.queries.as_slice(), [only] if only == question);
    if matches {
        Ok(())
    } else {
        Err(AttemptError::Mismatch)
    }
}
