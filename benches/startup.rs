//! Start-up from disk with and without the zone cache, for docs/PERFORMANCE.md.
//!
//! `cargo bench --bench startup -- FILE DIR` loads a registry file, builds its snapshot with the
//! zone options `snapdns serve --listen 127.0.0.1:PORT` uses (defaults otherwise), saves it in
//! DIR as a base with its zone cache, as the persister does, and times what a restart does
//! with them: the zone cache read and indexed (the first answer can go out then), the base
//! read and the snapshot rebuilt over the cache, and the path without a cache (read, build).
//! DIR is kept, for `tests/perf/startup.sh` to start the server on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use snapdns::persist::{self, zone_cache, Persisted};
use snapdns::registry::file;
use snapdns::snapshot::{BaseId, NameServers, Snapshot, ZoneOptions};

/// The allocator the binary uses, so the numbers match the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

fn main() {
    // cargo bench passes `--bench`; the other arguments are the file and the directory.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let (Some(path), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: cargo bench --bench startup -- REGISTRY_FILE STATE_DIR");
        return;
    };
    let (path, dir) = (PathBuf::from(path), PathBuf::from(dir));
    let options = ZoneOptions {
        domain: "consul.".parse().expect("domain"),
        datacenter: "dc1".into(),
        service_ttl: 0,
        service_ttls: Default::default(),
        health: Default::default(),
        node_ttl: 0,
        negative_ttl: 0,
        nameservers: NameServers::Listen(vec!["127.0.0.1".parse().expect("address")]),
        srv_node_meta_txt: false,
    };
    if std::env::var_os("STARTUP_CACHE_ONLY").is_some() {
        // Profiling: the cache step alone, on the directory of an earlier run.
        let started = Instant::now();
        let file = zone_cache::read(&dir, 1).expect("read the zone cache");
        let cached = Snapshot::from_cache(file.payload(), &options).expect("decode");
        eprintln!(
            "cache        {:>9.1} ms  ({} names)",
            ms(started),
            cached.snapshot.zone.name_count()
        );
        return;
    }
    let state = match file::load(&path) {
        Ok(state) => Arc::new(state),
        Err(error) => {
            eprintln!("startup: {error}");
            return;
        }
    };
    let instances = state.instance_count();
    let started = Instant::now();
    let snapshot = Snapshot::build(state.clone(), SystemTime::now(), &options).expect("build");
    eprintln!(
        "build        {:>9.1} ms  {instances} instances, {} names",
        ms(started),
        snapshot.zone.name_count()
    );

    // What the persister writes: a base, then its zone cache.
    let _ = std::fs::remove_dir_all(&dir);
    let persisted = Persisted {
        datacenter: "dc1".into(),
        fetched_at_ms: persist::unix_ms(SystemTime::now()),
        saved_at_ms: persist::unix_ms(SystemTime::now()),
        state,
    };
    let started = Instant::now();
    let saved = persist::save(&dir, &persisted).expect("save the base");
    eprintln!(
        "save base    {:>9.1} ms  {:.1} MiB",
        ms(started),
        saved.bytes as f64 / 1_048_576.0
    );
    let base = BaseId {
        generation: saved.generation,
        saved_at_ms: persisted.saved_at_ms,
        index: persisted.state.index,
    };
    let started = Instant::now();
    let bytes = zone_cache::save(&dir, saved.generation, |out| {
        snapshot.write_cache(&base, out)
    })
    .expect("save the zone cache");
    eprintln!(
        "save cache   {:>9.1} ms  {:.1} MiB",
        ms(started),
        bytes as f64 / 1_048_576.0
    );
    drop(snapshot);
    drop(persisted);

    // A restart with the cache: read and check it, decode and index it: then it is served.
    let started = Instant::now();
    let file = zone_cache::read(&dir, saved.generation).expect("read the zone cache");
    let read = ms(started);
    let cached = Snapshot::from_cache(file.payload(), &options).expect("decode the zone cache");
    drop(file);
    eprintln!(
        "cache        {:>9.1} ms  until the snapshot can be published (read and check {read:.1} ms)",
        ms(started)
    );
    // Meanwhile in the background: the base is read and the snapshot rebuilt over the cache.
    let started = Instant::now();
    let loaded = persist::load(&dir, "dc1");
    let read = ms(started);
    let (found, _, _) = loaded.found.expect("the base loads");
    let (_, base_state) = loaded.base.expect("the base loads");
    let rebuilt = Snapshot::rebuild_over(
        &cached.snapshot,
        base_state,
        found.state.clone(),
        found.fetched_at(),
        &options,
    )
    .expect("rebuild");
    eprintln!(
        "then state   {:>9.1} ms  read {read:.1} ms + rebuild over the cache",
        ms(started)
    );
    drop(rebuilt);
    drop(cached);

    // A restart without the cache: read the base, build the snapshot.
    let started = Instant::now();
    let loaded = persist::load(&dir, "dc1");
    let read = ms(started);
    let (found, _, _) = loaded.found.expect("the base loads");
    let built = Snapshot::build(found.state.clone(), found.fetched_at(), &options).expect("build");
    eprintln!(
        "no cache     {:>9.1} ms  read {read:.1} ms + build ({} names)",
        ms(started),
        built.zone.name_count()
    );
}
