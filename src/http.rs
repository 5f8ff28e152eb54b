//! The HTTP endpoint: `GET /health`, a JSON report of what is served and how the registry is,
//! and `GET /metrics`, the OpenMetrics exposition ([`crate::metrics::export`]).
//!
//! HTTP 200 while a snapshot is served (even a stale one: DNS keeps answering), 503 before any
//! snapshot exists. The handler reads the published snapshot and a copy of the sync status; it
//! never touches the DNS path. hyper 1, HTTP/1.1 only, one task per connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::export::{Exposition, CONTENT_TYPE as METRICS_CONTENT_TYPE};
use crate::metrics::Metrics;
use crate::snapshot::SnapshotStore;
use crate::sync::status::{SourceInfo, StatusView, SyncReport, SyncStatus};

/// What the health endpoint reports on.
#[derive(Debug)]
pub struct HealthSource {
    /// The published snapshot.
    pub store: SnapshotStore,
    /// The sync engine's status (or the file source's).
    pub status: Arc<SyncStatus>,
    /// When the process started.
    pub started: SystemTime,
    /// The query-path counters, for `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// Binds the HTTP listener and logs `listening on http ADDR`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    info!("listening on http {}", listener.local_addr()?);
    Ok(listener)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, source: Arc<HealthSource>, shutdown: CancellationToken) {
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

fn route(source: &HealthSource, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/health") => {
            let (status, body) = health(source, SystemTime::now());
            let mut text = serde_json::to_string_pretty(&body).unwrap_or_default();
            text.push('\n');
            respond(status, "application/json", text)
        }
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let exposition = Exposition {
                metrics: source.metrics.clone(),
                store: source.store.clone(),
                status: source.status.clone(),
                started: source.started,
            };
            respond(StatusCode::OK, METRICS_CONTENT_TYPE, exposition.render())
        }
        (_, "/health" | "/metrics") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET\n".into(),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /health or /metrics\n".into(),
        ),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The health report and its status code at `now`.
pub fn health(source: &HealthSource, now: SystemTime) -> (StatusCode, Value) {
    let view = source.status.view();
    let snapshot = source.store.current();
    let is_file = matches!(view.source, SourceInfo::File { .. });
    // The file source has no sync status: its last success is when the file was loaded.
    let last_success = if is_file {
        snapshot.as_ref().map(|s| s.fetched_at)
    } else {
        view.last_success
    };
    let registry_state = match view.registry_state() {
        Some(kind) => kind.as_str(),
        None if last_success.is_some() => "ok",
        None => "syncing",
    };
    let preserving = view.preservation.held_instances > 0;
    let persist_failing = view
        .persistence
        .as_ref()
        .is_some_and(|p| p.ok == Some(false));
    let (code, overall) = match &snapshot {
        None => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Some(_) if registry_state != "ok" || preserving || persist_failing => {
            (StatusCode::OK, "degraded")
        }
        Some(_) => (StatusCode::OK, "ok"),
    };
    let snapshot_json = snapshot.as_ref().map(|s| {
        // The served data was last confirmed by the registry at the later of the two.
        let confirmed = last_success.map_or(s.fetched_at, |t| t.max(s.fetched_at));
        json!({
            "index": s.index(),
            "origin": if is_file { "file" } else { view.snapshot_origin },
            "fetched_at": rfc3339(s.fetched_at),
            "age_seconds": age(now, confirmed),
            "services": s.stats.services,
            "instances": s.stats.instances,
            "passing_instances": s.stats.passing_instances,
        })
    });
    let source_json = match &view.source {
        SourceInfo::Consul { url, datacenter } => {
            json!({"kind": "consul", "url": url, "datacenter": datacenter})
        }
        SourceInfo::File { path } => json!({"kind": "file", "path": path.display().to_string()}),
    };
    let faults: serde_json::Map<String, Value> = view
        .faults
        .iter()
        .map(|(channel, fault)| {
            let value = json!({"kind": fault.kind.as_str(), "message": fault.message, "since": rfc3339(fault.since)});
            ((*channel).to_string(), value)
        })
        .collect();
    let body = json!({
        "status": overall,
        "source": source_json,
        "registry": {
            "state": registry_state,
            "since": rfc3339(view.state_since),
            "faults": faults,
            "last_error": view.last_error.as_ref().map(|e| json!({
                "at": rfc3339(e.at),
                "channel": e.channel,
                "kind": e.kind.as_str(),
                "message": e.message,
            })),
            "known_leader": view.known_leader,
            "last_contact_ms": view.last_contact_ms,
        },
        "last_success": last_success.map(rfc3339),
        "last_success_age_seconds": last_success.map(|t| age(now, t)),
        "last_sync": view.last_sync.as_ref().map(|r| report_json(r, now)),
        "last_full_sync": view.last_full_sync.as_ref().map(|r| report_json(r, now)),
        "totals": {
            "requests": view.totals.requests,
            "wire_bytes": view.totals.wire_bytes,
            "json_bytes": view.totals.json_bytes,
            "full_syncs": view.totals.full_syncs,
            "change_syncs": view.totals.change_syncs,
            "failed_syncs": view.totals.failed_syncs,
        },
        "snapshot": snapshot_json,
        "self_preservation": preservation_json(&view),
        "persistence": view.persistence.as_ref().map(|p| json!({
            "state_dir": p.dir.display().to_string(),
            "ok": p.ok,
            "last_saved": p.last_saved.map(rfc3339),
            "generation": p.generation,
            "bytes": p.bytes,
            "error": p.error,
            "loaded_from": p.loaded_from.as_ref().map(|f| f.display().to_string()),
            "skipped": p.skipped,
        })),
        "uptime_seconds": age(now, source.started),
    });
    (code, body)
}

fn report_json(report: &SyncReport, now: SystemTime) -> Value {
    json!({
        "kind": report.kind,
        "at": report.at.map(rfc3339),
        "age_seconds": report.at.map(|t| age(now, t)),
        "duration_ms": report.duration.as_secs_f64() * 1000.0,
        "requests": report.requests,
        "wire_bytes": report.wire_bytes,
        "json_bytes": report.json_bytes,
        "services_fetched": report.services_fetched,
        "index": report.index,
    })
}

fn preservation_json(view: &StatusView) -> Value {
    let p = &view.preservation;
    json!({
        "active": p.held_instances > 0,
        "held_instances": p.held_instances,
        "since": p.since.map(rfc3339),
        "next_release": p.next_release.map(rfc3339),
        "threshold": p.threshold,
        "window_seconds": p.window.as_secs_f64(),
        "episodes": p.episodes,
    })
}

fn age(now: SystemTime, then: SystemTime) -> f64 {
    let seconds = now.duration_since(then).unwrap_or_default().as_secs_f64();
    (seconds * 1000.0).round() / 1000.0
}

/// `2024-05-01T12:34:56.789Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789); // a leap day
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
    }

    #[test]
    fn no_snapshot_is_503() {
        let source = HealthSource {
            store: SnapshotStore::default(),
            status: Arc::new(SyncStatus::new(
                SourceInfo::Consul {
                    url: "http://127.0.0.1:8500".into(),
                    datacenter: "dc1".into(),
                },
                None,
            )),
            started: SystemTime::now(),
            metrics: Arc::default(),
        };
        let (code, body) = health(&source, SystemTime::now());
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["registry"]["state"], "syncing");
        assert_eq!(body["snapshot"], Value::Null);
    }
}
