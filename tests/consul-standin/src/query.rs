//! Go-compatible parsing: `url.ParseQuery`, `time.ParseDuration`, `strconv.ParseBool`.

use std::time::Duration;

/// A query string or escape Go would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Parsed query string: `(key, value)` pairs in order.
#[derive(Debug, Default, Clone)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    /// `url.ParseQuery`: `&` separates; `;` or a bad `%` escape is an error.
    pub fn parse(raw: &str) -> Result<Self, Malformed> {
        let mut out = Vec::new();
        for part in raw.split('&') {
            if part.contains(';') {
                return Err(Malformed);
            }
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            out.push((unescape(k)?, unescape(v)?));
        }
        Ok(Self(out))
    }

    /// Whether `key` is present (with any value).
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// The first value of `key`, or "".
    pub fn first(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `getBoolQueryParam`: absent = false, present and empty = true, else `ParseBool`.
    pub fn bool(&self, key: &str) -> Result<bool, Malformed> {
        if !self.has(key) {
            return Ok(false);
        }
        match self.first(key) {
            "" | "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
            _ => Err(Malformed),
        }
    }
}

/// Percent-decoding with `+` as space; invalid escapes are errors, as in Go.
pub fn unescape(s: &str) -> Result<String, Malformed> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(Malformed)?;
                let hex = std::str::from_utf8(hex).map_err(|_| Malformed)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| Malformed)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `time.ParseDuration`, returning signed nanoseconds ("10s", "1m30s", "500ms", "0").
pub fn parse_go_duration(text: &str) -> Result<i128, String> {
    let err = || format!("invalid duration {text:?}");
    let (neg, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, rest) = s.split_at(num_end);
        if num.is_empty() || num == "." {
            return Err(err());
        }
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_end);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        total += num.parse::<f64>().map_err(|_| err())? * scale;
        s = rest;
    }
    if total > i64::MAX as f64 {
        return Err(err());
    }
    let ns = total as i128;
    Ok(if neg { -ns } else { ns })
}

/// A Go duration for the CLI; negative values are refused.
pub fn parse_cli_duration(text: &str) -> Result<Duration, String> {
    let ns = parse_go_duration(text)?;
    u64::try_from(ns)
        .map(Duration::from_nanos)
        .map_err(|_| format!("negative duration {text:?}"))
}

/// Whether an `Accept-Encoding` value accepts gzip (q > 0).
pub fn accepts_gzip(header: &str) -> bool {
    header.split(',').any(|coding| {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .map(str::trim)
            .find_map(|p| p.strip_prefix("q="))
            .map_or(1.0, |q| q.parse::<f64>().unwrap_or(0.0));
        name.eq_ignore_ascii_case("gzip") && q > 0.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("-1s"), Ok(-1_000_000_000));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("").is_err());
    }

    #[test]
    fn queries_and_encodings() {
        let q = Query::parse("tag=a&tag=b%20c&passing").expect("valid");
        assert_eq!(q.all("tag").collect::<Vec<_>>(), ["a", "b c"]);
        assert_eq!(q.bool("passing"), Ok(true));
        assert!(Query::parse("a=%zz").is_err());
        assert!(Query::parse("a=1;b=2").is_err());
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(!accepts_gzip("gzip;q=0"));
    }
}
