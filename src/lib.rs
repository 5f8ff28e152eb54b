//! snapdns: a DNS server for service discovery.
//!
//! # Layout
//!
//! Data flows one way: a registry [`source`] (the registry file, or Consul's API followed by the
//! sync engine; both read through [`registry`]) produces a [`registry::RegistryState`];
//! [`snapshot`] builds an immutable, indexed [`snapshot::Snapshot`] from it (answers prepared by
//! [`zone`]) and publishes it atomically; [`dns`] answers queries from the published snapshot,
//! the static zones ([`static_zones`]) and the forwarder; [`http`] reports the served state,
//! and [`explain`] tells why a name is answered as it is.
//! [`app`] wires it all; [`config`] validates settings; [`tools`] are the operator commands
//! (`check`, `state`) that run instead of the server.
//! See docs/ARCHITECTURE.md.

pub mod app;
pub mod config;
pub mod dns;
pub mod drain;
pub mod explain;
pub mod http;
pub mod metrics;
pub mod persist;
pub mod registry;
pub mod reload;
pub mod snapshot;
pub mod source;
pub mod static_zones;
pub mod tools;
pub mod zone;
