//! A master file through the static zone loader and the answers built from it. See
//! `fuzz/checks.rs`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("tempdir"));

fuzz_target!(|data: &[u8]| checks::check_zone_file(DIR.path(), data));
