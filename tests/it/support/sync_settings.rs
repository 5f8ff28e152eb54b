//! The sync knobs tests run with: short enough that faults are seen and recovered from within
//! a few seconds, and snapdns started against a registry URL with them.

use std::sync::Arc;

use super::server::Server;

/// `--sync-interval 2s --blocking-wait 1s --request-timeout 1s` and the given
/// `--self-preservation-window` (how long a mass drop is held before it is let go).
pub fn fast_sync(self_preservation_window: &str) -> [&str; 8] {
    [
        "--sync-interval",
        "2s",
        "--blocking-wait",
        "1s",
        "--request-timeout",
        "1s",
        "--self-preservation-window",
        self_preservation_window,
    ]
}

/// The self-preservation window of the sync tests: short, so a held drop is let go in a test.
pub const SHORT_WINDOW: &str = "3s";

/// snapdns in `dir` syncing from `url` with [`fast_sync`]`(`[`SHORT_WINDOW`]`)`; a flag in
/// `extra` replaces the fast one of the same name.
pub fn start_syncing_in(dir: Arc<tempfile::TempDir>, url: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--registry", url];
    for pair in fast_sync(SHORT_WINDOW).chunks(2) {
        if !extra.contains(&pair[0]) {
            args.extend(pair);
        }
    }
    args.extend(extra);
    Server::start_in(dir, &args)
}

/// [`start_syncing_in`] a fresh temporary directory.
pub fn start_syncing(url: &str, extra: &[&str]) -> Server {
    start_syncing_in(Arc::new(tempfile::tempdir().expect("tempdir")), url, extra)
}
