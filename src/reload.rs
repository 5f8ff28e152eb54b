//! Configuration reloads (SIGHUP): re-read `--config` and the static zones while serving.
//!
//! `main` turns each SIGHUP into a freshly loaded [`Config`] (the same flags over the file
//! as read now, validated by [`Config::load`]); [`watch`] applies it. A reload is all or
//! nothing:
//!
//! * a configuration that does not validate (bad value, unknown key, unreadable file) is
//!   rejected with an error naming the key, and everything keeps running as before;
//! * a static zone file that does not load (syntax error, no SOA, duplicate origin) rejects the
//!   reload too: the zones served before stay served, all of them;
//! * otherwise the new static zones replace the old ones in one atomic swap. Queries keep
//!   being answered throughout: each sees either the old zone set or the new one.
//!
//! The zones directory (and the zone files in it) and the answering policy (`max-udp-size`,
//! `no-shuffle`, `allow-recursion`, the `rrl-*` limits) take effect at run time. Every other
//! setting is fixed when the server starts ([`Config::restart_only_changes`]); a reload that
//! changes one applies the rest and logs a warning naming each such key (see docs/deploy.md,
//! "Reloading").

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::dns::{AnswerPolicy, Responder};
use crate::metrics::Metrics;
use crate::static_zones;
use crate::zone::ZoneSet;

/// A reload request: the configuration as loaded now, or why it could not be.
pub type Request = Result<Config, ConfigError>;

/// What applies reloads to the running server.
#[derive(Debug)]
pub struct Reloader {
    /// The settings in force (the zones directory and the answering policy follow reloads).
    current: Config,
    static_zones: Arc<ArcSwap<ZoneSet>>,
    responder: Responder,
    metrics: Arc<Metrics>,
}

impl Reloader {
    /// A reloader for a server started with `current`.
    pub fn new(
        current: Config,
        static_zones: Arc<ArcSwap<ZoneSet>>,
        responder: Responder,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            current,
            static_zones,
            responder,
            metrics,
        }
    }

    /// Applies one reload request; true when it was applied.
    pub async fn apply(&mut self, request: Request) -> bool {
        let applied = self.try_apply(request).await;
        self.metrics.observe_reload(applied);
        applied
    }

    async fn try_apply(&mut self, request: Request) -> bool {
        let new = match request {
            Ok(config) => config,
            Err(error) => {
                error!(
                    key = %error.key,
                    "configuration reload rejected: {error}; keeping the previous configuration"
                );
                return false;
            }
        };
        let dir = new.server.zones_dir.clone();
        let loaded =
            tokio::task::spawn_blocking(move || static_zones::load_dir_reporting(&dir)).await;
        let (zones, errors) = match loaded {
            Ok(result) => result,
            Err(join) => {
                error!(error = %join, "configuration reload rejected: loading the static zones failed; keeping the previous configuration");
                return false;
            }
        };
        if !errors.is_empty() {
            for error in &errors {
                error!(key = "zones-dir", "configuration reload rejected: {error}");
            }
            error!(
                key = "zones-dir",
                broken = errors.len(),
                "configuration reload rejected; keeping the previous configuration and static zones"
            );
            return false;
        }
        let restart = self.current.restart_only_changes(&new);
        if !restart.is_empty() {
            warn!(
                keys = %restart.join(", "),
                "configuration reload: these settings changed but take effect only after a restart"
            );
        }
        let count = zones.len();
        self.static_zones.store(Arc::new(ZoneSet::new(zones)));
        self.current.server.zones_dir = new.server.zones_dir;
        // The answering policy: who may recurse, the UDP size cap (local and forwarded answers
        // alike), shuffling. Whether there is a forwarder at all follows the upstreams, which
        // need a restart.
        let policy = AnswerPolicy {
            forwarding: self.current.answer.forwarding,
            ..new.answer
        };
        self.responder.set_policy(policy.clone());
        self.current.answer = policy;
        info!(
            static_zones = count,
            zones_dir = %self.current.server.zones_dir.display(),
            "configuration reloaded"
        );
        true
    }
}

/// Applies reload requests until `shutdown` is cancelled or the sender goes away.
pub async fn watch(
    mut requests: mpsc::Receiver<Request>,
    mut reloader: Reloader,
    shutdown: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => break,
            request = requests.recv() => match request {
                Some(request) => request,
                None => break,
            },
        };
        reloader.apply(request).await;
    }
}
