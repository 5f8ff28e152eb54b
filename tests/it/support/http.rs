//! One small HTTP/1.1 client (`Connection: close`, one request per connection) for snapdns's
//! `/health` and `/metrics` and the Consul stand-in's API and control endpoints.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use super::server::Server;

/// What came back: the status code, the Content-Type (empty when absent) and the body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The Content-Type header's value.
    pub content_type: String,
    /// The body, which must be UTF-8.
    pub body: String,
}

/// One request with `Connection: close`; errors when the connection fails or the response is
/// not a UTF-8 HTTP response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw)
        .map_err(|e| std::io::Error::other(format!("response is not UTF-8: {e}")))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no end of headers: {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {head:?}")))?;
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    Ok(Response {
        status,
        content_type,
        body: body.to_string(),
    })
}

/// A GET that must get a response.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, "").unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// snapdns's `/health`: (status code, JSON).
pub fn health(server: &Server) -> (u16, Value) {
    let response = get(
        server.http.expect("snapdns logged its http address"),
        "/health",
    );
    let report = serde_json::from_str(&response.body).expect("health is JSON");
    (response.status, report)
}

/// `registry.state` of snapdns's `/health` (empty when absent).
pub fn registry_state(server: &Server) -> String {
    health(server).1["registry"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}
