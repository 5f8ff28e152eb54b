//! Shared context of every connection: the registry, settings, ACL token, faults and knobs,
//! request log and counters.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;

use crate::registry::Registry;

/// Fixed settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--default-wait`.
    pub default_wait: Duration,
    /// `--max-wait`.
    pub max_wait: Duration,
    /// `--gzip-min-size` (the `gzip_min_size` knob's default).
    pub gzip_min_size: usize,
    /// `--http-max-conns-per-client` (0 = unlimited).
    pub max_conns_per_client: usize,
}

/// Knobs of `PUT /_standin/fault` that persist until changed.
#[derive(Debug, Clone, Serialize)]
pub struct Knobs {
    /// Reads that are not stale get 500 `No cluster leader`.
    pub leaderless: bool,
    /// Added latency per `/v1` request.
    pub slow_ms: u64,
    /// health/service with index>0 answers as the streaming backend.
    pub streaming: bool,
    /// `filter` or `forbid`: what a missing token gets while ACLs are on.
    pub anonymous: String,
    /// Smallest body that is gzipped.
    pub gzip_min_size: usize,
    /// LastContact reported for stale reads.
    pub last_contact_ms: Option<u64>,
}

/// The fault mode of `PUT /_standin/fault`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fault {
    /// `none`, `status`, `hang`, `malformed`, `truncated`, `disconnect`, `index_backwards`.
    pub mode: String,
    /// Mode `status`: the status code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Mode `status`: the plain-text body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Path prefix or list of prefixes; default all of `/v1/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Value>,
    /// Mode `index_backwards`: the index to report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Apply to the next N matching requests only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Modes `PUT /_standin/fault` accepts.
pub const FAULT_MODES: [&str; 7] = [
    "none",
    "status",
    "hang",
    "malformed",
    "truncated",
    "disconnect",
    "index_backwards",
];

/// One logged `/v1` request.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// Sequence number.
    pub id: u64,
    /// Unix time in seconds.
    pub time: f64,
    /// HTTP method.
    pub method: String,
    /// Raw path.
    pub path: String,
    /// Raw query.
    pub query: String,
    /// Headers with lower-case names.
    pub headers: HashMap<String, String>,
    /// Status sent, `None` while unanswered or when hung/dropped.
    pub status: Option<u16>,
}

/// Mutable control state, behind one mutex (never held across an await).
#[derive(Debug)]
pub struct Control {
    /// Required ACL token; empty = ACLs off.
    pub token: String,
    /// Current knobs.
    pub knobs: Knobs,
    /// Current fault.
    pub fault: Fault,
    /// When leaderlessness began (LastContact grows from here).
    pub leaderless_since: Option<Instant>,
    /// Recent `/v1` requests, newest last.
    pub log: VecDeque<LogEntry>,
    /// Last log sequence number.
    pub log_seq: u64,
}

/// Per-IP open connection counts and totals for `/_standin/connections`.
#[derive(Debug, Default)]
pub struct Conns {
    /// Open connections per remote IP.
    pub per_ip: HashMap<IpAddr, usize>,
    /// Open connections in all.
    pub open: usize,
    /// Most open at once since start or reset.
    pub max_open: usize,
    /// Connections refused with 429.
    pub refused: u64,
}

/// Byte and request counters, updated as bodies go out.
#[derive(Debug, Default)]
pub struct Counters {
    /// `/v1` requests since reset (`/_standin/stats`).
    pub requests: AtomicU64,
    /// Body bytes sent for `/v1` requests since reset (`/_standin/stats`).
    pub wire_bytes: AtomicU64,
    /// Requests logged since `DELETE /_standin/requests`.
    pub log_count: AtomicU64,
    /// Body bytes sent for those.
    pub log_bytes: AtomicU64,
}

impl Counters {
    /// Counts `n` body bytes sent for a `/v1` request.
    pub fn sent(&self, n: usize) {
        self.wire_bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.log_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    /// The registry.
    pub reg: Registry,
    /// Command-line settings.
    pub settings: Settings,
    /// ACL, faults, knobs, log.
    pub control: Mutex<Control>,
    /// Fires on every fault change: releases hung requests.
    pub fault_changed: Notify,
    /// Connection bookkeeping.
    pub conns: Mutex<Conns>,
    /// Request and byte counters.
    pub counters: Counters,
}

impl App {
    /// A context around `reg`.
    pub fn new(reg: Registry, settings: Settings, token: String) -> Self {
        let control = Control {
            token,
            knobs: Self::default_knobs(&settings),
            fault: Fault {
                mode: "none".into(),
                ..Fault::default()
            },
            leaderless_since: None,
            log: VecDeque::new(),
            log_seq: 0,
        };
        Self {
            reg,
            settings,
            control: Mutex::new(control),
            fault_changed: Notify::new(),
            conns: Mutex::new(Conns::default()),
            counters: Counters::default(),
        }
    }

    /// Knobs as `DELETE /_standin/fault` leaves them.
    pub fn default_knobs(settings: &Settings) -> Knobs {
        Knobs {
            leaderless: false,
            slow_ms: 0,
            streaming: false,
            anonymous: "filter".into(),
            gzip_min_size: settings.gzip_min_size,
            last_contact_ms: None,
        }
    }

    /// The control state.
    pub fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection table.
    pub fn conns(&self) -> MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `ip`; false (and counted as refused) over the limit.
    pub fn open_conn(&self, ip: IpAddr) -> bool {
        let limit = self.settings.max_conns_per_client;
        let mut c = self.conns();
        let n = c.per_ip.entry(ip).or_default();
        if limit > 0 && *n >= limit {
            c.refused += 1;
            return false;
        }
        *n += 1;
        c.open += 1;
        c.max_open = c.max_open.max(c.open);
        true
    }

    /// Forgets a connection counted by [`App::open_conn`].
    pub fn close_conn(&self, ip: IpAddr) {
        let mut c = self.conns();
        if let Some(n) = c.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&ip);
            }
        }
        c.open = c.open.saturating_sub(1);
    }

    /// The active fault for a `/v1` request to `path` (consuming one of its `count`).
    pub fn fault_for(&self, path: &str) -> Fault {
        let mut ctl = self.control();
        let f = &mut ctl.fault;
        let matches = match &f.paths {
            None | Some(Value::Null) => path.starts_with("/v1/"),
            Some(Value::String(p)) => path.starts_with(p.as_str()),
            Some(Value::Array(ps)) => ps
                .iter()
                .filter_map(Value::as_str)
                .any(|p| path.starts_with(p)),
            Some(_) => false,
        };
        if f.mode == "none" || !matches {
            return Fault {
                mode: "none".into(),
                ..Fault::default()
            };
        }
        let out = f.clone();
        if let Some(n) = f.count.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                *f = Fault {
                    mode: "none".into(),
                    ..Fault::default()
                };
            }
        }
        out
    }
}
