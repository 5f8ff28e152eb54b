//! Five replicas (issue #5): five snapdns processes, each on its own loopback address with its
//! own state directory and nothing shared but the registry they sync from (the Consul
//! stand-in), and real resolvers in front: Unbound with a stub zone listing all five, and
//! dnsmasq with a `server=/consul/...` line for each.
//!
//! The one test walks through docs/deploy.md's failure cases in order: a registry change
//! reaches all five (same SOA serial; the time it takes is printed), the registry goes away
//! and all five keep answering, one replica dies and the resolver still resolves, and the
//! dead replica, restarted while the registry is still down, answers from its disk.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

use crate::support::dns_client::{query_message, soa_serial, sorted_rdata, udp, udp_raw};
use crate::support::http::health;
use crate::support::metrics::metric;
use crate::support::registry::{entry, web_entries};
use crate::support::server::Server;
use crate::support::standin::Standin;
use crate::support::{eventually, free_port, write};

const REPLICAS: usize = 5;

/// Every replica gets these: a 5 s resync period, 5 s blocking queries, 1 s request timeout.
const KNOBS: [&str; 6] = [
    "--sync-interval",
    "5s",
    "--blocking-wait",
    "5s",
    "--request-timeout",
    "1s",
];

/// web: three passing instances (10.1.0.1-3).
fn registry() -> Value {
    json!({ "web": web_entries(3, &[]) })
}

fn api_entries() -> Value {
    json!([
        entry("a1", "10.2.0.1", "api", "", 9000, &[], "passing"),
        entry("a2", "10.2.0.2", "api", "", 9000, &[], "passing"),
    ])
}

fn start_replica(dir: Arc<tempfile::TempDir>, url: &str, listen: &str) -> Server {
    let mut args = vec!["--registry", url, "--listen", listen];
    args.extend(KNOBS);
    Server::start_in(dir, &args)
}

/// Sorted A records of `name` at `addr` (empty unless NOERROR).
fn a_records(addr: SocketAddr, name: &str) -> Vec<String> {
    let reply = udp(addr, name, RecordType::A);
    if reply.metadata.response_code != ResponseCode::NoError {
        return Vec::new();
    }
    sorted_rdata(&reply.answers)
}

/// Like [`a_records`], but `None` when no answer comes (within 2 s).
fn try_a_records(addr: SocketAddr, name: &str) -> Option<Vec<String>> {
    let query = query_message(name, RecordType::A, None);
    let reply = udp_raw(addr, &query.to_vec().unwrap())?;
    let reply = Message::from_vec(&reply).ok()?;
    (reply.metadata.response_code == ResponseCode::NoError).then(|| sorted_rdata(&reply.answers))
}

/// A query as a stub resolver sends it (glibc with `timeout:1 attempts:3`): the same message
/// again after each second without an answer. Returns (rcode, sorted A records, tries).
fn stub_query(addr: SocketAddr, name: &str) -> (ResponseCode, Vec<String>, usize) {
    let query = query_message(name, RecordType::A, None);
    let bytes = query.to_vec().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    for tries in 1..=3 {
        socket.send_to(&bytes, addr).unwrap();
        while let Ok((len, _)) = socket.recv_from(&mut buf) {
            let Ok(reply) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            if reply.metadata.id == query.metadata.id {
                let records = sorted_rdata(&reply.answers);
                return (reply.metadata.response_code, records, tries);
            }
        }
    }
    panic!("no answer for {name} from {addr} in three tries");
}

fn serials(replicas: &[Server]) -> Vec<Option<u32>> {
    replicas.iter().map(|r| soa_serial(r.addr)).collect()
}

/// Polls every replica until `done` holds for it; returns how long the last one took.
fn until_all(replicas: &[Server], what: &str, mut done: impl FnMut(&Server) -> bool) -> Duration {
    let started = Instant::now();
    let mut pending: Vec<usize> = (0..replicas.len()).collect();
    let mut slowest = Duration::ZERO;
    let deadline = started + Duration::from_secs(10);
    while !pending.is_empty() {
        pending.retain(|&i| {
            if done(&replicas[i]) {
                slowest = slowest.max(started.elapsed());
                false
            } else {
                true
            }
        });
        assert!(
            Instant::now() < deadline,
            "{what}: replicas {pending:?} not there within 10 s"
        );
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    slowest
}

/// Starts a resolver with `spawn` on a free port, and again on another one when the port was
/// taken between choosing it and the resolver binding it (UDP and TCP, by any process on the
/// machine): polls its log in `dir` until it shows `ready`, or the process exits.
fn on_free_port(dir: &Path, log: &str, ready: &str, spawn: impl Fn(u16) -> Child) -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = spawn(port);
        let read_log = || std::fs::read_to_string(dir.join(log)).unwrap_or_default();
        let mut exited = false;
        eventually(Duration::from_secs(10), || {
            exited = child.try_wait().ok().flatten().is_some();
            exited || read_log().contains(ready)
        });
        if !exited {
            return (child, port);
        }
        let text = read_log();
        assert!(
            text.contains("Address already in use"),
            "{log} ended at start-up:\n{text}"
        );
    }
    panic!("no free port for {log} in five tries");
}

/// Unbound as the resolver clients use, with a stub zone for `consul.` listing every replica.
struct Unbound {
    child: Child,
    addr: SocketAddr,
}

impl Unbound {
    fn start(dir: &Path, replicas: &[SocketAddr]) -> Self {
        let (child, port) = on_free_port(dir, "unbound.log", "start of service", |port| {
            Self::spawn(dir, replicas, port)
        });
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn spawn(dir: &Path, replicas: &[SocketAddr], port: u16) -> Child {
        let stubs: String = replicas
            .iter()
            .map(|a| format!("    stub-addr: {}@{}\n", a.ip(), a.port()))
            .collect();
        let conf = format!(
            "server:\n\
             \x20   interface: 127.0.0.1@{port}\n\
             \x20   port: {port}\n\
             \x20   do-ip6: no\n\
             \x20   do-daemonize: no\n\
             \x20   username: \"\"\n\
             \x20   chroot: \"\"\n\
             \x20   directory: \"{dir}\"\n\
             \x20   pidfile: \"{dir}/unbound.pid\"\n\
             \x20   use-syslog: no\n\
             \x20   logfile: \"\"\n\
             \x20   verbosity: 1\n\
             \x20   num-threads: 1\n\
             \x20   access-control: 127.0.0.0/8 allow\n\
             \x20   do-not-query-localhost: no\n\
             \x20   module-config: \"iterator\"\n\
             \x20   qname-minimisation: no\n\
             \x20   domain-insecure: \"consul.\"\n\
             stub-zone:\n\
             \x20   name: \"consul.\"\n\
             {stubs}",
            dir = dir.display()
        );
        let path = write(dir, "unbound.conf", &conf);
        Command::new("unbound")
            .args(["-d", "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("unbound.log")).unwrap())
            .spawn()
            .expect("unbound is installed (.ci/run installs it)")
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// dnsmasq with `server=/consul/...` for every replica (docs/deploy.md's alternative).
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Dnsmasq {
    fn start(dir: &Path, replicas: &[SocketAddr]) -> Self {
        let (child, port) = on_free_port(dir, "dnsmasq.log", "started, version", |port| {
            Self::spawn(dir, replicas, port)
        });
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn spawn(dir: &Path, replicas: &[SocketAddr], port: u16) -> Child {
        let mut conf = format!(
            "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
             user=root\npid-file=\nlog-facility=-\nrebind-domain-ok=/consul/\n"
        );
        for replica in replicas {
            conf.push_str(&format!(
                "server=/consul/{}#{}\n",
                replica.ip(),
                replica.port()
            ));
        }
        let path = write(dir, "dnsmasq.conf", &conf);
        Command::new("dnsmasq")
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dnsmasq.log")).unwrap())
            .spawn()
            .expect("dnsmasq is installed (.ci/run installs dnsmasq-base)")
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn five_replicas_converge_outlive_the_registry_and_a_dead_peer() {
    let dir = tempfile::tempdir().unwrap();
    let state = write(dir.path(), "registry.json", &registry().to_string());
    let mut consul = Standin::start(&state, &[]);
    let url = consul.url();
    let web = ["10.1.0.1", "10.1.0.2", "10.1.0.3"];
    let api = ["10.2.0.1", "10.2.0.2"];

    // Five processes, five loopback addresses, five state directories.
    let dirs: Vec<Arc<tempfile::TempDir>> = (0..REPLICAS)
        .map(|_| Arc::new(tempfile::tempdir().unwrap()))
        .collect();
    let mut replicas: Vec<Server> = (0..REPLICAS)
        .map(|i| start_replica(dirs[i].clone(), &url, &format!("127.0.0.{}:0", i + 1)))
        .collect();
    for (i, replica) in replicas.iter().enumerate() {
        assert_eq!(replica.addr.ip().to_string(), format!("127.0.0.{}", i + 1));
        assert_ne!(
            replica.state_dir(),
            replicas[(i + 1) % REPLICAS].state_dir()
        );
    }
    until_all(&replicas, "first sync", |r| {
        a_records(r.addr, "web.service.consul.") == web
    });
    let first = serials(&replicas);
    assert!(
        first[0].is_some() && first.iter().all(|s| *s == first[0]),
        "{first:?}"
    );

    // A registration reaches all five.
    consul.put_service("api", &api_entries());
    let registered = until_all(&replicas, "registration", |r| {
        a_records(r.addr, "api.service.consul.") == api
    });
    // A check going critical reaches all five.
    consul.set_check("n3", "service:web-8080-n3", "critical");
    let failed = until_all(&replicas, "critical check", |r| {
        a_records(r.addr, "web.service.consul.") == web[..2]
    });
    eprintln!(
        "five replicas converged: registration in {registered:?}, critical check in {failed:?}"
    );
    let second = serials(&replicas);
    assert!(
        second[0].is_some() && second[0] != first[0] && second.iter().all(|s| *s == second[0]),
        "same new SOA serial everywhere: {second:?} (was {first:?})"
    );

    // A real resolver in front of all five.
    let unbound = Unbound::start(
        dir.path(),
        &replicas.iter().map(|r| r.addr).collect::<Vec<_>>(),
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            try_a_records(unbound.addr, "api.service.consul.").is_some_and(|a| a == api)
        }),
        "unbound resolves through the replicas:\n{}",
        std::fs::read_to_string(dir.path().join("unbound.log")).unwrap_or_default()
    );

    let dnsmasq = Dnsmasq::start(
        dir.path(),
        &replicas.iter().map(|r| r.addr).collect::<Vec<_>>(),
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            try_a_records(dnsmasq.addr, "api.service.consul.").is_some_and(|a| a == api)
        }),
        "dnsmasq resolves through the replicas:\n{}",
        std::fs::read_to_string(dir.path().join("dnsmasq.log")).unwrap_or_default()
    );

    // Every replica has the converged state on disk before the registry goes away.
    until_all(&replicas, "persisted", |r| {
        health(r).1["persistence"]["index"].as_u64() == second[0].map(u64::from)
    });

    // The registry goes away: all five notice, and all five keep answering.
    consul.stop();
    until_all(&replicas, "registry down noticed", |r| {
        metric(r, "snapdns_registry_up") == Some(0.0)
    });
    for replica in &replicas {
        assert_eq!(a_records(replica.addr, "web.service.consul."), web[..2]);
        assert_eq!(a_records(replica.addr, "api.service.consul."), api);
        assert_eq!(soa_serial(replica.addr), second[0]);
    }

    // One replica dies: the resolver configured with all five still resolves, every time.
    let dead = 2;
    let dead_addr = replicas[dead].addr;
    replicas[dead].kill();
    for (resolver, addr) in [("unbound", unbound.addr), ("dnsmasq", dnsmasq.addr)] {
        let started = Instant::now();
        let mut retried = 0;
        for i in 0..30 {
            let (name, want): (String, &[&str]) = match i % 3 {
                0 => ("api.service.consul.".into(), &api),
                1 => ("web.service.consul.".into(), &web[..2]),
                // Distinct names defeat any cache: tag `t<i>` of api is not registered.
                _ => (format!("t{i}.api.service.consul."), &[]),
            };
            let (rcode, records, tries) = stub_query(addr, &name);
            let expected = if want.is_empty() {
                ResponseCode::NXDomain
            } else {
                ResponseCode::NoError
            };
            assert_eq!(rcode, expected, "{name} through {resolver}");
            assert_eq!(records, want, "{name} through {resolver}");
            retried += usize::from(tries > 1);
        }
        eprintln!(
            "30 queries through {resolver} with one replica down in {:?}, {retried} needed a retry",
            started.elapsed()
        );
    }

    // Restarted while the registry is still down, on its old address: it answers from disk.
    let restarted = start_replica(dirs[dead].clone(), &url, &dead_addr.to_string());
    assert_eq!(restarted.addr, dead_addr);
    assert_eq!(a_records(restarted.addr, "api.service.consul."), api);
    assert_eq!(a_records(restarted.addr, "web.service.consul."), web[..2]);
    assert_eq!(soa_serial(restarted.addr), second[0]);
    assert_eq!(
        metric(&restarted, "snapdns_snapshot_origin{origin=\"disk\"}"),
        Some(1.0)
    );
    replicas[dead] = restarted;
    assert_eq!(a_records(unbound.addr, "api.service.consul."), api);
}
