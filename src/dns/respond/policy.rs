//! What answering depends on: the [`AnswerPolicy`] in force (swapped whole on SIGHUP), the
//! limits a forwarded reply keeps to, and each worker's [`Scratch`].

use std::sync::Arc;

use ipnet::IpNet;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::super::identity::ServerIdentity;
use super::super::rrl::RrlSettings;
use super::super::transfer::TransferPolicy;
use super::PLAIN_UDP_LIMIT;

/// Answering policy: set at start-up and replaced whole by a SIGHUP reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerPolicy {
    /// Largest UDP response, whatever the client advertises.
    pub max_udp_size: u16,
    /// Reorder A/AAAA answers per query.
    pub shuffle: bool,
    /// Forwarding is configured (there are upstreams).
    pub forwarding: bool,
    /// Clients allowed to recurse (RA=1, forwarded names answered); also exempt from RRL.
    pub allow_recursion: Vec<IpNet>,
    /// Response rate limiting of UDP answers to everyone else.
    pub rrl: RrlSettings,
    /// What NSID and the CHAOS names tell (`--identity`, `--version-string`).
    pub identity: ServerIdentity,
    /// Who may transfer the zones (`--allow-transfer`, `--tsig-key`).
    pub transfer: TransferPolicy,
}

/// The sizes a forwarded reply keeps to, fixed by the answering policy in force when the
/// query arrived, so that local and forwarded answers follow the same `max-udp-size`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardLimits {
    /// The reply is at most this long (TC=1 beyond).
    pub limit: usize,
    /// The UDP payload size advertised in the reply's OPT record.
    pub advertised: u16,
    /// The NSID to put in the reply's OPT record: the client asked and it is turned on.
    pub nsid: Option<Arc<str>>,
}

/// Per-worker state: the random source for shuffling. Not shared, so no lock.
#[derive(Debug)]
pub struct Scratch {
    pub(super) rng: SmallRng,
    /// The limits of the last query answered with [`super::Outcome::Forward`], so the caller does
    /// not read the query or the policy again to find them.
    pub(super) forward: ForwardLimits,
}

impl Scratch {
    /// The limits of the query last handed back as [`super::Outcome::Forward`].
    pub fn forward_limits(&self) -> ForwardLimits {
        self.forward.clone()
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            rng: SmallRng::from_os_rng(),
            forward: ForwardLimits {
                limit: PLAIN_UDP_LIMIT,
                advertised: PLAIN_UDP_LIMIT as u16,
                nsid: None,
            },
        }
    }
}
