//! Response rate limiting (RRL) for UDP answers, in the manner of Knot's `mod-rrl`, NSD's
//! `rrl-ratelimit` and BIND's `rate-limit`: a spoofed-source flood cannot turn this server
//! into an amplifier aimed at a victim.
//!
//! Responses are counted per *flow*: the client's address prefix (`--rrl-ipv4-prefix`,
//! `--rrl-ipv6-prefix`) and the response's class and name (positive answers and NODATA per
//! query name, NXDOMAIN per zone, errors per prefix alone). Each flow is a token bucket that
//! refills at `--rrl-rate` responses a second and holds one second's worth; a response over the
//! limit is dropped, except every `--rrl-slip`-th, which goes out truncated (TC=1, no records)
//! so that a real client retries over TCP. The flows live in a fixed table of atomics indexed
//! by a keyed hash: memory stays the same whatever the number of (spoofed) sources, the UDP
//! workers share it without a lock, and a collision only makes two flows share one budget.
//! docs/SECURITY.md, "Response rate limiting", has the reasons.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use ipnet::IpNet;

use super::flags;
use super::respond::canonical;

/// Buckets in the table (a power of two): 1 MiB, allocated when first used.
pub const TABLE_SIZE: usize = 1 << 16;
/// Longest wire-format name.
const MAX_NAME_LEN: usize = 255;
const TYPE_OPT: u8 = 41;
/// OPT RR with empty RDATA: root name, type, class, TTL, RDLENGTH.
const OPT_LEN: usize = 11;

/// The rate limiting settings, part of the answering policy (SIGHUP replaces them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RrlSettings {
    /// Responses a second per flow; 0 turns rate limiting off.
    pub rate: u32,
    /// Every `slip`-th limited response is sent truncated, the others dropped; 0 drops them all.
    pub slip: u32,
    /// IPv4 clients are grouped by this prefix length.
    pub ipv4_prefix: u8,
    /// IPv6 clients are grouped by this prefix length.
    pub ipv6_prefix: u8,
}

impl Default for RrlSettings {
    /// NSD's defaults for rate and slip, Knot's for the prefixes.
    fn default() -> Self {
        Self {
            rate: 200,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        }
    }
}

/// What to do with a response after [`RateLimiter::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the flow's budget (or not limited at all): send it.
    Send,
    /// Over the budget, and this one slips: send it truncated ([`slip`]).
    Slip,
    /// Over the budget: send nothing.
    Drop,
}

/// What a response is counted as: NSD's and Knot's classes, folded to the ones snapdns sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// NOERROR with answers: per query name.
    Positive = 1,
    /// NOERROR without answers: per query name.
    NoData = 2,
    /// NXDOMAIN: per zone (the SOA owner in the authority section), so that random names
    /// under one zone share one budget.
    NxDomain = 3,
    /// Any other rcode (REFUSED, SERVFAIL, FORMERR...): per client prefix alone.
    Error = 4,
}

#[derive(Debug, Default)]
struct Bucket {
    /// GCRA's theoretical arrival time of the next response, in nanoseconds since the
    /// limiter's epoch; 0 when the bucket was never used.
    next: AtomicU64,
    /// Responses limited in this bucket, for the slip rotation.
    limited: AtomicU32,
}

/// The flow table, shared by every UDP worker.
#[derive(Debug)]
pub struct RateLimiter {
    epoch: Instant,
    /// Keyed per process, so that no one can pick names that collide with a victim's flow.
    keys: std::collections::hash_map::RandomState,
    table: OnceLock<Box<[Bucket]>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            keys: std::collections::hash_map::RandomState::new(),
            table: OnceLock::new(),
        }
    }
}

impl RateLimiter {
    /// Decides the fate of `response` (a complete message) for `client` at `now`. Clients in
    /// `exempt` (`--allow-recursion`) and every response when the rate is 0 are sent.
    pub fn check(
        &self,
        settings: &RrlSettings,
        exempt: &[IpNet],
        client: IpAddr,
        response: &[u8],
        now: Instant,
    ) -> Verdict {
        if settings.rate == 0 {
            return Verdict::Send;
        }
        let client = canonical(client);
        if exempt.iter().any(|net| net.contains(&client)) {
            return Verdict::Send;
        }
        let bucket = &self.table()[self.flow(settings, client, response) as usize % TABLE_SIZE];
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        if take(&bucket.next, settings.rate, now) {
            return Verdict::Send;
        }
        let limited = bucket
            .limited
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        if settings.slip != 0 && limited.is_multiple_of(settings.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// The table's size in buckets: fixed, however many flows have been seen.
    pub fn buckets(&self) -> usize {
        self.table.get().map_or(0, |table| table.len())
    }

    fn table(&self) -> &[Bucket] {
        self.table
            .get_or_init(|| (0..TABLE_SIZE).map(|_| Bucket::default()).collect())
    }

    /// The flow's hash: client prefix, class, and the class's name (lower-cased).
    fn flow(&self, settings: &RrlSettings, client: IpAddr, response: &[u8]) -> u64 {
        let mut hasher = self.keys.build_hasher();
        match client {
            IpAddr::V4(v4) => {
                hasher.write_u8(4);
                hasher.write_u32(u32::from(v4) & mask_u32(settings.ipv4_prefix));
            }
            IpAddr::V6(v6) => {
                hasher.write_u8(6);
                hasher.write_u128(u128::from(v6) & mask_u128(settings.ipv6_prefix));
            }
        }
        let (class, name) = classify(response);
        hasher.write_u8(class as u8);
        let mut lower = [0u8; MAX_NAME_LEN];
        let len = name.len().min(MAX_NAME_LEN);
        for (to, from) in lower.iter_mut().zip(&name[..len]) {
            *to = from.to_ascii_lowercase();
        }
        hasher.write(&lower[..len]);
        hasher.finish()
    }
}

/// Generic cell rate algorithm on one atomic: a response is allowed when the bucket's next
/// arrival time is at most one second (the burst) ahead of `now`, and then pushes it one
/// interval further. Lock-free: a lost race retries with the winner's value.
fn take(next: &AtomicU64, rate: u32, now: u64) -> bool {
    let interval = 1_000_000_000 / u64::from(rate.max(1));
    let burst = interval * (u64::from(rate) - 1);
    let mut current = next.load(Ordering::Relaxed);
    loop {
        let start = current.max(now);
        if start - now > burst {
            return false;
        }
        match next.compare_exchange_weak(
            current,
            start + interval,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(actual) => current = actual,
        }
    }
}

/// The response's class and the name its flow is counted under.
fn classify(response: &[u8]) -> (Class, &[u8]) {
    if response.len() < 12 || u16::from_be_bytes([response[4], response[5]]) == 0 {
        return (Class::Error, &[]);
    }
    let qname = name_at(response, 12).unwrap_or(&[]);
    let answers = u16::from_be_bytes([response[6], response[7]]);
    match response[3] & 0x0f {
        0 if answers > 0 => (Class::Positive, qname),
        0 => (Class::NoData, qname),
        3 => {
            // Our NXDOMAIN carries the zone's SOA, uncompressed, right after the question.
            let zone = (answers == 0)
                .then(|| name_at(response, 12 + qname.len() + 4))
                .flatten()
                .unwrap_or(&[]);
            (Class::NxDomain, zone)
        }
        _ => (Class::Error, &[]),
    }
}

/// The uncompressed name starting at `offset`, with its root label; `None` when it is
/// compressed or runs past the message.
fn name_at(message: &[u8], offset: usize) -> Option<&[u8]> {
    let mut at = offset;
    loop {
        let len = usize::from(*message.get(at)?);
        if len == 0 {
            return Some(&message[offset..=at]);
        }
        if len & 0xC0 != 0 {
            return None;
        }
        at += len + 1;
    }
}

/// Turns a full response into the slip response: the header and question with TC=1 and no
/// records, keeping the OPT record when the response ends with ours. Error responses carry
/// no records and are sent as they are (they are no larger than the query).
pub fn slip(response: &mut Vec<u8>) {
    if response.len() < 12 {
        return;
    }
    if !matches!(response[3] & 0x0f, 0 | 3) {
        return;
    }
    let question_end = if u16::from_be_bytes([response[4], response[5]]) == 0 {
        12
    } else {
        match name_at(response, 12) {
            Some(name) if 12 + name.len() + 4 <= response.len() => 12 + name.len() + 4,
            _ => {
                response.truncate(12);
                response[4..12].fill(0);
                response[2] |= flags::TC;
                return;
            }
        }
    };
    let opt = ends_with_opt(response, question_end).then(|| {
        let mut opt = [0u8; OPT_LEN];
        opt.copy_from_slice(&response[response.len() - OPT_LEN..]);
        opt
    });
    response.truncate(question_end);
    response[6..12].fill(0);
    if let Some(opt) = opt {
        response.extend_from_slice(&opt);
        response[10..12].copy_from_slice(&1u16.to_be_bytes());
    }
    response[2] |= flags::TC;
}

/// True when the response's last record is an OPT with empty RDATA (as our responder
/// appends it) past the question.
fn ends_with_opt(response: &[u8], question_end: usize) -> bool {
    let additionals = u16::from_be_bytes([response[10], response[11]]);
    let len = response.len();
    additionals > 0
        && len >= question_end + OPT_LEN
        && response[len - OPT_LEN..len - OPT_LEN + 3] == [0, 0, TYPE_OPT]
        && response[len - 2..] == [0, 0]
}

fn mask_u32(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    }
}

fn mask_u128(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p.min(128))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    const SECOND: u64 = 1_000_000_000;

    fn response(name: &str, rcode: ResponseCode, answers: usize, edns: bool) -> Vec<u8> {
        let name = Name::from_ascii(name).unwrap();
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message.metadata.response_code = rcode;
        message.add_query(Query::query(name.clone(), RecordType::A));
        for i in 0..answers {
            message.add_answer(Record::from_rdata(
                name.clone(),
                0,
                RData::A(A(Ipv4Addr::new(10, 0, 0, i as u8))),
            ));
        }
        if rcode == ResponseCode::NXDomain {
            // The zone is the name less its first label.
            let zone = name.base_name();
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 1, 1, 1, 1);
            message.add_authority(Record::from_rdata(zone, 0, RData::SOA(soa)));
        }
        if edns {
            let mut opt = Edns::new();
            opt.set_max_payload(1232);
            message.set_edns(opt);
        }
        // Our responder writes names uncompressed where RRL reads them; so does this.
        let mut bytes = Vec::new();
        let mut encoder = hickory_proto::serialize::binary::BinEncoder::new(&mut bytes);
        encoder.set_name_encoding(hickory_proto::serialize::binary::NameEncoding::Uncompressed);
        hickory_proto::serialize::binary::BinEncodable::emit(&message, &mut encoder).unwrap();
        bytes
    }

    fn at(limiter: &RateLimiter, seconds: f64) -> Instant {
        limiter.epoch + Duration::from_secs_f64(seconds)
    }

    fn settings(rate: u32, slip: u32) -> RrlSettings {
        RrlSettings {
            rate,
            slip,
            ..RrlSettings::default()
        }
    }

    #[test]
    fn a_bucket_allows_one_second_of_burst_then_the_rate() {
        let next = AtomicU64::new(0);
        let now = 10 * SECOND;
        let allowed = (0..100).filter(|_| take(&next, 10, now)).count();
        assert_eq!(allowed, 10, "the burst is one second's worth");
        assert!(
            !take(&next, 10, now + SECOND / 20),
            "half an interval later"
        );
        assert!(take(&next, 10, now + SECOND / 10), "one interval later");
        assert!(!take(&next, 10, now + SECOND / 10));
        // Idle for long: the budget refills to the burst, not beyond.
        let later = now + 60 * SECOND;
        assert_eq!((0..100).filter(|_| take(&next, 10, later)).count(), 10);
    }

    #[test]
    fn a_rate_of_one_allows_one_a_second() {
        let next = AtomicU64::new(0);
        assert!(take(&next, 1, SECOND));
        assert!(!take(&next, 1, SECOND + SECOND / 2));
        assert!(take(&next, 1, 2 * SECOND));
    }

    #[test]
    fn limited_responses_slip_every_nth() {
        let limiter = RateLimiter::default();
        let reply = response("web.service.consul.", ResponseCode::NoError, 3, true);
        let client = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let now = at(&limiter, 5.0);
        let verdicts: Vec<Verdict> = (0..12)
            .map(|_| limiter.check(&settings(2, 3), &[], client, &reply, now))
            .collect();
        use Verdict::{Drop, Send, Slip};
        assert_eq!(
            verdicts,
            [Send, Send, Drop, Drop, Slip, Drop, Drop, Slip, Drop, Drop, Slip, Drop]
        );
        let drop_all = RateLimiter::default();
        let now = at(&drop_all, 5.0);
        let sent: Vec<Verdict> = (0..5)
            .map(|_| drop_all.check(&settings(1, 0), &[], client, &reply, now))
            .collect();
        assert_eq!(sent, [Send, Drop, Drop, Drop, Drop]);
    }

    #[test]
    fn flows_are_per_prefix_and_name_and_exemptions_hold() {
        let limiter = RateLimiter::default();
        let web = response("web.service.consul.", ResponseCode::NoError, 1, false);
        let web_upper = response("WEB.service.consul.", ResponseCode::NoError, 1, false);
        let db = response("db.service.consul.", ResponseCode::NoError, 1, false);
        let now = at(&limiter, 1.0);
        let one = settings(1, 0);
        let v4 = |last: u8| IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
        assert_eq!(limiter.check(&one, &[], v4(1), &web, now), Verdict::Send);
        // Same /24, same name in another case: the same flow.
        assert_eq!(
            limiter.check(&one, &[], v4(2), &web_upper, now),
            Verdict::Drop
        );
        // Another name, another flow.
        assert_eq!(limiter.check(&one, &[], v4(2), &db, now), Verdict::Send);
        // Another /24.
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 3, 1));
        assert_eq!(limiter.check(&one, &[], other, &web, now), Verdict::Send);
        // IPv6 by /56; IPv4-mapped counts as IPv4.
        let v6 = |low: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0x00ff, 0, 0, 0, low));
        assert_eq!(limiter.check(&one, &[], v6(1), &web, now), Verdict::Send);
        assert_eq!(limiter.check(&one, &[], v6(2), &web, now), Verdict::Drop);
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
        assert_eq!(limiter.check(&one, &[], mapped, &web, now), Verdict::Drop);
        // Exempt networks and a rate of 0 are never limited.
        let exempt: Vec<IpNet> = vec!["192.0.2.0/24".parse().unwrap()];
        for _ in 0..10 {
            assert_eq!(
                limiter.check(&one, &exempt, v4(1), &web, now),
                Verdict::Send
            );
            assert_eq!(
                limiter.check(&settings(0, 0), &[], v4(1), &web, now),
                Verdict::Send
            );
        }
    }

    #[test]
    fn nxdomain_is_counted_per_zone_and_errors_per_prefix() {
        let limiter = RateLimiter::default();
        let now = at(&limiter, 1.0);
        let one = settings(1, 0);
        let client = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        let nx = |name: &str| response(name, ResponseCode::NXDomain, 0, true);
        assert_eq!(
            limiter.check(&one, &[], client, &nx("a.consul."), now),
            Verdict::Send
        );
        assert_eq!(
            limiter.check(&one, &[], client, &nx("b.consul."), now),
            Verdict::Drop
        );
        assert_eq!(
            limiter.check(&one, &[], client, &nx("b.example."), now),
            Verdict::Send
        );
        let refused = |name: &str| response(name, ResponseCode::Refused, 0, false);
        assert_eq!(
            limiter.check(&one, &[], client, &refused("x.example."), now),
            Verdict::Send
        );
        assert_eq!(
            limiter.check(&one, &[], client, &refused("y.example."), now),
            Verdict::Drop
        );
        // NODATA is per name, like positive answers.
        let nodata = |name: &str| response(name, ResponseCode::NoError, 0, false);
        assert_eq!(
            limiter.check(&one, &[], client, &nodata("c.consul."), now),
            Verdict::Send
        );
        assert_eq!(
            limiter.check(&one, &[], client, &nodata("d.consul."), now),
            Verdict::Send
        );
    }

    #[test]
    fn the_table_stays_one_size_under_spoofed_sources() {
        let limiter = RateLimiter::default();
        assert_eq!(
            limiter.buckets(),
            0,
            "nothing allocated before the first check"
        );
        let reply = response("web.service.consul.", ResponseCode::NoError, 1, false);
        let now = at(&limiter, 1.0);
        for source in 0..200_000u32 {
            let client = IpAddr::V4(Ipv4Addr::from(source << 8));
            limiter.check(&settings(10, 2), &[], client, &reply, now);
        }
        assert_eq!(limiter.buckets(), TABLE_SIZE);
        assert_eq!(std::mem::size_of::<Bucket>(), 16);
    }

    #[test]
    fn a_slipped_response_is_the_question_with_tc_and_opt() {
        for (rcode, edns) in [
            (ResponseCode::NoError, true),
            (ResponseCode::NoError, false),
            (ResponseCode::NXDomain, true),
        ] {
            let mut reply = response("web.service.consul.", rcode, 5, edns);
            slip(&mut reply);
            let message = Message::from_vec(&reply).expect("a valid message");
            assert!(message.metadata.truncation, "TC set");
            assert_eq!(message.metadata.response_code, rcode);
            assert_eq!(message.metadata.id, 7);
            assert!(message.answers.is_empty() && message.authorities.is_empty());
            assert_eq!(message.queries.len(), 1);
            assert_eq!(message.edns.is_some(), edns, "OPT kept when there was one");
        }
        // Errors are sent as they are.
        let refused = response("x.example.", ResponseCode::Refused, 0, true);
        let mut slipped = refused.clone();
        slip(&mut slipped);
        assert_eq!(slipped, refused);
    }
}
