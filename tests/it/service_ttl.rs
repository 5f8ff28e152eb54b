//! Per-service TTLs (`--service-ttl-for NAME=DURATION` and the file's `[service_ttl]` table,
//! Consul's `dns_config.service_ttl`): an exact name wins, then the longest `prefix*`, then
//! `--service-ttl`; every name form of a service takes its TTL; bad entries exit 2 naming the
//! key; a change is restart-only.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::assert_eventually;
use crate::support::dns_client::{assert_rcode, tcp, ttls, udp};
use crate::support::registry::entry;
use crate::support::server::{run_to_exit, Server};
use crate::support::write;

/// db, dblb, dk, api and web, one passing instance each (tag `v1`), on their own nodes.
fn registry() -> serde_json::Value {
    let mut services = serde_json::Map::new();
    for (i, service) in ["db", "dblb", "dk", "api", "web"].iter().enumerate() {
        let node = format!("n{i}");
        let address = format!("10.3.0.{}", i + 1);
        services.insert(
            service.to_string(),
            json!([entry(&node, &address, service, "", 80, &["v1"], "passing")]),
        );
    }
    services.into()
}

fn ask(addr: std::net::SocketAddr, transport: &str, name: &str, rtype: RecordType) -> Message {
    match transport {
        "udp" => udp(addr, name, rtype),
        _ => tcp(addr, name, rtype),
    }
}

#[test]
fn an_exact_name_wins_then_the_longest_prefix_then_the_default() {
    // Consul's TestDNS_ServiceLookup_TTL: {"d*": 42s, "db": 10s, "db*": 66s, "*": 5s}, here
    // split between the flags and the file's table, with a default for the rest.
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let registry_path = dir.path().join("registry.json");
    std::fs::write(&registry_path, registry().to_string()).unwrap();
    let config = write(
        dir.path(),
        "snapdns.toml",
        &format!(
            "registry = \"file:{}\"\nservice-ttl = \"9s\"\nnode-ttl = \"3s\"\n\
             [service_ttl]\n\"d*\" = \"42s\"\n\"DB*\" = \"66s\"\n\"a*\" = \"5s\"\n",
            registry_path.display()
        ),
    );
    let server = Server::start_in(
        dir.clone(),
        &[
            "--config",
            config.to_str().unwrap(),
            "--service-ttl-for",
            "db=10s",
        ],
    );
    for transport in ["udp", "tcp"] {
        for (service, ttl) in [("db", 10), ("dblb", 66), ("dk", 42), ("api", 5), ("web", 9)] {
            // Plain, datacenter, tag and RFC 2782 forms all take the service's TTL.
            for name in [
                format!("{service}.service.consul."),
                format!("{service}.service.dc1.consul."),
                format!("v1.{service}.service.consul."),
                format!("_{service}._tcp.service.consul."),
                format!("_{service}._v1.service.consul."),
            ] {
                let a = ask(server.addr, transport, &name, RecordType::A);
                assert_rcode(&a, ResponseCode::NoError);
                assert_eq!(ttls(&a.answers), [ttl], "{name} A over {transport}");
                let srv = ask(server.addr, transport, &name, RecordType::SRV);
                assert_eq!(srv.answers.len(), 1, "{name}");
                assert_eq!(
                    ttls(&srv.answers)
                        .into_iter()
                        .chain(ttls(&srv.additionals))
                        .collect::<Vec<_>>(),
                    [ttl, ttl],
                    "{name} SRV and its additional A over {transport}"
                );
            }
            // The node name keeps the node TTL.
            let node = ask(server.addr, transport, "n0.node.consul.", RecordType::A);
            assert_eq!(ttls(&node.answers), [3]);
        }
    }
}

#[test]
fn bad_entries_exit_2_naming_the_key_and_the_entry() {
    for (value, needle) in [
        ("web", "\"web\" is not NAME=DURATION"),
        ("web=soon", "\"soon\" is not a duration"),
        ("a*b=5s", "\"a*b\""),
    ] {
        let (code, stderr) = run_to_exit(&["serve", "--service-ttl-for", value]);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("service-ttl-for") && stderr.contains(needle),
            "{stderr}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    for (table, needle) in [
        ("web = \"soon\"\n", "service_ttl: \"web\": \"soon\""),
        ("\"web*\" = 10\n", "service_ttl.web*: "),
        ("\"v1.web\" = \"5s\"\n", "service_ttl: \"v1.web\""),
    ] {
        let config = write(
            dir.path(),
            "snapdns.toml",
            &format!("listen = [\"127.0.0.1:0\"]\n[service_ttl]\n{table}"),
        );
        let (code, stderr) = run_to_exit(&["serve", "--config", config.to_str().unwrap()]);
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}

#[test]
fn a_changed_pattern_or_health_filter_waits_for_a_restart() {
    let (server, config) = Server::demo_with_config("[service_ttl]\nweb = \"5s\"\n", &[]);
    let web = udp(server.addr, "web.service.consul.", RecordType::A);
    assert_eq!(ttls(&web.answers), [5, 5]);
    std::fs::write(
        &config,
        "serve-warning = true\n[service_ttl]\nweb = \"8s\"\n",
    )
    .unwrap();
    server.signal("HUP");
    assert_eventually!(server.log_count("configuration reloaded") == 1);
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("take effect only after a restart"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("serve-warning") && line.contains("service-ttl-for"),
        "{line}"
    );
    let web = udp(server.addr, "web.service.consul.", RecordType::A);
    assert_eq!(ttls(&web.answers), [5, 5], "unchanged until a restart");
}
