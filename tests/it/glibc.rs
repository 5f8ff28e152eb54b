//! glibc's stub resolver as a real client: `getent ahosts` (getaddrinfo) resolves a bare service
//! name through `search service.consul` against snapdns on port 53. glibc cannot be told
//! another port, so the test runs inside a private mount and network namespace
//! (`unshare --mount --net`, as root) with its own resolv.conf, nsswitch.conf and hosts
//! bind-mounted over /etc's; the host's files and network are untouched.
//!
//! docs/resolv-conf.md ("Tested with glibc") quotes [`RESOLV_CONF`] and the getent command.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::registry_fixture::entry;
use crate::support;

/// The resolv.conf the test bind-mounts over /etc/resolv.conf.
pub const RESOLV_CONF: &str = "\
nameserver 127.0.0.1
search service.consul
options ndots:1 timeout:1 attempts:2
";

/// Only `files dns`: no nscd, systemd-resolved or mDNS module between glibc and snapdns.
const NSSWITCH_CONF: &str = "hosts: files dns\n";

/// No entry that could answer for the names asked.
const HOSTS: &str = "127.0.0.1 localhost\n";

/// Runs in the namespaces: loopback up, private /etc files, snapdns on 127.0.0.1:53, then
/// `getent ahosts` for each name in $NAMES, each result between `== NAME` and `== rc CODE`.
const SCRIPT: &str = r#"
set -u
ip link set lo up || exit 101
mount --bind "$DIR/resolv.conf" /etc/resolv.conf || exit 102
mount --bind "$DIR/nsswitch.conf" /etc/nsswitch.conf || exit 103
mount --bind "$DIR/hosts" /etc/hosts || exit 104
# A host nscd would answer from the host's view; hide its socket.
for d in /run/nscd /var/run/nscd; do
    if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d" || exit 105; fi
done
"$SNAPDNS" serve --listen 127.0.0.1:53 --http off --no-forward --udp-workers 1 \
    --registry "file:$DIR/registry.json" --state-dir "$DIR/state" --zones-dir "$DIR/no-zones" \
    2>"$DIR/snapdns.log" &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
i=0
until grep -q "listening on udp" "$DIR/snapdns.log"; do
    kill -0 $pid 2>/dev/null || { echo "snapdns exited"; exit 106; }
    i=$((i + 1))
    [ $i -le 400 ] || { echo "snapdns did not start"; exit 107; }
    sleep 0.05
done
for name in $NAMES; do
    echo "== $name"
    getent ahosts "$name"
    echo "== rc $?"
done
"#;

/// What `getent ahosts NAME` printed: exit code, distinct addresses, canonical name.
#[derive(Debug, Default)]
struct Lookup {
    rc: i32,
    addresses: BTreeSet<String>,
    canonical: Option<String>,
}

fn parse(output: &str, name: &str) -> Lookup {
    let start = format!("== {name}");
    let mut lines = output.lines().skip_while(|l| *l != start).skip(1);
    let mut lookup = Lookup {
        rc: -1,
        ..Lookup::default()
    };
    for line in lines.by_ref() {
        if let Some(rc) = line.strip_prefix("== rc ") {
            lookup.rc = rc.trim().parse().unwrap_or(-1);
            break;
        }
        // `ADDRESS  STREAM|DGRAM|RAW  [CANONICAL]`
        let mut fields = line.split_whitespace();
        if let Some(address) = fields.next() {
            lookup.addresses.insert(address.to_string());
        }
        if let Some(canonical) = fields.nth(1) {
            lookup
                .canonical
                .get_or_insert_with(|| canonical.to_string());
        }
    }
    lookup
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs [`SCRIPT`] for `names` in new mount and network namespaces; returns its stdout. Kills
/// the whole process group if it takes longer than a minute.
fn in_namespaces(dir: &Path, names: &[&str]) -> String {
    for tool in ["unshare", "ip", "mount", "getent"] {
        assert!(
            have(tool),
            "{tool} is needed (util-linux, iproute2, libc-bin)"
        );
    }
    let stdout = std::fs::File::create(dir.join("stdout")).unwrap();
    let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
    let mut child = Command::new("unshare")
        .args(["--mount", "--net", "--propagation", "private", "--"])
        .args(["sh", "-c", SCRIPT])
        .env("DIR", dir)
        .env("SNAPDNS", support::binary())
        .env("NAMES", names.join(" "))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .expect("run unshare");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!("the namespace script did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    assert!(
        status.success(),
        "the namespace script failed ({status}; unshare needs root):\nstdout:\n{}\nstderr:\n{}\nsnapdns:\n{}",
        read("stdout"),
        read("stderr"),
        read("snapdns.log")
    );
    read("stdout")
}

#[test]
fn glibc_resolves_bare_service_names_through_the_search_list() {
    let dir = tempfile::tempdir().unwrap();
    let registry = json!({
        "web": [
            entry("n1", "127.0.10.1", "web", "", 80, &[], "passing"),
            entry("n2", "127.0.10.2", "web", "", 80, &[], "passing"),
            entry("n3", "::1", "web", "", 80, &[], "passing"),
            entry("n4", "127.0.10.4", "web", "", 80, &[], "warning"),
            entry("n5", "127.0.10.5", "web", "", 80, &[], "critical"),
        ],
        "other": [entry("n6", "127.0.10.6", "other", "", 80, &[], "passing")],
    });
    support::write(
        dir.path(),
        "registry.json",
        &serde_json::to_string_pretty(&registry).unwrap(),
    );
    support::write(dir.path(), "resolv.conf", RESOLV_CONF);
    support::write(dir.path(), "nsswitch.conf", NSSWITCH_CONF);
    support::write(dir.path(), "hosts", HOSTS);
    let host_resolv_conf = std::fs::read("/etc/resolv.conf").ok();

    let output = in_namespaces(dir.path(), &["web", "web.service.consul", "nosuch"]);

    let passing: BTreeSet<String> = ["127.0.10.1", "127.0.10.2", "::1"].map(String::from).into();
    let bare = parse(&output, "web");
    assert_eq!(bare.rc, 0, "getent ahosts web:\n{output}");
    assert_eq!(bare.addresses, passing, "exactly the passing instances");
    assert_eq!(
        bare.canonical.as_deref(),
        Some("web.service.consul"),
        "found through the search list"
    );
    let full = parse(&output, "web.service.consul");
    assert_eq!(full.rc, 0, "getent ahosts web.service.consul:\n{output}");
    assert_eq!(full.addresses, passing);
    let missing = parse(&output, "nosuch");
    assert_eq!(missing.rc, 2, "a name that does not exist is not found");
    assert!(missing.addresses.is_empty());

    assert_eq!(
        std::fs::read("/etc/resolv.conf").ok(),
        host_resolv_conf,
        "the host's resolv.conf is untouched"
    );
}

#[test]
fn glibc_doc_quotes_the_tested_resolv_conf() {
    let doc = std::fs::read_to_string(support::repo().join("docs/resolv-conf.md"))
        .expect("docs/resolv-conf.md");
    let section = doc
        .split("## Tested with glibc\n")
        .nth(1)
        .expect("a \"Tested with glibc\" section");
    assert!(
        section.contains(&format!("```\n{RESOLV_CONF}```")),
        "the section quotes the tested resolv.conf verbatim:\n{RESOLV_CONF}"
    );
    assert!(section.contains("getent ahosts web\n"));
}
