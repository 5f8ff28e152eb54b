//! `GET /v1/explain?name=<dns name>&type=<qtype>`: why a name is (not) answered the way it is.
//!
//! The endpoint only parses and bounds what the caller sends and renders the result: the
//! account itself comes from an [`Explain`] the app hands in (`crate::explain`, which reads
//! the serving side; this module never names it, see docs/ARCHITECTURE.md).

use hyper::StatusCode;
use serde_json::Value;

/// The most bytes of a query string read: a name (253), a type and their escapes fit.
pub const MAX_QUERY_LEN: usize = 1024;
/// The longest name accepted, in presentation format without the final dot (RFC 1035 §2.3.4
/// limits names to 255 bytes in wire format: 253 characters written out).
pub const MAX_NAME_LEN: usize = 253;
/// The longest type accepted (`NSEC3PARAM`, `TYPE65535`).
pub const MAX_TYPE_LEN: usize = 16;

/// Explains one question. Implemented outside `http` (it reads the DNS answering code) and
/// handed in as a value.
pub trait Explain: Send + Sync + std::fmt::Debug {
    /// The account of `name` (at most [`MAX_NAME_LEN`] bytes, no final dot needed) asked with
    /// `qtype` (a type mnemonic or `TYPE<n>`; `None` picks a default), or why the question is
    /// not one that can be asked (a message for the caller, answered with 400).
    fn explain(&self, name: &str, qtype: Option<&str>) -> Result<Value, String>;
}

/// The answer to `GET /v1/explain` with the query string `query`: 200 and the account, or
/// 400 and a message.
pub fn explain(explainer: &dyn Explain, query: Option<&str>) -> (StatusCode, Value) {
    match parse(query.unwrap_or("")) {
        Ok((name, qtype)) => match explainer.explain(&name, qtype.as_deref()) {
            Ok(account) => (StatusCode::OK, account),
            Err(message) => bad_request(message),
        },
        Err(message) => bad_request(message),
    }
}

fn bad_request(message: String) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        serde_json::json!({ "error": message }),
    )
}

/// The name and type of a query string, bounded.
fn parse(query: &str) -> Result<(String, Option<String>), String> {
    if query.len() > MAX_QUERY_LEN {
        return Err(format!(
            "the query string is longer than {MAX_QUERY_LEN} bytes"
        ));
    }
    let (mut name, mut qtype) = (None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value).ok_or_else(|| format!("{key}: bad percent-encoding"))?;
        match key {
            "name" => name = Some(value),
            "type" => qtype = Some(value),
            other => return Err(format!("unknown parameter {:?}", excerpt(other))),
        }
    }
    let name = name
        .filter(|name| !name.is_empty())
        .ok_or("name is missing: /v1/explain?name=web.service.consul&type=A")?;
    let bare = name.strip_suffix('.').unwrap_or(&name);
    if bare.len() > MAX_NAME_LEN {
        return Err(format!(
            "name is {} bytes long; a DNS name has at most {MAX_NAME_LEN}",
            bare.len()
        ));
    }
    if let Some(qtype) = &qtype {
        if qtype.len() > MAX_TYPE_LEN {
            return Err(format!("type is longer than {MAX_TYPE_LEN} bytes"));
        }
    }
    Ok((name, qtype.filter(|qtype| !qtype.is_empty())))
}

/// Percent-decoding (`+` is a space, as in forms); `None` for a bad escape or bytes that are
/// not UTF-8.
fn decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'%' => {
                let hex = bytes.get(at + 1..at + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                at += 3;
            }
            b'+' => {
                out.push(b' ');
                at += 1;
            }
            byte => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The start of caller-supplied text, for a message.
fn excerpt(text: &str) -> &str {
    crate::registry::truncated(text, 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_are_decoded_and_bounded() {
        assert_eq!(
            parse("name=web.service.consul&type=SRV"),
            Ok(("web.service.consul".into(), Some("SRV".into())))
        );
        assert_eq!(parse("type=&name=a%2Eb."), Ok(("a.b.".into(), None)));
        assert!(parse("type=A").unwrap_err().contains("name is missing"));
        assert!(parse(&format!("name={}", "a".repeat(300)))
            .unwrap_err()
            .contains("300 bytes"));
        assert!(parse("name=a&type=AAAAAAAAAAAAAAAAAAAAAAA").is_err());
        assert!(parse("name=%zz").is_err());
        assert!(parse("name=a&colour=red").unwrap_err().contains("colour"));
        assert!(parse(&"x".repeat(2000)).is_err());
    }
}
