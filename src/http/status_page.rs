//! `GET /`: the status page, one server-rendered HTML page for people (HAProxy's stats page
//! is the model): who this replica is, how the registry is, which snapshot is served and
//! since when, self-preservation, forwarding, every service with its passing / total
//! instances and why instances are not served, and the last changes the sync applied.
//!
//! No JavaScript and no outside assets: headings, tables and a little inline CSS, so it reads
//! in a terminal browser too. `?refresh=N` adds a meta refresh every N seconds. Every string
//! from the registry or the configuration is written through [`Text`], escaped.

mod services;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::html::{duration, time, time_ago, Text};
use super::served::{Reading, Served};
use crate::source::status::StatusView;
use crate::source::RegistrySource;

/// Auto-refresh periods allowed, in seconds.
const REFRESH_SECONDS: std::ops::RangeInclusive<u32> = 1..=3600;

/// Kept small and inline: the page must render without fetching anything.
const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:75em;padding:0 1em;color:#1d2329;background:#fff}\
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #d0d7de}\
header p{margin:.2em 0;color:#57606a}\
.badge{display:inline-block;padding:.05em .6em;border-radius:1em;font-weight:600;color:#fff}\
.badge.ok{background:#1a7f37}.badge.degraded{background:#bf8700}.badge.unavailable{background:#cf222e}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(22em,1fr));gap:0 1.5em}\
table{border-collapse:collapse;width:100%;font-size:.92em}\
th,td{text-align:left;vertical-align:top;padding:.25em .5em;border-bottom:1px solid #eaeef2}\
thead th{background:#f6f8fa;white-space:nowrap}table.kv th{width:40%;font-weight:500;color:#57606a}\
table.services>tbody>tr>th,table.changes>tbody>tr>th{width:14em}\
td.count{width:1%;white-space:nowrap;font-variant-numeric:tabular-nums}\
tr.down{background:#ffebe9}tr.failing{background:#fff8c5}\
ul{margin:0;padding-left:1.1em}.instance{font-family:ui-monospace,monospace}\
.more,footer{color:#57606a}footer{margin-top:2em;font-size:.85em}";

/// The `refresh` period a request's query asks for, if valid.
pub fn refresh_of(query: Option<&str>) -> Option<u32> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("refresh="))
        .and_then(|value| value.parse().ok())
        .filter(|seconds| REFRESH_SECONDS.contains(seconds))
}

/// The page for `reading`, refreshing itself every `refresh` seconds if given.
pub fn render(served: &Served, reading: &Reading, refresh: Option<u32>) -> String {
    let view = &reading.view;
    let mut out = String::with_capacity(64 * 1024);
    let identity = if served.identity.is_empty() {
        "(no identity)"
    } else {
        &served.identity
    };
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    if let Some(seconds) = refresh {
        let _ = writeln!(out, "<meta http-equiv=\"refresh\" content=\"{seconds}\">");
    }
    let _ = writeln!(
        out,
        "<title>snapdns {} - {}</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        Text(identity),
        reading.overall().as_str()
    );
    let overall = reading.overall().as_str();
    let _ = writeln!(
        out,
        "<header>\n<h1>snapdns on {}</h1>\n<p>Status <span class=\"badge {overall}\">{overall}</span> \
         as of {}</p>\n</header>",
        Text(identity),
        time(reading.now),
    );
    out.push_str("<div class=\"grid\">\n");
    write_replica(&mut out, served, reading, identity);
    write_registry(&mut out, reading);
    write_snapshot(&mut out, reading);
    write_preservation(&mut out, view, reading);
    write_forwarding(&mut out, served);
    out.push_str("</div>\n<section id=\"services\">\n<h2>Services</h2>\n");
    match &reading.snapshot {
        Some(snapshot) => services::write_services(&mut out, &snapshot.state, served.health),
        None => out.push_str("<p>No snapshot served yet: registry names get SERVFAIL.</p>\n"),
    }
    out.push_str("</section>\n");
    write_changes(&mut out, view, reading);
    let _ = writeln!(
        out,
        "<footer>snapdns {}. Also <a href=\"/health\">/health</a> (JSON) and \
         <a href=\"/metrics\">/metrics</a>. Refresh every <a href=\"/?refresh=10\">10 s</a>, \
         <a href=\"/?refresh=60\">60 s</a>, <a href=\"/\">never</a>.</footer>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// Opens a section of label/value rows.
fn open_table(out: &mut String, id: &str, title: &str) {
    let _ = writeln!(
        out,
        "<section id=\"{id}\">\n<h2>{title}</h2>\n<table class=\"kv\">"
    );
}

/// One label/value row; `value` is escaped.
fn row(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(
        out,
        "<tr><th scope=\"row\">{label}</th><td>{}</td></tr>",
        Text(value)
    );
}

fn close_table(out: &mut String) {
    out.push_str("</table>\n</section>\n");
}

fn write_replica(out: &mut String, served: &Served, reading: &Reading, identity: &str) {
    open_table(out, "replica", "Replica");
    row(out, "Identity", identity);
    row(
        out,
        "Version",
        concat!("snapdns ", env!("CARGO_PKG_VERSION")),
    );
    row(out, "Status", reading.overall().as_str());
    let uptime = reading
        .now
        .duration_since(served.started)
        .unwrap_or_default();
    row(out, "Up for", &duration(uptime));
    close_table(out);
}

fn write_registry(out: &mut String, reading: &Reading) {
    let (view, now) = (&reading.view, reading.now);
    open_table(out, "registry", "Registry");
    match &view.source {
        RegistrySource::File(_) => row(out, "Source", &format!("file {}", view.source.shown())),
        RegistrySource::Consul(_) => {
            row(out, "Source", &format!("consul {}", view.source.shown()));
            row(out, "Datacenter", &view.datacenter);
        }
    }
    let state = reading.registry_state();
    row(
        out,
        "State",
        &format!("{state} since {}", time_ago(view.state_since, now)),
    );
    let contact = view
        .last_success
        .map_or_else(|| "never".to_string(), |t| time_ago(t, now));
    row(out, "Last contact", &contact);
    if matches!(view.source, RegistrySource::Consul(_)) {
        let leader = match view.known_leader {
            Some(true) => "known",
            Some(false) => "unknown",
            None => "not reported yet",
        };
        row(out, "Leader", leader);
    }
    for (channel, fault) in &view.faults {
        let text = format!(
            "{}: {} (since {})",
            fault.kind.as_str(),
            fault.message,
            time_ago(fault.since, now)
        );
        row(out, &format!("Fault on {}", Text(channel)), &text);
    }
    if let Some(error) = &view.last_error {
        let text = format!(
            "{} {}: {}",
            time_ago(error.at, now),
            error.channel,
            error.message
        );
        row(out, "Last error", &text);
    }
    close_table(out);
}

fn write_snapshot(out: &mut String, reading: &Reading) {
    open_table(out, "snapshot", "Snapshot");
    let Some(snapshot) = &reading.snapshot else {
        row(out, "Serial", "none: nothing served yet");
        close_table(out);
        return;
    };
    row(out, "Serial", &snapshot.zone.serial().to_string());
    if snapshot.index() > 0 {
        row(out, "Registry index", &snapshot.index().to_string());
    }
    row(out, "From", reading.view.snapshot_origin.as_str());
    let confirmed = reading.confirmed_at().unwrap_or(snapshot.fetched_at);
    row(out, "Confirmed", &time_ago(confirmed, reading.now));
    let stats = snapshot.stats;
    let counts = format!(
        "{} services, {} instances, {} passing",
        stats.services, stats.instances, stats.passing_instances
    );
    row(out, "Holds", &counts);
    for (reason, count, example) in snapshot.skipped.reasons() {
        row(
            out,
            "Left out",
            &format!("{count} {reason} (e.g. {example})"),
        );
    }
    close_table(out);
}

fn write_preservation(out: &mut String, view: &StatusView, reading: &Reading) {
    let preservation = &view.preservation;
    open_table(out, "self-preservation", "Self-preservation");
    if matches!(view.source, RegistrySource::File(_)) {
        // A file says what it says: nothing is held against it.
        row(out, "Active", "no (not used with a registry file)");
        close_table(out);
        return;
    }
    if preservation.threshold <= 0.0 {
        row(out, "Active", "no (turned off)");
        close_table(out);
        return;
    }
    if preservation.held_instances > 0 {
        row(
            out,
            "Active",
            "yes: the registry lost too many instances at once",
        );
    } else {
        row(out, "Active", "no");
    }
    row(
        out,
        "Held instances",
        &preservation.held_instances.to_string(),
    );
    if let Some(since) = preservation.since {
        row(out, "Since", &time_ago(since, reading.now));
    }
    if let Some(next) = preservation.next_release {
        let wait = next.duration_since(reading.now).unwrap_or_default();
        row(out, "Next release", &format!("in {}", duration(wait)));
    }
    let threshold = format!(
        "{:.0} % within {}; {} episodes since start",
        preservation.threshold * 100.0,
        duration(preservation.window),
        preservation.episodes
    );
    row(out, "Threshold", &threshold);
    close_table(out);
}

fn write_forwarding(out: &mut String, served: &Served) {
    let metrics = &served.metrics;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let (forwarded, hits, misses) = (
        load(&metrics.forwarded),
        load(&metrics.cache_hits),
        load(&metrics.cache_misses),
    );
    open_table(out, "forwarding", "Forwarding");
    row(out, "Forwarded queries", &forwarded.to_string());
    let rate = if hits + misses == 0 {
        "no lookups yet".to_string()
    } else {
        format!("{:.1} %", hits as f64 * 100.0 / (hits + misses) as f64)
    };
    row(out, "Cache hit rate", &rate);
    row(out, "Cache hits / misses", &format!("{hits} / {misses}"));
    row(
        out,
        "Upstream failures",
        &load(&metrics.upstream_failures).to_string(),
    );
    row(
        out,
        "Over --max-forwards",
        &load(&metrics.forwards_over_limit).to_string(),
    );
    close_table(out);
}

fn write_changes(out: &mut String, view: &StatusView, reading: &Reading) {
    out.push_str("<section id=\"changes\">\n<h2>Recent changes</h2>\n");
    if view.changes.is_empty() {
        out.push_str("<p>No changes recorded since start-up.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table class=\"changes\">\n<thead><tr><th scope=\"col\">Time</th><th scope=\"col\">Service</th>\
         <th scope=\"col\">Change</th></tr></thead>\n<tbody>\n",
    );
    // Newest first.
    for change in view.changes.iter().rev() {
        let _ = writeln!(
            out,
            "<tr><td class=\"count\">{}</td><th scope=\"row\">{}</th><td>{}</td></tr>",
            Text(&time_ago(change.at, reading.now)),
            Text(&change.what.service()),
            Text(&change.what.describe()),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}
