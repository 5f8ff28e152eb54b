//! One integration test binary: every module drives the real `snapdns` binary over real
//! sockets on loopback.

#![allow(unreachable_pub)] // test helpers are shared between modules of one crate

mod support;

mod answers;

mod config;

mod file_registry;

mod forward;

mod static_zones;

mod haproxy;

mod glibc;

mod sync;
mod tidy;

mod logging;
mod metrics;
mod reload;
mod shutdown;

mod replicas;
