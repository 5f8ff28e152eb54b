//! The registry sections: where the registry comes from and where its state is kept
//! ([`RegistryArgs`]), how Consul is reached ([`ConsulArgs`], into [`ConsulConfig`]) and how
//! the sync engine paces itself ([`SyncArgs`], into [`SyncSettings`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::values::{duration, nonzero_duration};
use super::ConfigError;
use crate::registry::consul::ConsulConfig;
use crate::snapshot::ZoneOptions;
use crate::source::consul::{SyncSettings, WatchMode};

pub use crate::source::RegistrySource;

/// Flags (and file keys) of the registry section.
#[derive(Clone, Debug, Default, Args, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct RegistryArgs {
    /// Registry source: `file:PATH` (a JSON file of Consul health entries, watched) or
    /// `http(s)://HOST:PORT` (Consul's HTTP API). [default: $CONSUL_HTTP_ADDR, else http://127.0.0.1:8500]
    #[arg(long, value_name = "SOURCE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,

    /// Directory for the persisted snapshot. [default: /var/lib/snapdns]
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
}

impl RegistryArgs {
    /// Validates the registry source; without `--registry`, `CONSUL_HTTP_ADDR` or Consul's
    /// default address.
    pub fn source(&self, consul_http_addr: Option<&str>) -> Result<RegistrySource, ConfigError> {
        match &self.registry {
            Some(text) => parse_registry(text),
            None => Ok(RegistrySource::Consul(normalise_url(
                "registry",
                consul_http_addr.unwrap_or("http://127.0.0.1:8500"),
            )?)),
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/snapdns"))
    }
}

/// Flags (and file keys) of the Consul section.
#[derive(Clone, Debug, Default, Args, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ConsulArgs {
    /// File holding the Consul ACL token (sent as X-Consul-Token, never logged).
    /// [default: $CONSUL_HTTP_TOKEN]
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,

    /// CA certificate (PEM) to verify Consul's HTTPS certificate with.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for Consul's HTTPS, with --client-key.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,

    /// Private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,

    /// Ask Consul for consistent reads instead of stale ones (stale reads keep working during
    /// leader elections).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub consistent: bool,

    /// Timeout of one registry request (blocking queries get their wait time on top). [default: 10s]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<String>,

    /// Most connections open to the registry at once: Consul refuses more than
    /// `limits.http_max_conns_per_client` (200 by default) from one address. [default: 128]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_connections: Option<usize>,

    /// Requests in flight per registry connection when Consul speaks HTTP/2 (over HTTPS; Go's
    /// server allows 250). [default: 100]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_streams: Option<usize>,
}

impl ConsulArgs {
    /// Validates the Consul section for the registry at `source` (no URL for a file source),
    /// asking about `datacenter`; without `--token-file`, `CONSUL_HTTP_TOKEN`.
    pub fn validate(
        &self,
        source: &RegistrySource,
        datacenter: &str,
        consul_http_token: Option<&str>,
    ) -> Result<ConsulConfig, ConfigError> {
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        ConfigError::new(
                            "token-file",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?
                    .trim()
                    .to_string(),
            ),
            None => consul_http_token.map(str::to_string),
        }
        .filter(|t| !t.is_empty());
        for (key, path) in [
            ("ca-file", &self.ca_file),
            ("client-cert", &self.client_cert),
            ("client-key", &self.client_key),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    return Err(ConfigError::new(
                        key,
                        format!("{} is not a readable file", path.display()),
                    ));
                }
            }
        }
        let client_identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "client-key",
                    "required with --client-cert",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "client-cert",
                    "required with --client-key",
                ))
            }
        };
        Ok(ConsulConfig {
            url: match source {
                RegistrySource::Consul(url) => url.clone(),
                RegistrySource::File(_) => String::new(),
            },
            token,
            ca_file: self.ca_file.clone(),
            client_identity,
            datacenter: datacenter.to_string(),
            consistent: self.consistent,
            connections: at_least_one("registry-connections", self.registry_connections, 128)?,
            streams: at_least_one("registry-streams", self.registry_streams, 100)?,
            request_timeout: nonzero_duration(
                "request-timeout",
                self.request_timeout.as_deref(),
                Duration::from_secs(10),
            )?,
        })
    }
}

/// Flags (and file keys) of the sync section.
#[derive(Clone, Debug, Default, Args, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct SyncArgs {
    /// Full resync period, jittered by up to a tenth either way: a safety net, since the
    /// watches follow every change. [default: 1h]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<String>,

    /// How long a blocking query waits for a change (Consul caps it at 10m); each watch costs
    /// one request per wait when nothing changes. [default: 10m]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocking_wait: Option<String>,

    /// Registry requests in flight at once during a resync. [default: 16]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<usize>,

    /// How changes are followed: `per-service` (a blocking query per service: a change costs
    /// that service), `cluster` (two cluster-wide blocking queries: a change costs the whole
    /// check list), or `auto` (per-service when every service's query fits the connection
    /// budget). [default: auto]
    #[arg(long, value_name = "MODE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch_mode: Option<String>,

    /// Self-preservation: a sync that would drop more than this share of the served instances
    /// at once is treated as a fault (0 disables). [default: 0.5]
    #[arg(long, value_name = "FRACTION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_preservation_threshold: Option<f64>,

    /// Self-preservation: departing instances are kept this long before they are let go.
    /// [default: 5m]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_preservation_window: Option<String>,

    /// The registry state is saved (a journal record of what changed) at most this often; a
    /// kill -9 loses at most about this much. [default: 1s]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persist_interval: Option<String>,
}

impl SyncArgs {
    /// Validates the sync section; the state is kept in `state_dir` and snapshots are built
    /// with `zone`.
    pub fn validate(
        &self,
        state_dir: PathBuf,
        zone: &ZoneOptions,
    ) -> Result<SyncSettings, ConfigError> {
        let max_concurrent_requests = self.max_concurrent_requests.unwrap_or(16);
        if max_concurrent_requests == 0 {
            return Err(ConfigError::new(
                "max-concurrent-requests",
                "must be at least 1",
            ));
        }
        let self_preservation_threshold = self.self_preservation_threshold.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&self_preservation_threshold) {
            return Err(ConfigError::new(
                "self-preservation-threshold",
                "must be between 0 and 1",
            ));
        }
        let blocking_wait = duration(
            "blocking-wait",
            self.blocking_wait.as_deref(),
            Duration::from_secs(600),
        )?;
        if blocking_wait > Duration::from_secs(600) {
            return Err(ConfigError::new(
                "blocking-wait",
                "Consul caps blocking queries at 10m",
            ));
        }
        Ok(SyncSettings {
            sync_interval: nonzero_duration(
                "sync-interval",
                self.sync_interval.as_deref(),
                Duration::from_secs(3600),
            )?,
            blocking_wait,
            watch_mode: match self.watch_mode.as_deref().unwrap_or("auto") {
                "auto" => WatchMode::Auto,
                "per-service" => WatchMode::PerService,
                "cluster" => WatchMode::Cluster,
                _ => {
                    return Err(ConfigError::new(
                        "watch-mode",
                        "must be auto, per-service or cluster",
                    ))
                }
            },
            max_concurrent_requests,
            self_preservation_threshold,
            self_preservation_window: duration(
                "self-preservation-window",
                self.self_preservation_window.as_deref(),
                Duration::from_secs(300),
            )?,
            state_dir,
            persist_interval: nonzero_duration(
                "persist-interval",
                self.persist_interval.as_deref(),
                crate::source::consul::PERSIST_INTERVAL,
            )?,
            datacenter: zone.datacenter.clone(),
            zone: zone.clone(),
        })
    }
}

fn at_least_one(
    key: &'static str,
    value: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(ConfigError::new(key, "must be at least 1")),
        n => Ok(n),
    }
}

fn parse_registry(text: &str) -> Result<RegistrySource, ConfigError> {
    if let Some(path) = text.strip_prefix("file:") {
        if path.is_empty() {
            return Err(ConfigError::new("registry", "file: needs a path"));
        }
        return Ok(RegistrySource::File(PathBuf::from(path)));
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        return Ok(RegistrySource::Consul(normalise_url("registry", text)?));
    }
    Err(ConfigError::new(
        "registry",
        format!(
            "{:?} is neither file:PATH nor an http(s):// URL",
            crate::registry::consul::redacted(text)
        ),
    ))
}

/// `CONSUL_HTTP_ADDR` may be `host:port` without a scheme, as Consul's CLI accepts.
fn normalise_url(key: &str, text: &str) -> Result<String, ConfigError> {
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let url = with_scheme.trim_end_matches('/').to_string();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            let shown = crate::registry::consul::redacted(text);
            ConfigError::new(key, format!("{shown:?}: only http and https are supported"))
        })?;
    if rest.is_empty() || rest.contains('/') {
        let shown = crate::registry::consul::redacted(text);
        return Err(ConfigError::new(
            key,
            format!("{shown:?} must be scheme://host:port without a path"),
        ));
    }
    Ok(url)
}
