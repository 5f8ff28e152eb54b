//! Sources of registry state: a JSON file of Consul health entries, or Consul's HTTP API.
//!
//! Only this module knows Consul's JSON. Sources produce a [`RegistryState`]; they never
//! touch the snapshot or DNS.

pub mod consul;
pub mod file;
mod model;
mod small_map;

pub use model::{
    Entries, HealthCheck, HealthEntry, Node, NodeService, RegistryState, ServiceAddress, Weights,
};
pub use small_map::SmallMap;
