//! `registry-load`: the registry-load benchmark driver of issue 11.
//!
//! Given a running consul-standin (`--generate S,I,C`) and snapdns replicas that follow it, it
//! runs the scenarios (first sync, idle, single changes, bursts, sustained churn) and prints a
//! markdown table row per scenario: registry requests and bytes per replica (deltas of
//! `/health` totals), the stand-in's own counters, the delay until every replica's DNS answer
//! shows the change (polled every 20 ms), and snapdns CPU and RSS. Progress goes to stderr.

mod dns;
mod net;
mod procstat;
mod report;
mod scenarios;
mod track;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "registry-load",
    about = "Registry-load benchmark driver (issue 11)"
)]
pub(crate) struct Cli {
    /// The stand-in's URL (http:// or https://; over HTTPS control calls go through `curl -sk`).
    #[arg(long)]
    pub(crate) standin: String,
    /// One replica as DNS_ADDR,HTTP_ADDR,PID; repeatable.
    #[arg(long = "replica", value_parser = parse_replica, required = true)]
    pub(crate) replicas: Vec<Replica>,
    /// The stand-in's `--generate` SERVICES,INSTANCES (the checks count is not needed).
    #[arg(long)]
    pub(crate) generate: String,
    /// When the replicas were started, in ms since the epoch (for the first-sync time).
    #[arg(long)]
    pub(crate) started_ms: u64,
    /// Idle period in seconds (reported per minute).
    #[arg(long, default_value_t = 60)]
    pub(crate) idle: u64,
    /// Length of the 10 flips/s churn in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) churn: u64,
    /// Single check flips (alternating critical/passing).
    #[arg(long, default_value_t = 20)]
    pub(crate) flips: usize,
    /// Repetitions of each other single change (instance, service, move, deregistration).
    #[arg(long, default_value_t = 10)]
    pub(crate) repeat: usize,
    /// A change not visible on a replica after this many seconds counts as never visible.
    #[arg(long, default_value_t = 30)]
    pub(crate) visible_timeout: u64,
    /// Bound on the first sync in seconds.
    #[arg(long, default_value_t = 600)]
    pub(crate) sync_timeout: u64,
    /// Label printed before the table (configuration).
    #[arg(long, default_value = "")]
    pub(crate) label: String,
}

/// One snapdns replica.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replica {
    pub(crate) dns: SocketAddr,
    pub(crate) http: SocketAddr,
    pub(crate) pid: u32,
}

fn parse_replica(s: &str) -> Result<Replica, String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [dns, http, pid] = parts[..] else {
        return Err("expected DNS_ADDR,HTTP_ADDR,PID".into());
    };
    Ok(Replica {
        dns: dns.parse().map_err(|e| format!("{dns}: {e}"))?,
        http: http.parse().map_err(|e| format!("{http}: {e}"))?,
        pid: pid.parse().map_err(|e| format!("{pid}: {e}"))?,
    })
}

fn main() {
    let cli = Cli::parse();
    let dns: Vec<SocketAddr> = cli.replicas.iter().map(|r| r.dns).collect();
    let trackers = track::Trackers::start(&dns, Duration::from_secs(cli.visible_timeout))
        .expect("UDP sockets for the DNS probes");
    let code = match scenarios::run(&cli, &trackers) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("registry-load: {e}");
            1
        }
    };
    trackers.stop();
    std::process::exit(code);
}
