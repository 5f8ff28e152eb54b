//! The requests of a sync: everything at once (a full resync, run as its own task so changes
//! keep flowing meanwhile), or the few services that changed; and how a full resync's answers
//! merge with what change syncs fetched while it ran.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use imbl::OrdMap;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::retry::{with_retries, Cost};
use crate::registry::consul::{ConsulClient, ConsulError, Fetched, ServiceList};
use crate::registry::{HealthCheck, HealthEntry, RegistryState};

/// Every answer of a full resync.
pub(super) struct FullAnswer {
    /// The non-passing checks (`/v1/health/state/critical` and `/warning`): the baseline of
    /// the checks watch (cluster mode only).
    pub(super) checks: Option<Fetched<Vec<HealthCheck>>>,
    /// `/v1/catalog/services`: the baseline of the catalog watch.
    pub(super) catalog: Fetched<ServiceList>,
    /// `/v1/health/service/<name>` for every service in the catalog.
    pub(super) services: BTreeMap<String, Fetched<Vec<HealthEntry>>>,
}

/// A full resync's state merged with the current one, and the watches' new baselines.
pub(super) struct Merged {
    /// The new state.
    pub(super) truth: RegistryState,
    /// The registry's index went backwards since the current state (snapshot restore, or a
    /// lagging server): the new state replaces the current one whole.
    pub(super) backwards: bool,
    /// The baseline of the checks watch (cluster mode only).
    pub(super) checks: Option<Fetched<Vec<HealthCheck>>>,
    /// The baseline of the catalog watch.
    pub(super) catalog: Fetched<ServiceList>,
    /// Services fetched.
    pub(super) fetched: usize,
}

impl FullAnswer {
    /// The state this resync found; once `synced`, merged with `current`: the services in
    /// `changed_meanwhile` were fetched by change syncs while it ran, and are at least as new.
    pub(super) fn merge(
        self,
        current: &RegistryState,
        synced: bool,
        changed_meanwhile: BTreeSet<String>,
    ) -> Merged {
        let Self {
            checks,
            catalog,
            services,
        } = self;
        let mut truth = RegistryState {
            index: checks.as_ref().map_or(0, |c| c.index).max(catalog.index),
            services: OrdMap::new(),
        };
        let fetched = services.len();
        for (name, answer) in services {
            truth.index = truth.index.max(answer.index);
            if answer.value.is_empty() {
                continue;
            }
            // Unchanged services keep the entries the current state holds: a resync then
            // costs no second copy of the registry, and the rebuild skips them.
            let entries = match current.services.get(&name) {
                Some(known) if **known == answer.value => known.clone(),
                _ => Arc::new(answer.value),
            };
            truth.services.insert(name, entries);
        }
        let backwards = synced && truth.index < current.index;
        if !backwards {
            for name in changed_meanwhile {
                match current.services.get(&name) {
                    Some(entries) => truth.services.insert(name, entries.clone()),
                    None => truth.services.remove(&name),
                };
            }
            truth.index = truth.index.max(current.index);
        }
        Merged {
            truth,
            backwards,
            checks,
            catalog,
            fetched,
        }
    }
}

/// The outcome of a full resync and what it cost.
pub(super) type FullResult = (Result<FullAnswer, ConsulError>, Cost);

/// A full resync in progress.
pub(super) struct RunningFull {
    pub(super) started: Instant,
    handle: JoinHandle<FullResult>,
}

impl RunningFull {
    /// Starts a full resync with at most `concurrency` requests in flight; `with_checks`
    /// reads the non-passing checks too.
    pub(super) fn start(client: ConsulClient, concurrency: usize, with_checks: bool) -> Self {
        Self {
            started: Instant::now(),
            handle: tokio::spawn(fetch_all(client, concurrency, with_checks)),
        }
    }

    /// Stops it (at shutdown).
    pub(super) fn abort(&self) {
        self.handle.abort();
    }
}

/// Waits for the running full resync, or forever when none runs; takes it when done.
pub(super) async fn join_full(running: &mut Option<RunningFull>) -> (Instant, FullResult) {
    let Some(full) = running.as_mut() else {
        return std::future::pending().await;
    };
    let started = full.started;
    let result = (&mut full.handle).await.unwrap_or_else(|e| {
        let error = ConsulError::BadResponse {
            path: "full sync".into(),
            message: format!("task failed: {e}"),
        };
        (Err(error), Cost::default())
    });
    *running = None;
    (started, result)
}

/// The non-passing checks first, then the catalog, then every service: the baselines the watches diff
/// against are never newer than the service data.
async fn fetch_all(client: ConsulClient, concurrency: usize, with_checks: bool) -> FullResult {
    let mut cost = Cost::default();
    let result = async {
        let checks = if with_checks {
            Some(with_retries(|| client.non_passing(None), &mut cost).await?)
        } else {
            None
        };
        let catalog = with_retries(|| client.services(None), &mut cost).await?;
        catalog.ensure_readable()?;
        let names = catalog.value.keys().cloned().collect();
        let services = fetch_services(&client, concurrency, names, &mut cost).await?;
        Ok(FullAnswer {
            checks,
            catalog,
            services,
        })
    }
    .await;
    (result, cost)
}

/// `/v1/health/service/<name>` for each name, `concurrency` at a time; the first error wins.
pub(super) async fn fetch_services(
    client: &ConsulClient,
    concurrency: usize,
    names: Vec<String>,
    cost: &mut Cost,
) -> Result<BTreeMap<String, Fetched<Vec<HealthEntry>>>, ConsulError> {
    let mut names = names.into_iter();
    let mut running = JoinSet::new();
    let mut out = BTreeMap::new();
    loop {
        while running.len() < concurrency.max(1) {
            let Some(name) = names.next() else { break };
            let client = client.clone();
            running.spawn(async move {
                let mut cost = Cost::default();
                let result = with_retries(|| client.service(&name, None), &mut cost).await;
                (name, result, cost)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (name, result, spent) = joined.map_err(|e| ConsulError::BadResponse {
            path: "/v1/health/service".into(),
            message: format!("fetch task failed: {e}"),
        })?;
        cost.add(spent);
        out.insert(name, result?);
    }
    Ok(out)
}
