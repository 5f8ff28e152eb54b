//! A registry file through the JSON parser, the snapshot builder and the answers built from
//! it. See `fuzz/checks.rs`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::check_registry_json(data));
