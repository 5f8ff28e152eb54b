//! The fuzz targets' inputs replayed on stable Rust: every seed (`fuzz/seeds/<target>/`) and
//! every input a fuzzer found a fault with (`fuzz/regressions/<target>/`) goes through the
//! same checks as the coverage-guided targets (`fuzz/checks.rs`, shared). Also the stable
//! fallback when no nightly toolchain is at hand: a bounded random-mutation run of the same
//! checks over the seeds (`cargo test --test it fuzz_replay::mutation -- --ignored`).
//!
//! These call the library directly, as the fuzz targets do: no sockets, no binary.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

use hickory_proto::rr::{Name, RecordType};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use snapdns::dns::{Responder, Scratch};

use crate::support::repo;

const TARGETS: [&str; 7] = [
    "respond",
    "tcp_framing",
    "registry_json",
    "state_file",
    "zone_file",
    "forward_reply",
    "zone_cache",
];

/// Runs one target's check on `data`.
struct Runner {
    responder: Responder,
    scratch: Scratch,
    dir: tempfile::TempDir,
}

impl Runner {
    fn new() -> Self {
        Self {
            responder: checks::fixture_responder(),
            scratch: Scratch::default(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn run(&mut self, target: &str, data: &[u8]) {
        match target {
            "respond" => checks::check_respond(&self.responder, &mut self.scratch, data),
            "tcp_framing" => checks::check_tcp_stream(&self.responder, &mut self.scratch, data),
            "registry_json" => checks::check_registry_json(data),
            "state_file" => checks::check_state_file(self.dir.path(), data),
            "zone_file" => checks::check_zone_file(self.dir.path(), data),
            "forward_reply" => checks::check_forward_reply(data),
            "zone_cache" => checks::check_zone_cache(data),
            other => panic!("unknown fuzz target {other}"),
        }
    }
}

/// Every file under `fuzz/<kind>/<target>/`, sorted.
fn inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = repo().join("fuzz").join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read input"))
        })
        .collect();
    files.sort();
    files
}

/// Every seed passes every check (they are real queries and files: no fault expected).
#[test]
fn seeds_pass_their_checks() {
    let mut runner = Runner::new();
    for target in TARGETS {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for (name, data) in seeds {
            eprintln!("{target}/{name}");
            runner.run(target, &data);
        }
    }
}

/// Every input a fuzzer found a fault with passes now (each was fixed; see docs/SECURITY.md).
#[test]
fn fuzz_findings_stay_fixed() {
    let mut runner = Runner::new();
    for target in TARGETS {
        for (name, data) in inputs("regressions", target) {
            eprintln!("{target}/{name}");
            runner.run(target, &data);
        }
    }
}

/// One random change to `data`: flip, set, insert, delete, duplicate a slice, or splice
/// an interesting value (as libFuzzer's simplest mutators do).
fn mutate(rng: &mut SmallRng, data: &mut Vec<u8>) {
    const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xc0, 0xff, b'.', b'"'];
    if data.is_empty() {
        data.push(rng.random());
        return;
    }
    let at = rng.random_range(0..data.len());
    match rng.random_range(0..6) {
        0 => data[at] ^= 1 << rng.random_range(0..8),
        1 => data[at] = INTERESTING[rng.random_range(0..INTERESTING.len())],
        2 => data.insert(at, rng.random()),
        3 => {
            data.remove(at);
        }
        4 => {
            let end = (at + rng.random_range(1..16)).min(data.len());
            let slice = data[at..end].to_vec();
            let to = rng.random_range(0..=data.len());
            data.splice(to..to, slice);
        }
        _ => {
            let end = (at + rng.random_range(1..4)).min(data.len());
            data.drain(at..end);
        }
    }
}

/// The stable fallback for the fuzzers: 200,000 random mutations (seeded, so a failure
/// reproduces) of the seeds through the same checks, spread over the seven targets. Minutes,
/// not seconds: `cargo test --release --test it fuzz_replay::mutation -- --ignored`.
#[test]
#[ignore = "long: the stable fallback for cargo-fuzz, run by hand"]
fn mutation() {
    let iterations: usize = std::env::var("SNAPDNS_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let mut runner = Runner::new();
    let mut rng = SmallRng::seed_from_u64(0x5eed_f022);
    let seeds: Vec<(&str, Vec<Vec<u8>>)> = TARGETS
        .iter()
        .map(|target| {
            let files = inputs("seeds", target)
                .into_iter()
                .map(|(_, d)| d)
                .collect();
            (*target, files)
        })
        .collect();
    for i in 0..iterations {
        let (target, files) = &seeds[i % seeds.len()];
        let mut data = files[rng.random_range(0..files.len())].clone();
        for _ in 0..rng.random_range(1..8) {
            mutate(&mut rng, &mut data);
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runner.run(target, &data);
        }));
        if outcome.is_err() {
            panic!("{target}: iteration {i} failed on input {data:02x?}");
        }
    }
}

/// The committed zone cache seed is the one this version writes: a change of the format shows
/// here (rewrite it with `write_zone_cache_seed`).
#[test]
fn the_zone_cache_seed_is_current() {
    let seed = std::fs::read(repo().join("fuzz/seeds/zone_cache/fixture")).expect("seed");
    assert!(
        seed == checks::zone_cache_seed(),
        "run write_zone_cache_seed"
    );
}

/// Writes `fuzz/seeds/zone_cache/fixture`:
/// `cargo test --test it fuzz_replay::write_zone_cache_seed -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds/zone_cache/; run by hand"]
fn write_zone_cache_seed() {
    let dir = repo().join("fuzz").join("seeds").join("zone_cache");
    std::fs::create_dir_all(&dir).expect("seed dir");
    std::fs::write(dir.join("fixture"), checks::zone_cache_seed()).expect("write seed");
}

/// Writes the seed corpus (`fuzz/seeds/`) from real queries, the shipped registry and zone
/// files and a state file written by `persist::save`. Run by hand after changing it:
/// `cargo test --test it fuzz_replay::write_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds/; run by hand"]
fn write_seeds() {
    let root = repo().join("fuzz").join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("seed dir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    };

    let questions: &[(&str, RecordType)] = &[
        ("web.service.consul.", RecordType::A),
        ("web.service.consul.", RecordType::AAAA),
        ("web.service.consul.", RecordType::SRV),
        ("web.service.consul.", RecordType::ANY),
        ("web.service.consul.", RecordType::TXT),
        ("WeB.Service.Consul.", RecordType::A),
        ("v1.web.service.consul.", RecordType::A),
        ("v1.web.service.dc1.consul.", RecordType::SRV),
        ("_web._tcp.service.consul.", RecordType::SRV),
        ("_web._v1.service.consul.", RecordType::SRV),
        ("big.service.consul.", RecordType::A),
        ("big.service.consul.", RecordType::SRV),
        ("big.service.consul.", RecordType::ANY),
        ("shard3.big.service.consul.", RecordType::AAAA),
        ("odd.service.consul.", RecordType::SRV),
        ("odd.service.dc2.consul.", RecordType::A),
        ("v6svc.service.consul.", RecordType::AAAA),
        ("external.service.consul.", RecordType::CNAME),
        ("web-01.node.consul.", RecordType::A),
        ("web-01.node.dc1.consul.", RecordType::TXT),
        ("0a00010b.addr.dc1.consul.", RecordType::A),
        (
            "20010db8000000000000000000000053.addr.dc1.consul.",
            RecordType::AAAA,
        ),
        ("consul.", RecordType::SOA),
        ("consul.", RecordType::NS),
        ("ns.consul.", RecordType::A),
        ("missing.service.consul.", RecordType::A),
        ("www.example.internal.", RecordType::A),
        ("example.internal.", RecordType::MX),
        ("example.com.", RecordType::A),
        ("consul.", RecordType::AXFR),
    ];
    // The second ID byte picks transport, client and --max-udp-size in the respond target.
    let payloads = [
        None,
        Some(512),
        Some(1000),
        Some(1232),
        Some(4096),
        Some(65535),
    ];
    for (i, (name, qtype)) in questions.iter().enumerate() {
        let payload = payloads[i % payloads.len()];
        let mut bytes = checks::query_bytes(Name::from_ascii(name).unwrap(), *qtype, payload);
        bytes[1] = (i as u8).wrapping_mul(7);
        write("respond", &format!("q{i:02}-{qtype}"), &bytes);
        if i % 3 == 0 {
            let mut stream = Vec::new();
            for part in [&bytes, &bytes] {
                stream.extend_from_slice(&(part.len() as u16).to_be_bytes());
                stream.extend_from_slice(part);
            }
            write("tcp_framing", &format!("pipelined-{i:02}-{qtype}"), &stream);
        }
    }
    // Odd but real: EDNS version 1, a header alone, a response, an unknown class.
    let mut version = checks::query_bytes(
        Name::from_ascii("web.service.consul.").unwrap(),
        RecordType::A,
        Some(1232),
    );
    let opt_ttl = version.len() - 6; // OPT TTL: ext. rcode, version, flags
    version[opt_ttl + 1] = 1;
    write("respond", "edns-version-1", &version);
    write(
        "respond",
        "header-only",
        &[0x12, 0x34, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );

    write(
        "registry_json",
        "demo.registry.json",
        checks::DEMO_REGISTRY.as_bytes(),
    );
    let small = serde_json::to_vec(&serde_json::json!({
        "web": [{"Node": {"Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc1"},
                 "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1"], "Port": 80},
                 "Checks": [{"Status": "passing"}]}],
        "v6": [{"Node": {"Node": "n2", "Address": "fd00::2", "TaggedAddresses": {"wan": "1.2.3.4"}},
                "Service": {"Service": "v6", "Address": "db.example.com", "Port": 5432}}]
    }))
    .unwrap();
    write("registry_json", "small.json", &small);

    write("zone_file", "example.zone", checks::EXAMPLE_ZONE.as_bytes());
    write(
        "zone_file",
        "minimal.zone",
        b"$TTL 60\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\nwww CNAME ns\n_x._tcp SRV 1 1 80 ns\n",
    );

    let dir = tempfile::tempdir().unwrap();
    let mut state = snapdns::registry::file::parse(
        Path::new("small.json"),
        std::str::from_utf8(&small).unwrap(),
    )
    .unwrap();
    state.index = 99;
    let saved = snapdns::persist::save(
        dir.path(),
        &snapdns::persist::Persisted {
            datacenter: "dc1".into(),
            fetched_at_ms: 1_700_000_000_000,
            saved_at_ms: 1_700_000_000_500,
            state: std::sync::Arc::new(state),
        },
    )
    .unwrap();
    let file = std::fs::read(&saved.path).unwrap();
    // Mode 0: the whole file; mode 1: the payload alone (the target writes the header).
    write("state_file", "whole", &[&[0u8][..], &file].concat());
    let payload = &file[file.iter().position(|b| *b == b'\n').unwrap() + 1..];
    write("state_file", "payload", &[&[1u8][..], payload].concat());

    for (i, (name, qtype)) in questions.iter().enumerate().step_by(3) {
        let asked = Name::from_ascii(name).unwrap();
        let mut message = hickory_proto::op::Message::new(
            7,
            hickory_proto::op::MessageType::Response,
            hickory_proto::op::OpCode::Query,
        );
        message.add_query(hickory_proto::op::Query::query(asked.clone(), *qtype));
        let data =
            match qtype {
                RecordType::AAAA => hickory_proto::rr::RData::AAAA("2001:db8::1".parse().unwrap()),
                RecordType::TXT => hickory_proto::rr::RData::TXT(
                    hickory_proto::rr::rdata::TXT::new(vec!["x".repeat(200); 4]),
                ),
                _ => hickory_proto::rr::RData::A("192.0.2.7".parse().unwrap()),
            };
        for ttl in [30, 300, 0] {
            message.add_answer(hickory_proto::rr::Record::from_rdata(
                asked.clone(),
                ttl,
                data.clone(),
            ));
        }
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(1232);
        message.set_edns(edns);
        let bytes = message.to_vec().unwrap();
        write(
            "forward_reply",
            &format!("answer-{i:02}"),
            &[&[i as u8][..], &bytes].concat(),
        );
    }
    let mut nx = hickory_proto::op::Message::new(
        9,
        hickory_proto::op::MessageType::Response,
        hickory_proto::op::OpCode::Query,
    );
    nx.metadata.response_code = hickory_proto::op::ResponseCode::NXDomain;
    let missing = Name::from_ascii("missing.example.com.").unwrap();
    nx.add_query(hickory_proto::op::Query::query(missing, RecordType::A));
    let soa = hickory_proto::rr::rdata::SOA::new(
        Name::from_ascii("ns.example.com.").unwrap(),
        Name::from_ascii("hostmaster.example.com.").unwrap(),
        1,
        3600,
        600,
        86400,
        60,
    );
    nx.add_authority(hickory_proto::rr::Record::from_rdata(
        Name::from_ascii("example.com.").unwrap(),
        300,
        hickory_proto::rr::RData::SOA(soa),
    ));
    write(
        "forward_reply",
        "nxdomain",
        &[&[2u8][..], &nx.to_vec().unwrap()].concat(),
    );
}
