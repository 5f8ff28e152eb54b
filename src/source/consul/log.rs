//! What the sync loop tells operators: its logs (faults once per change of state) and, in the
//! same breath, its faults and counters in the status behind `/health` and `/metrics`.

use std::time::SystemTime;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::preserve::Event;
use super::retry::Cost;
use super::SyncTask;
use crate::registry::consul::{ConsulError, Fetched};
use crate::source::status::{SyncKind, SyncReport, Transition};

impl SyncTask {
    /// Logs what self-preservation did, and counts its episodes.
    pub(super) fn log_preservation(&mut self, events: &[Event]) {
        for event in events {
            match event {
                Event::Triggered { departing, served } => {
                    self.status.update(|view| view.preservation.episodes += 1);
                    warn!(
                        departing,
                        served,
                        threshold = self.settings.self_preservation_threshold,
                        window_s = self.settings.self_preservation_window.as_secs_f64(),
                        "self-preservation: the registry dropped too many instances at once; still serving them until they stay gone for the window"
                    );
                }
                Event::Returned(count) => info!(
                    count,
                    "self-preservation: held instances are back in the registry"
                ),
                Event::Released(count) => {
                    warn!(count, "self-preservation: held instances stayed gone for the window; no longer serving them")
                }
            }
        }
    }

    /// The report of a sync that worked, logged and counted.
    pub(super) fn report(
        &self,
        kind: SyncKind,
        started: Instant,
        cost: Cost,
        services: usize,
    ) -> SyncReport {
        let report = SyncReport {
            kind,
            at: Some(SystemTime::now()),
            duration: started.elapsed(),
            requests: cost.requests,
            wire_bytes: cost.wire_bytes,
            json_bytes: cost.json_bytes,
            services_fetched: services,
            index: self.truth.index,
        };
        debug!(
            kind = kind.as_str(),
            requests = cost.requests,
            wire_bytes = cost.wire_bytes,
            json_bytes = cost.json_bytes,
            services,
            index = self.truth.index,
            duration_ms = report.duration.as_millis() as u64,
            "registry sync done"
        );
        self.status.update(|view| {
            view.totals.requests += cost.requests;
            view.totals.wire_bytes += cost.wire_bytes;
            view.totals.json_bytes += cost.json_bytes;
        });
        report
    }

    /// Counts a sync that failed, and reports its fault.
    pub(super) fn sync_failed(&self, error: &ConsulError, cost: Cost) {
        self.status.update(|view| {
            view.totals.failed_syncs += 1;
            view.totals.requests += cost.requests;
            view.totals.wire_bytes += cost.wire_bytes;
            view.totals.json_bytes += cost.json_bytes;
        });
        self.report_fault("sync", error);
    }

    /// Counts a watch request (or the requests behind one answer).
    pub(super) fn count_request<T>(&self, result: &Result<Fetched<T>, ConsulError>) {
        self.status.update(|view| {
            view.totals.requests += result.as_ref().map_or(1, |fetched| fetched.requests);
            if let Ok(fetched) = result {
                view.totals.wire_bytes += fetched.wire_bytes;
                view.totals.json_bytes += fetched.json_bytes;
            }
        });
    }

    /// Records a fault on `channel`; logs it when the registry state changes.
    pub(super) fn report_fault(&self, channel: &'static str, error: &ConsulError) {
        let message = error.to_string();
        let transition = self.status.fault(channel, error.kind(), &message);
        if transition == Transition::Same {
            debug!(channel, error = %message, "registry request failed");
        }
        log_transition(transition, &message);
    }

    /// Clears `channel`'s fault; logs a recovery.
    pub(super) fn report_ok<T>(&self, channel: &'static str, fetched: &Fetched<T>) {
        self.note_leader(fetched);
        log_transition(self.status.clear(channel), "");
    }

    /// Records what the answer says about the cluster's leader.
    pub(super) fn note_leader<T>(&self, fetched: &Fetched<T>) {
        self.status.update(|view| {
            view.known_leader = Some(fetched.known_leader);
            view.last_contact_ms = fetched.last_contact_ms;
        });
    }
}

/// Logs a change of the registry state: a fault once, a recovery once.
pub(super) fn log_transition(transition: Transition, message: &str) {
    match transition {
        Transition::Same => {}
        Transition::Faulted(kind) => warn!(
            state = kind.as_str(),
            "registry fault: {message}; serving the last good snapshot"
        ),
        Transition::Recovered(lasted) => {
            info!(after_s = lasted.as_secs_f64(), "registry recovered")
        }
    }
}
