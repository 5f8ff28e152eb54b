//! The answer section: the UDP size cap, shuffling, who may recurse, response rate limiting
//! and the server's identity, validated into the responder's [`AnswerPolicy`]. Every setting here is applied by
//! SIGHUP.

use std::sync::Arc;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::values::network;
use super::ConfigError;
use crate::dns::{AnswerPolicy, RrlSettings, ServerIdentity, TransferPolicy, TsigKey};

/// Flags (and file keys) of the answer section.
#[derive(Clone, Debug, Default, Args, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct AnswerArgs {
    /// Largest UDP response for EDNS clients, whatever they advertise (512 to 65535). Clients
    /// without EDNS always get at most 512 bytes. [default: 1232]
    #[arg(long, value_name = "BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_udp_size: Option<u16>,

    /// Do not shuffle A/AAAA answers per query (SRV answers are always in a stable order).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_shuffle: bool,

    /// Clients allowed to recurse (forwarded names, RA=1), as CIDR; repeatable.
    /// [default: 127.0.0.0/8 and ::1/128]
    #[arg(long, value_name = "CIDR")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_recursion: Vec<String>,

    /// Response rate limiting: UDP responses a second per client prefix and response (name
    /// and class) to clients outside --allow-recursion; 0 turns it off. [default: 200]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rrl_rate: Option<u32>,

    /// Every Nth rate-limited response is sent truncated (TC=1) so real clients retry over
    /// TCP, the others are dropped; 0 drops them all, 1 truncates them all. [default: 2]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rrl_slip: Option<u32>,

    /// IPv4 clients share a rate limit per prefix of this length (0 to 32). [default: 24]
    #[arg(long, value_name = "BITS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rrl_ipv4_prefix: Option<u8>,

    /// IPv6 clients share a rate limit per prefix of this length (0 to 128). [default: 56]
    #[arg(long, value_name = "BITS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rrl_ipv6_prefix: Option<u8>,

    /// This server's identity: the NSID option (RFC 5001) for clients that ask, and the
    /// CHAOS TXT of `id.server.` and `hostname.bind.`; empty turns both off. Give each
    /// replica its own. [default: the host name]
    #[arg(long, value_name = "STRING")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,

    /// The CHAOS TXT of `version.server.` and `version.bind.`; empty turns it off.
    /// [default: "snapdns <version>"]
    #[arg(long, value_name = "STRING")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_string: Option<String>,

    /// Clients allowed to transfer the registry zone and the static zones (AXFR, IXFR over
    /// TCP), as CIDR; repeatable. [default: none]
    #[arg(long, value_name = "CIDR")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_transfer: Vec<String>,

    /// The TSIG key (RFC 8945) transfer requests must be signed with, and NOTIFY messages
    /// are signed with: NAME:ALGORITHM:BASE64, ALGORITHM one of hmac-sha256, hmac-sha384,
    /// hmac-sha512. [default: none: transfers are not signed]
    #[arg(long, value_name = "NAME:ALGORITHM:BASE64")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tsig_key: Option<String>,
}

/// Highest `--rrl-rate`: the bucket arithmetic counts in nanoseconds.
const MAX_RRL_RATE: u32 = 1_000_000;
/// Highest `--rrl-slip`, as BIND allows.
const MAX_RRL_SLIP: u32 = 10;

impl AnswerArgs {
    /// Validates the answer section; `forwarding` says whether there are upstreams at all,
    /// `host_name` is the default identity.
    pub fn validate(
        &self,
        forwarding: bool,
        host_name: Option<&str>,
    ) -> Result<AnswerPolicy, ConfigError> {
        let max_udp_size = self.max_udp_size.unwrap_or(1232);
        if max_udp_size < 512 {
            return Err(ConfigError::new(
                "max-udp-size",
                format!("{max_udp_size} is below 512"),
            ));
        }
        let allow_recursion = if self.allow_recursion.is_empty() {
            vec![
                "127.0.0.0/8".parse().expect("valid"),
                "::1/128".parse().expect("valid"),
            ]
        } else {
            self.allow_recursion
                .iter()
                .map(|text| network("allow-recursion", text))
                .collect::<Result<_, _>>()?
        };
        Ok(AnswerPolicy {
            max_udp_size,
            shuffle: !self.no_shuffle,
            forwarding,
            allow_recursion,
            rrl: self.rrl()?,
            identity: self.identity(host_name)?,
            transfer: self.transfer()?,
        })
    }

    fn transfer(&self) -> Result<TransferPolicy, ConfigError> {
        let allow = self
            .allow_transfer
            .iter()
            .map(|text| network("allow-transfer", text))
            .collect::<Result<_, _>>()?;
        let key = self
            .tsig_key
            .as_deref()
            .map(TsigKey::parse)
            .transpose()
            .map_err(|error| ConfigError::new("tsig-key", error))?;
        Ok(TransferPolicy { allow, key })
    }

    fn identity(&self, host_name: Option<&str>) -> Result<ServerIdentity, ConfigError> {
        let checked = |key: &str, text: &str| {
            if text.len() > ServerIdentity::MAX_LEN {
                return Err(ConfigError::new(
                    key,
                    format!("{} bytes, above {}", text.len(), ServerIdentity::MAX_LEN),
                ));
            }
            Ok(Arc::<str>::from(text))
        };
        let default_version = concat!("snapdns ", env!("CARGO_PKG_VERSION"));
        // A host name too long for a TXT string (Linux allows 64 bytes) is no default.
        let host_name = host_name
            .filter(|name| name.len() <= ServerIdentity::MAX_LEN)
            .unwrap_or_default();
        Ok(ServerIdentity {
            identity: checked("identity", self.identity.as_deref().unwrap_or(host_name))?,
            version: checked(
                "version-string",
                self.version_string.as_deref().unwrap_or(default_version),
            )?,
        })
    }

    fn rrl(&self) -> Result<RrlSettings, ConfigError> {
        let defaults = RrlSettings::default();
        let bounded = |key: &str, value: Option<u32>, default: u32, max: u32| match value {
            Some(value) if value > max => {
                Err(ConfigError::new(key, format!("{value} is above {max}")))
            }
            value => Ok(value.unwrap_or(default)),
        };
        let rate = bounded("rrl-rate", self.rrl_rate, defaults.rate, MAX_RRL_RATE)?;
        let slip = bounded("rrl-slip", self.rrl_slip, defaults.slip, MAX_RRL_SLIP)?;
        let ipv4_prefix = bounded(
            "rrl-ipv4-prefix",
            self.rrl_ipv4_prefix.map(u32::from),
            defaults.ipv4_prefix.into(),
            32,
        )?;
        let ipv6_prefix = bounded(
            "rrl-ipv6-prefix",
            self.rrl_ipv6_prefix.map(u32::from),
            defaults.ipv6_prefix.into(),
            128,
        )?;
        Ok(RrlSettings {
            rate,
            slip,
            ipv4_prefix: ipv4_prefix as u8,
            ipv6_prefix: ipv6_prefix as u8,
        })
    }
}
