//! DNS serving: the only module that names hickory-server (its client side, for forwarding).
//!
//! UDP is served by our own worker threads from prepared answers ([`udp`]); TCP by our own
//! accept loop and a task per connection ([`tcp`]) with a [`TcpHandler`], which asks the same
//! [`Responder`]. Names outside the served zones are forwarded ([`forward`]).

mod flags;
pub mod forward;
pub mod identity;
pub mod query;
pub mod respond;
pub mod rrl;
pub mod tcp;
pub mod tcp_clients;
pub mod transfer;
pub mod udp;

use std::sync::Arc;

pub use identity::ServerIdentity;
pub use respond::{AnswerPolicy, ForwardLimits, Outcome, Responder, Scratch, Transport};
pub use rrl::{RateLimiter, RrlSettings, Verdict};
pub use tcp::TcpHandler;
pub use tcp_clients::TcpClients;
pub use transfer::{TransferPolicy, TsigKey};

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
        let nsid = limits.nsid.clone();
        let limit = limits.limit;
        let response = self.forwarder.as_ref()?.resolve_cached(query, limits)?;
        Some(with_nsid(response, nsid.as_deref(), limit))
    }

    /// Forwards a query and returns the response for the client, or `None` to stay silent.
    pub async fn resolve(&self, query: &[u8], limits: ForwardLimits) -> Option<Vec<u8>> {
        let forwarder = self.forwarder.as_ref()?;
        let nsid = limits.nsid.clone();
        let limit = limits.limit;
        let response = forwarder.resolve(query, limits).await?;
        Some(with_nsid(response, nsid.as_deref(), limit))
    }
}

/// A forwarded reply with the NSID the client asked for, when it fits: the forwarder's
/// replies end with our OPT record, as local ones do.
fn with_nsid(mut response: Vec<u8>, nsid: Option<&str>, limit: usize) -> Vec<u8> {
    if let Some(nsid) = nsid {
        identity::append_nsid(&mut response, nsid.as_bytes(), limit);
    }
    response
}
