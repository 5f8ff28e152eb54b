//! Debian's `knotd` as a real, independent upstream, started per test on a free loopback port
//! with a zone the test writes; and the zone files the forwarding, static-zone and glibc tests
//! serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use super::dns_client::{query_message, udp_raw};
use super::{eventually, free_port, write};

/// TXT records in `medium` (over 512 bytes, under 1232) and `big` (over 1232: Knot truncates
/// its UDP answer to us, so snapdns must fetch it over TCP).
pub const MEDIUM_TXT: usize = 10;
pub const BIG_TXT: usize = 40;

/// The upstream's zone: positive TTL 300, negative TTL min(3600, 60) = 60.
pub fn example_zone() -> String {
    let mut zone = String::from(
        "$ORIGIN example.test.\n$TTL 300\n\
         @ IN SOA ns.example.test. hostmaster.example.test. 1 3600 900 604800 60\n\
         @ IN NS ns\n\
         ns IN A 127.0.0.1\n\
         www IN A 192.0.2.1\n\
         www IN A 192.0.2.2\n\
         alias IN CNAME www\n",
    );
    for i in 0..MEDIUM_TXT {
        zone.push_str(&format!("medium IN TXT \"{}\"\n", txt(i)));
    }
    for i in 0..BIG_TXT {
        zone.push_str(&format!("big IN TXT \"{}\"\n", txt(i)));
    }
    zone
}

/// The text of TXT record `i` of `medium` and `big`.
pub fn txt(i: usize) -> String {
    format!("record {i:02} of a long answer, padded to fill the packet: 0123456789abcdef")
}

/// A running `knotd` serving one zone. Killed on drop.
pub struct Knot {
    child: Child,
    /// Its address (UDP and TCP).
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Knot {
    /// Starts Knot authoritative for `origin` with `zone`, on a free port (retrying when
    /// another process takes the port first), and waits until it answers.
    pub fn start(origin: &str, zone: &str) -> Self {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::create_dir_all(dir.path().join("db")).unwrap();
            write(dir.path(), "zone.txt", zone);
            let port = free_port();
            let config = format!(
                "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    \
                 tcp-workers: 1\n    background-workers: 1\n\
                 database:\n    storage: \"{d}/db\"\n\
                 log:\n  - target: stderr\n    any: warning\n\
                 template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    \
                 zonefile-load: whole\n    journal-content: none\n\
                 zone:\n  - domain: {origin}\n    file: zone.txt\n",
                d = dir.path().display()
            );
            let config_path = write(dir.path(), "knot.conf", &config);
            let child = Command::new(knotd())
                .arg("-c")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("knotd is installed (apt-get install knot)");
            let mut knot = Self {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                _dir: dir,
            };
            // Until it answers, or exits (another process took the port): then try another.
            let ready = eventually(Duration::from_secs(10), || {
                knot.child.try_wait().ok().flatten().is_some() || knot.answers(origin)
            });
            if ready && knot.answers(origin) {
                return knot;
            }
            knot.stop();
        }
        panic!("knotd did not start");
    }

    /// Whether it answers the SOA of `origin` with NOERROR.
    pub fn answers(&self, origin: &str) -> bool {
        let query = query_message(origin, RecordType::SOA, None)
            .to_vec()
            .unwrap();
        udp_raw(self.addr, &query)
            .and_then(|reply| Message::from_vec(&reply).ok())
            .is_some_and(|reply| reply.metadata.response_code == ResponseCode::NoError)
    }

    /// Its address as an `--upstream` value.
    pub fn upstream(&self) -> String {
        self.addr.to_string()
    }

    /// Kills Knot: from now on the upstream is down (nothing listens on its port).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        self.stop();
    }
}

fn knotd() -> PathBuf {
    ["/usr/sbin/knotd", "/usr/bin/knotd"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("knotd"))
}

/// `static.test.`: `db` at 10.9.0.5, TTL 120, negative TTL 30.
pub const STATIC_ZONE: &str = "$ORIGIN static.test.\n$TTL 120\n\
    @ IN SOA ns.static.test. hostmaster.static.test. 7 3600 900 604800 30\n\
    @ IN NS ns\n\
    ns IN A 10.9.0.1\n\
    db IN A 10.9.0.5\n";
