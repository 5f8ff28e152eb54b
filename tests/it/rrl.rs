//! Response rate limiting (issue 10, item 8): bursts of identical UDP queries from a client
//! outside `--allow-recursion` (127.0.0.2, with only 127.0.0.1 allowed to recurse) are answered
//! up to the rate, then every `--rrl-slip`-th truncated and the rest dropped; TCP, recursive
//! clients and `--rrl-rate 0` are never limited; the counts show in `/metrics`; SIGHUP applies
//! new limits. Assertions are on counts, not on timing.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::assert_eventually;
use crate::support::dns_client::{dig, query_message, sorted_rdata, tcp_raw_from};
use crate::support::metrics::metric;
use crate::support::server::Server;

const NAME: &str = "web.service.consul.";
const OUTSIDE: &str = "127.0.0.2:0";
const INSIDE: &str = "127.0.0.1:0";

/// What came back for a burst of queries.
#[derive(Debug, Default)]
struct Tally {
    /// Full answers (TC=0, records).
    full: usize,
    /// Slipped answers (TC=1, no records).
    truncated: usize,
    /// Queries that got nothing (counted by the server as dropped).
    silent: usize,
}

fn dropped(server: &Server) -> usize {
    metric(server, "snapdns_rrl_dropped_total").expect("rrl dropped counter") as usize
}

fn slipped(server: &Server) -> usize {
    metric(server, "snapdns_rrl_slipped_total").expect("rrl slipped counter") as usize
}

/// Sends `count` identical queries for [`NAME`] from `source` as fast as the socket takes
/// them, then collects the replies until every query is either answered or counted as dropped
/// by the server.
fn burst(server: &Server, source: &str, count: u16) -> Tally {
    let dropped_before = dropped(server);
    let socket = UdpSocket::bind(source).expect("bind client");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for id in 0..count {
        let mut query = query_message(NAME, RecordType::A, Some(1232));
        query.metadata.id = id;
        socket
            .send_to(&query.to_vec().unwrap(), server.addr)
            .unwrap();
    }
    let mut tally = Tally::default();
    let mut seen = HashSet::new();
    let mut buf = vec![0u8; 65535];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match socket.recv_from(&mut buf) {
            Ok((len, _)) => {
                let reply = Message::from_vec(&buf[..len]).expect("a well-formed reply");
                assert!(seen.insert(reply.metadata.id), "one reply per query");
                assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
                assert_eq!(reply.queries.len(), 1, "the question is echoed");
                if reply.metadata.truncation {
                    assert!(reply.answers.is_empty() && reply.additionals.is_empty());
                    assert!(reply.edns.is_some(), "the OPT record is kept");
                    tally.truncated += 1;
                } else {
                    assert_eq!(sorted_rdata(&reply.answers), ["10.0.1.11", "10.0.1.12"]);
                    tally.full += 1;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                tally.silent = dropped(server) - dropped_before;
                if seen.len() + tally.silent == usize::from(count) {
                    return tally;
                }
                assert!(
                    Instant::now() < deadline,
                    "{count} queries, {tally:?} so far"
                );
            }
            Err(e) => panic!("receive failed: {e}"),
        }
    }
}

/// A TCP query for [`NAME`] from `local`.
fn tcp_from(local: &str, server: SocketAddr) -> Message {
    let query = query_message(NAME, RecordType::A, None).to_vec().unwrap();
    Message::from_vec(&tcp_raw_from(local, server, &query)).unwrap()
}

fn demo(extra: &[&str]) -> Server {
    let mut args = vec!["--allow-recursion", "127.0.0.1/32"];
    args.extend_from_slice(extra);
    Server::demo(&[], &args)
}

#[test]
fn a_limited_client_gets_its_rate_then_every_second_answer_truncated_and_tcp_in_full() {
    let server = demo(&["--rrl-rate", "1", "--rrl-slip", "2"]);
    let tally = burst(&server, OUTSIDE, 100);
    // One answer of burst, one more per second the burst takes (well under a second here).
    assert!(
        (1..=5).contains(&tally.full),
        "a handful of full answers: {tally:?}"
    );
    let limited = 100 - tally.full;
    assert_eq!(
        tally.truncated,
        limited / 2,
        "every second one slips: {tally:?}"
    );
    assert_eq!(
        tally.silent,
        limited - limited / 2,
        "the rest dropped: {tally:?}"
    );
    assert_eq!(slipped(&server), tally.truncated);
    assert_eq!(dropped(&server), tally.silent);

    // TCP is never limited, and a real client that gets TC=1 retries over it.
    let over_tcp = tcp_from("127.0.0.2:0", server.addr);
    assert!(!over_tcp.metadata.truncation);
    assert_eq!(sorted_rdata(&over_tcp.answers), ["10.0.1.11", "10.0.1.12"]);
}

#[test]
fn dig_retries_a_slipped_answer_over_tcp() {
    let server = demo(&["--rrl-rate", "1", "--rrl-slip", "1"]);
    // Use up the flow's budget; with slip 1 every limited answer comes back truncated.
    let tally = burst(&server, OUTSIDE, 20);
    assert_eq!((tally.truncated, tally.silent), (20 - tally.full, 0));
    let port = server.addr.port().to_string();
    let out = dig(&[
        "-b",
        "127.0.0.2",
        "@127.0.0.1",
        "-p",
        &port,
        "+tries=1",
        "+time=2",
        NAME,
        "A",
    ]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("ANSWER: 2,"), "{out}");
}

#[test]
fn recursive_clients_and_a_rate_of_zero_are_never_limited() {
    let server = demo(&["--rrl-rate", "1", "--rrl-slip", "2"]);
    let inside = burst(&server, INSIDE, 100);
    assert_eq!((inside.full, inside.truncated, inside.silent), (100, 0, 0));

    let off = demo(&["--rrl-rate", "0"]);
    let outside = burst(&off, OUTSIDE, 100);
    assert_eq!(
        (outside.full, outside.truncated, outside.silent),
        (100, 0, 0)
    );
    assert_eq!((slipped(&off), dropped(&off)), (0, 0));

    // The default (200 a second, one second of burst) lets 100 through.
    let default = demo(&[]);
    let outside = burst(&default, OUTSIDE, 100);
    assert_eq!(
        (outside.full, outside.truncated, outside.silent),
        (100, 0, 0)
    );
}

#[test]
fn sighup_applies_new_rate_limits() {
    let (server, config) =
        Server::demo_with_config("rrl-rate = 0\n", &["--allow-recursion", "127.0.0.1/32"]);
    assert_eq!(burst(&server, OUTSIDE, 20).full, 20);

    std::fs::write(&config, "rrl-rate = 1\nrrl-slip = 1\n").unwrap();
    server.signal("HUP");
    assert_eventually!(
        server.log_count("configuration reloaded") == 1,
        "{}",
        server.log()
    );
    let tally = burst(&server, OUTSIDE, 20);
    assert!(tally.full <= 5, "{tally:?}");
    assert_eq!((tally.truncated, tally.silent), (20 - tally.full, 0));
    assert!(
        !server.log().contains("take effect only after a restart"),
        "applied, not reported as needing a restart: {}",
        server.log()
    );
}
