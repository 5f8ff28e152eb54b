//! The UDP fast path: one blocking socket per thread (SO_REUSEPORT), answering in place.
//!
//! Each worker owns its receive and send buffers and its [`Scratch`], so answering a local
//! name allocates nothing, spawns nothing and takes no lock. Forwarded names are handed to
//! the tokio runtime and answered from there through the same socket.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::debug;

use super::respond::{Outcome, Responder, Scratch, Transport};
use super::Forwarding;
use crate::metrics::Metrics;

/// How often a blocked receive wakes up to check for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// Receive buffer: the largest UDP query we accept.
const RECV_BUF: usize = 4096;

/// Counts one forwarded query from when it is handed to the runtime until its task ends.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

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

/// Runs one worker thread per socket until `stop` is set.
pub fn spawn_workers(
    sockets: Vec<UdpSocket>,
    responder: Responder,
    forwarding: Forwarding,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(index, socket)| {
            let worker = Worker {
                socket: Arc::new(socket),
                responder: responder.clone(),
                forwarding: forwarding.clone(),
                metrics: metrics.clone(),
                stop: stop.clone(),
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
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(self) {
        let mut request = vec![0u8; RECV_BUF];
        let mut response = Vec::with_capacity(4096);
        let mut scratch = Scratch::default();
        while !self.stop.load(Ordering::Relaxed) {
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
            let started = std::time::Instant::now();
            let message = &request[..len];
            match self.responder.respond(
                message,
                peer.ip(),
                Transport::Udp,
                &mut response,
                &mut scratch,
            ) {
                Outcome::Reply => {
                    self.metrics.observe_answer(&response, started);
                    if let Err(error) = self.socket.send_to(&response, peer) {
                        debug!(%error, %peer, "udp send failed");
                    }
                }
                Outcome::Ignore => self.metrics.observe_ignored(),
                Outcome::Forward => self.forward(message, peer, scratch.forward_limit()),
            }
        }
    }

    /// Forwarding awaits upstreams: do it on the runtime, answer through a socket clone.
    fn forward(&self, message: &[u8], peer: SocketAddr, limit: usize) {
        // A cache hit is answered right here: no task, no hand-off to another thread.
        let started = std::time::Instant::now();
        if let Some(response) = self.forwarding.resolve_cached(message, limit) {
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
        let in_flight = InFlight::enter(&self.forwarding.udp_in_flight);
        self.forwarding.runtime.spawn(async move {
            let _in_flight = in_flight;
            let started = std::time::Instant::now();
            if let Some(response) = forwarding.resolve(&query, limit).await {
                metrics.observe_answer(&response, started);
                if let Err(error) = socket.send_to(&response, peer) {
                    debug!(%error, %peer, "udp send failed");
                }
            }
        });
    }
}
