//! The registry name forms answered without names of their own in the zone, when the name
//! asked is not in it (so the common queries never get here).
//!
//! Consul parses names right to left (`agent/dns.go` `dispatch`, `parseLocality`); three of
//! its forms are answered here:
//!
//! - `<dc>.dc` locality labels (`web.service.dc2.dc.consul`): the prepared answer of the
//!   plain form (`web.service.dc2.consul`), sent under the client's question;
//! - the RFC 2782 form without `.service` (`_web._tcp[.dc1].consul`), SRV only: the answer of
//!   `_web._tcp.service[.dc1].consul`;
//! - `<hex>.addr[.<anything>].<domain>` for addresses no answer uses: the record is written
//!   here, per query, without allocating.
//!
//! Rewriting the question onto an existing name costs no memory per name; the responder moves
//! the compression pointers as it does for the aliases the zone shares (see
//! [`crate::zone::Prepared`]). Nothing here allocates except the re-encoding of an answer that
//! was not encoded to be shared (a CNAME), which only these rare names need.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::{Outcome, Reply, Responder, Scratch, CLASS_IN};
use crate::snapshot::Snapshot;
use crate::zone::Lookup;

/// The longest name in wire format (RFC 1035 §3.1).
const MAX_NAME_LEN: usize = 255;
/// The most labels a name under the domain can have.
const MAX_LABELS: usize = 128;
/// The labels Consul takes as the kind of a name (`dispatch`).
const KEYWORDS: [&[u8]; 7] = [
    b"service", b"connect", b"virtual", b"ingress", b"node", b"query", b"addr",
];

/// What a name not in the zone stands for.
#[derive(Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "lives on the stack for one query: boxing the name would allocate"
)]
pub(super) enum Form {
    /// Answer as the name `key` (lower-cased wire format) answers, within `only`.
    Alias { key: NameBuf, only: Only },
    /// `<hex>.addr`: the address the hex encodes.
    Addr(IpAddr),
    /// `dc.<domain>`, `addr.<domain>`: empty non-terminals above the names of a form.
    Empty,
    /// Nothing: NXDOMAIN.
    Unknown,
}

/// Which answers an alias may give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Only {
    /// Whatever the name answers.
    Any,
    /// SRV (the RFC 2782 shortcut is for SRV only, as in Consul); other types only as an empty
    /// non-terminal.
    Srv,
    /// Only as an empty non-terminal (`dc2.dc.consul` above `web.service.dc2.dc.consul`), so
    /// that resolvers that minimise query names reach the names below.
    Empty,
}

/// A name in wire format on the stack.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct NameBuf {
    bytes: [u8; MAX_NAME_LEN],
    len: usize,
}

impl std::fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

impl NameBuf {
    fn new() -> Self {
        Self {
            bytes: [0; MAX_NAME_LEN],
            len: 0,
        }
    }

    /// Appends `bytes`; false when the name would be too long.
    fn push(&mut self, bytes: &[u8]) -> bool {
        let end = self.len + bytes.len();
        if end > MAX_NAME_LEN {
            return false;
        }
        self.bytes[self.len..end].copy_from_slice(bytes);
        self.len = end;
        true
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// What `key` (lower-cased wire format, under `apex`) stands for. Bounded by the name's
/// length; any input gives an answer, never a panic.
pub(super) fn parse(key: &[u8], apex: &[u8]) -> Form {
    let Some(prefix_len) = key.len().checked_sub(apex.len()) else {
        return Form::Unknown;
    };
    // Each label as (start, length), left to right.
    let mut labels = [(0usize, 0usize); MAX_LABELS];
    let mut count = 0;
    let mut at = 0;
    while at < prefix_len {
        let len = usize::from(key[at]);
        if len == 0 || at + 1 + len > prefix_len || count == MAX_LABELS {
            return Form::Unknown;
        }
        labels[count] = (at + 1, len);
        count += 1;
        at += 1 + len;
    }
    let labels = &labels[..count];
    let text = |(start, len): (usize, usize)| &key[start..start + len];
    // The kind: the first keyword from the right, or (SRV's shortcut) a label starting with
    // `_`. Labels left of it are the parts, right of it the locality suffix.
    let kind = labels.iter().rposition(|&label| {
        let label = text(label);
        KEYWORDS.contains(&label) || label.first() == Some(&b'_')
    });
    let Some(kind) = kind else {
        return match labels {
            [only] if text(*only) == b"dc" => Form::Empty,
            [datacenter, dc] if text(*dc) == b"dc" => {
                alias_onto(NameBuf::new(), key, &[*datacenter], apex, Only::Empty)
            }
            _ => Form::Unknown,
        };
    };
    let kind_text = text(labels[kind]);
    let shortcut = !KEYWORDS.contains(&kind_text);
    if kind_text == b"addr" {
        // Consul ignores what follows `addr`; `addr.<domain>` itself is above every addr name.
        return match labels[..kind] {
            [hex] => decode_hex(text(hex)).map_or(Form::Unknown, Form::Addr),
            [] => Form::Empty,
            _ => Form::Unknown,
        };
    }
    if !shortcut && kind_text != b"service" && kind_text != b"node" {
        return Form::Unknown;
    }
    let suffix = &labels[kind + 1..];
    let locality = match suffix {
        [] | [_] => suffix,
        [datacenter, dc] if text(*dc) == b"dc" => &suffix[..1],
        _ => return Form::Unknown,
    };
    if !shortcut && locality.len() == suffix.len() {
        // The plain form, which the zone would have held.
        return Form::Unknown;
    }
    let only = match (shortcut, kind) {
        (true, _) => Only::Srv,
        (false, 0) => Only::Empty,
        (false, _) => Only::Any,
    };
    let parts = &labels[..=kind];
    let mut out = NameBuf::new();
    for &(start, len) in parts {
        if !out.push(&key[start - 1..start + len]) {
            return Form::Unknown;
        }
    }
    if shortcut && !out.push(b"\x07service") {
        return Form::Unknown;
    }
    alias_onto(out, key, locality, apex, only)
}

/// `out`, then `labels` (taken from `key`), then `apex`.
fn alias_onto(
    mut out: NameBuf,
    key: &[u8],
    labels: &[(usize, usize)],
    apex: &[u8],
    only: Only,
) -> Form {
    for &(start, len) in labels {
        if !out.push(&key[start - 1..start + len]) {
            return Form::Unknown;
        }
    }
    if !out.push(apex) {
        return Form::Unknown;
    }
    Form::Alias { key: out, only }
}

/// Consul's hex form of an address: 8 digits for IPv4, 32 for IPv6 (either case).
fn decode_hex(label: &[u8]) -> Option<IpAddr> {
    let mut bytes = [0u8; 16];
    if label.len() != 8 && label.len() != 32 {
        return None;
    }
    for (at, pair) in label.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        bytes[at] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(if label.len() == 8 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    })
}

impl Responder {
    /// Answers a registry name the zone does not hold: one of the forms above, else NXDOMAIN.
    pub(super) fn answer_form(
        &self,
        snapshot: &Snapshot,
        reply: &Reply<'_>,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        let zone = &snapshot.zone;
        let query = reply.query;
        match parse(query.key(), &self.registry_apex) {
            Form::Unknown => reply.negative(zone, ResponseCode::NXDomain, out),
            Form::Empty => reply.negative(zone, ResponseCode::NoError, out),
            Form::Addr(ip) => reply.address(zone, ip, snapshot.node_ttl, out),
            Form::Alias { key, only } => {
                let key = key.as_slice();
                let allowed = match only {
                    Only::Any => true,
                    Only::Srv => query.qtype == u16::from(RecordType::SRV),
                    Only::Empty => false,
                };
                if !allowed && zone.has_data(key) != Some(false) {
                    reply.negative(zone, ResponseCode::NXDomain, out);
                    return Outcome::Reply;
                }
                match zone.lookup(key, query.qtype) {
                    Lookup::Answer(prepared) => {
                        let shift =
                            (12 + query.question.len()) as isize - prepared.question_end() as isize;
                        if prepared.fits_alias(shift) {
                            return self.send_prepared(prepared, reply, out, scratch);
                        }
                        return match prepared.renamed(query.question) {
                            Some(renamed) => self.send_prepared(&renamed, reply, out, scratch),
                            None => reply.rcode_only(out, ResponseCode::ServFail, true),
                        };
                    }
                    Lookup::NoData => reply.negative(zone, ResponseCode::NoError, out),
                    Lookup::NxDomain => reply.negative(zone, ResponseCode::NXDomain, out),
                }
            }
        }
        Outcome::Reply
    }
}

impl Reply<'_> {
    /// The address of an `addr` name: one A or AAAA record owned by the question, or NODATA
    /// for the other type. Written directly, as the zone would have encoded it.
    fn address(&self, zone: &crate::zone::Zone, ip: IpAddr, ttl: u32, out: &mut Vec<u8>) {
        let mut octets = [0u8; 16];
        let (rtype, data) = match ip {
            IpAddr::V4(v4) => {
                octets[..4].copy_from_slice(&v4.octets());
                (RecordType::A, &octets[..4])
            }
            IpAddr::V6(v6) => {
                octets.copy_from_slice(&v6.octets());
                (RecordType::AAAA, &octets[..])
            }
        };
        let qtype = self.query.qtype;
        if qtype != u16::from(rtype) && qtype != u16::from(RecordType::ANY) {
            self.negative(zone, ResponseCode::NoError, out);
            return;
        }
        self.header(out, true, ResponseCode::NoError, 1, 0);
        out.extend_from_slice(&[0xC0, 12]);
        out.extend_from_slice(&u16::from(rtype).to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        self.push_opt(out, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APEX: &[u8] = b"\x06consul\x00";

    fn key(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }

    fn alias_of(name: &str) -> Option<(String, Only)> {
        match parse(&key(name), APEX) {
            Form::Alias { key: k, only } => {
                let bytes = k.as_slice();
                let mut text = String::new();
                let mut at = 0;
                while bytes[at] != 0 {
                    let len = usize::from(bytes[at]);
                    text.push_str(std::str::from_utf8(&bytes[at + 1..at + 1 + len]).unwrap());
                    text.push('.');
                    at += 1 + len;
                }
                Some((text, only))
            }
            _ => None,
        }
    }

    #[test]
    fn locality_labels_map_onto_the_plain_form() {
        for (asked, plain, only) in [
            (
                "web.service.dc2.dc.consul",
                "web.service.dc2.consul.",
                Only::Any,
            ),
            (
                "v1.web.service.dc2.dc.consul",
                "v1.web.service.dc2.consul.",
                Only::Any,
            ),
            (
                "_web._tcp.service.dc2.dc.consul",
                "_web._tcp.service.dc2.consul.",
                Only::Any,
            ),
            ("n1.node.dc2.dc.consul", "n1.node.dc2.consul.", Only::Any),
            ("service.dc2.dc.consul", "service.dc2.consul.", Only::Empty),
            ("dc2.dc.consul", "dc2.consul.", Only::Empty),
        ] {
            assert_eq!(alias_of(asked), Some((plain.to_string(), only)), "{asked}");
        }
        assert_eq!(parse(&key("dc.consul"), APEX), Form::Empty);
        for unknown in [
            "web.service.consul",
            "web.service.dc1.consul",
            "web.service.dc2.peer.consul",
            "web.service.dc2.dc.extra.consul",
            "web.query.dc2.dc.consul",
            "a.b.dc.consul",
            "nothing.consul",
        ] {
            assert_eq!(parse(&key(unknown), APEX), Form::Unknown, "{unknown}");
        }
    }

    #[test]
    fn rfc2782_names_without_service_map_onto_the_service_form() {
        for (asked, full) in [
            ("_web._tcp.consul", "_web._tcp.service.consul."),
            ("_web._v1.consul", "_web._v1.service.consul."),
            ("_web._tcp.dc1.consul", "_web._tcp.service.dc1.consul."),
            ("_web._v1.dc2.dc.consul", "_web._v1.service.dc2.consul."),
            ("_tcp.consul", "_tcp.service.consul."),
        ] {
            assert_eq!(
                alias_of(asked),
                Some((full.to_string(), Only::Srv)),
                "{asked}"
            );
        }
    }

    #[test]
    fn addr_names_decode_any_hex_address() {
        assert_eq!(parse(&key("addr.consul"), APEX), Form::Empty);
        let v4 = |a, b, c, d| Form::Addr(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
        assert_eq!(parse(&key("7f000001.addr.consul"), APEX), v4(127, 0, 0, 1));
        assert_eq!(
            parse(&key("0a0000ff.addr.dc1.consul"), APEX),
            v4(10, 0, 0, 255)
        );
        assert_eq!(
            parse(&key("0A0000FF.addr.x.y.consul"), APEX),
            v4(10, 0, 0, 255)
        );
        assert_eq!(
            parse(&key("20010db800010002cafe000000001337.addr.consul"), APEX),
            Form::Addr("2001:db8:1:2:cafe::1337".parse().unwrap())
        );
        for bad in [
            "7f00001.addr.consul",
            "7f0000011.addr.consul",
            "7f00000g.addr.consul",
            "a.7f000001.addr.consul",
            "+f000001.addr.consul",
        ] {
            assert_eq!(parse(&key(bad), APEX), Form::Unknown, "{bad}");
        }
    }

    #[test]
    fn odd_input_gives_an_answer() {
        // Labels running past the prefix, a prefix shorter than the apex, long names.
        assert_eq!(parse(b"\x09web\x06consul\x00", APEX), Form::Unknown);
        assert_eq!(parse(b"\x00", APEX), Form::Unknown);
        let long = format!("{}_a._b.consul", "x.".repeat(120));
        let _ = parse(&key(&long), APEX);
        let deep = format!("_a._b.{}consul", "x.".repeat(120));
        let _ = parse(&key(&deep), APEX);
        // Random labels of random lengths, keywords and hex among them.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(13);
        let words: [&[u8]; 8] = [
            b"dc",
            b"service",
            b"node",
            b"addr",
            b"_a",
            b"_tcp",
            b"7f000001",
            b"x",
        ];
        for _ in 0..20_000 {
            let mut name = Vec::new();
            for _ in 0..rng.random_range(0..8) {
                if rng.random_bool(0.2) {
                    let len = rng.random_range(0..70usize);
                    name.push(len as u8);
                    name.extend((0..len).map(|_| rng.random::<u8>()));
                } else {
                    let word = words[rng.random_range(0..words.len())];
                    name.push(word.len() as u8);
                    name.extend_from_slice(word);
                }
            }
            name.extend_from_slice(APEX);
            let _ = parse(&name, APEX);
        }
    }
}
