//! The `--config` file: flat TOML keys named like the flags, read section by section so that
//! every error names its key, and merged under the flags.

use std::collections::BTreeSet;
use std::path::Path;

use clap::Args;
use serde::de::DeserializeOwned;

use super::{ConfigError, ServeArgs};

/// Flags that have no key in the file.
const FLAGS_ONLY: [&str; 3] = ["config", "log", "log-format"];

/// Keys that have no flag: the `[service_ttl]` table (Consul's name; `--service-ttl-for` is
/// the flag form).
const FILE_ONLY: [&str; 1] = [super::service_ttls::TABLE];

/// Reads and checks the file: TOML syntax, no unknown key, every value of its key's type.
pub(super) fn read(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("config", format!("cannot read {}: {e}", path.display())))?;
    let error = |e: toml::de::Error| file_error(path, &text, &e);
    let table: toml::Table = toml::from_str(&text).map_err(error)?;
    let known = keys();
    if let Some(unknown) = table.keys().find(|key| !known.contains(key.as_str())) {
        return Err(ConfigError::new(
            &format!("config {}", path.display()),
            format!("{unknown}: unknown key (keys are the flag names of `snapdns serve`)"),
        ));
    }
    // Each section from the text itself, not the table: toml's errors then carry the position
    // of the offending value, and so its key.
    Ok(ServeArgs {
        config: None,
        server: section(&text).map_err(error)?,
        zone: section(&text).map_err(error)?,
        answer: section(&text).map_err(error)?,
        registry: section(&text).map_err(error)?,
        consul: section(&text).map_err(error)?,
        sync: section(&text).map_err(error)?,
        forward: section(&text).map_err(error)?,
        transfer: section(&text).map_err(error)?,
        log: Default::default(),
    })
}

/// Flags win over the file: every flag that was given replaces the file's value. A flag that
/// was not given is absent from its serialisation (no value, an empty list, a false switch).
pub(super) fn merge(flags: &ServeArgs, file: &ServeArgs) -> Result<ServeArgs, ConfigError> {
    let table = |args: &ServeArgs| {
        toml::Table::try_from(args).map_err(|e| ConfigError::new("config", e.to_string()))
    };
    let mut merged = table(file)?;
    merged.extend(table(flags)?);
    let mut args: ServeArgs = merged
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::new("config", e.message().replace('\n', " ")))?;
    args.config.clone_from(&flags.config);
    args.log = flags.log.clone();
    Ok(args)
}

/// Every key the file may hold: the long names of the `serve` flags, less the flags-only ones.
fn keys() -> BTreeSet<String> {
    ServeArgs::augment_args(clap::Command::new("serve"))
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| !FLAGS_ONLY.contains(long))
        .chain(FILE_ONLY)
        .map(str::to_string)
        .collect()
}

fn section<T: DeserializeOwned>(text: &str) -> Result<T, toml::de::Error> {
    toml::from_str(text)
}

/// One line: the file, the key on the line where toml found the problem (`table.key` inside a
/// table such as `[service_ttl]`), and toml's message.
fn file_error(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().replace('\n', " ");
    let key = error
        .span()
        .and_then(|span| {
            let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
            let line = text[line_start..].lines().next()?;
            let key = line.split('=').next()?.trim();
            if key.is_empty() || key.starts_with('[') {
                return None;
            }
            let key = key.trim_matches('"');
            let table = text[..line_start]
                .lines()
                .rev()
                .find_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'));
            Some(match table {
                Some(table) => format!("{}.{key}", table.trim()),
                None => key.to_string(),
            })
        })
        .unwrap_or_default();
    ConfigError::new(
        &format!("config {}", path.display()),
        if key.is_empty() {
            message
        } else {
            format!("{key}: {message}")
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Result<ServeArgs, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapdns.toml");
        std::fs::write(&path, text).unwrap();
        read(&path)
    }

    #[test]
    fn every_flag_but_the_flags_only_ones_is_a_key() {
        let keys = keys();
        for key in [
            "listen",
            "max-udp-size",
            "registry",
            "cache-size",
            "no-shuffle",
        ] {
            assert!(keys.contains(key), "{key}");
        }
        for key in FLAGS_ONLY {
            assert!(!keys.contains(key), "{key}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let error = read_text("listen = [\"127.0.0.1:0\"]\nservice-tll = \"5s\"\n").unwrap_err();
        assert!(
            error.message.starts_with("service-tll: unknown key"),
            "{error}"
        );
        let error = read_text("cache-size = 10\nmax-udp-size = \"big\"\n").unwrap_err();
        assert!(error.message.starts_with("max-udp-size: "), "{error}");
        let error = read_text("log = \"debug\"\n").unwrap_err();
        assert!(error.message.starts_with("log: unknown key"), "{error}");
        let error = read_text("node-ttl = \"1s\"\n[service_ttl]\n\"web*\" = 10\n").unwrap_err();
        assert!(error.message.starts_with("service_ttl.web*: "), "{error}");
    }

    #[test]
    fn flags_win_and_the_rest_comes_from_the_file() {
        let file = read_text(
            "node-ttl = \"3s\"\nservice-ttl = \"20s\"\nno-shuffle = true\nupstream = [\"10.0.0.1\"]\n",
        )
        .unwrap();
        let mut flags = ServeArgs::default();
        flags.zone.node_ttl = Some("9s".into());
        let merged = merge(&flags, &file).unwrap();
        assert_eq!(merged.zone.node_ttl.as_deref(), Some("9s"));
        assert_eq!(merged.zone.service_ttl.as_deref(), Some("20s"));
        assert!(merged.answer.no_shuffle);
        assert_eq!(merged.forward.upstream, ["10.0.0.1"]);
    }

    #[test]
    fn the_service_ttl_table_is_read_and_kept_under_flags() {
        let file =
            read_text("serve-warning = true\n[service_ttl]\nweb = \"5s\"\n\"db*\" = \"1m\"\n")
                .unwrap();
        let mut flags = ServeArgs::default();
        flags.zone.service_ttl_for = vec!["web=7s".into()];
        let merged = merge(&flags, &file).unwrap();
        assert!(merged.zone.serve_warning);
        assert_eq!(merged.zone.service_ttl_for, ["web=7s"]);
        assert_eq!(merged.zone.service_ttl_table.len(), 2);
        assert_eq!(merged.zone.service_ttl_table["db*"], "1m");
    }

    /// The package's /etc/snapdns/snapdns.toml validates as shipped, and every setting it shows
    /// commented out is a real key with a value of its type.
    #[test]
    fn the_packaged_config_file_is_valid_with_and_without_its_comments() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/package/snapdns.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let env = super::super::Environment::default();
        let shipped = read(Path::new(path)).unwrap();
        let config = super::super::Config::from_args(&shipped, &env).unwrap();
        assert_eq!(config.sync.state_dir, Path::new("/var/lib/snapdns"));
        assert_eq!(config.server.listen[0].port(), 53);

        let mut uncommented = String::new();
        for line in text.lines() {
            let setting = line.strip_prefix("# ").filter(|rest| {
                rest.split_once(" = ")
                    .is_some_and(|(key, _)| keys().contains(key))
            });
            uncommented.push_str(setting.unwrap_or(line));
            uncommented.push('\n');
        }
        let shown =
            uncommented.lines().count() - text.lines().filter(|l| !l.starts_with('#')).count();
        assert!(shown > 40, "only {shown} commented settings recognised");
        // Keys and value types only: validation would read the token and certificate files.
        read_text(&uncommented).unwrap();
    }
}
