//! `GET /health`: a JSON report of what is served and how the registry source is.
//!
//! HTTP 200 while a snapshot is served (even a stale one: DNS keeps answering), 503 before any
//! snapshot exists. Both sources are reported from the same [`Reading`]; only the `source`
//! object says which one it is.

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde_json::{json, Value};

use super::served::{Overall, Reading};
use crate::source::status::{StatusView, SyncReport};
use crate::source::RegistrySource;

/// The health report and its status code at `now`.
pub fn health(reading: &Reading, started: SystemTime) -> (StatusCode, Value) {
    let (view, now) = (&reading.view, reading.now);
    let last_success = view.last_success;
    let overall = reading.overall();
    let code = match overall {
        Overall::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Overall::Ok | Overall::Degraded => StatusCode::OK,
    };
    let snapshot_json = reading.snapshot.as_ref().map(|s| {
        let confirmed = reading.confirmed_at().unwrap_or(s.fetched_at);
        json!({
            "serial": s.zone.serial(),
            "index": s.index(),
            "origin": view.snapshot_origin.as_str(),
            "fetched_at": rfc3339(s.fetched_at),
            "age_seconds": age(now, confirmed),
            "services": s.stats.services,
            "instances": s.stats.instances,
            "passing_instances": s.stats.passing_instances,
            "skipped": s
                .skipped
                .reasons()
                .map(|(reason, count, example)| {
                    (reason.to_string(), json!({"count": count, "example": example}))
                })
                .collect::<serde_json::Map<String, Value>>(),
        })
    });
    let source_json = match &view.source {
        RegistrySource::Consul(_) => {
            json!({"kind": "consul", "url": view.source.shown(), "datacenter": view.datacenter})
        }
        RegistrySource::File(path) => {
            json!({"kind": "file", "path": path.display().to_string()})
        }
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
        "status": overall.as_str(),
        "source": source_json,
        "registry": {
            "state": reading.registry_state(),
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
        "watches": matches!(view.source, RegistrySource::Consul(_)).then(|| json!({
            "mode": if view.per_service_watches { "per-service" } else { "cluster" },
            "services": view.service_watches,
        })),
        "snapshot": snapshot_json,
        "self_preservation": preservation_json(view),
        "persistence": view.persistence.as_ref().map(|p| json!({
            "state_dir": p.dir.display().to_string(),
            "ok": p.ok,
            "last_saved": p.last_saved.map(rfc3339),
            "generation": p.generation,
            "index": p.index,
            "bytes": p.bytes,
            "last_write_bytes": p.last_write_bytes,
            "journal_records": p.journal_records,
            "error": p.error,
            "loaded_from": p.loaded_from.as_ref().map(|f| f.display().to_string()),
            "skipped": p.skipped,
        })),
        "uptime_seconds": age(now, started),
    });
    (code, body)
}

fn report_json(report: &SyncReport, now: SystemTime) -> Value {
    json!({
        "kind": report.kind.as_str(),
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
    use crate::http::Served;
    use crate::snapshot::SnapshotStore;
    use crate::source::status::SourceStatus;
    use crate::source::RegistrySource;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789); // a leap day
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
    }

    #[test]
    fn no_snapshot_is_503() {
        let served = Served {
            store: SnapshotStore::default(),
            status: Arc::new(SourceStatus::new(
                RegistrySource::Consul("http://127.0.0.1:8500".into()),
                "dc1".into(),
                None,
            )),
            started: SystemTime::now(),
            metrics: Arc::default(),
            explain: None,
            identity: "test".into(),
            health: Default::default(),
        };
        let (code, body) = health(&served.read(SystemTime::now()), served.started);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["registry"]["state"], "syncing");
        assert_eq!(body["snapshot"], Value::Null);
    }
}
