//! Which replica answered: NSID (RFC 5001) asked with `dig +nsid` and `kdig +nsid`, and the
//! CHAOS TXT names (`dig CH TXT hostname.bind`), over UDP and TCP; `--identity` and
//! `--version-string`, and empty strings turning them off.

use std::process::Command;

use crate::support::dns_client::dig;
use crate::support::knot::Knot;
use crate::support::server::Server;

/// `kdig` with `args`: stdout.
fn kdig(args: &[&str]) -> String {
    let output = Command::new("kdig")
        .args(args)
        .output()
        .expect("kdig is installed (knot-dnsutils)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `@addr -p port` for dig and kdig.
fn at(server: &Server) -> [String; 3] {
    [
        format!("@{}", server.addr.ip()),
        "-p".into(),
        server.addr.port().to_string(),
    ]
}

fn dig_at(server: &Server, args: &[&str]) -> String {
    let at = at(server);
    let mut all: Vec<&str> = at.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    dig(&all)
}

fn kdig_at(server: &Server, args: &[&str]) -> String {
    let at = at(server);
    let mut all: Vec<&str> = at.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    kdig(&all)
}

/// dig's NSID line, e.g. `; NSID: 72 65 ... ("replica-7")`, reduced to the quoted text.
fn dig_nsid(out: &str) -> Option<String> {
    let line = out.lines().find(|line| line.starts_with("; NSID: "))?;
    let text = line.rsplit_once("(\"")?.1.strip_suffix("\")")?;
    Some(text.to_string())
}

/// kdig's NSID line, e.g. `;; NSID: 7265706C69636137 "replica-7"`, reduced to the text.
fn kdig_nsid(out: &str) -> Option<String> {
    let line = out.lines().find(|line| line.starts_with(";; NSID: "))?;
    let text = line.split_once('"')?.1.strip_suffix('"')?;
    Some(text.to_string())
}

fn status(out: &str) -> &str {
    out.split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("none")
}

#[test]
fn nsid_names_the_replica_over_udp_and_tcp_on_every_kind_of_answer() {
    let server = Server::demo(&[], &["--identity", "replica-7"]);
    for transport in ["+notcp", "+tcp"] {
        for (name, qtype, rcode) in [
            ("web.service.consul", "A", "NOERROR"),
            ("_web._tcp.service.consul", "SRV", "NOERROR"),
            ("nope.service.consul", "A", "NXDOMAIN"),
            ("web.service.consul", "TXT", "NOERROR"),
            ("example.org", "A", "REFUSED"),
        ] {
            let out = dig_at(&server, &[transport, "+nsid", name, qtype]);
            assert_eq!(status(&out), rcode, "{name} {qtype} {transport}:\n{out}");
            assert_eq!(
                dig_nsid(&out).as_deref(),
                Some("replica-7"),
                "{name} {qtype} {transport}:\n{out}"
            );
            let out = kdig_at(&server, &[transport, "+nsid", name, qtype]);
            assert_eq!(
                kdig_nsid(&out).as_deref(),
                Some("replica-7"),
                "kdig {name} {qtype} {transport}:\n{out}"
            );
        }
        // Not asked, not sent: the answer is the same as before NSID existed.
        let out = dig_at(&server, &[transport, "web.service.consul", "A"]);
        assert_eq!(status(&out), "NOERROR");
        assert!(!out.contains("NSID"), "{out}");
    }
}

#[test]
fn nsid_never_costs_records_in_a_full_udp_answer() {
    // 40 instances fill a 512-byte EDNS answer: NSID is left out rather than a record.
    let registry = crate::support::registry::many("big", 40);
    let long_identity = "r".repeat(200);
    let (server, _) = Server::with_registry_file(&registry, &["--identity", &long_identity]);
    let plain = dig_at(
        &server,
        &["+bufsize=512", "+ignore", "big.service.consul", "A"],
    );
    let asked = dig_at(
        &server,
        &[
            "+bufsize=512",
            "+ignore",
            "+nsid",
            "big.service.consul",
            "A",
        ],
    );
    let answers = |out: &str| {
        out.lines()
            .filter(|line| line.starts_with("big.service.consul.") && line.contains("\tA\t"))
            .count()
    };
    assert!(answers(&plain) > 0, "{plain}");
    assert_eq!(answers(&plain), answers(&asked), "{asked}");
    assert_eq!(dig_nsid(&asked), None, "{asked}");
    // With room (TCP), it is there.
    let tcp = dig_at(&server, &["+tcp", "+nsid", "big.service.consul", "A"]);
    assert_eq!(dig_nsid(&tcp).as_deref(), Some(long_identity.as_str()));
}

#[test]
fn chaos_txt_tells_identity_and_version() {
    let server = Server::demo(
        &[],
        &["--identity", "replica-7", "--version-string", "v-test"],
    );
    for transport in ["+notcp", "+tcp"] {
        for (name, text) in [
            ("hostname.bind", "replica-7"),
            ("id.server", "replica-7"),
            ("version.bind", "v-test"),
            ("version.server", "v-test"),
            ("HOSTNAME.Bind", "replica-7"),
        ] {
            let out = dig_at(&server, &[transport, "+norecurse", "CH", "TXT", name]);
            assert_eq!(status(&out), "NOERROR", "{name} {transport}:\n{out}");
            let flags = out.split("flags: ").nth(1).unwrap_or("");
            assert!(flags.starts_with("qr aa"), "AA for {name}:\n{out}");
            let short = dig_at(&server, &[transport, "+short", "CH", "TXT", name]);
            assert_eq!(short.trim(), format!("\"{text}\""), "{name} {transport}");
            // TTL 0, class CH.
            assert!(
                out.lines()
                    .any(|line| line.split_whitespace().collect::<Vec<_>>()[..]
                        == [
                            &format!("{name}."),
                            "0",
                            "CH",
                            "TXT",
                            &format!("\"{text}\"")
                        ][..]),
                "{out}"
            );
        }
        // Other CHAOS names and types: REFUSED (never forwarded).
        for (name, qtype) in [("authors.bind", "TXT"), ("hostname.bind", "A")] {
            let out = dig_at(&server, &[transport, "CH", qtype, name]);
            assert_eq!(status(&out), "REFUSED", "{name} {qtype}:\n{out}");
        }
    }
}

#[test]
fn the_default_identity_is_the_host_name_and_version_is_snapdns() {
    let server = Server::demo(&[], &[]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
    let out = dig_at(&server, &["+short", "CH", "TXT", "hostname.bind"]);
    assert_eq!(out.trim(), format!("\"{}\"", host.trim()));
    let out = dig_at(&server, &["+short", "CH", "TXT", "version.bind"]);
    assert_eq!(
        out.trim(),
        format!("\"snapdns {}\"", env!("CARGO_PKG_VERSION"))
    );
    let out = kdig_at(&server, &["+nsid", "web.service.consul", "A"]);
    assert_eq!(kdig_nsid(&out).as_deref(), Some(host.trim()), "{out}");
}

#[test]
fn empty_strings_turn_identity_and_version_off() {
    let server = Server::demo(&[], &["--identity", "", "--version-string", ""]);
    for transport in ["+notcp", "+tcp"] {
        for name in [
            "hostname.bind",
            "id.server",
            "version.bind",
            "version.server",
        ] {
            let out = dig_at(&server, &[transport, "CH", "TXT", name]);
            assert_eq!(status(&out), "REFUSED", "{name} {transport}:\n{out}");
        }
        let out = dig_at(&server, &[transport, "+nsid", "web.service.consul", "A"]);
        assert_eq!(status(&out), "NOERROR", "{out}");
        assert!(!out.contains("NSID"), "{out}");
        let out = kdig_at(&server, &[transport, "+nsid", "web.service.consul", "A"]);
        assert!(!out.contains("NSID"), "{out}");
    }
    // Each alone: version off, identity on.
    let server = Server::demo(&[], &["--identity", "only-id", "--version-string", ""]);
    let out = dig_at(&server, &["+short", "CH", "TXT", "id.server"]);
    assert_eq!(out.trim(), "\"only-id\"");
    let out = dig_at(&server, &["CH", "TXT", "version.server"]);
    assert_eq!(status(&out), "REFUSED", "{out}");
}

#[test]
fn forwarded_answers_carry_nsid_too() {
    let knot = Knot::start("example.test.", &crate::support::knot::example_zone());
    let server = Server::demo(&[knot.upstream()], &["--identity", "fwd-replica"]);
    for transport in ["+notcp", "+tcp"] {
        // The second query is answered from the cache.
        for _ in 0..2 {
            let out = dig_at(&server, &[transport, "+nsid", "www.example.test", "A"]);
            assert_eq!(status(&out), "NOERROR", "{out}");
            assert_eq!(dig_nsid(&out).as_deref(), Some("fwd-replica"), "{out}");
        }
    }
}

#[test]
fn identity_and_version_are_checked_and_reloaded() {
    let (code, log) = crate::support::server::run_to_exit(&[
        "serve",
        "--no-forward",
        "--registry",
        &crate::support::registry::demo_registry(),
        "--identity",
        &"x".repeat(256),
    ]);
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("identity: 256 bytes, above 255"), "{log}");

    let (server, path) = Server::demo_with_config("identity = \"before\"\n", &["--no-forward"]);
    let out = dig_at(&server, &["+short", "CH", "TXT", "id.server"]);
    assert_eq!(out.trim(), "\"before\"");
    std::fs::write(&path, "identity = \"after\"\nversion-string = \"\"\n").unwrap();
    server.signal("HUP");
    assert!(crate::support::eventually(
        std::time::Duration::from_secs(10),
        || dig_at(&server, &["+short", "CH", "TXT", "id.server"]).trim() == "\"after\""
    ));
    let out = dig_at(&server, &["CH", "TXT", "version.bind"]);
    assert_eq!(status(&out), "REFUSED", "{out}");
    assert!(
        !server.log().contains("only after a restart"),
        "{}",
        server.log()
    );
}
