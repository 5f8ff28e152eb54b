//! Unit tests of `cache.rs`: a snapshot served from its cache answers as the snapshot did, a
//! rebuild over the cache equals a full build, and a cache for other options is refused.

use std::sync::Arc;
use std::time::SystemTime;

use crate::snapshot::tests::{contents, entry, options, state};
use crate::snapshot::{
    BaseId, CacheError, HealthFilter, NameServer, NameServers, Snapshot, ZoneOptions,
};

fn base(index: u64) -> BaseId {
    BaseId {
        generation: 7,
        saved_at_ms: 1_000,
        index,
    }
}

fn sample_state(index: u64, web_port: u16) -> Arc<crate::registry::RegistryState> {
    let mut bad = entry("bad node", "10.0.0.9", "db", 5432, "passing");
    bad.service.tags.push("not a label".into());
    state(
        &[
            (
                "api",
                vec![entry("shared", "10.0.0.1", "api", 80, "passing")],
            ),
            (
                "db",
                vec![entry("db1", "10.0.0.2", "db", 5432, "passing"), bad],
            ),
            (
                "web",
                vec![
                    entry("shared", "10.0.0.1", "web", web_port, "passing"),
                    entry("w2", "fd00::4", "web", web_port, "critical"),
                ],
            ),
        ],
        index,
    )
}

fn cache_of(snapshot: &Snapshot, index: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    snapshot.write_cache(&base(index), &mut bytes).unwrap();
    bytes
}

#[test]
fn a_snapshot_read_from_its_cache_answers_the_same() {
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000);
    let built = Snapshot::build(sample_state(5, 80), now, &options()).unwrap();
    let cached = Snapshot::from_cache(&cache_of(&built, 5), &options()).unwrap();
    assert_eq!(cached.base, base(5));
    let snapshot = cached.snapshot;
    assert_eq!(contents(&snapshot.zone), contents(&built.zone));
    assert_eq!(snapshot.zone.serial(), built.zone.serial());
    assert_eq!(snapshot.zone.record_count(), built.zone.record_count());
    assert_eq!(snapshot.stats, built.stats);
    assert_eq!(snapshot.skipped, built.skipped);
    assert!(!snapshot.skipped.is_empty());
    assert_eq!(snapshot.fetched_at, now);
    assert_eq!(snapshot.index(), 5);
    assert!(snapshot.state.services.is_empty(), "no state to sync from");
}

#[test]
fn a_rebuild_over_the_cache_equals_a_full_build_and_reuses_unchanged_services() {
    let now = SystemTime::now();
    let base_state = sample_state(5, 80);
    let built = Snapshot::build(base_state.clone(), now, &options()).unwrap();
    let cached = Snapshot::from_cache(&cache_of(&built, 5), &options())
        .unwrap()
        .snapshot;
    let later = sample_state(6, 8080);
    let rebuilt =
        Snapshot::rebuild_over(&cached, base_state, later.clone(), now, &options()).unwrap();
    let fresh = Snapshot::build(later, now, &options()).unwrap();
    assert_eq!(contents(&rebuilt.zone), contents(&fresh.zone));
    assert_eq!(rebuilt.stats, fresh.stats);
    assert_eq!(rebuilt.skipped, fresh.skipped);
    let fragment = |s: &Snapshot, name: &str| s.parts.fragments.get(name).unwrap().clone();
    assert!(Arc::ptr_eq(
        &fragment(&cached, "api"),
        &fragment(&rebuilt, "api")
    ));
    assert!(!Arc::ptr_eq(
        &fragment(&cached, "web"),
        &fragment(&rebuilt, "web")
    ));
}

#[test]
fn a_cache_for_other_options_or_cut_short_is_refused() {
    let built = Snapshot::build(sample_state(5, 80), SystemTime::now(), &options()).unwrap();
    let bytes = cache_of(&built, 5);
    let others: [fn(&mut ZoneOptions); 4] = [
        |o| o.service_ttl = 30,
        |o| o.health = HealthFilter::PassingOrWarning,
        |o| o.service_ttls.insert("web*", 5).unwrap(),
        |o| o.service_ttls.insert("*", 0).unwrap(),
    ];
    // Other name servers (`--nameserver`) shape the apex: refused too, by name and address.
    let named = |name: &str, ip: &str| {
        let mut other = options();
        other.nameservers = NameServers::Named(vec![NameServer {
            name: name.parse().unwrap(),
            addresses: vec![ip.parse().unwrap()],
        }]);
        other
    };
    let ns1 = named("ns1.consul.", "127.0.0.1");
    let ns1_bytes = cache_of(
        &Snapshot::build(sample_state(5, 80), SystemTime::now(), &ns1).unwrap(),
        5,
    );
    assert!(Snapshot::from_cache(&ns1_bytes, &ns1).is_ok());
    for other in [
        named("ns2.consul.", "127.0.0.1"),
        named("ns1.consul.", "127.0.0.2"),
    ] {
        assert!(matches!(
            Snapshot::from_cache(&ns1_bytes, &other),
            Err(CacheError::OtherOptions)
        ));
    }
    for change in others {
        let mut other = options();
        change(&mut other);
        assert!(matches!(
            Snapshot::from_cache(&bytes, &other),
            Err(CacheError::OtherOptions)
        ));
    }
    for len in (0..bytes.len()).step_by(7) {
        assert!(Snapshot::from_cache(&bytes[..len], &options()).is_err());
    }
}

#[test]
fn an_ordinary_rebuild_never_takes_a_cached_snapshot_as_its_base() {
    let now = SystemTime::now();
    let built = Snapshot::build(sample_state(5, 80), now, &options()).unwrap();
    let cached = Snapshot::from_cache(&cache_of(&built, 5), &options())
        .unwrap()
        .snapshot;
    // The cached snapshot's state has no services: a diff against it would count twice.
    let later = sample_state(6, 8080);
    let rebuilt = Snapshot::rebuild(Some(&cached), later.clone(), now, &options()).unwrap();
    let fresh = Snapshot::build(later, now, &options()).unwrap();
    assert_eq!(rebuilt.stats, fresh.stats);
    assert_eq!(rebuilt.skipped, fresh.skipped);
    assert_eq!(contents(&rebuilt.zone), contents(&fresh.zone));
}

#[test]
fn what_in_domain_targets_depend_on_survives_the_cache() {
    let now = SystemTime::now();
    let with_db_at = |address: &str, index: u64| {
        let mut api = entry("a1", "10.0.0.1", "api", 80, "passing");
        api.service.address = "db.service.consul".into();
        state(
            &[
                ("api", vec![api]),
                ("db", vec![entry("db1", address, "db", 5432, "passing")]),
            ],
            index,
        )
    };
    let base_state = with_db_at("10.0.0.2", 5);
    let built = Snapshot::build(base_state.clone(), now, &options()).unwrap();
    assert!(!built.parts.watching.is_empty());
    let cached = Snapshot::from_cache(&cache_of(&built, 5), &options())
        .unwrap()
        .snapshot;
    assert_eq!(cached.parts.watching, built.parts.watching);
    assert_eq!(cached.parts.watchers, built.parts.watchers);
    // Only db changes: api, which points at it, follows.
    let later = with_db_at("10.0.0.3", 6);
    let rebuilt =
        Snapshot::rebuild_over(&cached, base_state, later.clone(), now, &options()).unwrap();
    let fresh = Snapshot::build(later, now, &options()).unwrap();
    assert_eq!(contents(&rebuilt.zone), contents(&fresh.zone));
    assert_ne!(contents(&rebuilt.zone), contents(&built.zone));
}
