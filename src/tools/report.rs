//! The summary a tool prints: lines under section headings, each a note, a warning or an
//! error, counted for the exit code.

use std::io::Write;
use std::time::{Duration, SystemTime};

/// How much a line matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// What was found; nothing to do.
    Note,
    /// Works, but deserves a look (exit 1 under `--strict`).
    Warning,
    /// `serve` would not do what it is configured to (exit 2).
    Error,
}

/// Lines of a summary, in order.
#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<(Level, bool, String)>,
}

impl Report {
    /// A section heading with what it found.
    pub fn section(&mut self, level: Level, text: impl Into<String>) {
        self.lines.push((level, false, text.into()));
    }

    /// A detail line under the last section.
    pub fn detail(&mut self, level: Level, text: impl Into<String>) {
        self.lines.push((level, true, text.into()));
    }

    /// Lines of `level`.
    pub fn count(&self, level: Level) -> usize {
        self.lines.iter().filter(|(l, ..)| *l == level).count()
    }

    /// 2 with errors, 1 with warnings when `strict`, else 0.
    pub fn exit_code(&self, strict: bool) -> u8 {
        if self.count(Level::Error) > 0 {
            2
        } else if strict && self.count(Level::Warning) > 0 {
            1
        } else {
            0
        }
    }

    /// Writes every line (warnings and errors say so) and a last `result:` line.
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for (level, indented, text) in &self.lines {
            let indent = if *indented { "  " } else { "" };
            let tag = match level {
                Level::Note => "",
                Level::Warning => "warning: ",
                Level::Error => "error: ",
            };
            match text
                .split_once(": ")
                .filter(|_| !indented && !tag.is_empty())
            {
                // "section: warning: what", so a section heading still starts the line.
                Some((section, rest)) => writeln!(out, "{section}: {tag}{rest}")?,
                None => writeln!(out, "{indent}{tag}{text}")?,
            }
        }
        let (errors, warnings) = (self.count(Level::Error), self.count(Level::Warning));
        let result = match (errors, warnings) {
            (0, 0) => "ok".to_string(),
            (0, w) => plural(w, "warning"),
            (e, 0) => plural(e, "error"),
            (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
        };
        writeln!(out, "result: {result}")
    }
}

/// `n thing` or `n things`.
pub(crate) fn plural(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// A time as RFC 3339 UTC and how long ago it was: `2026-12-02T06:40:01.123Z (3m12s ago)`.
pub(crate) fn when(time: SystemTime, now: SystemTime) -> String {
    let stamp = crate::http::health::rfc3339(time);
    match now.duration_since(time) {
        Ok(age) => format!("{stamp} ({} ago)", short_duration(age)),
        Err(ahead) => format!(
            "{stamp} ({} in the future)",
            short_duration(ahead.duration())
        ),
    }
}

/// `45s`, `3m12s`, `5h3m`, `2d4h`.
fn short_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{}s", seconds / 60, seconds % 60),
        3600..86_400 => format!("{}h{}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_set_the_exit_code_and_the_result_line() {
        let mut report = Report::default();
        report.section(Level::Note, "config: ok");
        assert_eq!(report.exit_code(true), 0);
        report.detail(Level::Warning, "tag \"a.b\" is not a DNS label");
        assert_eq!((report.exit_code(false), report.exit_code(true)), (0, 1));
        report.section(Level::Error, "zones: zone file x.zone line 3: bad");
        assert_eq!(report.exit_code(false), 2);
        let mut out = Vec::new();
        report.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "config: ok\n  warning: tag \"a.b\" is not a DNS label\n\
             zones: error: zone file x.zone line 3: bad\nresult: 1 error, 1 warning\n"
        );
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::from_secs(45)), "45s");
        assert_eq!(short_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(short_duration(Duration::from_secs(5 * 3600 + 180)), "5h3m");
        assert_eq!(
            short_duration(Duration::from_secs(2 * 86_400 + 4 * 3600)),
            "2d4h"
        );
    }
}
