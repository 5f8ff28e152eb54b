//! Memory and build-time footprint of a registry snapshot, for docs/PERFORMANCE.md.
//!
//! `cargo bench --bench footprint -- FILE` loads a registry file (default: the one the load
//! benchmark generates, see tests/perf/bench.sh), builds the snapshot (a start-up), then
//! rebuilds it after one service changed (21 times, one service at a time: median and max),
//! printing time and resident memory (from /proc/self/statm) after each step.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use snapdns::persist::{self, Persisted};
use snapdns::registry::file;
use snapdns::snapshot::{NameServers, Snapshot, ZoneOptions};

/// The allocator the binary uses, so the numbers match the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the zone holds: names, distinct prepared responses and their bytes.
fn zone_breakdown(snapshot: &Snapshot) {
    let mut seen = std::collections::HashSet::new();
    let (mut names, mut key_bytes, mut slots, mut wire_bytes) = (0usize, 0usize, 0usize, 0usize);
    for (key, by_type) in snapshot.zone.names() {
        names += 1;
        key_bytes += key.len();
        slots += by_type.len();
        for (_, prepared) in by_type {
            if seen.insert(Arc::as_ptr(prepared)) {
                wire_bytes += prepared.wire().len();
            }
        }
    }
    eprintln!(
        "zone    {names} names ({key_bytes} B of keys), {slots} answers by type, {} distinct prepared responses ({wire_bytes} B of wire, {:.0} B each)",
        seen.len(),
        wire_bytes as f64 / seen.len().max(1) as f64
    );
    let f = snapshot.footprint();
    let mib = |bytes: usize| bytes as f64 / 1_048_576.0;
    eprintln!(
        "heap    {:.1} MiB counted: index {:.1}, keys+answer lists {:.1} ({:.0} B per name), fragment lists {:.1}, \
         {} response headers {:.1} ({:.0} B each), wire {:.1}, relocations {:.1}, cuts {:.1} ({} responses, {:.0} B each)",
        mib(f.total()),
        mib(f.index_bytes),
        mib(f.name_bytes),
        f.name_bytes as f64 / f.names.max(1) as f64,
        mib(f.fragment_bytes),
        f.responses,
        mib(f.header_bytes),
        f.header_bytes as f64 / f.responses.max(1) as f64,
        mib(f.wire_bytes),
        mib(f.relocation_bytes),
        mib(f.cut_bytes),
        f.cut_responses,
        f.cut_bytes as f64 / f.cut_responses.max(1) as f64,
    );
    let pointer_bytes = f.pointer_index_bytes + f.pointer_slot_bytes + f.pointer_answer_bytes;
    eprintln!(
        "reverse {} names {:.1} MiB ({:.0} B each): index {:.1}, slots {:.1}, answers {:.1}; fragments' pointer lists {:.1}",
        f.pointers,
        mib(pointer_bytes),
        pointer_bytes as f64 / f.pointers.max(1) as f64,
        mib(f.pointer_index_bytes),
        mib(f.pointer_slot_bytes),
        mib(f.pointer_answer_bytes),
        mib(f.fragment_pointer_bytes),
    );
}

/// One-service changes timed after the build.
const REBUILDS: usize = 21;

fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1_048_576.0
}

fn main() {
    // cargo bench passes `--bench`; the first other argument is the file.
    let path = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/dnsbench/data/consul-registry.json"));
    let options = ZoneOptions {
        domain: "consul.".parse().expect("domain"),
        datacenter: "dc1".into(),
        service_ttl: 0,
        service_ttls: Default::default(),
        health: Default::default(),
        node_ttl: 0,
        negative_ttl: 0,
        nameservers: NameServers::Listen(Vec::new()),
        srv_node_meta_txt: false,
    };
    let base = resident_mib();
    let started = Instant::now();
    let state = match file::load(&path) {
        Ok(state) => Arc::new(state),
        Err(error) => {
            eprintln!("footprint: {error}");
            return;
        }
    };
    let parsed = resident_mib();
    eprintln!(
        "parse   {:>8.1} ms  resident {:>7.1} MiB (+{:.1} for the registry state, {} instances)",
        started.elapsed().as_secs_f64() * 1e3,
        parsed,
        parsed - base,
        state.instance_count()
    );
    // The state alone: what a second parsed copy adds (the first parse's transient buffers
    // are free again by then and get reused).
    let again = file::load(&path).ok();
    let twice = resident_mib();
    eprintln!(
        "state   a second parsed copy holds {:.1} MiB ({:.0} B per instance)",
        twice - parsed,
        (twice - parsed) * 1_048_576.0 / state.instance_count().max(1) as f64
    );
    drop(again);
    let started = Instant::now();
    let mut served = Snapshot::build(state.clone(), SystemTime::now(), &options).expect("build");
    let elapsed = started.elapsed();
    let resident = resident_mib();
    eprintln!(
        "build   {:>8.1} ms  resident {:>7.1} MiB  names {} records {} ({:.0} B of resident memory per instance)",
        elapsed.as_secs_f64() * 1e3,
        resident,
        served.zone.name_count(),
        served.zone.record_count(),
        (resident - base) * 1_048_576.0 / state.instance_count().max(1) as f64,
    );
    zone_breakdown(&served);
    // One service changes at a time (one instance moves to another port), spread over the
    // registry: the time from the changed state to the snapshot ready to publish.
    let keys: Vec<String> = state.services.keys().cloned().collect();
    let mut times = Vec::new();
    let mut kept = Vec::new();
    for round in 0..REBUILDS {
        let key = &keys[(round * 7919) % keys.len()];
        let mut next = (*served.state).clone();
        // As from Consul: every change comes with a new registry index.
        next.index = served.state.index + 1;
        if let Some(entries) = next.services.get_mut(key) {
            let entries = Arc::make_mut(entries);
            entries[0].service.port = entries[0].service.port.wrapping_add(1);
        }
        let next = Arc::new(next);
        let started = Instant::now();
        let rebuilt =
            Snapshot::rebuild(Some(&served), next, SystemTime::now(), &options).expect("rebuild");
        times.push(started.elapsed().as_secs_f64() * 1e3);
        // The old snapshot stays resident a while, as in a server while readers finish.
        kept.push(std::mem::replace(&mut served, rebuilt));
        if kept.len() > 2 {
            kept.remove(0);
        }
    }
    times.sort_by(f64::total_cmp);
    let resident = resident_mib();
    eprintln!(
        "rebuild {:>8.1} ms  median of {REBUILDS} one-service changes (max {:.1} ms)  resident {:>7.1} MiB ({:.0} B per instance)",
        times[times.len() / 2],
        times[times.len() - 1],
        resident,
        (resident - base) * 1_048_576.0 / state.instance_count().max(1) as f64,
    );
    drop(kept);

    // Start-up from disk: what a restart during a registry outage costs before serving.
    let dir = std::env::temp_dir().join(format!("snapdns-footprint-{}", std::process::id()));
    let persisted = Persisted {
        datacenter: "dc1".into(),
        fetched_at_ms: persist::unix_ms(SystemTime::now()),
        saved_at_ms: 0,
        state: state.clone(),
    };
    let started = Instant::now();
    if let Err(error) = persist::save(&dir, &persisted) {
        eprintln!("footprint: cannot save: {error}");
        return;
    }
    let saved = started.elapsed();
    let started = Instant::now();
    let loaded = persist::load(&dir, "dc1");
    let read = started.elapsed();
    if let Some((found, _, _)) = loaded.found {
        let snapshot =
            Snapshot::build(found.state.clone(), found.fetched_at(), &options).expect("build");
        eprintln!(
            "disk    save {:.1} ms; start-up: read {:.1} ms + build = {:.1} ms until the snapshot can be published ({} names)",
            saved.as_secs_f64() * 1e3,
            read.as_secs_f64() * 1e3,
            started.elapsed().as_secs_f64() * 1e3,
            snapshot.zone.name_count()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
