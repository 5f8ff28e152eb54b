//! Registry fixtures, in the format Consul's `GET /v1/health/service/<name>` returns: single
//! entries, the web/db registry the sync tests and metrics share, and the shipped demo registry.

use std::path::Path;

use serde_json::{json, Value};

/// One health entry: `node` at `node_addr` running `service` (id `<service>-<port>-<node>`)
/// on `port`, with a service address (empty: use the node's), tags, and the status of its
/// service check (the node's serfHealth passes).
pub fn entry(
    node: &str,
    node_addr: &str,
    service: &str,
    service_addr: &str,
    port: u16,
    tags: &[&str],
    status: &str,
) -> Value {
    let id = format!("{service}-{port}-{node}");
    json!({
        "Node": {
            "ID": "", "Node": node, "Address": node_addr, "Datacenter": "dc1",
            "TaggedAddresses": {"lan": node_addr}, "Meta": {}, "CreateIndex": 5, "ModifyIndex": 5
        },
        "Service": {
            "ID": id, "Service": service, "Tags": tags, "Address": service_addr,
            "Meta": null, "Port": port, "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": false, "CreateIndex": 7, "ModifyIndex": 7
        },
        "Checks": [
            {"Node": node, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
             "Notes": "", "Output": "", "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
             "CreateIndex": 5, "ModifyIndex": 5},
            {"Node": node, "CheckID": format!("service:{id}"), "Name": "check", "Status": status,
             "Notes": "", "Output": "", "ServiceID": id, "ServiceName": service, "ServiceTags": tags,
             "Type": "http", "CreateIndex": 7, "ModifyIndex": 7}
        ]
    })
}

/// A registry of `count` passing `service` instances on nodes `n00`, `n01`, ... at
/// 10.9.X.Y, port 8000 + i.
pub fn many(service: &str, count: usize) -> Value {
    let entries: Vec<Value> = (0..count)
        .map(|i| {
            let node = format!("n{i:03}");
            let addr = format!("10.9.{}.{}", i / 250, i % 250 + 1);
            entry(
                &node,
                &addr,
                service,
                "",
                8000 + i as u16,
                &["t"],
                "passing",
            )
        })
        .collect();
    json!({ service: entries })
}

/// `count` passing `web` instances on nodes `n1`, `n2`, ... at 10.1.0.1, 10.1.0.2, ...,
/// port 8080, each with `tags`.
pub fn web_entries(count: usize, tags: &[&str]) -> Vec<Value> {
    (1..=count)
        .map(|i| {
            entry(
                &format!("n{i}"),
                &format!("10.1.0.{i}"),
                "web",
                "",
                8080,
                tags,
                "passing",
            )
        })
        .collect()
}

/// A passing `db` instance on node `d1` at 10.2.0.1:5432.
pub fn db_entry() -> Value {
    entry("d1", "10.2.0.1", "db", "", 5432, &[], "passing")
}

/// web: four passing instances on n1..n4 (10.1.0.1-4, port 8080, each with `web_tags`);
/// db: one on d1 (10.2.0.1:5432).
pub fn web_and_db(web_tags: &[&str]) -> Value {
    json!({ "web": web_entries(4, web_tags), "db": [db_entry()] })
}

/// The addresses of [`web_and_db`]'s web instances, sorted.
pub fn web_addresses() -> Vec<String> {
    (1..=4).map(|i| format!("10.1.0.{i}")).collect()
}

/// `--registry` for the shipped demo registry: `file:<repo>/zones/demo.registry.json`.
pub fn demo_registry() -> String {
    format!(
        "file:{}",
        super::repo().join("zones/demo.registry.json").display()
    )
}

/// Replaces the registry file at `path` at once (write aside, rename over), so a file source
/// never reads half a file.
pub fn replace_registry_file(path: &Path, registry: &Value) {
    let aside = path.with_extension("json.new");
    std::fs::write(&aside, serde_json::to_string_pretty(registry).unwrap()).unwrap();
    std::fs::rename(&aside, path).unwrap();
}
