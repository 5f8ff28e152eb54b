//! Operating snapdns (issue #5): `/metrics` over real HTTP, SIGHUP reloads of the config file
//! and static zones under query load, SIGTERM draining an in-flight query, JSON-lines logs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use serde_json::{json, Value};

use crate::assert_eventually;
use crate::registry_fixture::{db_entry, entry, web_entries};
use crate::support::{self, eventually, rdata, sorted_rdata, tcp, udp, write, Server};
use crate::sync::standin::Standin;

/// One HTTP/1.1 GET with `Connection: close`: (status, Content-Type, body).
pub fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("response");
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// snapdns's `/metrics` body (asserting 200 and the OpenMetrics content type).
pub fn scrape(server: &Server) -> String {
    let (status, content_type, body) = get(server.http.expect("http address"), "/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    body
}

/// The value of one sample, `name` or `name{labels}` exactly as exposed.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// [`sample`] of a fresh scrape.
pub fn metric(server: &Server, series: &str) -> Option<f64> {
    sample(&scrape(server), series)
}

fn demo_registry() -> String {
    format!(
        "file:{}",
        support::repo().join("zones/demo.registry.json").display()
    )
}

/// Every family `/metrics` announces, as `# TYPE` lines.
const FAMILIES: [&str; 36] = [
    "snapdns_queries counter",
    "snapdns_queries_ignored counter",
    "snapdns_answer_duration_seconds histogram",
    "snapdns_forwarded_queries counter",
    "snapdns_cache_hits counter",
    "snapdns_cache_misses counter",
    "snapdns_upstream_failures counter",
    "snapdns_snapshot_age_seconds gauge",
    "snapdns_snapshot_index gauge",
    "snapdns_snapshot_serial gauge",
    "snapdns_snapshot_origin gauge",
    "snapdns_services gauge",
    "snapdns_instances gauge",
    "snapdns_instances_passing gauge",
    "snapdns_sync counter",
    "snapdns_sync_errors counter",
    "snapdns_sync_duration_seconds gauge",
    "snapdns_full_sync_duration_seconds gauge",
    "snapdns_last_sync_success_seconds gauge",
    "snapdns_registry_requests counter",
    "snapdns_registry_bytes counter",
    "snapdns_registry_decoded_bytes counter",
    "snapdns_registry_up gauge",
    "snapdns_self_preservation_active gauge",
    "snapdns_self_preservation_held_instances gauge",
    "snapdns_self_preservation_episodes counter",
    "snapdns_persist_ok gauge",
    "snapdns_persist_last_success_seconds gauge",
    "snapdns_config_reloads counter",
    "snapdns_config_reload_failures counter",
    "snapdns_config_last_reload_successful gauge",
    "snapdns_start_time_seconds gauge",
    "snapdns_build_info gauge",
    // Samples, not families, that must be there from the start.
    "snapdns_answer_duration_seconds_bucket{le=\"+Inf\"}",
    "snapdns_sync_total{kind=\"full\"}",
    "snapdns_sync_total{kind=\"changes\"}",
];

#[test]
fn metrics_count_queries_by_type_and_rcode_and_describe_the_snapshot() {
    let server = Server::start(&["--registry", &demo_registry()]);
    for _ in 0..3 {
        let reply = udp(server.addr, "web.service.consul.", RecordType::A);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    }
    let nx = udp(server.addr, "nosuch.service.consul.", RecordType::A);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    let srv = tcp(server.addr, "web.service.consul.", RecordType::SRV);
    assert_eq!(srv.metadata.response_code, ResponseCode::NoError);
    // Not served here and nothing to forward to: REFUSED.
    let refused = udp(server.addr, "example.org.", RecordType::AAAA);
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);

    let text = scrape(&server);
    for family in FAMILIES {
        if family.contains(' ') {
            assert!(
                text.contains(&format!("# TYPE {family}\n")),
                "no {family}:\n{text}"
            );
            let name = family.split(' ').next().unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "no HELP {name}");
        } else {
            assert!(sample(&text, family).is_some(), "no {family}:\n{text}");
        }
    }
    assert!(text.ends_with("# EOF\n"));
    let count = |series: &str| sample(&text, series);
    assert_eq!(
        count("snapdns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}"),
        Some(3.0)
    );
    assert_eq!(
        count("snapdns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"}"),
        Some(1.0)
    );
    assert_eq!(
        count("snapdns_queries_total{qtype=\"SRV\",rcode=\"NOERROR\"}"),
        Some(1.0),
        "TCP answers are counted too"
    );
    assert_eq!(
        count("snapdns_queries_total{qtype=\"AAAA\",rcode=\"REFUSED\"}"),
        Some(1.0)
    );
    let queries: usize = text
        .lines()
        .filter(|l| l.starts_with("snapdns_queries_total{"))
        .count();
    assert_eq!(queries, 4, "only the combinations seen:\n{text}");
    assert_eq!(count("snapdns_answer_duration_seconds_count"), Some(6.0));
    assert_eq!(
        count("snapdns_answer_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(6.0)
    );
    let sum = count("snapdns_answer_duration_seconds_sum").unwrap();
    assert!(sum > 0.0 && sum < 6.0, "{sum}");
    assert_eq!(count("snapdns_forwarded_queries_total"), Some(0.0));
    assert_eq!(count("snapdns_cache_hits_total"), Some(0.0));

    // The demo registry: 6 services, 13 instances, 9 of them passing.
    assert_eq!(count("snapdns_services"), Some(6.0));
    assert_eq!(count("snapdns_instances"), Some(13.0));
    assert_eq!(count("snapdns_instances_passing"), Some(9.0));
    assert_eq!(count("snapdns_snapshot_origin{origin=\"file\"}"), Some(1.0));
    assert_eq!(count("snapdns_registry_up"), Some(1.0));
    assert_eq!(count("snapdns_self_preservation_active"), Some(0.0));
    let soa = udp(server.addr, "consul.", RecordType::SOA);
    let serial = soa.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(f64::from(soa.serial)),
        _ => None,
    });
    assert_eq!(count("snapdns_snapshot_serial"), serial);
    let age = count("snapdns_snapshot_age_seconds").unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    let started = count("snapdns_start_time_seconds").unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(started <= now && started > now - 60.0);

    // The next scrape sees the SOA query and nothing else new.
    let again = scrape(&server);
    assert_eq!(
        sample(
            &again,
            "snapdns_queries_total{qtype=\"SOA\",rcode=\"NOERROR\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&again, "snapdns_answer_duration_seconds_count"),
        Some(7.0)
    );
    // /health still works beside it; other paths are 404.
    assert_eq!(get(server.http.unwrap(), "/health").0, 200);
    assert_eq!(get(server.http.unwrap(), "/nothing").0, 404);
}

/// A UDP upstream on loopback answering every A question with 192.0.2.1 (TTL 300). With
/// `hold`, it answers a name only once [`Upstream::release`] has named it.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    released: Arc<Mutex<Vec<String>>>,
    hold: bool,
    asked: Arc<AtomicUsize>,
    names: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    fn start(hold: bool) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let released: Arc<Mutex<Vec<String>>> = Arc::default();
        let asked = Arc::new(AtomicUsize::new(0));
        let names: Arc<Mutex<Vec<String>>> = Arc::default();
        let (flag, go, count, seen) =
            (stop.clone(), released.clone(), asked.clone(), names.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut pending: Vec<(Message, SocketAddr)> = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok((len, peer)) = socket.recv_from(&mut buf) {
                    if let Ok(query) = Message::from_vec(&buf[..len]) {
                        count.fetch_add(1, Ordering::Relaxed);
                        seen.lock()
                            .unwrap()
                            .push(query.queries[0].name().to_string());
                        pending.push((query, peer));
                    }
                }
                let go = go.lock().unwrap().clone();
                let (ready, held): (Vec<_>, Vec<_>) = std::mem::take(&mut pending)
                    .into_iter()
                    .partition(|(query, _)| {
                        !hold || go.contains(&query.queries[0].name().to_string())
                    });
                pending = held;
                for (query, peer) in ready {
                    let mut reply = Message::new(
                        query.metadata.id,
                        MessageType::Response,
                        query.metadata.op_code,
                    );
                    reply.metadata.recursion_desired = true;
                    reply.metadata.recursion_available = true;
                    reply.add_query(query.queries[0].clone());
                    reply.add_answer(Record::from_rdata(
                        query.queries[0].name().clone(),
                        300,
                        RData::A(A::new(192, 0, 2, 1)),
                    ));
                    let _ = socket.send_to(&reply.to_vec().unwrap(), peer);
                }
            }
        });
        Self {
            addr,
            stop,
            released,
            hold,
            asked,
            names,
        }
    }

    /// Answers `name` from now on, held queries for it included.
    fn release(&self, name: &str) {
        assert!(self.hold);
        self.released.lock().unwrap().push(name.to_string());
    }

    /// Whether `name` was asked.
    fn was_asked(&self, name: &str) -> bool {
        self.names.lock().unwrap().iter().any(|n| n == name)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn metrics_count_forwarded_queries_cache_hits_and_misses() {
    let upstream = Upstream::start(false);
    let server = Server::start(&["--upstream", &upstream.addr.to_string()]);
    for _ in 0..3 {
        let reply = udp(server.addr, "www.example.test.", RecordType::A);
        assert_eq!(rdata(&reply.answers), ["192.0.2.1"]);
    }
    let other = tcp(server.addr, "mail.example.test.", RecordType::A);
    assert_eq!(rdata(&other.answers), ["192.0.2.1"]);
    assert_eq!(upstream.asked.load(Ordering::Relaxed), 2);

    let text = scrape(&server);
    assert_eq!(sample(&text, "snapdns_forwarded_queries_total"), Some(4.0));
    assert_eq!(sample(&text, "snapdns_cache_misses_total"), Some(2.0));
    assert_eq!(sample(&text, "snapdns_cache_hits_total"), Some(2.0));
    assert_eq!(sample(&text, "snapdns_upstream_failures_total"), Some(0.0));
    assert_eq!(
        sample(
            &text,
            "snapdns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}"
        ),
        Some(4.0)
    );
}

/// web: four passing instances (10.1.0.1-4); db: one (10.2.0.1).
fn consul_registry() -> Value {
    json!({ "web": web_entries(4, &[]), "db": [db_entry()] })
}

const FAST_SYNC: [&str; 8] = [
    "--sync-interval",
    "2s",
    "--blocking-wait",
    "1s",
    "--request-timeout",
    "1s",
    "--self-preservation-window",
    "30s",
];

#[test]
fn metrics_follow_the_sync_engine_through_self_preservation_and_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let state = write(dir.path(), "registry.json", &consul_registry().to_string());
    let mut consul = Standin::start(&state, &[]);
    let url = consul.url();
    let mut args = vec!["--registry", url.as_str()];
    args.extend(FAST_SYNC);
    let server = Server::start(&args);
    assert_eventually!(metric(&server, "snapdns_instances_passing") == Some(5.0));

    let text = scrape(&server);
    let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}"));
    assert!(value("snapdns_sync_total{kind=\"full\"}") >= 1.0);
    assert_eq!(value("snapdns_sync_errors_total"), 0.0);
    // At least the two lists and one request per service.
    assert!(value("snapdns_registry_requests_total") >= 4.0, "{text}");
    assert!(value("snapdns_registry_bytes_total") > 0.0);
    assert!(value("snapdns_registry_decoded_bytes_total") >= value("snapdns_registry_bytes_total"));
    let duration = value("snapdns_full_sync_duration_seconds");
    assert!(duration > 0.0 && duration < 5.0, "{duration}");
    assert!(value("snapdns_sync_duration_seconds") > 0.0);
    assert_eq!(value("snapdns_services"), 2.0);
    assert_eq!(value("snapdns_snapshot_index"), consul.index() as f64);
    assert_eq!(value("snapdns_snapshot_origin{origin=\"registry\"}"), 1.0);
    assert_eq!(value("snapdns_registry_up"), 1.0);
    assert_eq!(value("snapdns_self_preservation_active"), 0.0);
    assert!(value("snapdns_snapshot_age_seconds") < 10.0);
    assert_eventually!(metric(&server, "snapdns_persist_ok") == Some(1.0));

    // A change arrives through the watches as a change sync.
    consul.put_service(
        "cache",
        &json!([entry("c1", "10.3.0.1", "cache", "", 6379, &[], "passing")]),
    );
    assert_eventually!(metric(&server, "snapdns_services") == Some(3.0));
    assert!(metric(&server, "snapdns_sync_total{kind=\"changes\"}").unwrap() >= 1.0);

    // Four of six instances vanish at once: held, and shown as self-preservation.
    consul.delete_service("web");
    assert_eventually!(metric(&server, "snapdns_self_preservation_active") == Some(1.0));
    let text = scrape(&server);
    assert_eq!(
        sample(&text, "snapdns_self_preservation_held_instances"),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, "snapdns_self_preservation_episodes_total"),
        Some(1.0)
    );
    assert_eq!(
        sorted_rdata(&udp(server.addr, "web.service.consul.", RecordType::A).answers).len(),
        4
    );

    // The registry goes away: syncs fail, the snapshot ages, DNS keeps answering.
    consul.stop();
    assert_eventually!(metric(&server, "snapdns_registry_up") == Some(0.0));
    assert_eventually!(metric(&server, "snapdns_sync_errors_total").unwrap_or(0.0) >= 1.0);
    let age = metric(&server, "snapdns_snapshot_age_seconds").unwrap();
    assert_eventually!(metric(&server, "snapdns_snapshot_age_seconds").unwrap() > age + 0.5);
    assert_eq!(
        udp(server.addr, "db.service.consul.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NoError
    );
}

const ZONE_V1: &str = "$ORIGIN static.test.\n$TTL 60\n\
    @ IN SOA ns.static.test. hostmaster.static.test. 1 3600 900 604800 30\n\
    @ IN NS ns\n\
    ns IN A 10.9.0.1\n\
    db IN A 10.9.0.5\n";

const ZONE_V2: &str = "$ORIGIN static.test.\n$TTL 60\n\
    @ IN SOA ns.static.test. hostmaster.static.test. 2 3600 900 604800 30\n\
    @ IN NS ns\n\
    ns IN A 10.9.0.1\n\
    db IN A 10.9.0.6\n\
    new IN A 10.9.0.7\n";

/// Line 5 has an unknown record type.
const ZONE_BROKEN: &str = "$ORIGIN static.test.\n$TTL 60\n\
    @ IN SOA ns.static.test. hostmaster.static.test. 3 3600 900 604800 30\n\
    ns IN A 10.9.0.1\n\
    db IN NOSUCHTYPE 10.9.0.8\n";

fn static_a(server: &Server, name: &str) -> (ResponseCode, Vec<String>) {
    let reply = udp(server.addr, name, RecordType::A);
    (reply.metadata.response_code, rdata(&reply.answers))
}

fn ok(addresses: &[&str]) -> (ResponseCode, Vec<String>) {
    (
        ResponseCode::NoError,
        addresses.iter().map(|a| a.to_string()).collect(),
    )
}

#[test]
fn sighup_reloads_zones_and_rejects_a_bad_config_keeping_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    write(&zones, "static.test.zone", ZONE_V1);
    let config = write(
        dir.path(),
        "snapdns.toml",
        "negative-ttl = \"5s\"\nno-forward = true\n",
    );
    let server = Server::start(&[
        "--registry",
        &demo_registry(),
        "--config",
        config.to_str().unwrap(),
        "--zones-dir",
        zones.to_str().unwrap(),
    ]);
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.5"]));

    // A zone edit takes effect on SIGHUP.
    write(&zones, "static.test.zone", ZONE_V2);
    server.signal("HUP");
    assert_eventually!(server.log_count("configuration reloaded") == 1);
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.6"]));
    assert_eq!(static_a(&server, "new.static.test."), ok(&["10.9.0.7"]));
    assert_eq!(metric(&server, "snapdns_config_reloads_total"), Some(1.0));

    // A bad value in the config file: rejected, naming the key; nothing changes.
    write(dir.path(), "snapdns.toml", "max-udp-size = 100\n");
    write(&zones, "static.test.zone", ZONE_V1);
    server.signal("HUP");
    assert_eventually!(server.log_count("configuration reload rejected") == 1);
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("configuration reload rejected"))
        .unwrap();
    assert!(
        line.contains("ERROR") && line.contains("max-udp-size: 100 is below 512"),
        "{line}"
    );
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.6"]));
    let text = scrape(&server);
    assert_eq!(
        sample(&text, "snapdns_config_reload_failures_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "snapdns_config_last_reload_successful"),
        Some(0.0)
    );

    // An unknown key is named too.
    write(dir.path(), "snapdns.toml", "negative-tll = \"5s\"\n");
    server.signal("HUP");
    assert_eventually!(server.log_count("configuration reload rejected") == 2);
    assert!(server.log().contains("negative-tll"), "{}", server.log());

    // A broken zone file rejects the reload: every old zone stays served as it was.
    write(dir.path(), "snapdns.toml", "negative-ttl = \"5s\"\n");
    write(&zones, "static.test.zone", ZONE_BROKEN);
    server.signal("HUP");
    assert_eventually!(server.log_count("configuration reload rejected") >= 3);
    let broken = zones.join("static.test.zone");
    assert!(
        server
            .log()
            .contains(&format!("zone file {} line 5", broken.display())),
        "{}",
        server.log()
    );
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.6"]));
    assert_eq!(static_a(&server, "new.static.test."), ok(&["10.9.0.7"]));

    // A setting that needs a restart: the reload applies the zones and says what it left.
    write(
        dir.path(),
        "snapdns.toml",
        "negative-ttl = \"5s\"\nservice-ttl = \"30s\"\n",
    );
    write(&zones, "static.test.zone", ZONE_V1);
    server.signal("HUP");
    assert_eventually!(server.log_count("configuration reloaded") == 2);
    assert!(
        server
            .log()
            .lines()
            .any(|l| l.contains("take effect only after a restart") && l.contains("service-ttl")),
        "{}",
        server.log()
    );
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.5"]));
    let web = udp(server.addr, "web.service.consul.", RecordType::A);
    assert!(
        web.answers.iter().all(|r| r.ttl == 0),
        "TTL unchanged until a restart"
    );
    let text = scrape(&server);
    assert_eq!(sample(&text, "snapdns_config_reloads_total"), Some(2.0));
    assert_eq!(
        sample(&text, "snapdns_config_last_reload_successful"),
        Some(1.0)
    );
}

#[test]
fn sighup_under_load_drops_no_query() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).unwrap();
    write(&zones, "static.test.zone", ZONE_V1);
    let server = Server::start(&[
        "--registry",
        &demo_registry(),
        "--zones-dir",
        zones.to_str().unwrap(),
    ]);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // One client, one query at a time, no retries: a dropped query shows as a timeout.
    let client = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let names = ["db.static.test.", "web.service.consul."];
        let mut failures = Vec::new();
        let mut sent = 0usize;
        let mut buf = vec![0u8; 4096];
        while !flag.load(Ordering::Relaxed) && sent < 50_000 {
            let name = names[sent % 2];
            let mut query = support::query_message(name, RecordType::A, None);
            query.metadata.id = sent as u16;
            socket.send_to(&query.to_vec().unwrap(), addr).unwrap();
            sent += 1;
            match socket.recv_from(&mut buf) {
                Ok((len, _)) => {
                    let reply = Message::from_vec(&buf[..len]).unwrap();
                    if reply.metadata.id != query.metadata.id
                        || reply.metadata.response_code != ResponseCode::NoError
                        || reply.answers.is_empty()
                    {
                        failures.push(format!("{name}: {reply:?}"));
                    }
                }
                Err(error) => failures.push(format!("{name}: no answer: {error}")),
            }
        }
        (sent, failures)
    });
    // Alternate the zone between two versions, five reloads while the client keeps asking.
    let started = Instant::now();
    for round in 1..=5 {
        let text = if round % 2 == 1 { ZONE_V2 } else { ZONE_V1 };
        write(&zones, "static.test.zone", text);
        server.signal("HUP");
        assert!(
            eventually(Duration::from_secs(10), || server
                .log_count("configuration reloaded")
                == round),
            "reload {round} not applied:\n{}",
            server.log()
        );
    }
    // A few more queries after the last reload.
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let (sent, failures) = client.join().unwrap();
    eprintln!("{sent} queries during 5 reloads in {:?}", started.elapsed());
    assert!(sent >= 100, "the client kept asking: {sent}");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(metric(&server, "snapdns_config_reloads_total"), Some(5.0));
    assert_eq!(static_a(&server, "db.static.test."), ok(&["10.9.0.6"]));
}

#[test]
fn sigterm_finishes_an_in_flight_query_and_exits_0() {
    let upstream = Upstream::start(true);
    let mut server = Server::start(&[
        "--upstream",
        &upstream.addr.to_string(),
        "--upstream-timeout",
        "10s",
    ]);
    let addr = server.addr;
    // A TCP and a UDP query for forwarded names: in flight until the upstream answers.
    let tcp_client = std::thread::spawn(move || tcp(addr, "slow-tcp.example.test.", RecordType::A));
    let udp_client = std::thread::spawn(move || {
        let query = support::query_message("slow-udp.example.test.", RecordType::A, None);
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        socket.send_to(&query.to_vec().unwrap(), addr).unwrap();
        let mut buf = vec![0u8; 4096];
        let (len, _) = socket.recv_from(&mut buf).expect("an answer over UDP");
        Message::from_vec(&buf[..len]).unwrap()
    });
    assert_eventually!(
        upstream.was_asked("slow-tcp.example.test.")
            && upstream.was_asked("slow-udp.example.test.")
    );

    server.signal("TERM");
    assert_eventually!(server.log_count("shutting down") == 1);
    // Stopped accepting: a new TCP connection is refused while the old query is pending.
    assert_eventually!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
    assert!(server.exited().is_none(), "still finishing the queries");
    // The TCP query first: the UDP one alone keeps the process from exiting.
    upstream.release("slow-tcp.example.test.");
    let tcp_reply = tcp_client.join().expect("the TCP query got its answer");
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.exited().is_none(), "still finishing the UDP query");
    upstream.release("slow-udp.example.test.");
    for (transport, reply) in [
        ("tcp", tcp_reply),
        (
            "udp",
            udp_client.join().expect("the UDP query got its answer"),
        ),
    ] {
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{transport}"
        );
        assert_eq!(rdata(&reply.answers), ["192.0.2.1"], "{transport}");
    }

    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        !server.log().contains("grace period elapsed"),
        "{}",
        server.log()
    );
    // The ports are closed: TCP refuses, UDP gets no answer.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
    let query = support::query_message("web.service.consul.", RecordType::A, None);
    assert!(support::udp_raw(addr, &query.to_vec().unwrap()).is_none());
    // The HTTP listener too.
    assert!(TcpStream::connect_timeout(&server.http.unwrap(), Duration::from_millis(500)).is_err());
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(support::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--registry", &demo_registry(), "--no-forward"])
        .args([
            "--log-format",
            "json",
            "--log",
            "debug",
            "--udp-workers",
            "1",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--zones-dir")
        .arg(support::repo().join("zones"))
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn snapdns");
    let stderr = child.stderr.take().unwrap();
    let (lines_in, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_in.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<Value> = Vec::new();
    let mut udp_addr: Option<SocketAddr> = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = |seen: &mut Vec<Value>| -> bool {
        let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        else {
            return false;
        };
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON object: {e}: {line:?}"));
        assert!(value.is_object(), "{line}");
        seen.push(value);
        true
    };
    while udp_addr.is_none() && next(&mut seen) {
        let message = seen.last().unwrap()["message"].as_str().unwrap_or("");
        udp_addr = message
            .strip_prefix("listening on udp ")
            .and_then(|a| a.parse().ok());
    }
    let addr = udp_addr.expect("snapdns logged its UDP address as JSON");
    let reply = udp(addr, "web.service.consul.", RecordType::A);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    // SIGTERM: the shutdown is logged as JSON too, and the process exits 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    while next(&mut seen) {}
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(0));

    for value in &seen {
        assert!(value["timestamp"].is_string(), "{value}");
        assert!(value["level"].is_string(), "{value}");
        assert!(value["target"].is_string(), "{value}");
        assert!(value["message"].is_string(), "{value}");
    }
    let levels: Vec<&str> = seen.iter().filter_map(|v| v["level"].as_str()).collect();
    assert!(
        levels.contains(&"INFO"),
        "--log debug wins over RUST_LOG=error: {levels:?}"
    );
    // Structured fields stay fields, not text.
    let zone = seen
        .iter()
        .find(|v| v["message"] == "static zone loaded")
        .expect("the static zone load is logged");
    assert!(zone["names"].as_u64().unwrap() > 0, "{zone}");
    assert!(seen.iter().any(|v| v["message"] == "shutting down"));
}

#[test]
fn log_flags_are_validated() {
    let (code, stderr) = support::run_to_exit(&["serve", "--log-format", "xml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("log-format"), "{stderr}");
    let (code, stderr) = support::run_to_exit(&["serve", "--log", "snapdns=loud"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("log"), "{stderr}");
}

/// The file source reports in the same status as the sync engine: `/health` names the file, the
/// origin and the last load; a broken edit shows as the last error while the previous snapshot
/// stays served and the source counts as up.
#[test]
fn health_reports_the_registry_file_and_its_last_error() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let registry = json!({"web": [entry("w1", "10.2.0.1", "web", "", 80, &[], "passing")]});
    let path = write(
        dir.path(),
        "registry.json",
        &serde_json::to_string_pretty(&registry).unwrap(),
    );
    let source = format!("file:{}", path.display());
    let server = Server::start_in(dir, &["--registry", &source]);
    let health = || crate::sync::standin::health(&server);

    let (code, report) = health();
    assert_eq!(code, 200);
    assert_eq!(report["status"], "ok", "{report:#}");
    assert_eq!(report["source"]["kind"], "file");
    assert_eq!(report["source"]["path"], path.display().to_string());
    assert_eq!(report["registry"]["state"], "ok");
    assert_eq!(report["registry"]["last_error"], Value::Null);
    assert_eq!(report["snapshot"]["origin"], "file");
    assert_eq!(report["snapshot"]["services"], 1);
    assert!(report["last_success"].is_string(), "{report:#}");
    assert_eq!(report["persistence"], Value::Null);

    std::fs::write(&path, "{\n  \"web\": [\n    {\"Node\": oops}\n  ]\n}\n").unwrap();
    assert_eventually!(health().1["registry"]["last_error"]["channel"] == "file");
    let (code, report) = health();
    assert_eq!(code, 200);
    let message = report["registry"]["last_error"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("line 3 column"), "{message}");
    assert_eq!(
        report["status"], "ok",
        "the previous snapshot is still served"
    );
    assert_eq!(report["snapshot"]["origin"], "file");
    assert_eq!(metric(&server, "snapdns_registry_up"), Some(1.0));
}
