//! Counters and histograms for `/metrics`, cheap enough for the query path.
//!
//! The query path only does relaxed atomic increments on fixed slots (no labels to hash, no
//! lock); the OpenMetrics text is produced at scrape time by `crate::http::metrics_export`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Query types counted separately; everything else is `other`.
pub const QTYPES: [(&str, u16); 8] = [
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("PTR", 12),
    ("AAAA", 28),
    ("SRV", 33),
    ("ANY", 255),
];

/// Response codes counted separately; everything else is `other`.
pub const RCODES: [&str; 6] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];

/// Upper bounds (seconds) of the answer latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.001, 0.005, 0.025, 0.1, 1.0,
];

/// Every counter snapdns exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Answers by query type slot (QTYPES, then other) and rcode slot (RCODES, then other).
    answers: [[AtomicU64; RCODES.len() + 1]; QTYPES.len() + 1],
    /// Messages dropped without an answer.
    ignored: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
    /// Queries sent to the forwarder.
    pub forwarded: AtomicU64,
    /// Forwarded queries answered from the cache.
    pub cache_hits: AtomicU64,
    /// Forwarded queries that went upstream.
    pub cache_misses: AtomicU64,
    /// Upstream attempts that failed (timeout, SERVFAIL, REFUSED, bad reply).
    pub upstream_failures: AtomicU64,
    /// Forwarded queries answered SERVFAIL at once because `--max-forwards` were in flight.
    pub forwards_over_limit: AtomicU64,
    /// TCP connections closed at once: `--max-tcp-clients` or the address's share was taken.
    pub tcp_clients_refused: AtomicU64,
    /// UDP responses dropped by response rate limiting.
    pub rrl_dropped: AtomicU64,
    /// UDP responses sent truncated (TC=1, no records) by response rate limiting.
    pub rrl_slipped: AtomicU64,
    /// Configuration reloads applied.
    pub reloads_ok: AtomicU64,
    /// Configuration reloads rejected.
    pub reloads_failed: AtomicU64,
    /// The last reload was rejected.
    last_reload_failed: AtomicBool,
}

impl Metrics {
    /// Counts one response (its type and rcode read from the bytes) and its latency.
    pub fn observe_answer(&self, response: &[u8], started: Instant) {
        if response.len() >= 12 {
            let rcode = usize::from(response[3] & 0x0f);
            let rcode_slot = rcode.min(RCODES.len());
            let qtype_slot = qtype_of(response)
                .and_then(|qtype| QTYPES.iter().position(|(_, t)| *t == qtype))
                .unwrap_or(QTYPES.len());
            self.answers[qtype_slot][rcode_slot].fetch_add(1, Ordering::Relaxed);
        }
        let elapsed = started.elapsed();
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_nanos.fetch_add(
            elapsed.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// Counts a message that got no answer.
    pub fn observe_ignored(&self) {
        self.ignored.fetch_add(1, Ordering::Relaxed);
    }

    /// (query type, rcode, count) for every non-zero slot.
    pub fn answers(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for (qtype_slot, row) in self.answers.iter().enumerate() {
            for (rcode_slot, count) in row.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let qtype = QTYPES.get(qtype_slot).map_or("other", |(name, _)| name);
                    let rcode = RCODES.get(rcode_slot).copied().unwrap_or("other");
                    out.push((qtype, rcode, count));
                }
            }
        }
        out
    }

    /// Counts a configuration reload, applied or rejected.
    pub fn observe_reload(&self, applied: bool) {
        if applied {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.last_reload_failed.store(!applied, Ordering::Relaxed);
    }

    /// False when the last reload was rejected.
    pub fn last_reload_ok(&self) -> bool {
        !self.last_reload_failed.load(Ordering::Relaxed)
    }

    /// Messages that got no answer.
    pub fn ignored(&self) -> u64 {
        self.ignored.load(Ordering::Relaxed)
    }

    /// Non-cumulative bucket counts, total count and sum in seconds.
    pub fn latency(&self) -> (Vec<u64>, u64, f64) {
        let buckets = self
            .latency_buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let sum = self.latency_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (buckets, self.latency_count.load(Ordering::Relaxed), sum)
    }
}

/// The query type in a response's question, if it has one.
fn qtype_of(message: &[u8]) -> Option<u16> {
    if u16::from_be_bytes([message[4], message[5]]) == 0 {
        return None;
    }
    let mut offset = 12;
    loop {
        let len = usize::from(*message.get(offset)?);
        if len == 0 {
            break;
        }
        offset += len + 1;
    }
    let bytes = message.get(offset + 1..offset + 3)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}
