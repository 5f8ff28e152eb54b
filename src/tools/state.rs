//! `snapdns state`: every persisted generation in a state directory (serial, when it was
//! saved, its size, whether it is intact and why not), and `--export FILE`: the newest intact
//! one, its journal replayed exactly as start-up restores it, written as a registry file that
//! `serve --registry file:FILE` serves. The escape hatch for bringing up a replica from a
//! copied state directory while Consul is down.
//!
//! Read-only on the state directory: nothing there is created, locked, renamed or removed, so
//! it may run beside a server that is writing it (the server holds no lock; see
//! `persist::inspect`). Exit 2 when the directory cannot be read or holds no intact generation.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::report::{plural, when};
use crate::config::StateArgs;
use crate::persist::inspect::{inspect, Generation};
use crate::persist::{PersistError, Persisted};
use crate::snapshot::{serial_of, HealthFilter};

/// Runs `snapdns state` with `args`: prints the listing on stdout (errors on stderr) and returns
/// the exit code.
pub fn run(args: &StateArgs) -> u8 {
    let dir = args.state_dir();
    let generations = match inspect(&dir) {
        Ok(generations) => generations,
        Err(error) => {
            eprintln!(
                "snapdns: error: cannot read the state directory {}: {error}",
                dir.display()
            );
            return 2;
        }
    };
    let now = SystemTime::now();
    let mut text = format!(
        "state directory {}: {}\n",
        dir.display(),
        plural(generations.len(), "generation")
    );
    for generation in &generations {
        describe(generation, now, &mut text);
    }
    let newest = generations
        .iter()
        .find_map(|g| g.state.as_ref().ok().map(|state| (g.generation, state)));
    let code = match newest {
        None => {
            text.push_str("no intact generation: nothing to serve or export\n");
            2
        }
        Some((generation, state)) => {
            let _ = writeln!(text, "newest intact: generation {generation}");
            match &args.export {
                None => 0,
                Some(file) => match export(&dir, file, state) {
                    Ok(()) => {
                        let _ = writeln!(
                            text,
                            "exported generation {generation} to {}: serve it with \
                             `snapdns serve --registry file:{} --datacenter {}`",
                            file.display(),
                            file.display(),
                            state.datacenter
                        );
                        0
                    }
                    Err(message) => {
                        print(&text);
                        eprintln!("snapdns: error: {message}");
                        return 1;
                    }
                },
            }
        }
    };
    print(&text);
    code
}

/// Writes `text` to stdout; a closed pipe is not worth a panic.
fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Lines about one generation.
fn describe(generation: &Generation, now: SystemTime, text: &mut String) {
    let number = generation.generation;
    match &generation.state {
        Ok(persisted) => {
            let state = &persisted.state;
            let instances: usize = state.services.values().map(|e| e.len()).sum();
            let passing = state
                .services
                .values()
                .flat_map(|entries| entries.iter())
                .filter(|entry| HealthFilter::PassingOnly.serves(entry))
                .count();
            let _ = writeln!(
                text,
                "generation {number}: intact\n  serial {}, registry index {}, datacenter {}\n  \
                 saved {}\n  {}, {}, {passing} passing\n  {}",
                serial_of(state),
                state.index,
                persisted.datacenter,
                when(millis(persisted.saved_at_ms), now),
                plural(state.services.len(), "service"),
                plural(instances, "instance"),
                journal_line(generation),
            );
        }
        Err(error) => {
            let modified = generation
                .modified
                .map_or_else(|| "unknown".to_string(), |m| when(m, now));
            let _ = writeln!(
                text,
                "generation {number}: not usable ({}): {error}\n  file modified {modified}, {}\n  \
                 journal: {}, not replayed (its base is not usable)",
                why(error),
                plural(generation.bytes as usize, "byte"),
                plural(generation.journal_records as usize, "whole record"),
            );
        }
    }
}

/// What replaying an intact base's journal did.
fn journal_line(generation: &Generation) -> String {
    let records = plural(generation.journal_records as usize, "record");
    match &generation.journal_stopped {
        None => format!("journal: {records} replayed"),
        Some(stopped) => format!("journal: {records} replayed, then stopped: {stopped}"),
    }
}

/// Why a base is not usable, in a word or two: torn, bad CRC, unreadable...
fn why(error: &PersistError) -> &'static str {
    match error {
        PersistError::Io { .. } => "unreadable",
        PersistError::NewerFormat { .. } => "newer format",
        PersistError::Corrupt { reason, .. } if reason.starts_with("checksum") => "bad CRC",
        PersistError::Corrupt { reason, .. }
            if reason.starts_with("payload is") || reason.starts_with("no header") =>
        {
            "torn"
        }
        PersistError::Corrupt { reason, .. } if reason.starts_with("invalid payload") => {
            "bad payload"
        }
        _ => "damaged",
    }
}

/// Writes `persisted`'s registry as a registry file at `file`, never inside the state
/// directory (this command does not write there).
fn export(dir: &Path, file: &Path, persisted: &Persisted) -> Result<(), String> {
    let parent = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if same(parent, dir) {
        return Err(format!(
            "{} is inside the state directory; export elsewhere (this command never writes there)",
            file.display()
        ));
    }
    crate::registry::file::save(file, &persisted.state).map_err(|e| e.to_string())
}

fn millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn why_names_the_kind_of_damage() {
        let corrupt = |reason: &str| PersistError::Corrupt {
            path: PathBuf::from("s"),
            reason: reason.into(),
        };
        assert_eq!(why(&corrupt("checksum 1 does not match 2")), "bad CRC");
        assert_eq!(why(&corrupt("payload is 3 bytes, header says 9")), "torn");
        assert_eq!(why(&corrupt("invalid payload: eof")), "bad payload");
        let io = PersistError::Io {
            op: "read",
            path: PathBuf::from("s"),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(why(&io), "unreadable");
    }
}
