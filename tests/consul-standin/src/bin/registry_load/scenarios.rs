//! The scenarios, in order: first sync, idle, single changes, a burst, sustained churn.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::RecordType;
use rand::Rng;
use serde_json::Value;

use crate::dns::{Cond, Probe};
use crate::net;
use crate::report::{self, Row, Sample};
use crate::track::{Change, Trackers};
use crate::Cli;

/// Time given to the replicas after the last change is visible, before the counters are read:
/// the re-armed watches' requests are counted when they come back, not when they leave.
const SETTLE: Duration = Duration::from_secs(1);

/// One change to the stand-in's registry.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Toggles the first service check of instance `j` of service `s`.
    Flip(usize, usize),
    /// Adds one instance to service `s`.
    AddInstance(usize),
    /// Removes the last instance of service `s`.
    RemoveInstance(usize),
    /// Moves instance 0 of service `s` to a port.
    Move(usize, u16),
    /// Registers service `new-K` with the instances of `svc-0`.
    NewService(usize),
}

struct Ctx<'a> {
    cli: &'a Cli,
    trackers: &'a Trackers,
    services: usize,
    instances: usize,
    next_id: usize,
    /// Instances whose check is critical now.
    critical: HashSet<(usize, usize)>,
    /// When each service was last flipped: a service is not flipped again while an earlier
    /// flip may still be unseen, or the second could hide the first.
    flipped: HashMap<usize, Instant>,
    /// Services for structural changes are taken from the top, downwards.
    next_structural: usize,
    /// Replica 0, for the answer before an instance is added or removed.
    probe: Probe,
    template: String,
}

/// Runs every scenario and prints the table to stdout.
pub(crate) fn run(cli: &Cli, trackers: &Trackers) -> Result<(), String> {
    let sizes: Vec<usize> = cli
        .generate
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .map_err(|e| format!("--generate: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let (services, instances) = match sizes[..] {
        [s, i, ..] if s >= 50 && i >= 2 => (s, i),
        _ => return Err("--generate needs SERVICES (>= 50),INSTANCES (>= 2)".into()),
    };
    let probe = Probe::new(cli.replicas[0].dns).map_err(|e| e.to_string())?;
    let mut ctx = Ctx {
        cli,
        trackers,
        services,
        instances,
        next_id: 0,
        critical: HashSet::new(),
        flipped: HashMap::new(),
        next_structural: services - 2,
        probe,
        template: String::new(),
    };
    println!("{}\n", cli.label);
    println!("{}", report::HEADER);
    first_sync(&mut ctx)?;
    let (_, mode) = net::health(cli.replicas[0].http)?;
    eprintln!("watch mode: {mode}");
    let minutes = cli.idle.div_ceil(60);
    for m in 0..minutes {
        let secs = (cli.idle - m * 60).min(60);
        let name = format!("idle, minute {} ({secs} s)", m + 1);
        measure(&mut ctx, &name, 0, |_| {
            std::thread::sleep(Duration::from_secs(secs));
            Ok(Vec::new())
        })?;
    }
    // The new-service template: svc-0's entries, read before any counter is sampled.
    let svc0 = name(services, 0);
    ctx.template = net::request(
        "GET",
        &format!("{}/v1/health/service/{svc0}", cli.standin),
        None,
    )?
    .1;
    let flips = cli.flips;
    measure(&mut ctx, "check flip (alternating)", flips, |ctx| {
        let mut delays = Vec::new();
        while delays.len() < flips {
            let (s, j) = ctx.pick_flip();
            delays.extend(ctx.one(Op::Flip(s, j))?);
            if delays.len() < flips {
                delays.extend(ctx.one(Op::Flip(s, j))?);
            }
        }
        Ok(delays)
    })?;
    let n = cli.repeat;
    type Make = fn(&mut Ctx<'_>, usize) -> Op;
    let singles: [(&str, Make); 4] = [
        ("new instance", |c, _| Op::AddInstance(c.structural())),
        ("new service", |_, k| Op::NewService(k)),
        ("port change (move)", |c, k| {
            Op::Move(c.structural(), 20000 + k as u16)
        }),
        ("deregistration", |c, _| Op::RemoveInstance(c.structural())),
    ];
    for (label, make) in singles {
        measure(&mut ctx, label, n, |ctx| {
            let mut delays = Vec::new();
            for k in 0..n {
                let op = make(ctx, k);
                delays.extend(ctx.one(op)?);
            }
            Ok(delays)
        })?;
    }
    measure(&mut ctx, "100 flips in 10 s", 100, |ctx| ctx.paced(100))?;
    let churn = (cli.churn * 10) as usize;
    let label = format!("10 flips/s for {} s", cli.churn);
    measure(&mut ctx, &label, churn, |ctx| ctx.paced(churn))
}

/// `svc-NNNNN` as generate.rs names service `s`.
fn name(services: usize, s: usize) -> String {
    let width = services.saturating_sub(1).to_string().len().max(5);
    format!("svc-{s:0width$}")
}

/// Samples the counters around `body` and prints the row.
fn measure(
    ctx: &mut Ctx<'_>,
    label: &str,
    changes: usize,
    body: impl FnOnce(&mut Ctx<'_>) -> Result<Vec<Option<Duration>>, String>,
) -> Result<(), String> {
    eprintln!("scenario: {label}");
    let (standin, replicas) = (&ctx.cli.standin, &ctx.cli.replicas);
    report::max_connections(standin)?;
    let before = report::sample(standin, replicas)?;
    let delays = body(ctx)?;
    std::thread::sleep(SETTLE);
    let after = report::sample(standin, replicas)?;
    emit(ctx, label, changes, &before, &after, &delays)
}

fn emit(
    ctx: &Ctx<'_>,
    label: &str,
    changes: usize,
    before: &Sample,
    after: &Sample,
    delays: &[Option<Duration>],
) -> Result<(), String> {
    let row = Row {
        name: label,
        changes,
        before,
        after,
        delays,
        max_conns: report::max_connections(&ctx.cli.standin)?,
        pids: ctx.cli.replicas.iter().map(|r| r.pid).collect(),
    };
    println!("{}", row.render());
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Until every replica serves the whole registry: its snapshot index reaches the stand-in's
/// and the last service answers. The delays are per replica, from its start.
fn first_sync(ctx: &mut Ctx<'_>) -> Result<(), String> {
    eprintln!("scenario: first sync");
    let cli = ctx.cli;
    let since_start = SystemTime::now()
        .duration_since(UNIX_EPOCH + Duration::from_millis(cli.started_ms))
        .unwrap_or_default();
    let t0 = Instant::now() - since_start;
    let index_url = format!("{}/_standin/index", cli.standin);
    let target = net::json("GET", &index_url, None)?
        .get("index")
        .and_then(Value::as_u64)
        .ok_or("no stand-in index")?;
    let last = format!("{}.service.consul", name(ctx.services, ctx.services - 1));
    let mut probes = cli
        .replicas
        .iter()
        .map(|r| Probe::new(r.dns))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut done: Vec<Option<Duration>> = vec![None; probes.len()];
    let deadline = t0 + Duration::from_secs(cli.sync_timeout);
    while done.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, slot) in done.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let synced = net::health(cli.replicas[i].http).is_ok_and(|(t, _)| t.index >= target);
            if synced && probes[i].holds(&last, Cond::Resolves) {
                *slot = Some(t0.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = report::sample(&cli.standin, &cli.replicas)?;
    let zero = report::zero(cli.replicas.len(), t0);
    emit(ctx, "first sync", 1, &zero, &after, &done)?;
    if done.iter().any(Option::is_none) {
        return Err(format!("first sync not done within {} s", cli.sync_timeout));
    }
    Ok(())
}

impl Ctx<'_> {
    fn structural(&mut self) -> usize {
        self.next_structural -= 1;
        self.next_structural
    }

    /// A random instance of a service that no structural change touches and that was not
    /// flipped within the visibility timeout.
    fn pick_flip(&mut self) -> (usize, usize) {
        let pool = self.services - 4 * self.cli.repeat - 2;
        let quiet = Duration::from_secs(self.cli.visible_timeout + 1);
        let mut rng = rand::rng();
        for _ in 0..10_000 {
            let s = rng.random_range(0..pool);
            if self.flipped.get(&s).is_none_or(|t| t.elapsed() > quiet) {
                return (s, rng.random_range(0..self.instances));
            }
        }
        (rng.random_range(0..pool), 0)
    }

    /// The address of instance `j` of service `s` (its node's, as generate.rs assigns it).
    fn address(&self, s: usize, j: usize) -> Ipv4Addr {
        let nodes = (self.services * self.instances / 4)
            .max(self.instances)
            .max(1);
        let n = ((s * self.instances + j) % nodes + 1) as u32;
        Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8)
    }

    fn count(&mut self, dns: &str) -> Result<usize, String> {
        self.probe
            .ask(dns, RecordType::A)
            .map(|a| a.addrs.len())
            .ok_or_else(|| format!("{dns}: no answer from replica 0"))
    }

    /// Sends `op` to the stand-in and hands it to the trackers; returns its change id.
    fn send(&mut self, op: Op) -> Result<usize, String> {
        let base = &self.cli.standin;
        let (dns_name, cond, url, body) = match op {
            Op::Flip(s, j) => {
                let svc = name(self.services, s);
                let critical = self.critical.insert((s, j));
                if !critical {
                    self.critical.remove(&(s, j));
                }
                self.flipped.insert(s, Instant::now());
                let ip = self.address(s, j);
                let (status, cond) = if critical {
                    ("critical", Cond::Lacks(ip))
                } else {
                    ("passing", Cond::Has(ip))
                };
                let url = format!(
                    "{base}/_standin/flip?service={svc}&instance={svc}-{j}&status={status}"
                );
                (svc, cond, url, None)
            }
            Op::AddInstance(s) | Op::RemoveInstance(s) => {
                let svc = name(self.services, s);
                let before = self.count(&format!("{svc}.service.consul"))?;
                let (cond, remove) = match op {
                    Op::AddInstance(_) => (Cond::Count(before + 1), ""),
                    _ => (Cond::Count(before - 1), "&remove=1"),
                };
                (
                    svc.clone(),
                    cond,
                    format!("{base}/_standin/instance?service={svc}{remove}"),
                    None,
                )
            }
            Op::Move(s, port) => {
                let svc = name(self.services, s);
                let url =
                    format!("{base}/_standin/move?service={svc}&instance={svc}-0&port={port}");
                (svc, Cond::Port(port), url, None)
            }
            Op::NewService(k) => {
                let new = format!("new-{k:05}");
                let body = self.template.replace(&name(self.services, 0), &new);
                let url = format!("{base}/_standin/service/{new}");
                (new, Cond::Resolves, url, Some(body))
            }
        };
        let change = Change {
            id: self.next_id,
            name: format!("{dns_name}.service.consul"),
            cond,
            start: Instant::now(),
        };
        net::json("PUT", &url, body.as_deref())?;
        self.trackers.watch(&change);
        self.next_id += 1;
        Ok(change.id)
    }

    /// One change, waited for on every replica.
    fn one(&mut self, op: Op) -> Result<Vec<Option<Duration>>, String> {
        let id = self.send(op)?;
        Ok(self.trackers.collect(1, id))
    }

    /// `n` flips of random instances, one every 100 ms, then waits for all of them.
    fn paced(&mut self, n: usize) -> Result<Vec<Option<Duration>>, String> {
        let t0 = Instant::now();
        let first = self.next_id;
        for k in 0..n {
            let due = t0 + Duration::from_millis(100 * k as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (s, j) = self.pick_flip();
            self.send(Op::Flip(s, j))?;
        }
        let late = t0.elapsed().as_secs_f64() - n as f64 * 0.1;
        if late > 0.5 {
            eprintln!("note: the driver fell {late:.1} s behind the 10/s pace");
        }
        Ok(self.trackers.collect(n, first))
    }
}
