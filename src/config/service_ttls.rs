//! Per-service TTLs from `--service-ttl-for NAME=DURATION` (repeatable, or the file key of the
//! same name, a list) and the file's `[service_ttl]` table (`NAME = "DURATION"`), Consul's
//! `dns_config.service_ttl`. Each error names its key and the entry.

use std::collections::{BTreeMap, BTreeSet};

use super::values::ttl;
use super::ConfigError;
use crate::snapshot::ServiceTtls;

/// The flag (and list key).
const FLAG: &str = "service-ttl-for";
/// The file's table.
pub(super) const TABLE: &str = "service_ttl";

/// The patterns of the table, then of the flag: for a name in both, the flag's entry wins.
pub(super) fn service_ttls(
    flag: &[String],
    table: &BTreeMap<String, String>,
) -> Result<ServiceTtls, ConfigError> {
    let mut ttls = ServiceTtls::default();
    for (name, duration) in table {
        add(&mut ttls, TABLE, name, duration)?;
    }
    let mut seen = BTreeSet::new();
    for entry in flag {
        let Some((name, duration)) = entry.split_once('=') else {
            return Err(ConfigError::new(
                FLAG,
                format!("{entry:?} is not NAME=DURATION"),
            ));
        };
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(ConfigError::new(
                FLAG,
                format!("{entry:?}: {name:?} is given twice"),
            ));
        }
        add(&mut ttls, FLAG, name, duration)?;
    }
    Ok(ttls)
}

fn add(ttls: &mut ServiceTtls, key: &str, name: &str, duration: &str) -> Result<(), ConfigError> {
    let ttl = ttl(key, Some(duration))
        .map_err(|e| ConfigError::new(key, format!("{name:?}: {}", e.message)))?;
    ttls.insert(name, ttl)
        .map_err(|message| ConfigError::new(key, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn the_flag_wins_over_the_table() {
        let table = BTreeMap::from([
            ("web".to_string(), "5s".to_string()),
            ("*".to_string(), "1m".to_string()),
        ]);
        let ttls = service_ttls(&flags(&["Web=7s", "db*=2s"]), &table).unwrap();
        assert_eq!(ttls.ttl_for("web"), Some(7));
        assert_eq!(ttls.ttl_for("dbx"), Some(2));
        assert_eq!(ttls.ttl_for("api"), Some(60));
    }

    #[test]
    fn errors_name_the_key_and_the_entry() {
        let none = BTreeMap::new();
        for (entries, needle) in [
            (&["web"][..], "\"web\" is not NAME=DURATION"),
            (&["web=soon"][..], "\"web\": \"soon\" is not a duration"),
            (&["a*b=5s"][..], "\"a*b\" is neither"),
            (&["web=1s", "WEB=2s"][..], "\"WEB\" is given twice"),
        ] {
            let error = service_ttls(&flags(entries), &none).unwrap_err();
            assert_eq!(error.key, FLAG);
            assert!(error.message.contains(needle), "{error}");
        }
        let table = BTreeMap::from([("web".to_string(), "-1s".to_string())]);
        let error = service_ttls(&[], &table).unwrap_err();
        assert_eq!(error.key, TABLE);
        assert!(error.message.contains("\"web\""), "{error}");
    }
}
