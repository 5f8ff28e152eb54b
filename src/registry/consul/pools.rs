//! How requests reach Consul: the connection pools ("lanes") with their headers, TLS and
//! keepalive settings.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT_ENCODING};

use super::{error_chain, ConsulConfig, ConsulError};

/// The connection pools ("lanes") of one client: the token and gzip headers, the TLS roots from
/// the CA file and the client identity on every one; `https` decides whether there is more than
/// one.
pub(super) fn lanes(
    config: &ConsulConfig,
    https: bool,
) -> Result<Arc<[reqwest::Client]>, ConsulError> {
    let mut headers = HeaderMap::new();
    if let Some(token) = &config.token {
        let mut value = HeaderValue::from_str(token)
            .map_err(|_| ConsulError::Setup("the ACL token is not a valid header value".into()))?;
        value.set_sensitive(true);
        headers.insert("X-Consul-Token", value);
    }
    // We ask for gzip ourselves and decode it here, so the bytes on the wire can be counted.
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    let identity = match &config.client_identity {
        Some((cert, key)) => {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                ConsulError::Setup(format!("{} / {}: {e}", cert.display(), key.display()))
            })?)
        }
        None => None,
    };
    let roots = match &config.ca_file {
        Some(ca_file) => Some(
            reqwest::Certificate::from_pem_bundle(&read(ca_file)?)
                .map_err(|e| ConsulError::Setup(format!("{}: {e}", ca_file.display())))?,
        ),
        None => None,
    };
    // One client is one connection pool. Over HTTP/1.1 a pool opens a connection per request
    // in flight, so one pool and the callers' budget suffice; over HTTP/2 a pool multiplexes
    // everything onto one connection, so more streams than one connection allows need more
    // pools ("lanes"). Lanes that are never used never connect.
    let lanes = if https { config.connections } else { 1 };
    // Lanes past the first are used only once Consul answered over HTTP/2, and they speak
    // it from the start: a pool that only learns the protocol from ALPN opens a connection
    // per request it is handed before the first one is up.
    (0..lanes)
        .map(|lane| {
            client(
                config,
                &headers,
                roots.as_ref(),
                identity.as_ref(),
                lane > 0,
            )
        })
        .collect()
}

/// One connection pool with the TLS roots, client identity and headers of `config`.
fn client(
    config: &ConsulConfig,
    headers: &HeaderMap,
    roots: Option<&Vec<reqwest::Certificate>>,
    identity: Option<&reqwest::Identity>,
    http2_only: bool,
) -> Result<reqwest::Client, ConsulError> {
    let mut builder = reqwest::Client::builder()
        .no_gzip()
        .default_headers(headers.clone())
        .user_agent(concat!("snapdns/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(config.request_timeout)
        // No idle timer: hyper's pool stamps a shared HTTP/2 connection only when a stream is
        // taken from it, so a connection carrying nothing but long blocking queries looked idle
        // after 90 s and was dropped from the pool while its streams went on, and the next
        // request opened a second connection beside it (up to twice the budget). A connection
        // now ends when Consul closes it or the keepalive probes find it dead; over HTTP/1.1
        // the idle ones number at most the requests once in flight, which the budget bounds.
        .pool_idle_timeout(None)
        // A blocking query sits idle on its connection for up to --blocking-wait: probes find
        // a registry that vanished without closing it (the per-request deadline, wait +
        // wait/16 + --request-timeout, is the watchdog behind them).
        .tcp_keepalive(Duration::from_secs(15))
        .tcp_keepalive_interval(Duration::from_secs(5))
        .tcp_keepalive_retries(3)
        // Streams that wait minutes for a change: the server's PINGs keep them, ours find a
        // dead connection.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_while_idle(true)
        .tls_backend_rustls();
    if let Some(roots) = roots {
        builder = builder.tls_certs_only(roots.clone());
    }
    if let Some(identity) = identity {
        builder = builder.identity(identity.clone());
    }
    if http2_only {
        builder = builder.http2_prior_knowledge();
    }
    builder
        .build()
        .map_err(|e| ConsulError::Setup(error_chain(&e)))
}

fn read(path: &Path) -> Result<Vec<u8>, ConsulError> {
    std::fs::read(path)
        .map_err(|e| ConsulError::Setup(format!("cannot read {}: {e}", path.display())))
}
