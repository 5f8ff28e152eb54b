//! One integration test binary: every module drives the real `snapdns` binary over real
//! sockets on loopback.

#![allow(unreachable_pub)] // test helpers are shared between modules of one crate

mod support;

mod registry_fixture;

mod answers;
mod truncation;

mod forward;

mod haproxy;

mod glibc;

mod sync;
mod tidy;

mod operate;

mod replicas;
