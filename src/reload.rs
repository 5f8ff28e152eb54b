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
//! Only the zones directory (and the zone files in it) take effect at run time. Every other
//! setting is fixed when the server starts; a reload that changes one applies the rest and
//! logs a warning naming each such key (see docs/deploy.md, "Reloading").

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
    /// The settings in force (the zones directory follows reloads; nothing else changes).
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
        let dir = new.zones_dir.clone();
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
        let restart = restart_only_changes(&self.current, &new);
        if !restart.is_empty() {
            warn!(
                keys = %restart.join(", "),
                "configuration reload: these settings changed but take effect only after a restart"
            );
        }
        let count = zones.len();
        self.static_zones.store(Arc::new(ZoneSet::new(zones)));
        self.current.zones_dir = new.zones_dir;
        // The answering policy: who may recurse, the UDP size cap, shuffling. Whether there is
        // a forwarder at all follows the upstreams, which need a restart.
        let forwarding = self.responder.policy().forwarding;
        self.responder.set_policy(AnswerPolicy {
            max_udp_size: new.max_udp_size,
            shuffle: new.shuffle,
            forwarding,
            allow_recursion: new.allow_recursion.clone(),
        });
        self.current.max_udp_size = new.max_udp_size;
        self.current.shuffle = new.shuffle;
        self.current.allow_recursion = new.allow_recursion;
        info!(
            static_zones = count,
            zones_dir = %self.current.zones_dir.display(),
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

/// The keys (as in the config file) of settings that differ and need a restart.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    macro_rules! compare {
        ($($field:ident => $key:literal),* $(,)?) => {
            $(if old.$field != new.$field {
                keys.push($key);
            })*
        };
    }
    compare!(
        listen => "listen",
        registry => "registry",
        domain => "domain",
        datacenter => "datacenter",
        state_dir => "state-dir",
        service_ttl => "service-ttl",
        node_ttl => "node-ttl",
        negative_ttl => "negative-ttl",
        udp_workers => "udp-workers",
        tcp_idle_timeout => "tcp-idle-timeout",
        http => "http",
        token => "token-file",
        ca_file => "ca-file",
        client_identity => "client-cert",
        consistent => "consistent",
        sync_interval => "sync-interval",
        request_timeout => "request-timeout",
        blocking_wait => "blocking-wait",
        max_concurrent_requests => "max-concurrent-requests",
        self_preservation_threshold => "self-preservation-threshold",
        self_preservation_window => "self-preservation-window",
        upstreams => "upstream",
        upstream_timeout => "upstream-timeout",
        cache_size => "cache-size",
        cache_min_ttl => "cache-min-ttl",
        cache_max_ttl => "cache-max-ttl",
        cache_max_negative_ttl => "cache-max-negative-ttl",
    );
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Environment, ServeArgs};

    fn config(args: ServeArgs) -> Config {
        Config::from_args(&args, &Environment::default()).expect("valid")
    }

    #[test]
    fn names_the_settings_that_need_a_restart() {
        let old = config(ServeArgs::default());
        let new = config(ServeArgs {
            zones_dir: Some("elsewhere".into()),
            listen: vec!["127.0.0.2:8600".into()],
            no_shuffle: true,
            ..ServeArgs::default()
        });
        assert_eq!(restart_only_changes(&old, &new), ["listen"]);
        assert!(restart_only_changes(&old, &old.clone()).is_empty());
    }
}
