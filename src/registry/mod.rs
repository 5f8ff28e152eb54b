//! Sources of registry state: a JSON file of Consul health entries, or Consul's HTTP API.
//!
//! Only this module knows Consul's JSON. Sources produce a [`RegistryState`]; they never
//! touch the snapshot or DNS.

pub mod consul;
mod entry_serde;
pub mod file;
mod model;
mod nodes;
mod small_map;

pub use model::{truncated, CheckOutput, OUTPUT_LIMIT};
pub use model::{
    CheckScope, CheckStatus, Entries, EntryCheck, HealthCheck, HealthEntry, Node, NodeService,
    RegistryState, ServiceAddress, ServiceChange, Weights,
};
pub use nodes::NodeInterner;
pub use small_map::SmallMap;
