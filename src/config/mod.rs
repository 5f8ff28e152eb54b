//! Command line and configuration file, turned into one validated [`Config`].
//!
//! Every `serve` flag has a key of the same name in the TOML file given by `--config`; a flag
//! given on the command line wins over the file. The flags come in sections, one per component
//! (a `clap` + `serde` struct each, flattened into [`ServeArgs`]); each section's `validate`
//! turns it into that component's own settings struct and names the bad key in its error.
//! [`Config`] is the composition of those settings. Validation happens here, before anything
//! is bound, so a bad value stops start-up with a one-line error (exit code 2).
//!
//! Adding a setting: a field in the section's args struct (its flag and key), a field in the
//! component's settings struct, its validation in the section's `validate`, and one line in
//! [`Config::restart_only_changes`] (docs/ARCHITECTURE.md, "Adding a setting").

mod answer;
mod file;
mod forward;
mod manual;
mod nameservers;
mod registry;
mod server;
mod service_ttls;
mod tools;
mod transfer;
mod values;
mod zone;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

pub use answer::AnswerArgs;
pub use clap_complete::Shell;
pub use forward::ForwardArgs;
pub use manual::{completions, man_page};
pub use registry::{ConsulArgs, RegistryArgs, RegistrySource, SyncArgs};
pub use server::{ServerArgs, ServerSettings};
pub use tools::{CheckArgs, ExplainArgs, StateArgs};
pub use transfer::TransferArgs;
pub use values::parse_duration;
pub use zone::ZoneArgs;

use crate::dns::forward::ForwardConfig;
use crate::dns::transfer::TransferSettings;
use crate::dns::AnswerPolicy;
use crate::registry::consul::ConsulConfig;
use crate::snapshot::{NameServers, ZoneOptions};
use crate::source::consul::SyncSettings;

/// snapdns: a DNS server for service discovery that answers `*.service.consul` from a local,
/// persisted snapshot of the Consul registry and forwards every other name upstream.
#[derive(Debug, Parser)]
#[command(name = "snapdns", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS (UDP and TCP on every --listen address) and the health endpoint.
    Serve(Box<ServeArgs>),
    /// Check the configuration, the registry source, the static zones and the state directory
    /// without serving: exit 0 (ok), 1 (warnings, with --strict) or 2 (errors).
    Check(Box<CheckArgs>),
    /// List the persisted generations in a state directory; export one as a registry file.
    State(StateArgs),
    /// Print the shell completion script for SHELL (the package installs bash's and zsh's).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page, snapdns(1), in roff (`snapdns man | man -l -`).
    Man,
    /// Why a name is (not) answered: asks a running server's `GET /v1/explain`.
    Explain(ExplainArgs),
}

/// Flags of `snapdns serve`, by section. Each may also be set in the `--config` file under the
/// same name (flat keys: the sections do not show in the file).
#[derive(Clone, Debug, Default, Args, Deserialize, Serialize)]
#[serde(default)]
pub struct ServeArgs {
    /// TOML file with any of these settings (flag names as keys); flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Listen addresses, workers, HTTP endpoint, static zones.
    #[command(flatten)]
    #[serde(flatten)]
    pub server: ServerArgs,

    /// Registry domain, datacenter, TTLs.
    #[command(flatten)]
    #[serde(flatten)]
    pub zone: ZoneArgs,

    /// UDP size cap, shuffling, recursion.
    #[command(flatten)]
    #[serde(flatten)]
    pub answer: AnswerArgs,

    /// Registry source and state directory.
    #[command(flatten)]
    #[serde(flatten)]
    pub registry: RegistryArgs,

    /// How Consul is reached.
    #[command(flatten)]
    #[serde(flatten)]
    pub consul: ConsulArgs,

    /// How the sync engine paces itself.
    #[command(flatten)]
    #[serde(flatten)]
    pub sync: SyncArgs,

    /// Upstreams and the cache.
    #[command(flatten)]
    #[serde(flatten)]
    pub forward: ForwardArgs,

    /// Zone transfers: the IXFR journal and NOTIFY targets.
    #[command(flatten)]
    #[serde(flatten)]
    pub transfer: TransferArgs,

    /// Logging (flags only: logging starts before the file is read).
    #[command(flatten)]
    #[serde(skip)]
    pub log: LogArgs,
}

/// Logging flags; not in the config file, since logging is set up before it is read.
#[derive(Clone, Debug, Default, Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `snapdns=debug`. [default: $RUST_LOG, else info]
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,

    /// Log format: `plain` or `json` (one object per line). [default: plain]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// Validated settings of a running server: each component's own settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Sockets, workers, HTTP endpoint, static zones directory.
    pub server: ServerSettings,
    /// The registry zone's shape.
    pub zone: ZoneOptions,
    /// The answering policy (reloadable).
    pub answer: AnswerPolicy,
    /// Where the registry comes from.
    pub registry: RegistrySource,
    /// How Consul is reached (unused for a file source).
    pub consul: ConsulConfig,
    /// The sync engine's pacing and the state directory.
    pub sync: SyncSettings,
    /// Upstreams and the cache.
    pub forward: ForwardConfig,
    /// The IXFR journal and NOTIFY targets.
    pub transfer: TransferSettings,
    /// Where the settings came from, for SIGHUP reloads.
    pub config_file: Option<PathBuf>,
}

/// A setting that cannot be used: the key and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The flag or config key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// Environment values that defaults depend on, read once by `main` (tests pass their own).
#[derive(Clone, Debug, Default)]
pub struct Environment {
    /// `CONSUL_HTTP_ADDR`.
    pub consul_http_addr: Option<String>,
    /// `CONSUL_HTTP_TOKEN`.
    pub consul_http_token: Option<String>,
    /// Contents of /etc/resolv.conf.
    pub resolv_conf: Option<String>,
    /// The host name (the kernel's), the default `--identity`.
    pub host_name: Option<String>,
}

impl Environment {
    /// Reads the process environment and /etc/resolv.conf.
    pub fn from_process() -> Self {
        Self {
            consul_http_addr: std::env::var("CONSUL_HTTP_ADDR")
                .ok()
                .filter(|v| !v.is_empty()),
            consul_http_token: std::env::var("CONSUL_HTTP_TOKEN")
                .ok()
                .filter(|v| !v.is_empty()),
            resolv_conf: std::fs::read_to_string("/etc/resolv.conf").ok(),
            host_name: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|name| name.trim().to_string())
                .filter(|name| !name.is_empty()),
        }
    }
}

impl Config {
    /// Merges the flags over the `--config` file (if any) and validates the result.
    pub fn load(args: &ServeArgs, env: &Environment) -> Result<Self, ConfigError> {
        let merged = match &args.config {
            Some(path) => file::merge(args, &file::read(path)?)?,
            None => args.clone(),
        };
        let mut config = Self::from_args(&merged, env)?;
        config.config_file = args.config.clone();
        Ok(config)
    }

    /// Validates settings that are already merged, section by section.
    pub fn from_args(args: &ServeArgs, env: &Environment) -> Result<Self, ConfigError> {
        let server = args.server.validate()?;
        let zone = args.zone.validate(&server.listen)?;
        let forward = args
            .forward
            .validate(&server.listen, env.resolv_conf.as_deref())?;
        let answer = args
            .answer
            .validate(!forward.upstreams.is_empty(), env.host_name.as_deref())?;
        let registry = args.registry.source(env.consul_http_addr.as_deref())?;
        let consul = args.consul.validate(
            &registry,
            &zone.datacenter,
            env.consul_http_token.as_deref(),
        )?;
        let sync = args.sync.validate(args.registry.state_dir(), &zone)?;
        let transfer = args.transfer.validate()?;
        Ok(Self {
            server,
            zone,
            answer,
            registry,
            consul,
            sync,
            forward,
            transfer,
            config_file: None,
        })
    }

    /// The keys (as in the config file) of settings that differ from `new` and take effect
    /// only after a restart. Every field is named here, without `..`: a new setting must be
    /// listed as restart-only (with its key) or as reloadable, never left out silently.
    pub fn restart_only_changes(&self, new: &Self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        macro_rules! compare {
            ($type:ident, $old:expr, $new:expr;
             restart: $($field:ident => $key:literal),+ ;
             reload: $($reloadable:ident),* ;
             copies: $($copy:ident),* $(,)?) => {{
                let (old, new) = (&$old, &$new);
                let $type { $($field: _,)* $($reloadable: _,)* $($copy: _,)* } = old;
                $(if old.$field != new.$field {
                    keys.push($key);
                })*
            }};
        }
        let Self {
            server,
            zone,
            answer,
            registry,
            consul,
            sync,
            forward,
            transfer,
            config_file: _,
        } = self;
        compare!(ServerSettings, *server, new.server;
            restart: listen => "listen", udp_workers => "udp-workers",
                tcp_idle_timeout => "tcp-idle-timeout", http => "http",
                max_tcp_clients => "max-tcp-clients",
                max_tcp_clients_per_address => "max-tcp-clients-per-address";
            reload: zones_dir;
            copies:);
        compare!(ZoneOptions, *zone, new.zone;
            restart: domain => "domain", datacenter => "datacenter",
                service_ttl => "service-ttl", service_ttls => "service-ttl-for",
                health => "serve-warning", node_ttl => "node-ttl",
                negative_ttl => "negative-ttl", srv_node_meta_txt => "srv-node-meta-txt";
            reload:;
            // Compared below: without --nameserver they follow the listen addresses.
            copies: nameservers);
        if zone.nameservers != new.zone.nameservers {
            keys.push(match (&zone.nameservers, &new.zone.nameservers) {
                (NameServers::Listen(_), NameServers::Listen(_)) => "listen",
                _ => "nameserver",
            });
        }
        // The answering policy is applied by a reload, all of it; whether there is a forwarder
        // at all follows the upstreams (restart-only, below).
        let AnswerPolicy {
            max_udp_size: _,
            shuffle: _,
            forwarding: _,
            allow_recursion: _,
            rrl: _,
            identity: _,
            transfer: _,
        } = answer;
        if *registry != new.registry {
            keys.push("registry");
        }
        compare!(ConsulConfig, *consul, new.consul;
            restart: url => "registry", token => "token-file", ca_file => "ca-file",
                client_identity => "client-cert", datacenter => "datacenter",
                consistent => "consistent", request_timeout => "request-timeout",
                connections => "registry-connections", streams => "registry-streams";
            reload:;
            copies:);
        compare!(SyncSettings, *sync, new.sync;
            restart: sync_interval => "sync-interval", blocking_wait => "blocking-wait",
                max_concurrent_requests => "max-concurrent-requests",
                watch_mode => "watch-mode",
                self_preservation_threshold => "self-preservation-threshold",
                self_preservation_window => "self-preservation-window",
                state_dir => "state-dir", persist_interval => "persist-interval";
            reload:;
            // Copies of the zone section, compared there.
            copies: datacenter, zone);
        compare!(ForwardConfig, *forward, new.forward;
            restart: upstreams => "upstream", timeout => "upstream-timeout",
                cache_size => "cache-size", cache_min_ttl => "cache-min-ttl",
                cache_max_ttl => "cache-max-ttl",
                cache_max_negative_ttl => "cache-max-negative-ttl",
                max_forwards => "max-forwards";
            reload:;
            copies:);
        compare!(TransferSettings, *transfer, new.transfer;
            restart: ixfr_journal => "ixfr-journal", notify => "notify";
            reload:;
            copies:);
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: ServeArgs) -> Config {
        Config::from_args(&args, &Environment::default()).expect("valid")
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut args = ServeArgs::default();
        args.answer.max_udp_size = Some(100);
        let error = Config::from_args(&args, &Environment::default()).unwrap_err();
        assert_eq!(error.key, "max-udp-size");
        for (key, set) in [
            (
                "rrl-rate",
                (|a: &mut AnswerArgs| a.rrl_rate = Some(2_000_000)) as fn(&mut _),
            ),
            ("rrl-slip", |a| a.rrl_slip = Some(11)),
            ("rrl-ipv4-prefix", |a| a.rrl_ipv4_prefix = Some(33)),
            ("rrl-ipv6-prefix", |a| a.rrl_ipv6_prefix = Some(129)),
        ] {
            let mut args = ServeArgs::default();
            set(&mut args.answer);
            let error = Config::from_args(&args, &Environment::default()).unwrap_err();
            assert_eq!(error.key, key);
        }
    }

    #[test]
    fn names_the_settings_that_need_a_restart() {
        let old = config(ServeArgs::default());
        let mut args = ServeArgs::default();
        args.server.zones_dir = Some("elsewhere".into());
        args.server.listen = vec!["127.0.0.2:8600".into()];
        args.answer.no_shuffle = true;
        args.answer.max_udp_size = Some(4096);
        args.answer.rrl_rate = Some(5);
        args.answer.rrl_ipv6_prefix = Some(48);
        let new = config(args);
        assert_eq!(new.answer.rrl.rate, 5);
        assert_eq!(old.restart_only_changes(&new), ["listen"]);
        assert!(old.restart_only_changes(&old.clone()).is_empty());

        // Name servers: the flag's own key, or `listen` when they follow the listen addresses.
        let mut args = ServeArgs::default();
        args.zone.nameserver = vec!["ns1.consul.=10.0.0.1".into()];
        let named = config(args);
        assert_eq!(old.restart_only_changes(&named), ["nameserver"]);
        let mut args = ServeArgs::default();
        args.zone.nameserver = vec!["ns1.consul.=10.0.0.2".into()];
        assert_eq!(named.restart_only_changes(&config(args)), ["nameserver"]);
        let mut args = ServeArgs::default();
        args.answer.identity = Some("replica-2".into());
        args.answer.version_string = Some(String::new());
        assert!(old.restart_only_changes(&config(args)).is_empty());

        let mut args = ServeArgs::default();
        args.sync.sync_interval = Some("5m".into());
        args.forward.cache_size = Some(5);
        assert_eq!(
            old.restart_only_changes(&config(args)),
            ["cache-size", "sync-interval"]
        );

        let mut args = ServeArgs::default();
        args.zone.serve_warning = true;
        args.zone.service_ttl_table = [("web".into(), "5s".into())].into();
        assert_eq!(
            old.restart_only_changes(&config(args)),
            ["serve-warning", "service-ttl-for"]
        );
    }
}
