//! `--serve-warning`: instances whose worst check is `warning` are served too (Consul's default
//! `only_passing = false`), with their `Weights.Warning` as SRV weight; critical and maintenance
//! never. The counts in `/health` and `/metrics` follow what is served.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{json, Value};

use crate::support::dns_client::{assert_rcode, rdata, sorted_rdata, tcp, udp};
use crate::support::http::health;
use crate::support::metrics::metric;
use crate::support::registry::entry;
use crate::support::server::Server;

/// web: n1 passing, n2 warning, n3 critical, n4 in maintenance, n5 with a warning node check;
/// weights 10 passing, 3 warning. slow: only a warning instance.
fn registry() -> Value {
    let mut web = vec![
        entry("n1", "10.1.0.1", "web", "", 80, &[], "passing"),
        entry("n2", "10.1.0.2", "web", "", 80, &[], "warning"),
        entry("n3", "10.1.0.3", "web", "", 80, &[], "critical"),
        entry("n4", "10.1.0.4", "web", "", 80, &[], "passing"),
        entry("n5", "10.1.0.5", "web", "", 80, &[], "passing"),
    ];
    for instance in &mut web {
        instance["Service"]["Weights"] = json!({"Passing": 10, "Warning": 3});
    }
    let maintenance = json!({
        "Node": "n4", "CheckID": "_service_maintenance:web-80-n4", "Name": "Service Maintenance Mode",
        "Status": "critical", "ServiceID": "web-80-n4", "ServiceName": "web", "Type": "maintenance"
    });
    web[3]["Checks"].as_array_mut().unwrap().push(maintenance);
    web[4]["Checks"][0]["Status"] = json!("warning");
    json!({
        "web": web,
        "slow": [entry("s1", "10.2.0.1", "slow", "", 81, &[], "warning")],
    })
}

fn ask(
    server: &Server,
    transport: &str,
    name: &str,
    rtype: RecordType,
) -> hickory_proto::op::Message {
    match transport {
        "udp" => udp(server.addr, name, rtype),
        _ => tcp(server.addr, name, rtype),
    }
}

#[test]
fn warning_instances_are_served_only_with_the_flag() {
    let (strict, _) = Server::with_registry_file(&registry(), &[]);
    let (lenient, _) = Server::with_registry_file(&registry(), &["--serve-warning"]);
    for transport in ["udp", "tcp"] {
        let a = ask(&strict, transport, "web.service.consul.", RecordType::A);
        assert_rcode(&a, ResponseCode::NoError);
        assert_eq!(sorted_rdata(&a.answers), ["10.1.0.1"], "{transport}");
        let slow = ask(&strict, transport, "slow.service.consul.", RecordType::A);
        assert_rcode(&slow, ResponseCode::NXDomain);

        let a = ask(&lenient, transport, "web.service.consul.", RecordType::A);
        assert_rcode(&a, ResponseCode::NoError);
        assert_eq!(
            sorted_rdata(&a.answers),
            ["10.1.0.1", "10.1.0.2", "10.1.0.5"],
            "critical and maintenance stay out over {transport}"
        );
        let srv = ask(&lenient, transport, "web.service.consul.", RecordType::SRV);
        assert_eq!(
            rdata(&srv.answers),
            [
                "1 10 80 n1.node.dc1.consul.",
                "1 3 80 n2.node.dc1.consul.",
                "1 3 80 n5.node.dc1.consul.",
            ],
            "warning instances weigh Weights.Warning over {transport}"
        );
        assert_eq!(
            sorted_rdata(&srv.additionals),
            ["10.1.0.1", "10.1.0.2", "10.1.0.5"]
        );
        let slow = ask(&lenient, transport, "slow.service.consul.", RecordType::A);
        assert_eq!(rdata(&slow.answers), ["10.2.0.1"], "{transport}");
    }
    // What /health and /metrics count as served is what DNS serves.
    for (server, served) in [(&strict, 1), (&lenient, 4)] {
        let (_, report) = health(server);
        assert_eq!(report["snapshot"]["passing_instances"], served, "{report}");
        assert_eq!(report["snapshot"]["instances"], 6);
        assert_eq!(
            metric(server, "snapdns_instances_passing"),
            Some(served as f64)
        );
    }
}
