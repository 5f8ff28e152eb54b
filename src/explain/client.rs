//! `snapdns explain NAME [TYPE] [--http ADDR] [--json]`: a client of `GET /v1/explain`.
//!
//! A plain HTTP/1.1 request over a std `TcpStream` (the endpoint is the server's own,
//! HTTP only, usually on loopback): no HTTP client crate, so `reqwest` stays with the Consul
//! client. The reply is printed as the server sent it (`--json`) or as readable text.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use percent_encoding::utf8_percent_encode;
use serde_json::Value;

/// How long connecting, sending and reading may each take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of a reply read (the server bounds its accounts well below this).
const MAX_REPLY: u64 = 16 << 20;

/// Why `snapdns explain` got no account.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint could not be reached or read.
    #[error("{0}")]
    Io(String),
    /// The server refused the question (400): the message says why.
    #[error("{0}")]
    Rejected(String),
    /// The server answered something else.
    #[error("{0}")]
    Server(String),
}

/// Asks the endpoint at `http` (`host:port`) about `name` and `qtype`.
pub fn fetch(http: &str, name: &str, qtype: Option<&str>) -> Result<Value, ClientError> {
    let io = |what: &str, error: std::io::Error| ClientError::Io(format!("{what} {http}: {error}"));
    let addr = http
        .to_socket_addrs()
        .map_err(|e| io("cannot resolve", e))?
        .next()
        .ok_or_else(|| ClientError::Io(format!("cannot resolve {http}")))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| io("cannot connect to", e))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| io("cannot use", e))?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| io("cannot use", e))?;
    let mut target = format!("/v1/explain?name={}", escape(name));
    if let Some(qtype) = qtype {
        target.push_str(&format!("&type={}", escape(qtype)));
    }
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {http}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| io("cannot send to", e))?;
    let mut reply = Vec::new();
    stream
        .take(MAX_REPLY)
        .read_to_end(&mut reply)
        .map_err(|e| io("cannot read from", e))?;
    let (status, body) = split_reply(&reply)
        .ok_or_else(|| ClientError::Server(format!("{http} sent no HTTP reply")))?;
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    match (status, parsed) {
        (200, Ok(account)) => Ok(account),
        (400, Ok(error)) => Err(ClientError::Rejected(
            error["error"].as_str().unwrap_or("bad request").to_string(),
        )),
        (status, _) => Err(ClientError::Server(format!(
            "{http} answered HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
        ))),
    }
}

/// The status code and body of an HTTP/1.1 reply sent with a `Content-Length` (as the
/// endpoint sends every reply) or closed after the body.
fn split_reply(reply: &[u8]) -> Option<(u16, &[u8])> {
    let end = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&reply[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = &reply[end + 4..];
    let length = head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    Some((
        status,
        &body[..length.unwrap_or(body.len()).min(body.len())],
    ))
}

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3).
fn escape(text: &str) -> String {
    utf8_percent_encode(text, crate::registry::consul::QUERY_VALUE).to_string()
}

/// The account as text for a terminal.
pub fn render(account: &Value) -> String {
    let mut out = String::new();
    let text = |value: &Value| value.as_str().unwrap_or("").to_string();
    let rule = &account["rule"];
    out.push_str(&format!(
        "{} {}\n",
        text(&account["name"]),
        text(&account["type"])
    ));
    let mut about = Vec::new();
    for key in ["service", "tag", "node", "datacenter", "zone", "form"] {
        if let Some(value) = rule[key].as_str() {
            about.push(format!("{key} {value}"));
        }
    }
    out.push_str(&format!("rule:     {}", text(&rule["rule"])));
    if !about.is_empty() {
        out.push_str(&format!(" ({})", about.join(", ")));
    }
    out.push('\n');
    if let Some(note) = rule["note"].as_str() {
        out.push_str(&format!("note:     {note}\n"));
    }
    let answer = &account["answer"];
    if answer["forwarded"].as_bool() == Some(true) {
        let upstreams: Vec<String> = list(&answer["upstreams"]);
        out.push_str(&format!(
            "answer:   forwarded to {} (not sent by explain)\n",
            if upstreams.is_empty() {
                "no upstream".into()
            } else {
                upstreams.join(", ")
            }
        ));
    } else {
        out.push_str(&format!("answer:   {}\n", text(&answer["rcode"])));
        for section in ["answer", "authority", "additional"] {
            let records = list(&answer[section]);
            if !records.is_empty() {
                out.push_str(&format!("  {section}:\n"));
                for record in records {
                    out.push_str(&format!("    {record}\n"));
                }
            }
        }
    }
    let snapshot = &account["snapshot"];
    if snapshot.is_object() {
        out.push_str(&format!(
            "snapshot: serial {}, index {}, fetched {} ({} s ago)\n",
            snapshot["serial"],
            snapshot["index"],
            text(&snapshot["fetched_at"]),
            snapshot["age_seconds"]
        ));
    } else {
        out.push_str("snapshot: none yet\n");
    }
    let instances = &account["instances"];
    if instances.is_object() {
        out.push_str(&format!(
            "instances: {} served, {} left out\n",
            instances["served"], instances["left_out"]
        ));
        for instance in instances["list"].as_array().into_iter().flatten() {
            let state = if instance["served"].as_bool() == Some(true) {
                "served"
            } else {
                "left out"
            };
            out.push_str(&format!(
                "  {state:<9} {} on {} ({}:{})\n",
                text(&instance["id"]),
                text(&instance["node"]),
                text(&instance["address"]),
                instance["port"]
            ));
            for reason in instance["reasons"].as_array().into_iter().flatten() {
                out.push_str(&format!("            - {}\n", text(&reason["text"])));
            }
            if let Some(registry) = instance["held"]["registry"].as_str() {
                out.push_str(&format!("            - the registry says: {registry}\n"));
            }
        }
        let (listed, total) = (&instances["listed"], &instances["total"]);
        if listed != total {
            out.push_str(&format!("  ({listed} of {total} listed)\n"));
        }
    }
    out
}

fn list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_split_and_names_escaped() {
        let reply = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}trailing";
        assert_eq!(split_reply(reply), Some((400, &b"{}"[..])));
        assert_eq!(escape("a_b.c d&e"), "a_b.c%20d%26e");
    }
}
