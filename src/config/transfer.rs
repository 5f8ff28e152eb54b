//! The transfer section: how many snapshot differences IXFR keeps and whom to NOTIFY,
//! validated into [`TransferSettings`]. Who may transfer (`--allow-transfer`, `--tsig-key`) is
//! part of the answering policy (the answer section), which SIGHUP applies; these two need a
//! restart.

use clap::Args;
use serde::{Deserialize, Serialize};

use super::values::socket_addr;
use super::ConfigError;
use crate::dns::transfer::TransferSettings;

/// The port NOTIFY goes to when `--notify` names none.
const DNS_PORT: u16 = 53;
/// The most snapshot differences kept for IXFR.
const MAX_IXFR_JOURNAL: usize = 10_000;

/// Flags (and file keys) of the transfer section.
#[derive(Clone, Debug, Default, Args, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct TransferArgs {
    /// Registry zone versions kept for IXFR (secondaries further behind get a full transfer);
    /// 0 keeps none. [default: 100]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ixfr_journal: Option<usize>,

    /// A secondary to NOTIFY (RFC 1996) when the registry zone changes, `IP` or `IP:PORT`;
    /// repeatable. Signed with --tsig-key when one is set. [default: none]
    #[arg(long, value_name = "IP[:PORT]")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

impl TransferArgs {
    /// Validates the transfer section.
    pub fn validate(&self) -> Result<TransferSettings, ConfigError> {
        let ixfr_journal = self.ixfr_journal.unwrap_or(100);
        if ixfr_journal > MAX_IXFR_JOURNAL {
            return Err(ConfigError::new(
                "ixfr-journal",
                format!("{ixfr_journal} is above {MAX_IXFR_JOURNAL}"),
            ));
        }
        let notify = self
            .notify
            .iter()
            .map(|text| socket_addr("notify", text, Some(DNS_PORT)))
            .collect::<Result<_, _>>()?;
        Ok(TransferSettings {
            ixfr_journal,
            notify,
        })
    }
}
