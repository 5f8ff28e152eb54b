//! The stand-in over loopback: per-service indexes and wakeups, headers, gzip, the
//! per-client connection limit, ACLs, and h2 over TLS.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::thread;

use support::{exchange, get, index_of, put, read_response, wait_until_blocked, Standin};

#[test]
fn blocking_on_one_service_is_not_woken_by_another() {
    let s = Standin::start(&["--generate", "20,3,3"]);
    let start = index_of(&s, "/v1/health/service/svc-00001");
    assert_eq!(start, 10, "every index starts at --initial-index");
    let addr = s.addr;
    let blocked = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        exchange(
            &mut stream,
            "GET",
            &format!("/v1/health/service/svc-00001?index={start}&wait=60s"),
            "",
        )
    });
    wait_until_blocked(&s, "/v1/health/service/svc-00001");

    let other = put(
        &s,
        "/_standin/flip?service=svc-00002&instance=0&status=critical",
    );
    assert_eq!(index_of(&s, "/v1/health/service/svc-00002"), other);
    assert_eq!(
        index_of(&s, "/v1/health/service/svc-00001"),
        start,
        "another service's change leaves this index"
    );
    assert_eq!(index_of(&s, "/v1/health/service/svc-00003"), start);
    assert_eq!(
        index_of(&s, "/v1/health/state/any"),
        other,
        "the checks table moved"
    );
    assert_eq!(
        index_of(&s, "/v1/catalog/services"),
        start,
        "a check change is not a catalog change"
    );

    let own = put(&s, "/_standin/move?service=svc-00001&instance=1&port=9999");
    let answer = blocked.join().expect("blocked query");
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("X-Consul-Index"),
        Some(own.to_string().as_str()),
        "woken by its own change only"
    );
    let entries: serde_json::Value = serde_json::from_slice(&answer.body).expect("json");
    assert!(entries
        .as_array()
        .expect("array")
        .iter()
        .any(|e| e["Service"]["Port"] == 9999));
    assert_eq!(
        index_of(&s, "/v1/catalog/services"),
        own,
        "an instance change moves the services table"
    );
}

#[test]
fn a_node_check_flip_wakes_every_service_on_that_node() {
    // 8 services x 2 instances on 4 nodes: node-000000 hosts svc-00000, 2, 4 and 6.
    let s = Standin::start(&["--generate", "8,2,2"]);
    let addr = s.addr;
    let blocked = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        exchange(
            &mut stream,
            "GET",
            "/v1/health/service/svc-00002?index=10&wait=60s",
            "",
        )
    });
    wait_until_blocked(&s, "/v1/health/service/svc-00002");

    let idx = put(
        &s,
        "/_standin/check?node=node-000000&check=serfHealth&status=critical",
    );
    let answer = blocked.join().expect("blocked query");
    assert_eq!(
        answer.header("X-Consul-Index"),
        Some(idx.to_string().as_str())
    );
    for svc in ["svc-00000", "svc-00004", "svc-00006"] {
        assert_eq!(
            index_of(&s, &format!("/v1/health/service/{svc}")),
            idx,
            "{svc} is on node-000000"
        );
    }
    assert_eq!(
        index_of(&s, "/v1/health/service/svc-00001"),
        10,
        "svc-00001 is not on node-000000"
    );

    let passing: serde_json::Value =
        serde_json::from_slice(&get(&s, "/v1/health/service/svc-00002?passing", "").body)
            .expect("json");
    assert_eq!(
        passing.as_array().expect("array").len(),
        1,
        "the instance on node-000000 is filtered out"
    );
    let critical: serde_json::Value =
        serde_json::from_slice(&get(&s, "/v1/health/state/critical", "").body).expect("json");
    let critical = critical.as_array().expect("array");
    assert_eq!(critical.len(), 1);
    assert_eq!(critical[0]["CheckID"], "serfHealth");
    assert_eq!(critical[0]["ModifyIndex"], idx);
}

#[test]
fn headers_follow_consul() {
    let s = Standin::start(&["--generate", "3,2,2", "--initial-index", "0"]);
    let r = get(&s, "/v1/health/service/svc-00000?stale", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Consul-Index"), Some("1"), "never 0");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("X-Consul-Effective-Consistency"), Some("stale"));
    assert_eq!(r.header("X-Consul-Query-Backend"), Some("blocking-query"));
    assert_eq!(r.header("X-Consul-Default-Acl-Policy"), Some("allow"));
    // Go's canonical casing on the wire.
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "X-Consul-Knownleader" && v == "true"));
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "X-Consul-Lastcontact" && v == "0"));
    let unknown = get(&s, "/v1/health/service/nope", "");
    assert_eq!(unknown.body, b"[]");
    assert_eq!(
        get(&s, "/v1/health/service/svc-00000?stale&consistent", "").status,
        400
    );
    assert_eq!(
        get(&s, "/v1/health/service/svc-00000?wait=5", "").status,
        400
    );
    assert_eq!(get(&s, "/v1/catalog/services?dc=nowhere", "").status, 500);
    assert_eq!(get(&s, "/v1/status/leader", "").body, b"\"127.0.0.1:8300\"");
}

#[test]
fn acl_tokens() {
    let s = Standin::start(&["--generate", "3,2,2", "--token", "s3cret"]);
    let wrong = get(&s, "/v1/catalog/services", "X-Consul-Token: nope\r\n");
    assert_eq!(
        (wrong.status, wrong.body.as_slice()),
        (403, &b"ACL not found"[..])
    );
    assert_eq!(get(&s, "/v1/catalog/services?token=s3cret", "").status, 200);
    let bearer = get(
        &s,
        "/v1/health/service/svc-00000",
        "Authorization: Bearer s3cret\r\n",
    );
    assert_eq!(bearer.status, 200);
    assert_eq!(bearer.header("X-Consul-Default-Acl-Policy"), Some("deny"));
    assert_eq!(
        get(&s, "/v1/catalog/services", "").body,
        b"{}",
        "anonymous sees nothing"
    );
}

#[test]
fn large_bodies_are_gzipped_when_accepted() {
    let s = Standin::start(&["--generate", "200,2,2"]);
    let plain = get(&s, "/v1/catalog/services", "");
    assert_eq!(plain.header("Content-Encoding"), None);
    assert!(plain.body.len() >= 1400);
    let zipped = get(&s, "/v1/catalog/services", "Accept-Encoding: gzip\r\n");
    assert_eq!(zipped.header("Content-Encoding"), Some("gzip"));
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(zipped.body.as_slice())
        .read_to_end(&mut unzipped)
        .expect("gzip");
    assert_eq!(unzipped, plain.body);
    let small = get(&s, "/v1/health/service/nope", "Accept-Encoding: gzip\r\n");
    assert_eq!(small.body, b"[]");
    assert_eq!(
        small.header("Content-Encoding"),
        None,
        "below --gzip-min-size"
    );

    let stats: serde_json::Value =
        serde_json::from_slice(&get(&s, "/_standin/stats", "").body).expect("json");
    assert_eq!(stats["requests"], 3);
    let sent = plain.body.len() + zipped.body.len() + small.body.len();
    assert_eq!(stats["wire_bytes"], sent as u64, "bytes after gzip");
}

#[test]
fn connections_over_the_per_client_limit_get_429() {
    let s = Standin::start(&["--http-max-conns-per-client", "2"]);
    let mut first = TcpStream::connect(s.addr).expect("connect");
    let mut second = TcpStream::connect(s.addr).expect("connect");
    // An answer on each proves both are counted.
    assert_eq!(
        exchange(&mut first, "GET", "/v1/status/leader", "").status,
        200
    );
    assert_eq!(
        exchange(&mut second, "GET", "/v1/status/leader", "").status,
        200
    );

    let mut third = TcpStream::connect(s.addr).expect("connect");
    let refused = read_response(&mut third);
    assert_eq!(refused.status, 429);
    assert!(String::from_utf8_lossy(&refused.body).contains("too many concurrent connections"));

    let conns = exchange(&mut first, "GET", "/_standin/connections", "");
    let conns: serde_json::Value = serde_json::from_slice(&conns.body).expect("json");
    assert_eq!(conns["open"], 2);
    assert_eq!(conns["refused"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_negotiates_h2_and_http1() {
    let dir = std::env::temp_dir().join(format!("consul-standin-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        // Not a CA: webpki refuses a CA certificate as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    let s = Standin::start(&[
        "--generate",
        "3,2,2",
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).expect("cert")).expect("pem");
    let url = format!("https://{}/v1/health/service/svc-00000", s.addr);

    let h2 = reqwest::Client::builder()
        .tls_certs_only([ca.clone()])
        .build()
        .expect("client");
    let resp = h2.get(&url).send().await.expect("h2 request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.headers()["x-consul-index"], "10");

    let h1 = reqwest::Client::builder()
        .tls_certs_only([ca])
        .http1_only()
        .build()
        .expect("client");
    let resp = h1.get(&url).send().await.expect("http/1.1 request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
    let _ = std::fs::remove_dir_all(&dir);
}
