//! The server section: where DNS and HTTP listen, how many UDP workers, TCP idle time, and the
//! static zones directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::values::{duration, socket_addr};
use super::ConfigError;

/// Flags (and file keys) of the server section.
#[derive(Clone, Debug, Default, Args, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ServerArgs {
    /// Address to serve DNS on, UDP and TCP; repeatable. [default: 127.0.0.1:8600]
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<String>,

    /// UDP sockets (SO_REUSEPORT) and threads per listen address. [default: number of CPUs]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_workers: Option<usize>,

    /// Close idle TCP connections after this long. [default: 10s]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_idle_timeout: Option<String>,

    /// TCP connections open at once, from all clients; more are closed at once. Lowered at
    /// start-up if the descriptor limit cannot hold them plus a reserve. [default: 1024]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tcp_clients: Option<usize>,

    /// TCP connections open at once from one client address. [default: a quarter of
    /// --max-tcp-clients]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tcp_clients_per_address: Option<usize>,

    /// Address for the HTTP health and metrics endpoint (`/health`, `/metrics`); `off`
    /// disables it. [default: 127.0.0.1:8601]
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,

    /// Directory of static zones: every `*.zone` file in it is an RFC 1035 master file served
    /// authoritatively. [default: zones]
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zones_dir: Option<PathBuf>,
}

/// Where and how the server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// DNS listen addresses (UDP and TCP each).
    pub listen: Vec<SocketAddr>,
    /// UDP sockets/threads per listen address.
    pub udp_workers: usize,
    /// TCP idle timeout (also the deadline for reading a query and writing an answer).
    pub tcp_idle_timeout: Duration,
    /// TCP connections open at once.
    pub max_tcp_clients: usize,
    /// TCP connections open at once from one address.
    pub max_tcp_clients_per_address: usize,
    /// Health/metrics listener; `None` when off.
    pub http: Option<SocketAddr>,
    /// Static zones directory (reloadable).
    pub zones_dir: PathBuf,
}

impl ServerArgs {
    /// Validates the server section.
    pub fn validate(&self) -> Result<ServerSettings, ConfigError> {
        let listen = if self.listen.is_empty() {
            vec![SocketAddr::from(([127, 0, 0, 1], 8600))]
        } else {
            self.listen
                .iter()
                .map(|text| socket_addr("listen", text, None))
                .collect::<Result<_, _>>()?
        };
        let udp_workers = self
            .udp_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if udp_workers == 0 || udp_workers > 64 {
            return Err(ConfigError::new("udp-workers", "must be between 1 and 64"));
        }
        let http = match self.http.as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 8601))),
            Some("off") => None,
            Some(text) => Some(socket_addr("http", text, None)?),
        };
        let max_tcp_clients = self.max_tcp_clients.unwrap_or(1024);
        if max_tcp_clients == 0 {
            return Err(ConfigError::new("max-tcp-clients", "must be at least 1"));
        }
        let max_tcp_clients_per_address = self
            .max_tcp_clients_per_address
            .unwrap_or((max_tcp_clients / 4).max(1));
        if max_tcp_clients_per_address == 0 || max_tcp_clients_per_address > max_tcp_clients {
            return Err(ConfigError::new(
                "max-tcp-clients-per-address",
                "must be between 1 and max-tcp-clients",
            ));
        }
        Ok(ServerSettings {
            listen,
            udp_workers,
            max_tcp_clients,
            max_tcp_clients_per_address,
            tcp_idle_timeout: duration(
                "tcp-idle-timeout",
                self.tcp_idle_timeout.as_deref(),
                Duration::from_secs(10),
            )?,
            http,
            zones_dir: self
                .zones_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("zones")),
        })
    }
}
