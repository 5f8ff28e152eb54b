//! One blocking query per service, `/v1/health/service/<name>`, each on that service's own
//! index: a change to one service costs one answer of that service, whatever the size of the
//! registry.
//!
//! Each request runs as its own task and reports into one channel, so the sync loop waits on
//! all of them with one receive. A [`ServiceWatch`] keeps its index, its rate limit (a burst of
//! [`WATCH_BURST`], then one per [`WATCH_REFILL`], so a service that keeps changing cannot make
//! it hammer the registry) and its backoff; the task sleeps out the delay before it sends.
//! Watches are spread over the client's lanes so that HTTP/2 streams stay within
//! `--registry-streams` per connection.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::retry::Backoff;
use crate::registry::consul::{Blocking, ConsulClient, ConsulError, Fetched};
use crate::registry::HealthEntry;

/// Requests per service watch: a burst of this many, then one per [`WATCH_REFILL`].
const WATCH_BURST: f64 = 3.0;
const WATCH_REFILL: Duration = Duration::from_secs(1);
/// The shortest first wait: a watch whose random cut lands near zero still blocks a moment.
const MIN_FIRST_WAIT: Duration = Duration::from_secs(1);

/// The first delay after a failed request (doubling up to the sync interval).
const WATCH_BACKOFF: Duration = Duration::from_millis(250);

/// One service watch's answer.
pub(super) struct ServiceAnswer {
    /// The service.
    pub(super) name: String,
    /// Which incarnation of the watch sent it (answers of a removed watch are dropped).
    generation: u64,
    /// The index the request was sent with.
    pub(super) sent: u64,
    /// The request's number: requests are numbered in the order they are sent.
    pub(super) number: u64,
    /// The answer.
    pub(super) result: Result<Fetched<Vec<HealthEntry>>, ConsulError>,
}

struct ServiceWatch {
    /// The newest index whose answer is applied.
    index: u64,
    generation: u64,
    lane: usize,
    running: Option<AbortHandle>,
    tokens: f64,
    refilled: Instant,
    backoff: Backoff,
}

/// Every service watch, by service name.
pub(super) struct ServiceWatches {
    watches: HashMap<String, ServiceWatch>,
    sender: mpsc::UnboundedSender<ServiceAnswer>,
    answers: mpsc::UnboundedReceiver<ServiceAnswer>,
    generation: u64,
    /// Watches per lane.
    lane_load: Vec<usize>,
    backoff_cap: Duration,
    /// Requests sent so far.
    requests: u64,
}

impl ServiceWatches {
    /// No watches yet; backoffs grow up to `backoff_cap`.
    pub(super) fn new(backoff_cap: Duration) -> Self {
        let (sender, answers) = mpsc::unbounded_channel();
        Self {
            watches: HashMap::new(),
            sender,
            answers,
            generation: 0,
            lane_load: Vec::new(),
            backoff_cap,
            requests: 0,
        }
    }

    /// The number of the last request sent.
    pub(super) fn last_request(&self) -> u64 {
        self.requests
    }

    /// How many services are watched.
    pub(super) fn len(&self) -> usize {
        self.watches.len()
    }

    /// Whether `name` is watched.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.watches.contains_key(name)
    }

    /// The watched service names.
    pub(super) fn names(&self) -> impl Iterator<Item = &String> + '_ {
        self.watches.keys()
    }

    /// Watches `name` from `index` (0: its first answer comes at once) unless it is watched
    /// already. Over HTTP/2, lanes fill up in turn, `per_lane` watches each, from lane 1 (lane 0
    /// carries the other requests), so a small registry uses few connections; without
    /// (`None`), every watch goes on lane 0.
    pub(super) fn add(
        &mut self,
        name: &str,
        index: u64,
        per_lane: Option<usize>,
        client: &ConsulClient,
        wait: Duration,
    ) {
        if self.watches.contains_key(name) {
            return;
        }
        self.generation += 1;
        let now = Instant::now();
        let lane = per_lane.map_or(0, |per_lane| self.free_lane(per_lane));
        if self.lane_load.len() <= lane {
            self.lane_load.resize(lane + 1, 0);
        }
        self.lane_load[lane] += 1;
        let watch = ServiceWatch {
            index,
            generation: self.generation,
            lane,
            running: None,
            tokens: WATCH_BURST,
            refilled: now,
            backoff: Backoff::new(WATCH_BACKOFF, self.backoff_cap),
        };
        self.watches.insert(name.to_string(), watch);
        self.send(name, client, wait, now);
    }

    /// The first lane from 1 with room for another watch.
    fn free_lane(&self, per_lane: usize) -> usize {
        (1..)
            .find(|&lane| self.lane_load.get(lane).copied().unwrap_or(0) < per_lane.max(1))
            .unwrap_or(1)
    }

    /// Stops watching `name`.
    pub(super) fn remove(&mut self, name: &str) {
        if let Some(watch) = self.watches.remove(name) {
            if let Some(load) = self.lane_load.get_mut(watch.lane) {
                *load -= 1;
            }
            if let Some(task) = watch.running {
                task.abort();
            }
        }
    }

    /// Stops every watch.
    pub(super) fn clear(&mut self) {
        self.lane_load.clear();
        for (_, watch) in self.watches.drain() {
            if let Some(task) = watch.running {
                task.abort();
            }
        }
    }

    /// The index `name`'s watch has applied, if it is watched.
    pub(super) fn index(&self, name: &str) -> Option<u64> {
        self.watches.get(name).map(|watch| watch.index)
    }

    /// A full resync saw `name` at `index`: a watch that is behind it moves up, so that its
    /// next answer is not older than the state.
    pub(super) fn caught_up(&mut self, name: &str, index: u64) {
        if let Some(watch) = self.watches.get_mut(name) {
            watch.index = watch.index.max(index);
        }
    }

    /// Waits for the next answer of a current watch (forever when there is none) and marks
    /// that watch idle; the caller applies the answer, then calls [`Self::next_request`].
    pub(super) async fn next(&mut self) -> ServiceAnswer {
        loop {
            let Some(answer) = self.answers.recv().await else {
                return std::future::pending().await;
            };
            if let Some(watch) = self.watches.get_mut(&answer.name) {
                if watch.generation == answer.generation {
                    watch.running = None;
                    return answer;
                }
            }
        }
    }

    /// Records what the answer to `name` did (`applied` is the index now applied, `failed`
    /// whether the request failed) and sends the next request, after the rate limit and
    /// backoff.
    pub(super) fn next_request(
        &mut self,
        name: &str,
        applied: Option<u64>,
        failed: bool,
        client: &ConsulClient,
        wait: Duration,
    ) {
        let now = Instant::now();
        let Some(watch) = self.watches.get_mut(name) else {
            return;
        };
        if let Some(index) = applied {
            watch.index = index;
        }
        let delay = if failed {
            watch.backoff.next()
        } else {
            watch.backoff.reset();
            Duration::ZERO
        };
        self.send_after(name, client, wait, now, delay);
    }

    /// A new watch's first request: watches started together (after a full resync) would come
    /// back together every wait, so the first wait is cut to a random fraction of it, uniform
    /// over the whole wait: idle returns then come at an even N / wait per minute from the
    /// start (a half-to-whole spread left the first half-wait silent and the second at twice
    /// that rate, ~2,000 requests a minute at 10,000 services). Later ones run the full wait,
    /// already spread.
    fn send(&mut self, name: &str, client: &ConsulClient, wait: Duration, now: Instant) {
        let first = wait
            .mul_f64(rand::random_range(0.0..=1.0))
            .max(MIN_FIRST_WAIT.min(wait));
        self.send_after(name, client, first, now, Duration::ZERO);
    }

    fn send_after(
        &mut self,
        name: &str,
        client: &ConsulClient,
        wait: Duration,
        now: Instant,
        delay: Duration,
    ) {
        let Some(watch) = self.watches.get_mut(name) else {
            return;
        };
        let elapsed = now.duration_since(watch.refilled).as_secs_f64();
        watch.tokens = (watch.tokens + elapsed / WATCH_REFILL.as_secs_f64()).min(WATCH_BURST);
        watch.refilled = now;
        let mut start = now + delay;
        if watch.tokens < 1.0 {
            start = start.max(now + WATCH_REFILL.mul_f64(1.0 - watch.tokens));
        }
        watch.tokens -= 1.0;
        self.requests += 1;
        let number = self.requests;
        let blocking = Blocking {
            index: watch.index,
            wait,
        };
        let client = client.on_lane(watch.lane);
        let sender = self.sender.clone();
        let (name, generation) = (name.to_string(), watch.generation);
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(start).await;
            // Index 0 never blocks: a first answer comes at once.
            let blocking = (blocking.index > 0).then_some(blocking);
            let result = client.service(&name, blocking).await;
            let _ = sender.send(ServiceAnswer {
                name,
                generation,
                sent: blocking.map_or(0, |b| b.index),
                number,
                result,
            });
        });
        watch.running = Some(task.abort_handle());
    }
}

impl Drop for ServiceWatches {
    fn drop(&mut self) {
        self.clear();
    }
}
