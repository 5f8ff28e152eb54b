//! One integration test binary: every module drives the real `snapdns` binary over real
//! sockets on loopback. Test files are named after the feature they test; everything more
//! than one of them uses lives in `support/`, and no test file imports from another.

#![allow(unreachable_pub)] // test helpers are shared between modules of one crate

mod support;

/// Answers from the registry zone: names, records, TTLs, sizes, malformed queries.
mod answers;
/// `snapdns check`: the configuration, registry, zones and state directory, without serving.
mod check;
/// Flags and the config file.
mod config;
/// `/v1/explain` and `snapdns explain`: why a name is (not) answered.
mod explain;
/// The registry file source.
mod file_registry;
/// Forwarding to upstreams and the cache.
mod forward;
/// The fuzz targets' seeds and findings on stable, and the random-mutation fallback.
mod fuzz_replay;
/// glibc's resolver (`getent`) as a client.
mod glibc;
/// HAProxy's DNS service discovery as a client.
mod haproxy;
/// Which replica answered: NSID and the CHAOS names.
mod identity;
/// Logs: JSON lines, log flags.
mod logging;
/// `/metrics`.
mod metrics;
/// docs/monitoring/: alert rules under promtool, the dashboard's queries against /metrics.
mod monitoring;
/// Consul's name forms answered without names of their own: locality labels, RFC 2782
/// without `.service`, any `addr`, hostnames inside the domain.
mod name_forms;
/// `--nameserver`: NS, SOA and glue shared by replicas.
mod nameservers;
/// The Debian package: built, installed with dpkg, removed and purged.
mod package;
/// SIGHUP reloads.
mod reload;
/// Five replicas behind Unbound and dnsmasq.
mod replicas;
/// PTR for registry addresses, node metadata as TXT.
mod reverse;
/// Response rate limiting of UDP answers.
mod rrl;
/// `--serve-warning`: warning instances served, critical never.
mod serve_warning;
/// Per-service TTLs: `--service-ttl-for` and the `[service_ttl]` table.
mod service_ttl;
/// SIGTERM draining.
mod shutdown;
/// `snapdns state`: the persisted generations, and an export as a registry file.
mod state;
/// Static zones from `--zones-dir`.
mod static_zones;
/// The status page at `/`, in headless Chromium.
mod status_page;
/// Sync from Consul: changes, outages, disk, self-preservation, security.
mod sync;
/// DNS over TCP under hostile clients: connection caps, buffers, deadlines.
mod tcp;
/// Rules of the source tree.
mod tidy;
/// Zone transfers: AXFR, TSIG, Knot as a secondary.
mod transfer;
/// Answers cut to any UDP size at record boundaries.
mod truncation;
