//! Configuration: bad flags and config files exit 2 with one line naming the key, and a
//! config file sets values that flags override.

use hickory_proto::rr::RecordType;

use crate::support::dns_client::udp;
use crate::support::server::{run_to_exit, Server};
use crate::support::{self, write};

#[test]
fn bad_flags_and_config_exit_2_with_one_line() {
    let (code, stderr) = run_to_exit(&["serve", "--max-udp-size", "100"]);
    assert_eq!(code, 2);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("max-udp-size"), "{stderr}");

    let (code, stderr) = run_to_exit(&["serve", "--listen", "nowhere"]);
    assert_eq!((code, stderr.trim().lines().count()), (2, 1), "{stderr}");
    assert!(stderr.contains("listen"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "snapdns.toml",
        "listen = [\"127.0.0.1:0\"]\nservice-tll = \"5s\"\n",
    );
    let (code, stderr) = run_to_exit(&["serve", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("service-tll"), "{stderr}");

    let (code, _) = run_to_exit(&["serve", "--no-such-flag"]);
    assert_eq!(code, 2);
}

#[test]
fn config_file_sets_values_and_flags_override_it() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let registry = support::repo().join("zones/demo.registry.json");
    let config = write(
        dir.path(),
        "snapdns.toml",
        &format!(
            "registry = \"file:{}\"\nservice-ttl = \"20s\"\nnode-ttl = \"3s\"\n",
            registry.display()
        ),
    );
    let server = Server::start_in(
        dir.clone(),
        &["--config", config.to_str().unwrap(), "--node-ttl", "9s"],
    );
    assert_eq!(
        udp(server.addr, "web.service.consul.", RecordType::A).answers[0].ttl,
        20
    );
    assert_eq!(
        udp(server.addr, "web-01.node.consul.", RecordType::A).answers[0].ttl,
        9
    );
}
