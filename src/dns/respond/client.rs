//! What a client may get: recursion (by `--allow-recursion`) and the size of its response.

use std::net::IpAddr;

use super::{AnswerPolicy, ParsedQuery, Transport, MAX_MESSAGE_LEN, PLAIN_UDP_LIMIT};

/// True when forwarding is configured and `client` is in `--allow-recursion`.
pub(super) fn may_recurse(policy: &AnswerPolicy, client: IpAddr) -> bool {
    let client = canonical(client);
    policy.forwarding
        && policy
            .allow_recursion
            .iter()
            .any(|net| net.contains(&client))
}

/// The response size limit: 64 KiB over TCP; over UDP 512 bytes without EDNS, else the
/// advertised size capped at `max_udp_size` (never below 512).
pub(super) fn limit(policy: &AnswerPolicy, query: &ParsedQuery<'_>, transport: Transport) -> usize {
    match (transport, query.edns) {
        (Transport::Tcp, _) => MAX_MESSAGE_LEN,
        (Transport::Udp, None) => PLAIN_UDP_LIMIT,
        (Transport::Udp, Some(edns)) => usize::from(edns.payload)
            .min(usize::from(policy.max_udp_size))
            .max(PLAIN_UDP_LIMIT),
    }
}

/// IPv4-mapped IPv6 clients count as IPv4: they match IPv4 networks and prefixes.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}
