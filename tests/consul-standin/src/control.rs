//! The stand-in's control API under `/_standin/` (not Consul): registry, faults, token, request
//! log, counters, and cheap mutations for benchmarks. Same paths and bodies as standin.py.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{json, Map, Value};

use crate::app::{App, Fault, FAULT_MODES};
use crate::http::{self, Payload, PLAIN};
use crate::model::EntryIn;
use crate::query::Query;

/// Parsed registry: services in file order, and the `index` of the wrapped form.
pub type StateIn = (Vec<(String, Vec<EntryIn>)>, Option<u64>);

/// Parses `{"svc": [entries]}` or `{"index": N, "services": {...}}`.
pub fn parse_state(body: &[u8]) -> Result<StateIn, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("state must be a JSON object: service -> entries".into());
    };
    let mut index = None;
    if matches!(obj.get("services"), Some(Value::Object(_))) {
        index = obj.get("index").and_then(Value::as_u64);
        let Some(Value::Object(services)) = obj.remove("services") else {
            unreachable!("checked above")
        };
        obj = services;
    }
    let services = obj
        .into_iter()
        .map(|(name, entries)| Ok((name.clone(), parse_entries(&name, entries)?)))
        .collect::<Result<_, String>>()?;
    Ok((services, index))
}

fn parse_entries(name: &str, entries: Value) -> Result<Vec<EntryIn>, String> {
    serde_json::from_value(entries).map_err(|e| format!("service {name:?}: entries must be an array of {{Node{{Node,...}}, Service, Checks}}: {e}"))
}

fn bad(msg: impl Into<String>) -> Response<Payload> {
    http::plain(400, PLAIN, msg.into())
}

fn not_found(msg: impl Into<String>) -> Response<Payload> {
    http::plain(404, PLAIN, msg.into())
}

/// Answers one `/_standin/<what>` request.
pub(crate) async fn handle(
    app: &Arc<App>,
    req: Request<Incoming>,
    what: &str,
    raw_query: &str,
) -> Response<Payload> {
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return bad(format!("cannot read body: {e}")),
    };
    let Ok(q) = Query::parse(raw_query) else {
        return bad("bad control request: query");
    };
    let reg = &app.reg;
    let index_reply = |idx: u64| http::json(200, &json!({ "index": idx }));
    match (what, &method) {
        ("state", &Method::GET) => {
            let st = reg.read();
            http::plain(200, "application/json", crate::render::state_json(&st))
        }
        ("state", &Method::PUT) => match parse_state(&body) {
            Ok((services, _)) => index_reply(reg.replace(services)),
            Err(e) => bad(e),
        },
        (w, m) if w.starts_with("service/") && w.len() > 8 => {
            let name = &w[8..];
            match *m {
                Method::GET => http::json(200, &reg.service_entries(name)),
                Method::PUT => {
                    let parsed = serde_json::from_slice::<Value>(&body)
                        .map_err(|e| format!("invalid JSON body: {e}"))
                        .and_then(|v| parse_entries(name, v));
                    match parsed {
                        Ok(entries) => index_reply(reg.put_service(name, entries)),
                        Err(e) => bad(e),
                    }
                }
                Method::DELETE => match reg.delete_service(name) {
                    Some(idx) => index_reply(idx),
                    None => not_found(format!("no service {name:?}")),
                },
                _ => http::plain(405, PLAIN, format!("method {m} not allowed")),
            }
        }
        ("check", &Method::PUT) => {
            let status = q.first("status");
            if !["passing", "warning", "critical"].contains(&status)
                || q.first("node").is_empty()
                || q.first("check").is_empty()
            {
                return bad("need ?node=&check=&status=passing|warning|critical");
            }
            let output = q.has("output").then(|| q.first("output"));
            match reg.set_check(q.first("node"), q.first("check"), status, output) {
                Some(idx) => index_reply(idx),
                None => not_found(format!(
                    "no check {:?} on node {:?}",
                    q.first("check"),
                    q.first("node")
                )),
            }
        }
        ("fault", &Method::GET) => http::json(200, &fault_view(app)),
        ("fault", &Method::PUT | &Method::DELETE) => {
            match set_fault(app, &body, method == Method::DELETE) {
                Ok(()) => http::json(200, &fault_view(app)),
                Err(e) => bad(e),
            }
        }
        ("token", &Method::GET | &Method::PUT) => {
            if method == Method::PUT {
                app.control().token = String::from_utf8_lossy(&body).trim().to_owned();
            }
            http::json(200, &json!({ "token": app.control().token }))
        }
        ("requests", &Method::GET | &Method::DELETE) => {
            if method == Method::DELETE {
                app.control().log.clear();
                app.counters.log_count.store(0, Ordering::Relaxed);
                app.counters.log_bytes.store(0, Ordering::Relaxed);
            }
            if q.has("count_only") {
                let c = &app.counters;
                return http::json(
                    200,
                    &json!({ "count": c.log_count.load(Ordering::Relaxed), "bytes": c.log_bytes.load(Ordering::Relaxed) }),
                );
            }
            let prefix = q.first("path");
            let ctl = app.control();
            let entries: Vec<_> = ctl
                .log
                .iter()
                .filter(|e| e.path.starts_with(prefix))
                .collect();
            http::json(200, &serde_json::to_value(entries).unwrap_or_default())
        }
        ("index", &Method::GET) => index_reply(reg.index()),
        ("index", &Method::PUT) => match serde_json::from_slice::<u64>(&body) {
            Ok(idx) => {
                reg.restore_index(idx);
                index_reply(reg.index())
            }
            Err(e) => bad(format!("index body must be an unsigned integer: {e}")),
        },
        ("connections", &Method::GET | &Method::DELETE) => {
            let mut c = app.conns();
            if method == Method::DELETE {
                c.max_open = c.open;
                c.refused = 0;
            }
            http::json(
                200,
                &json!({ "open": c.open, "max_open": c.max_open, "refused": c.refused }),
            )
        }
        ("stats", &Method::GET | &Method::DELETE) => {
            let c = &app.counters;
            if method == Method::DELETE {
                c.requests.store(0, Ordering::Relaxed);
                c.wire_bytes.store(0, Ordering::Relaxed);
            }
            http::json(
                200,
                &json!({ "requests": c.requests.load(Ordering::Relaxed), "wire_bytes": c.wire_bytes.load(Ordering::Relaxed) }),
            )
        }
        ("flip", &Method::PUT) => {
            let status = if q.has("status") {
                q.first("status")
            } else {
                "critical"
            };
            mutation(reg.flip(q.first("service"), q.first("instance"), status))
        }
        ("instance", &Method::PUT) => mutation(
            reg.add_or_remove_instance(q.first("service"), q.bool("remove").unwrap_or(false)),
        ),
        ("move", &Method::PUT) => {
            let port = match q.first("port") {
                "" => None,
                p => match p.parse::<u64>() {
                    Ok(p) => Some(p),
                    Err(_) => return bad("port must be an integer"),
                },
            };
            let address = q.has("address").then(|| q.first("address"));
            mutation(reg.move_instance(q.first("service"), q.first("instance"), port, address))
        }
        _ => not_found(format!(
            "unknown control endpoint {method} /_standin/{what}"
        )),
    }
}

fn mutation(result: Result<u64, String>) -> Response<Payload> {
    match result {
        Ok(idx) => http::json(200, &json!({ "index": idx })),
        Err(e) => not_found(e),
    }
}

/// Knobs and fault merged, as standin.py shows them.
fn fault_view(app: &App) -> Value {
    let ctl = app.control();
    let mut out = match serde_json::to_value(&ctl.knobs) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if let Ok(Value::Object(f)) = serde_json::to_value(&ctl.fault) {
        out.extend(f);
    }
    Value::Object(out)
}

fn set_fault(app: &App, body: &[u8], reset: bool) -> Result<(), String> {
    let spec: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?
    };
    let Value::Object(spec) = spec else {
        return Err("fault body must be an object".into());
    };
    let mode = spec.get("mode").map_or(Some("none"), Value::as_str);
    if !mode.is_some_and(|m| FAULT_MODES.contains(&m)) {
        return Err(format!(
            "fault body must be an object; mode one of {FAULT_MODES:?}"
        ));
    }
    for key in [
        "status",
        "index",
        "count",
        "slow_ms",
        "gzip_min_size",
        "last_contact_ms",
    ] {
        if spec.get(key).is_some_and(|v| !v.is_null() && !v.is_u64()) {
            return Err(format!("fault field {key:?} must be an integer"));
        }
    }
    if spec
        .get("anonymous")
        .is_some_and(|a| a != "filter" && a != "forbid")
    {
        return Err("fault field \"anonymous\" must be \"filter\" or \"forbid\"".into());
    }
    let fault = if spec.contains_key("mode") {
        Some(
            serde_json::from_value::<Fault>(Value::Object(spec.clone()))
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let mut ctl = app.control();
    if reset {
        ctl.knobs = App::default_knobs(&app.settings);
        ctl.fault = Fault {
            mode: "none".into(),
            ..Fault::default()
        };
    }
    let k = &mut ctl.knobs;
    let u = |key: &str| spec.get(key).and_then(Value::as_u64);
    if let Some(v) = spec.get("leaderless").and_then(Value::as_bool) {
        k.leaderless = v;
    }
    if let Some(v) = spec.get("streaming").and_then(Value::as_bool) {
        k.streaming = v;
    }
    if let Some(v) = u("slow_ms") {
        k.slow_ms = v;
    }
    if let Some(v) = u("gzip_min_size") {
        k.gzip_min_size = v as usize;
    }
    if spec.contains_key("last_contact_ms") {
        k.last_contact_ms = u("last_contact_ms");
    }
    if let Some(v) = spec.get("anonymous").and_then(Value::as_str) {
        k.anonymous = v.to_owned();
    }
    if let Some(f) = fault {
        ctl.fault = f;
    }
    if ctl.knobs.leaderless && ctl.leaderless_since.is_none() {
        ctl.leaderless_since = Some(Instant::now());
    } else if !ctl.knobs.leaderless {
        ctl.leaderless_since = None;
    }
    drop(ctl);
    app.fault_changed.notify_waiters();
    Ok(())
}
