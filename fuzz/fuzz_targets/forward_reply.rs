//! An upstream's reply bytes through the forwarder's decoding, TTL capping and client
//! framing. See `fuzz/checks.rs`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::check_forward_reply(data));
