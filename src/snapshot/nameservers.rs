//! The name servers the registry zone's apex names: the NS RRset, the SOA MNAME (the first
//! one), and for the names inside the domain their addresses, as glue and as answers.
//!
//! Everything here is a function of the configuration alone, so every replica given the same
//! `--nameserver` list answers the same NS, SOA (serial aside) and glue, whatever its own
//! listen addresses: a parent zone can delegate the domain to all of them at once.

use std::net::IpAddr;

use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::ProtoError;

use super::address::ip_record;
use super::build::{BuildError, ZoneOptions};
use crate::zone::ZoneBuilder;

/// The zone's builder with its apex: the SOA (serial `serial`, MNAME the first name server),
/// the NS RRset naming the name servers, and the addresses of those inside the domain as glue
/// and as their own answers (see the module comment).
pub(super) fn apex(
    domain: &Name,
    serial: u32,
    options: &ZoneOptions,
) -> Result<ZoneBuilder, BuildError> {
    let servers = options.nameservers.servers(domain)?;
    let primary = match servers.first() {
        Some(server) => server.name.clone(),
        None => Name::from_ascii("ns")?.append_domain(domain)?,
    };
    let soa = Record::from_rdata(
        domain.clone(),
        options.negative_ttl,
        RData::SOA(SOA::new(
            primary,
            Name::from_ascii("hostmaster")?.append_domain(domain)?,
            serial,
            3600,
            600,
            86400,
            options.negative_ttl,
        )),
    );
    let mut zone = ZoneBuilder::new(domain, soa, serial);
    add_to(&mut zone, domain, &servers, options.node_ttl);
    Ok(zone)
}

/// Which name servers the apex names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameServers {
    /// No `--nameserver`: one server, `ns.<domain>`, with the listen addresses (unspecified
    /// ones left out).
    Listen(Vec<IpAddr>),
    /// `--nameserver NAME=IP`: never empty, in the order given, one entry per name.
    Named(Vec<NameServer>),
}

/// One name server: its name (absolute, lower case) and, when the name is inside the
/// registry domain, its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameServer {
    /// The server's name, as NS and SOA give it.
    pub name: Name,
    /// Its addresses in the order given: glue and answers for a name inside the domain;
    /// empty for a name outside it, whose addresses its own zone serves.
    pub addresses: Vec<IpAddr>,
}

impl NameServers {
    /// The servers as the apex names them, for the registry domain `domain`.
    pub fn servers(&self, domain: &Name) -> Result<Vec<NameServer>, ProtoError> {
        Ok(match self {
            Self::Listen(addresses) => vec![NameServer {
                name: Name::from_ascii("ns")?.append_domain(domain)?,
                addresses: addresses.clone(),
            }],
            Self::Named(servers) => servers.clone(),
        })
    }

    /// The servers as text, one item per name and address, to tell zone caches built with
    /// other name servers apart. The default form is a plain address list, as it always was.
    pub(super) fn key_items(&self) -> Vec<String> {
        match self {
            Self::Listen(addresses) => addresses.iter().map(ToString::to_string).collect(),
            Self::Named(servers) => servers
                .iter()
                .flat_map(|server| {
                    let name = server.name.to_ascii();
                    let with_addresses = server
                        .addresses
                        .iter()
                        .map(move |ip| format!("{name}={ip}"));
                    let bare = server.addresses.is_empty().then(|| server.name.to_ascii());
                    with_addresses.chain(bare).collect::<Vec<_>>()
                })
                .collect(),
        }
    }
}

/// Adds the apex NS RRset of `servers` to `zone` (glue: the addresses of the names inside
/// `domain`), and those names' own A and AAAA answers.
pub(super) fn add_to(zone: &mut ZoneBuilder, domain: &Name, servers: &[NameServer], ttl: u32) {
    let ns: Vec<Record> = servers
        .iter()
        .map(|server| Record::from_rdata(domain.clone(), ttl, RData::NS(NS(server.name.clone()))))
        .collect();
    // Glue only for names inside the domain (RFC 9471): the rest are another zone's data.
    let inside: Vec<&NameServer> = servers
        .iter()
        .filter(|server| domain.zone_of(&server.name))
        .collect();
    let glue: Vec<Record> = inside
        .iter()
        .flat_map(|server| {
            server
                .addresses
                .iter()
                .map(|ip| ip_record(&server.name, ttl, *ip))
        })
        .collect();
    zone.add_answer(domain, RecordType::NS, &ns, &glue);
    for server in inside {
        for rtype in [RecordType::A, RecordType::AAAA] {
            let records: Vec<Record> = glue
                .iter()
                .filter(|r| r.record_type() == rtype && r.name == server.name)
                .cloned()
                .collect();
            if !records.is_empty() {
                zone.add_answer(&server.name, rtype, &records, &[]);
            }
        }
    }
}
