//! HAProxy as a real client: its `resolvers` section with `server-template` over SRV, and a
//! plain A-record `server` line (the HAProxy 1.6 style), against a running snapdns, observed
//! through HAProxy's runtime API (`show servers state`).
//!
//! The configurations are rendered by [`tracking_config`] and [`large_config`] only;
//! docs/haproxy.md quotes them, and `haproxy_doc_quotes_the_tested_configurations` keeps the
//! two identical. Every instance address is on loopback, and each instance is a real listener,
//! so HAProxy's health checks pass and its servers are UP.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::registry::{entry, replace_registry_file};
use crate::support::server::{capture_stderr, Server};
use crate::support::{self, eventually};

// ------------------------------------------------------------------ the configurations

/// `global` and `defaults` of every configuration: the runtime API socket and TCP mode.
fn preamble(socket: &str) -> String {
    format!(
        "\
global
    stats socket {socket} level admin

defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
"
    )
}

/// The configuration of `haproxy_follows_registry_changes`: a template of 10 servers filled from
/// the SRV answer of `web`, and one server line resolved through the A answer of `solo`.
/// `dns` is snapdns's address, `solo_port` the port of the `solo` server line.
fn tracking_config(socket: &str, dns: &str, solo_port: u16) -> String {
    format!(
        "{preamble}
resolvers snap
    nameserver snap {dns}
    accepted_payload_size 8192
    resolve_retries 3
    timeout resolve 100ms
    timeout retry 100ms
    hold valid 100ms
    hold obsolete 1s

backend web
    server-template web 10 _web._tcp.service.consul resolvers snap resolve-prefer ipv4 resolve-opts allow-dup-ip init-addr none check inter 500ms

backend solo
    server solo1 solo.service.consul:{solo_port} resolvers snap resolve-prefer ipv4 init-addr none check inter 500ms
",
        preamble = preamble(socket)
    )
}

/// The configuration of `haproxy_finds_100_instances_and_never_flaps`: the same 100-instance
/// service through three resolvers sections. `big_udp` is a snapdns started with
/// `--max-udp-size 8192`; `default_dns` one with the default limit (1232 bytes), asked over TCP
/// by `snap_tcp` and over UDP by `snap_udp_capped` (whose answer is truncated).
fn large_config(socket: &str, big_udp: &str, default_dns: &str) -> String {
    let mut text = preamble(socket);
    for (name, nameserver, payload) in [
        ("snap_udp", big_udp.to_string(), 8192),
        ("snap_tcp", format!("tcp@{default_dns}"), 65535),
        ("snap_udp_capped", default_dns.to_string(), 8192),
    ] {
        text.push_str(&format!(
            "
resolvers {name}
    nameserver snap {nameserver}
    accepted_payload_size {payload}
    resolve_retries 3
    timeout resolve 100ms
    timeout retry 100ms
    hold valid 100ms
    hold obsolete 1s
"
        ));
    }
    for (backend, resolvers) in [
        ("big_udp", "snap_udp"),
        ("big_tcp", "snap_tcp"),
        ("big_udp_capped", "snap_udp_capped"),
    ] {
        text.push_str(&format!(
            "
backend {backend}
    server-template big 110 _big._tcp.service.consul resolvers {resolvers} resolve-prefer ipv4 resolve-opts allow-dup-ip init-addr none check
"
        ));
    }
    text
}

/// The values docs/haproxy.md shows in place of the tests' temporary ones.
const DOC_SOCKET: &str = "/run/haproxy/admin.sock";
const DOC_DNS: &str = "127.0.0.1:8600";
const DOC_DNS_DEFAULT: &str = "127.0.0.1:8602";
const DOC_SOLO_PORT: u16 = 8080;

// ------------------------------------------------------------------ haproxy under test

/// A running `haproxy -db` with a configuration in a temporary directory. Killed on drop.
struct Haproxy {
    child: Option<Child>,
    socket: PathBuf,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Writes the configuration `render(socket)` returns and starts HAProxy in the foreground;
    /// waits (bounded) until its runtime API answers.
    fn start(render: impl FnOnce(&str) -> String) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("admin.sock");
        let config = render(socket.to_str().expect("utf-8 path"));
        let config_path = support::write(dir.path(), "haproxy.cfg", &config);
        let mut child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("haproxy is installed (apt-get install haproxy; .ci/run does)");
        let log = capture_stderr(&mut child, "haproxy");
        let mut haproxy = Self {
            child: Some(child),
            socket,
            log,
            _dir: dir,
        };
        let up = eventually(Duration::from_secs(15), || {
            haproxy.exited() || UnixStream::connect(&haproxy.socket).is_ok()
        });
        assert!(
            up && !haproxy.exited(),
            "haproxy did not start:\n{}\nconfiguration:\n{config}",
            haproxy.log()
        );
        haproxy
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// One runtime API command; the whole reply (HAProxy closes the connection after it).
    fn api(&self, command: &str) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("{command}\n").as_bytes())?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    }

    /// The server slots of `backend`, from `show servers state` (empty if the API fails).
    fn slots(&self, backend: &str) -> Vec<Slot> {
        self.api(&format!("show servers state {backend}"))
            .map(|text| parse_servers_state(&text))
            .unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One server slot as `show servers state` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    name: String,
    addr: String,
    port: u16,
    /// 0 stopped (DOWN), 1 starting, 2 running (UP), 3 stopping.
    op_state: u8,
    /// Mask; 0x20 is SRV_ADMF_RMAINT, maintenance for want of a DNS answer.
    admin_state: u32,
    fqdn: String,
}

impl Slot {
    /// The address the slot sends traffic to, if it holds one (not in DNS maintenance).
    fn endpoint(&self) -> Option<SocketAddr> {
        if self.admin_state & 0x20 != 0 || self.addr == "-" || self.addr == "0.0.0.0" {
            return None;
        }
        format!("{}:{}", self.addr, self.port).parse().ok()
    }

    fn is_up(&self) -> bool {
        self.op_state == 2
    }
}

/// Parses `show servers state` format 1 by its header line's column names.
fn parse_servers_state(text: &str) -> Vec<Slot> {
    let mut lines = text.lines();
    let Some(header) = lines.find(|l| l.starts_with("# be_id")) else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.trim_start_matches('#').split_whitespace().collect();
    let index = |name: &str| columns.iter().position(|c| *c == name).expect(name);
    let (name, addr, op, admin, fqdn, port) = (
        index("srv_name"),
        index("srv_addr"),
        index("srv_op_state"),
        index("srv_admin_state"),
        index("srv_fqdn"),
        index("srv_port"),
    );
    lines
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= columns.len()).then(|| Slot {
                name: fields[name].to_string(),
                addr: fields[addr].to_string(),
                port: fields[port].parse().unwrap_or(0),
                op_state: fields[op].parse().unwrap_or(0),
                admin_state: fields[admin].parse().unwrap_or(0),
                fqdn: fields[fqdn].to_string(),
            })
        })
        .collect()
}

/// The endpoints of the slots that hold one.
fn endpoints(slots: &[Slot]) -> BTreeSet<SocketAddr> {
    slots.iter().filter_map(Slot::endpoint).collect()
}

/// slot name -> endpoint, for the slots that hold one.
fn assignment(slots: &[Slot]) -> BTreeMap<String, SocketAddr> {
    slots
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.endpoint()?)))
        .collect()
}

fn render(slots: &[Slot]) -> String {
    slots
        .iter()
        .map(|s| {
            format!(
                "  {} {}:{} op={} admin={:#x} fqdn={}\n",
                s.name, s.addr, s.port, s.op_state, s.admin_state, s.fqdn
            )
        })
        .collect()
}

/// Polls `backend` until its slots hold exactly `want` and all of those are UP; returns the
/// slots. Panics with what HAProxy showed last after `timeout`.
fn wait_for(
    haproxy: &Haproxy,
    backend: &str,
    want: &BTreeSet<SocketAddr>,
    timeout: Duration,
) -> Vec<Slot> {
    let mut last = Vec::new();
    let reached = eventually(timeout, || {
        last = haproxy.slots(backend);
        endpoints(&last) == *want
            && last
                .iter()
                .filter(|s| s.endpoint().is_some())
                .all(Slot::is_up)
    });
    assert!(
        reached,
        "backend {backend} never held exactly {want:?}, all UP; last state:\n{}\nhaproxy log:\n{}",
        render(&last),
        haproxy.log()
    );
    last
}

// ------------------------------------------------------------------ instances

/// Listeners standing in for the registered instances, so health checks pass; one thread
/// accepts and drops their connections until the set is dropped.
struct Instances {
    listeners: Arc<Mutex<Vec<TcpListener>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Instances {
    fn new() -> Self {
        let listeners: Arc<Mutex<Vec<TcpListener>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (list, flag) = (listeners.clone(), stop.clone());
        let acceptor = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                for listener in list.lock().unwrap().iter() {
                    while let Ok((stream, _)) = listener.accept() {
                        drop(stream);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self {
            listeners,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// Listens on `ip` at `port` (0: any free port); returns the address.
    fn listen(&self, ip: &str, port: u16) -> SocketAddr {
        let listener = TcpListener::bind((ip, port)).expect("bind a loopback instance");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        self.listeners.lock().unwrap().push(listener);
        addr
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A health entry of `service` on `node` at `addr` (the node's address), with its check status.
fn instance(node: &str, service: &str, addr: SocketAddr, status: &str) -> Value {
    entry(
        node,
        &addr.ip().to_string(),
        service,
        "",
        addr.port(),
        &[],
        status,
    )
}

fn set<const N: usize>(addrs: [SocketAddr; N]) -> BTreeSet<SocketAddr> {
    addrs.into_iter().collect()
}

// ------------------------------------------------------------------ tests

#[test]
fn haproxy_follows_registry_changes() {
    let instances = Instances::new();
    let n1 = instances.listen("127.0.1.1", 0);
    let n2 = instances.listen("127.0.1.2", 0);
    let warning = instances.listen("127.0.1.3", 0);
    let critical = instances.listen("127.0.1.4", 0);
    // Two instances on one node: one SRV target, two ports.
    let n5a = instances.listen("127.0.1.5", 0);
    let n5b = instances.listen("127.0.1.5", 0);
    let solo_old = instances.listen("127.0.2.1", 0);
    let solo_new = instances.listen("127.0.2.2", solo_old.port());

    let web = |extra: Vec<Value>| {
        let mut list = vec![
            instance("n1", "web", n1, "passing"),
            instance("n3", "web", warning, "warning"),
            instance("n4", "web", critical, "critical"),
            instance("n5", "web", n5a, "passing"),
            instance("n5", "web", n5b, "passing"),
        ];
        list.extend(extra);
        list
    };
    let registry = json!({
        "web": web(vec![instance("n2", "web", n2, "passing")]),
        "solo": [instance("s1", "solo", solo_old, "passing")],
    });
    let (dns, path) = Server::with_registry_file(&registry, &[]);
    let dns_addr = dns.addr.to_string();
    let haproxy = Haproxy::start(|socket| tracking_config(socket, &dns_addr, solo_old.port()));
    let long = Duration::from_secs(20);

    // The registry's passing addresses and ports, both instances of node n5 included.
    let first = wait_for(&haproxy, "web", &set([n1, n2, n5a, n5b]), long);
    wait_for(&haproxy, "solo", &set([solo_old]), long);
    let before = assignment(&first);

    // n2's check goes critical: its slot leaves (DNS maintenance), the others keep theirs.
    replace_registry_file(
        &path,
        &json!({
            "web": web(vec![instance("n2", "web", n2, "critical")]),
            "solo": [instance("s1", "solo", solo_old, "passing")],
        }),
    );
    let slots = wait_for(&haproxy, "web", &set([n1, n5a, n5b]), long);
    let n2_slot = before.iter().find(|(_, a)| **a == n2).unwrap().0;
    let slot = slots.iter().find(|s| &s.name == n2_slot).unwrap();
    assert!(
        slot.endpoint().is_none(),
        "n2's slot {n2_slot} left: {slot:?}"
    );
    let kept: BTreeMap<_, _> = before.into_iter().filter(|(_, a)| *a != n2).collect();
    assert_eq!(
        assignment(&slots),
        kept,
        "the remaining instances kept their slots"
    );

    // A newly registered instance joins; the others still keep their slots.
    let n6 = instances.listen("127.0.1.6", 0);
    replace_registry_file(
        &path,
        &json!({
            "web": web(vec![
                instance("n2", "web", n2, "critical"),
                instance("n6", "web", n6, "passing"),
            ]),
            "solo": [instance("s1", "solo", solo_old, "passing")],
        }),
    );
    let slots = wait_for(&haproxy, "web", &set([n1, n5a, n5b, n6]), long);
    let now = assignment(&slots);
    assert!(
        kept.iter().all(|(name, addr)| now.get(name) == Some(addr)),
        "old instances kept their slots when n6 joined: {now:?} vs {kept:?}"
    );

    // The A-record server follows the only passing instance's new address.
    replace_registry_file(
        &path,
        &json!({
            "web": web(vec![
                instance("n2", "web", n2, "critical"),
                instance("n6", "web", n6, "passing"),
            ]),
            "solo": [instance("s1", "solo", solo_new, "passing")],
        }),
    );
    let slots = wait_for(&haproxy, "solo", &set([solo_new]), long);
    assert_eq!(slots.len(), 1);
    assert_eq!(slots[0].fqdn, "solo.service.consul");
}

/// 100 instances on 50 nodes (two ports each) at 127.0.9.1-50.
fn large_registry(instances: &Instances) -> (Value, BTreeSet<SocketAddr>) {
    let mut entries = Vec::new();
    let mut all = BTreeSet::new();
    for node in 0..50 {
        let ip = format!("127.0.9.{}", node + 1);
        for _ in 0..2 {
            let addr = instances.listen(&ip, 0);
            entries.push(instance(&format!("n{node:03}"), "big", addr, "passing"));
            all.insert(addr);
        }
    }
    (json!({ "big": entries }), all)
}

#[test]
fn haproxy_finds_100_instances_and_never_flaps() {
    let instances = Instances::new();
    let (registry, all) = large_registry(&instances);
    let (big_udp, _path) = Server::with_registry_file(&registry, &["--max-udp-size", "8192"]);
    let (default_dns, _path2) = Server::with_registry_file(&registry, &[]);
    let (big_addr, default_addr) = (big_udp.addr.to_string(), default_dns.addr.to_string());
    let haproxy = Haproxy::start(|socket| large_config(socket, &big_addr, &default_addr));
    let long = Duration::from_secs(30);

    // All 100 over UDP with an 8 KB payload, and over TCP from a snapdns at its default limit.
    wait_for(&haproxy, "big_udp", &all, long);
    wait_for(&haproxy, "big_tcp", &all, long);
    // The control: the same snapdns over UDP cannot carry them all (so big_tcp used TCP), and
    // what the truncated answer carries is a subset of the real instances.
    let mut capped = Vec::new();
    let settled = eventually(long, || {
        capped = haproxy.slots("big_udp_capped");
        // Some slots filled, and every slot given an SRV target has its address and is UP.
        !endpoints(&capped).is_empty()
            && capped
                .iter()
                .filter(|s| s.fqdn != "-")
                .all(|s| s.endpoint().is_some() && s.is_up())
    });
    assert!(settled, "capped UDP never settled:\n{}", render(&capped));
    let found = endpoints(&capped);
    assert!(
        found.len() < all.len() && found.is_subset(&all),
        "a 1232-byte UDP answer cannot hold 100 SRV records; found {}",
        found.len()
    );

    // No flapping: with the registry unchanged, no slot changes its address, port or state
    // over 30 s of polling. (This window is the one place where time passing is the point.)
    let backends = ["big_udp", "big_tcp", "big_udp_capped"];
    let observe = |backend: &str| -> BTreeMap<String, (Option<SocketAddr>, u8)> {
        haproxy
            .slots(backend)
            .iter()
            .map(|s| (s.name.clone(), (s.endpoint(), s.op_state)))
            .collect()
    };
    let baseline: Vec<_> = backends.iter().map(|b| observe(b)).collect();
    for (backend, seen) in backends.iter().zip(&baseline) {
        assert_eq!(seen.len(), 110, "{backend} has its 110 slots");
    }
    let window = Instant::now() + Duration::from_secs(30);
    let mut polls = 0;
    while Instant::now() < window {
        std::thread::sleep(Duration::from_millis(500));
        for (backend, seen) in backends.iter().zip(&baseline) {
            let now = observe(backend);
            let changed: Vec<_> = seen
                .iter()
                .filter(|(name, state)| now.get(*name) != Some(state))
                .map(|(name, state)| format!("{name}: {state:?} -> {:?}", now.get(name)))
                .collect();
            assert!(
                changed.is_empty(),
                "{backend} flapped after {polls} polls: {changed:?}\nhaproxy log:\n{}",
                haproxy.log()
            );
        }
        polls += 1;
    }
    assert!(polls >= 50, "polled {polls} times in 30 s");
}

#[test]
fn haproxy_doc_quotes_the_tested_configurations() {
    let doc =
        std::fs::read_to_string(support::repo().join("docs/haproxy.md")).expect("docs/haproxy.md");
    for (name, config) in [
        (
            "tracking_config",
            tracking_config(DOC_SOCKET, DOC_DNS, DOC_SOLO_PORT),
        ),
        (
            "large_config",
            large_config(DOC_SOCKET, DOC_DNS, DOC_DNS_DEFAULT),
        ),
    ] {
        assert!(
            doc.contains(&format!("```\n{config}```")),
            "docs/haproxy.md quotes {name} verbatim in a code block:\n{config}"
        );
    }
}
