//! A TCP connection's byte stream: length-prefixed queries answered in order over TCP, each
//! reply checked and framed. See `fuzz/checks.rs`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use snapdns::dns::{Responder, Scratch};

static RESPONDER: LazyLock<Responder> = LazyLock::new(checks::fixture_responder);

fuzz_target!(|data: &[u8]| {
    let mut scratch = Scratch::default();
    checks::check_tcp_stream(&RESPONDER, &mut scratch, data);
});
