//! `snapdns check` (issue 14): the summary of a registry file, entries DNS skips (warnings,
//! exit 1 only with --strict), a bad config key and a broken zone file (exit 2), and one
//! request to the Consul stand-in with --connect: ok, ACL denied, no leader, unreachable.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::registry::{entry, web_and_db};
use crate::support::server::{run_to_exit, run_with_output};
use crate::support::standin::Standin;
use crate::support::{free_port, write};

/// A working directory with `registry.json` holding `registry`, and a zones directory holding
/// the shipped example zone.
fn workspace(registry: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "registry.json", &registry.to_string());
    std::fs::create_dir(dir.path().join("zones")).unwrap();
    std::fs::copy(
        crate::support::repo().join("zones/example.zone"),
        dir.path().join("zones/example.zone"),
    )
    .unwrap();
    dir
}

/// `snapdns check` on `dir`'s registry file and zones, with `extra` flags.
fn check_file(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let registry = format!("file:{}", dir.join("registry.json").display());
    let zones = dir.join("zones");
    let mut args = vec![
        "check",
        "--registry",
        registry.as_str(),
        "--zones-dir",
        zones.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_with_output(&args)
}

#[test]
fn check_a_good_registry_file_prints_a_summary_and_exits_0() {
    let mut registry = web_and_db(&["v1"]);
    registry["web"][3] = entry("n4", "10.1.0.4", "web", "", 8080, &["v1"], "critical");
    let dir = workspace(&registry);
    let (code, stdout, stderr) = check_file(dir.path(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("config: ok (flags only): "),
        "{stdout}"
    );
    assert!(
        stdout.contains("registry.json: 2 services, 5 instances, 4 passing, "),
        "{stdout}"
    );
    assert!(stdout.contains(" names served (serial 7)"), "{stdout}");
    // An instance left out for its health is listed with why, but is no warning.
    assert!(
        stdout.contains(
            "  web instance web-8080-n4 on node n4: not served: \
             check service:web-8080-n4 on instance web-8080-n4 is critical"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("zones: ") && stdout.contains("1 zone loaded, 0 broken"),
        "{stdout}"
    );
    assert!(stdout.contains("  example.internal.: "), "{stdout}");
    assert_eq!(lines.last(), Some(&"result: ok"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
    // A registry file source has no state directory to check, and Consul is not mentioned.
    assert!(!stdout.contains("state-dir"), "{stdout}");
}

#[test]
fn check_lists_skipped_entries_as_warnings_and_fails_only_with_strict() {
    let mut registry = web_and_db(&[]);
    registry["web"][1] = entry("bad_node", "10.1.0.2", "web", "", 8080, &[], "passing");
    registry["v1.api"] = json!([entry("a1", "10.3.0.1", "v1.api", "", 9000, &[], "passing")]);
    let dir = workspace(&registry);
    let (code, stdout, _) = check_file(dir.path(), &[]);
    assert_eq!(code, 0, "{stdout}");
    for line in [
        "  warning: skipped: node name is not a DNS label: 1 (e.g. \"bad_node\")",
        "  warning: skipped: service name is not a DNS label: 1 (e.g. \"v1.api\")",
        "  v1.api instance v1.api-9000-a1 on node a1: not served: \
         service name \"v1.api\" is not a DNS label",
        "  web instance web-8080-bad_node on node bad_node: served; \
         node name \"bad_node\" is not a DNS label",
        "result: 2 warnings",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in\n{stdout}"
        );
    }
    let (code, strict, _) = check_file(dir.path(), &["--strict"]);
    assert_eq!(code, 1, "{strict}");
    assert_eq!(strict, stdout, "--strict changes the exit code only");
}

#[test]
fn check_a_bad_config_key_exits_2_with_the_line_serve_prints() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "snapdns.toml",
        "listen = [\"127.0.0.1:0\"]\nservice-tll = \"5s\"\n",
    );
    let config = config.to_str().unwrap();
    let (code, stdout, stderr) = run_with_output(&["check", "--config", config]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("service-tll: unknown key"), "{stderr}");
    let (_, serve_stderr) = run_to_exit(&["serve", "--config", config]);
    assert_eq!(stderr, serve_stderr, "the same error as serve");
}

#[test]
fn check_a_broken_zone_file_exits_2_naming_file_and_line() {
    let dir = workspace(&web_and_db(&[]));
    let broken = write(
        &dir.path().join("zones"),
        "broken.test.zone",
        "$ORIGIN broken.test.\n$TTL 120\n\
         @ IN SOA ns.broken.test. hostmaster.broken.test. 1 3600 900 604800 30\n\
         ok IN A 10.8.0.1\nbad IN NOSUCHTYPE 10.8.0.2\n",
    );
    let (code, stdout, _) = check_file(dir.path(), &[]);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stdout.contains("zones: ") && stdout.contains("1 zone loaded, 1 broken"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  error: zone file {} line 5: ", broken.display())),
        "{stdout}"
    );
    assert!(stdout.ends_with("result: 1 error\n"), "{stdout}");
}

/// `snapdns check --connect` against `url`, with `extra` flags and an empty zones directory.
fn check_consul(url: &str, extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    let state = dir.path().join("state");
    let mut args = vec![
        "check",
        "--connect",
        "--registry",
        url,
        "--request-timeout",
        "2s",
        "--zones-dir",
        zones.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run_with_output(&args);
    (code, format!("{stdout}{stderr}"))
}

#[test]
fn check_connect_sends_one_request_and_reports_reachability_acl_and_leader() {
    let (consul, dir) = Standin::serving(&web_and_db(&[]), &["--token", "s3cret"]);
    let token = write(dir.path(), "token", "s3cret\n");
    let token = token.to_str().unwrap();
    let url = consul.url();

    // Reachable, readable, a leader: exactly one request, the catalog list.
    consul.control("DELETE", "/_standin/requests", "");
    let (code, out) = check_consul(&url, &["--token-file", token]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "registry: consul {url}: reachable, the token may read the catalog (2 services listed"
        )),
        "{out}"
    );
    assert!(out.contains("  leader known (last contact "), "{out}");
    assert!(
        out.contains("state-dir: ") && out.contains("does not exist yet"),
        "{out}"
    );
    let requests = consul.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["method"], "GET");
    assert_eq!(requests[0]["path"], "/v1/catalog/services");

    // Without --connect nothing is sent.
    consul.control("DELETE", "/_standin/requests", "");
    let dir_flags = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run_with_output(&[
        "check",
        "--registry",
        &url,
        "--zones-dir",
        dir_flags.path().to_str().unwrap(),
        "--state-dir",
        dir_flags.path().join("state").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("not contacted (--connect sends one request)"),
        "{stdout}"
    );
    assert!(consul.requests().is_empty());

    // A wrong token: 403 "ACL not found". No token: Consul's anonymous token under
    // default-deny reads an empty catalog, which the sync takes for a denial too.
    let wrong = write(dir.path(), "wrong", "not-it\n");
    let (code, out) = check_consul(&url, &["--token-file", wrong.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("registry: error: consul "), "{out}");
    assert!(out.contains(": ACL denied: the token"), "{out}");
    assert!(out.contains("403 Forbidden: ACL not found"), "{out}");
    let (code, out) = check_consul(&url, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(": ACL denied: the token"), "{out}");

    // A token without the read permission: 403 "Permission denied".
    consul.fault(&json!({"mode": "status", "status": 403, "body": "Permission denied"}));
    let (code, out) = check_consul(&url, &["--token-file", token]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("403 Forbidden: Permission denied"), "{out}");
    consul.clear_faults();

    // No leader: stale reads (the default) answer with X-Consul-KnownLeader: false, a
    // warning; consistent reads get 500 "No cluster leader", a warning too.
    consul.fault(&json!({"leaderless": true}));
    let (code, out) = check_consul(&url, &["--token-file", token]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("  warning: no known leader (X-Consul-KnownLeader: false, last contact "),
        "{out}"
    );
    let (code, _) = check_consul(&url, &["--token-file", token, "--strict"]);
    assert_eq!(code, 1);
    let (code, out) = check_consul(&url, &["--token-file", token, "--consistent", "--strict"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(": warning: consul ") && out.contains("no cluster leader"),
        "{out}"
    );
    assert!(
        out.contains("500 Internal Server Error: No cluster leader"),
        "{out}"
    );
}

#[test]
fn check_connect_to_a_closed_port_is_an_error() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let (code, out) = check_consul(&url, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("registry: error: consul {url}: unreachable")),
        "{out}"
    );
    assert!(out.contains("registry unreachable"), "{out}");
    assert!(out.contains("result: 1 error"), "{out}");
}
