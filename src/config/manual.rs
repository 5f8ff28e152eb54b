//! The manual page and the shell completions, generated from the [`Cli`] definition, so that
//! neither can drift from the flags: `snapdns man` and `snapdns completions SHELL` print them,
//! and the Debian package installs what they printed (docs/package/README.md).
//!
//! One page, `snapdns(1)`, documents every subcommand and all its flags: the serve flags are
//! also the keys of the config file, and an operator reading `man snapdns` should find them
//! without knowing that `snapdns-serve(1)` exists.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;

use super::Cli;

/// Writes `snapdns(1)` in roff: the usual sections of the top-level command, then the options
/// of each subcommand under a heading of its own, then the files the package installs.
pub fn man_page(out: &mut dyn Write) -> std::io::Result<()> {
    let cli = Cli::command();
    let version = cli.get_version().unwrap_or_default().to_string();
    let page = Man::new(cli.clone()).manual("snapdns manual");
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)?;
    // clap_mangen would list the subcommands as pages of their own (snapdns-serve(1)); they are
    // sections of this page instead.
    let subcommands: Vec<&clap::Command> = cli
        .get_subcommands()
        .filter(|subcommand| !subcommand.is_hide_set())
        .collect();
    writeln!(out, ".SH SUBCOMMANDS")?;
    for subcommand in &subcommands {
        let about = subcommand.get_about().map(ToString::to_string);
        writeln!(
            out,
            ".TP\n\\fBsnapdns {}\\fR\n{}",
            subcommand.get_name(),
            escape(&about.unwrap_or_default())
        )?;
    }
    for subcommand in subcommands {
        let heading = format!("snapdns {} options", subcommand.get_name());
        let options = subcommand
            .clone()
            .disable_help_flag(true)
            .mut_args(|arg| arg.help_heading(heading.clone()));
        if options.get_arguments().any(|arg| !arg.is_hide_set()) {
            Man::new(options).render_options_section(out)?;
        }
    }
    write!(out, "{}", files_section(&version))
}

/// Writes the completion script of `shell` for `snapdns`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "snapdns", out);
}

/// One line of roff text: backslashes and hyphens escaped, as clap_mangen escapes its own.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// FILES and SEE ALSO: where the Debian package puts things. Roff, written by hand: clap has no
/// notion of them.
fn files_section(version: &str) -> String {
    format!(
        r#".SH FILES
.TP
\fI/etc/snapdns/snapdns.toml\fR
The configuration file of the packaged service: every key is a \fBsnapdns serve\fR flag without
its dashes, and a flag given on the command line wins over the file.
.TP
\fI/var/lib/snapdns\fR
The state directory (\fB\-\-state\-dir\fR): the persisted registry state a restart serves before
it has reached the registry.
.TP
\fI/usr/lib/systemd/system/snapdns.service\fR
The systemd unit; \fBsystemctl reload snapdns\fR sends SIGHUP, which reloads the configuration
file and the static zones.
.SH SEE ALSO
\fI/usr/share/doc/snapdns/deploy.md\fR (snapdns {version})
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_documents_every_subcommand_and_the_serve_flags() {
        let mut page = Vec::new();
        man_page(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains("\n.TH snapdns 1 "), "{page}");
        assert!(page.contains(".SH \"SNAPDNS SERVE OPTIONS\""), "{page}");
        for flag in ["listen", "state\\-dir", "registry", "no\\-forward"] {
            assert!(page.contains(&format!("\\-\\-{flag}")), "--{flag} missing");
        }
        assert!(page.contains(".SH FILES"));
    }

    #[test]
    fn completions_name_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh] {
            let mut script = Vec::new();
            completions(shell, &mut script);
            let script = String::from_utf8(script).unwrap();
            for word in ["serve", "completions", "man", "--listen"] {
                assert!(script.contains(word), "{shell}: {word} missing");
            }
        }
    }
}
