//! A stand-in for Consul's read-only HTTP API, for snapdns tests and benchmarks.
//!
//! It mirrors `tests/consul_standin/standin.py` (CLI and control API) but scales to a million
//! instances: per-table and per-service indexes with their own wakeups, and cached rendered
//! bodies per service. Never linked into snapdns.
//!
//! # Layout
//!
//! - [`model`]: Consul's wire types (Node, NodeService, HealthCheck).
//! - [`registry`]: the state store: services, nodes, indexes, mutations, wakeups.
//! - [`render`]: JSON bodies of the read endpoints and their caches.
//! - [`generate`]: the `--generate` synthetic registry.
//! - [`consul`]: the `/v1/` endpoints (parameters, errors, blocking, headers).
//! - [`control`]: the `/_standin/` control API.
//! - [`app`]: shared context: settings, token, faults, log, counters.
//! - [`http`]: accept loop, connection limit, TLS/ALPN, bodies.
//! - [`query`]: Go-compatible query, duration and bool parsing.

pub mod app;
pub mod consul;
pub mod control;
pub mod generate;
pub mod http;
pub mod model;
pub mod query;
pub mod registry;
pub mod render;
