//! The two blocking queries that tell what changed: `/v1/catalog/services` and the checks
//! that are not passing (`/v1/health/state/critical`, blocking, then `/warning`).
//!
//! Each query runs as its own task so that the sync loop can select on both; a [`Watch`] owns
//! its index, its request, its backoff and its rate limit (a token bucket: a burst of
//! [`WATCH_BURST`] requests, then one per refill interval), so that an index that keeps moving
//! cannot make it hammer the registry. The interval follows the size of the watch's last
//! answer ([`refill_for`]): a small list may be re-read often, a big one only once a second, so
//! what a moving index costs stays near [`WATCH_BYTES_PER_SEC`]. The loop owns the baselines
//! the answers are diffed with.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::retry::Backoff;
use crate::registry::consul::{Blocking, ConsulClient, ConsulError, Fetched, ServiceList};
use crate::registry::HealthCheck;

/// Watch requests per endpoint: a burst of this many, then one per refill interval.
const WATCH_BURST: f64 = 3.0;
/// The refill interval's bounds: a new service waits at most one interval for the catalog
/// list once the burst is spent, and no list is read more than ten times a second.
const MIN_REFILL: Duration = Duration::from_millis(100);
const MAX_REFILL: Duration = Duration::from_secs(1);
/// The registry bytes (on the wire) per second that a watch whose index keeps moving may
/// cost a replica: at 10,000 services the catalog list (~26 KB gzipped) may be re-read about
/// every 200 ms, at 100,000 (~260 KB) once a second; the non-passing checks as often as their
/// size allows.
const WATCH_BYTES_PER_SEC: f64 = 128.0 * 1024.0;

/// The refill interval after an answer of `wire_bytes`.
fn refill_for(wire_bytes: u64) -> Duration {
    Duration::from_secs_f64(wire_bytes as f64 / WATCH_BYTES_PER_SEC).clamp(MIN_REFILL, MAX_REFILL)
}

/// The first delay after a failed watch request (doubling up to the sync interval).
const WATCH_BACKOFF: Duration = Duration::from_millis(250);

/// Which blocking query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `/v1/catalog/services`.
    Catalog,
    /// `/v1/health/state/critical` (blocking), then `/v1/health/state/warning`.
    Checks,
}

impl Endpoint {
    /// The status channel of its faults.
    pub(super) fn channel(self) -> &'static str {
        match self {
            Self::Catalog => "catalog watch",
            Self::Checks => "checks watch",
        }
    }
}

/// A watch's answer.
pub(super) enum WatchValue {
    Catalog(ServiceList),
    Checks(Vec<HealthCheck>),
}

pub(super) type WatchResult = Result<Fetched<WatchValue>, ConsulError>;

/// One blocking query loop's state; the request itself runs as a task.
pub(super) struct Watch {
    endpoint: Endpoint,
    /// The newest index whose answer is the baseline for diffs.
    pub(super) index: u64,
    /// The index the running request was sent with, and the request.
    in_flight: Option<(u64, JoinHandle<WatchResult>)>,
    not_before: Instant,
    tokens: f64,
    refilled: Instant,
    /// One token per this, after the size of the last answer ([`refill_for`]).
    refill: Duration,
    backoff: Backoff,
}

impl Watch {
    /// A watch with a full bucket, whose backoff grows up to `backoff_cap`.
    fn new(endpoint: Endpoint, now: Instant, backoff_cap: Duration) -> Self {
        Self {
            endpoint,
            index: 0,
            in_flight: None,
            not_before: now,
            tokens: WATCH_BURST,
            refilled: now,
            refill: MAX_REFILL,
            backoff: Backoff::new(WATCH_BACKOFF, backoff_cap),
        }
    }

    /// Starts the blocking query unless one is running, within the rate limit and backoff.
    fn arm(&mut self, now: Instant, client: &ConsulClient, wait: Duration) {
        if self.in_flight.is_some() || now < self.not_before {
            return;
        }
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed / self.refill.as_secs_f64()).min(WATCH_BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.not_before = now + self.refill.mul_f64(1.0 - self.tokens);
            return;
        }
        self.tokens -= 1.0;
        let client = client.clone();
        let blocking = Blocking {
            index: self.index,
            wait,
        };
        let endpoint = self.endpoint;
        let handle = tokio::spawn(async move {
            match endpoint {
                Endpoint::Catalog => client
                    .services(Some(blocking))
                    .await
                    .map(|f| f.map(WatchValue::Catalog)),
                Endpoint::Checks => client
                    .non_passing(Some(blocking))
                    .await
                    .map(|f| f.map(WatchValue::Checks)),
            }
        });
        self.in_flight = Some((blocking.index, handle));
    }

    /// A request failed: the next waits for the backoff.
    pub(super) fn failed(&mut self, now: Instant) {
        self.not_before = now + self.backoff.next();
    }

    /// A request worked, its answer `wire_bytes` long: the backoff starts over, and the
    /// refill interval follows the answer's size.
    pub(super) fn succeeded(&mut self, wire_bytes: u64) {
        self.backoff.reset();
        self.refill = refill_for(wire_bytes);
    }

    /// Waits for the request, or forever when none is running; returns the index it was sent
    /// with and its result.
    async fn join(&mut self) -> (u64, WatchResult) {
        let Some((sent, handle)) = self.in_flight.as_mut() else {
            return std::future::pending().await;
        };
        let sent = *sent;
        let result = handle.await.unwrap_or_else(|e| {
            Err(ConsulError::BadResponse {
                path: "watch".into(),
                message: format!("watch task failed: {e}"),
            })
        });
        self.in_flight = None;
        (sent, result)
    }
}

/// Both watches, looked up by endpoint.
pub(super) struct Watches {
    catalog: Watch,
    checks: Watch,
}

impl Watches {
    /// Both watches, idle, backing off up to `backoff_cap` after failures.
    pub(super) fn new(now: Instant, backoff_cap: Duration) -> Self {
        Self {
            catalog: Watch::new(Endpoint::Catalog, now, backoff_cap),
            checks: Watch::new(Endpoint::Checks, now, backoff_cap),
        }
    }

    /// The watch of `endpoint`.
    pub(super) fn get(&self, endpoint: Endpoint) -> &Watch {
        match endpoint {
            Endpoint::Catalog => &self.catalog,
            Endpoint::Checks => &self.checks,
        }
    }

    /// The watch of `endpoint`, to change.
    pub(super) fn get_mut(&mut self, endpoint: Endpoint) -> &mut Watch {
        match endpoint {
            Endpoint::Catalog => &mut self.catalog,
            Endpoint::Checks => &mut self.checks,
        }
    }

    /// Starts the requests that are not running, each within its rate limit and backoff; the
    /// checks watch only with `checks` (cluster mode), and it is stopped without.
    pub(super) fn arm(&mut self, client: &ConsulClient, wait: Duration, checks: bool) {
        let now = Instant::now();
        self.catalog.arm(now, client, wait);
        if checks {
            self.checks.arm(now, client, wait);
        } else if let Some((_, handle)) = self.checks.in_flight.take() {
            handle.abort();
        }
    }

    /// The earliest time an idle watch may start its next request (the checks watch only
    /// with `checks`).
    pub(super) fn next_start(&self, checks: bool) -> Option<Instant> {
        [&self.catalog, &self.checks]
            .into_iter()
            .filter(|watch| watch.in_flight.is_none())
            .filter(|watch| checks || watch.endpoint == Endpoint::Catalog)
            .map(|watch| watch.not_before)
            .min()
    }

    /// Waits for the first answer of either watch (forever when none is running).
    pub(super) async fn next(&mut self) -> (Endpoint, u64, WatchResult) {
        tokio::select! {
            (sent, result) = self.catalog.join() => (Endpoint::Catalog, sent, result),
            (sent, result) = self.checks.join() => (Endpoint::Checks, sent, result),
        }
    }

    /// Stops the running requests (at shutdown).
    pub(super) fn abort(&mut self) {
        for watch in [&mut self.catalog, &mut self.checks] {
            if let Some((_, handle)) = watch.in_flight.take() {
                handle.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refill_interval_follows_the_answer_size_within_its_bounds() {
        assert_eq!(refill_for(0), MIN_REFILL);
        assert_eq!(refill_for(2_600), MIN_REFILL); // 1,000 services
        let ten_thousand = refill_for(26_000);
        assert!(ten_thousand > MIN_REFILL && ten_thousand < Duration::from_millis(250));
        assert_eq!(refill_for(260_000), MAX_REFILL); // 100,000 services
        assert_eq!(refill_for(20_000_000), MAX_REFILL); // a check list
    }
}
