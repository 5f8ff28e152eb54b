//! Consul's HTTP API as a registry source: the reqwest client and everything about Consul's wire
//! format (paths, query parameters, `X-Consul-*` headers, error statuses).
//!
//! Nothing else in the crate knows Consul's HTTP API. This module does not decide when to ask;
//! the sync engine ([`crate::source::consul`]) does. Every request asks for gzip and counts the
//! bytes that crossed the wire, so the cost of a sync is visible. The ACL token is sent as
//! `X-Consul-Token`, marked sensitive, and never appears in a URL, a log line or an error.

mod error;
mod pools;
mod render_allowance;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, CONTENT_ENCODING};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

use super::{HealthCheck, HealthEntry, NodeInterner};
use error::{error_chain, transport_error};
pub use error::{redacted, ConsulError, FaultKind};
use render_allowance::ListSize;

/// How to reach Consul.
#[derive(Clone)]
pub struct ConsulConfig {
    /// Base URL, `http(s)://host:port` without a trailing slash.
    pub url: String,
    /// ACL token, sent as `X-Consul-Token`.
    pub token: Option<String>,
    /// CA certificate (PEM) that Consul's HTTPS certificate must chain to; replaces the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// The datacenter asked about (`?dc=`).
    pub datacenter: String,
    /// `?consistent` instead of `?stale`.
    pub consistent: bool,
    /// Timeout of one request; blocking queries get their wait on top.
    pub request_timeout: Duration,
    /// Most connections open to Consul at once.
    pub connections: usize,
    /// Requests in flight per connection when Consul speaks HTTP/2.
    pub streams: usize,
}

impl std::fmt::Debug for ConsulConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulConfig")
            .field("url", &redacted(&self.url))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("datacenter", &self.datacenter)
            .field("consistent", &self.consistent)
            .finish_non_exhaustive()
    }
}

/// One decoded answer and its metadata.
#[derive(Clone, Debug)]
pub struct Fetched<T> {
    /// The decoded body.
    pub value: T,
    /// `X-Consul-Index`, at least 1 (Consul never sends 0; a missing header reads as 1).
    pub index: u64,
    /// `X-Consul-KnownLeader` (absent reads as true).
    pub known_leader: bool,
    /// `X-Consul-LastContact` in milliseconds.
    pub last_contact_ms: u64,
    /// `X-Consul-Default-ACL-Policy` was `deny`.
    pub acl_default_deny: bool,
    /// Bytes of body received on the wire (compressed when Consul compressed it).
    pub wire_bytes: u64,
    /// Bytes of JSON after decompression.
    pub json_bytes: u64,
    /// Requests behind this answer: 1, or more for one made of several lists.
    pub requests: u64,
}

impl<T> Fetched<T> {
    /// The same answer with its value transformed.
    pub fn map<U>(self, change: impl FnOnce(T) -> U) -> Fetched<U> {
        Fetched {
            value: change(self.value),
            index: self.index,
            known_leader: self.known_leader,
            last_contact_ms: self.last_contact_ms,
            acl_default_deny: self.acl_default_deny,
            wire_bytes: self.wire_bytes,
            json_bytes: self.json_bytes,
            requests: self.requests,
        }
    }
}

/// `GET /v1/catalog/services`: service name -> tags.
pub type ServiceList = BTreeMap<String, Vec<String>>;

impl Fetched<ServiceList> {
    /// Fails when the catalog looks unreadable rather than empty: a readable catalog always lists
    /// Consul's own `consul` service, so an empty one under a default-deny ACL policy means the
    /// token is missing or may not read services (Consul answers 200 with `{}`, not 403).
    pub fn ensure_readable(&self) -> Result<(), ConsulError> {
        if self.value.is_empty() && self.acl_default_deny {
            return Err(ConsulError::Status {
                path: "/v1/catalog/services".into(),
                status: StatusCode::FORBIDDEN,
                body: "empty catalog under a default-deny ACL policy: the token is missing or may not read services".into(),
            });
        }
        Ok(())
    }
}

/// A blocking query: wait until the registry index exceeds `index`, at most `wait`.
#[derive(Clone, Copy, Debug)]
pub struct Blocking {
    /// The last `X-Consul-Index` seen (0 never blocks).
    pub index: u64,
    /// How long Consul may hold the request.
    pub wait: Duration,
}

/// A client for one Consul agent or server.
#[derive(Clone, Debug)]
pub struct ConsulClient {
    /// One connection pool per lane (see [`ConsulClient::new`]).
    lanes: Arc<[reqwest::Client]>,
    lane: usize,
    /// An answer came over HTTP/2.
    http2: Arc<AtomicBool>,
    /// Makes the entries of all services on one node share it, across answers.
    nodes: Arc<Mutex<NodeInterner>>,
    /// The sizes of the last answers of the cluster-wide lists (their deadlines grow with
    /// them), indexed by [`List`].
    list_sizes: Arc<[ListSize; 4]>,
    base: Url,
    config: ConsulConfig,
}

impl ConsulClient {
    /// Builds the client: TLS roots from the CA file, optional client identity, the token header.
    pub fn new(config: ConsulConfig) -> Result<Self, ConsulError> {
        // reqwest is built without a default crypto provider; install ring once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base = Url::parse(&config.url)
            .map_err(|e| ConsulError::Setup(format!("{}: {e}", redacted(&config.url))))?;
        let lanes = pools::lanes(&config, base.scheme() == "https")?;
        Ok(Self {
            lanes,
            lane: 0,
            http2: Arc::new(AtomicBool::new(false)),
            nodes: Arc::default(),
            list_sizes: Arc::default(),
            base,
            config,
        })
    }

    /// The same client, sending on lane `lane` (modulo the number of lanes; lane 0 is the
    /// default).
    pub fn on_lane(&self, lane: usize) -> Self {
        Self {
            lane: lane % self.lanes.len(),
            ..self.clone()
        }
    }

    /// How many blocking queries fit the connection budget beside `reserved` other requests,
    /// and how many of them one lane carries: over HTTP/2 (seen in an answer) every lane is one
    /// connection carrying `--registry-streams` requests, and lane 0 is left to the other
    /// requests; over HTTP/1.1 every request in flight is a connection, all on lane 0 (`None`).
    pub fn watch_capacity(&self, reserved: usize) -> (usize, Option<usize>) {
        if self.http2.load(Ordering::Relaxed) && self.lanes.len() > 1 {
            let streams = self.config.streams;
            ((self.lanes.len() - 1) * streams, Some(streams))
        } else {
            (self.config.connections.saturating_sub(reserved), None)
        }
    }

    /// The base URL for logs, without its user info.
    pub fn url(&self) -> String {
        redacted(&self.config.url)
    }

    /// `GET /v1/catalog/services`: every service name and its tags.
    pub async fn services(
        &self,
        blocking: Option<Blocking>,
    ) -> Result<Fetched<ServiceList>, ConsulError> {
        self.list(List::Catalog, &["catalog", "services"], blocking)
            .await
    }

    /// One non-blocking `GET /v1/catalog/services`, for `snapdns check --connect`: the list the
    /// sync's catalog watch reads, under the same ACL, carrying `X-Consul-KnownLeader` and
    /// `X-Consul-LastContact`. Fails as the sync would: unreachable, 403 (`ACL not found`,
    /// `Permission denied`), `No cluster leader`, or a catalog a default-deny token cannot read.
    pub async fn probe(&self) -> Result<Fetched<ServiceList>, ConsulError> {
        let fetched = self.services(None).await?;
        fetched.ensure_readable()?;
        Ok(fetched)
    }

    /// `GET /v1/health/state/any`: every check in the datacenter, node and service checks.
    pub async fn checks(
        &self,
        blocking: Option<Blocking>,
    ) -> Result<Fetched<Vec<HealthCheck>>, ConsulError> {
        self.list(List::Any, &["health", "state", "any"], blocking)
            .await
    }

    /// Expects `/v1/health/state/any` to hold about `checks` checks until an answer tells its
    /// real size, so that its first read, which may come long after start-up, gets the time
    /// its size needs.
    pub fn expect_checks(&self, checks: usize) {
        self.list_sizes[List::Any as usize].expect(checks as u64 * CHECK_JSON_BYTES);
    }

    /// Every check that is not passing: `GET /v1/health/state/critical` (blocking when
    /// `blocking` is given; Consul blocks it on the index of every check), then, when that
    /// returned something newer, `GET /v1/health/state/warning`. The answer carries the
    /// critical list's index and both requests' cost: a change that happens between the two
    /// reads moves that index past it, so the next blocking read returns at once.
    pub async fn non_passing(
        &self,
        blocking: Option<Blocking>,
    ) -> Result<Fetched<Vec<HealthCheck>>, ConsulError> {
        let critical_path = ["health", "state", "critical"];
        let mut critical = self.list(List::Critical, &critical_path, blocking).await?;
        if blocking.is_some_and(|b| critical.index <= b.index) {
            // The wait ran out or the index went backwards: the watch uses no content.
            return Ok(critical);
        }
        let warning_path = ["health", "state", "warning"];
        let warning: Fetched<Vec<HealthCheck>> =
            self.list(List::Warning, &warning_path, None).await?;
        critical.value.extend(warning.value);
        critical.known_leader &= warning.known_leader;
        critical.last_contact_ms = critical.last_contact_ms.max(warning.last_contact_ms);
        critical.wire_bytes += warning.wire_bytes;
        critical.json_bytes += warning.json_bytes;
        critical.requests += warning.requests;
        Ok(critical)
    }

    /// A cluster-wide list (`which` indexes `list_sizes`), allowed time by its last size.
    async fn list<T: DeserializeOwned>(
        &self,
        which: List,
        segments: &[&str],
        blocking: Option<Blocking>,
    ) -> Result<Fetched<T>, ConsulError> {
        let size = &self.list_sizes[which as usize];
        let fetched = self.get(segments, blocking, size.allowance()).await?;
        size.record(fetched.json_bytes);
        Ok(fetched)
    }

    /// `GET /v1/health/service/<name>`: every instance of one service, unfiltered (the snapshot
    /// build filters health, so warning and critical instances are known too). Blocking on
    /// this service's own index when `blocking` is given.
    pub async fn service(
        &self,
        name: &str,
        blocking: Option<Blocking>,
    ) -> Result<Fetched<Vec<HealthEntry>>, ConsulError> {
        let mut fetched: Fetched<Vec<HealthEntry>> = self
            .get(&["health", "service", name], blocking, Duration::ZERO)
            .await?;
        // A poisoned lock only means a panic elsewhere mid-share; the map is still usable.
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.share(&mut fetched.value);
        Ok(fetched)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        blocking: Option<Blocking>,
        render_allowance: Duration,
    ) -> Result<Fetched<T>, ConsulError> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| ConsulError::Setup(format!("{} cannot be a base URL", self.url())))?;
            path.clear().push("v1").extend(segments);
        }
        let path = url.path().to_string();
        let mut query = format!("dc={}", encode_query(&self.config.datacenter));
        query.push_str(if self.config.consistent {
            "&consistent"
        } else {
            "&stale"
        });
        let mut timeout = self.config.request_timeout + render_allowance;
        if let Some(blocking) = blocking {
            let wait_ms = blocking.wait.as_millis().max(1);
            query.push_str(&format!("&index={}&wait={wait_ms}ms", blocking.index));
            // Consul adds up to wait/16 of jitter to the wait.
            timeout += blocking.wait + blocking.wait / 16;
        }
        url.set_query(Some(&query));
        let send = async {
            let response = self.lanes[self.lane]
                .get(url)
                .send()
                .await
                .map_err(|e| transport_error(&path, &e))?;
            if response.version() == reqwest::Version::HTTP_2 {
                self.http2.store(true, Ordering::Relaxed);
            }
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_error(&path, &e))?;
            Ok::<_, ConsulError>((status, headers, body))
        };
        let (status, headers, body) =
            tokio::time::timeout(timeout, send)
                .await
                .map_err(|_| ConsulError::Timeout {
                    path: path.clone(),
                    timeout,
                })??;
        let wire_bytes = body.len() as u64;
        let json = decode_body(&path, &headers, &body)?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&json);
            let line = text.lines().next().unwrap_or("").trim();
            return Err(ConsulError::Status {
                path,
                status,
                body: line.chars().take(200).collect(),
            });
        }
        let value = serde_json::from_slice(&json).map_err(|e| ConsulError::BadResponse {
            path: path.clone(),
            message: format!("invalid JSON: {e}"),
        })?;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        Ok(Fetched {
            value,
            index: header("X-Consul-Index")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1)
                .max(1),
            known_leader: header("X-Consul-KnownLeader") != Some("false"),
            last_contact_ms: header("X-Consul-LastContact")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            acl_default_deny: header("X-Consul-Default-ACL-Policy") == Some("deny"),
            wire_bytes,
            json_bytes: json.len() as u64,
            requests: 1,
        })
    }
}

/// JSON bytes per check in `/v1/health/state/any` (Consul 1.17 renders ~280 with short
/// names; some room on top for longer ones).
const CHECK_JSON_BYTES: u64 = 400;

/// The cluster-wide lists, each with the size of its last answer.
#[derive(Clone, Copy)]
enum List {
    Catalog,
    Any,
    Critical,
    Warning,
}

/// Gunzips the body when Consul compressed it (it does for bodies of 1400 bytes or more).
fn decode_body(path: &str, headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, ConsulError> {
    let gzipped = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzipped {
        return Ok(body.to_vec());
    }
    let mut out = Vec::with_capacity(body.len() * 8);
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .map_err(|e| ConsulError::BadResponse {
            path: path.to_string(),
            message: format!("bad gzip body: {e}"),
        })?;
    Ok(out)
}

/// What a query value percent-encodes: all but RFC 3986's unreserved characters (§2.3).
pub const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query value.
fn encode_query(text: &str) -> String {
    utf8_percent_encode(text, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_redacted() {
        assert_eq!(
            redacted("http://user:secret@consul.example:8500"),
            "http://***@consul.example:8500"
        );
        assert_eq!(
            redacted("https://token@10.0.0.1:8501/v1/x?y=a@b"),
            "https://***@10.0.0.1:8501/v1/x?y=a@b"
        );
        assert_eq!(redacted("http://127.0.0.1:8500"), "http://127.0.0.1:8500");
    }

    fn status(code: u16, body: &str) -> ConsulError {
        ConsulError::Status {
            path: "/v1/catalog/services".into(),
            status: StatusCode::from_u16(code).unwrap(),
            body: body.into(),
        }
    }

    #[test]
    fn statuses_map_to_fault_kinds() {
        assert_eq!(status(500, "No cluster leader").kind(), FaultKind::NoLeader);
        assert_eq!(
            status(500, "No path to datacenter").kind(),
            FaultKind::ServerError
        );
        assert_eq!(status(403, "ACL not found").kind(), FaultKind::AclDenied);
        assert_eq!(
            status(429, "rate limit exceeded").kind(),
            FaultKind::RateLimited
        );
        assert_eq!(status(503, "").kind(), FaultKind::RateLimited);
        assert_eq!(
            status(400, "Invalid wait time").kind(),
            FaultKind::BadResponse
        );
        assert!(!status(403, "ACL not found").is_retryable());
        assert!(!status(400, "Invalid index").is_retryable());
        assert!(status(429, "").is_retryable());
        assert!(status(500, "No cluster leader").is_retryable());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query("dc1"), "dc1");
        assert_eq!(encode_query("a b&c"), "a%20b%26c");
    }

    #[test]
    fn gzip_bodies_are_decoded() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"{\"web\":[]}").unwrap();
        let body = encoder.finish().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_ENCODING,
            reqwest::header::HeaderValue::from_static("gzip"),
        );
        assert_eq!(decode_body("/p", &headers, &body).unwrap(), b"{\"web\":[]}");
        assert!(decode_body("/p", &headers, b"not gzip").is_err());
    }

    #[test]
    fn debug_output_hides_the_token() {
        let config = ConsulConfig {
            url: "http://127.0.0.1:8500".into(),
            token: Some("s3cr3t-token".into()),
            ca_file: None,
            client_identity: None,
            datacenter: "dc1".into(),
            consistent: false,
            request_timeout: Duration::from_secs(1),
            connections: 1,
            streams: 1,
        };
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }
}
