//! The HTTP endpoint: `GET /health`, a JSON report of what is served and how the registry is
//! ([`health`]), `GET /metrics`, the OpenMetrics exposition ([`metrics_export`]),
//! `GET /v1/explain`, why a name is answered as it is ([`explain`]), and `GET /`, the status
//! page for people ([`status_page`]).
//!
//! All read one [`served::Served`] view: the published snapshot and a copy of the source
//! status; none touches the DNS path. hyper 1, HTTP/1.1 only, one task per connection.

pub mod explain;
pub mod health;
mod html;
pub mod metrics_export;
pub mod served;
pub mod status_page;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use metrics_export::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use served::Served;

/// Binds the HTTP listener and logs `listening on http ADDR`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    info!("listening on http {}", listener.local_addr()?);
    Ok(listener)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, source: Arc<Served>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    warn!(%error, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let source = source.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let source = source.clone();
                async move { Ok::<_, Infallible>(route(&source, &request)) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => if let Err(error) = result { debug!(%error, "http connection ended") },
                () = shutdown.cancelled() => {}
            }
        });
    }
}

fn route(source: &Served, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/health") => {
            let (status, body) = health::health(&source.read(SystemTime::now()), source.started);
            json(status, &body)
        }
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let text = metrics_export::render(source);
            respond(StatusCode::OK, METRICS_CONTENT_TYPE, text)
        }
        (&Method::GET | &Method::HEAD, "/v1/explain") => match &source.explain {
            Some(explainer) => {
                let (status, body) = explain::explain(explainer.as_ref(), request.uri().query());
                json(status, &body)
            }
            None => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "explain is not available\n".into(),
            ),
        },
        (&Method::GET | &Method::HEAD, "/") => {
            let refresh = status_page::refresh_of(request.uri().query());
            let page = status_page::render(source, &source.read(SystemTime::now()), refresh);
            let mut response = respond(StatusCode::OK, "text/html; charset=utf-8", page);
            // The page runs no script and loads nothing: say so, should registry data slip by.
            response.headers_mut().insert(
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            response
        }
        (_, "/" | "/health" | "/metrics" | "/v1/explain") => {
            let mut response = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "use GET\n".into(),
            );
            let allow = HeaderValue::from_static("GET, HEAD");
            response.headers_mut().insert(ALLOW, allow);
            response
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /, /health or /metrics\n".into(),
        ),
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_default();
    text.push('\n');
    respond(status, "application/json", text)
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
