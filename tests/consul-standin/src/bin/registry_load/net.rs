//! HTTP to the replicas' `/health` and to the stand-in: plain HTTP/1.0 over a std `TcpStream`,
//! or `curl -sk` when the stand-in speaks HTTPS (its control API shares the TLS port).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

/// One HTTP exchange: `method` `url` with an optional body; the answer's status and body.
pub(crate) fn request(
    method: &str,
    url: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    if url.starts_with("https://") {
        return curl(method, url, body);
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: not an http(s) URL"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = host.parse().map_err(|e| format!("{host}: {e}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("{url}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    // HTTP/1.0 so that the answer is never chunked and ends with the connection.
    let head = format!(
        "{method} {} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        if path.is_empty() { "/" } else { path },
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| format!("{url}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("{url}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: no HTTP header"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: bad status line"))?;
    Ok((status, body.to_string()))
}

fn curl(method: &str, url: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sk",
        "--max-time",
        "30",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ]);
    if let Some(body) = body {
        cmd.args(["--data-binary", body]);
    }
    let out = cmd.arg(url).output().map_err(|e| format!("curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text
        .rsplit_once('\n')
        .ok_or_else(|| format!("{url}: curl gave no status"))?;
    let status = code
        .trim()
        .parse()
        .map_err(|_| format!("{url}: curl failed"))?;
    Ok((status, body.to_string()))
}

/// A JSON answer with status 200. A failed exchange is tried twice more, 200 ms apart: a
/// busy stand-in may drop one. Reads and flips are idempotent; a repeated instance add would
/// add two, and the row would then show that change as not visible rather than hide it.
pub(crate) fn json(method: &str, url: &str, body: Option<&str>) -> Result<Value, String> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        match request(method, url, body) {
            Ok((200, text)) => {
                return serde_json::from_str(&text).map_err(|e| format!("{url}: {e}"))
            }
            Ok((status, text)) => last = format!("{method} {url}: HTTP {status}: {text}"),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The registry counters of one replica's `/health`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub(crate) requests: u64,
    pub(crate) wire_bytes: u64,
    pub(crate) json_bytes: u64,
    pub(crate) full_syncs: u64,
    pub(crate) index: u64,
}

/// What `/health` says, with the watch mode.
pub(crate) fn health(http: SocketAddr) -> Result<(Totals, String), String> {
    let v = json("GET", &format!("http://{http}/health"), None)?;
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let totals = Totals {
        requests: n("/totals/requests"),
        wire_bytes: n("/totals/wire_bytes"),
        json_bytes: n("/totals/json_bytes"),
        full_syncs: n("/totals/full_syncs"),
        index: n("/snapshot/index"),
    };
    let mode = v
        .pointer("/watches/mode")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    Ok((totals, mode))
}
