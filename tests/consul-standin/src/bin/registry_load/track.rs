//! Visibility trackers: one thread per replica polls, every 20 ms, every change it was given
//! until the replica's DNS answer shows it (or the timeout passes), and reports the delay.

use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::dns::{Cond, Probe};

/// The poll period the issue asks for.
const TICK: Duration = Duration::from_millis(20);

/// A change to look for: the name to ask about and what its answer must show.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) id: usize,
    pub(crate) name: String,
    pub(crate) cond: Cond,
    /// When the change was sent to the stand-in (just before the control request).
    pub(crate) start: Instant,
}

/// One replica's verdict on one change: the delay, or None when it timed out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen {
    pub(crate) id: usize,
    pub(crate) delay: Option<Duration>,
}

/// The trackers of all replicas.
#[derive(Debug)]
pub(crate) struct Trackers {
    senders: Vec<Sender<Change>>,
    seen: Receiver<Seen>,
    handles: Vec<JoinHandle<()>>,
}

impl Trackers {
    /// One tracker per DNS address; a change not visible after `timeout` is given up.
    pub(crate) fn start(dns: &[SocketAddr], timeout: Duration) -> std::io::Result<Self> {
        let (seen_tx, seen) = channel();
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for &addr in dns {
            let probe = Probe::new(addr)?;
            let (tx, rx) = channel();
            let seen_tx = seen_tx.clone();
            handles.push(std::thread::spawn(move || {
                track(probe, &rx, &seen_tx, timeout);
            }));
            senders.push(tx);
        }
        Ok(Self {
            senders,
            seen,
            handles,
        })
    }

    /// Hands `change` to every replica's tracker.
    pub(crate) fn watch(&self, change: &Change) {
        for tx in &self.senders {
            // A tracker only ends when its sender is dropped, so this cannot fail.
            let _ = tx.send(change.clone());
        }
    }

    /// Waits for the verdicts on `changes` changes from every replica (bounded: each tracker
    /// gives up a change after its timeout). Per change: the largest delay over the replicas,
    /// or None when one replica never saw it.
    pub(crate) fn collect(&self, changes: usize, first_id: usize) -> Vec<Option<Duration>> {
        let mut worst: Vec<Option<Duration>> = vec![Some(Duration::ZERO); changes];
        for _ in 0..changes * self.senders.len() {
            let Ok(seen) = self.seen.recv() else { break };
            let Some(slot) = seen.id.checked_sub(first_id).and_then(|i| worst.get_mut(i)) else {
                continue;
            };
            *slot = match (*slot, seen.delay) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        worst
    }

    /// Stops the trackers.
    pub(crate) fn stop(self) {
        drop(self.senders);
        for h in self.handles {
            let _ = h.join();
        }
    }
}

fn track(mut probe: Probe, rx: &Receiver<Change>, seen: &Sender<Seen>, timeout: Duration) {
    let mut pending: Vec<Change> = Vec::new();
    loop {
        // Block while nothing is pending; otherwise just drain what came.
        if pending.is_empty() {
            match rx.recv() {
                Ok(c) => pending.push(c),
                Err(_) => return,
            }
        }
        loop {
            match rx.recv_timeout(Duration::ZERO) {
                Ok(c) => pending.push(c),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) if pending.is_empty() => return,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let tick = Instant::now();
        pending.retain(|c| {
            let delay = if probe.holds(&c.name, c.cond) {
                Some(c.start.elapsed())
            } else if c.start.elapsed() > timeout {
                None
            } else {
                return true;
            };
            let _ = seen.send(Seen { id: c.id, delay });
            false
        });
        if let Some(rest) = TICK.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}
