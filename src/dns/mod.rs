//! DNS serving: the only module that names hickory-server (its client side, for forwarding).
//!
//! UDP is served by our own worker threads from prepared answers ([`udp`]); TCP by our own
//! accept loop and a task per connection ([`tcp`]) with a [`TcpHandler`], which asks the same
//! [`Responder`]. Names outside the served zones are forwarded ([`forward`]).

mod flags;
pub mod forward;
pub mod query;
pub mod respond;
pub mod rrl;
pub mod tcp;
pub mod tcp_clients;
pub mod udp;

use std::sync::Arc;

pub use respond::{AnswerPolicy, ForwardLimits, Outcome, Responder, Scratch, Transport};
pub use rrl::{RateLimiter, RrlSettings, Verdict};
pub use tcp::TcpHandler;
pub use tcp_clients::TcpClients;

use forward::Forwarder;

/// The forwarder and the runtime its futures run on (UDP workers are plain threads).
#[derive(Clone, Debug)]
pub struct Forwarding {
    /// Runtime for upstream exchanges.
    pub runtime: tokio::runtime::Handle,
    /// The forwarder; `None` when forwarding is off.
    pub forwarder: Option<Arc<Forwarder>>,
}

impl Forwarding {
    /// The response from the cache when the answer is cached and can be had without waiting;
    /// `None` sends the query down the asynchronous path.
    pub fn resolve_cached(&self, query: &[u8], limits: ForwardLimits) -> Option<Vec<u8>> {
        self.forwarder.as_ref()?.resolve_cached(query, limits)
    }

    /// Forwards a query and returns the response for the client, or `None` to stay silent.
    pub async fn resolve(&self, query: &[u8], limits: ForwardLimits) -> Option<Vec<u8>> {
        let forwarder = self.forwarder.as_ref()?;
        forwarder.resolve(query, limits).await
    }
}
