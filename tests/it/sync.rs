//! Sync from Consul (issue #3): snapdns against the Consul stand-in, through changes, every kind
//! of registry fault, restarts from disk, self-preservation, SOA serials and ACL tokens.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use serde_json::{json, Value};

use crate::assert_eventually;
use crate::support::dns_client::{dig, service_addresses, service_rcode, soa_serial};
use crate::support::http::{health, registry_state};
use crate::support::registry::{entry, web_addresses, web_and_db};
use crate::support::standin::Standin;
use crate::support::sync_settings::{start_syncing, start_syncing_in};
use crate::support::{time_until, write};

mod disk;
mod outages;

#[test]
fn sync_first_sync_serves_the_registry_and_reports_its_cost() {
    let mut registry = web_and_db(&["v1"]);
    for i in 0..30 {
        registry[format!("svc{i:02}")] = json!([entry(
            &format!("m{i}"),
            &format!("10.3.0.{}", i + 1),
            &format!("svc{i:02}"),
            "",
            80,
            &[],
            "passing"
        )]);
    }
    let (consul, _dir) = Standin::serving(&registry, &[]);
    let server = start_syncing(&consul.url(), &[]);
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    assert_eq!(service_addresses(&server, "svc07"), ["10.3.0.8"]);

    let (code, report) = health(&server);
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["registry"]["state"], "ok");
    assert_eq!(report["source"]["kind"], "consul");
    assert_eq!(report["snapshot"]["services"], 32);
    assert_eq!(report["snapshot"]["instances"], 35);
    assert_eq!(report["snapshot"]["index"].as_u64(), Some(consul.index()));
    assert_eq!(report["snapshot"]["origin"], "registry");
    let full = &report["last_full_sync"];
    // Per full sync: the check list, the service list and one request per service.
    assert_eq!(full["requests"], 34, "{full}");
    assert!(
        full["wire_bytes"].as_u64().unwrap() < full["json_bytes"].as_u64().unwrap(),
        "gzip: {full}"
    );
    assert!(report["last_success"].is_string());

    // Wait a little for watches to be held, then check what the registry saw.
    std::thread::sleep(Duration::from_millis(300));
    let requests = consul.requests();
    assert!(requests
        .iter()
        .all(|r| r["headers"]["accept-encoding"] == "gzip"));
    assert!(requests
        .iter()
        .all(|r| r["query"].as_str().unwrap().contains("stale")));
    assert!(requests
        .iter()
        .all(|r| r["query"].as_str().unwrap().contains("dc=dc1")));
    // Blocking queries go to two cluster-wide endpoints only, however many services there are.
    let mut blocking: Vec<&str> = requests
        .iter()
        .filter(|r| r["query"].as_str().unwrap().contains("index="))
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    blocking.sort_unstable();
    blocking.dedup();
    assert_eq!(blocking, ["/v1/catalog/services", "/v1/health/state/any"]);
}

#[test]
fn sync_follows_registrations_deregistrations_and_checks_within_a_second() {
    let (consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    // A long resync interval: only the watches can explain changes seen within a second.
    let server = start_syncing(&consul.url(), &["--sync-interval", "60s"]);
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    let mut worst = Duration::ZERO;

    let mut web: Vec<Value> = web_and_db(&["v1"])["web"].as_array().unwrap().clone();
    web.push(entry("n5", "10.1.0.5", "web", "", 8080, &["v1"], "passing"));
    consul.put_service("web", &Value::Array(web));
    worst = worst.max(time_until("a new instance is served", || {
        service_addresses(&server, "web").contains(&"10.1.0.5".into())
    }));

    consul.put_service(
        "cache",
        &json!([entry("c1", "10.4.0.1", "cache", "", 6379, &[], "passing")]),
    );
    worst = worst.max(time_until("a new service is served", || {
        service_addresses(&server, "cache") == ["10.4.0.1"]
    }));

    consul.set_check("n2", "service:web-8080-n2", "critical");
    worst = worst.max(time_until("a critical instance is dropped", || {
        !service_addresses(&server, "web").contains(&"10.1.0.2".into())
    }));
    consul.set_check("n2", "service:web-8080-n2", "passing");
    worst = worst.max(time_until("a recovered instance is back", || {
        service_addresses(&server, "web").contains(&"10.1.0.2".into())
    }));

    // A node check (serfHealth) going critical drops every instance on that node.
    consul.set_check("d1", "serfHealth", "critical");
    worst = worst.max(time_until("a failed node is dropped", || {
        service_rcode(&server, "db") == ResponseCode::NXDomain
    }));

    consul.delete_service("cache");
    worst = worst.max(time_until("a deregistered service is gone", || {
        service_rcode(&server, "cache") == ResponseCode::NXDomain
    }));
    // With a 60 s full resync, every change above can only have come through the blocking
    // queries; how long it took is reported, not asserted (speed is measured in benchmarks).
    eprintln!("slowest change seen in DNS after {worst:?}");
    assert_eq!(health(&server).1["last_full_sync"]["kind"], "full");
    assert!(
        health(&server).1["totals"]["change_syncs"]
            .as_u64()
            .unwrap()
            >= 5
    );
}

#[test]
fn sync_soa_serial_follows_the_registry_index_on_every_replica() {
    let (consul, _dir) = Standin::serving(&web_and_db(&["v1"]), &[]);
    let replicas = [
        start_syncing(&consul.url(), &[]),
        start_syncing(&consul.url(), &[]),
    ];
    let index = consul.index() as u32;
    for server in &replicas {
        assert_eventually!(soa_serial(server.addr) == Some(index));
    }
    consul.set_check("n3", "service:web-8080-n3", "critical");
    let index = consul.index() as u32;
    for server in &replicas {
        assert_eventually!(
            soa_serial(server.addr) == Some(index),
            "serial {:?}, registry {index}",
            soa_serial(server.addr)
        );
    }
    let dig = dig(&[
        "+short",
        "-p",
        &replicas[0].addr.port().to_string(),
        "@127.0.0.1",
        "SOA",
        "consul.",
    ]);
    assert!(dig.contains(&format!(" {index} ")), "{dig}");
}

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

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=snapdns test CA",
        ],
    ]
    .concat());
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let ext = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext),
            format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
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

#[test]
fn sync_without_registry_or_disk_is_503_until_the_first_sync() {
    // A port with nothing listening on it yet; the stand-in starts there later. The socket is
    // bound but not listening, so connections are refused and no other test can take the port.
    let reserved =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    reserved.bind(&any.into()).unwrap();
    let port = reserved.local_addr().unwrap().as_socket().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let server = start_syncing_in(Arc::new(tempfile::tempdir().unwrap()), &url, &[]);
    assert_eq!(service_rcode(&server, "web"), ResponseCode::ServFail);
    let (code, report) = health(&server);
    assert_eq!(code, 503, "{report}");
    assert_eq!(report["status"], "unavailable");
    assert_eventually!(registry_state(&server) == "unreachable");

    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "registry.json",
        &web_and_db(&["v1"]).to_string(),
    );
    drop(reserved);
    let _consul = Standin::start_on(port, &path, &[]);
    assert_eventually!(service_addresses(&server, "web") == web_addresses());
    assert_eq!(health(&server).0, 200);
}
