//! Debian's Knot, NSD and Unbound as real secondaries of snapdns: each started on a free
//! loopback port with a configuration that transfers one zone from snapdns (Knot and NSD with
//! the shared TSIG key, Unbound unsigned, since its `auth-zone` cannot sign), and killed on
//! drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use super::dns_client::{query_message, udp_raw};
use super::transfer::{KEY_NAME, KEY_SECRET};
use super::{eventually, write};

/// A running secondary server.
pub struct Secondary {
    child: Child,
    /// Its address (UDP and TCP).
    pub addr: SocketAddr,
    log_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Secondary {
    /// Knot (`knotd`) on `port` for `zone` from `primary`, TSIG-signed, taking NOTIFY from it.
    pub fn knot(port: u16, zone: &str, primary: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("db")).unwrap();
        let config = format!(
            "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    \
             tcp-workers: 1\n    background-workers: 1\n\
             database:\n    storage: \"{d}/db\"\n\
             log:\n  - target: \"{d}/server.log\"\n    any: info\n\
             key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {KEY_SECRET}\n\
             remote:\n  - id: snapdns\n    address: {ip}@{pport}\n    key: {KEY_NAME}\n\
             acl:\n  - id: notify\n    address: {ip}\n    key: {KEY_NAME}\n    action: notify\n\
             template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n    \
             journal-content: changes\n\
             zone:\n  - domain: {zone}\n    master: snapdns\n    acl: notify\n",
            d = dir.path().display(),
            ip = primary.ip(),
            pport = primary.port(),
        );
        let path = write(dir.path(), "knot.conf", &config);
        let child = spawn(Command::new("knotd").arg("-c").arg(path), "knot");
        Self::ready(child, port, dir, zone)
    }

    /// NSD on `port` for `zone` from `primary`, TSIG-signed, taking NOTIFY from it.
    pub fn nsd(port: u16, zone: &str, primary: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "server:\n    ip-address: 127.0.0.1@{port}\n    port: {port}\n    \
             server-count: 1\n    username: \"\"\n    chroot: \"\"\n    \
             zonesdir: \"{d}\"\n    zonelistfile: \"{d}/zone.list\"\n    \
             xfrdfile: \"{d}/xfrd.state\"\n    xfrdir: \"{d}\"\n    pidfile: \"{d}/nsd.pid\"\n    \
             logfile: \"{d}/server.log\"\n    database: \"\"\n    verbosity: 2\n\
             remote-control:\n    control-enable: no\n\
             key:\n    name: \"{KEY_NAME}\"\n    algorithm: hmac-sha256\n    secret: \"{KEY_SECRET}\"\n\
             zone:\n    name: \"{zone}\"\n    zonefile: \"{zone}.zone\"\n    \
             request-xfr: {ip}@{pport} {KEY_NAME}\n    allow-notify: {ip} {KEY_NAME}\n",
            d = dir.path().display(),
            ip = primary.ip(),
            pport = primary.port(),
        );
        let path = write(dir.path(), "nsd.conf", &config);
        let child = spawn(Command::new("nsd").arg("-d").arg("-c").arg(path), "nsd");
        Self::ready(child, port, dir, zone)
    }

    /// Unbound with an `auth-zone` for `zone` whose primary is `primary` (unsigned), serving
    /// it to clients.
    pub fn unbound(port: u16, zone: &str, primary: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "server:\n    interface: 127.0.0.1@{port}\n    port: {port}\n    \
             do-daemonize: no\n    username: \"\"\n    chroot: \"\"\n    \
             directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n    use-syslog: no\n    \
             logfile: \"{d}/server.log\"\n    verbosity: 1\n    do-not-query-localhost: no\n    \
             access-control: 127.0.0.0/8 allow\n    num-threads: 1\n\
             auth-zone:\n    name: \"{zone}.\"\n    primary: {ip}@{pport}\n    \
             allow-notify: {ip}\n    fallback-enabled: no\n    for-downstream: yes\n    \
             for-upstream: no\n    zonefile: \"{d}/{zone}.zone\"\n",
            d = dir.path().display(),
            ip = primary.ip(),
            pport = primary.port(),
        );
        let path = write(dir.path(), "unbound.conf", &config);
        let child = spawn(
            Command::new("unbound").arg("-d").arg("-c").arg(path),
            "unbound",
        );
        Self::ready(child, port, dir, zone)
    }

    /// Waits until the secondary answers the zone's SOA (it has transferred the zone).
    fn ready(child: Child, port: u16, dir: tempfile::TempDir, zone: &str) -> Self {
        let mut secondary = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log_file: dir.path().join("server.log"),
            _dir: dir,
        };
        let has_zone = eventually(Duration::from_secs(60), || {
            secondary.child.try_wait().ok().flatten().is_some() || secondary.has(zone)
        });
        assert!(
            has_zone && secondary.has(zone),
            "the secondary did not transfer {zone}:\n{}",
            secondary.log()
        );
        secondary
    }

    /// True when it answers `zone`'s SOA with NOERROR and the record.
    fn has(&self, zone: &str) -> bool {
        let query = query_message(zone, RecordType::SOA, None).to_vec().unwrap();
        udp_raw(self.addr, &query)
            .and_then(|reply| Message::from_vec(&reply).ok())
            .is_some_and(|reply| {
                reply.metadata.response_code == ResponseCode::NoError && !reply.answers.is_empty()
            })
    }

    /// The secondary's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }
}

impl Drop for Secondary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(command: &mut Command, name: &str) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{name} is installed (apt-get install {name}): {e}"))
}

/// Asks `primary` and `secondary` every question with dnspython (`compare_answers.py`, an
/// independent codec) and compares the rcodes and answer RRsets; panics with the differences.
pub fn assert_same_answers_by_dnspython(
    primary: SocketAddr,
    secondary: SocketAddr,
    questions: impl IntoIterator<Item = (String, RecordType)>,
) {
    let script = super::repo().join("tests/it/support/compare_answers.py");
    // Debian's python3, which python3-dnspython installs into (not a python3 earlier on PATH).
    let output = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(primary.to_string())
        .arg(secondary.to_string())
        .args(
            questions
                .into_iter()
                .map(|(name, rtype)| format!("{name}/{rtype}")),
        )
        .output()
        .expect("python3 with dnspython (apt-get install python3-dnspython)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "answers differ:\n{text}");
    assert!(text.contains(" 0 differ"), "{text}");
}
