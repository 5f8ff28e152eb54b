//! Per-request retries with exponential backoff and jitter, and the cost of a sync.

use std::future::Future;
use std::time::Duration;

use tracing::debug;

use crate::registry::consul::{ConsulError, Fetched};

/// Attempts per registry request within one sync, with exponential backoff between them.
pub(super) const ATTEMPTS: u32 = 3;
pub(super) const RETRY_BASE: Duration = Duration::from_millis(100);

/// Bytes and requests of one sync.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Cost {
    pub(super) requests: u64,
    pub(super) wire_bytes: u64,
    pub(super) json_bytes: u64,
}

impl Cost {
    pub(super) fn add(&mut self, other: Self) {
        self.requests += other.requests;
        self.wire_bytes += other.wire_bytes;
        self.json_bytes += other.json_bytes;
    }
}

/// Exponential backoff with equal jitter: half the delay fixed, half random.
#[derive(Clone, Debug)]
pub(super) struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub(super) fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    pub(super) fn next(&mut self) -> Duration {
        let delay = self
            .base
            .saturating_mul(1 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        delay / 2 + delay.mul_f64(rand::random_range(0.0..0.5))
    }

    pub(super) fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Runs `request` up to [`ATTEMPTS`] times with backoff while the error is retryable.
pub(super) async fn with_retries<T, F, Fut>(
    mut request: F,
    cost: &mut Cost,
) -> Result<Fetched<T>, ConsulError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Fetched<T>, ConsulError>>,
{
    let mut backoff = Backoff::new(RETRY_BASE, RETRY_BASE * 8);
    let mut attempt = 1;
    loop {
        cost.requests += 1;
        match request().await {
            Ok(fetched) => {
                // An answer made of several lists was several requests.
                cost.requests += fetched.requests.saturating_sub(1);
                cost.wire_bytes += fetched.wire_bytes;
                cost.json_bytes += fetched.json_bytes;
                return Ok(fetched);
            }
            Err(error) if attempt < ATTEMPTS && error.is_retryable() => {
                debug!(%error, attempt, "registry request failed; retrying");
                tokio::time::sleep(backoff.next()).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// `interval` scaled by a random factor in [0.9, 1.1).
pub(super) fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::random_range(0.9..1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = backoff.next();
        assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(100));
        for _ in 0..10 {
            backoff.next();
        }
        let late = backoff.next();
        assert!(late >= Duration::from_millis(500) && late < Duration::from_secs(1));
        backoff.reset();
        assert!(backoff.next() < Duration::from_millis(100));
    }
}
