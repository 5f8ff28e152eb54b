//! Forwarding of names outside the served zones to upstream resolvers, with a cache, as
//! dnsmasq does in front of Consul.
//!
//! Only queries from clients allowed to recurse get here (the [`Responder`] answers the
//! registry and static zones itself and refuses everyone else), so this module never sees a
//! registry name. It relays the question with hickory-net ([`upstream`]), keeps the answer in
//! a moka cache for its TTL ([`cache`]) and frames it for the client ([`reply`]). Concurrent
//! misses for one question share one upstream exchange. See docs/forwarding.md.
//!
//! [`Responder`]: super::Responder

mod cache;
mod connected_udp;
mod reply;
mod upstream;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use moka::future::Cache;
use tokio::sync::Semaphore;

use self::cache::{ByLifetime, CacheKey, Cached, TtlPolicy};
use self::reply::Client;
use self::upstream::{AllFailed, Upstreams};
use super::query::ParsedQuery;
use super::respond::ForwardLimits;
use crate::metrics::Metrics;

/// Settings of the forwarder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Upstreams, tried in order.
    pub upstreams: Vec<SocketAddr>,
    /// How long one upstream has to answer (UDP, and TCP after a truncated answer) before the
    /// next one is tried.
    pub timeout: Duration,
    /// Cache capacity in entries.
    pub cache_size: u64,
    /// Positive TTLs below this are raised to it.
    pub cache_min_ttl: Duration,
    /// Positive TTLs above this are lowered to it.
    pub cache_max_ttl: Duration,
    /// Negative answers are kept at most this long.
    pub cache_max_negative_ttl: Duration,
    /// Upstream exchanges in flight at once; cache misses beyond get SERVFAIL at once.
    pub max_forwards: usize,
}

/// Relays queries to upstream resolvers and caches their answers.
pub struct Forwarder {
    upstreams: Upstreams,
    cache: Cache<CacheKey, Arc<Cached>>,
    policy: TtlPolicy,
    /// One permit per upstream exchange in flight (`max_forwards`).
    in_flight: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("upstreams", &self.upstreams.addrs())
            .field("policy", &self.policy)
            .field("cached", &self.cache.entry_count())
            .finish()
    }
}

impl Forwarder {
    /// A forwarder over `config.upstreams`. Must be called inside the tokio runtime.
    pub fn new(config: ForwardConfig, metrics: Arc<Metrics>) -> Self {
        let seconds = |duration: Duration| u32::try_from(duration.as_secs()).unwrap_or(u32::MAX);
        let cache = Cache::builder()
            .max_capacity(config.cache_size)
            .expire_after(ByLifetime)
            .build();
        Self {
            upstreams: Upstreams::new(&config.upstreams, config.timeout, metrics.clone()),
            cache,
            policy: TtlPolicy {
                min: seconds(config.cache_min_ttl),
                max: seconds(config.cache_max_ttl),
                max_negative: seconds(config.cache_max_negative_ttl),
            },
            in_flight: Arc::new(Semaphore::new(config.max_forwards)),
            metrics,
        }
    }

    /// The response to a forwarded query, ready to send: the client's ID and question, RA=1,
    /// TTLs counted down when cached, within `limits` (TC=1 beyond). SERVFAIL when every
    /// upstream failed; `None` only for a message that is not a query.
    pub async fn resolve(&self, query: &[u8], limits: ForwardLimits) -> Option<Vec<u8>> {
        let parsed = ParsedQuery::parse(query).ok()?;
        let client = Client::new(&parsed, query, limits.advertised)?;
        let limit = limits.limit;
        self.metrics.forwarded.fetch_add(1, Ordering::Relaxed);
        let qtype = RecordType::from(parsed.qtype);
        match qtype {
            // Answered here: no amplification through us, no load on the upstreams.
            RecordType::ANY => return Some(client.minimal_any(limit)),
            // A zone transfer through a cache makes no sense.
            RecordType::AXFR | RecordType::IXFR => return Some(client.error(ResponseCode::NotImp)),
            _ => {}
        }
        let key = cache_key(&parsed, &client);
        let response = match self.lookup(&key, &client).await {
            Ok(cached) => client.answer_cached(&cached, Instant::now(), limit),
            Err(_) => client.error(ResponseCode::ServFail),
        };
        Some(response)
    }

    /// The cached answer for `key`, or one fetched upstream and cached. Concurrent callers
    /// with the same key wait for one fetch (moka coalesces the init futures); failures are
    /// shared with those waiters but never cached.
    /// The answer from the cache, when it is there and moka hands it over without waiting
    /// (its `get` only waits on rare internal maintenance). Polled once with a no-op waker
    /// from the UDP worker, so a hit needs no task and no other thread. `None`: go async.
    pub fn resolve_cached(&self, query: &[u8], limits: ForwardLimits) -> Option<Vec<u8>> {
        let parsed = ParsedQuery::parse(query).ok()?;
        if matches!(
            RecordType::from(parsed.qtype),
            RecordType::ANY | RecordType::AXFR | RecordType::IXFR
        ) {
            return None;
        }
        let client = Client::new(&parsed, query, limits.advertised)?;
        let key = cache_key(&parsed, &client);
        let get = std::pin::pin!(self.cache.get(&key));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(Some(cached)) = get.poll(&mut context) else {
            return None;
        };
        self.metrics.forwarded.fetch_add(1, Ordering::Relaxed);
        self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
        Some(client.answer_cached(&cached, Instant::now(), limits.limit))
    }

    async fn lookup(
        &self,
        key: &CacheKey,
        client: &Client<'_>,
    ) -> Result<Arc<Cached>, Arc<AllFailed>> {
        let fetch = async {
            self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
            // Each exchange holds a socket until its answer or timeout: bounded, so a flood of
            // uncached names against a silent upstream cannot exhaust descriptors or memory.
            let Ok(_permit) = self.in_flight.try_acquire() else {
                self.metrics
                    .forwards_over_limit
                    .fetch_add(1, Ordering::Relaxed);
                return Err(AllFailed);
            };
            // Ask in lower case: the cached answer serves every spelling of the name.
            let mut question = client.query.clone();
            question.set_name(question.name().to_lowercase());
            let (message, bytes) = self
                .upstreams
                .exchange(&question, client.dnssec_ok(), client.checking_disabled())
                .await?;
            let cached = Cached::new(message, &bytes, &self.policy, Instant::now());
            Ok::<_, AllFailed>(Arc::new(cached))
        };
        let entry = self
            .cache
            .entry_by_ref(key)
            .or_try_insert_with(fetch)
            .await?;
        if !entry.is_fresh() {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(entry.into_value())
    }
}

/// For the fuzz targets only (`fuzz/`), not an API: the reply a client sending `query` gets
/// when the upstream answered with the bytes `upstream`, through the same decoding, TTL
/// capping and client framing as a real exchange (only the network is left out). `None`
/// when `query` is not a query, or `upstream` does not decode or is not an answer to it.
#[doc(hidden)]
pub fn fuzz_upstream_reply(
    query: &[u8],
    upstream: &[u8],
    limits: ForwardLimits,
) -> Option<Vec<u8>> {
    let parsed = ParsedQuery::parse(query).ok()?;
    let client = Client::new(&parsed, query, limits.advertised)?;
    let message = hickory_proto::op::Message::from_vec(upstream).ok()?;
    upstream::check(&client.query, &message).ok()?;
    if !matches!(
        message.metadata.response_code,
        ResponseCode::NoError | ResponseCode::NXDomain
    ) {
        return Some(client.error(ResponseCode::ServFail));
    }
    let policy = TtlPolicy {
        min: 0,
        max: 86_400,
        max_negative: 3_600,
    };
    let now = Instant::now();
    let cached = Cached::new(message, upstream, &policy, now);
    Some(client.answer_cached(&cached, now, limits.limit))
}

/// What a forwarded answer is cached under: the name, type and class asked, and the DO and CD
/// bits, which change what an upstream answers.
fn cache_key(parsed: &ParsedQuery<'_>, client: &Client<'_>) -> CacheKey {
    CacheKey {
        name: parsed.key().into(),
        qtype: parsed.qtype,
        qclass: parsed.qclass,
        dnssec_ok: client.dnssec_ok(),
        checking_disabled: client.checking_disabled(),
    }
}
