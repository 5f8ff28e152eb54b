//! How long a cluster-wide list may take beyond `--request-timeout`.
//!
//! Consul renders a whole answer before it sends a byte, so a list whose size grows with the
//! registry (every check in the datacenter: ~240 MB of JSON at 1,000,000 instances) can take
//! longer to arrive than any fixed timeout meant for a stalled connection, and a timeout that
//! abandons it still costs the registry the whole render, again on every retry. Each list's
//! deadline therefore grows with the size of its last answer, at a rate well below what a
//! Consul server renders and sends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bytes of JSON per second that any registry is assumed to render and send at least.
const RENDER_FLOOR_BYTES_PER_SEC: u64 = 8 * 1024 * 1024;

/// The JSON size of the last answer of one list, shared by every clone of a client.
#[derive(Debug, Default)]
pub(super) struct ListSize(AtomicU64);

impl ListSize {
    /// Time to allow on top of `--request-timeout` for the next read of this list.
    pub(super) fn allowance(&self) -> Duration {
        let bytes = self.0.load(Ordering::Relaxed);
        Duration::from_millis(bytes.saturating_mul(1000) / RENDER_FLOOR_BYTES_PER_SEC)
    }

    /// Remembers the JSON size of an answer.
    pub(super) fn record(&self, json_bytes: u64) {
        self.0.store(json_bytes, Ordering::Relaxed);
    }

    /// Takes `json_bytes` as the size until an answer gives the real one: a list read only now
    /// and then gets time for the size it is expected to have on its first read too.
    pub(super) fn expect(&self, json_bytes: u64) {
        let _ = self
            .0
            .compare_exchange(0, json_bytes, Ordering::Relaxed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_grows_with_the_last_answer() {
        let size = ListSize::default();
        assert_eq!(size.allowance(), Duration::ZERO);
        size.record(240 * 1024 * 1024); // every check at 1,000,000 instances
        assert_eq!(size.allowance(), Duration::from_secs(30));
        size.record(1024 * 1024);
        assert_eq!(size.allowance(), Duration::from_millis(125));
        size.expect(8 * 1024 * 1024); // a size is known: an expectation does not replace it
        assert_eq!(size.allowance(), Duration::from_millis(125));
        let unread = ListSize::default();
        unread.expect(8 * 1024 * 1024);
        assert_eq!(unread.allowance(), Duration::from_secs(1));
    }
}
