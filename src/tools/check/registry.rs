//! The registry part of `snapdns check`: a registry file parsed and built into the snapshot
//! `serve` would publish, with every instance DNS leaves out and why; or Consul sent its one
//! request.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::registry::consul::{ConsulClient, FaultKind};
use crate::snapshot::verdict::instance_verdict;
use crate::snapshot::{HealthFilter, Snapshot};
use crate::tools::report::{plural, Level, Report};

/// Instances listed one per line at most: the rest are counted, so a large registry with a
/// rack down does not bury the summary.
const LISTED_INSTANCES: usize = 100;

/// Parses the registry file and builds its snapshot with the configured zone options.
pub(super) fn file(config: &Config, path: &Path, report: &mut Report) {
    let state = match crate::registry::file::load(path) {
        Ok(state) => Arc::new(state),
        Err(error) => {
            report.section(Level::Error, format!("registry: {error}"));
            return;
        }
    };
    let shown = path.display();
    let snapshot = match Snapshot::build(state, SystemTime::now(), &config.zone) {
        Ok(snapshot) => snapshot,
        Err(error) => {
            report.section(
                Level::Error,
                format!("registry: file {shown}: no snapshot can be built: {error}"),
            );
            return;
        }
    };
    let stats = snapshot.stats;
    report.section(
        Level::Note,
        format!(
            "registry: file {shown}: {}, {}, {} passing, {} served (serial {})",
            plural(stats.services, "service"),
            plural(stats.instances, "instance"),
            stats.passing_instances,
            plural(snapshot.zone.name_count(), "name"),
            snapshot.zone.serial()
        ),
    );
    instances(&snapshot, config.zone.health, report);
}

/// What DNS leaves out of the registry: one warning per kind of data it cannot serve as
/// registered (as `serve` logs and `/health` shows them), then every instance that is not
/// served, or is served with a caveat, and why.
fn instances(snapshot: &Snapshot, health: HealthFilter, report: &mut Report) {
    for (reason, count, example) in snapshot.skipped.reasons() {
        report.detail(
            Level::Warning,
            format!("skipped: {reason}: {count} (e.g. {example:?})"),
        );
    }
    let mut listed = 0;
    let mut more = 0;
    for (key, entries) in &snapshot.state.services {
        for entry in entries.iter() {
            let verdict = instance_verdict(key, entry, health);
            if verdict.served && verdict.reasons.is_empty() {
                continue;
            }
            if listed == LISTED_INSTANCES {
                more += 1;
                continue;
            }
            listed += 1;
            let why: Vec<String> = verdict.reasons.iter().map(|r| r.describe(entry)).collect();
            let name = if entry.service.service.is_empty() {
                key.as_str()
            } else {
                entry.service.service.as_str()
            };
            report.detail(
                Level::Note,
                format!(
                    "{name} instance {} on node {}: {}{}",
                    entry.service.id,
                    entry.node.node,
                    if verdict.served {
                        "served; "
                    } else {
                        "not served: "
                    },
                    why.join("; ")
                ),
            );
        }
    }
    if more > 0 {
        report.detail(
            Level::Note,
            format!(
                "... and {} more not served or with a caveat",
                plural(more, "instance")
            ),
        );
    }
}

/// Sends Consul its one request (`GET /v1/catalog/services`) and reports reachability, the
/// token's access and the leader.
pub(super) fn consul(config: &Config, report: &mut Report) {
    let url = config.registry.shown();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            report.section(
                Level::Error,
                format!("registry: consul {url}: cannot start a runtime: {error}"),
            );
            return;
        }
    };
    let probed =
        ConsulClient::new(config.consul.clone()).map(|client| runtime.block_on(client.probe()));
    let fetched = match probed {
        Ok(Ok(fetched)) => fetched,
        Ok(Err(error)) | Err(error) => {
            let (level, meaning) = match error.kind() {
                FaultKind::Unreachable | FaultKind::Timeout => (
                    Level::Error,
                    "unreachable: serve would answer from its persisted state",
                ),
                FaultKind::AclDenied => (
                    Level::Error,
                    "ACL denied: the token (--token-file, CONSUL_HTTP_TOKEN) needs service:read \
                     and node:read",
                ),
                FaultKind::NoLeader => (
                    Level::Warning,
                    "no cluster leader: consistent reads fail until one is elected",
                ),
                FaultKind::RateLimited => (Level::Warning, "rate limited: try again"),
                FaultKind::Setup => (Level::Error, "client setup failed"),
                _ => (Level::Error, "consul answered with an error"),
            };
            report.section(level, format!("registry: consul {url}: {meaning}"));
            // The one problem is counted once, on the line above.
            report.detail(Level::Note, error.to_string());
            return;
        }
    };
    report.section(
        Level::Note,
        format!(
            "registry: consul {url}: reachable, the token may read the catalog ({} listed, index {})",
            plural(fetched.value.len(), "service"),
            fetched.index
        ),
    );
    if fetched.known_leader {
        report.detail(
            Level::Note,
            format!("leader known (last contact {} ms)", fetched.last_contact_ms),
        );
    } else {
        report.detail(
            Level::Warning,
            format!(
                "no known leader (X-Consul-KnownLeader: false, last contact {} ms): answers may be stale",
                fetched.last_contact_ms
            ),
        );
    }
}
