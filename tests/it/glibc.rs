//! glibc's stub resolver as a real client, through `getent` in private namespaces
//! ([`crate::support::namespace`]): a bare service name resolves through
//! `search service.consul` against snapdns on 127.0.0.1:53 in its own network namespace, and
//! the resolv.conf of docs/resolv-conf.md sends registry names to snapdns and every other
//! name through it to an upstream (Knot). The host's files and network are untouched.
//!
//! docs/resolv-conf.md ("Tested with glibc") quotes [`RESOLV_CONF`] and the getent command.

use std::collections::BTreeSet;

use serde_json::json;

use crate::support::knot::{example_zone, Knot};
use crate::support::namespace::Namespace;
use crate::support::registry::entry;
use crate::support::server::Server;
use crate::support::{self, write};

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
    let registry = write(
        dir.path(),
        "registry.json",
        &serde_json::to_string_pretty(&registry).unwrap(),
    );
    let host_resolv_conf = std::fs::read("/etc/resolv.conf").ok();

    let namespace = Namespace {
        etc: &[
            ("resolv.conf", RESOLV_CONF),
            ("nsswitch.conf", NSSWITCH_CONF),
            ("hosts", HOSTS),
        ],
        snapdns_registry: Some(&registry),
    };
    let names = ["web", "web.service.consul", "nosuch"];
    let [bare, full, missing] =
        <[_; 3]>::try_from(namespace.getent(dir.path(), "ahosts", &names)).expect("three lookups");

    let passing: BTreeSet<String> = ["127.0.10.1", "127.0.10.2", "::1"].map(String::from).into();
    assert_eq!(bare.rc, 0, "getent ahosts web: {bare:?}");
    assert_eq!(bare.addresses, passing, "exactly the passing instances");
    assert_eq!(
        bare.canonical.as_deref(),
        Some("web.service.consul"),
        "found through the search list"
    );
    assert_eq!(full.rc, 0, "getent ahosts web.service.consul: {full:?}");
    assert_eq!(full.addresses, passing);
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

/// The resolv.conf of docs/resolv-conf.md, used by glibc itself (`getent`, in a private mount
/// namespace where it replaces /etc/resolv.conf, on the host's network). glibc cannot use
/// another port than 53, so snapdns listens on port 53 of a loopback address of its own.
#[test]
fn glibc_resolves_through_the_documented_resolv_conf() {
    let knot = Knot::start("example.test.", &example_zone());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let salt = std::process::id() ^ nanos;
    let ip = format!("127.53.{}.{}", salt % 250 + 1, (salt / 250) % 250 + 1);
    let listen = format!("{ip}:53");
    let server = Server::demo(&[knot.upstream()], &["--listen", &listen]);
    assert_eq!(server.addr.to_string(), listen);

    let doc = std::fs::read_to_string(support::repo().join("docs/resolv-conf.md")).unwrap();
    let block = doc
        .split("```conf\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```conf block");
    assert!(block.contains("nameserver 127.0.0.1\n"), "{block}");
    let documented = block.replace("nameserver 127.0.0.1\n", &format!("nameserver {ip}\n"));
    let dir = tempfile::tempdir().unwrap();
    let getent = |resolv_conf: &str, name: &str| -> (i32, BTreeSet<String>) {
        let namespace = Namespace {
            etc: &[("resolv.conf", resolv_conf)],
            snapdns_registry: None,
        };
        let mut lookups = namespace.getent(dir.path(), "ahostsv4", &[name]);
        let lookup = lookups.pop().expect("one lookup");
        (lookup.rc, lookup.addresses)
    };
    let set =
        |items: &[&str]| -> BTreeSet<String> { items.iter().map(|s| s.to_string()).collect() };

    // `web` through the search list, to the registry.
    assert_eq!(
        getent(&documented, "web"),
        (0, set(&["10.0.1.11", "10.0.1.12"]))
    );
    assert_eq!(
        getent(&documented, "web.service.consul"),
        (0, set(&["10.0.1.11", "10.0.1.12"]))
    );
    // Any other name through the upstream.
    assert_eq!(
        getent(&documented, "www.example.test"),
        (0, set(&["192.0.2.1", "192.0.2.2"]))
    );
    // Neither in the registry nor upstream: glibc's "not found".
    assert_eq!(getent(&documented, "nothing"), (2, set(&[])));
    // Another suffix first: `web.example.test` is a forwarded miss (then negatively cached),
    // and the registry still answers `web`; `www` is found under the first suffix.
    let other_first = documented.replace(
        "search service.consul",
        "search example.test service.consul",
    );
    assert_ne!(other_first, documented);
    for _ in 0..2 {
        assert_eq!(
            getent(&other_first, "web"),
            (0, set(&["10.0.1.11", "10.0.1.12"]))
        );
    }
    assert_eq!(
        getent(&other_first, "www"),
        (0, set(&["192.0.2.1", "192.0.2.2"]))
    );
}
