//! DNS over TCP under hostile clients (issue 10, items 3 and 4): a connection cap with a
//! per-address share, query buffers that grow only as bytes arrive, and a deadline on writes
//! for clients that never read. Server-side socket states come from `ss` (iproute2).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

use crate::assert_eventually;
use crate::support::dns_client::{query_message, rdata, tcp_connect_from, udp};
use crate::support::registry::many;
use crate::support::server::Server;

/// The server side of established TCP connections on `port`: (Recv-Q, Send-Q) each.
fn server_side(port: u16) -> Vec<(u64, u64)> {
    let output = Command::new("ss")
        .args([
            "-tnH",
            "state",
            "established",
            &format!("( sport = :{port} )"),
        ])
        .output()
        .expect("ss is installed (iproute2)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
        .collect()
}

fn framed_query(name: &str, qtype: RecordType) -> Vec<u8> {
    let query = query_message(name, qtype, None).to_vec().unwrap();
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    framed
}

/// One query on an open connection; `None` when the server closed it.
fn ask(stream: &mut TcpStream, name: &str) -> Option<Message> {
    stream.write_all(&framed_query(name, RecordType::A)).ok()?;
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).ok()?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut body).ok()?;
    Message::from_vec(&body).ok()
}

#[test]
fn connections_beyond_the_cap_or_an_address_share_are_closed() {
    let server = Server::demo(
        &[],
        &[
            "--max-tcp-clients",
            "3",
            "--max-tcp-clients-per-address",
            "2",
        ],
    );
    let mut first = tcp_connect_from("127.0.0.1:0", server.addr);
    let mut second = tcp_connect_from("127.0.0.1:0", server.addr);
    for stream in [&mut first, &mut second] {
        let reply = ask(stream, "web-01.node.consul.").expect("admitted");
        assert_eq!(rdata(&reply.answers), ["10.0.1.11"]);
    }
    // 127.0.0.1's share is two: a third connection from it is closed at once.
    let mut third = tcp_connect_from("127.0.0.1:0", server.addr);
    let mut buf = [0u8; 1];
    assert_eq!(third.read(&mut buf).unwrap_or(0), 0, "closed by the server");
    // Another address still has room, then the total of three is reached.
    let mut other = tcp_connect_from("127.0.0.2:0", server.addr);
    assert!(ask(&mut other, "web-01.node.consul.").is_some());
    let mut fourth = tcp_connect_from("127.0.0.3:0", server.addr);
    assert_eq!(fourth.read(&mut buf).unwrap_or(0), 0, "total reached");
    assert_eq!(
        crate::support::metrics::metric(&server, "snapdns_tcp_clients_refused_total"),
        Some(2.0)
    );
    // UDP is not affected, and a closed connection frees its slot.
    assert_eq!(
        rdata(&udp(server.addr, "web-01.node.consul.", RecordType::A).answers),
        ["10.0.1.11"]
    );
    drop(first);
    assert_eventually!(
        {
            let mut again = tcp_connect_from("127.0.0.1:0", server.addr);
            ask(&mut again, "web-01.node.consul.").is_some()
        },
        "a slot frees when a client leaves"
    );
}

#[test]
fn a_length_prefix_alone_does_not_allocate_the_message() {
    const CONNECTIONS: usize = 1000;
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let server = Server::demo(
        &[],
        &[
            "--tcp-idle-timeout",
            "60s",
            "--max-tcp-clients",
            "2000",
            "--max-tcp-clients-per-address",
            "2000",
        ],
    );
    let port = server.addr.port();
    let before = server.rss_kib();
    let mut streams = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.write_all(&[0xff, 0xff]).unwrap();
        streams.push(stream);
    }
    // Every prefix has been read by the server: all its sockets are established and empty.
    assert_eventually!(
        {
            let sockets = server_side(port);
            sockets.len() == CONNECTIONS && sockets.iter().all(|(recv_q, _)| *recv_q == 0)
        },
        "{} server-side sockets",
        server_side(port).len()
    );
    let grown_kib = server.rss_kib().saturating_sub(before);
    // 64 KiB each would be over 60 MiB; a task and a small buffer each stay far below.
    assert!(
        grown_kib < 24 * 1024,
        "{CONNECTIONS} prefixes grew the server by {grown_kib} KiB"
    );
    drop(streams);
}

#[test]
fn a_client_that_never_reads_its_answers_is_closed() {
    // Answers of over 10 KB: three thousand of them overfill the client's and the server's
    // socket buffers.
    let (server, _) = Server::with_registry_file(
        &many("big", 200),
        &["--no-forward", "--tcp-idle-timeout", "1s"],
    );
    let port = server.addr.port();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let query = framed_query("big.service.consul.", RecordType::SRV);
    let mut pipelined = Vec::new();
    for _ in 0..3000 {
        pipelined.extend_from_slice(&query);
    }
    stream.write_all(&pipelined).unwrap();
    // The server's writes stall, and after the idle timeout it gives the connection up.
    assert_eventually!(
        server_side(port).is_empty(),
        "still connected: {:?}",
        server_side(port)
    );
    drop(stream);
}
