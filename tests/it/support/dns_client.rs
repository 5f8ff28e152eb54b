//! DNS over real sockets, the client side: queries built and answers decoded with
//! hickory-proto (an independent codec), over UDP, TCP and `dig`, and the views of answers the
//! assertions compare (rdata texts, TTLs, the header of a forwarded answer).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::server::Server;

/// A query message for `name`/`qtype`, with EDNS when `edns_payload` is set.
pub fn query_message(name: &str, qtype: RecordType, edns_payload: Option<u16>) -> Message {
    let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if let Some(payload) = edns_payload {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
    }
    message
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        & 0xffff) as u16
}

/// Sends raw bytes over UDP from `bind` and returns the raw reply (None after 2 s).
pub fn udp_raw_from(bind: &str, addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(bind).expect("bind client");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(bytes, addr).expect("send");
    let mut buf = vec![0u8; 65535];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// Sends raw bytes over UDP and returns the raw reply.
pub fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    udp_raw_from("127.0.0.1:0", addr, bytes)
}

/// A UDP query; panics when no (decodable) answer comes.
pub fn udp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp_edns(addr, name, qtype, None)
}

/// A UDP query with an optional EDNS payload size.
pub fn udp_edns(addr: SocketAddr, name: &str, qtype: RecordType, edns: Option<u16>) -> Message {
    let query = query_message(name, qtype, edns);
    let reply = udp_raw(addr, &query.to_vec().unwrap())
        .unwrap_or_else(|| panic!("no UDP answer for {name} {qtype}"));
    let message = Message::from_vec(&reply).expect("decodable answer");
    assert_eq!(message.metadata.id, query.metadata.id, "reply ID matches");
    message
}

/// Sends raw bytes over TCP (length-prefixed) and returns the raw reply.
pub fn tcp_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    tcp_raw_from("127.0.0.1:0", addr, bytes)
}

/// A TCP connection to `server` from the local address `local` (`127.0.0.2:0`, say), with a
/// 10 s read timeout.
pub fn tcp_connect_from(local: &str, server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(server),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket
        .bind(&local.parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect(&server.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends raw bytes over TCP (length-prefixed) from `local` and returns the raw reply.
pub fn tcp_raw_from(local: &str, addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = tcp_connect_from(local, addr);
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).expect("reply length");
    let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut reply).expect("reply");
    reply
}

/// A TCP query.
pub fn tcp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let query = query_message(name, qtype, None);
    let reply = tcp_raw(addr, &query.to_vec().unwrap());
    let message = Message::from_vec(&reply).expect("decodable answer");
    assert_eq!(message.metadata.id, query.metadata.id);
    message
}

/// Every answer of `addr` to `questions` over UDP as text: the rcode and each section's
/// records, sorted (A/AAAA answers are shuffled per query), for comparing two servers or one
/// server at two moments.
pub fn sorted_answers(addr: SocketAddr, questions: &[(&str, RecordType)]) -> Vec<String> {
    let sorted = |records: &[Record]| {
        let mut records = rrs(records);
        records.sort();
        records
    };
    questions
        .iter()
        .map(|(name, qtype)| {
            let reply = udp(addr, name, *qtype);
            format!(
                "{name} {qtype}: {:?} {:?} {:?} {:?}",
                reply.metadata.response_code,
                sorted(&reply.answers),
                sorted(&reply.authorities),
                sorted(&reply.additionals),
            )
        })
        .collect()
}

/// The rdata of answer records as text, in order (`10.0.0.1`, `1 1 80 web-01.node...`).
pub fn rdata(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.data.to_string()).collect()
}

/// Sorted rdata texts of answers.
pub fn sorted_rdata(records: &[Record]) -> Vec<String> {
    let mut out = rdata(records);
    out.sort();
    out
}

/// (owner, type, rdata) of each record.
pub fn rrs(records: &[Record]) -> Vec<(String, RecordType, String)> {
    records
        .iter()
        .map(|r| (r.name.to_string(), r.record_type(), r.data.to_string()))
        .collect()
}

/// The SOA in the authority section, if any.
pub fn soa(message: &Message) -> Option<&hickory_proto::rr::rdata::SOA> {
    message.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(soa),
        _ => None,
    })
}

/// Runs `dig` with `args` and returns stdout.
pub fn dig(args: &[&str]) -> String {
    let output = Command::new("dig")
        .args(args)
        .output()
        .expect("dig is installed (bind9-dnsutils)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The TTL of each record, in order.
pub fn ttls(records: &[Record]) -> Vec<u32> {
    records.iter().map(|record| record.ttl).collect()
}

/// Asserts the rcode of `message`, showing the whole message when it differs.
#[track_caller]
pub fn assert_rcode(message: &Message, rcode: ResponseCode) {
    assert_eq!(
        message.metadata.response_code, rcode,
        "rcode of {message:?}"
    );
}

/// Asserts the header every forwarded answer carries: `rcode`, QR, RA and RD set, AA clear.
#[track_caller]
pub fn assert_forwarded(message: &Message, rcode: ResponseCode) {
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

/// Sorted A records of `<service>.service.consul` from `server`; empty for NXDOMAIN or SERVFAIL.
pub fn service_addresses(server: &Server, service: &str) -> Vec<String> {
    let reply = udp(
        server.addr,
        &format!("{service}.service.consul."),
        RecordType::A,
    );
    sorted_rdata(&reply.answers)
}

/// The rcode of an A query for `<service>.service.consul` to `server`.
pub fn service_rcode(server: &Server, service: &str) -> ResponseCode {
    udp(
        server.addr,
        &format!("{service}.service.consul."),
        RecordType::A,
    )
    .metadata
    .response_code
}

/// The serial of the `consul.` SOA at `addr`, if it answers one.
pub fn soa_serial(addr: SocketAddr) -> Option<u32> {
    udp(addr, "consul.", RecordType::SOA)
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
}
