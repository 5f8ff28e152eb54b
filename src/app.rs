//! Wiring and lifecycle: builds every part from the [`Config`], starts the tasks and threads,
//! and stops them in order when the shutdown future resolves.
//!
//! Start-up order: registry file or persisted Consul snapshot (served at once), static zones,
//! the HTTP listener (logged before the DNS sockets), DNS sockets, UDP workers, TCP server,
//! registry sync, HTTP endpoint. Shutdown: stop accepting, stop syncing (the last state is
//! persisted), let in-flight queries finish within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, RegistrySource};
use crate::dns::forward::{ForwardConfig, Forwarder};
use crate::dns::{tcp, udp, AnswerPolicy, Forwarding, Responder, TcpHandler};
use crate::metrics::Metrics;
use crate::registry::consul::{ConsulClient, ConsulConfig, ConsulError};
use crate::snapshot::{SnapshotStore, ZoneOptions};
use crate::source::consul::{self, SyncSettings, SyncTask};
use crate::source::file::FileSource;
use crate::source::status::SourceStatus;
use crate::zone::{wire_key, ZoneSet};
use crate::{http, reload, static_zones};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot bind {proto} {addr}: {source}")]
    Bind {
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start worker threads: {0}")]
    Thread(#[source] std::io::Error),
    /// The Consul client cannot be set up (CA file, client certificate, token).
    #[error("{0}")]
    Registry(#[source] ConsulError),
    /// The registry domain cannot be encoded.
    #[error("invalid registry domain: {0}")]
    Domain(#[source] hickory_proto::ProtoError),
}

/// How long in-flight work may take to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs the server until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    run_with_reloads(config, shutdown, None).await
}

/// Like [`run`], also applying each configuration that arrives on `reloads` (SIGHUP; see
/// [`reload`]).
pub async fn run_with_reloads(
    config: Config,
    shutdown: impl Future<Output = ()>,
    reloads: Option<tokio::sync::mpsc::Receiver<reload::Request>>,
) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::default());
    let store = SnapshotStore::default();
    let zone_options = zone_options(&config);

    let static_zones = Arc::new(ArcSwap::from_pointee(ZoneSet::default()));
    static_zones.store(Arc::new(static_zones::load_dir(&config.zones_dir)));

    let forwarder = (!config.upstreams.is_empty()).then(|| {
        Arc::new(Forwarder::new(
            ForwardConfig {
                upstreams: config.upstreams.clone(),
                timeout: config.upstream_timeout,
                cache_size: config.cache_size,
                cache_min_ttl: config.cache_min_ttl,
                cache_max_ttl: config.cache_max_ttl,
                cache_max_negative_ttl: config.cache_max_negative_ttl,
                max_udp_size: config.max_udp_size,
            },
            metrics.clone(),
        ))
    });
    let forwarding = Forwarding {
        runtime: tokio::runtime::Handle::current(),
        forwarder,
        udp_in_flight: Arc::default(),
    };
    let udp_in_flight = forwarding.udp_in_flight.clone();
    let policy = AnswerPolicy {
        max_udp_size: config.max_udp_size,
        shuffle: config.shuffle,
        forwarding: forwarding.forwarder.is_some(),
        allow_recursion: config.allow_recursion.clone(),
    };
    let apex = wire_key(&config.domain).map_err(StartError::Domain)?;
    let responder = Responder::new(store.clone(), &apex, static_zones.clone(), policy);

    // The registry file (or Consul's persisted state) is read before the sockets open, so the
    // first query sees its data. Health is bound before DNS.
    let status = Arc::new(source_status(&config));
    let sync_settings = sync_settings(&config, zone_options.clone());
    let mut file_source = match &config.registry {
        RegistrySource::File(path) => {
            let options = zone_options.clone();
            let mut source = FileSource::new(path.clone(), options, store.clone(), status.clone());
            source.load_once();
            Some(source)
        }
        RegistrySource::Consul(_) => {
            consul::restore(&sync_settings, &store, &status);
            None
        }
    };
    let http_listener = match config.http {
        Some(addr) => Some(http::bind(addr).await.map_err(|source| StartError::Bind {
            proto: "http",
            addr,
            source,
        })?),
        None => None,
    };

    // Bind every socket before serving anything, so a bad address fails start-up cleanly.
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    for addr in &config.listen {
        let (udp, tcp) = bind_pair(*addr, config.udp_workers).await?;
        let bound = udp[0].local_addr().map_err(|source| StartError::Bind {
            proto: "udp",
            addr: *addr,
            source,
        })?;
        info!("listening on udp {bound}");
        info!("listening on tcp {bound}");
        udp_sockets.extend(udp);
        tcp_listeners.push(tcp);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let workers = udp::spawn_workers(
        udp_sockets,
        responder.clone(),
        forwarding.clone(),
        metrics.clone(),
        stop.clone(),
    )
    .map_err(StartError::Thread)?;
    let token = CancellationToken::new();
    let tcp_handler = Arc::new(TcpHandler::new(
        responder.clone(),
        forwarding,
        metrics.clone(),
    ));
    let mut tcp_servers = tokio::task::JoinSet::new();
    for listener in tcp_listeners {
        tcp_servers.spawn(tcp::serve(
            listener,
            tcp_handler.clone(),
            config.tcp_idle_timeout,
            token.child_token(),
        ));
    }

    let mut tasks = tokio::task::JoinSet::new();
    match &config.registry {
        RegistrySource::File(_) => {
            if let Some(source) = file_source.take() {
                tasks.spawn(source.watch(token.child_token()));
            }
        }
        RegistrySource::Consul(_) => {
            let client = ConsulClient::new(consul_config(&config)).map_err(StartError::Registry)?;
            let task = SyncTask::new(client, sync_settings, store.clone(), status.clone());
            tasks.spawn(task.run(token.child_token()));
        }
    }
    if let Some(listener) = http_listener {
        let served = Arc::new(http::Served {
            store: store.clone(),
            status: status.clone(),
            started: std::time::SystemTime::now(),
            metrics: metrics.clone(),
        });
        tasks.spawn(http::serve(listener, served, token.child_token()));
    }

    if let Some(requests) = reloads {
        let reloader = reload::Reloader::new(
            config.clone(),
            static_zones.clone(),
            responder.clone(),
            metrics.clone(),
        );
        tasks.spawn(reload::watch(requests, reloader, token.child_token()));
    }

    shutdown.await;
    info!("shutting down");
    token.cancel();
    stop.store(true, Ordering::Relaxed);
    let drain = async {
        // The TCP listeners close at once; open connections finish the query in progress.
        while tcp_servers.join_next().await.is_some() {}
        while tasks.join_next().await.is_some() {}
        for worker in workers {
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        }
        // UDP queries handed to the forwarder before the workers stopped get their answer.
        while udp_in_flight.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        warn!("shutdown grace period elapsed");
    }
    Ok(())
}

/// The source status shown by `/health` and `/metrics`, for either source.
fn source_status(config: &Config) -> SourceStatus {
    let persistence = match config.registry {
        RegistrySource::File(_) => None,
        RegistrySource::Consul(_) => Some(config.state_dir.clone()),
    };
    let datacenter = config.datacenter.clone();
    SourceStatus::new(config.registry.clone(), datacenter, persistence)
}

/// How the sync engine reaches Consul.
fn consul_config(config: &Config) -> ConsulConfig {
    let url = match &config.registry {
        RegistrySource::Consul(url) => url.clone(),
        RegistrySource::File(_) => String::new(),
    };
    ConsulConfig {
        url,
        token: config.token.clone(),
        ca_file: config.ca_file.clone(),
        client_identity: config.client_identity.clone(),
        datacenter: config.datacenter.clone(),
        consistent: config.consistent,
        request_timeout: config.request_timeout,
    }
}

/// The sync engine's settings.
fn sync_settings(config: &Config, zone: ZoneOptions) -> SyncSettings {
    SyncSettings {
        sync_interval: config.sync_interval,
        blocking_wait: config.blocking_wait,
        max_concurrent_requests: config.max_concurrent_requests,
        self_preservation_threshold: config.self_preservation_threshold,
        self_preservation_window: config.self_preservation_window,
        state_dir: config.state_dir.clone(),
        datacenter: config.datacenter.clone(),
        zone,
    }
}

/// The zone shape from the configuration.
pub fn zone_options(config: &Config) -> ZoneOptions {
    ZoneOptions {
        domain: config.domain.clone(),
        datacenter: config.datacenter.clone(),
        service_ttl: config.service_ttl,
        node_ttl: config.node_ttl,
        negative_ttl: config.negative_ttl,
        nameserver_addresses: config
            .listen
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
            .collect(),
    }
}

/// UDP sockets and a TCP listener on the same address; with port 0 the UDP socket picks the
/// port and TCP takes the same one (retrying when that port is taken for TCP).
async fn bind_pair(
    addr: SocketAddr,
    workers: usize,
) -> Result<(Vec<std::net::UdpSocket>, TcpListener), StartError> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = udp::bind(addr, workers).map_err(|source| StartError::Bind {
            proto: "udp",
            addr,
            source,
        })?;
        let port = udp[0]
            .local_addr()
            .map_err(|source| StartError::Bind {
                proto: "udp",
                addr,
                source,
            })?
            .port();
        let tcp_addr = SocketAddr::new(addr.ip(), port);
        match bind_tcp(tcp_addr) {
            Ok(listener) => return Ok((udp, listener)),
            Err(source) => {
                last_error = Some(StartError::Bind {
                    proto: "tcp",
                    addr: tcp_addr,
                    source,
                })
            }
        }
    }
    Err(last_error.expect("at least one attempt"))
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}
