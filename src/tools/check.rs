//! `snapdns check`: what `serve` would run with and load, without serving. The configuration
//! goes through the same `Config::load` (a bad key stops it with the same one-line error, exit
//! 2); the registry file is parsed and built into a snapshot with the configured zone options;
//! Consul is sent one request, and only with `--connect`; the static zones are compiled; the
//! state directory is checked. Nothing is bound and nothing persisted is changed, so it fits a
//! systemd unit's `ExecStartPre` and a CI job.
//!
//! What is an error and what a warning (docs/operations.md): an error is something `serve`
//! would not do as configured (a registry file that does not parse, a zone file that does not
//! load, Consul unreachable or denying the token, a state directory it cannot write); a warning
//! is registry data DNS cannot serve as registered, Consul without a known leader, or a damaged
//! persisted generation. Instances left out for their health are listed but are neither: that
//! is the registry doing its job.

mod registry;

use std::io::Write;
use std::path::Path;

use super::report::{plural, Level, Report};
use crate::config::{CheckArgs, Config, Environment, RegistrySource};
use crate::persist;

/// Runs `snapdns check` with `args`: prints the summary on stdout (a configuration error on
/// stderr, as `serve` does) and returns the exit code.
pub fn run(args: &CheckArgs, env: &Environment) -> u8 {
    let config = match Config::load(&args.serve, env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("snapdns: error: {error}");
            return 2;
        }
    };
    let report = check(&config, args.connect);
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = report.write(&mut stdout).and_then(|()| stdout.flush()) {
        eprintln!("snapdns: error: cannot write the summary: {error}");
        return 2;
    }
    report.exit_code(args.strict)
}

/// Checks everything `serve` would load with `config`; contacts Consul only when `connect`.
pub fn check(config: &Config, connect: bool) -> Report {
    let mut report = Report::default();
    config_section(config, &mut report);
    match &config.registry {
        RegistrySource::File(path) => registry::file(config, path, &mut report),
        RegistrySource::Consul(_) if connect => registry::consul(config, &mut report),
        RegistrySource::Consul(_) => report.section(
            Level::Note,
            format!(
                "registry: consul {}: not contacted (--connect sends one request)",
                config.registry.shown()
            ),
        ),
    }
    zones_section(&config.server.zones_dir, &mut report);
    if let RegistrySource::Consul(_) = config.registry {
        state_section(config, &mut report);
    }
    report
}

/// What the configuration resolved to, in one line.
fn config_section(config: &Config, report: &mut Report) {
    let from = config
        .config_file
        .as_ref()
        .map_or_else(|| "flags only".to_string(), |p| p.display().to_string());
    let listen: Vec<String> = config
        .server
        .listen
        .iter()
        .map(ToString::to_string)
        .collect();
    let forwarding = match config.forward.upstreams.len() {
        0 => "no forwarding".to_string(),
        n => format!("forwarding to {}", plural(n, "upstream")),
    };
    report.section(
        Level::Note,
        format!(
            "config: ok ({from}): listen {}, domain {}, datacenter {}, {forwarding}",
            listen.join(" "),
            config.zone.domain,
            config.zone.datacenter
        ),
    );
}

/// Every `*.zone` file compiled as `serve` compiles it; each broken one is an error naming
/// file and line.
fn zones_section(dir: &Path, report: &mut Report) {
    if !dir.is_dir() {
        report.section(
            Level::Note,
            format!(
                "zones: {}: no such directory; no static zones are served",
                dir.display()
            ),
        );
        return;
    }
    let (zones, errors) = crate::static_zones::load_dir_reporting(dir);
    // Each broken file is an error of its own, on its line below.
    report.section(
        Level::Note,
        format!(
            "zones: {}: {} loaded, {} broken",
            dir.display(),
            plural(zones.len(), "zone"),
            errors.len()
        ),
    );
    for zone in &zones {
        report.detail(
            Level::Note,
            format!(
                "{}: {}, serial {}",
                apex_text(zone.apex_key()),
                plural(zone.name_count(), "name"),
                zone.serial()
            ),
        );
    }
    for error in errors {
        report.detail(Level::Error, error.to_string());
    }
}

/// A wire-format name as text (`example.com.`).
fn apex_text(key: &[u8]) -> String {
    let mut text = String::new();
    let mut at = 0;
    while let Some(&length) = key.get(at) {
        if length == 0 {
            break;
        }
        let label = key.get(at + 1..at + 1 + usize::from(length)).unwrap_or(&[]);
        text.push_str(&String::from_utf8_lossy(label));
        text.push('.');
        at += 1 + usize::from(length);
    }
    if text.is_empty() {
        text.push('.');
    }
    text
}

/// The state directory of a Consul source: writable by us (serve persists there) and what
/// start-up would serve from it before the first sync.
fn state_section(config: &Config, report: &mut Report) {
    let dir = &config.sync.state_dir;
    let shown = dir.display();
    match std::fs::symlink_metadata(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            report.section(
                Level::Note,
                format!("state-dir: {shown}: does not exist yet; serve creates it (0700)"),
            );
            return;
        }
        Err(error) => {
            report.section(Level::Error, format!("state-dir: {shown}: {error}"));
            return;
        }
        Ok(metadata) if !metadata.is_dir() => {
            report.section(Level::Error, format!("state-dir: {shown}: not a directory"));
            return;
        }
        Ok(_) => {}
    }
    if let Err(error) = probe_writable(dir) {
        report.section(
            Level::Error,
            format!("state-dir: {shown}: not writable, serve could not persist: {error}"),
        );
        return;
    }
    // Checksums only, newest first down to the first intact base: quick even for a large
    // state (`snapdns state` decodes them all).
    let checked = match persist::inspect::newest_intact(dir) {
        Ok(checked) => checked,
        Err(error) => {
            report.section(
                Level::Error,
                format!("state-dir: {shown}: cannot list it: {error}"),
            );
            return;
        }
    };
    match checked.iter().find(|(_, result)| result.is_ok()) {
        Some((generation, _)) => report.section(
            Level::Note,
            format!(
                "state-dir: {shown}: writable; start-up serves generation {generation} \
                 (checksum ok) until the first sync"
            ),
        ),
        None => report.section(
            Level::Note,
            format!(
                "state-dir: {shown}: writable; no intact persisted state: registry names get \
                 SERVFAIL until the first sync"
            ),
        ),
    }
    for (_, result) in &checked {
        if let Err(error) = result {
            report.detail(
                Level::Warning,
                format!("{error} (start-up skips it; `snapdns state` lists them)"),
            );
        }
    }
}

/// Creates and removes a file of our own in `dir`: the one sure test that serve can write
/// there (permissions, read-only mounts, ACLs, a full disk).
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".snapdns-check-{}.tmp", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apex_keys_read_as_names() {
        assert_eq!(apex_text(b"\x07example\x03com\x00"), "example.com.");
        assert_eq!(apex_text(b"\x00"), ".");
    }
}
