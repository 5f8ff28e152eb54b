//! A zone cache through its reader and, when it reads, the answering path. See
//! `fuzz/checks.rs`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::check_zone_cache(data));
