//! The drain: how the server stops, named once.
//!
//! Shutdown has three audiences. Async tasks (TCP, sync, HTTP, reloads) wait on a
//! cancellation token; the UDP worker threads cannot await, so they poll a flag between
//! receives; and forwarded UDP queries, handed from a worker thread to the runtime, are counted
//! so that shutdown can wait for their answers. [`Drain`] holds all three, and
//! [`Drain::GRACE`] bounds how long the whole drain may take.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Shared by everything that must stop; cloning is shallow.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    token: CancellationToken,
    started: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
}

impl Drain {
    /// How long in-flight work may take to finish after shutdown is requested.
    pub const GRACE: Duration = Duration::from_secs(5);

    /// A token cancelled when the drain starts, for one async task.
    pub fn token(&self) -> CancellationToken {
        self.token.child_token()
    }

    /// Starts the drain: tasks see their tokens cancelled, worker threads see [`Self::started`].
    pub fn start(&self) {
        self.started.store(true, Ordering::Relaxed);
        self.token.cancel();
    }

    /// True once the drain has started (polled by threads that cannot await).
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Counts one piece of work handed to the runtime until the returned guard is dropped.
    pub fn track(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// Resolves when no tracked work is left.
    pub async fn in_flight_finished(&self) {
        while self.in_flight.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One tracked piece of work; dropping it ends it.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
