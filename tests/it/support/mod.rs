//! The shared test harness: every helper more than one test file uses lives here, one job per
//! file, so test files import from `support` and never from each other.
//!
//! - [`browser`]: headless Chromium: a page's DOM, a screenshot, a table's rows.
//! - [`server`]: starting the real `snapdns` binary, its log, signals and exit.
//! - [`dns_client`]: DNS over real UDP/TCP sockets, with hickory-proto as an independent codec.
//! - [`http`]: one small HTTP/1.1 client, and snapdns's `/health`.
//! - [`metrics`]: scraping snapdns's `/metrics` and reading samples.
//! - [`registry`]: registry fixtures in Consul's JSON format, the demo registry.
//! - [`standin`]: the Consul stand-in (tests/consul_standin/standin.py) as a child process.
//! - [`sync_settings`]: the short sync knobs and starting snapdns against a stand-in.
//! - [`state_files`]: damage done to state files by hand (a torn journal, a spoiled base).
//! - [`knot`]: Debian's `knotd` as a real upstream, and the zone files tests serve.
//! - [`fake_upstream`]: a UDP upstream for what Knot cannot be made to show.
//! - [`transfer`]: an AXFR client with TSIG.
//! - [`secondaries`]: Knot, NSD and Unbound as secondaries of snapdns.
//! - [`namespace`]: glibc's `getent` in private Linux namespaces.

pub mod browser;
pub mod certs;
pub mod dns_client;
pub mod fake_upstream;
pub mod http;
pub mod knot;
pub mod metrics;
pub mod namespace;
pub mod registry;
pub mod secondaries;
pub mod server;
pub mod standin;
pub mod state_files;
pub mod sync_settings;
pub mod transfer;

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_snapdns"))
}

/// Repository root, for zones/, docs/ and the demo registry.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long until `condition` holds, polling every 20 ms; panics after 10 s.
pub fn time_until(what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), &mut condition),
        "never happened: {what}"
    );
    started.elapsed()
}

/// Asserts that a condition becomes true within 10 s, polling.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr) => {
        assert!(
            $crate::support::eventually(std::time::Duration::from_secs(10), || $cond),
            "condition never held: {}",
            stringify!($cond)
        )
    };
    ($cond:expr, $($msg:tt)+) => {
        assert!(
            $crate::support::eventually(std::time::Duration::from_secs(10), || $cond),
            $($msg)+
        )
    };
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
