//! The UDP fast path: one blocking socket per thread (SO_REUSEPORT), answering in place.
//!
//! Each worker owns its receive and send buffers and its [`Scratch`], so answering a local
//! name allocates nothing, spawns nothing and takes no lock. Every local response passes the
//! response rate limiter ([`super::rrl`], shared by the workers, lock-free) before it is sent.
//! Forwarded names are handed to the tokio runtime and answered from there through the same
//! socket.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::debug;

use super::respond::{ForwardLimits, Outcome, Responder, Scratch, Transport};
use super::rrl::{self, RateLimiter, Verdict};
use super::transfer::{ixfr_over_udp, signed};
use super::Forwarding;
use crate::drain::Drain;
use crate::metrics::Metrics;

/// How often a blocked receive wakes up to check for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// Receive buffer: the largest UDP query we accept.
const RECV_BUF: usize = 4096;

/// Binds `workers` UDP sockets on `addr` with SO_REUSEPORT (the first one picks the port when
/// `addr` has port 0, the others join it).
pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(workers);
    let mut bound = addr;
    for _ in 0..workers {
        let socket = Socket::new(Domain::for_address(bound), Type::DGRAM, Some(Protocol::UDP))?;
        if bound.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_port(true)?;
        // Larger kernel buffers absorb bursts; the kernel caps them at net.core.*mem_max.
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
        socket.bind(&bound.into())?;
        let socket: UdpSocket = socket.into();
        bound = socket.local_addr()?;
        socket.set_read_timeout(Some(SHUTDOWN_POLL))?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Runs one worker thread per socket until the drain starts.
pub fn spawn_workers(
    sockets: Vec<UdpSocket>,
    responder: Responder,
    forwarding: Forwarding,
    metrics: Arc<Metrics>,
    drain: Drain,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    // One flow table for every socket and address: a flow's budget is the server's.
    let limiter = Arc::new(RateLimiter::default());
    sockets
        .into_iter()
        .enumerate()
        .map(|(index, socket)| {
            let worker = Worker {
                socket: Arc::new(socket),
                responder: responder.clone(),
                forwarding: forwarding.clone(),
                metrics: metrics.clone(),
                drain: drain.clone(),
                limiter: limiter.clone(),
            };
            std::thread::Builder::new()
                .name(format!("udp-{index}"))
                .spawn(move || worker.run())
        })
        .collect()
}

struct Worker {
    socket: Arc<UdpSocket>,
    responder: Responder,
    forwarding: Forwarding,
    metrics: Arc<Metrics>,
    drain: Drain,
    limiter: Arc<RateLimiter>,
}

impl Worker {
    fn run(self) {
        let mut request = vec![0u8; RECV_BUF];
        let mut response = Vec::with_capacity(4096);
        let mut scratch = Scratch::default();
        while !self.drain.started() {
            let (len, peer) = match self.socket.recv_from(&mut request) {
                Ok(received) => received,
                Err(error)
                    if matches!(
                        error.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(error) => {
                    // ICMP errors from earlier sends surface here on some systems; keep going.
                    debug!(%error, "udp receive failed");
                    continue;
                }
            };
            let started = Instant::now();
            let message = &request[..len];
            match self.responder.respond(
                message,
                peer.ip(),
                Transport::Udp,
                &mut response,
                &mut scratch,
            ) {
                Outcome::Reply => {
                    if !self.rate_limit(peer, &mut response, started) {
                        continue;
                    }
                    self.metrics.observe_answer(&response, started);
                    if let Err(error) = self.socket.send_to(&response, peer) {
                        debug!(%error, %peer, "udp send failed");
                    }
                }
                Outcome::Signed => {
                    let peer_ip = peer.ip();
                    let signed = signed(
                        &self.responder,
                        message,
                        peer_ip,
                        Transport::Udp,
                        &mut scratch,
                    );
                    if let Some(response) = signed {
                        self.metrics.observe_answer(&response, started);
                        if let Err(error) = self.socket.send_to(&response, peer) {
                            debug!(%error, %peer, "udp send failed");
                        }
                    }
                }
                Outcome::Transfer => {
                    let mut response = ixfr_over_udp(&self.responder, message, peer.ip());
                    if response.is_empty() || !self.rate_limit(peer, &mut response, started) {
                        continue;
                    }
                    if let Err(error) = self.socket.send_to(&response, peer) {
                        debug!(%error, %peer, "udp send failed");
                    }
                }
                Outcome::Ignore => self.metrics.observe_ignored(),
                Outcome::Forward => self.forward(message, peer, scratch.forward_limits()),
            }
        }
    }

    /// Applies response rate limiting to a local response: false when it is dropped; a
    /// slipped one is cut to its truncated form in place.
    fn rate_limit(&self, peer: SocketAddr, response: &mut Vec<u8>, now: Instant) -> bool {
        let verdict = self.responder.with_policy(|policy| {
            self.limiter.check(
                &policy.rrl,
                &policy.allow_recursion,
                peer.ip(),
                response,
                now,
            )
        });
        match verdict {
            Verdict::Send => true,
            Verdict::Slip => {
                rrl::slip(response);
                self.metrics.rrl_slipped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Verdict::Drop => {
                self.metrics.rrl_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Forwarding awaits upstreams: do it on the runtime, answer through a socket clone.
    fn forward(&self, message: &[u8], peer: SocketAddr, limits: ForwardLimits) {
        // A cache hit is answered right here: no task, no hand-off to another thread.
        let started = Instant::now();
        if let Some(response) = self.forwarding.resolve_cached(message, limits.clone()) {
            self.metrics.observe_answer(&response, started);
            if let Err(error) = self.socket.send_to(&response, peer) {
                debug!(%error, %peer, "udp send failed");
            }
            return;
        }
        let socket = self.socket.clone();
        let query = message.to_vec();
        let forwarding = self.forwarding.clone();
        let metrics = self.metrics.clone();
        let in_flight = self.drain.track();
        self.forwarding.runtime.spawn(async move {
            let _in_flight = in_flight;
            let started = Instant::now();
            if let Some(response) = forwarding.resolve(&query, limits).await {
                metrics.observe_answer(&response, started);
                if let Err(error) = socket.send_to(&response, peer) {
                    debug!(%error, %peer, "udp send failed");
                }
            }
        });
    }
}
