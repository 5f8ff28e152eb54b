//! Debian's Chromium, headless, as a real browser for the status page: the DOM it builds from a
//! page (`--dump-dom`), a screenshot of it, and the rows of a table read back out of that DOM.
//!
//! Every run has a fresh profile directory and a time limit; on timeout its process group (the
//! browser and the helpers it forked) is killed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The browser binary (Debian's `chromium` package).
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one browser run may take.
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// The DOM Chromium builds from `url`, serialized.
pub fn dump_dom(url: &str) -> String {
    run(&["--dump-dom", url])
}

/// Saves a PNG of `url` as rendered in a `width` x `height` window at `path`.
pub fn screenshot(url: &str, path: &Path, width: u32, height: u32) {
    let target = format!("--screenshot={}", path.display());
    let size = format!("--window-size={width},{height}");
    run(&[&target, &size, "--hide-scrollbars", url]);
}

/// Runs headless Chromium with `args` after the fixed flags; its standard output.
fn run(args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .env("HOME", profile.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group, so a timeout can end the helpers it forks too.
        .process_group(0)
        .spawn()
        .expect("start /usr/bin/chromium (Debian package chromium)");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + TIME_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() >= deadline {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            panic!("chromium {args:?} took longer than {TIME_LIMIT:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = reader.join().expect("stdout reader");
    assert!(status.success(), "chromium {args:?} failed: {status}");
    text
}

/// The rows of the first `<table class="CLASS">` in `dom` (a serialized DOM, as Chromium writes
/// it), each row its cells' text: tags dropped, whitespace collapsed, entities decoded.
pub fn table_rows(dom: &str, class: &str) -> Vec<Vec<String>> {
    let open = format!("<table class=\"{class}\"");
    let Some(start) = dom.find(&open) else {
        return Vec::new();
    };
    let end = dom[start..]
        .find("</table>")
        .map_or(dom.len(), |at| start + at);
    dom[start..end]
        .split("<tr")
        .skip(1)
        .map(|row| {
            row.split("</t")
                .filter_map(|cell| {
                    let at = cell.rfind("<td").or_else(|| cell.rfind("<th"))?;
                    let inner = &cell[cell[at..].find('>')? + at + 1..];
                    Some(text(inner))
                })
                .collect()
        })
        .collect()
}

/// The text of an HTML fragment: tags dropped (a list item is a `; `), whitespace collapsed,
/// the entities an HTML serializer writes decoded.
pub fn text(fragment: &str) -> String {
    let mut out = String::new();
    let mut rest = fragment;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        let close = rest[at..].find('>').map_or(rest.len(), |end| at + end + 1);
        if rest[at..].starts_with("<li") && !out.trim_end().is_empty() {
            out.push_str("; ");
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    let decoded = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}
