//! What of the registry DNS serves, and under which name. A service is served under the name
//! its entries give (`Service.Service`, not the registry file's key), case-insensitively (as
//! Consul's catalog indexes names), and only when that name is a single DNS label, as Consul's
//! DNS interface does: otherwise a service registered as `v1.web` or `_web._tcp` would answer
//! another service's tag or RFC 2782 lookups. Tags, node names and hostnames follow the same
//! rule. What is left out is counted, with an example, for the log and `/health`.

use std::collections::BTreeMap;

use super::address::{service_address, Address, Family};
use super::health::HealthFilter;
use super::Skipped;
use crate::registry::HealthEntry;

/// Why a registry entry, or part of one, is not served.
pub(super) const BAD_SERVICE_NAME: &str = "service name is not a DNS label";
/// A tag that is not served as a name.
pub(super) const BAD_TAG: &str = "tag is not a DNS label";
/// A node that gets no node name.
pub(super) const BAD_NODE_NAME: &str = "node name is not a DNS label";
/// An instance whose address is neither an IP address nor a valid hostname.
pub(super) const BAD_ADDRESS: &str = "address is neither an IP address nor a hostname";

/// Consul's rule for names it serves over DNS: 1 to 63 letters, digits and hyphens.
pub(super) fn is_label(text: &str) -> bool {
    (1..=63).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A hostname a CNAME or SRV target may name: labels of letters, digits, hyphens and
/// underscores, none starting or ending with a hyphen, 63 bytes each, 253 in all.
pub(super) fn is_hostname(text: &str) -> bool {
    let text = text.strip_suffix('.').unwrap_or(text);
    (1..=253).contains(&text.len())
        && text.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The services DNS serves from the entries of one registry key, by lower-cased name, each
/// with its entries in registry order (usually one group: the key's own name). Counts what is
/// left out into `skipped` (a bad address only for instances `health` serves).
pub(super) fn served_by<'a>(
    key: &'a str,
    entries: &'a [HealthEntry],
    health: HealthFilter,
    skipped: &mut Skipped,
) -> BTreeMap<String, Vec<&'a HealthEntry>> {
    let mut services: BTreeMap<String, Vec<&'a HealthEntry>> = BTreeMap::new();
    let mut last: Option<String> = None;
    for entry in entries {
        let name = if entry.service.service.is_empty() {
            key
        } else {
            entry.service.service.as_str()
        };
        if !is_label(name) {
            skipped.add(BAD_SERVICE_NAME, name);
            continue;
        }
        for tag in entry.service.tags.iter().filter(|tag| !is_label(tag)) {
            skipped.add(BAD_TAG, tag);
        }
        if !is_label(&entry.node.node) {
            skipped.add(BAD_NODE_NAME, &entry.node.node);
        }
        if health.serves(entry) {
            if let Some((Address::Host(host), _)) = service_address(entry, Family::Any) {
                if !is_hostname(&host) {
                    skipped.add(BAD_ADDRESS, &host);
                }
            }
        }
        // Entries of one key almost always name one service: try the group of the entry
        // before without allocating, else look the lower-cased name up.
        if let Some(group) = last.as_ref().filter(|g| g.eq_ignore_ascii_case(name)) {
            if let Some(served) = services.get_mut(group) {
                served.push(entry);
                continue;
            }
        }
        let lower = name.to_ascii_lowercase();
        services.entry(lower.clone()).or_default().push(entry);
        last = Some(lower);
    }
    services
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_hostnames() {
        for good in ["web", "WEB", "web-01", "a", &"x".repeat(63)] {
            assert!(is_label(good), "{good}");
        }
        for bad in ["", "v1.web", "_web", "bad name", "web_1", &"x".repeat(64)] {
            assert!(!is_label(bad), "{bad}");
        }
        for good in ["example.com", "example.com.", "a-b.c_d.example", "x"] {
            assert!(is_hostname(good), "{good}");
        }
        let long = format!("{}.example", "a".repeat(300));
        for bad in [
            "bad host",
            "-leading.example",
            "fe80::1%eth0",
            "a..b",
            &long,
        ] {
            assert!(!is_hostname(bad), "{bad}");
        }
    }
}
