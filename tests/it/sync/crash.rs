//! Crash safety of the persisted state (issue 12): snapdns is killed with SIGKILL at random
//! moments while the registry changes, and each restart with the registry down must serve a
//! complete state it had published: every service at a version it really had, never older
//! than what `/health` said was saved, and exactly the newest one when the kill came after the
//! change was saved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::assert_eventually;
use crate::support::dns_client::service_addresses;
use crate::support::free_port;
use crate::support::http::health;
use crate::support::registry::entry;
use crate::support::server::Server;
use crate::support::standin::Standin;
use crate::support::sync_settings::start_syncing_in;

const SERVICES: u32 = 12;
const ROUNDS: u32 = 32;

/// A small xorshift generator: the seed is printed, so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

/// Service `s<i>`'s one instance at version `version`: its address spells the version.
fn instance(i: u32, version: u32) -> Value {
    let address = format!("10.{i}.{}.{}", version / 256, version % 256);
    json!([entry(
        &format!("n{i}"),
        &format!("10.200.0.{i}"),
        &format!("s{i}"),
        &address,
        80,
        &[],
        "passing"
    )])
}

/// Every version each service went through; `None`: the service was deregistered.
struct History(BTreeMap<u32, Vec<Option<u32>>>);

impl History {
    /// The version `addresses` (an A answer for `s<i>`) shows: its position in the history.
    /// "Deregistered" is ambiguous: the first such position from `least` on is taken.
    fn position(&self, i: u32, addresses: &[String], least: usize) -> Option<usize> {
        let served = match addresses {
            [] => None,
            [one] => {
                let octets: Vec<u32> = one.split('.').map(|o| o.parse().unwrap()).collect();
                assert_eq!(octets[..2], [10, i], "s{i} answers {one}");
                Some(octets[2] * 256 + octets[3])
            }
            more => panic!("s{i} answers {more:?}: one instance expected"),
        };
        let versions = &self.0[&i];
        let at_least = versions.iter().skip(least).position(|v| *v == served);
        at_least
            .map(|p| p + least)
            .or_else(|| versions.iter().position(|v| *v == served))
    }

    fn latest(&self) -> Vec<usize> {
        self.0.values().map(|v| v.len() - 1).collect()
    }
}

/// Versions (history positions) of every service `server` answers; `None` for an answer no
/// version ever had (or none yet).
fn positions(server: &Server, history: &History, floor: &[usize]) -> Vec<Option<usize>> {
    (0..SERVICES)
        .map(|i| {
            let addresses = service_addresses(server, &format!("s{i}"));
            history.position(i, &addresses, floor[i as usize])
        })
        .collect()
}

/// [`positions`], each of which must be a version the service had.
fn served(server: &Server, history: &History, floor: &[usize]) -> Vec<usize> {
    let positions = positions(server, history, floor);
    assert!(
        positions.iter().all(Option::is_some),
        "answers that no version had: {positions:?}"
    );
    positions.into_iter().flatten().collect()
}

/// Changes one random service: a new version, or now and then a deregistration.
fn change_one(consul: &Standin, history: &mut History, rng: &mut Rng) {
    let i = rng.below(SERVICES);
    let versions = history.0.get_mut(&i).unwrap();
    let next = versions.len() as u32;
    if versions.last().unwrap().is_some() && rng.below(8) == 0 {
        consul.delete_service(&format!("s{i}"));
        versions.push(None);
    } else {
        consul.put_service(&format!("s{i}"), &instance(i, next));
        versions.push(Some(next));
    }
}

#[test]
fn sync_kill_9_during_changes_always_restarts_on_a_complete_published_state() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let registry: serde_json::Map<String, Value> = (0..SERVICES)
        .map(|i| (format!("s{i}"), instance(i, 0)))
        .collect();
    let (consul, _registry_dir) = Standin::serving(&Value::Object(registry), &[]);
    let mut history = History((0..SERVICES).map(|i| (i, vec![Some(0)])).collect());
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let fast = ["--persist-interval", "20ms"];
    let closed = format!("http://127.0.0.1:{}", free_port());
    // Positions that a restart may not go below, and the index saved with them.
    let mut floor = vec![0; SERVICES as usize];
    let mut floor_index = 0;
    let (mut replayed, mut settled_rounds) = (0, 0);
    for round in 0..ROUNDS {
        let mut server = start_syncing_in(dir.clone(), &consul.url(), &fast);
        let settle = round == 0 || rng.below(4) == 0;
        // A process's first save writes a whole base (the first round, or after a torn
        // journal) or appends to the journal it started from, and records after it: let that
        // first save happen, so that the kill below meets the journal.
        for change in 0..1 + rng.below(14) {
            if change == 1 {
                assert_eventually!(health(&server).1["persistence"]["ok"] == true);
            }
            change_one(&consul, &mut history, &mut rng);
        }
        if settle {
            // The newest state served and saved: a kill now must lose nothing. Concurrent
            // changes may be fetched out of order, so an index alone does not name a state:
            // once every change is served, one more change gets an index above all of them.
            let served_all = |history: &History| {
                let latest = history.latest();
                let expected: Vec<Option<usize>> = latest.iter().copied().map(Some).collect();
                assert_eventually!(positions(&server, history, &latest) == expected);
            };
            served_all(&history);
            change_one(&consul, &mut history, &mut rng);
            let marker = consul.index();
            served_all(&history);
            assert_eventually!({
                let p = &health(&server).1["persistence"];
                p["ok"] == true && p["index"].as_u64().unwrap_or(0) >= marker
            });
            let latest = history.latest();
            floor = latest;
            floor_index = health(&server).1["persistence"]["index"].as_u64().unwrap();
            settled_rounds += 1;
        }
        let published_at_most = consul.index();
        server.kill();

        // The registry is down: the state on disk is all there is.
        let check = start_syncing_in(dir.clone(), &closed, &[]);
        // A zone cache answers first with its base's state; the journal on top of it is
        // served once the state is read (docs/sync.md): the saves are checked from then on.
        assert_eventually!(check
            .log()
            .contains("serving the persisted registry state until the first sync"));
        let versions = served(&check, &history, &floor);
        let (_, report) = health(&check);
        assert_eq!(
            report["snapshot"]["origin"], "disk",
            "round {round}: {report}"
        );
        let index = report["snapshot"]["index"].as_u64().unwrap();
        assert!(
            (floor_index..=published_at_most).contains(&index),
            "round {round} (seed {seed}): index {index} outside {floor_index}..={published_at_most}"
        );
        for (i, (got, least)) in versions.iter().zip(&floor).enumerate() {
            assert!(
                got >= least,
                "round {round} (seed {seed}): s{i} at version {got}, older than the saved {least}"
            );
        }
        if settle {
            assert_eq!(
                versions, floor,
                "round {round} (seed {seed}): settled state lost"
            );
        }
        replayed += report["persistence"]["journal_records"].as_u64().unwrap();
        // What this restart served is on disk for good: the next restart may not go below it.
        floor = versions;
        floor_index = index;
    }
    assert!(
        settled_rounds >= 2 && replayed > 0,
        "{settled_rounds} settled rounds, {replayed} records replayed"
    );
}
