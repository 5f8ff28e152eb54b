//! Parsers for the value kinds settings share (durations, TTLs, addresses, networks); each
//! error names the key it was given.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::ConfigError;

/// Parses `500ms`, `30s`, `5m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// A duration setting, or `default` when it is not set.
pub(super) fn duration(
    key: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(text) => parse_duration(text).ok_or_else(|| {
            ConfigError::new(
                key,
                format!("{text:?} is not a duration like 500ms, 30s, 5m or 1h"),
            )
        }),
    }
}

/// A duration setting that must not be zero.
pub(super) fn nonzero_duration(
    key: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let value = duration(key, text, default)?;
    if value.is_zero() {
        Err(ConfigError::new(key, "must be greater than zero"))
    } else {
        Ok(value)
    }
}

/// A TTL in whole seconds (default 0, as Consul).
pub(super) fn ttl(key: &str, text: Option<&str>) -> Result<u32, ConfigError> {
    let value = duration(key, text, Duration::ZERO)?;
    u32::try_from(value.as_secs()).map_err(|_| ConfigError::new(key, "too large"))
}

/// `IP:PORT`, or a bare `IP` when a default port is given.
pub(super) fn socket_addr(
    key: &str,
    text: &str,
    default_port: Option<u16>,
) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let (Some(port), Ok(ip)) = (
        default_port,
        text.trim_matches(['[', ']']).parse::<IpAddr>(),
    ) {
        return Ok(SocketAddr::new(ip, port));
    }
    Err(ConfigError::new(
        key,
        format!("{text:?} is not an IP:PORT address"),
    ))
}

/// A CIDR network, or a bare address (a /32 or /128).
pub(super) fn network(key: &str, text: &str) -> Result<IpNet, ConfigError> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| ConfigError::new(key, format!("{text:?} is not a CIDR network")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("7 parsecs"), None);
        assert_eq!(parse_duration("-1s"), None);
    }
}
