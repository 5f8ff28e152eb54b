//! A persisted-state file through the decoder and the snapshot builder. See `fuzz/checks.rs`.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().expect("tempdir"));

fuzz_target!(|data: &[u8]| checks::check_state_file(DIR.path(), data));
