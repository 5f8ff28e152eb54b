//! Tidy checks: what review would otherwise repeat, enforced on the source tree.
//!
//! Every source file opens with a `//!` module comment and stays under 600 lines; the
//! dependency rules of docs/ARCHITECTURE.md ("Dependency rules") hold: what each module may
//! not name, and the outside crates only one place may name.

use std::path::{Path, PathBuf};

use crate::support;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The code of a file without comment lines and without its unit tests (the `#[cfg(test)]`
/// module at the bottom), so documentation and test fixtures may name what code must not.
fn code(path: &Path) -> String {
    if path.file_name().is_some_and(|name| name == "tests.rs") {
        return String::new(); // a unit-test module in a file of its own
    }
    let text = std::fs::read_to_string(path).expect("read file");
    let code = without_unit_tests(&text);
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A source file up to its unit-test module (`#[cfg(test)] mod ...`), which sits at the bottom.
fn without_unit_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod ")
        .map_or(text, |at| &text[..at])
}

fn relative(path: &Path) -> String {
    path.strip_prefix(support::repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_source_file_opens_with_a_module_comment() {
    let missing: Vec<String> = rust_files(&support::repo().join("src"))
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.starts_with("//!")
        })
        .map(|path| relative(&path))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header: {missing:?}"
    );
}

/// Which module (a path prefix under `src/`) may not name what, and why: the dependency rules
/// of docs/ARCHITECTURE.md, one line each.
const FORBIDDEN: &[(&str, &[&str], &str)] = &[
    (
        "src/snapshot/",
        &[
            "tokio",
            "reqwest",
            "hickory_server",
            "std::net::UdpSocket",
            "std::fs",
            "crate::source",
            "crate::dns",
            "crate::http",
            "crate::config",
        ],
        "snapshot/ is pure: no I/O, no runtime, nothing downstream of it",
    ),
    (
        "src/zone/",
        &[
            "tokio",
            "reqwest",
            "hickory_server",
            "std::net::UdpSocket",
            "std::fs",
            "crate::",
        ],
        "zone/ is pure and depends on nothing else in the crate",
    ),
    (
        "src/registry/",
        &[
            "hickory_proto",
            "hickory_server",
            "crate::dns",
            "crate::zone",
            "crate::snapshot",
            "crate::source",
            "crate::http",
            "crate::config",
        ],
        "registry/ knows Consul's data, never DNS types or what consumes it",
    ),
    (
        "src/dns/",
        &[
            "crate::source",
            "crate::http",
            "crate::config",
            "crate::registry",
            "crate::persist",
            "crate::reload",
            "reqwest",
        ],
        "dns/ answers from the published snapshot; it never reaches the sources, HTTP or config",
    ),
    (
        "src/source/",
        &[
            "crate::dns",
            "crate::http",
            "crate::config",
            "crate::reload",
            "hickory_server",
        ],
        "source/ produces snapshots; it never names the serving side or the config",
    ),
    (
        "src/metrics.rs",
        &["crate::"],
        "metrics.rs holds the counters the query path bumps and depends on nothing",
    ),
    (
        "src/drain.rs",
        &["crate::"],
        "drain.rs is a leaf every serving part may use",
    ),
    (
        "src/http/",
        &[
            "crate::dns",
            "crate::config",
            "crate::registry::consul",
            "hickory_server",
        ],
        "http/ reads the served-state view only",
    ),
    (
        "src/explain/",
        &[
            "crate::source::consul",
            "crate::config",
            "crate::persist",
            "crate::reload",
            "hickory_server",
            "reqwest",
        ],
        "explain/ reads the serving side and the source status; it writes nothing",
    ),
    (
        "src/persist/",
        &[
            "crate::dns",
            "crate::source",
            "crate::http",
            "crate::config",
            "tokio",
        ],
        "persist/ is blocking file I/O of registry states",
    ),
    (
        "src/tools/",
        &[
            "crate::dns",
            "crate::app",
            "crate::source",
            "crate::reload",
            "hickory_server",
            "UdpSocket",
            "TcpListener",
        ],
        "tools/ load once what serve loads; they never bind, serve or run a sync",
    ),
];

/// Crates and paths only one place may name.
const OWNED: &[(&str, &[&str])] = &[
    ("hickory_server", &["src/dns/"]),
    (
        "reqwest",
        &["src/registry/consul.rs", "src/registry/consul/"],
    ),
    ("clap", &["src/config/", "src/main.rs"]),
    ("toml", &["src/config/"]),
];

#[test]
fn dependency_rules_of_the_architecture_hold() {
    let src = crate::support::repo().join("src");
    let mut broken = Vec::new();
    for path in rust_files(&src) {
        let name = relative(&path);
        let code = code(&path);
        for (prefix, forbidden, why) in FORBIDDEN {
            if !name.starts_with(prefix) {
                continue;
            }
            for word in *forbidden {
                if code.contains(word) {
                    broken.push(format!("{name} names {word}: {why}"));
                }
            }
        }
        for (word, owners) in OWNED {
            let owned = owners.iter().any(|owner| name.starts_with(owner));
            if !owned && names_crate(&code, word) {
                broken.push(format!("{name} names {word} (only {owners:?} may)"));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// True when `code` uses the crate `word` (`word::` or `use word`), not just a word inside a
/// longer name.
fn names_crate(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = &code[at + word.len()..];
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            && (after.starts_with("::") || after.starts_with(';') || after.starts_with(" as"))
    })
}

/// 600 lines of code at most, the unit-test module not counted.
#[test]
fn no_source_file_is_over_600_lines() {
    let long: Vec<String> = rust_files(&crate::support::repo().join("src"))
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            without_unit_tests(&text).lines().count() > 600
        })
        .map(|path| relative(&path))
        .collect();
    assert!(long.is_empty(), "split by responsibility: {long:?}");
}
