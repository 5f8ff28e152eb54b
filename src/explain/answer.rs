//! The answer a question gets now, from the real answering code: the [`Responder`] runs on a
//! synthesized query (over "TCP", so nothing is cut) and its reply is decoded with
//! hickory-proto into the rcode and the records of each section in presentation format.
//! Forwarded names are not sent anywhere: the responder only says it would forward them.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use serde_json::{json, Value};

use crate::dns::{Outcome, Responder, Scratch, Transport};

/// What the responder does with one question.
#[derive(Debug)]
pub enum Answered {
    /// Answered locally: the decoded reply.
    Reply(Message),
    /// Handed to the forwarder (a client that may recurse, a name served nowhere here).
    Forward,
    /// Nothing sent (cannot happen for a well-formed query; kept for completeness).
    Nothing,
}

/// Runs the responder on `name`/`qtype` as asked by `client`, with recursion desired.
pub fn ask(responder: &Responder, name: &Name, qtype: RecordType, client: IpAddr) -> Answered {
    let mut message = Message::new(0, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(name.clone(), qtype));
    let Ok(query) = message.to_vec() else {
        return Answered::Nothing;
    };
    let mut out = Vec::new();
    let mut scratch = Scratch::default();
    match responder.respond(&query, client, Transport::Tcp, &mut out, &mut scratch) {
        Outcome::Reply => match Message::from_vec(&out) {
            Ok(reply) => Answered::Reply(reply),
            Err(_) => Answered::Nothing,
        },
        Outcome::Forward => Answered::Forward,
        // A transfer is a stream, not an answer; the question is never signed.
        Outcome::Ignore | Outcome::Transfer | Outcome::Signed => Answered::Nothing,
    }
}

/// The client a question is asked as: one that may recurse when any may (the first
/// `--allow-recursion` network), so that forwarding shows; else a loopback address.
pub fn client(responder: &Responder) -> IpAddr {
    responder
        .policy()
        .allow_recursion
        .first()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |net| net.addr())
}

/// A reply as JSON: rcode, the header flags set, and each section's records as
/// `name TTL class type data`, sorted (A/AAAA answers are shuffled per query).
pub fn reply_json(reply: &Message) -> Value {
    let section = |records: &[hickory_proto::rr::Record]| {
        let mut lines: Vec<String> = records.iter().map(ToString::to_string).collect();
        lines.sort();
        lines
    };
    let meta = &reply.metadata;
    let flags: Vec<&str> = [
        (meta.authoritative, "aa"),
        (meta.truncation, "tc"),
        (meta.recursion_desired, "rd"),
        (meta.recursion_available, "ra"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    json!({
        "rcode": rcode_name(meta.response_code),
        "flags": flags,
        "answer": section(&reply.answers),
        "authority": section(&reply.authorities),
        "additional": section(&reply.additionals),
    })
}

/// The rcode as dig spells it.
pub fn rcode_name(rcode: ResponseCode) -> String {
    match u16::from(rcode) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        9 => "NOTAUTH".into(),
        16 => "BADVERS".into(),
        other => format!("RCODE{other}"),
    }
}
