//! The status page at `/`: rendered by Debian's Chromium (headless) from the real server, its
//! DOM read back (identity, serial, services with passing / total, why an instance is not
//! served, the change log) before and after a registry change; and over plain HTTP, escaping of
//! registry strings and the page's methods.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::browser::{self, table_rows};
use crate::support::http::{get, health, request};
use crate::support::registry::{entry, replace_registry_file};
use crate::support::server::Server;
use crate::support::{eventually, repo};

/// web: two of three instances passing; db: one passing; cache: both instances critical;
/// queue: one of three warning (not served without `--serve-warning`).
fn registry() -> Value {
    json!({
        "queue": [
            entry("q1", "10.5.0.1", "queue", "", 5672, &[], "passing"),
            entry("q2", "10.5.0.2", "queue", "", 5672, &[], "passing"),
            entry("q3", "10.5.0.3", "queue", "", 5672, &[], "warning"),
        ],
        "web": [
            entry("n1", "10.1.0.1", "web", "", 8080, &[], "passing"),
            entry("n2", "10.1.0.2", "web", "", 8080, &[], "passing"),
            entry("n3", "10.1.0.3", "web", "", 8080, &[], "critical"),
        ],
        "db": [entry("d1", "10.2.0.1", "db", "", 5432, &[], "passing")],
        "cache": [
            entry("c1", "10.3.0.1", "cache", "", 6379, &[], "critical"),
            entry("c2", "10.3.0.2", "cache", "", 6379, &[], "critical"),
        ],
    })
}

/// The registry after the change: web's n3 passes again, db is gone, api is new. As in
/// Consul, what changed has a higher modify index (and so the zone a new serial).
fn changed_registry() -> Value {
    let mut registry = registry();
    let mut n3 = entry("n3", "10.1.0.3", "web", "", 8080, &[], "passing");
    n3["Checks"][1]["ModifyIndex"] = json!(20);
    registry["web"][2] = n3;
    let mut api = entry("a1", "10.4.0.1", "api", "", 9000, &[], "passing");
    api["Service"]["ModifyIndex"] = json!(21);
    let map = registry.as_object_mut().unwrap();
    map.remove("db");
    map.insert("api".into(), json!([api]));
    registry
}

/// The serial `/health` reports for the served snapshot.
fn serial(server: &Server) -> u64 {
    health(server).1["snapshot"]["serial"]
        .as_u64()
        .expect("health reports the snapshot serial")
}

/// The value cell of the row labelled `label` in the `kv` table of section `id`.
fn summary(dom: &str, id: &str, label: &str) -> String {
    let section = &dom[dom.find(&format!("<section id=\"{id}\"")).expect(id)..];
    table_rows(section, "kv")
        .into_iter()
        .find(|row| row.first().is_some_and(|l| l == label))
        .and_then(|row| row.get(1).cloned())
        .unwrap_or_else(|| panic!("no {label} in section {id}"))
}

/// (service, passing / total, not served and why) of the services table.
fn services(dom: &str) -> Vec<(String, String, String)> {
    table_rows(dom, "services")
        .into_iter()
        .skip(1) // the header row
        .map(|row| (row[0].clone(), row[1].clone(), row[2].clone()))
        .collect()
}

/// (service, change) of the change log, newest first.
fn changes(dom: &str) -> Vec<(String, String)> {
    table_rows(dom, "changes")
        .into_iter()
        .skip(1)
        .map(|row| (row[1].clone(), row[2].clone()))
        .collect()
}

fn strings(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[test]
fn chromium_shows_the_services_and_follows_a_registry_change() {
    let (server, path) =
        Server::with_registry_file(&registry(), &["--identity", "status-replica-1"]);
    let http: SocketAddr = server.http.expect("http address");
    let url = format!("http://{http}/");
    let first_serial = serial(&server);

    let dom = browser::dump_dom(&url);
    assert!(
        dom.contains("<h1>snapdns on status-replica-1</h1>"),
        "{dom}"
    );
    assert_eq!(summary(&dom, "replica", "Identity"), "status-replica-1");
    assert_eq!(
        summary(&dom, "snapshot", "Serial"),
        first_serial.to_string()
    );
    assert!(summary(&dom, "registry", "Source").starts_with("file "));
    assert_eq!(
        services(&dom),
        strings(&[
            (
                "cache",
                "0 / 2",
                "cache-6379-c1 on c1: check service:cache-6379-c1 on instance cache-6379-c1 is critical; \
                 cache-6379-c2 on c2: check service:cache-6379-c2 on instance cache-6379-c2 is critical"
            ),
            (
                "queue",
                "2 / 3",
                "queue-5672-q3 on q3: check service:queue-5672-q3 on instance queue-5672-q3 is warning"
            ),
            (
                "web",
                "2 / 3",
                "web-8080-n3 on n3: check service:web-8080-n3 on instance web-8080-n3 is critical"
            ),
            ("db", "1 / 1", ""),
        ]),
        "failing services first, each instance not served with its reason"
    );
    assert_eq!(
        changes(&dom),
        vec![(
            "(4 services)".to_string(),
            "first state served: 9 instances, 5 passing".to_string()
        )]
    );

    replace_registry_file(&path, &changed_registry());
    assert!(
        eventually(Duration::from_secs(10), || serial(&server) != first_serial),
        "the changed registry file was never served:\n{}",
        server.log()
    );
    let new_serial = serial(&server);
    let dom = browser::dump_dom(&url);
    assert_eq!(summary(&dom, "snapshot", "Serial"), new_serial.to_string());
    assert_eq!(
        services(&dom),
        strings(&[
            (
                "cache",
                "0 / 2",
                "cache-6379-c1 on c1: check service:cache-6379-c1 on instance cache-6379-c1 is critical; \
                 cache-6379-c2 on c2: check service:cache-6379-c2 on instance cache-6379-c2 is critical"
            ),
            (
                "queue",
                "2 / 3",
                "queue-5672-q3 on q3: check service:queue-5672-q3 on instance queue-5672-q3 is warning"
            ),
            ("api", "1 / 1", ""),
            ("web", "3 / 3", ""),
        ])
    );
    let log = changes(&dom);
    assert_eq!(
        log[..3],
        [
            ("web".into(), "instances 3 -> 3, passing 2 -> 3".into()),
            ("db".into(), "removed: had 1 instance, 1 passing".into()),
            ("api".into(), "added: 1 instance, 1 passing".into()),
        ],
        "the newest publish first, its services in name order reversed: {log:?}"
    );
    assert_eq!(log.len(), 4, "{log:?}");

    // The screenshot in docs/ comes from here: SNAPDNS_WRITE_SCREENSHOT=1 writes it there,
    // otherwise it goes to a temporary directory, which checks that taking it works.
    let scratch = tempfile::tempdir().expect("tempdir");
    let target = if std::env::var_os("SNAPDNS_WRITE_SCREENSHOT").is_some_and(|v| v == "1") {
        repo().join("docs/status-page.png")
    } else {
        scratch.path().join("status-page.png")
    };
    let _ = std::fs::remove_file(&target);
    browser::screenshot(&url, &target, 1200, 1100);
    let png = std::fs::read(&target).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
}

#[test]
fn registry_strings_are_escaped_and_the_page_answers_only_get_and_head() {
    let hostile = "<script>alert(1)</script>";
    let mut web = entry("n1", "10.1.0.1", "web", "", 8080, &[], "critical");
    web["Node"]["Node"] = json!(format!("node{hostile}"));
    web["Checks"][1]["CheckID"] = json!(format!("check{hostile}"));
    let mut other = entry("n2", "10.1.0.2", hostile, "", 8080, &[], "passing");
    other["Service"]["ID"] = json!(format!("id\"'&{hostile}"));
    let registry = json!({ "web": [web], hostile: [other] });
    let (server, _path) = Server::with_registry_file(&registry, &["--identity", hostile]);
    let http = server.http.expect("http address");

    let page = get(http, "/");
    assert_eq!(page.status, 200);
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert!(
        !page.body.contains("<script"),
        "a registry string reached the page unescaped:\n{}",
        page.body
    );
    for escaped in [
        "snapdns on &lt;script&gt;alert(1)&lt;/script&gt;", // the identity
        "<th scope=\"row\">&lt;script&gt;alert(1)&lt;/script&gt;</th>", // a service
        "on node&lt;script&gt;alert(1)&lt;/script&gt;",     // a node, in a reason
        "check check&lt;script&gt;alert(1)&lt;/script&gt; on", // a check ID
    ] {
        assert!(
            page.body.contains(escaped),
            "no {escaped:?} in:\n{}",
            page.body
        );
    }
    assert!(!page.body.contains("http-equiv=\"refresh\""));

    let refreshing = get(http, "/?refresh=5");
    assert!(refreshing
        .body
        .contains("<meta http-equiv=\"refresh\" content=\"5\">"));
    for bad in ["/?refresh=0", "/?refresh=abc", "/?refresh=99999"] {
        assert!(!get(http, bad).body.contains("http-equiv"), "{bad}");
    }

    let head = request(http, "HEAD", "/", "").expect("HEAD /");
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(head.content_type, "text/html; charset=utf-8");
    for method in ["POST", "PUT", "DELETE"] {
        let response = request(http, method, "/", "").expect("request");
        assert_eq!(response.status, 405, "{method} /");
    }
    let missing = get(http, "/index.html");
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("try /, /health or /metrics"));
}
