//! Command line and configuration file, turned into one validated [`Config`].
//!
//! Every `serve` flag has a key of the same name in the TOML file given by `--config`; a flag
//! given on the command line wins over the file. Validation happens here, before anything is
//! bound, so a bad value stops start-up with a one-line error naming the key (exit code 2).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::Deserialize;

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
}

/// Flags of `snapdns serve`. Each may also be set in the `--config` file under the same name.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML file with any of these settings (flag names as keys); flags override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to serve DNS on, UDP and TCP; repeatable. [default: 127.0.0.1:8600]
    #[arg(long, value_name = "ADDR:PORT")]
    #[serde(default)]
    pub listen: Vec<String>,

    /// Registry source: `file:PATH` (a JSON file of Consul health entries, watched) or
    /// `http(s)://HOST:PORT` (Consul's HTTP API). [default: $CONSUL_HTTP_ADDR, else http://127.0.0.1:8500]
    #[arg(long, value_name = "SOURCE")]
    pub registry: Option<String>,

    /// The registry domain. [default: consul.]
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,

    /// The local datacenter: names without a datacenter label mean this one, and the one
    /// Consul is asked about. [default: dc1]
    #[arg(long, value_name = "DC")]
    pub datacenter: Option<String>,

    /// Directory for the persisted snapshot. [default: /var/lib/snapdns]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// TTL of service answers (A, AAAA, CNAME, SRV and their additional records), e.g. `0s`,
    /// `10s`. [default: 0s, as Consul]
    #[arg(long, value_name = "DURATION")]
    pub service_ttl: Option<String>,

    /// TTL of node and addr answers and of NS records. [default: 0s, as Consul]
    #[arg(long, value_name = "DURATION")]
    pub node_ttl: Option<String>,

    /// SOA minimum and TTL, i.e. how long resolvers cache NXDOMAIN/NODATA from the registry
    /// zone (RFC 2308). [default: 0s, as Consul's soa.min_ttl]
    #[arg(long, value_name = "DURATION")]
    pub negative_ttl: Option<String>,

    /// Largest UDP response for EDNS clients, whatever they advertise (512 to 65535). Clients
    /// without EDNS always get at most 512 bytes. [default: 1232]
    #[arg(long, value_name = "BYTES")]
    pub max_udp_size: Option<u16>,

    /// Do not shuffle A/AAAA answers per query (SRV answers are always in a stable order).
    #[arg(long)]
    #[serde(default)]
    pub no_shuffle: bool,

    /// UDP sockets (SO_REUSEPORT) and threads per listen address. [default: number of CPUs]
    #[arg(long, value_name = "N")]
    pub udp_workers: Option<usize>,

    /// Close idle TCP connections after this long. [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub tcp_idle_timeout: Option<String>,

    /// Address for the HTTP health and metrics endpoint (`/health`, `/metrics`); `off`
    /// disables it. [default: 127.0.0.1:8601]
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<String>,

    /// File holding the Consul ACL token (sent as X-Consul-Token, never logged).
    /// [default: $CONSUL_HTTP_TOKEN]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// CA certificate (PEM) to verify Consul's HTTPS certificate with.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for Consul's HTTPS, with --client-key.
    #[arg(long, value_name = "FILE")]
    pub client_cert: Option<PathBuf>,

    /// Private key (PEM) of --client-cert.
    #[arg(long, value_name = "FILE")]
    pub client_key: Option<PathBuf>,

    /// Ask Consul for consistent reads instead of stale ones (stale reads keep working during
    /// leader elections).
    #[arg(long)]
    #[serde(default)]
    pub consistent: bool,

    /// Full resync period, jittered by up to a tenth either way. [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub sync_interval: Option<String>,

    /// Timeout of one registry request (blocking queries get their wait time on top). [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<String>,

    /// How long a blocking query waits for a change (Consul caps it at 10m). [default: 60s]
    #[arg(long, value_name = "DURATION")]
    pub blocking_wait: Option<String>,

    /// Registry requests in flight at once during a resync. [default: 8]
    #[arg(long, value_name = "N")]
    pub max_concurrent_requests: Option<usize>,

    /// Self-preservation: a sync that would drop more than this share of the served instances
    /// at once is treated as a fault (0 disables). [default: 0.5]
    #[arg(long, value_name = "FRACTION")]
    pub self_preservation_threshold: Option<f64>,

    /// Self-preservation: departing instances are kept this long before they are let go.
    /// [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub self_preservation_window: Option<String>,

    /// Upstream resolver for names outside the served zones, `IP` or `IP:PORT`; repeatable,
    /// tried in order. [default: the nameservers of /etc/resolv.conf, minus our own addresses]
    #[arg(long, value_name = "ADDR[:PORT]")]
    #[serde(default)]
    pub upstream: Vec<String>,

    /// Do not forward at all (no upstreams): names outside the served zones get REFUSED.
    #[arg(long)]
    #[serde(default)]
    pub no_forward: bool,

    /// Timeout of one upstream attempt before the next upstream is tried. [default: 2s]
    #[arg(long, value_name = "DURATION")]
    pub upstream_timeout: Option<String>,

    /// Clients allowed to recurse (forwarded names, RA=1), as CIDR; repeatable.
    /// [default: 127.0.0.0/8 and ::1/128]
    #[arg(long, value_name = "CIDR")]
    #[serde(default)]
    pub allow_recursion: Vec<String>,

    /// Directory of static zones: every `*.zone` file in it is an RFC 1035 master file served
    /// authoritatively. [default: zones]
    #[arg(long, value_name = "DIR")]
    pub zones_dir: Option<PathBuf>,

    /// Forwarding cache capacity in entries. [default: 10000]
    #[arg(long, value_name = "N")]
    pub cache_size: Option<u64>,

    /// Cached answers live at least this long (raises lower TTLs). [default: 0s]
    #[arg(long, value_name = "DURATION")]
    pub cache_min_ttl: Option<String>,

    /// Cached answers live at most this long (caps higher TTLs). [default: 1h]
    #[arg(long, value_name = "DURATION")]
    pub cache_max_ttl: Option<String>,

    /// Negative answers (NXDOMAIN, NODATA) are cached at most this long. [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub cache_max_negative_ttl: Option<String>,

    /// Log filter, e.g. `info` or `snapdns=debug`. [default: $RUST_LOG, else info]
    #[arg(long, value_name = "FILTER")]
    #[serde(skip)]
    pub log: Option<String>,

    /// Log format: `plain` or `json` (one object per line). [default: plain]
    #[arg(long, value_name = "FORMAT")]
    #[serde(skip)]
    pub log_format: Option<String>,
}

pub use crate::source::RegistrySource;

/// Validated settings of a running server.
#[derive(Clone, Debug)]
pub struct Config {
    /// DNS listen addresses (UDP and TCP each).
    pub listen: Vec<SocketAddr>,
    /// Registry source.
    pub registry: RegistrySource,
    /// Registry domain, lower case, fully qualified.
    pub domain: Name,
    /// Local datacenter, lower case.
    pub datacenter: String,
    /// Persisted snapshot directory.
    pub state_dir: PathBuf,
    /// Service answer TTL in seconds.
    pub service_ttl: u32,
    /// Node/addr/NS TTL in seconds.
    pub node_ttl: u32,
    /// Negative TTL (SOA minimum) in seconds.
    pub negative_ttl: u32,
    /// UDP response cap for EDNS clients.
    pub max_udp_size: u16,
    /// Shuffle A/AAAA answers.
    pub shuffle: bool,
    /// UDP sockets/threads per listen address.
    pub udp_workers: usize,
    /// TCP idle timeout.
    pub tcp_idle_timeout: Duration,
    /// Health/metrics listener.
    pub http: Option<SocketAddr>,
    /// Consul ACL token.
    pub token: Option<String>,
    /// CA file for Consul HTTPS.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for Consul HTTPS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Consistent instead of stale reads.
    pub consistent: bool,
    /// Full resync period.
    pub sync_interval: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Blocking query wait.
    pub blocking_wait: Duration,
    /// Concurrent registry requests.
    pub max_concurrent_requests: usize,
    /// Share of instances whose sudden loss trips self-preservation (0 = off).
    pub self_preservation_threshold: f64,
    /// How long departing instances are kept under self-preservation.
    pub self_preservation_window: Duration,
    /// Upstream resolvers, in order.
    pub upstreams: Vec<SocketAddr>,
    /// Per-upstream timeout.
    pub upstream_timeout: Duration,
    /// Clients allowed to recurse.
    pub allow_recursion: Vec<IpNet>,
    /// Static zones directory.
    pub zones_dir: PathBuf,
    /// Forwarding cache capacity.
    pub cache_size: u64,
    /// Forwarding cache TTL floor.
    pub cache_min_ttl: Duration,
    /// Forwarding cache TTL cap.
    pub cache_max_ttl: Duration,
    /// Forwarding cache negative TTL cap.
    pub cache_max_negative_ttl: Duration,
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
    fn new(key: &str, message: impl Into<String>) -> Self {
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
        }
    }
}

impl Config {
    /// Merges the flags over the `--config` file (if any) and validates the result.
    pub fn load(args: &ServeArgs, env: &Environment) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => Some(read_file(path)?),
            None => None,
        };
        let merged = merge(args, file.unwrap_or_default());
        let mut config = Self::from_args(&merged, env)?;
        config.config_file = args.config.clone();
        Ok(config)
    }

    /// Validates settings that are already merged.
    pub fn from_args(args: &ServeArgs, env: &Environment) -> Result<Self, ConfigError> {
        let listen = if args.listen.is_empty() {
            vec![SocketAddr::from(([127, 0, 0, 1], 8600))]
        } else {
            args.listen
                .iter()
                .map(|text| parse_socket_addr("listen", text, None))
                .collect::<Result<_, _>>()?
        };
        let registry = match &args.registry {
            Some(text) => parse_registry(text)?,
            None => RegistrySource::Consul(normalise_url(
                "registry",
                env.consul_http_addr
                    .as_deref()
                    .unwrap_or("http://127.0.0.1:8500"),
            )?),
        };
        let domain_text = args.domain.as_deref().unwrap_or("consul.");
        let mut domain = Name::from_ascii(domain_text)
            .map_err(|e| {
                ConfigError::new(
                    "domain",
                    format!("{domain_text:?} is not a domain name: {e}"),
                )
            })?
            .to_lowercase();
        domain.set_fqdn(true);
        if domain.is_root() {
            return Err(ConfigError::new(
                "domain",
                "the registry domain cannot be the root",
            ));
        }
        let datacenter = args
            .datacenter
            .as_deref()
            .unwrap_or("dc1")
            .to_ascii_lowercase();
        if datacenter.is_empty()
            || datacenter.contains('.')
            || Name::from_ascii(&datacenter).is_err()
        {
            return Err(ConfigError::new(
                "datacenter",
                format!("{datacenter:?} is not a single DNS label"),
            ));
        }
        let max_udp_size = args.max_udp_size.unwrap_or(1232);
        if max_udp_size < 512 {
            return Err(ConfigError::new(
                "max-udp-size",
                format!("{max_udp_size} is below 512"),
            ));
        }
        let udp_workers = args
            .udp_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        if udp_workers == 0 || udp_workers > 64 {
            return Err(ConfigError::new("udp-workers", "must be between 1 and 64"));
        }
        let http = match args.http.as_deref() {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 8601))),
            Some("off") => None,
            Some(text) => Some(parse_socket_addr("http", text, None)?),
        };
        let token = match &args.token_file {
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
            None => env.consul_http_token.clone(),
        }
        .filter(|t| !t.is_empty());
        for (key, path) in [
            ("ca-file", &args.ca_file),
            ("client-cert", &args.client_cert),
            ("client-key", &args.client_key),
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
        let client_identity = match (&args.client_cert, &args.client_key) {
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
        let max_concurrent_requests = args.max_concurrent_requests.unwrap_or(8);
        if max_concurrent_requests == 0 {
            return Err(ConfigError::new(
                "max-concurrent-requests",
                "must be at least 1",
            ));
        }
        let self_preservation_threshold = args.self_preservation_threshold.unwrap_or(0.5);
        if !(0.0..=1.0).contains(&self_preservation_threshold) {
            return Err(ConfigError::new(
                "self-preservation-threshold",
                "must be between 0 and 1",
            ));
        }
        let blocking_wait = duration(
            "blocking-wait",
            args.blocking_wait.as_deref(),
            Duration::from_secs(60),
        )?;
        if blocking_wait > Duration::from_secs(600) {
            return Err(ConfigError::new(
                "blocking-wait",
                "Consul caps blocking queries at 10m",
            ));
        }
        let upstreams = if args.no_forward {
            Vec::new()
        } else if args.upstream.is_empty() {
            resolv_conf_nameservers(env.resolv_conf.as_deref().unwrap_or(""), &listen)
        } else {
            args.upstream
                .iter()
                .map(|text| parse_socket_addr("upstream", text, Some(53)))
                .collect::<Result<_, _>>()?
        };
        if let Some(own) = upstreams.iter().find(|u| listen.contains(u)) {
            return Err(ConfigError::new(
                "upstream",
                format!("{own} is one of our own listen addresses"),
            ));
        }
        let allow_recursion = if args.allow_recursion.is_empty() {
            vec![
                "127.0.0.0/8".parse().expect("valid"),
                "::1/128".parse().expect("valid"),
            ]
        } else {
            args.allow_recursion
                .iter()
                .map(|text| parse_net(text))
                .collect::<Result<_, _>>()?
        };
        let cache_size = args.cache_size.unwrap_or(10_000);
        let cache_min_ttl = duration(
            "cache-min-ttl",
            args.cache_min_ttl.as_deref(),
            Duration::ZERO,
        )?;
        let cache_max_ttl = duration(
            "cache-max-ttl",
            args.cache_max_ttl.as_deref(),
            Duration::from_secs(3600),
        )?;
        if cache_min_ttl > cache_max_ttl {
            return Err(ConfigError::new("cache-min-ttl", "is above cache-max-ttl"));
        }
        Ok(Self {
            listen,
            registry,
            domain,
            datacenter,
            state_dir: args
                .state_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/lib/snapdns")),
            service_ttl: ttl("service-ttl", args.service_ttl.as_deref())?,
            node_ttl: ttl("node-ttl", args.node_ttl.as_deref())?,
            negative_ttl: ttl("negative-ttl", args.negative_ttl.as_deref())?,
            max_udp_size,
            shuffle: !args.no_shuffle,
            udp_workers,
            tcp_idle_timeout: duration(
                "tcp-idle-timeout",
                args.tcp_idle_timeout.as_deref(),
                Duration::from_secs(10),
            )?,
            http,
            token,
            ca_file: args.ca_file.clone(),
            client_identity,
            consistent: args.consistent,
            sync_interval: nonzero(
                duration(
                    "sync-interval",
                    args.sync_interval.as_deref(),
                    Duration::from_secs(30),
                )?,
                "sync-interval",
            )?,
            request_timeout: nonzero(
                duration(
                    "request-timeout",
                    args.request_timeout.as_deref(),
                    Duration::from_secs(10),
                )?,
                "request-timeout",
            )?,
            blocking_wait,
            max_concurrent_requests,
            self_preservation_threshold,
            self_preservation_window: duration(
                "self-preservation-window",
                args.self_preservation_window.as_deref(),
                Duration::from_secs(300),
            )?,
            upstreams,
            upstream_timeout: nonzero(
                duration(
                    "upstream-timeout",
                    args.upstream_timeout.as_deref(),
                    Duration::from_secs(2),
                )?,
                "upstream-timeout",
            )?,
            allow_recursion,
            zones_dir: args
                .zones_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("zones")),
            cache_size,
            cache_min_ttl,
            cache_max_ttl,
            cache_max_negative_ttl: duration(
                "cache-max-negative-ttl",
                args.cache_max_negative_ttl.as_deref(),
                Duration::from_secs(300),
            )?,
            config_file: None,
        })
    }
}

fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str::<ServeArgs>(&text).map_err(|e| {
        let message = e.message().to_string();
        // serde names an unknown or mistyped key in its message; keep it on one line.
        let key = e
            .span()
            .and_then(|span| text.get(span))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        ConfigError::new(
            &format!("config {}", path.display()),
            if key.is_empty() {
                message.replace('\n', " ")
            } else {
                format!("{key}: {}", message.replace('\n', " "))
            },
        )
    })
}

/// Flags win over the file: every flag that was given replaces the file's value.
fn merge(flags: &ServeArgs, file: ServeArgs) -> ServeArgs {
    fn pick<T: Clone>(flag: &Option<T>, file: Option<T>) -> Option<T> {
        flag.clone().or(file)
    }
    fn list(flag: &[String], file: Vec<String>) -> Vec<String> {
        if flag.is_empty() {
            file
        } else {
            flag.to_vec()
        }
    }
    ServeArgs {
        config: flags.config.clone(),
        listen: list(&flags.listen, file.listen),
        registry: pick(&flags.registry, file.registry),
        domain: pick(&flags.domain, file.domain),
        datacenter: pick(&flags.datacenter, file.datacenter),
        state_dir: pick(&flags.state_dir, file.state_dir),
        service_ttl: pick(&flags.service_ttl, file.service_ttl),
        node_ttl: pick(&flags.node_ttl, file.node_ttl),
        negative_ttl: pick(&flags.negative_ttl, file.negative_ttl),
        max_udp_size: pick(&flags.max_udp_size, file.max_udp_size),
        no_shuffle: flags.no_shuffle || file.no_shuffle,
        udp_workers: pick(&flags.udp_workers, file.udp_workers),
        tcp_idle_timeout: pick(&flags.tcp_idle_timeout, file.tcp_idle_timeout),
        http: pick(&flags.http, file.http),
        token_file: pick(&flags.token_file, file.token_file),
        ca_file: pick(&flags.ca_file, file.ca_file),
        client_cert: pick(&flags.client_cert, file.client_cert),
        client_key: pick(&flags.client_key, file.client_key),
        consistent: flags.consistent || file.consistent,
        sync_interval: pick(&flags.sync_interval, file.sync_interval),
        request_timeout: pick(&flags.request_timeout, file.request_timeout),
        blocking_wait: pick(&flags.blocking_wait, file.blocking_wait),
        max_concurrent_requests: pick(&flags.max_concurrent_requests, file.max_concurrent_requests),
        self_preservation_threshold: pick(
            &flags.self_preservation_threshold,
            file.self_preservation_threshold,
        ),
        self_preservation_window: pick(
            &flags.self_preservation_window,
            file.self_preservation_window,
        ),
        upstream: list(&flags.upstream, file.upstream),
        no_forward: flags.no_forward || file.no_forward,
        upstream_timeout: pick(&flags.upstream_timeout, file.upstream_timeout),
        allow_recursion: list(&flags.allow_recursion, file.allow_recursion),
        zones_dir: pick(&flags.zones_dir, file.zones_dir),
        cache_size: pick(&flags.cache_size, file.cache_size),
        cache_min_ttl: pick(&flags.cache_min_ttl, file.cache_min_ttl),
        cache_max_ttl: pick(&flags.cache_max_ttl, file.cache_max_ttl),
        cache_max_negative_ttl: pick(&flags.cache_max_negative_ttl, file.cache_max_negative_ttl),
        log: flags.log.clone(),
        log_format: flags.log_format.clone(),
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
        format!("{text:?} is neither file:PATH nor an http(s):// URL"),
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
            ConfigError::new(key, format!("{text:?}: only http and https are supported"))
        })?;
    if rest.is_empty() || rest.contains('/') {
        return Err(ConfigError::new(
            key,
            format!("{text:?} must be scheme://host:port without a path"),
        ));
    }
    Ok(url)
}

fn parse_socket_addr(
    key: &str,
    text: &str,
    default_port: Option<u16>,
) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let (Some(port), Ok(ip)) = (
        default_port,
        text.trim_matches(['[', ']']).parse::<IpAddr>(),
    ) {
        return Ok(SocketAddr::new(ip, port));
    }
    Err(ConfigError::new(
        key,
        format!("{text:?} is not an IP:PORT address"),
    ))
}

fn parse_net(text: &str) -> Result<IpNet, ConfigError> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| ConfigError::new("allow-recursion", format!("{text:?} is not a CIDR network")))
}

/// `nameserver` lines of resolv.conf, port 53, minus addresses we listen on ourselves.
fn resolv_conf_nameservers(text: &str, listen: &[SocketAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        .filter(|word| !word.contains('%')) // a scoped link-local address needs its interface
        .filter_map(|word| word.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .filter(|addr| {
            // A wildcard listener is surely reached through loopback; whether it is also behind
            // another address of this host cannot be known from here, so those are kept.
            !listen.iter().any(|own| {
                own.port() == addr.port()
                    && (own.ip() == addr.ip()
                        || (own.ip().is_unspecified() && addr.ip().is_loopback()))
            })
        })
        .collect()
}

/// Parses `500ms`, `30s`, `5m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

fn duration(key: &str, text: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(text) => parse_duration(text).ok_or_else(|| {
            ConfigError::new(
                key,
                format!("{text:?} is not a duration like 500ms, 30s, 5m or 1h"),
            )
        }),
    }
}

fn nonzero(value: Duration, key: &str) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(key, "must be greater than zero"))
    } else {
        Ok(value)
    }
}

fn ttl(key: &str, text: Option<&str>) -> Result<u32, ConfigError> {
    let value = duration(key, text, Duration::ZERO)?;
    u32::try_from(value.as_secs()).map_err(|_| ConfigError::new(key, "too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("7 parsecs"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn resolv_conf_skips_our_own_address() {
        let text = "search example.org\nnameserver 127.0.0.1\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n";
        let listen = [SocketAddr::from(([0, 0, 0, 0], 53))];
        let got = resolv_conf_nameservers(text, &listen);
        assert_eq!(got, vec![SocketAddr::from(([10, 0, 0, 2], 53))]);
    }

    #[test]
    fn bad_values_name_their_key() {
        let args = ServeArgs {
            max_udp_size: Some(100),
            ..ServeArgs::default()
        };
        let error = Config::from_args(&args, &Environment::default()).unwrap_err();
        assert_eq!(error.key, "max-udp-size");
    }
}
