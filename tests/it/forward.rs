//! Forwarding, the cache and the static zones (issue #4), against a real, independent upstream:
//! Debian's `knotd`, started per test on a free loopback port with a zone the test writes.
//! Properties Knot cannot be made to show (a reply for another question, how many queries
//! arrive) use a small fake upstream on a UDP socket.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::assert_eventually;
use crate::support::{self, eventually, query_message, rdata, sorted_rdata, udp, udp_edns, Server};

/// TXT records in `medium` (over 512 bytes, under 1232) and `big` (over 1232: Knot truncates
/// its UDP answer to us, so snapdns must fetch it over TCP).
const MEDIUM_TXT: usize = 10;
const BIG_TXT: usize = 40;

/// The upstream's zone: positive TTL 300, negative TTL min(3600, 60) = 60.
fn example_zone() -> String {
    let mut zone = String::from(
        "$ORIGIN example.test.\n$TTL 300\n\
         @ IN SOA ns.example.test. hostmaster.example.test. 1 3600 900 604800 60\n\
         @ IN NS ns\n\
         ns IN A 127.0.0.1\n\
         www IN A 192.0.2.1\n\
         www IN A 192.0.2.2\n\
         alias IN CNAME www\n",
    );
    for i in 0..MEDIUM_TXT {
        zone.push_str(&format!("medium IN TXT \"{}\"\n", txt(i)));
    }
    for i in 0..BIG_TXT {
        zone.push_str(&format!("big IN TXT \"{}\"\n", txt(i)));
    }
    zone
}

fn txt(i: usize) -> String {
    format!("record {i:02} of a long answer, padded to fill the packet: 0123456789abcdef")
}

/// A running `knotd` serving one zone. Killed on drop.
struct Knot {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Knot {
    /// Starts Knot authoritative for `origin` with `zone`, on a free port (retrying when
    /// another process takes the port first), and waits until it answers.
    fn start(origin: &str, zone: &str) -> Self {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir_all(dir.path().join("db")).unwrap();
            support::write(dir.path(), "zone.txt", zone);
            let port = free_port();
            let config = format!(
                "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    \
                 tcp-workers: 1\n    background-workers: 1\n\
                 database:\n    storage: \"{d}/db\"\n\
                 log:\n  - target: stderr\n    any: warning\n\
                 template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    \
                 zonefile-load: whole\n    journal-content: none\n\
                 zone:\n  - domain: {origin}\n    file: zone.txt\n",
                d = dir.path().display()
            );
            let config_path = support::write(dir.path(), "knot.conf", &config);
            let child = Command::new(knotd())
                .arg("-c")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("knotd is installed (apt-get install knot)");
            let mut knot = Self {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                _dir: dir,
            };
            // Until it answers, or exits (another process took the port): then try another.
            let ready = eventually(Duration::from_secs(10), || {
                knot.child.try_wait().ok().flatten().is_some() || knot.answers(origin)
            });
            if ready && knot.answers(origin) {
                return knot;
            }
            knot.stop();
        }
        panic!("knotd did not start");
    }

    fn answers(&self, origin: &str) -> bool {
        let query = query_message(origin, RecordType::SOA, None)
            .to_vec()
            .unwrap();
        support::udp_raw(self.addr, &query)
            .and_then(|reply| Message::from_vec(&reply).ok())
            .is_some_and(|reply| reply.metadata.response_code == ResponseCode::NoError)
    }

    fn upstream(&self) -> String {
        self.addr.to_string()
    }

    /// Kills Knot: from now on the upstream is down (nothing listens on its port).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        self.stop();
    }
}

fn knotd() -> PathBuf {
    ["/usr/sbin/knotd", "/usr/bin/knotd"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("knotd"))
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn demo_registry() -> String {
    format!(
        "file:{}",
        support::repo().join("zones/demo.registry.json").display()
    )
}

/// snapdns in front of `upstreams` with the demo registry and `extra` flags.
fn snapdns(upstreams: &[String], extra: &[&str]) -> Server {
    let registry = demo_registry();
    let mut args = vec!["--registry", registry.as_str()];
    for upstream in upstreams {
        args.extend(["--upstream", upstream.as_str()]);
    }
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[track_caller]
fn assert_forwarded(message: &Message, rcode: ResponseCode) {
    assert_eq!(
        message.metadata.response_code, rcode,
        "rcode of {message:?}"
    );
    assert_eq!(message.metadata.message_type, MessageType::Response);
    assert!(
        message.metadata.recursion_available,
        "RA=1 for a client allowed to recurse"
    );
    assert!(message.metadata.recursion_desired, "RD copied");
    assert!(
        !message.metadata.authoritative,
        "forwarded answers are not authoritative"
    );
}

fn ttls(records: &[Record]) -> Vec<u32> {
    records.iter().map(|record| record.ttl).collect()
}

fn soa_ttl(message: &Message) -> u32 {
    let soas: Vec<&Record> = message
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .collect();
    assert_eq!(
        soas.len(),
        1,
        "one SOA in the authority section of {message:?}"
    );
    assert_eq!(soas[0].name.to_string(), "example.test.");
    soas[0].ttl
}

#[test]
fn forwarded_answers_are_the_upstreams() {
    let knot = Knot::start("example.test.", &example_zone());
    let server = snapdns(&[knot.upstream()], &[]);

    let direct = udp(knot.addr, "www.example.test.", RecordType::A);
    let answer = udp_edns(server.addr, "WwW.Example.TEST.", RecordType::A, Some(1232));
    assert_forwarded(&answer, ResponseCode::NoError);
    assert!(
        answer.queries[0]
            .name()
            .eq_case(&Name::from_ascii("WwW.Example.TEST.").unwrap()),
        "question as sent"
    );
    assert_eq!(sorted_rdata(&answer.answers), ["192.0.2.1", "192.0.2.2"]);
    assert_eq!(sorted_rdata(&answer.answers), sorted_rdata(&direct.answers));
    assert_eq!(
        ttls(&answer.answers),
        [300, 300],
        "a fresh answer carries the upstream TTL"
    );
    assert!(answer.authorities.is_empty() && answer.additionals.is_empty());
    assert_eq!(
        answer.edns.as_ref().map(|edns| edns.max_payload()),
        Some(1232),
        "OPT echoed"
    );

    // Without EDNS there is no OPT; a CNAME chain comes through whole.
    let alias = udp(server.addr, "alias.example.test.", RecordType::A);
    assert_forwarded(&alias, ResponseCode::NoError);
    assert!(alias.edns.is_none());
    let records: Vec<(String, RecordType)> = alias
        .answers
        .iter()
        .map(|r| (r.name.to_string(), r.record_type()))
        .collect();
    assert_eq!(
        records[0],
        ("alias.example.test.".to_string(), RecordType::CNAME)
    );
    assert_eq!(
        sorted_rdata(&alias.answers[1..]),
        ["192.0.2.1", "192.0.2.2"]
    );

    // dig, as an operator would check it.
    let out = support::dig(&[
        "@127.0.0.1",
        "-p",
        &server.addr.port().to_string(),
        "www.example.test",
        "A",
    ]);
    assert!(
        out.contains("status: NOERROR") && out.contains("flags: qr rd ra;"),
        "{out}"
    );
    assert!(
        out.contains("192.0.2.1") && out.contains("192.0.2.2"),
        "{out}"
    );
}

#[test]
fn cached_answers_count_down_and_outlive_the_upstream() {
    let mut knot = Knot::start("example.test.", &example_zone());
    let server = snapdns(&[knot.upstream()], &["--upstream-timeout", "300ms"]);
    let first = udp(server.addr, "www.example.test.", RecordType::A);
    assert_eq!(ttls(&first.answers), [300, 300]);
    knot.stop();

    // The passing of time is what is under test: poll until a whole second has gone by.
    let mut later = first.clone();
    assert_eventually!(
        {
            later = udp(server.addr, "www.example.test.", RecordType::A);
            later.answers.first().is_some_and(|r| r.ttl < 300)
        },
        "the served TTL never went down: {later:?}"
    );
    assert_forwarded(&later, ResponseCode::NoError);
    assert_eq!(
        sorted_rdata(&later.answers),
        ["192.0.2.1", "192.0.2.2"],
        "served from the cache"
    );
    let served = ttls(&later.answers);
    assert!(
        served.iter().all(|ttl| (288..300).contains(ttl)) && served[0] == served[1],
        "{served:?}"
    );
}

#[test]
fn ttl_caps_apply_to_served_ttls() {
    let knot = Knot::start("example.test.", &example_zone());
    let capped = snapdns(&[knot.upstream()], &["--cache-max-ttl", "100s"]);
    let raised = snapdns(&[knot.upstream()], &["--cache-min-ttl", "10m"]);
    let low = udp(capped.addr, "www.example.test.", RecordType::A);
    assert_forwarded(&low, ResponseCode::NoError);
    assert_eq!(
        ttls(&low.answers),
        [100, 100],
        "300 capped by --cache-max-ttl"
    );
    let high = udp(raised.addr, "www.example.test.", RecordType::A);
    assert_forwarded(&high, ResponseCode::NoError);
    assert_eq!(
        ttls(&high.answers),
        [600, 600],
        "300 raised by --cache-min-ttl"
    );
    // --cache-min-ttl does not stretch negative answers.
    let negative = udp(raised.addr, "nope.example.test.", RecordType::A);
    assert_forwarded(&negative, ResponseCode::NXDomain);
    assert_eq!(soa_ttl(&negative), 60);
}

#[test]
fn negative_answers_are_cached_for_the_soa_minimum() {
    let mut knot = Knot::start("example.test.", &example_zone());
    let server = snapdns(&[knot.upstream()], &["--upstream-timeout", "300ms"]);
    let capped = snapdns(
        &[knot.upstream()],
        &[
            "--upstream-timeout",
            "300ms",
            "--cache-max-negative-ttl",
            "1s",
        ],
    );

    let nxdomain = udp(server.addr, "nope.example.test.", RecordType::A);
    assert_forwarded(&nxdomain, ResponseCode::NXDomain);
    assert!(nxdomain.answers.is_empty());
    assert_eq!(soa_ttl(&nxdomain), 60, "min(SOA TTL, SOA MINIMUM)");
    let nodata = udp(server.addr, "www.example.test.", RecordType::AAAA);
    assert_forwarded(&nodata, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(soa_ttl(&nodata), 60);
    let short = udp(capped.addr, "nope.example.test.", RecordType::A);
    assert_forwarded(&short, ResponseCode::NXDomain);
    assert_eq!(soa_ttl(&short), 1, "capped by --cache-max-negative-ttl");

    knot.stop();
    let again = udp(server.addr, "nope.example.test.", RecordType::A);
    assert_forwarded(&again, ResponseCode::NXDomain);
    assert!(soa_ttl(&again) <= 60);
    let again = udp(server.addr, "www.example.test.", RecordType::AAAA);
    assert_forwarded(&again, ResponseCode::NoError);
    assert!(again.answers.is_empty() && soa_ttl(&again) <= 60);
    // The capped entry expires; with the upstream gone that leaves SERVFAIL.
    let mut expired = short;
    assert_eventually!({
        expired = udp(capped.addr, "nope.example.test.", RecordType::A);
        expired.metadata.response_code == ResponseCode::ServFail
    });
    assert!(expired.answers.is_empty() && expired.authorities.is_empty());
}

/// glibc with `search example.test service.consul` and `ndots:1` asks `web.example.test`
/// before `web.service.consul`: the miss is forwarded once, then answered from the negative
/// cache, and the registry answers the second name.
#[test]
fn search_suffix_misses_are_answered_from_the_negative_cache() {
    let mut knot = Knot::start("example.test.", &example_zone());
    let server = snapdns(&[knot.upstream()], &["--upstream-timeout", "1s"]);
    for round in 0..2 {
        if round == 1 {
            // From here on, only the cache can answer the miss.
            knot.stop();
        }
        for qtype in [RecordType::A, RecordType::AAAA] {
            let miss = udp(server.addr, "web.example.test.", qtype);
            assert_forwarded(&miss, ResponseCode::NXDomain);
            assert!(
                miss.answers.is_empty() && soa_ttl(&miss) <= 60,
                "round {round}"
            );
        }
        let hit = udp(server.addr, "web.service.consul.", RecordType::A);
        assert_eq!(hit.metadata.response_code, ResponseCode::NoError);
        assert!(hit.metadata.authoritative && hit.metadata.recursion_available);
        assert_eq!(sorted_rdata(&hit.answers), ["10.0.1.11", "10.0.1.12"]);
    }
}

/// The resolv.conf of docs/resolv-conf.md, used by glibc itself (`getent`, in a private mount
/// namespace where it replaces /etc/resolv.conf). glibc cannot use another port than 53, so
/// snapdns listens on port 53 of a loopback address of its own.
#[test]
fn glibc_resolves_through_the_documented_resolv_conf() {
    let knot = Knot::start("example.test.", &example_zone());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let salt = std::process::id() ^ nanos;
    let ip = format!("127.53.{}.{}", salt % 250 + 1, (salt / 250) % 250 + 1);
    let listen = format!("{ip}:53");
    let server = snapdns(&[knot.upstream()], &["--listen", &listen]);
    assert_eq!(server.addr.to_string(), listen);

    let doc = std::fs::read_to_string(support::repo().join("docs/resolv-conf.md")).unwrap();
    let block = doc
        .split("```conf\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```conf block");
    assert!(block.contains("nameserver 127.0.0.1\n"), "{block}");
    let documented = block.replace("nameserver 127.0.0.1\n", &format!("nameserver {ip}\n"));
    let dir = tempfile::tempdir().unwrap();
    let getent = |resolv_conf: &str, name: &str| -> (i32, BTreeSet<String>) {
        let path = support::write(dir.path(), "resolv.conf", resolv_conf);
        let output = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/resolv.conf && exec getent ahostsv4 \"$1\"")
            .arg(&path)
            .arg(name)
            .output()
            .expect("unshare (util-linux) runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("mount"),
            "needs root for a private mount namespace: {stderr}"
        );
        let addresses = stdout
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_string)
            .collect();
        (output.status.code().unwrap_or(-1), addresses)
    };
    let set =
        |items: &[&str]| -> BTreeSet<String> { items.iter().map(|s| s.to_string()).collect() };

    // `web` through the search list, to the registry.
    assert_eq!(
        getent(&documented, "web"),
        (0, set(&["10.0.1.11", "10.0.1.12"]))
    );
    assert_eq!(
        getent(&documented, "web.service.consul"),
        (0, set(&["10.0.1.11", "10.0.1.12"]))
    );
    // Any other name through the upstream.
    assert_eq!(
        getent(&documented, "www.example.test"),
        (0, set(&["192.0.2.1", "192.0.2.2"]))
    );
    // Neither in the registry nor upstream: glibc's "not found".
    assert_eq!(getent(&documented, "nothing"), (2, set(&[])));
    // Another suffix first: `web.example.test` is a forwarded miss (then negatively cached),
    // and the registry still answers `web`; `www` is found under the first suffix.
    let other_first = documented.replace(
        "search service.consul",
        "search example.test service.consul",
    );
    assert_ne!(other_first, documented);
    for _ in 0..2 {
        assert_eq!(
            getent(&other_first, "web"),
            (0, set(&["10.0.1.11", "10.0.1.12"]))
        );
    }
    assert_eq!(
        getent(&other_first, "www"),
        (0, set(&["192.0.2.1", "192.0.2.2"]))
    );
}

#[test]
fn the_next_upstream_is_tried_after_a_timeout_and_refused() {
    let knot = Knot::start("example.test.", &example_zone());
    // Knot authoritative for another zone only: it answers REFUSED for example.test.
    let refusing = Knot::start(
        "other.test.",
        "@ 300 IN SOA ns hostmaster 1 3600 900 604800 60\n",
    );
    // A socket that never answers: an upstream that is down without telling.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let upstreams = [
        silent.local_addr().unwrap().to_string(),
        refusing.upstream(),
        knot.upstream(),
    ];
    let server = snapdns(&upstreams, &["--upstream-timeout", "300ms"]);

    let answer = udp(server.addr, "www.example.test.", RecordType::A);
    assert_forwarded(&answer, ResponseCode::NoError);
    assert_eq!(sorted_rdata(&answer.answers), ["192.0.2.1", "192.0.2.2"]);
    assert_eq!(ttls(&answer.answers), [300, 300]);
    let mut buf = [0u8; 512];
    silent.set_nonblocking(true).unwrap();
    assert!(
        silent.recv_from(&mut buf).is_ok(),
        "the first upstream was asked"
    );
}

#[test]
fn servfail_only_when_every_upstream_failed_and_local_names_still_answer() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    support::write(dir.path(), "static.test.zone", STATIC_ZONE);
    let zones = dir.path().to_str().unwrap();
    let server = snapdns(
        &[silent.local_addr().unwrap().to_string(), closed],
        &["--upstream-timeout", "200ms", "--zones-dir", zones],
    );

    let failed = udp(server.addr, "www.example.test.", RecordType::A);
    assert_forwarded(&failed, ResponseCode::ServFail);
    assert!(
        failed.answers.is_empty() && failed.authorities.is_empty() && failed.additionals.is_empty()
    );
    assert_eq!(failed.queries[0].name().to_string(), "www.example.test.");
    let mut buf = [0u8; 512];
    silent.set_nonblocking(true).unwrap();
    assert!(
        silent.recv_from(&mut buf).is_ok(),
        "the first upstream was asked"
    );

    // The registry and the static zones do not depend on any upstream.
    let registry = udp(server.addr, "web.service.consul.", RecordType::A);
    assert_eq!(registry.metadata.response_code, ResponseCode::NoError);
    assert!(registry.metadata.authoritative);
    assert_eq!(sorted_rdata(&registry.answers), ["10.0.1.11", "10.0.1.12"]);
    let absent = udp(server.addr, "nothing.service.consul.", RecordType::A);
    assert_eq!(
        absent.metadata.response_code,
        ResponseCode::NXDomain,
        "registry names are never forwarded"
    );
    assert!(absent.metadata.authoritative && absent.answers.is_empty());
    let fixed = udp(server.addr, "db.static.test.", RecordType::A);
    assert_eq!(fixed.metadata.response_code, ResponseCode::NoError);
    assert!(fixed.metadata.authoritative);
    assert_eq!(rdata(&fixed.answers), ["10.9.0.5"]);
}

#[test]
fn large_answers_are_fetched_over_tcp_and_truncated_for_small_udp_clients() {
    let knot = Knot::start("example.test.", &example_zone());
    let server = snapdns(&[knot.upstream()], &[]);
    let texts =
        |message: &Message| -> BTreeSet<String> { rdata(&message.answers).into_iter().collect() };
    let expected = |count: usize| -> BTreeSet<String> { (0..count).map(txt).collect() };

    // Over 1232 bytes: Knot truncates its UDP answer to snapdns, which asks again over TCP.
    let over_tcp = support::tcp(server.addr, "big.example.test.", RecordType::TXT);
    assert_forwarded(&over_tcp, ResponseCode::NoError);
    assert!(!over_tcp.metadata.truncation);
    assert_eq!(
        texts(&over_tcp),
        expected(BIG_TXT),
        "every record, as only TCP can carry"
    );
    assert!(ttls(&over_tcp.answers)
        .iter()
        .all(|ttl| *ttl <= 300 && *ttl >= 298));
    let over_udp = udp_edns(
        server.addr,
        "big.example.test.",
        RecordType::TXT,
        Some(1232),
    );
    assert_forwarded(&over_udp, ResponseCode::NoError);
    assert!(
        over_udp.metadata.truncation,
        "TC=1 so the client retries over TCP"
    );
    assert!(over_udp.answers.is_empty() && over_udp.authorities.is_empty());

    // 512 < size < 1232: whole for an EDNS client, truncated for a plain one.
    let edns = udp_edns(
        server.addr,
        "medium.example.test.",
        RecordType::TXT,
        Some(1232),
    );
    assert!(!edns.metadata.truncation);
    assert_eq!(texts(&edns), expected(MEDIUM_TXT));
    let plain = udp(server.addr, "medium.example.test.", RecordType::TXT);
    assert_forwarded(&plain, ResponseCode::NoError);
    assert!(plain.metadata.truncation && plain.answers.is_empty());

    let out = support::dig(&[
        "@127.0.0.1",
        "-p",
        &server.addr.port().to_string(),
        "big.example.test",
        "TXT",
    ]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains(&format!("ANSWER: {BIG_TXT},")), "{out}");
}

#[test]
fn clients_outside_allow_recursion_are_refused_but_get_registry_answers() {
    let knot = Knot::start("example.test.", &example_zone());
    let server = snapdns(&[knot.upstream()], &["--allow-recursion", "127.0.0.1/32"]);
    let ask_from = |source: &str, name: &str| -> Message {
        let query = query_message(name, RecordType::A, None);
        let reply = support::udp_raw_from(source, server.addr, &query.to_vec().unwrap())
            .expect("an answer");
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.metadata.id, query.metadata.id);
        reply
    };

    let refused = ask_from("127.0.0.2:0", "www.example.test.");
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert!(
        !refused.metadata.recursion_available,
        "RA=0 for a client that may not recurse"
    );
    assert!(refused.answers.is_empty() && refused.authorities.is_empty());
    assert_eq!(refused.queries[0].name().to_string(), "www.example.test.");
    let registry = ask_from("127.0.0.2:0", "web.service.consul.");
    assert_eq!(registry.metadata.response_code, ResponseCode::NoError);
    assert!(registry.metadata.authoritative && !registry.metadata.recursion_available);
    assert_eq!(sorted_rdata(&registry.answers), ["10.0.1.11", "10.0.1.12"]);

    let allowed = ask_from("127.0.0.1:0", "www.example.test.");
    assert_forwarded(&allowed, ResponseCode::NoError);
    assert_eq!(sorted_rdata(&allowed.answers), ["192.0.2.1", "192.0.2.2"]);
}

#[test]
fn any_gets_a_minimal_answer_without_asking_upstream() {
    let (upstream, seen) = FakeUpstream::start(Behaviour::Answer);
    let server = snapdns(&[upstream.addr.to_string()], &[]);
    let answer = udp(server.addr, "www.example.test.", RecordType::ANY);
    assert_forwarded(&answer, ResponseCode::NoError);
    assert_eq!(answer.answers.len(), 1);
    assert_eq!(answer.answers[0].record_type(), RecordType::HINFO);
    assert_eq!(answer.answers[0].name.to_string(), "www.example.test.");
    match &answer.answers[0].data {
        RData::HINFO(hinfo) => assert_eq!((&*hinfo.cpu, &*hinfo.os), (&b"RFC8482"[..], &b""[..])),
        other => panic!("not HINFO: {other:?}"),
    }
    assert_eq!(ttls(&answer.answers), [3600]);
    assert!(answer.authorities.is_empty() && answer.additionals.is_empty());
    assert!(
        seen.lock().unwrap().is_empty(),
        "RFC 8482 answers are synthesized locally"
    );
}

/// Each forwarded query leaves from its own random port with its own random ID (never the
/// client's), and replies that answer another question or carry another ID are dropped.
#[test]
fn forwarded_queries_use_fresh_ids_and_ports_and_mismatched_replies_are_dropped() {
    let (upstream, seen) = FakeUpstream::start(Behaviour::MismatchFirst);
    let server = snapdns(&[upstream.addr.to_string()], &["--upstream-timeout", "1s"]);
    let mut client_ids = Vec::new();
    for i in 0..8 {
        let query = query_message(&format!("host{i}.example.test."), RecordType::A, None);
        client_ids.push(query.metadata.id);
        let reply =
            Message::from_vec(&support::udp_raw(server.addr, &query.to_vec().unwrap()).unwrap())
                .unwrap();
        assert_forwarded(&reply, ResponseCode::NoError);
        assert_eq!(reply.metadata.id, query.metadata.id);
        assert_eq!(
            rdata(&reply.answers),
            ["192.0.2.99"],
            "the matching reply, not the forged ones"
        );
        assert_eq!(
            reply.answers[0].name.to_string(),
            format!("host{i}.example.test.")
        );
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 8, "one upstream query per name: {seen:?}");
    let ids: BTreeSet<u16> = seen.iter().map(|(id, _, _)| *id).collect();
    let ports: BTreeSet<u16> = seen.iter().map(|(_, port, _)| *port).collect();
    assert!(
        ids.len() >= 7 && ports.len() >= 7,
        "random IDs and ports: {seen:?}"
    );
    assert!(
        seen.iter()
            .zip(&client_ids)
            .all(|((id, _, _), client)| id != client),
        "never the client's ID"
    );
    // An upstream that only ever sends forged replies never gets its answer through.
    let (forger, _) = FakeUpstream::start(Behaviour::OnlyMismatches);
    let server = snapdns(&[forger.addr.to_string()], &["--upstream-timeout", "500ms"]);
    let reply = udp(server.addr, "victim.example.test.", RecordType::A);
    assert_forwarded(&reply, ResponseCode::ServFail);
    assert!(reply.answers.is_empty());
}

#[test]
fn concurrent_misses_make_one_upstream_query() {
    let (upstream, seen) = FakeUpstream::start(Behaviour::AnswerAfter(Duration::from_millis(200)));
    let server = snapdns(&[upstream.addr.to_string()], &[]);
    let addr = server.addr;
    let clients: Vec<JoinHandle<Message>> = (0..16)
        .map(|_| std::thread::spawn(move || udp(addr, "popular.example.test.", RecordType::A)))
        .collect();
    for client in clients {
        let reply = client.join().unwrap();
        assert_forwarded(&reply, ResponseCode::NoError);
        assert_eq!(rdata(&reply.answers), ["192.0.2.99"]);
    }
    let seen = seen.lock().unwrap().clone();
    let ids: BTreeSet<u16> = seen.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(
        ids.len(),
        1,
        "16 concurrent misses, one upstream query: {seen:?}"
    );
}

const STATIC_ZONE: &str = "$ORIGIN static.test.\n$TTL 120\n\
    @ IN SOA ns.static.test. hostmaster.static.test. 7 3600 900 604800 30\n\
    @ IN NS ns\n\
    ns IN A 10.9.0.1\n\
    db IN A 10.9.0.5\n";

/// Line 5 has an unknown record type; lines 1-4 are fine.
const BROKEN_ZONE: &str = "$ORIGIN broken.test.\n$TTL 120\n\
    @ IN SOA ns.broken.test. hostmaster.broken.test. 1 3600 900 604800 30\n\
    ok IN A 10.8.0.1\n\
    bad IN NOSUCHTYPE 10.8.0.2\n";

#[test]
fn static_zones_are_served_and_a_broken_file_is_reported() {
    let knot = Knot::start("example.test.", &example_zone());
    let dir = tempfile::tempdir().unwrap();
    support::write(dir.path(), "static.test.zone", STATIC_ZONE);
    support::write(dir.path(), "broken.test.zone", BROKEN_ZONE);
    support::write(dir.path(), "ignored.txt", "not a zone file");
    let zones = dir.path().to_str().unwrap();
    let server = snapdns(&[knot.upstream()], &["--zones-dir", zones]);

    let log = server.log();
    let broken = dir.path().join("broken.test.zone");
    assert!(
        log.contains(&format!("zone file {} line 5", broken.display())),
        "{log}"
    );
    assert!(log.contains("the other zones are still served"), "{log}");

    let answer = udp(server.addr, "DB.static.test.", RecordType::A);
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative && answer.metadata.recursion_available);
    assert_eq!(rdata(&answer.answers), ["10.9.0.5"]);
    assert_eq!(ttls(&answer.answers), [120]);
    let missing = udp(server.addr, "nothing.static.test.", RecordType::A);
    assert_eq!(
        missing.metadata.response_code,
        ResponseCode::NXDomain,
        "served, not forwarded"
    );
    assert!(missing.metadata.authoritative && missing.answers.is_empty());
    assert_eq!(missing.authorities[0].name.to_string(), "static.test.");
    assert_eq!(missing.authorities[0].ttl, 30, "the zone's negative TTL");
    // The broken zone is not served: its names go upstream, where Knot refuses them.
    let not_served = udp(server.addr, "ok.broken.test.", RecordType::A);
    assert_forwarded(&not_served, ResponseCode::ServFail);
    // Forwarding still works beside the static zones.
    let forwarded = udp(server.addr, "www.example.test.", RecordType::A);
    assert_forwarded(&forwarded, ResponseCode::NoError);
}

#[test]
fn the_shipped_example_zone_is_served() {
    let zones = support::repo().join("zones");
    let server = snapdns(
        &[],
        &["--no-forward", "--zones-dir", zones.to_str().unwrap()],
    );
    let gateway = udp(server.addr, "gateway.example.internal.", RecordType::A);
    assert_eq!(gateway.metadata.response_code, ResponseCode::NoError);
    assert!(gateway.metadata.authoritative);
    assert_eq!(rdata(&gateway.answers), ["10.0.0.1"]);
    let www = udp(server.addr, "www.example.internal.", RecordType::A);
    assert_eq!(www.answers[0].record_type(), RecordType::CNAME);
    let ldap = udp(server.addr, "_ldap._tcp.example.internal.", RecordType::SRV);
    assert_eq!(rdata(&ldap.answers), ["10 0 389 gateway.example.internal."]);
    assert_eq!(sorted_rdata(&ldap.additionals), ["10.0.0.1", "fd00::1"]);
}

/// How the fake upstream replies.
#[derive(Clone, Copy)]
enum Behaviour {
    /// One A record, 192.0.2.99, TTL 300.
    Answer,
    /// The same, after a delay.
    AnswerAfter(Duration),
    /// First a reply for another name with the right ID, then one with a wrong ID, then the
    /// right answer.
    MismatchFirst,
    /// Only the forged replies.
    OnlyMismatches,
}

/// Queries seen by the fake upstream: (ID, source port, name).
type Seen = Arc<Mutex<Vec<(u16, u16, String)>>>;

/// A UDP "resolver" on 127.0.0.1 that records what it is asked. Stops on drop.
struct FakeUpstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl FakeUpstream {
    fn start(behaviour: Behaviour) -> (Self, Seen) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::default();
        let (flag, log) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let name = query.queries[0].name().clone();
                log.lock()
                    .unwrap()
                    .push((query.metadata.id, peer.port(), name.to_string()));
                let socket = socket.try_clone().unwrap();
                std::thread::spawn(move || reply(&socket, peer, &query, behaviour));
            }
        });
        (Self { addr, stop }, seen)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn reply(socket: &UdpSocket, peer: SocketAddr, query: &Message, behaviour: Behaviour) {
    let answer_for = |name: &Name, id: u16| -> Vec<u8> {
        let mut message = Message::new(id, MessageType::Response, query.metadata.op_code);
        message.metadata.recursion_desired = true;
        message.metadata.recursion_available = true;
        let mut question = query.queries[0].clone();
        question.set_name(name.clone());
        message.add_query(question);
        message.add_answer(Record::from_rdata(
            name.clone(),
            300,
            RData::A(A::new(192, 0, 2, 99)),
        ));
        message.to_vec().unwrap()
    };
    let name = query.queries[0].name().clone();
    let id = query.metadata.id;
    let forged = Name::from_ascii("forged.example.test.").unwrap();
    match behaviour {
        Behaviour::Answer => {}
        Behaviour::AnswerAfter(delay) => std::thread::sleep(delay),
        Behaviour::MismatchFirst | Behaviour::OnlyMismatches => {
            let _ = socket.send_to(&answer_for(&forged, id), peer);
            let _ = socket.send_to(&answer_for(&name, id.wrapping_add(1)), peer);
            if matches!(behaviour, Behaviour::OnlyMismatches) {
                return;
            }
        }
    }
    let _ = socket.send_to(&answer_for(&name, id), peer);
}
