//! The answer section: the UDP size cap, shuffling and who may recurse, validated into the
//! responder's [`AnswerPolicy`]. Every setting here is applied by SIGHUP.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::values::network;
use super::ConfigError;
use crate::dns::AnswerPolicy;

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
}

impl AnswerArgs {
    /// Validates the answer section; `forwarding` says whether there are upstreams at all.
    pub fn validate(&self, forwarding: bool) -> Result<AnswerPolicy, ConfigError> {
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
        })
    }
}
