//! snapdns: a DNS server for service discovery.
//!
//! # Layout
//!
//! Data flows one way: a registry source ([`registry`], read by [`file_source`] or the
//! Consul sync) produces a [`registry::RegistryState`]; [`snapshot`] builds an immutable,
//! indexed [`snapshot::Snapshot`] from it (answers prepared by [`zone`]) and publishes it
//! atomically; [`dns`] answers queries from the published snapshot, the static zones
//! ([`static_zones`]) and the forwarder. [`app`] wires it all; [`config`] validates settings.
//! See docs/ARCHITECTURE.md.

pub mod app;
pub mod config;
pub mod dns;
pub mod drain;
pub mod file_source;
pub mod http;
pub mod metrics;
pub mod persist;
pub mod registry;
pub mod reload;
pub mod snapshot;
pub mod static_zones;
pub mod sync;
pub mod zone;
