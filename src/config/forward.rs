//! The forward section: upstream resolvers and the cache, validated into the forwarder's
//! [`ForwardConfig`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::values::{duration, nonzero_duration, socket_addr};
use super::ConfigError;
use crate::dns::forward::ForwardConfig;

/// Flags (and file keys) of the forward section.
#[derive(Clone, Debug, Default, Args, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ForwardArgs {
    /// Upstream resolver for names outside the served zones, `IP` or `IP:PORT`; repeatable,
    /// tried in order. [default: the nameservers of /etc/resolv.conf, minus our own addresses]
    #[arg(long, value_name = "ADDR[:PORT]")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,

    /// Do not forward at all (no upstreams): names outside the served zones get REFUSED.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_forward: bool,

    /// Timeout of one upstream attempt before the next upstream is tried. [default: 2s]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_timeout: Option<String>,

    /// Forwarding cache capacity in entries. [default: 10000]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<u64>,

    /// Cached answers live at least this long (raises lower TTLs). [default: 0s]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_min_ttl: Option<String>,

    /// Cached answers live at most this long (caps higher TTLs). [default: 1h]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_max_ttl: Option<String>,

    /// Negative answers (NXDOMAIN, NODATA) are cached at most this long. [default: 5m]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_max_negative_ttl: Option<String>,

    /// Upstream queries in flight at once (as dnsmasq's dns-forward-max); uncached names
    /// beyond get SERVFAIL at once. [default: 512]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_forwards: Option<usize>,
}

impl ForwardArgs {
    /// Validates the forward section. Without `--upstream`, the nameservers of `resolv_conf`
    /// are used, minus our own `listen` addresses.
    pub fn validate(
        &self,
        listen: &[SocketAddr],
        resolv_conf: Option<&str>,
    ) -> Result<ForwardConfig, ConfigError> {
        let upstreams = if self.no_forward {
            Vec::new()
        } else if self.upstream.is_empty() {
            resolv_conf_nameservers(resolv_conf.unwrap_or(""), listen)
        } else {
            self.upstream
                .iter()
                .map(|text| socket_addr("upstream", text, Some(53)))
                .collect::<Result<_, _>>()?
        };
        if let Some(own) = upstreams.iter().find(|u| listen.contains(u)) {
            return Err(ConfigError::new(
                "upstream",
                format!("{own} is one of our own listen addresses"),
            ));
        }
        let cache_min_ttl = duration(
            "cache-min-ttl",
            self.cache_min_ttl.as_deref(),
            Duration::ZERO,
        )?;
        let cache_max_ttl = duration(
            "cache-max-ttl",
            self.cache_max_ttl.as_deref(),
            Duration::from_secs(3600),
        )?;
        if cache_min_ttl > cache_max_ttl {
            return Err(ConfigError::new("cache-min-ttl", "is above cache-max-ttl"));
        }
        let max_forwards = self.max_forwards.unwrap_or(512);
        if max_forwards == 0 {
            return Err(ConfigError::new(
                "max-forwards",
                "must be at least 1 (use --no-forward to turn forwarding off)",
            ));
        }
        Ok(ForwardConfig {
            upstreams,
            timeout: nonzero_duration(
                "upstream-timeout",
                self.upstream_timeout.as_deref(),
                Duration::from_secs(2),
            )?,
            cache_size: self.cache_size.unwrap_or(10_000),
            cache_min_ttl,
            cache_max_ttl,
            cache_max_negative_ttl: duration(
                "cache-max-negative-ttl",
                self.cache_max_negative_ttl.as_deref(),
                Duration::from_secs(300),
            )?,
            max_forwards,
        })
    }
}

/// `nameserver` lines of resolv.conf, port 53, minus addresses we listen on ourselves.
fn resolv_conf_nameservers(text: &str, listen: &[SocketAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter(|word| !word.contains('%')) // a scoped link-local address needs its interface
        .filter_map(|word| word.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|addr| {
            // A wildcard listener is surely reached through loopback; whether it is also behind
            // another address of this host cannot be known from here, so those are kept.
            !listen.iter().any(|own| {
                own.port() == addr.port()
                    && (own.ip() == addr.ip()
                        || (own.ip().is_unspecified() && addr.ip().is_loopback()))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_skips_our_own_address() {
        let text = "search example.org\nnameserver 127.0.0.1\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n";
        let listen = [SocketAddr::from(([0, 0, 0, 0], 53))];
        let got = resolv_conf_nameservers(text, &listen);
        assert_eq!(got, vec![SocketAddr::from(([10, 0, 0, 2], 53))]);
    }
}
