//! `--nameserver NAME=IP`: the name servers the registry zone's apex names, validated into
//! [`NameServers`].
//!
//! Rules (docs/dns.md, "Name servers"): a name inside the domain needs an address (it is its
//! glue); a name outside it may come with or without one, and its address is not served (its
//! own zone serves it). A name inside the domain must stay out of the registry's name forms,
//! so that no registry name can ever answer in its place or it in a registry name's place.

use std::net::{IpAddr, SocketAddr};

use hickory_proto::rr::Name;

use super::ConfigError;
use crate::snapshot::{NameServer, NameServers};

/// The flag's (and key's) name.
const KEY: &str = "nameserver";

/// Labels of the registry's name forms (Consul's `agent/dns.go`: services, nodes, addresses,
/// prepared queries, connect and ingress names, locality labels), and every `_label` (RFC 2782
/// forms). A name server name inside the domain may not use any of them.
const RESERVED_LABELS: [&str; 10] = [
    "service", "node", "addr", "query", "connect", "ingress", "virtual", "dc", "peer", "ap",
];

/// The name servers of `texts` (`NAME=IP` each) for `domain`; without any, `ns.<domain>` with
/// the `listen` addresses.
pub(super) fn name_servers(
    texts: &[String],
    domain: &Name,
    listen: &[SocketAddr],
) -> Result<NameServers, ConfigError> {
    if texts.is_empty() {
        return Ok(NameServers::Listen(
            listen
                .iter()
                .map(SocketAddr::ip)
                .filter(|ip| !ip.is_unspecified())
                .collect(),
        ));
    }
    let mut servers: Vec<NameServer> = Vec::new();
    for text in texts {
        let (name, address) = parse(text, domain)?;
        let at = match servers.iter().position(|server| server.name == name) {
            Some(at) => at,
            None => {
                servers.push(NameServer {
                    name,
                    addresses: Vec::new(),
                });
                servers.len() - 1
            }
        };
        if let Some(ip) = address {
            if !servers[at].addresses.contains(&ip) {
                servers[at].addresses.push(ip);
            }
        }
    }
    for server in &servers {
        if domain.zone_of(&server.name) && server.addresses.is_empty() {
            return Err(ConfigError::new(
                KEY,
                format!(
                    "{} is inside {domain} and needs an address (NAME=IP): it is the glue \
                     a parent zone delegates with",
                    server.name
                ),
            ));
        }
    }
    Ok(NameServers::Named(servers))
}

/// One `NAME=IP` (or `NAME` alone, outside the domain): the absolute lower-case name, and the
/// address kept for it (none for a name outside the domain).
fn parse(text: &str, domain: &Name) -> Result<(Name, Option<IpAddr>), ConfigError> {
    let (name_text, address_text) = match text.split_once('=') {
        Some((name, address)) => (name.trim(), Some(address.trim())),
        None => (text.trim(), None),
    };
    let error = |message: String| ConfigError::new(KEY, format!("{text:?}: {message}"));
    let mut name = Name::from_ascii(name_text)
        .map_err(|e| error(format!("{name_text:?} is not a domain name: {e}")))?
        .to_lowercase();
    name.set_fqdn(true);
    if name.num_labels() == 0 {
        return Err(error("the root cannot be a name server".into()));
    }
    let address = match address_text {
        Some(address) => {
            let ip: IpAddr = address
                .parse()
                .map_err(|_| error(format!("{address:?} is not an IP address")))?;
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(error(format!("{ip} cannot be a name server's address")));
            }
            Some(ip)
        }
        None => None,
    };
    if !domain.zone_of(&name) {
        // Another zone's name: its address is that zone's data, never glue here (RFC 9471).
        return Ok((name, None));
    }
    if name == *domain {
        return Err(error(format!(
            "a name server must be named below {domain}, not the domain itself"
        )));
    }
    let below = usize::from(name.num_labels() - domain.num_labels());
    let reserved = name.iter().take(below).find(|label| {
        label.starts_with(b"_")
            || RESERVED_LABELS
                .iter()
                .any(|reserved| label.eq_ignore_ascii_case(reserved.as_bytes()))
    });
    if let Some(label) = reserved {
        return Err(error(format!(
            "label {:?} belongs to the registry's names: pick a name such as ns1.{domain}",
            String::from_utf8_lossy(label)
        )));
    }
    Ok((name, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(texts: &[&str]) -> Result<NameServers, ConfigError> {
        let texts: Vec<String> = texts.iter().map(|t| (*t).to_string()).collect();
        name_servers(&texts, &"consul.".parse().unwrap(), &[])
    }

    #[test]
    fn groups_addresses_by_name_in_the_order_given() {
        let NameServers::Named(servers) = parse_all(&[
            "NS2.consul=10.0.0.2",
            "ns1.consul.=10.0.0.1",
            "ns2.consul.=fd00::2",
            "ns2.consul.=10.0.0.2",
            "dns.example.net.=192.0.2.1",
            "dns2.example.net",
        ])
        .unwrap() else {
            panic!("named servers expected");
        };
        let got: Vec<(String, Vec<String>)> = servers
            .iter()
            .map(|s| {
                let addresses = s.addresses.iter().map(ToString::to_string).collect();
                (s.name.to_ascii(), addresses)
            })
            .collect();
        let want = |name: &str, addresses: &[&str]| {
            let addresses = addresses.iter().map(|a| (*a).to_string()).collect();
            (name.to_string(), addresses)
        };
        assert_eq!(
            got,
            [
                want("ns2.consul.", &["10.0.0.2", "fd00::2"]),
                want("ns1.consul.", &["10.0.0.1"]),
                want("dns.example.net.", &[]),
                want("dns2.example.net.", &[]),
            ]
        );
    }

    #[test]
    fn rejects_what_cannot_be_served() {
        for bad in [
            "ns1.consul.",
            "ns1.consul.=not-an-ip",
            "ns1.consul.=0.0.0.0",
            "consul.=10.0.0.1",
            "web.service.consul.=10.0.0.1",
            "dns1.node.dc1.consul.=10.0.0.1",
            "_ns._tcp.consul.=10.0.0.1",
            "a..b=10.0.0.1",
        ] {
            let error = parse_all(&[bad]).unwrap_err();
            assert_eq!(error.key, "nameserver", "{bad}");
        }
    }

    #[test]
    fn without_the_flag_ns_names_the_listen_addresses() {
        let listen: Vec<SocketAddr> =
            vec!["0.0.0.0:53".parse().unwrap(), "[::1]:53".parse().unwrap()];
        let servers = name_servers(&[], &"consul.".parse().unwrap(), &listen).unwrap();
        assert_eq!(servers, NameServers::Listen(vec!["::1".parse().unwrap()]));
    }
}
