//! Forwarding and the cache (issue #4), against a real, independent upstream: Debian's
//! `knotd` ([`crate::support::knot`]), started per test with a zone the test writes.
//! Properties Knot cannot be made to show (a reply for another question, how many queries
//! arrive) use [`FakeUpstream`].

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::assert_eventually;
use crate::support::dns_client::{
    assert_forwarded, dig, query_message, rdata, sorted_rdata, tcp, ttls, udp, udp_edns, udp_raw,
    udp_raw_from,
};
use crate::support::fake_upstream::{Behaviour, FakeUpstream};
use crate::support::knot::{example_zone, txt, Knot, BIG_TXT, MEDIUM_TXT, STATIC_ZONE};
use crate::support::metrics::metric;
use crate::support::server::Server;
use crate::support::{free_port, write};

/// The fake upstream's answer to every A question.
const ANSWER: [u8; 4] = [192, 0, 2, 99];

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
    let server = Server::demo(&[knot.upstream()], &[]);

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
    let out = dig(&[
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
    let server = Server::demo(&[knot.upstream()], &["--upstream-timeout", "300ms"]);
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
    let capped = Server::demo(&[knot.upstream()], &["--cache-max-ttl", "100s"]);
    let raised = Server::demo(&[knot.upstream()], &["--cache-min-ttl", "10m"]);
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
    let server = Server::demo(&[knot.upstream()], &["--upstream-timeout", "300ms"]);
    let capped = Server::demo(
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
    let server = Server::demo(&[knot.upstream()], &["--upstream-timeout", "1s"]);
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
    let server = Server::demo(&upstreams, &["--upstream-timeout", "300ms"]);

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
    write(dir.path(), "static.test.zone", STATIC_ZONE);
    let zones = dir.path().to_str().unwrap();
    let server = Server::demo(
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
    let server = Server::demo(&[knot.upstream()], &[]);
    let texts =
        |message: &Message| -> BTreeSet<String> { rdata(&message.answers).into_iter().collect() };
    let expected = |count: usize| -> BTreeSet<String> { (0..count).map(txt).collect() };

    // Over 1232 bytes: Knot truncates its UDP answer to snapdns, which asks again over TCP.
    let over_tcp = tcp(server.addr, "big.example.test.", RecordType::TXT);
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

    let out = dig(&[
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
    let server = Server::demo(&[knot.upstream()], &["--allow-recursion", "127.0.0.1/32"]);
    let ask_from = |source: &str, name: &str| -> Message {
        let query = query_message(name, RecordType::A, None);
        let reply = udp_raw_from(source, server.addr, &query.to_vec().unwrap()).expect("an answer");
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
    let upstream = FakeUpstream::start(Behaviour::Answer, ANSWER);
    let server = Server::demo(&[upstream.addr.to_string()], &[]);
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
        upstream.seen().is_empty(),
        "RFC 8482 answers are synthesized locally"
    );
}

/// Each forwarded query leaves from its own random port with its own random ID (never the
/// client's), and replies that answer another question or carry another ID are dropped.
#[test]
fn forwarded_queries_use_fresh_ids_and_ports_and_mismatched_replies_are_dropped() {
    let upstream = FakeUpstream::start(Behaviour::MismatchFirst, ANSWER);
    let server = Server::demo(&[upstream.addr.to_string()], &["--upstream-timeout", "1s"]);
    let mut client_ids = Vec::new();
    for i in 0..8 {
        let query = query_message(&format!("host{i}.example.test."), RecordType::A, None);
        client_ids.push(query.metadata.id);
        let reply =
            Message::from_vec(&udp_raw(server.addr, &query.to_vec().unwrap()).unwrap()).unwrap();
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
    let seen = upstream.seen();
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
    let forger = FakeUpstream::start(Behaviour::OnlyMismatches, ANSWER);
    let server = Server::demo(&[forger.addr.to_string()], &["--upstream-timeout", "500ms"]);
    let reply = udp(server.addr, "victim.example.test.", RecordType::A);
    assert_forwarded(&reply, ResponseCode::ServFail);
    assert!(reply.answers.is_empty());
}

#[test]
fn concurrent_misses_make_one_upstream_query() {
    let upstream = FakeUpstream::start(Behaviour::AnswerAfter(Duration::from_millis(200)), ANSWER);
    let server = Server::demo(&[upstream.addr.to_string()], &[]);
    let addr = server.addr;
    let clients: Vec<JoinHandle<Message>> = (0..16)
        .map(|_| std::thread::spawn(move || udp(addr, "popular.example.test.", RecordType::A)))
        .collect();
    for client in clients {
        let reply = client.join().unwrap();
        assert_forwarded(&reply, ResponseCode::NoError);
        assert_eq!(rdata(&reply.answers), ["192.0.2.99"]);
    }
    let seen = upstream.seen();
    let ids: BTreeSet<u16> = seen.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(
        ids.len(),
        1,
        "16 concurrent misses, one upstream query: {seen:?}"
    );
}

/// `--max-forwards` bounds the upstream exchanges in flight: with a silent upstream holding
/// two, every further uncached name is answered SERVFAIL at once instead of taking a socket
/// until its timeout (issue 10, item 2).
#[test]
fn upstream_exchanges_in_flight_are_capped() {
    let silent = FakeUpstream::start(Behaviour::AnswerWhenReleased, ANSWER);
    let server = Server::demo(
        &[silent.addr.to_string()],
        &["--max-forwards", "2", "--upstream-timeout", "30s"],
    );
    // Two queries take the two slots and wait on the silent upstream (as long as it takes).
    let held: Vec<JoinHandle<Message>> = ["held-1.example.test.", "held-2.example.test."]
        .into_iter()
        .map(|name| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                let query = query_message(name, RecordType::A, None);
                socket.send_to(&query.to_vec().unwrap(), addr).unwrap();
                let mut buf = [0u8; 4096];
                let (len, _) = socket.recv_from(&mut buf).expect("an answer once released");
                Message::from_vec(&buf[..len]).unwrap()
            })
        })
        .collect();
    assert_eventually!(
        silent.was_asked("held-1.example.test.") && silent.was_asked("held-2.example.test."),
        "{:?}",
        silent.seen()
    );
    for i in 0..10 {
        let reply = udp(
            server.addr,
            &format!("over-{i}.example.test."),
            RecordType::A,
        );
        assert_forwarded(&reply, ResponseCode::ServFail);
    }
    assert_eq!(
        silent.seen().len(),
        2,
        "nothing beyond the cap went upstream"
    );
    // The held queries still get their answers once the upstream speaks.
    silent.release("held-1.example.test.");
    silent.release("held-2.example.test.");
    for handle in held {
        assert_eq!(rdata(&handle.join().unwrap().answers), ["192.0.2.99"]);
    }
    // The slots are free again.
    silent.release("after.example.test.");
    let after = udp(server.addr, "after.example.test.", RecordType::A);
    assert_eq!(rdata(&after.answers), ["192.0.2.99"]);
}

/// An upstream that timed out is tried after the others for a while: a dead first upstream
/// costs one timeout, not one per cache miss (issue 10, item 2).
#[test]
fn an_upstream_that_timed_out_is_tried_last() {
    let silent = FakeUpstream::start(Behaviour::AnswerWhenReleased, [192, 0, 2, 1]);
    let good = FakeUpstream::start(Behaviour::Answer, ANSWER);
    let server = Server::demo(
        &[silent.addr.to_string(), good.addr.to_string()],
        &["--upstream-timeout", "300ms"],
    );
    for i in 0..10 {
        let reply = udp(
            server.addr,
            &format!("name-{i}.example.test."),
            RecordType::A,
        );
        assert_eq!(rdata(&reply.answers), ["192.0.2.99"], "name-{i}");
    }
    assert_eq!(
        silent.seen().len(),
        1,
        "only the first miss waited on the silent upstream: {:?}",
        silent.seen()
    );
    assert_eq!(good.seen().len(), 10);
}

/// An upstream whose port is closed fails at once (the ICMP port unreachable), not after
/// `--upstream-timeout`: with a 60 s timeout, the client (which waits 2 s) still gets the
/// next upstream's answer, and SERVFAIL when there is no other (issue 10, item 2).
#[test]
fn a_closed_upstream_port_fails_at_once() {
    let closed = format!("127.0.0.1:{}", free_port());
    let good = FakeUpstream::start(Behaviour::Answer, ANSWER);
    let server = Server::demo(
        &[closed.clone(), good.addr.to_string()],
        &["--upstream-timeout", "60s"],
    );
    let reply = udp(server.addr, "first.example.test.", RecordType::A);
    assert_forwarded(&reply, ResponseCode::NoError);
    assert_eq!(rdata(&reply.answers), ["192.0.2.99"]);
    assert_eq!(
        metric(&server, "snapdns_upstream_failures_total"),
        Some(1.0),
        "the closed upstream was tried first and failed"
    );
    let again = udp(server.addr, "second.example.test.", RecordType::A);
    assert_eq!(rdata(&again.answers), ["192.0.2.99"]);
    assert_eq!(
        metric(&server, "snapdns_upstream_failures_total"),
        Some(1.0),
        "the failed upstream is held down and tried last"
    );
    assert_eq!(good.seen().len(), 2);

    let alone = Server::demo(&[closed], &["--upstream-timeout", "60s"]);
    let failed = udp(alone.addr, "www.example.test.", RecordType::A);
    assert_forwarded(&failed, ResponseCode::ServFail);
}

/// Forwarded answers keep the upstream's own encoding (only ID, flags, question case, TTLs and
/// OPT change): Knot compresses an MX answer's names better than a re-encoding would, so the
/// answer must not grow and lose its additional records, or set TC, on the way (issue 10,
/// item 14).
#[test]
fn forwarded_answers_are_no_larger_than_the_upstream_sent() {
    let mut zone = String::from(
        "$ORIGIN example.test.\n$TTL 300\n\
         @ IN SOA ns.example.test. hostmaster.example.test. 1 3600 900 604800 60\n\
         @ IN NS ns\nns IN A 127.0.0.1\n",
    );
    for i in 0..60 {
        zone.push_str(&format!(
            "mx IN MX {i} mail{i}.example.test.\nmail{i} IN A 192.0.2.{i}\n"
        ));
    }
    let knot = Knot::start("example.test.", &zone);
    let server = Server::demo(&[knot.upstream()], &["--max-udp-size", "4096"]);
    let query = query_message("MX.Example.Test.", RecordType::MX, Some(3000))
        .to_vec()
        .unwrap();
    let direct = support_tcp_raw(knot.addr, &query);
    assert!(direct.len() < 3000, "Knot's answer fits: {}", direct.len());
    for _ in 0..2 {
        // A miss, then a cache hit: both in Knot's encoding.
        let reply = udp_raw(server.addr, &query).expect("an answer");
        assert_eq!(reply.len(), direct.len(), "as long as Knot's own answer");
        let ours = Message::from_vec(&reply).unwrap();
        let theirs = Message::from_vec(&direct).unwrap();
        assert!(!ours.metadata.truncation);
        assert!(ours.metadata.recursion_available);
        assert_eq!(ours.queries[0].name().to_string(), "MX.Example.Test.");
        assert_eq!(ours.answers.len(), 60);
        assert_eq!(ours.additionals.len(), theirs.additionals.len());
        assert_eq!(rdata(&ours.answers), rdata(&theirs.answers));
        assert!(ours.answers.iter().all(|r| r.ttl <= 300));
        assert_eq!(ours.edns.as_ref().map(|e| e.max_payload()), Some(4096));
    }
}

fn support_tcp_raw(addr: std::net::SocketAddr, query: &[u8]) -> Vec<u8> {
    crate::support::dns_client::tcp_raw(addr, query)
}
