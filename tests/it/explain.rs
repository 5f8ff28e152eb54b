//! `GET /v1/explain` and `snapdns explain` (issue 14, item 2): the rule a name falls under,
//! its answer from the real responder, and every instance of a service with its state, over
//! the real HTTP endpoint of the real binary.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::http::get;
use crate::support::knot::STATIC_ZONE;
use crate::support::registry::{entry, web_and_db};
use crate::support::server::Server;
use crate::support::standin::Standin;
use crate::support::sync_settings::start_syncing;
use crate::support::{binary, write};

const CRITICAL_OUTPUT: &str = "HTTP GET http://10.1.0.2:8080/health: 503 Service Unavailable";

/// web: n1 passing (tag primary), n2 critical with output, n3 node maintenance, n4 warning
/// (tag primary), bad_node passing, n6 instance maintenance, n7 an unusable address.
fn registry() -> Value {
    let mut n2 = entry("n2", "10.1.0.2", "web", "", 8080, &[], "critical");
    n2["Checks"][1]["Output"] = json!(CRITICAL_OUTPUT);
    let mut n3 = entry("n3", "10.1.0.3", "web", "", 8080, &[], "passing");
    n3["Checks"].as_array_mut().unwrap().push(json!({
        "Node": "n3", "CheckID": "_node_maintenance", "Status": "critical",
        "Output": "Node in maintenance: kernel upgrade", "ServiceID": "", "ServiceName": ""
    }));
    let mut n6 = entry("n6", "10.1.0.6", "web", "", 8080, &[], "passing");
    n6["Checks"].as_array_mut().unwrap().push(json!({
        "Node": "n6", "CheckID": "_service_maintenance:web-8080-n6", "Status": "critical",
        "ServiceID": "web-8080-n6", "ServiceName": "web"
    }));
    json!({
        "web": [
            entry("n1", "10.1.0.1", "web", "", 8080, &["primary"], "passing"),
            n2,
            n3,
            entry("n4", "10.1.0.4", "web", "", 8080, &["primary"], "warning"),
            entry("bad_node", "10.1.0.5", "web", "", 8080, &[], "passing"),
            n6,
            entry("n7", "10.1.0.7", "web", "not a host!", 8080, &[], "passing"),
        ],
        "db": [entry("d1", "10.2.0.1", "db", "", 5432, &[], "passing")],
    })
}

/// `/v1/explain` with the query string `query`: (status, JSON).
fn explain(server: &Server, query: &str) -> (u16, Value) {
    let response = get(server.http.expect("http"), &format!("/v1/explain?{query}"));
    let body = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", response.body));
    (response.status, body)
}

/// The account of `name`/`qtype`, which must be answered with 200.
fn account(server: &Server, name: &str, qtype: &str) -> Value {
    let (status, body) = explain(server, &format!("name={name}&type={qtype}"));
    assert_eq!(status, 200, "{body:#}");
    body
}

/// Each listed instance as (node, state, reason kinds).
fn states(account: &Value) -> Vec<(String, String, Vec<String>)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    account["instances"]["list"]
        .as_array()
        .unwrap_or_else(|| panic!("no instances: {account:#}"))
        .iter()
        .map(|i| {
            let kinds = i["reasons"].as_array().unwrap();
            (
                text(&i["node"]),
                text(&i["state"]),
                kinds.iter().map(|r| text(&r["kind"])).collect(),
            )
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn state(node: &str, state: &str, kinds: &[&str]) -> (String, String, Vec<String>) {
    (
        node.into(),
        state.into(),
        kinds.iter().map(|k| k.to_string()).collect(),
    )
}

/// The registry file server, with a static zone and an upstream that is never asked.
fn server(extra: &[&str]) -> Server {
    let zones = tempfile::tempdir().unwrap();
    write(zones.path(), "static.test.zone", STATIC_ZONE);
    let zones_dir = zones.path().to_str().unwrap().to_string();
    let mut args = vec!["--zones-dir", zones_dir.as_str(), "--service-ttl", "30s"];
    args.extend_from_slice(extra);
    let (server, _path) = Server::with_registry_file(&registry(), &args);
    // The zones are read at start-up; the directory may go.
    drop(zones);
    server
}

#[test]
fn explain_names_the_rule_the_answer_and_every_instance_of_a_service() {
    let server = server(&["--upstream", "127.0.0.1:9"]);
    let web = account(&server, "web.service.consul", "A");
    assert_eq!(web["rule"]["rule"], "service", "{web:#}");
    assert_eq!(web["rule"]["service"], "web");
    assert_eq!(web["rule"]["form"], "plain");
    assert_eq!(web["answer"]["rcode"], "NOERROR");
    assert_eq!(
        strings(&web["answer"]["answer"]),
        [
            "web.service.consul. 30 IN A 10.1.0.1",
            "web.service.consul. 30 IN A 10.1.0.5"
        ]
    );
    assert!(web["snapshot"]["serial"].as_u64().is_some(), "{web:#}");
    assert!(web["snapshot"]["age_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(web["instances"]["total"], 7);
    assert_eq!(web["instances"]["served"], 2);
    // Left out first, in registry order; then the served ones.
    assert_eq!(
        states(&web),
        [
            state("n2", "left out", &["check"]),
            state("n3", "left out", &["node-maintenance"]),
            state("n4", "left out", &["check"]),
            state("n6", "left out", &["service-maintenance"]),
            state("n7", "left out", &["address-unusable"]),
            state("n1", "served", &[]),
            state("bad_node", "served", &["node-name-invalid"]),
        ]
    );
    let n2 = &web["instances"]["list"][0]["reasons"][0];
    assert_eq!(n2["check"]["id"], "service:web-8080-n2");
    assert_eq!(n2["check"]["status"], "critical");
    assert_eq!(n2["check"]["on"], "instance");
    assert_eq!(n2["check"]["output"], CRITICAL_OUTPUT);
    assert_eq!(
        n2["text"],
        format!("check service:web-8080-n2 on instance web-8080-n2 is critical: {CRITICAL_OUTPUT}")
    );
    let n4 = &web["instances"]["list"][2]["reasons"][0];
    assert_eq!(n4["check"]["status"], "warning");
    assert_eq!(n4["excludes"], true, "not served without --serve-warning");
    assert_eq!(
        web["instances"]["list"][6]["reasons"][0]["text"],
        "node name \"bad_node\" is not a DNS label"
    );

    // A tag: only the instances carrying it; the rest are left out by the tag filter.
    let tagged = account(&server, "primary.web.service.consul", "A");
    assert_eq!(tagged["rule"]["rule"], "tag");
    assert_eq!(tagged["rule"]["tag"], "primary");
    assert_eq!(
        strings(&tagged["answer"]["answer"]),
        ["primary.web.service.consul. 30 IN A 10.1.0.1"]
    );
    let bad_node = states(&tagged).into_iter().find(|s| s.0 == "bad_node");
    assert_eq!(
        bad_node,
        Some(state(
            "bad_node",
            "left out",
            &["node-name-invalid", "tag-filter"]
        ))
    );
    assert_eq!(tagged["instances"]["served"], 1);

    // RFC 2782, with and without `.service`, with a locality label too.
    let srv = account(&server, "_web._primary.service.consul", "SRV");
    assert_eq!(srv["rule"]["rule"], "rfc2782");
    assert_eq!(srv["rule"]["tag"], "primary");
    assert_eq!(
        strings(&srv["answer"]["answer"]),
        ["_web._primary.service.consul. 30 IN SRV 1 1 8080 n1.node.dc1.consul."]
    );
    let short = account(&server, "_web._tcp.consul", "SRV");
    assert_eq!(short["rule"]["rule"], "rfc2782");
    assert_eq!(short["rule"]["form"], "rfc2782-without-service");
    assert!(short["rule"]["tag"].is_null(), "_tcp filters nothing");
    assert_eq!(short["answer"]["answer"].as_array().unwrap().len(), 2);
    assert_eq!(short["instances"]["served"], 2);
    let located = account(&server, "web.service.dc1.dc.consul", "A");
    assert_eq!(located["rule"]["form"], "dc-label");
    assert_eq!(located["rule"]["datacenter"], "dc1");
    assert_eq!(
        strings(&located["answer"]["answer"]),
        [
            "web.service.dc1.dc.consul. 30 IN A 10.1.0.1",
            "web.service.dc1.dc.consul. 30 IN A 10.1.0.5"
        ]
    );

    // Node, addr, reverse, static zone, forwarded.
    let node = account(&server, "n1.node.consul", "A");
    assert_eq!(node["rule"]["rule"], "node");
    assert_eq!(node["rule"]["node"], "n1");
    assert_eq!(
        strings(&node["answer"]["answer"]),
        ["n1.node.consul. 0 IN A 10.1.0.1"]
    );
    assert!(node.get("instances").is_none());
    let addr = account(&server, "0a010001.addr.consul", "A");
    assert_eq!(addr["rule"]["rule"], "addr");
    assert_eq!(
        strings(&addr["answer"]["answer"]),
        ["0a010001.addr.consul. 0 IN A 10.1.0.1"]
    );
    let reverse = account(&server, "1.0.1.10.in-addr.arpa", "PTR");
    assert_eq!(reverse["rule"]["rule"], "reverse");
    assert_eq!(
        strings(&reverse["answer"]["answer"]),
        ["1.0.1.10.in-addr.arpa. 0 IN PTR n1.node.dc1.consul."]
    );
    let fixed = account(&server, "db.static.test", "A");
    assert_eq!(fixed["rule"]["rule"], "static");
    assert_eq!(fixed["rule"]["zone"], "static.test.");
    assert_eq!(
        strings(&fixed["answer"]["answer"]),
        ["db.static.test. 120 IN A 10.9.0.5"]
    );
    let missing = account(&server, "nope.static.test", "A");
    assert_eq!(missing["answer"]["rcode"], "NXDOMAIN");
    assert_eq!(
        strings(&missing["answer"]["authority"]).len(),
        1,
        "the zone's SOA"
    );
    let elsewhere = account(&server, "example.com", "A");
    assert_eq!(elsewhere["rule"]["rule"], "forwarded");
    assert_eq!(elsewhere["answer"]["forwarded"], true);
    assert_eq!(strings(&elsewhere["answer"]["upstreams"]), ["127.0.0.1:9"]);
    // No default type given: SRV for an RFC 2782 name.
    let (status, default) = explain(&server, "name=_db._tcp.service.consul");
    assert_eq!(status, 200);
    assert_eq!(default["type"], "SRV");
    assert_eq!(default["instances"]["served"], 1);
}

#[test]
fn explain_with_serve_warning_serves_the_warning_instance_and_refuses_other_names() {
    let server = server(&["--serve-warning", "--no-forward"]);
    let web = account(&server, "web.service.consul", "A");
    let n4 = states(&web).into_iter().find(|s| s.0 == "n4").unwrap();
    assert_eq!(n4, state("n4", "served", &["check"]));
    assert_eq!(web["instances"]["served"], 3);
    assert!(strings(&web["answer"]["answer"])
        .contains(&"web.service.consul. 30 IN A 10.1.0.4".to_string()));
    let n4 = web["instances"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["node"] == "n4")
        .unwrap();
    assert_eq!(n4["reasons"][0]["excludes"], false);

    let elsewhere = account(&server, "example.com", "A");
    assert_eq!(elsewhere["rule"]["rule"], "refused", "{elsewhere:#}");
    assert_eq!(elsewhere["answer"]["rcode"], "REFUSED");
}

#[test]
fn explain_rejects_questions_that_cannot_be_asked() {
    let (server, _path) = Server::with_registry_file(&web_and_db(&[]), &[]);
    for (query, message) in [
        ("type=A", "name is missing"),
        (&format!("name={}", "a".repeat(300)), "300 bytes"),
        ("name=web.service.consul&type=BOGUS", "unknown type"),
        (&format!("name={}.consul", "a".repeat(70)), "not a DNS name"),
        ("name=a&colour=red", "unknown parameter"),
    ] {
        let (status, body) = explain(&server, query);
        assert_eq!(status, 400, "{query}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(message), "{query}: {error}");
    }
}

#[test]
fn explain_marks_the_instances_self_preservation_holds() {
    let (consul, _dir) = Standin::serving(&web_and_db(&[]), &[]);
    let server = start_syncing(&consul.url(), &["--self-preservation-window", "10m"]);
    crate::assert_eventually!(
        account(&server, "web.service.consul", "A")["instances"]["served"] == 4
    );
    // Three of five served instances failing at once is taken for a fault: held.
    for node in ["n2", "n3", "n4"] {
        consul.control(
            "PUT",
            &format!("/_standin/check?node={node}&check=serfHealth&status=critical&output=Agent+not+live+or+unreachable"),
            "",
        );
    }
    crate::assert_eventually!(
        crate::support::http::health(&server).1["self_preservation"]["held_instances"] == 3
    );
    // Health counts the held instances just before the snapshot that holds them is
    // published: wait for that snapshot.
    crate::assert_eventually!(
        account(&server, "web.service.consul", "A")["answer"]["answer"]
            .as_array()
            .map(Vec::len)
            == Some(4)
    );
    let web = account(&server, "web.service.consul", "A");
    assert_eq!(web["instances"]["served"], 4, "{web:#}");
    assert_eq!(
        strings(&web["answer"]["answer"]),
        (1..=4)
            .map(|i| format!("web.service.consul. 0 IN A 10.1.0.{i}"))
            .collect::<Vec<_>>()
    );
    let held: Vec<&Value> = web["instances"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i.get("held").is_some())
        .collect();
    assert_eq!(held.len(), 3, "{web:#}");
    for instance in held {
        assert_eq!(instance["state"], "served");
        let kinds: Vec<&str> = instance["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["held-by-self-preservation"]);
        let node = instance["node"].as_str().unwrap();
        assert_eq!(
            instance["held"]["registry"],
            format!("check serfHealth on node {node} is critical: Agent not live or unreachable")
        );
    }
}

#[test]
fn explain_cli_prints_a_service_as_text_and_json() {
    let server = server(&["--no-forward"]);
    let http = server.http.unwrap().to_string();
    let run = |args: &[&str]| {
        let output = Command::new(binary())
            .arg("explain")
            .args(args)
            .args(["--http", &http])
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (code, text, stderr) = run(&["web.service.consul"]);
    assert_eq!(code, Some(0), "{stderr}");
    for line in [
        "web.service.consul. A\n",
        "rule:     service (service web, datacenter dc1, zone consul., form plain)\n",
        "answer:   NOERROR\n",
        "    web.service.consul. 30 IN A 10.1.0.1\n",
        "instances: 2 served, 5 left out\n",
        "  left out  web-8080-n2 on n2 (10.1.0.2:8080)\n",
        &format!("            - check service:web-8080-n2 on instance web-8080-n2 is critical: {CRITICAL_OUTPUT}\n"),
        "            - node n3 is in maintenance\n",
        "  served    web-8080-n1 on n1 (10.1.0.1:8080)\n",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert!(text.contains("snapshot: serial "), "{text}");

    let (code, json, _) = run(&["_web._tcp.consul", "SRV", "--json"]);
    assert_eq!(code, Some(0));
    let account: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(account["rule"]["rule"], "rfc2782");

    let (code, _, stderr) = run(&["web.service.consul", "BOGUS"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown type"), "{stderr}");
}
