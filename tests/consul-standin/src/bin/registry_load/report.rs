//! Before/after samples of every counter, and the markdown row of one scenario.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::net::{self, Totals};
use crate::procstat;
use crate::Replica;

/// Every counter at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    totals: Vec<Totals>,
    cpu: Vec<f64>,
    standin: (u64, u64),
    at: Instant,
}

/// Reads the replicas' `/health`, their CPU time and the stand-in's `/_standin/stats`.
pub(crate) fn sample(standin: &str, replicas: &[Replica]) -> Result<Sample, String> {
    let mut totals = Vec::new();
    for r in replicas {
        totals.push(net::health(r.http)?.0);
    }
    let stats = net::json("GET", &format!("{standin}/_standin/stats"), None)?;
    let n = |k: &str| stats.get(k).and_then(Value::as_u64).unwrap_or(0);
    Ok(Sample {
        totals,
        cpu: replicas
            .iter()
            .map(|r| procstat::cpu_seconds(r.pid))
            .collect(),
        standin: (n("requests"), n("wire_bytes")),
        at: Instant::now(),
    })
}

/// The zero sample (start of the first sync), taken at `at`.
pub(crate) fn zero(replicas: usize, at: Instant) -> Sample {
    Sample {
        totals: vec![Totals::default(); replicas],
        cpu: vec![0.0; replicas],
        standin: (0, 0),
        at,
    }
}

/// The peak number of connections open at the stand-in since the last reset; resets it.
pub(crate) fn max_connections(standin: &str) -> Result<u64, String> {
    let url = format!("{standin}/_standin/connections");
    let v = net::json("GET", &url, None)?;
    net::json("DELETE", &url, None)?;
    Ok(v.get("max_open").and_then(Value::as_u64).unwrap_or(0))
}

/// The table header.
pub(crate) const HEADER: &str = "| scenario | changes | s | requests/replica | wire/replica mean (max) | JSON/replica | wire/change/replica | stand-in requests | stand-in wire | max conns | visible p50 / p99 / max | not visible | CPU s/replica mean (max) | RSS MiB max | full syncs |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// One scenario's result.
#[derive(Debug)]
pub(crate) struct Row<'a> {
    pub(crate) name: &'a str,
    pub(crate) changes: usize,
    pub(crate) before: &'a Sample,
    pub(crate) after: &'a Sample,
    pub(crate) delays: &'a [Option<Duration>],
    pub(crate) max_conns: u64,
    pub(crate) pids: Vec<u32>,
}

impl Row<'_> {
    /// The markdown row.
    pub(crate) fn render(&self) -> String {
        let (b, a) = (self.before, self.after);
        let replicas = a.totals.len().max(1) as f64;
        let d = |f: fn(&Totals) -> u64| -> Vec<f64> {
            a.totals
                .iter()
                .zip(&b.totals)
                .map(|(x, y)| f(x).saturating_sub(f(y)) as f64)
                .collect()
        };
        let mean = |v: &[f64]| v.iter().sum::<f64>() / replicas;
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let (req, wire, json) = (d(|t| t.requests), d(|t| t.wire_bytes), d(|t| t.json_bytes));
        let full = d(|t| t.full_syncs);
        let cpu: Vec<f64> = a.cpu.iter().zip(&b.cpu).map(|(x, y)| x - y).collect();
        let rss = self
            .pids
            .iter()
            .map(|&p| procstat::rss_mib(p))
            .fold(0.0, f64::max);
        let per_change = if self.changes > 0 {
            bytes(mean(&wire) / self.changes as f64)
        } else {
            "-".into()
        };
        format!(
            "| {} | {} | {:.1} | {:.0} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {:.2} ({:.2}) | {:.0} | {:.0} |",
            self.name,
            self.changes,
            a.at.duration_since(b.at).as_secs_f64(),
            mean(&req),
            bytes(mean(&wire)),
            bytes(max(&wire)),
            bytes(mean(&json)),
            per_change,
            a.standin.0.saturating_sub(b.standin.0),
            bytes(a.standin.1.saturating_sub(b.standin.1) as f64),
            self.max_conns,
            visible(self.delays),
            self.delays.iter().filter(|d| d.is_none()).count(),
            mean(&cpu),
            max(&cpu),
            rss,
            max(&full),
        )
    }
}

/// Decimal units, as the figures.
fn bytes(b: f64) -> String {
    if b < 10e3 {
        format!("{b:.0} B")
    } else if b < 10e6 {
        format!("{:.1} KB", b / 1e3)
    } else {
        format!("{:.1} MB", b / 1e6)
    }
}

/// p50 / p99 / max of the delays that came, in ms.
fn visible(delays: &[Option<Duration>]) -> String {
    let mut ms: Vec<f64> = delays
        .iter()
        .flatten()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    if ms.is_empty() {
        return "-".into();
    }
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    format!("{:.0} / {:.0} / {:.0} ms", q(0.5), q(0.99), q(1.0))
}
