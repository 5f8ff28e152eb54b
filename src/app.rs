//! Wiring and lifecycle: builds every part from the [`Config`], starts the tasks and threads,
//! and stops them in order when the shutdown future resolves.
//!
//! Start-up order: registry file or persisted Consul snapshot (served at once), static zones,
//! the HTTP listener (logged before the DNS sockets), DNS sockets, UDP workers, TCP server,
//! registry sync, HTTP endpoint. Shutdown: stop accepting, stop syncing (the last state is
//! persisted), let in-flight queries finish within the grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::config::{Config, RegistrySource};
use crate::dns::forward::Forwarder;
use crate::dns::{tcp, transfer, udp, Forwarding, Responder, TcpClients, TcpHandler};
use crate::drain::Drain;
use crate::explain::Explainer;
use crate::metrics::Metrics;
use crate::registry::consul::{ConsulClient, ConsulError};
use crate::snapshot::SnapshotStore;
use crate::source::consul::{self, SyncTask};
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
    store.keep_history(config.transfer.ixfr_journal);

    let static_zones = Arc::new(ArcSwap::from_pointee(ZoneSet::default()));
    static_zones.store(Arc::new(static_zones::load_dir(&config.server.zones_dir)));

    let forwarding = Forwarding {
        runtime: tokio::runtime::Handle::current(),
        forwarder: (!config.forward.upstreams.is_empty())
            .then(|| Arc::new(Forwarder::new(config.forward.clone(), metrics.clone()))),
    };
    let apex = wire_key(&config.zone.domain).map_err(StartError::Domain)?;
    let responder = Responder::new(
        store.clone(),
        &apex,
        static_zones.clone(),
        config.answer.clone(),
    );

    // The registry file (or Consul's persisted state) is read before the sockets open, so the
    // first query sees its data. Health is bound before DNS.
    let status = Arc::new(source_status(&config));
    let (file_source, restoring) = load_registry(&config, &store, &status);
    let http_listener = match config.server.http {
        Some(addr) => Some(http::bind(addr).await.map_err(|source| StartError::Bind {
            proto: "http",
            addr,
            source,
        })?),
        None => None,
    };
    let (udp_sockets, tcp_listeners) = bind_dns(&config).await?;

    let drain = Drain::default();
    let workers = udp::spawn_workers(
        udp_sockets,
        responder.clone(),
        forwarding.clone(),
        metrics.clone(),
        drain.clone(),
    )
    .map_err(StartError::Thread)?;
    let tcp_clients = TcpClients::new(
        tcp_client_budget(&config),
        config.server.max_tcp_clients_per_address,
    );
    let tcp_handler = Arc::new(TcpHandler::new(
        responder.clone(),
        forwarding,
        metrics.clone(),
        tcp_clients,
    ));
    let mut tcp_servers = tokio::task::JoinSet::new();
    for listener in tcp_listeners {
        let idle = config.server.tcp_idle_timeout;
        tcp_servers.spawn(tcp::serve(
            listener,
            tcp_handler.clone(),
            idle,
            drain.token(),
        ));
    }

    let mut tasks = tokio::task::JoinSet::new();
    match file_source {
        Some(source) => {
            tasks.spawn(source.watch(drain.token()));
        }
        None => {
            let client = ConsulClient::new(config.consul.clone()).map_err(StartError::Registry)?;
            let (settings, store, status) = (config.sync.clone(), store.clone(), status.clone());
            let token = drain.token();
            tasks.spawn(async move {
                // The sync's baseline is the persisted state, once it is read (a zone cache
                // served meanwhile holds no state to diff against).
                let adopted = tokio::select! {
                    () = token.cancelled() => return,
                    adopted = restoring.finished() => adopted,
                };
                SyncTask::new(client, settings, store, status)
                    .adopting(adopted)
                    .run(token)
                    .await;
            });
        }
    }
    tasks.spawn(transfer::notify_changes(
        store.clone(),
        responder.clone(),
        config.zone.domain.clone(),
        config.transfer.notify.clone(),
        drain.token(),
    ));
    if let Some(listener) = http_listener {
        let served = http::Served {
            store: store.clone(),
            status: status.clone(),
            started: std::time::SystemTime::now(),
            metrics: metrics.clone(),
            explain: Some(explainer(
                &config,
                &responder,
                &store,
                &static_zones,
                &status,
            )),
            identity: config.answer.identity.identity.clone(),
            health: config.zone.health,
        };
        tasks.spawn(http::serve(listener, Arc::new(served), drain.token()));
    }
    if let Some(requests) = reloads {
        let reloader = reload::Reloader::new(config, static_zones, responder, metrics);
        tasks.spawn(reload::watch(requests, reloader, drain.token()));
    }

    shutdown.await;
    info!("shutting down");
    drain.start();
    let drained = async {
        // The TCP listeners close at once; open connections finish the query in progress.
        while tcp_servers.join_next().await.is_some() {}
        while tasks.join_next().await.is_some() {}
        join_workers(workers).await;
        // UDP queries handed to the forwarder before the workers stopped get their answer.
        drain.in_flight_finished().await;
    };
    if tokio::time::timeout(Drain::GRACE, drained).await.is_err() {
        warn!("shutdown grace period elapsed");
    }
    Ok(())
}

/// What answers `/v1/explain`: the same responder, store, static zones and status as served.
fn explainer(
    config: &Config,
    responder: &Responder,
    store: &SnapshotStore,
    static_zones: &Arc<ArcSwap<ZoneSet>>,
    status: &Arc<SourceStatus>,
) -> Arc<dyn http::explain::Explain> {
    Arc::new(Explainer {
        responder: responder.clone(),
        store: store.clone(),
        static_zones: static_zones.clone(),
        status: status.clone(),
        domain: config.zone.domain.clone(),
        datacenter: config.zone.datacenter.clone(),
        health: config.zone.health,
        upstreams: config
            .forward
            .upstreams
            .iter()
            .map(ToString::to_string)
            .collect(),
    })
}

/// Waits for the UDP worker threads, off the runtime's threads.
async fn join_workers(workers: Vec<std::thread::JoinHandle<()>>) {
    for worker in workers {
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    }
}

/// Publishes what the registry source has now: the file, read and built, or Consul's newest
/// persisted state (its zone cache at once, the state read in the background). Returns the
/// file source, to be watched, or for Consul what of the start-up from disk is under way.
fn load_registry(
    config: &Config,
    store: &SnapshotStore,
    status: &Arc<SourceStatus>,
) -> (Option<FileSource>, consul::Restoring) {
    match &config.registry {
        RegistrySource::File(path) => {
            let options = config.zone.clone();
            let mut source = FileSource::new(path.clone(), options, store.clone(), status.clone());
            source.load_once();
            (Some(source), consul::Restoring::default())
        }
        RegistrySource::Consul(_) => (None, consul::restore(&config.sync, store, status)),
    }
}

/// Binds every DNS socket before anything is served, so a bad address fails start-up cleanly.
async fn bind_dns(
    config: &Config,
) -> Result<(Vec<std::net::UdpSocket>, Vec<TcpListener>), StartError> {
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    for addr in &config.server.listen {
        let (udp, tcp) = bind_pair(*addr, config.server.udp_workers).await?;
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
    Ok((udp_sockets, tcp_listeners))
}

/// The source status shown by `/health` and `/metrics`, for either source.
fn source_status(config: &Config) -> SourceStatus {
    let persistence = match config.registry {
        RegistrySource::File(_) => None,
        RegistrySource::Consul(_) => Some(config.sync.state_dir.clone()),
    };
    let datacenter = config.zone.datacenter.clone();
    SourceStatus::new(config.registry.clone(), datacenter, persistence)
}

/// Descriptors kept out of the TCP clients' reach: listening and UDP sockets, state and zone
/// files, the HTTP endpoint and the registry connections.
const DESCRIPTOR_RESERVE: usize = 256;

/// How many TCP clients may be open at once: `--max-tcp-clients`, lowered if the descriptor
/// limit (its soft value raised to the hard one first) cannot also hold the reserve and one
/// descriptor per upstream exchange in flight.
fn tcp_client_budget(config: &Config) -> usize {
    let wanted = config.server.max_tcp_clients;
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        Err(error) => {
            warn!(%error, "cannot read or raise the open-file limit; keeping max-tcp-clients");
            return wanted;
        }
    };
    let forwards = if config.forward.upstreams.is_empty() {
        0
    } else {
        config.forward.max_forwards
    };
    let room = limit.saturating_sub(DESCRIPTOR_RESERVE + forwards).max(1);
    if wanted > room {
        warn!(
            limit,
            max_tcp_clients = wanted,
            lowered_to = room,
            "the open-file limit cannot hold max-tcp-clients plus the upstream queries and a reserve; lowered"
        );
        room
    } else {
        wanted
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
