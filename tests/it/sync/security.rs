//! Talking to a secured registry: an ACL token sent (never logged, a revoked one reported),
//! HTTPS with a CA file and a client certificate.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;

use crate::assert_eventually;
use crate::support::certs::make_certs;
use crate::support::dns_client::{service_addresses, service_rcode};
use crate::support::http::{health, registry_state};
use crate::support::registry::{web_addresses, web_and_db};
use crate::support::standin::Standin;
use crate::support::sync_settings::{start_syncing, start_syncing_in};

#[test]
fn sync_acl_token_is_sent_and_never_logged() {
    let token = "7f9b3c2e-secret-acl-token-5d1a";
    let (consul, dir) = Standin::serving(&web_and_db(&["v1"]), &["--token", token]);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let server = start_syncing(
        &consul.url(),
        &["--token-file", token_file.to_str().unwrap()],
    );
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    let requests = consul.requests();
    assert!(!requests.is_empty());
    assert!(requests
        .iter()
        .all(|r| r["headers"]["x-consul-token"] == token));
    assert!(requests
        .iter()
        .all(|r| !r["query"].as_str().unwrap().contains(token)));

    // The token is revoked: 403 ACL not found; DNS keeps answering.
    consul.control("PUT", "/_standin/token", "another-token");
    assert_eventually!(
        registry_state(&server) == "acl_denied",
        "{}",
        health(&server).1
    );
    assert_eq!(service_addresses(&server, "web"), web_addresses());
    let (_, report) = health(&server);
    assert!(!report.to_string().contains(token));
    assert!(server.log().contains("DEBUG"), "the log is at debug level");
    assert!(
        !server.log().contains(token),
        "the token leaked into the log"
    );
}

#[test]
fn sync_https_with_ca_file_and_client_certificate() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let file = |name: &str| certs.path().join(name).to_str().unwrap().to_string();
    let (consul, _dir) = Standin::serving(
        &web_and_db(&["v1"]),
        &[
            "--tls-cert",
            &file("server.pem"),
            "--tls-key",
            &file("server.key"),
            "--client-ca",
            &file("ca.pem"),
        ],
    );
    let url = format!("https://{}", consul.addr);
    let tls = [
        "--ca-file",
        &file("ca.pem"),
        "--client-cert",
        &file("client.pem"),
        "--client-key",
        &file("client.key"),
    ];
    let server = start_syncing_in(Arc::new(tempfile::tempdir().unwrap()), &url, &tls);
    assert_eventually!(
        service_addresses(&server, "web") == web_addresses(),
        "{}",
        server.log()
    );
    assert_eq!(health(&server).1["source"]["url"], url);

    // Without the client certificate the handshake fails: reported, never a crash.
    let anonymous = start_syncing_in(Arc::new(tempfile::tempdir().unwrap()), &url, &tls[..2]);
    assert_eventually!(
        registry_state(&anonymous) == "unreachable",
        "{}",
        health(&anonymous).1
    );
    assert_eq!(service_rcode(&anonymous, "web"), ResponseCode::ServFail);
}

/// A password in the registry URL is never printed: not in the start-up line, not in
/// `/health`, not in the error logged when the registry goes away (issue 10, item 9).
#[test]
fn sync_password_in_the_registry_url_is_redacted() {
    let secret = "hunter2-url-secret";
    let (mut consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let url = consul
        .url()
        .replacen("http://", &format!("http://snapdns:{secret}@"), 1);
    let server = start_syncing(&url, &[]);
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    let (_, report) = health(&server);
    assert_eq!(
        report["source"]["url"],
        consul.url().replacen("http://", "http://***@", 1),
        "{report:#}"
    );
    assert!(server.log().contains("registry sync started"));

    consul.stop();
    assert_eventually!(
        registry_state(&server) == "unreachable",
        "{}",
        health(&server).1
    );
    assert!(!health(&server).1.to_string().contains(secret));
    assert!(
        !server.log().contains(secret),
        "the password leaked into the log: {}",
        server.log()
    );
}
