//! Tidy checks: what review would otherwise repeat, enforced on the source tree.
//!
//! Every source file opens with a `//!` module comment; the snapshot and zone modules stay free
//! of I/O runtimes and of the server crate; only `dns/` names hickory-server; only
//! `registry/consul.rs` talks HTTP. These are the dependency rules of docs/ARCHITECTURE.md.

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

/// The code of a file without comment lines, so documentation may name what code must not.
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("read file")
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
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

#[test]
fn dependency_rules_of_the_architecture_hold() {
    let src = support::repo().join("src");
    let mut broken = Vec::new();
    for path in rust_files(&src) {
        let name = relative(&path);
        let code = code(&path);
        let in_core = name.starts_with("src/snapshot/") || name.starts_with("src/zone/");
        if in_core {
            for forbidden in [
                "tokio",
                "reqwest",
                "hickory_server",
                "std::net::UdpSocket",
                "std::fs",
            ] {
                if code.contains(forbidden) {
                    broken.push(format!(
                        "{name} names {forbidden} (snapshot/zone do no I/O)"
                    ));
                }
            }
        }
        if code.contains("hickory_server::") && !name.starts_with("src/dns/") {
            broken.push(format!("{name} names hickory_server (only dns/ may)"));
        }
        if code.contains("reqwest") && name != "src/registry/consul.rs" {
            broken.push(format!(
                "{name} names reqwest (only registry/consul.rs may)"
            ));
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}
