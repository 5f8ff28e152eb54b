//! `consul-standin`: binds, prints `listening ADDR:PORT`, serves until SIGTERM/SIGINT.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use consul_standin::app::{App, Settings};
use consul_standin::generate::{self, Spec};
use consul_standin::query::parse_cli_duration;
use consul_standin::registry::Registry;
use consul_standin::{control, http};

/// Consul HTTP API stand-in for tests and benchmarks (loopback only).
#[derive(Debug, Parser)]
#[command(name = "consul-standin")]
struct Cli {
    /// TCP port; 0 = ephemeral.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Loopback address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Registry JSON: {service: [health/service entries]} or {"index": N, "services": {...}}.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Require this ACL token (default policy deny).
    #[arg(long, default_value = "")]
    token: String,
    /// PEM certificate chain; serve HTTPS (h2 and http/1.1 via ALPN) only.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The agent's datacenter.
    #[arg(long, default_value = "dc1")]
    datacenter: String,
    /// Initial Raft index.
    #[arg(long, default_value_t = 10)]
    initial_index: u64,
    /// Smallest body that is gzipped (gziphandler.DefaultMinSize).
    #[arg(long, default_value_t = 1400)]
    gzip_min_size: usize,
    /// default_query_time.
    #[arg(long, default_value = "5m", value_parser = parse_cli_duration)]
    default_wait: Duration,
    /// max_query_time.
    #[arg(long, default_value = "10m", value_parser = parse_cli_duration)]
    max_wait: Duration,
    /// limits.http_max_conns_per_client (0 = unlimited).
    #[arg(long, default_value_t = 200)]
    http_max_conns_per_client: usize,
    /// Synthesize SERVICES,INSTANCES,CHECKS (services svc-00000..., all passing).
    #[arg(long)]
    generate: Option<Spec>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let host: IpAddr = match cli.bind.as_str() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        b => match b.parse() {
            Ok(ip) => ip,
            Err(e) => return usage(&format!("--bind {b}: {e}")),
        },
    };
    if !host.is_loopback() {
        return usage("--bind must be a loopback address");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(cli, SocketAddr::new(host, 0))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn run(cli: Cli, mut addr: SocketAddr) -> Result<(), String> {
    addr.set_port(cli.port);
    let reg = Registry::new(cli.datacenter.clone(), cli.initial_index);
    if let Some(path) = &cli.state {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (services, index) =
            control::parse_state(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        reg.replace(services);
        reg.restore_index(index.unwrap_or(cli.initial_index));
    }
    if let Some(spec) = cli.generate {
        generate::generate(&reg, spec, cli.initial_index);
    }
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(c), Some(k)) => Some(http::tls_acceptor(c, k)?),
        _ => None,
    };
    let settings = Settings {
        default_wait: cli.default_wait,
        max_wait: cli.max_wait,
        gzip_min_size: cli.gzip_min_size,
        max_conns_per_client: cli.http_max_conns_per_client,
    };
    let app = Arc::new(App::new(reg, settings, cli.token));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {local}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
    }
    let server = tokio::spawn(http::serve(app, listener, tls));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    server.abort();
    Ok(())
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("consul-standin: {msg}");
    ExitCode::from(2)
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("consul-standin: {msg}");
    ExitCode::FAILURE
}
