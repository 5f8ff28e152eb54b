//! Per-service TTLs, as Consul's `dns_config.service_ttl`: a pattern is a service name (exact)
//! or a prefix ending in `*` (`*` alone matches every service). An exact name wins; else the
//! longest matching prefix; else the default `--service-ttl`. Unlike Consul, which compares
//! its keys byte for byte with the lower-cased name from the query (so a key with capitals
//! never matches), patterns are lower-cased here: names are served case-insensitively.

use std::collections::BTreeMap;

use super::names::is_label;

/// The per-service TTL patterns of a zone, in a canonical order (options compare equal, and
/// key the zone cache, whatever order they were given in).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceTtls {
    /// Exact service names (lower case) -> TTL.
    exact: BTreeMap<String, u32>,
    /// Prefixes (lower case, without the `*`) -> TTL; the empty prefix is `*`.
    prefixes: BTreeMap<String, u32>,
}

impl ServiceTtls {
    /// Adds (or replaces) `pattern`. Err says why the pattern can never match a served name:
    /// Consul would ignore it silently, but an operator's typo is better reported.
    pub fn insert(&mut self, pattern: &str, ttl: u32) -> Result<(), String> {
        let lower = pattern.to_ascii_lowercase();
        let (name, is_prefix) = match lower.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (lower.as_str(), false),
        };
        // A prefix is the beginning of a label, or empty (`*`); an exact name is a label.
        if !(is_label(name) || is_prefix && name.is_empty()) {
            return Err(format!(
                "{pattern:?} is neither a service name nor a prefix ending in `*` \
                 (letters, digits and hyphens)"
            ));
        }
        let map = if is_prefix {
            &mut self.prefixes
        } else {
            &mut self.exact
        };
        map.insert(name.to_string(), ttl);
        Ok(())
    }

    /// The TTL given for the served (lower-case) `service`, if a pattern matches it.
    pub fn ttl_for(&self, service: &str) -> Option<u32> {
        if let Some(ttl) = self.exact.get(service) {
            return Some(*ttl);
        }
        self.prefixes
            .iter()
            .filter(|(prefix, _)| service.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, ttl)| *ttl)
    }

    /// Every pattern (prefixes with their `*`) and its TTL, in a canonical order.
    pub fn patterns(&self) -> impl Iterator<Item = (String, u32)> + '_ {
        let exact = self.exact.iter().map(|(name, ttl)| (name.clone(), *ttl));
        let prefixes = self
            .prefixes
            .iter()
            .map(|(prefix, ttl)| (format!("{prefix}*"), *ttl));
        exact.chain(prefixes)
    }

    /// True when no pattern is set.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_name_wins_then_the_longest_prefix() {
        // Consul's TestDNS_ServiceLookup_TTL table.
        let mut ttls = ServiceTtls::default();
        for (pattern, ttl) in [("d*", 42), ("db", 10), ("DB*", 66), ("*", 5)] {
            ttls.insert(pattern, ttl).unwrap();
        }
        for (service, ttl) in [("db", 10), ("dblb", 66), ("dk", 42), ("api", 5)] {
            assert_eq!(ttls.ttl_for(service), Some(ttl), "{service}");
        }
        assert_eq!(ServiceTtls::default().ttl_for("db"), None);
        let patterns: Vec<_> = ttls.patterns().collect();
        assert_eq!(patterns[0], ("db".to_string(), 10));
        assert_eq!(patterns.len(), 4);
    }

    #[test]
    fn patterns_that_match_no_service_are_refused() {
        for bad in ["", "**", "a*b", "web.v1", "_web", "web_1*", "we b"] {
            assert!(ServiceTtls::default().insert(bad, 1).is_err(), "{bad:?}");
        }
    }
}
