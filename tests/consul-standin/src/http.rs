//! HTTP plumbing: the accept loop with Consul's per-client connection limit, TLS with ALPN
//! (h2 and http/1.1), request dispatch, and response bodies that count the bytes they send.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::app::{App, LogEntry};
use crate::query::{accepts_gzip, unescape};
use crate::render::{gzip, Body};

/// Consul's `plainContentType`.
pub(crate) const PLAIN: &str = "text/plain; charset=utf-8";

/// Response headers, in the order they are sent.
pub(crate) type Hdrs = Vec<(&'static str, String)>;

/// What go-connlimit writes to a client over `limits.http_max_conns_per_client`.
const TOO_MANY_CONNS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 81\r\nConnection: close\r\n\r\nYour IP is issuing too many concurrent connections, please rate limit your calls\n";

/// Go's default `MaxConcurrentStreams` for HTTP/2 servers.
const H2_MAX_STREAMS: u32 = 250;

/// A response body sent in one frame. `cut` sends only that many bytes and then fails, so the
/// connection drops mid-body (mode `disconnect`); `/v1` bodies count their bytes as sent.
#[derive(Debug)]
pub struct Payload {
    data: Option<Bytes>,
    declared: u64,
    cut: Option<usize>,
    broken: bool,
    app: Option<Arc<App>>,
}

impl Payload {
    fn new(data: Bytes, app: Option<Arc<App>>) -> Self {
        Self {
            declared: data.len() as u64,
            data: Some(data),
            cut: None,
            broken: false,
            app,
        }
    }
}

impl hyper::body::Body for Payload {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(mut data) = this.data.take() {
            if let Some(cut) = this.cut {
                data.truncate(cut);
                this.broken = true;
            }
            if let Some(app) = &this.app {
                app.counters.sent(data.len());
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if std::mem::take(&mut this.broken) {
            return Poll::Ready(Some(Err(std::io::Error::other("disconnect fault"))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && !self.broken
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.declared)
    }
}

fn build(status: u16, hdrs: Hdrs, body: Payload) -> Response<Payload> {
    let mut resp = Response::new(body);
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    for (k, v) in hdrs {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(&v),
        ) {
            h.append(k, v);
        }
    }
    resp
}

fn wants_gzip<B>(app: &App, req: &Request<B>, len: usize) -> bool {
    let accept = req
        .headers()
        .get("accept-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accepts_gzip(accept) && len >= app.control().knobs.gzip_min_size
}

/// A `/v1` response; gzipped when allowed, accepted and at least `gzip_min_size` long.
pub(crate) fn reply<B>(
    app: &Arc<App>,
    req: &Request<B>,
    status: u16,
    mut hdrs: Hdrs,
    body: Bytes,
    gzip_ok: bool,
) -> Response<Payload> {
    let body = if gzip_ok && wants_gzip(app, req, body.len()) {
        hdrs.push(("Content-Encoding", "gzip".into()));
        gzip(&body)
    } else {
        body
    };
    build(status, hdrs, Payload::new(body, Some(app.clone())))
}

/// A `/v1` response with a body already gzipped (or not) by [`crate::render`].
pub(crate) fn reply_body(
    app: &Arc<App>,
    status: u16,
    mut hdrs: Hdrs,
    body: Body,
) -> Response<Payload> {
    if body.gzipped {
        hdrs.push(("Content-Encoding", "gzip".into()));
    }
    build(status, hdrs, Payload::new(body.data, Some(app.clone())))
}

/// Whether the client accepts gzip.
pub(crate) fn client_accepts_gzip<B>(req: &Request<B>) -> bool {
    accepts_gzip(
        req.headers()
            .get("accept-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )
}

/// A `/v1` response whose headers announce all of `body` but whose connection drops after `cut`.
pub(crate) fn reply_cut(
    app: &Arc<App>,
    status: u16,
    hdrs: Hdrs,
    body: Bytes,
    cut: usize,
) -> Response<Payload> {
    let mut payload = Payload::new(body, Some(app.clone()));
    payload.cut = Some(cut);
    build(status, hdrs, payload)
}

/// A control-API or plain response (not counted).
pub(crate) fn plain(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Payload> {
    build(
        status,
        vec![("Content-Type", content_type.to_owned())],
        Payload::new(body.into(), None),
    )
}

/// A pretty JSON control-API response.
pub(crate) fn json(status: u16, value: &serde_json::Value) -> Response<Payload> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    plain(status, "application/json", body)
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Payload>, std::io::Error> {
    let raw_path = req.uri().path().to_owned();
    let raw_query = req.uri().query().unwrap_or("").to_owned();
    let path = unescape(&raw_path).unwrap_or_else(|_| raw_path.clone());
    if let Some(what) = path.strip_prefix("/_standin/") {
        let what = what.to_owned();
        return Ok(crate::control::handle(&app, req, &what, &raw_query).await);
    }
    if path.starts_with("/v1/") {
        let id = record(&app, &req, &raw_path, &raw_query);
        let result = crate::consul::respond(&app, &req, &path, &raw_query).await;
        if let Ok(resp) = &result {
            let mut ctl = app.control();
            if let Some(e) = ctl.log.iter_mut().rev().find(|e| e.id == id) {
                e.status = Some(resp.status().as_u16());
            }
        }
        return result;
    }
    if path == "/" {
        let body = "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.";
        return Ok(plain(200, PLAIN, body));
    }
    Ok(plain(
        404,
        PLAIN,
        "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n",
    ))
}

/// Logs a `/v1` request (the log keeps the newest 10000) and counts it.
fn record(app: &App, req: &Request<Incoming>, path: &str, query: &str) -> u64 {
    app.counters.requests.fetch_add(1, Ordering::Relaxed);
    app.counters.log_count.fetch_add(1, Ordering::Relaxed);
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut ctl = app.control();
    ctl.log_seq += 1;
    let id = ctl.log_seq;
    let entry = LogEntry {
        id,
        time,
        method: req.method().to_string(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        status: None,
    };
    ctl.log.push_back(entry);
    while ctl.log.len() > 10_000 {
        ctl.log.pop_front();
    }
    id
}

/// Accepts connections until the task is dropped.
pub async fn serve(app: Arc<App>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(app.clone(), stream, peer.ip(), tls.clone()));
    }
}

/// Forgets the connection in the per-client table when dropped.
struct Counted(Arc<App>, IpAddr);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.close_conn(self.1);
    }
}

async fn connection(app: Arc<App>, stream: TcpStream, ip: IpAddr, tls: Option<TlsAcceptor>) {
    let allowed = app.open_conn(ip);
    let _counted = allowed.then(|| Counted(app.clone(), ip));
    match tls {
        Some(acceptor) => {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            if allowed {
                serve_io(app, stream).await;
            } else {
                refuse(stream).await;
            }
        }
        None if allowed => serve_io(app, stream).await,
        None => refuse(stream).await,
    }
}

/// go-connlimit's answer: the 429, then close. Reads what the client sent for a moment first,
/// so that closing with unread data does not reset the connection before the 429 is read.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let _ = stream.write_all(TOO_MANY_CONNS).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

async fn serve_io<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(app: Arc<App>, stream: S) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Go's canonical header case (X-Consul-Knownleader), as Consul sends it.
    builder.http1().title_case_headers(true);
    builder.http2().max_concurrent_streams(H2_MAX_STREAMS);
    let service = hyper::service::service_fn(move |req| handle(app.clone(), req));
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A TLS acceptor for `--tls-cert`/`--tls-key`, advertising h2 and http/1.1.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
