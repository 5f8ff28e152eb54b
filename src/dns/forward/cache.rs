//! The forwarding cache's entries and TTL rules: what an upstream answer becomes once cached,
//! how long it lives, and the records it serves at a given instant.
//!
//! Pure data and arithmetic over `now: Instant`, so the TTL rules are unit-tested without
//! sleeping; the moka cache itself lives in the parent module.

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record};
use moka::Expiry;

use super::wire::Wire;

/// TTLs above this are treated as 0 (RFC 2181 §8: the high bit must not be set).
const MAX_TTL: u32 = i32::MAX as u32;

/// What one cache entry answers: a question and the client flags that change the answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    /// Query name, lower-cased uncompressed wire format.
    pub(super) name: Box<[u8]>,
    pub(super) qtype: u16,
    pub(super) qclass: u16,
    /// DO: the answer carries RRSIGs or not.
    pub(super) dnssec_ok: bool,
    /// CD: a validating upstream returns data it would otherwise fail.
    pub(super) checking_disabled: bool,
}

/// The caps applied to upstream TTLs, in seconds.
#[derive(Clone, Copy, Debug)]
pub(super) struct TtlPolicy {
    /// Positive records live at least this long.
    pub(super) min: u32,
    /// Positive records live at most this long.
    pub(super) max: u32,
    /// Negative answers (RFC 2308) live at most this long.
    pub(super) max_negative: u32,
}

/// An upstream answer as cached: its rcode and records with TTLs already capped, and when it
/// was stored. Served TTLs are the stored ones minus the age.
#[derive(Debug)]
pub(super) struct Cached {
    pub(super) rcode: ResponseCode,
    /// AD from the upstream; shown only to clients that asked with DO or AD (RFC 6840 §5.8).
    pub(super) authentic_data: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    /// The same records as the upstream encoded them, when that encoding can be reused.
    pub(super) wire: Option<Wire>,
    stored_at: Instant,
    lifetime: Duration,
}

/// The records of a cached answer at one instant, TTLs counted down.
#[derive(Debug)]
pub(super) struct Sections {
    pub(super) answers: Vec<Record>,
    pub(super) authorities: Vec<Record>,
    pub(super) additionals: Vec<Record>,
}

impl Cached {
    /// Caps the TTLs of an upstream answer (NOERROR or NXDOMAIN) and works out how long it may
    /// be served: until its shortest record expires. A negative answer (NXDOMAIN, or NOERROR
    /// without answers) lives for its SOA's `min(TTL, MINIMUM)` capped by `max_negative`, and
    /// that SOA is served with the remaining negative TTL (RFC 2308 §5). A negative answer
    /// without an SOA, or an answer without records, is passed on but not kept (lifetime 0).
    /// `bytes` is the upstream's message as received.
    pub(super) fn new(message: Message, bytes: &[u8], policy: &TtlPolicy, now: Instant) -> Self {
        let negative =
            message.metadata.response_code == ResponseCode::NXDomain || message.answers.is_empty();
        let mut answers = message.answers;
        let mut authorities = message.authorities;
        let mut additionals = message.additionals;
        let mut has_soa = false;
        for record in answers.iter_mut().chain(additionals.iter_mut()) {
            record.ttl = policy.positive(record.ttl);
        }
        for record in &mut authorities {
            record.ttl = match &record.data {
                // An SOA in the authority section carries negative information, also after a
                // CNAME chain whose target has no data (RFC 2308 §2.2).
                RData::SOA(soa) => {
                    has_soa = true;
                    policy.negative(record.ttl.min(soa.minimum))
                }
                _ => policy.positive(record.ttl),
            };
        }
        let shortest = answers
            .iter()
            .chain(&authorities)
            .chain(&additionals)
            .map(|record| record.ttl)
            .min();
        let lifetime = match shortest {
            Some(_) if negative && !has_soa => 0,
            Some(ttl) => ttl,
            None => 0,
        };
        let counts = [answers.len(), authorities.len(), additionals.len()];
        let records: Vec<&Record> = answers
            .iter()
            .chain(&authorities)
            .chain(&additionals)
            .collect();
        let wire = Wire::new(bytes)
            .filter(|wire| wire.counts().map(usize::from) == counts)
            .and_then(|wire| {
                let question = bytes.get(12..12 + wire.question_len())?;
                wire.verified(question, &records)
            });
        Self {
            rcode: message.metadata.response_code,
            authentic_data: message.metadata.authentic_data,
            answers,
            authorities,
            additionals,
            wire,
            stored_at: now,
            lifetime: Duration::from_secs(u64::from(lifetime)),
        }
    }

    /// How long the entry may be served after it was stored.
    pub(super) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Whole seconds since storing.
    fn age(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.stored_at).as_secs()).unwrap_or(u32::MAX)
    }

    /// The TTLs to serve at `now`, in section order (answers, authorities, additionals).
    pub(super) fn ttls_at(&self, now: Instant) -> impl Iterator<Item = u32> + '_ {
        let age = self.age(now);
        self.answers
            .iter()
            .chain(&self.authorities)
            .chain(&self.additionals)
            .map(move |record| record.ttl.saturating_sub(age))
    }

    /// The records to serve at `now`: each TTL minus the whole seconds since storing.
    pub(super) fn sections_at(&self, now: Instant) -> Sections {
        let age = self.age(now);
        let count_down = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .map(|record| {
                    let mut record = record.clone();
                    record.ttl = record.ttl.saturating_sub(age);
                    record
                })
                .collect()
        };
        Sections {
            answers: count_down(&self.answers),
            authorities: count_down(&self.authorities),
            additionals: count_down(&self.additionals),
        }
    }
}

impl TtlPolicy {
    fn positive(&self, ttl: u32) -> u32 {
        sane(ttl).max(self.min).min(self.max)
    }

    fn negative(&self, ttl: u32) -> u32 {
        sane(ttl).min(self.max_negative)
    }
}

fn sane(ttl: u32) -> u32 {
    if ttl > MAX_TTL {
        0
    } else {
        ttl
    }
}

/// moka's per-entry expiry: an entry lives for its [`Cached::lifetime`].
pub(super) struct ByLifetime;

impl Expiry<CacheKey, std::sync::Arc<Cached>> for ByLifetime {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &std::sync::Arc<Cached>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.lifetime())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, CNAME, SOA};
    use hickory_proto::rr::Name;

    const POLICY: TtlPolicy = TtlPolicy {
        min: 0,
        max: 3600,
        max_negative: 300,
    };

    fn name(text: &str) -> Name {
        Name::from_ascii(text).expect("name")
    }

    fn a(ttl: u32) -> Record {
        Record::from_rdata(
            name("www.example.test."),
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        )
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let data = SOA::new(
            name("ns.example.test."),
            name("host.example.test."),
            1,
            3600,
            900,
            604_800,
            minimum,
        );
        Record::from_rdata(name("example.test."), ttl, RData::SOA(data))
    }

    fn response(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Message {
        let mut message = Message::new(1, MessageType::Response, OpCode::Query);
        message.metadata.response_code = rcode;
        message.answers = answers;
        message.authorities = authorities;
        message
    }

    fn ttls(records: &[Record]) -> Vec<u32> {
        records.iter().map(|record| record.ttl).collect()
    }

    #[test]
    fn positive_answers_live_as_long_as_their_shortest_record_and_count_down() {
        let now = Instant::now();
        let cached = Cached::new(
            response(ResponseCode::NoError, vec![a(300), a(120)], vec![]),
            &[],
            &POLICY,
            now,
        );
        assert_eq!(cached.lifetime(), Duration::from_secs(120));
        assert_eq!(ttls(&cached.sections_at(now).answers), [300, 120]);
        let later = cached.sections_at(now + Duration::from_millis(61_500));
        assert_eq!(
            ttls(&later.answers),
            [239, 59],
            "whole seconds of age are subtracted"
        );
        let expired = cached.sections_at(now + Duration::from_secs(500));
        assert_eq!(ttls(&expired.answers), [0, 0], "never below zero");
    }

    #[test]
    fn ttls_are_clamped_into_the_configured_range() {
        let now = Instant::now();
        let policy = TtlPolicy {
            min: 30,
            max: 600,
            max_negative: 300,
        };
        let cached = Cached::new(
            response(
                ResponseCode::NoError,
                vec![a(5), a(86_400), a(u32::MAX)],
                vec![],
            ),
            &[],
            &policy,
            now,
        );
        assert_eq!(
            ttls(&cached.sections_at(now).answers),
            [30, 600, 30],
            "a TTL with the high bit set counts as 0"
        );
        assert_eq!(cached.lifetime(), Duration::from_secs(30));
    }

    #[test]
    fn negative_answers_live_for_the_soa_minimum_capped() {
        let now = Instant::now();
        // RFC 2308 §5: min(SOA TTL, SOA MINIMUM).
        let nxdomain = Cached::new(
            response(ResponseCode::NXDomain, vec![], vec![soa(3600, 60)]),
            &[],
            &POLICY,
            now,
        );
        assert_eq!(nxdomain.lifetime(), Duration::from_secs(60));
        assert_eq!(
            ttls(
                &nxdomain
                    .sections_at(now + Duration::from_secs(10))
                    .authorities
            ),
            [50]
        );
        let nodata = Cached::new(
            response(ResponseCode::NoError, vec![], vec![soa(45, 600)]),
            &[],
            &POLICY,
            now,
        );
        assert_eq!(nodata.lifetime(), Duration::from_secs(45));
        let capped = Cached::new(
            response(ResponseCode::NXDomain, vec![], vec![soa(86_400, 86_400)]),
            &[],
            &POLICY,
            now,
        );
        assert_eq!(
            capped.lifetime(),
            Duration::from_secs(300),
            "capped by max_negative"
        );
        assert_eq!(
            ttls(&capped.sections_at(now).authorities),
            [300],
            "the SOA is served with the negative TTL"
        );
    }

    #[test]
    fn min_ttl_does_not_stretch_negative_answers() {
        let policy = TtlPolicy {
            min: 600,
            max: 3600,
            max_negative: 300,
        };
        let cached = Cached::new(
            response(ResponseCode::NXDomain, vec![], vec![soa(60, 60)]),
            &[],
            &policy,
            Instant::now(),
        );
        assert_eq!(cached.lifetime(), Duration::from_secs(60));
    }

    #[test]
    fn negative_answers_without_soa_and_empty_answers_are_not_kept() {
        let now = Instant::now();
        let no_soa = Cached::new(
            response(ResponseCode::NXDomain, vec![], vec![]),
            &[],
            &POLICY,
            now,
        );
        assert_eq!(no_soa.lifetime(), Duration::ZERO);
        let cname = Record::from_rdata(
            name("alias.example.test."),
            300,
            RData::CNAME(CNAME(name("gone.example.test."))),
        );
        let chain_no_soa = Cached::new(
            response(ResponseCode::NXDomain, vec![cname.clone()], vec![]),
            &[],
            &POLICY,
            now,
        );
        assert_eq!(
            chain_no_soa.lifetime(),
            Duration::ZERO,
            "NXDOMAIN after a CNAME still needs the SOA"
        );
        let chain = Cached::new(
            response(ResponseCode::NXDomain, vec![cname], vec![soa(60, 30)]),
            &[],
            &POLICY,
            now,
        );
        assert_eq!(chain.lifetime(), Duration::from_secs(30));
    }
}
