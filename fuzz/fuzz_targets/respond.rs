//! The whole request path: query bytes in, reply bytes out, against a snapshot with large,
//! odd and aliased services and the example static zone. See `fuzz/checks.rs`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use snapdns::dns::{Responder, Scratch};

static RESPONDER: LazyLock<Responder> = LazyLock::new(checks::fixture_responder);

fuzz_target!(|data: &[u8]| {
    let mut scratch = Scratch::default();
    checks::check_respond(&RESPONDER, &mut scratch, data);
});
