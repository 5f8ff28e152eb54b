//! Which address Consul's DNS gives an instance or a node (`translateAddressAccept`: tagged
//! addresses, then the service's, then the node's), and the small conversions from addresses to
//! owner names and records.

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record};

use super::names::is_hostname;
use crate::registry::{HealthEntry, Node};

/// Where an address came from decides the SRV target form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// The service's own address.
    Service,
    /// The node's address.
    Node,
}

/// An instance's address as the registry gave it.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Address {
    /// An IP address.
    Ip(IpAddr),
    /// A host name.
    Host(String),
}

/// Which address family a question asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// A questions.
    V4,
    /// AAAA questions.
    V6,
    /// SRV: either, IPv6 first.
    Any,
}

/// Consul's hex form of an address: 8 digits for IPv4, 32 for IPv6, lower case.
pub(crate) fn addr_label(ip: IpAddr) -> String {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The address Consul picks for an instance and a query family, and whether it came from the
/// service or the node: the service's tagged `lan_ipv6`/`lan_ipv4`, then `Service.Address`,
/// then the same on the node. No fallback from an unusable service address to the node.
pub(super) fn service_address(entry: &HealthEntry, family: Family) -> Option<(Address, Origin)> {
    let service = &entry.service;
    let tagged = |key: &str| {
        service
            .tagged_addresses
            .get(key)
            .map(|t| t.address.as_str())
            .filter(|a| !a.is_empty())
    };
    if let Some(address) = translate(
        tagged("lan_ipv4"),
        tagged("lan_ipv6"),
        &service.address,
        family,
    ) {
        return Some((address, Origin::Service));
    }
    node_address(&entry.node, family).map(|address| (address, Origin::Node))
}

pub(super) fn node_address(node: &Node, family: Family) -> Option<Address> {
    let tagged = |key: &str| {
        node.tagged_addresses
            .get(key)
            .map(|address| address.as_str())
            .filter(|a| !a.is_empty())
    };
    translate(
        tagged("lan_ipv4"),
        tagged("lan_ipv6"),
        &node.address,
        family,
    )
}

/// `translateAddressAccept`: IPv6 tagged address if accepted, then IPv4, then the default.
fn translate(v4: Option<&str>, v6: Option<&str>, default: &str, family: Family) -> Option<Address> {
    let pick = match family {
        Family::V6 => v6,
        Family::V4 => v4,
        Family::Any => v6.or(v4),
    };
    let text = pick.unwrap_or(default).trim();
    if text.is_empty() {
        return None;
    }
    Some(match text.parse::<IpAddr>() {
        Ok(ip) => Address::Ip(ip),
        Err(_) => Address::Host(text.to_string()),
    })
}

pub(super) fn family_matches(ip: IpAddr, family: Family) -> bool {
    matches!(
        (ip, family),
        (IpAddr::V4(_), Family::V4) | (IpAddr::V6(_), Family::V6) | (_, Family::Any)
    )
}

pub(super) fn ip_record(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), ttl, data)
}

/// `host` as an absolute name, when it is a valid hostname ([`is_hostname`]).
pub(super) fn fqdn(host: &str) -> Option<Name> {
    if !is_hostname(host) {
        return None;
    }
    let mut name = Name::from_ascii(host).ok()?;
    name.set_fqdn(true);
    Some(name)
}

pub(super) fn datacenter_of(node: &Node, local_dc: &str) -> String {
    if node.datacenter.is_empty() {
        local_dc.to_string()
    } else {
        node.datacenter.to_ascii_lowercase().into()
    }
}
