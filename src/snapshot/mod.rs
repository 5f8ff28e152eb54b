//! The registry snapshot: an immutable, indexed view of the registry, and the handle that
//! publishes it.
//!
//! A [`Snapshot`] is built off to the side from a [`RegistryState`] (see [`build`]), then
//! swapped in whole through [`SnapshotStore::publish`]. Readers take a wait-free
//! [`SnapshotStore::load`] per query and never see a half-built state. This module does no
//! I/O and names neither tokio, reqwest nor hickory-server.

mod address;
mod build;
mod cache;
mod health;
mod meta_txt;
mod names;
mod nameservers;
mod parts;
mod serial;
mod service_ttl;
mod targets;
mod threads;
pub mod verdict;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwapOption, Guard};
use tracing::warn;

pub use build::{BuildError, ZoneOptions};
pub use cache::{BaseId, CacheError, Cached};
pub use health::HealthFilter;
pub use nameservers::{NameServer, NameServers};
pub use serial::{serial_greater, serial_of};
pub use service_ttl::ServiceTtls;

use crate::registry::RegistryState;
use crate::zone::Zone;
use parts::Parts;

/// A build longer than this is logged.
const SLOW_BUILD: Duration = Duration::from_secs(1);

/// One published view of the registry: the prepared registry zone plus the state it came from.
#[derive(Debug)]
pub struct Snapshot {
    /// Answers for the registry domain.
    pub zone: Zone,
    /// The registry state this snapshot was built from (kept for persistence and health).
    pub state: Arc<RegistryState>,
    /// When the state was obtained from the registry (not when it was built).
    pub fetched_at: SystemTime,
    /// Counts for health and metrics.
    pub stats: SnapshotStats,
    /// Registry entries, or parts of them, that DNS does not serve, and why.
    pub skipped: Skipped,
    /// TTL of the answers built per query (`addr` names of addresses no answer uses).
    pub node_ttl: u32,
    /// The encoded parts the zone was assembled from, reused by the next build.
    parts: Parts,
    /// The zone was derived from the one it replaces (its unchanged names shared), so the
    /// names that differ can be found without comparing the whole zones (IXFR).
    derived: bool,
}

/// What a build left out of DNS, by reason: how many, and the first example (in registry
/// order, so every replica reports the same one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped(BTreeMap<&'static str, (usize, String)>);

impl Skipped {
    /// Counts one more `what` left out for `reason`.
    pub(crate) fn add(&mut self, reason: &'static str, what: &str) {
        // Registry data can be anything: the example shown is short.
        let slot = self
            .0
            .entry(reason)
            .or_insert_with(|| (0, what.chars().take(64).collect()));
        slot.0 += 1;
    }

    /// Each reason with its count and example.
    pub fn reasons(&self) -> impl Iterator<Item = (&'static str, usize, &str)> + '_ {
        self.0
            .iter()
            .map(|(reason, (count, example))| (*reason, *count, example.as_str()))
    }

    /// True when nothing was left out.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a snapshot holds, for health and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Services in the registry state.
    pub services: usize,
    /// Instances in the registry state, whatever their health.
    pub instances: usize,
    /// Instances served in answers: every check passing, or with `--serve-warning` none
    /// critical ([`HealthFilter`]). The name stays for `/health` and `/metrics` readers.
    pub passing_instances: usize,
}

impl Snapshot {
    /// Heap bytes of the zone by structure, the fragments' name lists included.
    pub fn footprint(&self) -> crate::zone::Footprint {
        let mut footprint = self.zone.footprint();
        footprint.fragment_bytes = self.parts.fragments.values().map(|f| f.list_bytes()).sum();
        footprint.fragment_pointer_bytes = self
            .parts
            .fragments
            .values()
            .map(|f| f.pointer_bytes())
            .sum();
        footprint
    }

    /// Builds the snapshot of `state` with the zone options.
    pub fn build(
        state: Arc<RegistryState>,
        fetched_at: SystemTime,
        options: &ZoneOptions,
    ) -> Result<Self, BuildError> {
        Self::rebuild(None, state, fetched_at, options)
    }

    /// Builds the snapshot of `state`, re-encoding only the services that differ from
    /// `previous` (when it was built with the same options) and deriving its zone from
    /// `previous`'s: after one change in a large registry this costs the change, not a build.
    pub fn rebuild(
        previous: Option<&Self>,
        state: Arc<RegistryState>,
        fetched_at: SystemTime,
        options: &ZoneOptions,
    ) -> Result<Self, BuildError> {
        let previous =
            previous.map(|snapshot| (snapshot.state.as_ref(), &snapshot.parts, &snapshot.zone));
        Self::build_over(previous, state, fetched_at, options)
    }

    /// Builds the snapshot of `state` over `previous` (the state, parts and zone a rebuild
    /// starts from), warning when that is slow: the one assembly of a snapshot.
    fn build_over(
        previous: Option<(&RegistryState, &Parts, &Zone)>,
        state: Arc<RegistryState>,
        fetched_at: SystemTime,
        options: &ZoneOptions,
    ) -> Result<Self, BuildError> {
        let started = Instant::now();
        let (zone, stats, skipped, parts, derived) =
            build::registry_zone(&state, options, previous)?;
        let took = started.elapsed();
        if took > SLOW_BUILD {
            // Answers keep coming from the previous snapshot meanwhile: worth knowing why.
            warn!(
                took_ms = took.as_millis() as u64,
                services = stats.services,
                instances = stats.instances,
                names = zone.name_count(),
                "slow snapshot build"
            );
        }
        Ok(Self {
            zone,
            state,
            fetched_at,
            stats,
            skipped,
            node_ttl: options.node_ttl,
            parts,
            derived,
        })
    }

    /// The registry index the snapshot reflects.
    pub fn index(&self) -> u64 {
        self.state.index
    }
}

/// Handle to the published snapshot. Cloning is shallow: one `Arc` increment.
///
/// `None` means no snapshot was ever loaded or synced: registry names then get SERVFAIL
/// ("unknown"), never NXDOMAIN ("absent").
///
/// It also keeps the last few snapshots the current one was derived from (`--ixfr-journal`),
/// so that a secondary can be sent what changed since its serial (IXFR). Only derived
/// snapshots are kept: they share all but their changed shards with the current one, so the
/// history costs the changes, not copies of the zone.
#[derive(Clone, Default)]
pub struct SnapshotStore {
    current: Arc<ArcSwapOption<Snapshot>>,
    history: Arc<History>,
}

/// The snapshots replaced, newest last.
#[derive(Default)]
struct History {
    keep: std::sync::atomic::AtomicUsize,
    past: std::sync::Mutex<std::collections::VecDeque<Arc<Snapshot>>>,
}

impl SnapshotStore {
    /// The snapshot to answer one query with. Do not hold the guard across `.await`.
    pub fn load(&self) -> Guard<Option<Arc<Snapshot>>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, for slow paths.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Keeps up to `snapshots` replaced snapshots for [`SnapshotStore::since`] (0: none).
    pub fn keep_history(&self, snapshots: usize) {
        use std::sync::atomic::Ordering;
        self.history.keep.store(snapshots, Ordering::Relaxed);
        let mut past = self.history.past.lock().unwrap_or_else(|e| e.into_inner());
        while past.len() > snapshots {
            past.pop_front();
        }
    }

    /// Replaces the whole view at once.
    pub fn publish(&self, next: Arc<Snapshot>) {
        use std::sync::atomic::Ordering;
        let keep = self.history.keep.load(Ordering::Relaxed);
        let previous = self.current.swap(Some(next.clone()));
        if keep == 0 {
            return;
        }
        let mut past = self.history.past.lock().unwrap_or_else(|e| e.into_inner());
        match previous {
            Some(previous) if next.derived && next.zone.shares_layout_with(&previous.zone) => {
                if previous.zone.serial() != next.zone.serial() {
                    past.push_back(previous);
                }
                while past.len() > keep {
                    past.pop_front();
                }
            }
            // Built afresh: the older zones share nothing with it, and a difference to one of
            // them would cost the whole zone; secondaries behind it get a full transfer.
            _ => past.clear(),
        }
    }

    /// The kept snapshot whose zone has `serial`, if any.
    pub fn since(&self, serial: u32) -> Option<Arc<Snapshot>> {
        let past = self.history.past.lock().unwrap_or_else(|e| e.into_inner());
        past.iter()
            .rev()
            .find(|snapshot| snapshot.zone.serial() == serial)
            .cloned()
    }
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current();
        f.debug_struct("SnapshotStore")
            .field("index", &current.map(|s| s.index()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::registry::{EntryCheck, HealthEntry, Node, NodeService};

    pub(super) fn entry(
        node: &str,
        address: &str,
        service: &str,
        port: u16,
        status: &str,
    ) -> HealthEntry {
        HealthEntry {
            node: Arc::new(Node {
                node: node.into(),
                address: address.into(),
                datacenter: "dc1".into(),
                ..Node::default()
            }),
            service: NodeService {
                id: format!("{service}-{port}").into(),
                service: service.into(),
                tags: vec!["v1".into()],
                port,
                ..NodeService::default()
            },
            checks: vec![EntryCheck {
                status: status.into(),
                ..EntryCheck::default()
            }],
        }
    }

    pub(super) fn options() -> ZoneOptions {
        ZoneOptions {
            domain: "consul.".parse().unwrap(),
            datacenter: "dc1".into(),
            service_ttl: 0,
            service_ttls: ServiceTtls::default(),
            health: HealthFilter::PassingOnly,
            node_ttl: 0,
            negative_ttl: 0,
            nameservers: NameServers::Listen(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
            srv_node_meta_txt: false,
        }
    }

    pub(super) fn state(services: &[(&str, Vec<HealthEntry>)], index: u64) -> Arc<RegistryState> {
        Arc::new(RegistryState {
            index,
            services: services
                .iter()
                .map(|(k, v)| ((*k).to_string(), Arc::new(v.clone())))
                .collect(),
        })
    }

    /// Every name and answer of two zones, as bytes, for comparison; the reverse names (outside
    /// the apex) with their PTR answers among them.
    pub(super) fn contents(
        zone: &Zone,
    ) -> std::collections::BTreeMap<Vec<u8>, Vec<(u16, Vec<u8>)>> {
        let ptr = u16::from(hickory_proto::rr::RecordType::PTR);
        zone.names()
            .map(|(key, by_type)| {
                let types = by_type
                    .iter()
                    .map(|(t, p)| (*t, p.wire().to_vec()))
                    .collect();
                (key.to_vec(), types)
            })
            .chain(
                zone.pointers()
                    .map(|(key, p)| (key.to_vec(), vec![(ptr, p.wire().to_vec())])),
            )
            .collect()
    }

    #[test]
    fn an_incremental_rebuild_equals_a_full_build() {
        let before = state(
            &[
                (
                    "api",
                    vec![entry("shared", "10.0.0.1", "api", 80, "passing")],
                ),
                ("db", vec![entry("db1", "10.0.0.2", "db", 5432, "passing")]),
                ("gone", vec![entry("g1", "10.0.0.3", "gone", 1, "passing")]),
                (
                    "web",
                    vec![
                        entry("shared", "10.0.0.1", "web", 8080, "passing"),
                        entry("w2", "10.0.0.4", "web", 8080, "passing"),
                    ],
                ),
            ],
            10,
        );
        // db unchanged; gone removed; web loses w2 to a critical check; a new service on a new node.
        let after = state(
            &[
                (
                    "api",
                    vec![entry("shared", "10.0.0.1", "api", 80, "passing")],
                ),
                (
                    "cache",
                    vec![entry("c1", "10.0.0.5", "cache", 6379, "passing")],
                ),
                ("db", vec![entry("db1", "10.0.0.2", "db", 5432, "passing")]),
                (
                    "web",
                    vec![
                        entry("shared", "10.0.0.1", "web", 8080, "passing"),
                        entry("w2", "10.0.0.4", "web", 8080, "critical"),
                    ],
                ),
            ],
            11,
        );
        let now = SystemTime::now();
        let first = Snapshot::build(before, now, &options()).unwrap();
        let rebuilt = Snapshot::rebuild(Some(&first), after.clone(), now, &options()).unwrap();
        let fresh = Snapshot::build(after, now, &options()).unwrap();
        assert_eq!(contents(&rebuilt.zone), contents(&fresh.zone));
        assert_eq!(rebuilt.zone.serial(), 11);
        assert_eq!(rebuilt.stats, fresh.stats);
        // The unchanged service's answers were reused, not re-encoded.
        let reused = |s: &Snapshot| s.parts.fragments.get("db").unwrap().clone();
        assert!(Arc::ptr_eq(&reused(&first), &reused(&rebuilt)));
    }

    /// One service with `instances` instances on as many nodes, every check passing.
    pub(crate) fn one_large_service(instances: usize) -> Arc<RegistryState> {
        let entries = (0..instances)
            .map(|i| {
                let address = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
                let mut entry = entry(&format!("node-{i}"), &address, "big", 8080, "passing");
                entry.service.id = format!("big-{i}").into();
                entry
            })
            .collect();
        state(&[("big", entries)], 1)
    }

    #[test]
    fn one_service_with_20000_instances_builds_with_a_trimmed_srv_answer() {
        // Before builds were linear this took minutes (quadratic in instances per service).
        let snapshot =
            Snapshot::build(one_large_service(20_000), SystemTime::now(), &options()).unwrap();
        let key = crate::zone::wire_key(&"_big._tcp.service.dc1.consul.".parse().unwrap()).unwrap();
        let crate::zone::Lookup::Answer(srv) = snapshot.zone.lookup(&key, 33) else {
            panic!("no SRV answer");
        };
        assert!(srv.is_truncated());
        assert!(srv.wire().len() <= crate::zone::MAX_MESSAGE_LEN);
        // 20,000 x (3/4)^n: the first that fits into 64 KiB.
        assert_eq!(srv.answer_count(), 474);
        let key = crate::zone::wire_key(&"big.service.consul.".parse().unwrap()).unwrap();
        assert!(matches!(
            snapshot.zone.lookup(&key, 1),
            crate::zone::Lookup::Answer(a) if a.is_truncated() && a.answer_count() > 1000
        ));
    }

    /// Build time of one large service, for docs/PERFORMANCE.md (not asserted):
    /// `SNAPDNS_BUILD_SIZES=4000,16000 cargo test --release --lib build_time -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement, run by hand"]
    fn build_time_of_one_large_service() {
        let sizes = std::env::var("SNAPDNS_BUILD_SIZES").unwrap_or_else(|_| "4000,16000".into());
        for size in sizes
            .split(',')
            .filter_map(|s| s.trim().parse::<usize>().ok())
        {
            let state = one_large_service(size);
            let started = std::time::Instant::now();
            let snapshot = Snapshot::build(state, SystemTime::now(), &options()).unwrap();
            let took = started.elapsed();
            eprintln!(
                "one service with {size} instances: built in {took:?} ({} names)",
                snapshot.zone.name_count()
            );
        }
    }
}
