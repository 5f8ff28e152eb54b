//! Forwarding of names outside the served zones to upstream resolvers.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// Settings of the forwarder.
#[derive(Clone, Debug)]
pub struct ForwardConfig {
    /// Upstreams, tried in order.
    pub upstreams: Vec<SocketAddr>,
    /// Per-upstream timeout.
    pub timeout: Duration,
}

/// Relays queries to upstream resolvers.
#[derive(Debug)]
pub struct Forwarder {
    config: ForwardConfig,
}

impl Forwarder {
    /// A forwarder over `config.upstreams`.
    pub fn new(config: ForwardConfig) -> Self {
        Self { config }
    }

    /// The client's query relayed upstream; the response as bytes for the client.
    pub async fn resolve(&self, query: &[u8], _limit: usize) -> Option<Vec<u8>> {
        for upstream in &self.config.upstreams {
            let bind: SocketAddr = if upstream.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            }
            .parse()
            .ok()?;
            let socket = UdpSocket::bind(bind).await.ok()?;
            socket.send_to(query, upstream).await.ok()?;
            let mut buf = vec![0u8; 65535];
            if let Ok(Ok((len, _))) =
                tokio::time::timeout(self.config.timeout, socket.recv_from(&mut buf)).await
            {
                buf.truncate(len);
                return Some(buf);
            }
        }
        None
    }
}
