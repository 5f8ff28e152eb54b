//! Flags of the operator tools: `snapdns check` (the `serve` flags plus what to probe),
//! `snapdns state` (a state directory to read) and `snapdns explain` (a name to ask a running
//! server about). Their logic is in `crate::tools` and `crate::explain`.

use std::path::PathBuf;

use clap::Args;

use super::ServeArgs;

/// Flags of `snapdns check`: every `serve` flag (and `--config`), so the check reads exactly
/// what `serve` would, plus what to contact and how strict to be.
#[derive(Clone, Debug, Default, Args)]
pub struct CheckArgs {
    /// The settings `serve` would run with.
    #[command(flatten)]
    pub serve: ServeArgs,

    /// Send one request to Consul (`GET /v1/catalog/services`) and report reachability, ACL
    /// and leader. Without it Consul is not contacted.
    #[arg(long)]
    pub connect: bool,

    /// Exit 1 when there are warnings (without it warnings are printed and the exit is 0).
    #[arg(long)]
    pub strict: bool,
}

/// Flags of `snapdns state`.
#[derive(Clone, Debug, Default, Args)]
pub struct StateArgs {
    /// The state directory to read (never written). [default: /var/lib/snapdns]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Write the newest intact generation (its journal replayed) as a registry file that
    /// `serve --registry file:FILE` serves.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
}

impl StateArgs {
    /// The state directory, with `serve`'s default.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/snapdns"))
    }
}

/// Flags of `snapdns explain`.
#[derive(Clone, Debug, Args)]
pub struct ExplainArgs {
    /// The DNS name asked about (`web.service.consul`).
    pub name: String,
    /// The query type (A, AAAA, SRV, PTR, TXT, ... or TYPE<n>). [default: SRV for
    /// `_service._tag` names, PTR for reverse names, else A]
    pub qtype: Option<String>,
    /// The server's HTTP endpoint (`serve --http`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8601")]
    pub http: String,
    /// Print the server's JSON answer as it came.
    #[arg(long)]
    pub json: bool,
}
