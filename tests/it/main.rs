//! One integration test binary: every module drives the real `snapdns` binary over real
//! sockets on loopback.

mod support;

mod answers;
