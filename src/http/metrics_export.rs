//! `GET /metrics`: the counters of [`Metrics`] and the served state ([`Served`]), encoded at
//! scrape time in the OpenMetrics text format by `prometheus-client`.
//!
//! Nothing here runs on the query path: a scrape reads the relaxed atomics, loads the snapshot
//! once and copies the source status out of its mutex, then encodes every family with its HELP,
//! TYPE and (for seconds and bytes) UNIT lines. Families whose value is unknown (the snapshot
//! age before any snapshot, persistence before the first save) are announced without samples.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::served::{Reading, Served};
use crate::metrics::{Metrics, LATENCY_BUCKETS};

/// The Content-Type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The whole exposition of `served` now, `# EOF` included.
pub fn render(served: &Served) -> String {
    let scrape = Scrape {
        reading: served.read(SystemTime::now()),
        metrics: served.metrics.clone(),
        started: served.started,
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::with_capacity(8 * 1024);
    // Writing to a String cannot fail; an encoder error would be a bug in a name.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        let _ = writeln!(out, "# encoding failed: {error}");
    }
    out
}

/// One scrape: the served state read once, and the counters.
#[derive(Debug)]
struct Scrape {
    reading: Reading,
    metrics: Arc<Metrics>,
    started: SystemTime,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        encode_dns(e, &self.metrics)?;
        encode_snapshot(e, &self.reading)?;
        encode_sync(e, &self.reading)?;
        encode_operating(e, &self.metrics, self.started)
    }
}

/// The families of the query path.
fn encode_dns(e: &mut DescriptorEncoder<'_>, m: &Metrics) -> Result<(), std::fmt::Error> {
    {
        let mut family = e.encode_descriptor(
            "snapdns_queries",
            "DNS responses sent, by query type and response code.",
            None,
            MetricType::Counter,
        )?;
        for (qtype, rcode, count) in m.answers() {
            family
                .encode_family(&[("qtype", qtype), ("rcode", rcode)])?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
    }
    counter(
        e,
        "snapdns_queries_ignored",
        "Messages dropped without a response (responses, runts, unanswerable).",
        None,
        m.ignored(),
    )?;
    {
        let (buckets, count, sum) = m.latency();
        let mut pairs: Vec<(f64, u64)> = LATENCY_BUCKETS.iter().copied().zip(buckets).collect();
        let counted: u64 = pairs.iter().map(|(_, n)| n).sum();
        pairs.push((f64::INFINITY, count.saturating_sub(counted)));
        e.encode_descriptor(
            "snapdns_answer_duration",
            "Time from receiving a query to having its response (forwarded ones included).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(sum, count, &pairs, None)?;
    }
    counter(
        e,
        "snapdns_forwarded_queries",
        "Queries for names outside the served zones handed to the forwarder.",
        None,
        m.forwarded.load(Ordering::Relaxed),
    )?;
    counter(
        e,
        "snapdns_cache_hits",
        "Forwarded queries answered from the cache.",
        None,
        m.cache_hits.load(Ordering::Relaxed),
    )?;
    counter(
        e,
        "snapdns_cache_misses",
        "Forwarded queries that went upstream.",
        None,
        m.cache_misses.load(Ordering::Relaxed),
    )?;
    counter(
        e,
        "snapdns_upstream_failures",
        "Upstream attempts that failed (timeout, SERVFAIL, REFUSED, bad reply).",
        None,
        m.upstream_failures.load(Ordering::Relaxed),
    )?;
    counter(
        e,
        "snapdns_forwards_over_limit",
        "Forwarded queries answered SERVFAIL at once because --max-forwards were in flight.",
        None,
        m.forwards_over_limit.load(Ordering::Relaxed),
    )?;
    counter(
        e,
        "snapdns_tcp_clients_refused",
        "TCP connections closed at once: --max-tcp-clients or the address's share was taken.",
        None,
        m.tcp_clients_refused.load(Ordering::Relaxed),
    )?;
    counter(
        e,
        "snapdns_rrl_dropped",
        "UDP responses dropped by response rate limiting (--rrl-rate).",
        None,
        m.rrl_dropped.load(Ordering::Relaxed),
    )?;
    counter(
        e,
        "snapdns_rrl_slipped",
        "UDP responses sent truncated (TC=1) instead of dropped by rate limiting (--rrl-slip).",
        None,
        m.rrl_slipped.load(Ordering::Relaxed),
    )?;

    Ok(())
}

/// The families of the served snapshot.
fn encode_snapshot(
    e: &mut DescriptorEncoder<'_>,
    reading: &Reading,
) -> Result<(), std::fmt::Error> {
    let snapshot = &reading.snapshot;
    let age = reading.confirmed_at().map(|at| reading.seconds_since(at));
    optional_gauge(
        e,
        "snapdns_snapshot_age",
        "Time since the registry last confirmed the served snapshot (absent before any).",
        Some(&Unit::Seconds),
        age,
    )?;
    optional_gauge(
        e,
        "snapdns_snapshot_index",
        "Registry (Raft) index of the served snapshot.",
        None,
        snapshot.as_ref().map(|s| s.index()),
    )?;
    optional_gauge(
        e,
        "snapdns_snapshot_serial",
        "SOA serial of the registry zone served; equal on replicas serving the same state.",
        None,
        snapshot.as_ref().map(|s| u64::from(s.zone.serial())),
    )?;
    {
        let origin = reading.view.snapshot_origin.as_str();
        let mut family = e.encode_descriptor(
            "snapdns_snapshot_origin",
            "Where the served snapshot came from: 1 for the origin (disk, registry, file).",
            None,
            MetricType::Gauge,
        )?;
        if snapshot.is_some() {
            family
                .encode_family(&[("origin", origin)])?
                .encode_gauge(&1u64)?;
        }
    }
    let stats = snapshot.as_ref().map(|s| s.stats).unwrap_or_default();
    gauge(
        e,
        "snapdns_services",
        "Services in the served snapshot.",
        None,
        stats.services as u64,
    )?;
    gauge(
        e,
        "snapdns_instances",
        "Instances in the served snapshot, whatever their health.",
        None,
        stats.instances as u64,
    )?;
    gauge(
        e,
        "snapdns_instances_passing",
        "Instances served in answers: every check passing (with --serve-warning: none critical).",
        None,
        stats.passing_instances as u64,
    )?;

    Ok(())
}

/// Reloads, start time and build.
fn encode_operating(
    e: &mut DescriptorEncoder<'_>,
    m: &Metrics,
    started: SystemTime,
) -> Result<(), std::fmt::Error> {
    counter(
        e,
        "snapdns_config_reloads",
        "Configuration reloads (SIGHUP) that were applied.",
        None,
        m.reloads_ok.load(Ordering::Relaxed),
    )?;
    counter(
        e,
        "snapdns_config_reload_failures",
        "Configuration reloads (SIGHUP) rejected; the previous settings were kept.",
        None,
        m.reloads_failed.load(Ordering::Relaxed),
    )?;
    gauge(
        e,
        "snapdns_config_last_reload_successful",
        "0 when the last reload was rejected, else 1.",
        None,
        u64::from(m.last_reload_ok()),
    )?;
    gauge(
        e,
        "snapdns_start_time",
        "When the process started, in seconds since the Unix epoch.",
        Some(&Unit::Seconds),
        unix_seconds(started),
    )?;
    let mut info = e.encode_descriptor(
        "snapdns_build_info",
        "Always 1, labelled with the snapdns version.",
        None,
        MetricType::Gauge,
    )?;
    info.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?
        .encode_gauge(&1u64)?;
    Ok(())
}

/// The families of the registry source and the sync engine.
fn encode_sync(e: &mut DescriptorEncoder<'_>, reading: &Reading) -> Result<(), std::fmt::Error> {
    let view = &reading.view;
    let totals = &view.totals;
    {
        let mut family = e.encode_descriptor(
            "snapdns_sync",
            "Registry syncs that succeeded: full resyncs and change syncs.",
            None,
            MetricType::Counter,
        )?;
        for (kind, count) in [
            ("full", totals.full_syncs),
            ("changes", totals.change_syncs),
        ] {
            family
                .encode_family(&[("kind", kind)])?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
    }
    counter(
        e,
        "snapdns_sync_errors",
        "Registry syncs that failed (the last good snapshot stays served).",
        None,
        totals.failed_syncs,
    )?;
    optional_gauge(
        e,
        "snapdns_sync_duration",
        "How long the most recent successful sync took.",
        Some(&Unit::Seconds),
        view.last_sync.as_ref().map(|r| r.duration.as_secs_f64()),
    )?;
    optional_gauge(
        e,
        "snapdns_full_sync_duration",
        "How long the most recent successful full resync took.",
        Some(&Unit::Seconds),
        view.last_full_sync
            .as_ref()
            .map(|r| r.duration.as_secs_f64()),
    )?;
    optional_gauge(
        e,
        "snapdns_last_sync_success",
        "When a sync last succeeded (the file source: when the file was loaded), Unix seconds.",
        Some(&Unit::Seconds),
        view.last_success.map(unix_seconds),
    )?;
    counter(
        e,
        "snapdns_registry_requests",
        "HTTP requests made to the registry, blocking queries and retries included.",
        None,
        totals.requests,
    )?;
    counter(
            e,
            "snapdns_registry",
            "Response body bytes received from the registry on the wire (gzip-compressed where it compressed).",
            Some(&Unit::Bytes),
            totals.wire_bytes,
        )?;
    counter(
        e,
        "snapdns_registry_decoded",
        "Response body bytes from the registry after decompression.",
        Some(&Unit::Bytes),
        totals.json_bytes,
    )?;
    gauge(
        e,
        "snapdns_registry_up",
        "1 while the registry answers (no fault on any channel), else 0.",
        None,
        u64::from(reading.registry_up()),
    )?;
    let p = &view.preservation;
    gauge(
        e,
        "snapdns_self_preservation_active",
        "1 while instances the registry dropped are still served (self-preservation).",
        None,
        u64::from(p.held_instances > 0),
    )?;
    gauge(
        e,
        "snapdns_self_preservation_held_instances",
        "Instances served although the registry no longer lists them.",
        None,
        p.held_instances as u64,
    )?;
    counter(
        e,
        "snapdns_self_preservation_episodes",
        "Times self-preservation was triggered.",
        None,
        p.episodes,
    )?;
    let persistence = view.persistence.as_ref();
    optional_gauge(
        e,
        "snapdns_persist_ok",
        "1 when the last save of the snapshot to the state directory worked, 0 when it failed.",
        None,
        persistence.and_then(|p| p.ok).map(u64::from),
    )?;
    optional_gauge(
        e,
        "snapdns_persist_last_success",
        "When the snapshot was last saved to the state directory, Unix seconds.",
        Some(&Unit::Seconds),
        persistence.and_then(|p| p.last_saved).map(unix_seconds),
    )?;
    Ok(())
}

fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    e.encode_descriptor(name, help, unit, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge<V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: V,
) -> Result<(), std::fmt::Error> {
    e.encode_descriptor(name, help, unit, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// A gauge that has no sample while its value is unknown.
fn optional_gauge<V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: Option<V>,
) -> Result<(), std::fmt::Error> {
    let mut family = e.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    match value {
        Some(value) => family.encode_gauge(&value),
        None => Ok(()),
    }
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::SnapshotStore;
    use crate::source::status::SourceStatus;
    use crate::source::RegistrySource;

    fn served() -> Served {
        Served {
            metrics: Arc::new(Metrics::default()),
            store: SnapshotStore::default(),
            status: Arc::new(SourceStatus::new(
                RegistrySource::Consul("http://127.0.0.1:8500".into()),
                "dc1".into(),
                Some("/var/lib/snapdns".into()),
            )),
            started: SystemTime::now(),
            explain: None,
            identity: "test".into(),
            health: Default::default(),
        }
    }

    #[test]
    fn every_family_is_announced_before_any_traffic() {
        let text = render(&served());
        for family in [
            "# TYPE snapdns_queries counter",
            "# TYPE snapdns_answer_duration_seconds histogram",
            "# UNIT snapdns_answer_duration_seconds seconds",
            "# TYPE snapdns_snapshot_age_seconds gauge",
            "# TYPE snapdns_sync counter",
            "# TYPE snapdns_registry_bytes counter",
            "# TYPE snapdns_self_preservation_active gauge",
        ] {
            assert!(text.contains(family), "{family} missing:\n{text}");
        }
        assert!(text.contains("snapdns_answer_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(!text.contains("\nsnapdns_snapshot_age_seconds "), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn counts_answers_by_type_and_rcode() {
        let e = served();
        // A response header: ID, QR|RD, RA|NXDOMAIN, one question `a.` type A class IN.
        let nx = [
            0, 1, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1,
        ];
        e.metrics.observe_answer(
            &nx,
            std::time::Instant::now() - std::time::Duration::from_secs(2),
        );
        let text = render(&e);
        assert!(
            text.contains("snapdns_queries_total{qtype=\"A\",rcode=\"NXDOMAIN\"} 1\n"),
            "{text}"
        );
        // Two seconds is above the last finite bucket: only +Inf holds it.
        assert!(
            text.contains("snapdns_answer_duration_seconds_bucket{le=\"1.0\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("snapdns_answer_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("snapdns_answer_duration_seconds_count 1\n"));
    }
}
