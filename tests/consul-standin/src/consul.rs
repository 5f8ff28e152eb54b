//! The Consul read endpoints under `/v1/`: parameters and errors in Consul's order, blocking
//! on the index the endpoint reads, faults, and the `X-Consul-*` headers (reference §7).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response};

use crate::app::{App, Fault};
use crate::http::{self, Hdrs, Payload, PLAIN};
use crate::query::{parse_go_duration, Query};
use crate::registry::{knows_dc, Registry, Watch};
use crate::render::{self, Body, Filters};

/// `structs.JitterFraction`.
const JITTER_FRACTION: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CatalogServices,
    CatalogNodes,
    HealthService,
    HealthState,
    StatusLeader,
}

/// An error answered as text/plain; `meta` adds the zero QueryMeta headers that catalog/* and
/// health/state send on RPC errors (their `setMeta` is deferred).
struct ApiError {
    status: u16,
    body: String,
    meta: bool,
}

fn err(status: u16, body: impl Into<String>) -> ApiError {
    ApiError {
        status,
        body: body.into(),
        meta: false,
    }
}

enum Route {
    Endpoint(Kind, String),
    Redirect(&'static str),
    NotFound,
}

/// Go ServeMux semantics: exact patterns, subtree patterns, 301 to add a missing slash.
fn route(path: &str) -> Route {
    const SUBTREES: [(&str, Kind); 2] = [
        ("/v1/health/service/", Kind::HealthService),
        ("/v1/health/state/", Kind::HealthState),
    ];
    match path {
        "/v1/catalog/services" => return Route::Endpoint(Kind::CatalogServices, String::new()),
        "/v1/catalog/nodes" => return Route::Endpoint(Kind::CatalogNodes, String::new()),
        "/v1/status/leader" => return Route::Endpoint(Kind::StatusLeader, String::new()),
        _ => {}
    }
    for (prefix, kind) in SUBTREES {
        if let Some(arg) = path.strip_prefix(prefix) {
            return Route::Endpoint(kind, arg.to_owned());
        }
        if path == prefix.trim_end_matches('/') {
            return Route::Redirect(prefix);
        }
    }
    Route::NotFound
}

/// Answers one `/v1/` request. `Err` closes the connection (mode `hang` once released).
pub(crate) async fn respond(
    app: &Arc<App>,
    req: &Request<Incoming>,
    path: &str,
    raw_query: &str,
) -> Result<Response<Payload>, std::io::Error> {
    let (kind, arg) = match route(path) {
        Route::Endpoint(kind, arg) => (kind, arg),
        Route::Redirect(to) => {
            let loc = if raw_query.is_empty() {
                to.to_owned()
            } else {
                format!("{to}?{raw_query}")
            };
            let body = format!("<a href=\"{loc}\">Moved Permanently</a>.\n\n");
            let hdrs = vec![
                ("Location", loc),
                ("Content-Type", "text/html; charset=utf-8".into()),
            ];
            return Ok(http::reply(app, req, 301, hdrs, Bytes::from(body), false));
        }
        Route::NotFound => {
            let body = "Invalid URL path: not a recognized HTTP API endpoint\n";
            return Ok(http::reply(
                app,
                req,
                404,
                vec![("Content-Type", PLAIN.into())],
                Bytes::from(body),
                false,
            ));
        }
    };
    let (token_required, slow_ms) = {
        let ctl = app.control();
        (!ctl.token.is_empty(), ctl.knobs.slow_ms)
    };
    let base: Hdrs = vec![
        (
            "X-Consul-Default-Acl-Policy",
            if token_required { "deny" } else { "allow" }.into(),
        ),
        ("Vary", "Accept-Encoding".into()),
    ];
    if slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(slow_ms)).await;
    }
    let fault = app.fault_for(path);
    match fault.mode.as_str() {
        "hang" => {
            app.fault_changed.notified().await;
            return Err(std::io::Error::other("hung request released"));
        }
        "status" => {
            let body = fault
                .body
                .clone()
                .unwrap_or_else(|| "No cluster leader".into());
            let hdrs = with(vec![("Content-Type", PLAIN.into())], &base);
            return Ok(http::reply(
                app,
                req,
                fault.status.unwrap_or(500),
                hdrs,
                Bytes::from(body),
                true,
            ));
        }
        _ => {}
    }
    if req.method() == Method::OPTIONS {
        return Ok(http::reply(
            app,
            req,
            200,
            with(vec![("Allow", "OPTIONS,GET".into())], &base),
            Bytes::new(),
            false,
        ));
    }
    if req.method() != Method::GET {
        let hdrs = with(
            vec![
                ("Allow", "OPTIONS,GET".into()),
                ("Content-Type", PLAIN.into()),
            ],
            &base,
        );
        let body = format!("method {} not allowed", req.method());
        return Ok(http::reply(app, req, 405, hdrs, Bytes::from(body), true));
    }
    // Faults that mangle the JSON need it uncompressed; they gzip what they send themselves.
    let accept = http::client_accepts_gzip(req)
        && !matches!(
            fault.mode.as_str(),
            "malformed" | "truncated" | "disconnect"
        );
    let min = app.control().knobs.gzip_min_size;
    let gzip_if = move |len: usize| accept && len >= min;
    let (body, meta) = match read(app, req.headers(), kind, &arg, raw_query, &fault, &gzip_if).await
    {
        Ok(ok) => ok,
        Err(e) => {
            let mut hdrs = with(vec![("Content-Type", PLAIN.into())], &base);
            if e.meta {
                hdrs.extend([
                    ("X-Consul-Lastcontact", "0".into()),
                    ("X-Consul-Index", "1".into()),
                    ("X-Consul-Knownleader", "false".into()),
                    ("X-Consul-Query-Backend", "blocking-query".into()),
                ]);
            }
            return Ok(http::reply(
                app,
                req,
                e.status,
                hdrs,
                Bytes::from(e.body),
                true,
            ));
        }
    };
    let mut hdrs = with(vec![("Content-Type", "application/json".into())], &base);
    hdrs.extend(meta);
    let json = &body.data;
    match fault.mode.as_str() {
        "malformed" => {
            let bad = Bytes::from_static(b"[{\"Node\":{\"Node\":\"web-01\",\"Address\":\"10.0.1.11\"},\"Service\":{\"ID\":<html>oops");
            Ok(http::reply(app, req, 200, hdrs, bad, true))
        }
        "truncated" => Ok(http::reply(
            app,
            req,
            200,
            hdrs,
            json.slice(..json.len() / 2),
            true,
        )),
        "disconnect" => Ok(http::reply_cut(
            app,
            200,
            hdrs,
            json.clone(),
            json.len() / 2,
        )),
        _ => Ok(http::reply_body(app, 200, hdrs, body)),
    }
}

fn with(mut first: Hdrs, base: &Hdrs) -> Hdrs {
    first.extend(base.iter().cloned());
    first
}

fn header_token(h: &HeaderMap) -> String {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let tok = get("x-consul-token");
    if !tok.is_empty() {
        return tok.to_owned();
    }
    let auth = get("authorization");
    match auth.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            rest.trim().split(' ').next().unwrap_or("").to_owned()
        }
        _ => String::new(),
    }
}

/// Parameters, datacenter, leader, ACL, blocking, render; in Consul's order of checks.
async fn read(
    app: &Arc<App>,
    headers: &HeaderMap,
    kind: Kind,
    arg: &str,
    raw_query: &str,
    fault: &Fault,
    gzip_if: &(dyn Fn(usize) -> bool + Sync),
) -> Result<(Body, Hdrs), ApiError> {
    let q = Query::parse(raw_query).map_err(|_| err(500, ""))?;
    let reg = &app.reg;
    let dc = [q.first("datacenter"), q.first("dc")]
        .into_iter()
        .find(|d| !d.is_empty())
        .unwrap_or(&reg.default_dc)
        .to_owned();
    let token = if q.first("token").is_empty() {
        header_token(headers)
    } else {
        q.first("token").to_owned()
    };
    let mut stale = q.has("stale");
    let consistent = q.has("consistent");
    let cached = q.has("cached");
    let mut max_stale_ms = 0.0;
    if !q.first("max_stale").is_empty() {
        let ns = parse_go_duration(q.first("max_stale")).map_err(|_| {
            err(
                400,
                format!("Invalid max_stale value \"{}\"", q.first("max_stale")),
            )
        })?;
        max_stale_ms = ns as f64 / 1e6;
        stale = stale || ns > 0;
    }
    if stale && consistent {
        return Err(err(
            400,
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ));
    }
    if cached && consistent {
        return Err(err(
            400,
            "Cannot specify ?cached with ?consistent, conflicting semantics.",
        ));
    }
    let cache_control = headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_lowercase();
    for d in cache_control.split(',').map(str::trim) {
        for prefix in ["max-age=", "stale-if-error="] {
            if let Some(v) = d.strip_prefix(prefix) {
                if v.trim_start_matches(['+', '-']).is_empty()
                    || !v
                        .trim_start_matches(['+', '-'])
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                {
                    return Err(err(400, "Invalid Cache-Control header."));
                }
            }
        }
    }
    let wait_ns = match q.first("wait") {
        "" => 0,
        w => parse_go_duration(w).map_err(|_| err(400, "Invalid wait time"))?,
    };
    let min_index = match q.first("index") {
        "" => 0,
        i if i.bytes().all(|b| b.is_ascii_digit()) => {
            i.parse::<u64>().map_err(|_| err(400, "Invalid index"))?
        }
        _ => return Err(err(400, "Invalid index")),
    };
    if !q.first("filter").is_empty() {
        return Err(err(400, "consul-standin: ?filter (bexpr) is not emulated"));
    }
    if kind == Kind::HealthService && arg.is_empty() {
        return Err(err(400, "Missing service name"));
    }
    if kind == Kind::HealthState && arg.is_empty() {
        return Err(err(400, "Missing check state"));
    }
    let passing = if kind == Kind::HealthService {
        q.bool("passing")
            .map_err(|_| err(400, "Invalid value for ?passing"))?
    } else {
        false
    };
    let meta_err = matches!(
        kind,
        Kind::CatalogServices | Kind::CatalogNodes | Kind::HealthState
    );
    let rpc_err = |status: u16, body: &str| ApiError {
        status,
        body: body.into(),
        meta: meta_err,
    };
    if !knows_dc(&reg.read(), &reg.default_dc, &dc) {
        return Err(rpc_err(500, "No path to datacenter"));
    }
    let (knobs, required) = {
        let ctl = app.control();
        (ctl.knobs.clone(), ctl.token.clone())
    };
    if kind == Kind::StatusLeader {
        let leader = if knobs.leaderless {
            "\"\""
        } else {
            "\"127.0.0.1:8300\""
        };
        return Ok((Body::fresh(leader.as_bytes().to_vec(), gzip_if), Vec::new()));
    }
    let streaming = kind == Kind::HealthService
        && knobs.streaming
        && (min_index > 0 || cached)
        && !q.has("near");
    if knobs.leaderless && !stale && !streaming {
        return Err(rpc_err(500, "No cluster leader"));
    }
    let anonymous = if required.is_empty() || token == required {
        false
    } else if !token.is_empty() || knobs.anonymous == "forbid" {
        return Err(rpc_err(403, "ACL not found"));
    } else {
        true
    };
    let watch = match kind {
        Kind::HealthService => Watch::Service(arg.to_lowercase()),
        Kind::HealthState => Watch::Checks,
        _ => Watch::Services,
    };
    let backwards = fault.mode == "index_backwards";
    if min_index > 0 && !backwards {
        block(app, &watch, min_index, wait_ns).await;
    }
    let filters = Filters {
        default_dc: dc == reg.default_dc,
        dc,
        tags: q.all("tag").map(str::to_lowercase).collect(),
        node_meta: q
            .all("node-meta")
            .map(|f| {
                f.split_once(':')
                    .map_or((f.to_owned(), String::new()), |(k, v)| {
                        (k.to_owned(), v.to_owned())
                    })
            })
            .collect(),
        passing,
        pretty: q.has("pretty"),
    };
    let render = || {
        let st = reg.read();
        let (index, _) = Registry::watch_target(&st, &watch);
        let dc = &reg.default_dc;
        let body = if anonymous {
            let empty = if kind == Kind::CatalogServices {
                "{}"
            } else {
                "[]"
            };
            let empty: serde_json::Value = serde_json::from_str(empty).unwrap_or_default();
            Body::fresh(render::to_json(&empty, filters.pretty), gzip_if)
        } else {
            match kind {
                Kind::HealthService => {
                    let svc = st.services.get(arg.to_lowercase().as_str());
                    render::health_service(&st, svc, &filters, dc, gzip_if)
                }
                Kind::CatalogServices => render::catalog_services(&st, &filters, dc, gzip_if),
                Kind::CatalogNodes => render::catalog_nodes(&st, &filters, dc, gzip_if),
                Kind::HealthState => {
                    Body::fresh(render::health_state(&st, arg, &filters, dc), gzip_if)
                }
                Kind::StatusLeader => Body::fresh(Vec::new(), gzip_if),
            }
        };
        (body, index)
    };
    // A cluster-wide list of a large registry takes seconds to render: off the async worker,
    // so that the connection's other streams and its HTTP/2 PINGs are still answered meanwhile
    // (Go's server answers PINGs from its read loop whatever a handler does).
    let large = matches!(
        kind,
        Kind::HealthState | Kind::CatalogServices | Kind::CatalogNodes
    );
    let (body, index) = if large && multi_threaded() {
        tokio::task::block_in_place(render)
    } else {
        render()
    };
    let index = if backwards {
        fault.index.unwrap_or(1)
    } else {
        index
    };
    let (mut known, mut last_ms) = leader_meta(app, stale, streaming);
    let mut level = if consistent {
        "consistent"
    } else if stale {
        "stale"
    } else {
        "leader"
    };
    if stale && max_stale_ms > 0.0 && max_stale_ms < last_ms as f64 {
        // RETRY_ONCE against the leader.
        if knobs.leaderless {
            return Err(rpc_err(500, "No cluster leader"));
        }
        (known, last_ms) = (true, 0);
        level = if kind == Kind::HealthService {
            "stale"
        } else {
            "leader"
        };
    }
    let meta = vec![
        ("X-Consul-Lastcontact", last_ms.to_string()),
        ("X-Consul-Index", index.max(1).to_string()),
        ("X-Consul-Knownleader", known.to_string()),
        ("X-Consul-Effective-Consistency", level.into()),
        (
            "X-Consul-Query-Backend",
            if streaming {
                "streaming"
            } else {
                "blocking-query"
            }
            .into(),
        ),
    ];
    Ok((body, meta))
}

/// (KnownLeader, LastContact ms) as `Server.SetQueryMeta` would report them.
fn leader_meta(app: &App, stale: bool, streaming: bool) -> (bool, u64) {
    if streaming {
        return (false, 0); // streaming results carry empty QueryMeta (§7.2)
    }
    let ctl = app.control();
    if ctl.knobs.leaderless {
        let since = ctl
            .leaderless_since
            .map_or(0, |t| t.elapsed().as_millis() as u64);
        return (false, ctl.knobs.last_contact_ms.unwrap_or(since));
    }
    match ctl.knobs.last_contact_ms {
        Some(ms) if stale && ms > 0 => (true, ms),
        _ => (true, 0),
    }
}

/// `blockingquery.Query`: waits until the watched index exceeds `min`, the wait (plus jitter)
/// runs out, or an index restore happens. Only a change to what `watch` reads wakes it.
async fn block(app: &App, watch: &Watch, min: u64, wait_ns: i128) {
    let s = &app.settings;
    let wait = match u64::try_from(wait_ns) {
        Ok(0) | Err(_) => s.default_wait,
        Ok(ns) => Duration::from_nanos(ns).min(s.max_wait),
    };
    let jitter_ns = (wait / JITTER_FRACTION).as_nanos() as u64;
    let jitter = Duration::from_nanos(if jitter_ns == 0 {
        0
    } else {
        rand::random_range(0..=jitter_ns)
    });
    let deadline = tokio::time::Instant::from_std(Instant::now() + wait + jitter);
    let generation = app.reg.read().restore_gen;
    loop {
        let notified = {
            let st = app.reg.read();
            if st.restore_gen != generation {
                return;
            }
            let (index, notify) = Registry::watch_target(&st, watch);
            if index > min {
                return;
            }
            // Enabled under the read lock: a writer needs the write lock to move the index, so
            // its notify_waiters cannot fall between this check and the wait.
            let mut notified = Box::pin(notify.notified_owned());
            notified.as_mut().enable();
            notified
        };
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// True on a multi-threaded runtime, the only kind `block_in_place` works on.
fn multi_threaded() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}
