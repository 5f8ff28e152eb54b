//! `--nameserver NAME=IP`: the apex NS RRset, the SOA MNAME and glue, the same on every
//! replica given the same list, over UDP and TCP; three replicas on 127.0.0.2x:53 asked with
//! `dig`, each telling its own `hostname.bind`.

use std::net::{SocketAddr, TcpListener, UdpSocket};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::dns_client::{assert_rcode, dig, rdata, rrs, soa, tcp, udp};
use crate::support::server::{run_to_exit, Server};

/// The list every test gives: two names inside the domain (one with two addresses) and one
/// outside it.
const LIST: [&str; 8] = [
    "--nameserver",
    "ns1.consul.=10.0.0.1",
    "--nameserver",
    "NS2.consul=10.0.0.2",
    "--nameserver",
    "ns2.consul.=fd00::2",
    "--nameserver",
    "dns.example.net.=192.0.2.1",
];

#[test]
fn ns_soa_glue_and_the_names_own_addresses() {
    let mut args = LIST.to_vec();
    args.extend(["--node-ttl", "30s"]);
    let server = Server::demo(&[], &args);
    for transport in ["udp", "tcp"] {
        let ask = |name: &str, qtype| match transport {
            "udp" => udp(server.addr, name, qtype),
            _ => tcp(server.addr, name, qtype),
        };
        let ns = ask("consul.", RecordType::NS);
        assert_rcode(&ns, ResponseCode::NoError);
        assert!(ns.metadata.authoritative);
        assert_eq!(
            rdata(&ns.answers),
            ["ns1.consul.", "ns2.consul.", "dns.example.net."],
            "in the order given, over {transport}"
        );
        assert!(ns.answers.iter().all(|r| r.ttl == 30));
        // Glue only for the names inside the domain.
        let glue = |name: &str, qtype, ip: &str| (name.to_string(), qtype, ip.to_string());
        assert_eq!(
            rrs(&ns.additionals),
            [
                glue("ns1.consul.", RecordType::A, "10.0.0.1"),
                glue("ns2.consul.", RecordType::A, "10.0.0.2"),
                glue("ns2.consul.", RecordType::AAAA, "fd00::2"),
            ],
            "over {transport}"
        );
        assert!(ns.additionals.iter().all(|r| r.ttl == 30));

        let apex = ask("consul.", RecordType::SOA);
        let mname = rdata(&apex.answers)[0]
            .split(' ')
            .next()
            .map(str::to_string);
        assert_eq!(mname.as_deref(), Some("ns1.consul."));
        // Negative answers carry the same SOA.
        let missing = ask("nope.service.consul.", RecordType::A);
        assert_eq!(
            soa(&missing).map(|s| s.mname.to_string()).as_deref(),
            Some("ns1.consul.")
        );

        let a = ask("ns1.consul.", RecordType::A);
        assert_rcode(&a, ResponseCode::NoError);
        assert_eq!(rdata(&a.answers), ["10.0.0.1"]);
        assert_eq!(a.answers[0].ttl, 30);
        assert_eq!(
            rdata(&ask("ns2.consul.", RecordType::AAAA).answers),
            ["fd00::2"]
        );
        let nodata = ask("ns1.consul.", RecordType::AAAA);
        assert_rcode(&nodata, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        // The default name is gone; the registry answers as before.
        assert_rcode(&ask("ns.consul.", RecordType::A), ResponseCode::NXDomain);
        assert!(!ask("web.service.consul.", RecordType::A).answers.is_empty());
        // Another zone's name is not ours to answer.
        assert_rcode(
            &ask("dns.example.net.", RecordType::A),
            ResponseCode::Refused,
        );
    }
}

#[test]
fn the_config_file_takes_the_same_list() {
    let config = "nameserver = [\"ns1.consul.=10.0.0.1\", \"ns2.consul.=10.0.0.2\"]\n";
    let (server, _) = Server::demo_with_config(config, &[]);
    let ns = udp(server.addr, "consul.", RecordType::NS);
    assert_eq!(rdata(&ns.answers), ["ns1.consul.", "ns2.consul."]);
    assert_eq!(rdata(&ns.additionals), ["10.0.0.1", "10.0.0.2"]);
}

#[test]
fn names_that_cannot_be_served_are_refused_at_start() {
    for (value, expect) in [
        ("ns1.consul.", "needs an address"),
        (
            "web.service.consul.=10.0.0.1",
            "belongs to the registry's names",
        ),
        (
            "dns1.node.dc1.consul.=10.0.0.1",
            "belongs to the registry's names",
        ),
        ("consul.=10.0.0.1", "below consul."),
        ("ns1.consul.=nowhere", "is not an IP address"),
    ] {
        let (code, stderr) = run_to_exit(&["serve", "--no-forward", "--nameserver", value]);
        assert_eq!(code, 2, "{value}: {stderr}");
        assert!(stderr.contains("nameserver: "), "{value}: {stderr}");
        assert!(stderr.contains(expect), "{value}: {stderr}");
    }
}

/// True when UDP and TCP port 53 can be bound on `ip` (we run as root; a sandbox may not).
fn port_53_free(ip: &str) -> bool {
    let addr: SocketAddr = format!("{ip}:53").parse().expect("address");
    UdpSocket::bind(addr).is_ok() && TcpListener::bind(addr).is_ok()
}

/// The ANSWER and ADDITIONAL sections of dig's output (minus the OPT pseudo-section).
fn sections(out: &str) -> Vec<String> {
    let mut keep = false;
    let mut lines = Vec::new();
    for line in out.lines() {
        if line.starts_with(";; ") && line.ends_with("SECTION:") {
            keep = line.contains("ANSWER") || line.contains("ADDITIONAL");
            lines.push(line.to_string());
            continue;
        }
        if line.trim().is_empty() {
            keep = false;
        }
        if keep {
            lines.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    lines
}

#[test]
fn three_replicas_on_port_53_answer_one_ns_set_and_each_its_own_name() {
    let ips = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];
    if let Some(busy) = ips.iter().find(|ip| !port_53_free(ip)) {
        eprintln!("skipped: cannot bind {busy}:53 (not root, or the port is taken)");
        return;
    }
    let list: Vec<String> = ips
        .iter()
        .enumerate()
        .flat_map(|(i, ip)| {
            [
                "--nameserver".to_string(),
                format!("ns{}.consul.={ip}", i + 1),
            ]
        })
        .collect();
    let replicas: Vec<Server> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let listen = format!("{ip}:53");
            let identity = format!("replica-{}", i + 1);
            let mut args = vec!["--listen", listen.as_str(), "--identity", identity.as_str()];
            args.extend(list.iter().map(String::as_str));
            Server::demo(&[], &args)
        })
        .collect();

    let mut ns_sets = Vec::new();
    let mut soas = Vec::new();
    let mut names = Vec::new();
    for (replica, ip) in replicas.iter().zip(ips) {
        assert_eq!(replica.addr, format!("{ip}:53").parse().unwrap());
        let at = format!("@{ip}");
        for transport in ["+notcp", "+tcp"] {
            let out = dig(&[&at, transport, "+norecurse", "consul.", "NS"]);
            assert!(out.contains("status: NOERROR"), "{out}");
            assert!(
                out.contains("ANSWER: 3") && out.contains("ADDITIONAL: 4"),
                "{out}"
            );
            ns_sets.push(sections(&out));
            let soa = dig(&[&at, transport, "+short", "consul.", "SOA"]);
            // Serial aside (the same registry file here anyway).
            soas.push(soa.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
        }
        names.push(
            dig(&[&at, "+short", "CH", "TXT", "hostname.bind"])
                .trim()
                .to_string(),
        );
    }
    let first = &ns_sets[0];
    for ns in &ns_sets {
        assert_eq!(ns, first);
    }
    for (i, ip) in ips.iter().enumerate() {
        let glue = format!("ns{}.consul. 0 IN A {ip}", i + 1);
        let ns = format!("consul. 0 IN NS ns{}.consul.", i + 1);
        assert!(first.contains(&glue), "{glue:?} in {first:#?}");
        assert!(first.contains(&ns), "{ns:?} in {first:#?}");
    }
    assert!(
        soas.iter()
            .all(|soa| soa == "ns1.consul. hostmaster.consul."),
        "{soas:?}"
    );
    assert_eq!(names, ["\"replica-1\"", "\"replica-2\"", "\"replica-3\""]);
}
