//! JSON bodies of the read endpoints, rendered from the registry under its read lock.
//!
//! `health/service` bodies for the default datacenter without `?tag`/`?node-meta`/`?pretty`
//! are cached per service (plain and `?passing`), as JSON and/or gzip, each made on first
//! demand, so reading an unchanged service costs a reference count, not a serialisation.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::write::GzEncoder;
use serde::Serialize;
use serde_json::Value;

use crate::model::{Chain, Check, CheckOut, EntryOut, Node};
use crate::registry::{Instance, ServiceRec, State};

/// A cached body: its JSON and its gzip form, each made on first demand, so a service that
/// is only read gzipped never holds its plain JSON.
#[derive(Debug, Default)]
pub(crate) struct Cached {
    len: OnceLock<usize>,
    json: OnceLock<Bytes>,
    gzip: OnceLock<Bytes>,
}

/// A body ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) data: Bytes,
    pub(crate) gzipped: bool,
}

impl Body {
    /// A body rendered for this request only.
    pub(crate) fn fresh(json: Vec<u8>, gzip_if: &dyn Fn(usize) -> bool) -> Self {
        if gzip_if(json.len()) {
            Self {
                data: gzip(&json),
                gzipped: true,
            }
        } else {
            Self {
                data: json.into(),
                gzipped: false,
            }
        }
    }
}

impl Cached {
    /// The body, gzipped when `gzip_if(JSON length)`; `render` runs only on a miss.
    pub(crate) fn get(
        &self,
        gzip_if: &dyn Fn(usize) -> bool,
        render: impl FnOnce() -> Vec<u8>,
    ) -> Body {
        if let Some(&len) = self.len.get() {
            if !gzip_if(len) {
                if let Some(d) = self.json.get() {
                    return Body {
                        data: d.clone(),
                        gzipped: false,
                    };
                }
            } else if let Some(d) = self.gzip.get() {
                return Body {
                    data: d.clone(),
                    gzipped: true,
                };
            } else if let Some(j) = self.json.get() {
                return Body {
                    data: self.gzip.get_or_init(|| gzip(j)).clone(),
                    gzipped: true,
                };
            }
        }
        let json = Bytes::from(render());
        let _ = self.len.set(json.len());
        if gzip_if(json.len()) {
            Body {
                data: self.gzip.get_or_init(|| gzip(&json)).clone(),
                gzipped: true,
            }
        } else {
            Body {
                data: self.json.get_or_init(|| json).clone(),
                gzipped: false,
            }
        }
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
            &*n.datacenter
        };
        dc == self.dc
            && self.node_meta.iter().all(|(k, v)| {
                n.meta
                    .as_ref()
                    .and_then(|m| m.get(k.as_str()))
                    .is_some_and(|m| **m == **v)
            })
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
    gzip_if: &dyn Fn(usize) -> bool,
) -> Body {
    let Some(svc) = svc else {
        return Body::fresh(to_json(&[(); 0], f.pretty), gzip_if);
    };
    if f.cacheable() {
        return svc.cache[usize::from(f.passing)]
            .get(gzip_if, || render_service(st, svc, f, default_dc));
    }
    Body::fresh(render_service(st, svc, f, default_dc), gzip_if)
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
        if entries[i].checks.iter().any(|c| &*c.status != "passing") {
            entries.swap_remove(i);
        } else {
            i += 1;
        }
    }
}

/// `/v1/catalog/services`: `{svc: [sorted unique tags]}` with sorted keys.
pub(crate) fn catalog_services(
    st: &State,
    f: &Filters,
    default_dc: &str,
    gzip_if: &dyn Fn(usize) -> bool,
) -> Body {
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
                        .extend(inst.service.tags.iter().map(|t| &**t));
                }
            }
        }
        to_json(&out, f.pretty)
    };
    if f.default_dc && f.node_meta.is_empty() && !f.pretty {
        return st.catalog_cache[0].get(gzip_if, build);
    }
    Body::fresh(build(), gzip_if)
}

/// `/v1/catalog/nodes`: nodes hosting an instance, sorted by lower-cased name.
pub(crate) fn catalog_nodes(
    st: &State,
    f: &Filters,
    default_dc: &str,
    gzip_if: &dyn Fn(usize) -> bool,
) -> Body {
    let build = || {
        let mut nodes: Vec<&Node> = st
            .nodes
            .values()
            .map(|n| &n.node)
            .filter(|n| f.node_ok(n, default_dc))
            .collect();
        nodes.sort_by_cached_key(|n| n.node.to_lowercase());
        to_json(&nodes, f.pretty)
    };
    if f.default_dc && f.node_meta.is_empty() && !f.pretty {
        return st.catalog_cache[1].get(gzip_if, build);
    }
    Body::fresh(build(), gzip_if)
}

/// `/v1/health/state/<state>`: node and service checks in that state, sorted by (node, ID).
pub(crate) fn health_state(st: &State, state: &str, f: &Filters, default_dc: &str) -> Vec<u8> {
    let any = state.eq_ignore_ascii_case("any");
    let wanted = |c: &Check| any || c.status.eq_ignore_ascii_case(state);
    let mut out: Vec<CheckOut<'_>> = Vec::new();
    for n in st.nodes.values().filter(|n| f.node_ok(&n.node, default_dc)) {
        let node = &*n.node.node;
        out.extend(n.checks.iter().filter(|c| wanted(c)).map(|check| CheckOut {
            node,
            service: None,
            check,
        }));
    }
    for svc in st.services.values() {
        for inst in &svc.instances {
            let Some(n) = st.nodes.get(&inst.node) else {
                continue;
            };
            if f.node_ok(&n.node, default_dc) {
                let (node, service) = (&*n.node.node, Some(&inst.service));
                out.extend(
                    inst.checks
                        .iter()
                        .filter(|c| wanted(c))
                        .map(|check| CheckOut {
                            node,
                            service,
                            check,
                        }),
                );
            }
        }
    }
    out.sort_by_cached_key(|c| (c.node.to_lowercase(), c.check.check_id.to_lowercase()));
    to_json(&out, f.pretty)
}

fn entries_of<'a>(st: &'a State, svc: &'a ServiceRec) -> Vec<EntryOut<'a>> {
    svc.instances
        .iter()
        .filter_map(|inst| {
            let node = st.nodes.get(&inst.node)?;
            Some(EntryOut {
                node: &node.node,
                service: &inst.service,
                checks: Chain(&node.checks, &inst.checks),
            })
        })
        .collect()
}

/// One service's entries in the `--state` format.
pub(crate) fn entries_value(st: &State, svc: &ServiceRec) -> Value {
    serde_json::to_value(entries_of(st, svc)).unwrap_or(Value::Null)
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
        .map(|svc| (&*svc.name, entries_of(st, svc)))
        .collect();
    to_json(
        &Whole {
            index: st.raft,
            services,
        },
        false,
    )
}
