//! `/metrics` over real HTTP (issue #5): query counters by type and rcode, the answer-time
//! histogram, the snapshot's description, forwarding and cache counters, and the sync engine's
//! counters through a change, self-preservation and a registry outage.

use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use serde_json::json;

use crate::assert_eventually;
use crate::support::dns_client::{rdata, sorted_rdata, tcp, udp};
use crate::support::fake_upstream::{Behaviour, FakeUpstream};
use crate::support::http::get;
use crate::support::metrics::{metric, sample, scrape};
use crate::support::registry::{entry, web_and_db};
use crate::support::server::Server;
use crate::support::standin::Standin;
use crate::support::sync_settings::fast_sync;

/// Every family `/metrics` announces, as `# TYPE` lines.
const FAMILIES: [&str; 36] = [
    "snapdns_queries counter",
    "snapdns_queries_ignored counter",
    "snapdns_answer_duration_seconds histogram",
    "snapdns_forwarded_queries counter",
    "snapdns_cache_hits counter",
    "snapdns_cache_misses counter",
    "snapdns_upstream_failures counter",
    "snapdns_snapshot_age_seconds gauge",
    "snapdns_snapshot_index gauge",
    "snapdns_snapshot_serial gauge",
    "snapdns_snapshot_origin gauge",
    "snapdns_services gauge",
    "snapdns_instances gauge",
    "snapdns_instances_passing gauge",
    "snapdns_sync counter",
    "snapdns_sync_errors counter",
    "snapdns_sync_duration_seconds gauge",
    "snapdns_full_sync_duration_seconds gauge",
    "snapdns_last_sync_success_seconds gauge",
    "snapdns_registry_requests counter",
    "snapdns_registry_bytes counter",
    "snapdns_registry_decoded_bytes counter",
    "snapdns_registry_up gauge",
    "snapdns_self_preservation_active gauge",
    "snapdns_self_preservation_held_instances gauge",
    "snapdns_self_preservation_episodes counter",
    "snapdns_persist_ok gauge",
    "snapdns_persist_last_success_seconds gauge",
    "snapdns_config_reloads counter",
    "snapdns_config_reload_failures counter",
    "snapdns_config_last_reload_successful gauge",
    "snapdns_start_time_seconds gauge",
    "snapdns_build_info gauge",
    // Samples, not families, that must be there from the start.
    "snapdns_answer_duration_seconds_bucket{le=\"+Inf\"}",
    "snapdns_sync_total{kind=\"full\"}",
    "snapdns_sync_total{kind=\"changes\"}",
];

#[test]
fn metrics_count_queries_by_type_and_rcode_and_describe_the_snapshot() {
    let server = Server::demo(&[], &[]);
    for _ in 0..3 {
        let reply = udp(server.addr, "web.service.consul.", RecordType::A);
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    }
    let nx = udp(server.addr, "nosuch.service.consul.", RecordType::A);
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    let srv = tcp(server.addr, "web.service.consul.", RecordType::SRV);
    assert_eq!(srv.metadata.response_code, ResponseCode::NoError);
    // Not served here and nothing to forward to: REFUSED.
    let refused = udp(server.addr, "example.org.", RecordType::AAAA);
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);

    let text = scrape(&server);
    for family in FAMILIES {
        if family.contains(' ') {
            assert!(
                text.contains(&format!("# TYPE {family}\n")),
                "no {family}:\n{text}"
            );
            let name = family.split(' ').next().unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "no HELP {name}");
        } else {
            assert!(sample(&text, family).is_some(), "no {family}:\n{text}");
        }
    }
    assert!(text.ends_with("# EOF\n"));
    let count = |series: &str| sample(&text, series);
    assert_eq!(
        count("snapdns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}"),
        Some(3.0)
    );
    assert_eq!(
        count("snapdns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"}"),
        Some(1.0)
    );
    assert_eq!(
        count("snapdns_queries_total{qtype=\"SRV\",rcode=\"NOERROR\"}"),
        Some(1.0),
        "TCP answers are counted too"
    );
    assert_eq!(
        count("snapdns_queries_total{qtype=\"AAAA\",rcode=\"REFUSED\"}"),
        Some(1.0)
    );
    let queries: usize = text
        .lines()
        .filter(|l| l.starts_with("snapdns_queries_total{"))
        .count();
    assert_eq!(queries, 4, "only the combinations seen:\n{text}");
    assert_eq!(count("snapdns_answer_duration_seconds_count"), Some(6.0));
    assert_eq!(
        count("snapdns_answer_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(6.0)
    );
    let sum = count("snapdns_answer_duration_seconds_sum").unwrap();
    assert!(sum > 0.0 && sum < 6.0, "{sum}");
    assert_eq!(count("snapdns_forwarded_queries_total"), Some(0.0));
    assert_eq!(count("snapdns_cache_hits_total"), Some(0.0));

    // The demo registry: 6 services, 13 instances, 9 of them passing.
    assert_eq!(count("snapdns_services"), Some(6.0));
    assert_eq!(count("snapdns_instances"), Some(13.0));
    assert_eq!(count("snapdns_instances_passing"), Some(9.0));
    assert_eq!(count("snapdns_snapshot_origin{origin=\"file\"}"), Some(1.0));
    assert_eq!(count("snapdns_registry_up"), Some(1.0));
    assert_eq!(count("snapdns_self_preservation_active"), Some(0.0));
    let soa = udp(server.addr, "consul.", RecordType::SOA);
    let serial = soa.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(f64::from(soa.serial)),
        _ => None,
    });
    assert_eq!(count("snapdns_snapshot_serial"), serial);
    let age = count("snapdns_snapshot_age_seconds").unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    let started = count("snapdns_start_time_seconds").unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(started <= now && started > now - 60.0);

    // The next scrape sees the SOA query and nothing else new.
    let again = scrape(&server);
    assert_eq!(
        sample(
            &again,
            "snapdns_queries_total{qtype=\"SOA\",rcode=\"NOERROR\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&again, "snapdns_answer_duration_seconds_count"),
        Some(7.0)
    );
    // /health still works beside it; other paths are 404.
    assert_eq!(get(server.http.unwrap(), "/health").status, 200);
    assert_eq!(get(server.http.unwrap(), "/nothing").status, 404);
}

#[test]
fn metrics_count_forwarded_queries_cache_hits_and_misses() {
    let upstream = FakeUpstream::start(Behaviour::Answer, [192, 0, 2, 1]);
    let server = Server::start(&["--upstream", &upstream.addr.to_string()]);
    for _ in 0..3 {
        let reply = udp(server.addr, "www.example.test.", RecordType::A);
        assert_eq!(rdata(&reply.answers), ["192.0.2.1"]);
    }
    let other = tcp(server.addr, "mail.example.test.", RecordType::A);
    assert_eq!(rdata(&other.answers), ["192.0.2.1"]);
    assert_eq!(upstream.seen().len(), 2);

    let text = scrape(&server);
    assert_eq!(sample(&text, "snapdns_forwarded_queries_total"), Some(4.0));
    assert_eq!(sample(&text, "snapdns_cache_misses_total"), Some(2.0));
    assert_eq!(sample(&text, "snapdns_cache_hits_total"), Some(2.0));
    assert_eq!(sample(&text, "snapdns_upstream_failures_total"), Some(0.0));
    assert_eq!(
        sample(
            &text,
            "snapdns_queries_total{qtype=\"A\",rcode=\"NOERROR\"}"
        ),
        Some(4.0)
    );
}

#[test]
fn metrics_follow_the_sync_engine_through_self_preservation_and_an_outage() {
    let (mut consul, _dir) = Standin::serving(&web_and_db(&[]), &[]);
    let url = consul.url();
    let mut args = vec!["--registry", url.as_str()];
    // A long self-preservation window: the held drop stays held for the rest of the test.
    args.extend(fast_sync("30s"));
    let server = Server::start(&args);
    assert_eventually!(metric(&server, "snapdns_instances_passing") == Some(5.0));

    let text = scrape(&server);
    let value = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}"));
    assert!(value("snapdns_sync_total{kind=\"full\"}") >= 1.0);
    assert_eq!(value("snapdns_sync_errors_total"), 0.0);
    // At least the service list and one request per service.
    assert!(value("snapdns_registry_requests_total") >= 3.0, "{text}");
    assert!(value("snapdns_registry_bytes_total") > 0.0);
    assert!(value("snapdns_registry_decoded_bytes_total") >= value("snapdns_registry_bytes_total"));
    let duration = value("snapdns_full_sync_duration_seconds");
    assert!(duration > 0.0 && duration < 5.0, "{duration}");
    assert!(value("snapdns_sync_duration_seconds") > 0.0);
    assert_eq!(value("snapdns_services"), 2.0);
    assert_eq!(value("snapdns_snapshot_index"), consul.index() as f64);
    assert_eq!(value("snapdns_snapshot_origin{origin=\"registry\"}"), 1.0);
    assert_eq!(value("snapdns_registry_up"), 1.0);
    assert_eq!(value("snapdns_self_preservation_active"), 0.0);
    assert!(value("snapdns_snapshot_age_seconds") < 10.0);
    assert_eventually!(metric(&server, "snapdns_persist_ok") == Some(1.0));

    // A change arrives through the watches as a change sync.
    consul.put_service(
        "cache",
        &json!([entry("c1", "10.3.0.1", "cache", "", 6379, &[], "passing")]),
    );
    assert_eventually!(metric(&server, "snapdns_services") == Some(3.0));
    assert!(metric(&server, "snapdns_sync_total{kind=\"changes\"}").unwrap() >= 1.0);

    // Four of six instances vanish at once: held, and shown as self-preservation.
    consul.delete_service("web");
    assert_eventually!(metric(&server, "snapdns_self_preservation_active") == Some(1.0));
    let text = scrape(&server);
    assert_eq!(
        sample(&text, "snapdns_self_preservation_held_instances"),
        Some(4.0)
    );
    assert_eq!(
        sample(&text, "snapdns_self_preservation_episodes_total"),
        Some(1.0)
    );
    assert_eq!(
        sorted_rdata(&udp(server.addr, "web.service.consul.", RecordType::A).answers).len(),
        4
    );

    // The registry goes away: syncs fail, the snapshot ages, DNS keeps answering.
    consul.stop();
    assert_eventually!(metric(&server, "snapdns_registry_up") == Some(0.0));
    assert_eventually!(metric(&server, "snapdns_sync_errors_total").unwrap_or(0.0) >= 1.0);
    let age = metric(&server, "snapdns_snapshot_age_seconds").unwrap();
    assert_eventually!(metric(&server, "snapdns_snapshot_age_seconds").unwrap() > age + 0.5);
    assert_eq!(
        udp(server.addr, "db.service.consul.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NoError
    );
}
