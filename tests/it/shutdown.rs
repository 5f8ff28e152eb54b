//! SIGTERM (issue #5): snapdns stops accepting, finishes the queries in flight over TCP and
//! UDP, closes its ports and exits 0.

use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::assert_eventually;
use crate::support::dns_client::{query_message, rdata, tcp, udp_raw};
use crate::support::fake_upstream::{Behaviour, FakeUpstream};
use crate::support::server::Server;

#[test]
fn sigterm_finishes_an_in_flight_query_and_exits_0() {
    let upstream = FakeUpstream::start(Behaviour::AnswerWhenReleased, [192, 0, 2, 1]);
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
        let query = query_message("slow-udp.example.test.", RecordType::A, None);
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
    let query = query_message("web.service.consul.", RecordType::A, None);
    assert!(udp_raw(addr, &query.to_vec().unwrap()).is_none());
    // The HTTP listener too.
    assert!(TcpStream::connect_timeout(&server.http.unwrap(), Duration::from_millis(500)).is_err());
}

/// SIGTERM during a long snapshot build (a huge registry change) does not wait for the build:
/// it is abandoned and nothing of it is published (issue 10, item 7).
#[test]
fn sigterm_abandons_a_snapshot_build_in_progress() {
    let registry = crate::support::registry::many("huge", 20_000);
    let (mut server, path) = Server::with_registry_file(&registry, &["--no-forward"]);
    assert_eq!(server.log_count("registry file loaded"), 1);
    // A change to one instance: the whole file is parsed and the service built again.
    let mut changed = registry.clone();
    changed["huge"][0]["Service"]["Port"] = serde_json::json!(1);
    crate::support::registry::replace_registry_file(&path, &changed);
    assert_eventually!(server.log_count("registry file changed; loading it") == 1);
    server.signal("TERM");
    assert!(server.wait_exit().success());
    assert_eq!(
        server.log_count("registry file loaded"),
        1,
        "the build in progress was abandoned, not finished: {}",
        server.log()
    );
}
