//! The "Raft state": services, nodes and the indexes Consul's state store keeps for them.
//!
//! One Raft index counter; table indexes for `services` and `checks`; and one index per service
//! that moves when that service's instances or checks change, or when a node check on a node
//! hosting it changes. Each index has its own [`Notify`], so a change wakes only the blocking
//! queries that watch it. Rendered JSON is cached per service and dropped on change.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::Notify;

use crate::model::{Check, EntryIn, Node, Service, Text};
use crate::render::Cached;

/// A registered node and its node-level checks (`serfHealth`, ...).
#[derive(Debug)]
pub(crate) struct NodeRec {
    pub(crate) node: Node,
    pub(crate) checks: Vec<Check>,
    /// (service key, instances of it on this node): whose index a node check change moves.
    pub(crate) hosts: Vec<(Text, u32)>,
}

/// One service instance: its node (by name), its `NodeService` and its service checks.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub(crate) node: Text,
    pub(crate) service: Service,
    pub(crate) checks: Vec<Check>,
}

/// One service: its instances, sorted by (node, ID) as Consul sorts them, and its index.
#[derive(Debug)]
pub(crate) struct ServiceRec {
    pub(crate) name: Text,
    /// Lower-cased name: the key in [`State::services`] and [`NodeRec::hosts`].
    pub(crate) key: Text,
    pub(crate) instances: Vec<Instance>,
    pub(crate) index: u64,
    pub(crate) notify: Arc<Notify>,
    /// Rendered `health/service` bodies for the default datacenter: `[plain, ?passing]`.
    pub(crate) cache: [Cached; 2],
}

impl ServiceRec {
    fn new(name: Text, index: u64) -> Self {
        Self {
            key: name.to_lowercase().into(),
            name,
            instances: Vec::new(),
            index,
            notify: Arc::new(Notify::new()),
            cache: Default::default(),
        }
    }

    /// Moves this service's index to `index`, drops its cache and wakes its waiters.
    pub(crate) fn bump(&mut self, index: u64) {
        self.index = index;
        self.cache = Default::default();
        self.notify.notify_waiters();
    }

    pub(crate) fn sort(&mut self) {
        self.instances
            .sort_by_cached_key(|i| (i.node.to_lowercase(), i.service.id.to_lowercase()));
    }
}

/// What a blocking query watches.
#[derive(Debug, Clone)]
pub(crate) enum Watch {
    /// `health/service/<name>` (key: lower-cased name).
    Service(String),
    /// `catalog/services`, `catalog/nodes`.
    Services,
    /// `health/state/*`.
    Checks,
}

/// The whole registry, guarded by [`Registry`]'s lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) raft: u64,
    pub(crate) services_index: u64,
    pub(crate) checks_index: u64,
    /// Lower-cased service name -> service.
    pub(crate) services: HashMap<Text, ServiceRec>,
    pub(crate) nodes: HashMap<Text, NodeRec>,
    pub(crate) services_notify: Arc<Notify>,
    pub(crate) checks_notify: Arc<Notify>,
    /// Bumped by an index restore: blocked queries return at once.
    pub(crate) restore_gen: u64,
    /// Rendered `catalog/services` and `catalog/nodes` for the default datacenter.
    pub(crate) catalog_cache: [Cached; 2],
    /// Next node number for instances added by `PUT /_standin/instance`.
    pub(crate) next_node: u64,
    /// Datacenters named by any node so far (besides `--datacenter`).
    pub(crate) dcs: BTreeSet<Text>,
}

/// The registry: state behind a read-write lock. Locks are never held across an `.await`.
#[derive(Debug)]
pub struct Registry {
    state: RwLock<State>,
    /// `--datacenter`.
    pub default_dc: String,
}

/// What a mutation touched, so that the right indexes move.
#[derive(Debug, Default)]
struct Touched {
    services_table: bool,
    checks_table: bool,
    services: Vec<Text>,
}

impl Registry {
    /// An empty registry at Raft index `index`.
    pub fn new(default_dc: String, index: u64) -> Self {
        let state = State {
            raft: index,
            services_index: index,
            checks_index: index,
            services: HashMap::new(),
            nodes: HashMap::new(),
            services_notify: Arc::new(Notify::new()),
            checks_notify: Arc::new(Notify::new()),
            restore_gen: 0,
            catalog_cache: Default::default(),
            next_node: 0,
            dcs: BTreeSet::new(),
        };
        Self {
            state: RwLock::new(state),
            default_dc,
        }
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The current Raft index.
    pub fn index(&self) -> u64 {
        self.read().raft
    }

    /// Replaces the whole registry (every index moves to the new Raft index).
    pub fn replace(&self, services: Vec<(String, Vec<EntryIn>)>) -> u64 {
        let mut guard = self.write();
        let st = &mut *guard;
        st.raft += 1;
        let idx = st.raft;
        let old: Vec<ServiceRec> = st.services.drain().map(|(_, s)| s).collect();
        st.nodes.clear();
        st.dcs.clear();
        for (name, entries) in services {
            insert_entries(st, &name, entries, idx);
        }
        for s in old {
            s.notify.notify_waiters();
        }
        st.services_index = idx;
        st.checks_index = idx;
        wake_all(st, idx);
        idx
    }

    /// Replaces the index counters as a snapshot restore would (they may go backwards).
    pub fn restore_index(&self, index: u64) {
        let mut guard = self.write();
        let st = &mut *guard;
        st.raft = index;
        st.services_index = index;
        st.checks_index = index;
        st.restore_gen += 1;
        wake_all(st, index);
    }

    /// Registers (or replaces) one service with these entries.
    pub fn put_service(&self, name: &str, entries: Vec<EntryIn>) -> u64 {
        let mut guard = self.write();
        let st = &mut *guard;
        st.raft += 1;
        let idx = st.raft;
        let key: Text = name.to_lowercase().into();
        let mut touched = remove_service(st, &key);
        touched
            .services
            .extend(insert_entries(st, name, entries, idx));
        touched.services.push(key);
        touched.services_table = true;
        touched.checks_table = true;
        apply(st, touched, idx);
        idx
    }

    /// Deregisters one service; `None` when it is unknown.
    pub fn delete_service(&self, name: &str) -> Option<u64> {
        let mut guard = self.write();
        let st = &mut *guard;
        let key = name.to_lowercase();
        if !st.services.contains_key(key.as_str()) {
            return None;
        }
        st.raft += 1;
        let idx = st.raft;
        let mut touched = remove_service(st, &key);
        touched.services_table = true;
        touched.checks_table = true;
        apply(st, touched, idx);
        Some(idx)
    }

    /// The entries of one service, in the `--state` format.
    pub fn service_entries(&self, name: &str) -> serde_json::Value {
        let st = self.read();
        let Some(svc) = st.services.get(name.to_lowercase().as_str()) else {
            return serde_json::Value::Array(Vec::new());
        };
        crate::render::entries_value(&st, svc)
    }

    /// Sets the status of check `check_id` on `node` (a node check or any service check there).
    pub fn set_check(
        &self,
        node: &str,
        check_id: &str,
        status: &str,
        output: Option<&str>,
    ) -> Option<u64> {
        let mut guard = self.write();
        let st = &mut *guard;
        let idx = st.raft + 1;
        let status: Text = status.into();
        let output: Option<Text> = output.map(Into::into);
        let set = |c: &mut Check| {
            c.status = status.clone();
            c.modify_index = idx;
            if let Some(o) = &output {
                c.output = o.clone();
            }
        };
        let mut touched = Touched {
            checks_table: true,
            ..Touched::default()
        };
        let rec = st.nodes.get_mut(node)?;
        let hosted: Vec<Text> = rec.hosts.iter().map(|(k, _)| k.clone()).collect();
        if let Some(c) = rec.checks.iter_mut().find(|c| &*c.check_id == check_id) {
            set(c);
            touched.services = hosted;
        } else {
            for key in hosted {
                let Some(svc) = st.services.get_mut(&key) else {
                    continue;
                };
                let mut hit = false;
                for inst in svc.instances.iter_mut().filter(|i| &*i.node == node) {
                    for c in inst.checks.iter_mut().filter(|c| &*c.check_id == check_id) {
                        set(c);
                        hit = true;
                    }
                }
                if hit {
                    touched.services.push(key);
                }
            }
            if touched.services.is_empty() {
                return None;
            }
        }
        st.raft = idx;
        apply(st, touched, idx);
        Some(idx)
    }

    /// Sets the first service check of one instance (by position or ID) to `status`.
    pub fn flip(&self, service: &str, instance: &str, status: &str) -> Result<u64, String> {
        let status: Text = status.into();
        self.mutate_instance(service, instance, false, |inst, idx| {
            let c = inst
                .checks
                .first_mut()
                .ok_or("that instance has no service check")?;
            c.status = status;
            c.modify_index = idx;
            Ok(())
        })
    }

    /// Changes an instance's port and/or address.
    pub fn move_instance(
        &self,
        service: &str,
        instance: &str,
        port: Option<u64>,
        address: Option<&str>,
    ) -> Result<u64, String> {
        self.mutate_instance(service, instance, true, |inst, idx| {
            if let Some(p) = port {
                inst.service.port = p;
            }
            if let Some(a) = address {
                inst.service.address = a.into();
            }
            inst.service.modify_index = idx;
            Ok(())
        })
    }

    fn mutate_instance(
        &self,
        service: &str,
        instance: &str,
        catalog_change: bool,
        f: impl FnOnce(&mut Instance, u64) -> Result<(), &'static str>,
    ) -> Result<u64, String> {
        let mut guard = self.write();
        let st = &mut *guard;
        let idx = st.raft + 1;
        let svc = st
            .services
            .get_mut(service.to_lowercase().as_str())
            .ok_or_else(|| format!("no service {service:?}"))?;
        let pos = match instance.parse::<usize>() {
            Ok(n) if n < svc.instances.len() => n,
            _ => svc
                .instances
                .iter()
                .position(|i| &*i.service.id == instance)
                .ok_or_else(|| format!("no instance {instance:?} of {service:?}"))?,
        };
        f(&mut svc.instances[pos], idx)?;
        let key = svc.key.clone();
        st.raft = idx;
        let touched = Touched {
            services_table: catalog_change,
            checks_table: !catalog_change,
            services: vec![key],
        };
        apply(st, touched, idx);
        Ok(idx)
    }

    /// Adds one generated instance to `service` (on a new node), or removes its last one.
    pub fn add_or_remove_instance(&self, service: &str, remove: bool) -> Result<u64, String> {
        let mut guard = self.write();
        let st = &mut *guard;
        let idx = st.raft + 1;
        let svc = st
            .services
            .get_mut(service.to_lowercase().as_str())
            .ok_or_else(|| format!("no service {service:?}"))?;
        let key = svc.key.clone();
        if remove {
            let inst = svc.instances.pop().ok_or("the service has no instances")?;
            unhost(st, &inst.node, &key);
        } else {
            let checks = svc.instances.last().map_or(1, |i| i.checks.len() + 1);
            let shared = crate::generate::Shared::new(&svc.name, &self.default_dc);
            let number = 10_000_000 + st.next_node;
            let (node, inst) =
                crate::generate::instance(&shared, svc.instances.len(), number, checks, idx);
            svc.instances.push(inst);
            svc.sort();
            st.next_node += 1;
            host(st, node, &key);
        }
        st.raft = idx;
        let touched = Touched {
            services_table: true,
            checks_table: true,
            services: vec![key],
        };
        apply(st, touched, idx);
        Ok(idx)
    }

    /// The index a blocking query on `watch` compares with, and the [`Notify`] that fires when
    /// it moves, taken under one read lock so no change can slip in between.
    pub(crate) fn watch_target(st: &State, watch: &Watch) -> (u64, Arc<Notify>) {
        match watch {
            Watch::Service(key) => match st.services.get(key.as_str()) {
                Some(s) => (s.index, s.notify.clone()),
                None => (st.services_index, st.services_notify.clone()),
            },
            Watch::Services => (st.services_index, st.services_notify.clone()),
            Watch::Checks => (st.checks_index, st.checks_notify.clone()),
        }
    }

    /// Installs a generated registry (see [`crate::generate`]) without per-service bookkeeping.
    pub(crate) fn install(&self, nodes: Vec<NodeRec>, services: Vec<ServiceRec>, next_node: u64) {
        let mut st = self.write();
        st.nodes = nodes
            .into_iter()
            .map(|n| (n.node.node.clone(), n))
            .collect();
        st.services = services.into_iter().map(|s| (s.key.clone(), s)).collect();
        st.next_node = next_node;
        st.dcs = st
            .nodes
            .values()
            .map(|n| n.node.datacenter.clone())
            .filter(|d| !d.is_empty())
            .collect();
        st.catalog_cache = Default::default();
    }

    pub(crate) fn new_service(name: Text, index: u64) -> ServiceRec {
        ServiceRec::new(name, index)
    }
}

/// Moves the indexes a mutation touched to `idx` and wakes exactly their waiters.
fn apply(st: &mut State, touched: Touched, idx: u64) {
    for key in touched.services {
        if let Some(s) = st.services.get_mut(&*key) {
            s.bump(idx);
        }
    }
    if touched.services_table {
        st.services_index = idx;
        st.catalog_cache = Default::default();
        st.services_notify.notify_waiters();
    }
    if touched.checks_table {
        st.checks_index = idx;
        st.checks_notify.notify_waiters();
    }
}

fn wake_all(st: &mut State, idx: u64) {
    for s in st.services.values_mut() {
        s.bump(idx);
    }
    st.catalog_cache = Default::default();
    st.services_notify.notify_waiters();
    st.checks_notify.notify_waiters();
}

/// Removes a service and its instances from their nodes (a node goes with its last instance).
fn remove_service(st: &mut State, key: &str) -> Touched {
    let mut touched = Touched::default();
    if let Some(old) = st.services.remove(key) {
        for inst in &old.instances {
            unhost(st, &inst.node, key);
        }
        old.notify.notify_waiters();
        touched.services_table = true;
    }
    touched
}

fn unhost(st: &mut State, node: &str, key: &str) {
    let Some(rec) = st.nodes.get_mut(node) else {
        return;
    };
    if let Some(pos) = rec.hosts.iter().position(|(k, _)| &**k == key) {
        rec.hosts[pos].1 -= 1;
        if rec.hosts[pos].1 == 0 {
            rec.hosts.swap_remove(pos);
        }
    }
    if rec.hosts.is_empty() {
        st.nodes.remove(node);
    }
}

/// Adds `node` (or refreshes its checks) and counts one instance of `key` on it. Returns
/// the services on the node when its node checks changed.
fn host(st: &mut State, node: NodeRec, key: &Text) -> Vec<Text> {
    if !node.node.datacenter.is_empty() && !st.dcs.contains(&node.node.datacenter) {
        st.dcs.insert(node.node.datacenter.clone());
    }
    let mut others = Vec::new();
    let rec = match st.nodes.entry(node.node.node.clone()) {
        std::collections::hash_map::Entry::Occupied(e) => {
            let rec = e.into_mut();
            if !node.checks.is_empty() && rec.checks != node.checks {
                rec.checks = node.checks;
                others.extend(rec.hosts.iter().map(|(k, _)| k.clone()));
            }
            rec
        }
        std::collections::hash_map::Entry::Vacant(e) => e.insert(node),
    };
    match rec.hosts.iter_mut().find(|(k, _)| k == key) {
        Some((_, n)) => *n += 1,
        None => rec.hosts.push((key.clone(), 1)),
    }
    others
}

/// Adds a service's entries; returns other services whose node checks changed.
fn insert_entries(st: &mut State, name: &str, entries: Vec<EntryIn>, idx: u64) -> Vec<Text> {
    let mut svc = ServiceRec::new(name.into(), idx);
    let key = svc.key.clone();
    let mut others = Vec::new();
    for mut e in entries {
        if e.service.service.is_empty() {
            e.service.service = svc.name.clone();
        }
        let (node_checks, checks): (Vec<_>, Vec<_>) =
            e.checks.into_iter().partition(|c| c.service_id.is_empty());
        let node_name = e.node.node.clone();
        let rec = NodeRec {
            node: e.node,
            checks: node_checks.into_iter().map(|c| c.check).collect(),
            hosts: Vec::new(),
        };
        others.extend(host(st, rec, &key).into_iter().filter(|k| *k != key));
        let checks = checks.into_iter().map(|c| c.check).collect();
        svc.instances.push(Instance {
            node: node_name,
            service: e.service,
            checks,
        });
    }
    svc.sort();
    st.services.insert(key, svc);
    others
}

/// Whether `dc` is `--datacenter` or named by a node.
pub(crate) fn knows_dc(st: &State, default_dc: &str, dc: &str) -> bool {
    dc == default_dc || st.dcs.contains(dc)
}
