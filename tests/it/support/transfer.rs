//! A zone transfer client: AXFR over TCP with hickory-proto as the codec, TSIG-signed with
//! hickory's signer and every response verified with its chained verifier (RFC 8945 §5.3.1).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigVerifier, TSigner};

/// The TSIG key the transfer tests share: `xfr-key`, hmac-sha256.
pub const KEY_NAME: &str = "xfr-key";
/// Its secret in base64.
pub const KEY_SECRET: &str = "c25hcGRucyB0cmFuc2ZlciB0ZXN0IGtleSAzMiBieXQ=";

/// `--tsig-key` for [`KEY_NAME`].
pub fn key_flag() -> String {
    format!("{KEY_NAME}:hmac-sha256:{KEY_SECRET}")
}

/// hickory's signer for `name` with `secret` (base64).
pub fn signer(name: &str, secret: &str) -> TSigner {
    let secret = data_encoding::BASE64.decode(secret.as_bytes()).unwrap();
    TSigner::new(
        secret,
        TsigAlgorithm::HmacSha256,
        Name::from_ascii(name).unwrap(),
        300,
    )
    .unwrap()
}

/// What a transfer request got back.
#[derive(Debug)]
pub struct Transfer {
    /// Every response message, in order.
    pub messages: Vec<Message>,
}

impl Transfer {
    /// The answer records of every message, in order.
    pub fn records(&self) -> Vec<Record> {
        self.messages
            .iter()
            .flat_map(|message| message.answers.iter().cloned())
            .collect()
    }

    /// The rcode of the first message.
    pub fn rcode(&self) -> ResponseCode {
        self.messages[0].metadata.response_code
    }
}

/// Sends an AXFR request for `zone` over TCP to `addr` (from `stream` when given), signed
/// with `key` when given, and reads messages until the second SOA, an error rcode, or EOF.
/// Signed responses are verified; a bad signature panics.
pub fn axfr(addr: SocketAddr, zone: &str, key: Option<&TSigner>) -> Transfer {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    axfr_on(&mut stream, zone, RecordType::AXFR, key)
}

/// [`axfr`] on a connected stream, for `qtype` AXFR or IXFR.
pub fn axfr_on(
    stream: &mut TcpStream,
    zone: &str,
    qtype: RecordType,
    key: Option<&TSigner>,
) -> Transfer {
    let mut verifier = send_request(stream, zone, qtype, key);
    let mut messages = Vec::new();
    let mut soas = 0;
    while let Some(bytes) = read_message(stream) {
        let message = match verifier.as_mut() {
            Some(verifier) => match verifier.verify(&bytes) {
                Ok(response) => response.into_message(),
                Err(error) => {
                    // Error responses (BADSIG, BADKEY) are unsigned: only they may fail.
                    let message = Message::from_vec(&bytes).expect("decodable");
                    assert_ne!(
                        message.metadata.response_code,
                        ResponseCode::NoError,
                        "a NOERROR response failed TSIG verification: {error}"
                    );
                    message
                }
            },
            None => Message::from_vec(&bytes).expect("decodable"),
        };
        let rcode = message.metadata.response_code;
        soas += message
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        messages.push(message);
        if rcode != ResponseCode::NoError || soas >= 2 {
            break;
        }
    }
    assert!(!messages.is_empty(), "no response to the transfer request");
    Transfer { messages }
}

/// Sends the request; returns the verifier of its signed responses when `key` signs it.
pub fn send_request(
    stream: &mut TcpStream,
    zone: &str,
    qtype: RecordType,
    key: Option<&TSigner>,
) -> Option<TSigVerifier> {
    let mut message = Message::new(0x5a5a, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(zone).unwrap(), qtype));
    let verifier = key.and_then(|key| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        message.finalize(key, now).unwrap()
    });
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).unwrap();
    verifier
}

/// One length-prefixed message, or `None` at EOF.
pub fn read_message(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).ok()?;
    let mut bytes = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut bytes).ok()?;
    Some(bytes)
}

/// The SOA serial of a record, if it is an SOA.
pub fn soa_serial(record: &Record) -> Option<u32> {
    match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    }
}
