//! JSON bodies of the read endpoints, rendered from the registry under its read lock.
//!
//! `health/service` bodies for the default datacenter without `?tag`/`?node-meta` are cached
//! per service (plain and `?passing`), with their gzip form made on first demand, so reading an
//! unchanged service costs a reference count, not a serialisation.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use flate2::write::GzEncoder;
use serde::Serialize;
use serde_json::Value;

use crate::model::{Chain, Check, EntryOut, Node};
use crate::registry::{Instance, ServiceRec, State};

/// A rendered JSON body and, once asked for, its gzip form.
#[derive(Debug)]
pub struct Rendered {
    /// The JSON.
    pub json: Bytes,
    gzip: OnceLock<Bytes>,
}

impl Rendered {
    /// Wraps a JSON body.
    pub fn new(json: impl Into<Bytes>) -> Self {
        Self {
            json: json.into(),
            gzip: OnceLock::new(),
        }
    }

    /// The gzip form, compressed once.
    pub fn gzip(&self) -> Bytes {
        self.gzip.get_or_init(|| gzip(&self.json)).clone()
    }
}

/// gzip at the default level, like Go's gziphandler.
pub fn gzip(data: &[u8]) -> Bytes {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default().into()
}

/// Filters of one read request.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filters {
    pub(crate) dc: String,
    /// Lower-cased `?tag` values (AND).
    pub(crate) tags: Vec<String>,
    pub(crate) node_meta: Vec<(String, String)>,
    pub(crate) passing: bool,
    pub(crate) pretty: bool,
    /// True for the default datacenter: the cached bodies apply.
    pub(crate) default_dc: bool,
}

impl Filters {
    fn cacheable(&self) -> bool {
        self.default_dc && self.tags.is_empty() && self.node_meta.is_empty() && !self.pretty
    }

    fn node_ok(&self, n: &Node, default_dc: &str) -> bool {
        let dc = if n.datacenter.is_empty() {
            default_dc
        } else {
            &n.datacenter
        };
        dc == self.dc
            && self
                .node_meta
                .iter()
                .all(|(k, v)| n.meta.as_ref().and_then(|m| m.get(k)) == Some(v))
    }
}

/// Serialises compact, or with 4-space indent and a final newline for `?pretty`.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T, pretty: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    if pretty {
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        let _ = value.serialize(&mut ser);
        out.push(b'\n');
    } else {
        let _ = serde_json::to_writer(&mut out, value);
    }
    out
}

/// `/v1/health/service/<svc>`.
pub(crate) fn health_service(
    st: &State,
    svc: Option<&ServiceRec>,
    f: &Filters,
    default_dc: &str,
) -> Arc<Rendered> {
    let Some(svc) = svc else {
        return Arc::new(Rendered::new(to_json(&[(); 0], f.pretty)));
    };
    if f.cacheable() {
        return svc.cache[usize::from(f.passing)]
            .get_or_init(|| Arc::new(Rendered::new(render_service(st, svc, f, default_dc))))
            .clone();
    }
    Arc::new(Rendered::new(render_service(st, svc, f, default_dc)))
}

fn render_service(st: &State, svc: &ServiceRec, f: &Filters, default_dc: &str) -> Vec<u8> {
    let mut entries: Vec<EntryOut<'_>> = Vec::with_capacity(svc.instances.len());
    for inst in &svc.instances {
        let Some(node) = st.nodes.get(&inst.node) else {
            continue;
        };
        if !f.node_ok(&node.node, default_dc) || !has_tags(inst, &f.tags) {
            continue;
        }
        entries.push(EntryOut {
            node: &node.node,
            service: &inst.service,
            checks: Chain(&node.checks, &inst.checks),
        });
    }
    if f.passing {
        exclude_not_passing(&mut entries);
    }
    to_json(&entries, f.pretty)
}

fn has_tags(inst: &Instance, tags: &[String]) -> bool {
    tags.iter().all(|t| {
        inst.service
            .tags
            .iter()
            .any(|have| have.to_lowercase() == *t)
    })
}

/// `CheckServiceNodes.Filter`: swap-remove, so the order shifts exactly as in Consul.
fn exclude_not_passing(entries: &mut Vec<EntryOut<'_>>) {
    let mut i = 0;
    while i < entries.len() {
        let e = &entries[i];
        if e.checks
            .0
            .iter()
            .chain(e.checks.1)
            .any(|c| c.status != "passing")
        {
            entries.swap_remove(i);
        } else {
            i += 1;
        }
    }
}

/// `/v1/catalog/services`: `{svc: [sorted unique tags]}` with sorted keys.
pub(crate) fn catalog_services(st: &State, f: &Filters, default_dc: &str) -> Bytes {
    let build = || {
        let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for svc in st.services.values() {
            for inst in &svc.instances {
                let Some(node) = st.nodes.get(&inst.node) else {
                    continue;
                };
                if f.node_ok(&node.node, default_dc) {
                    out.entry(&inst.service.service)
                        .or_default()
                        .extend(inst.service.tags.iter().map(String::as_str));
                }
            }
        }
        Bytes::from(to_json(&out, f.pretty))
    };
    if f.default_dc && f.node_meta.is_empty() && !f.pretty {
        return st.catalog_cache[0].get_or_init(build).clone();
    }
    build()
}

/// `/v1/catalog/nodes`: nodes hosting an instance, sorted by lower-cased name.
pub(crate) fn catalog_nodes(st: &State, f: &Filters, default_dc: &str) -> Bytes {
    let build = || {
        let mut nodes: Vec<&Node> = st
            .nodes
            .values()
            .map(|n| &n.node)
            .filter(|n| f.node_ok(n, default_dc))
            .collect();
        nodes.sort_by_cached_key(|n| n.node.to_lowercase());
        Bytes::from(to_json(&nodes, f.pretty))
    };
    if f.default_dc && f.node_meta.is_empty() && !f.pretty {
        return st.catalog_cache[1].get_or_init(build).clone();
    }
    build()
}

/// `/v1/health/state/<state>`: node and service checks in that state, sorted by (node, ID).
pub(crate) fn health_state(st: &State, state: &str, f: &Filters, default_dc: &str) -> Bytes {
    let any = state.eq_ignore_ascii_case("any");
    let wanted = |c: &Check| any || c.status.eq_ignore_ascii_case(state);
    let mut out: Vec<&Check> = Vec::new();
    for n in st.nodes.values().filter(|n| f.node_ok(&n.node, default_dc)) {
        out.extend(n.checks.iter().filter(|c| wanted(c)));
    }
    for svc in st.services.values() {
        for inst in &svc.instances {
            let Some(node) = st.nodes.get(&inst.node) else {
                continue;
            };
            if f.node_ok(&node.node, default_dc) {
                out.extend(inst.checks.iter().filter(|c| wanted(c)));
            }
        }
    }
    out.sort_by_cached_key(|c| (c.node.to_lowercase(), c.check_id.to_lowercase()));
    Bytes::from(to_json(&out, f.pretty))
}

/// One service's entries in the `--state` format.
pub(crate) fn entries_value(st: &State, svc: &ServiceRec) -> Value {
    let entries: Vec<EntryOut<'_>> = svc
        .instances
        .iter()
        .filter_map(|inst| {
            let node = st.nodes.get(&inst.node)?;
            Some(EntryOut {
                node: &node.node,
                service: &inst.service,
                checks: Chain(&node.checks, &inst.checks),
            })
        })
        .collect();
    serde_json::to_value(&entries).unwrap_or(Value::Null)
}

/// The whole registry, `{"index": N, "services": {...}}`, for `GET /_standin/state`.
pub(crate) fn state_json(st: &State) -> Vec<u8> {
    #[derive(Serialize)]
    struct Whole<'a> {
        index: u64,
        services: BTreeMap<&'a str, Vec<EntryOut<'a>>>,
    }
    let services = st
        .services
        .values()
        .map(|svc| {
            let entries = svc
                .instances
                .iter()
                .filter_map(|inst| {
                    let node = st.nodes.get(&inst.node)?;
                    Some(EntryOut {
                        node: &node.node,
                        service: &inst.service,
                        checks: Chain(&node.checks, &inst.checks),
                    })
                })
                .collect();
            (svc.name.as_str(), entries)
        })
        .collect();
    to_json(
        &Whole {
            index: st.raft,
            services,
        },
        false,
    )
}
