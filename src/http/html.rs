//! The little HTML the status page needs: escaping text, and durations and times for people.
//!
//! Everything on the page that comes from the registry (service, node and check names, check
//! IDs, addresses) or from configuration is untrusted and goes through [`Text`], which escapes
//! the five characters that matter in text and in quoted attribute values.

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime};

use super::health::rfc3339;

/// Text written HTML-escaped: `&`, `<`, `>`, `"` and `'` become character references.
pub(super) struct Text<'a>(pub(super) &'a str);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`: the two largest units of a duration.
pub(super) fn duration(span: Duration) -> String {
    let seconds = span.as_secs();
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {}s", seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// `2024-05-01 12:34:56Z`: a time in UTC, to the second.
pub(super) fn time(time: SystemTime) -> String {
    let mut text = rfc3339(time);
    // Milliseconds are noise on a page refreshed by people.
    text.replace_range(19..23, "");
    text.replace_range(10..11, " ");
    text
}

/// `2024-05-01 12:34:56Z (4m 10s ago)`: a time and its age at `now`.
pub(super) fn time_ago(at: SystemTime, now: SystemTime) -> String {
    let mut text = time(at);
    let _ = write!(
        text,
        " ({} ago)",
        duration(now.duration_since(at).unwrap_or_default())
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_what_html_would_read_as_markup() {
        assert_eq!(
            Text(r#"<script>alert("x&y's")</script>"#).to_string(),
            "&lt;script&gt;alert(&quot;x&amp;y&#39;s&quot;)&lt;/script&gt;"
        );
        assert_eq!(Text("plain-ünïcode").to_string(), "plain-ünïcode");
    }

    #[test]
    fn durations_and_times_read_at_a_glance() {
        assert_eq!(duration(Duration::from_secs(12)), "12s");
        assert_eq!(duration(Duration::from_secs(250)), "4m 10s");
        assert_eq!(duration(Duration::from_secs(7500)), "2h 5m");
        assert_eq!(
            duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d 4h"
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(
            time_ago(t, t + Duration::from_secs(61)),
            "2024-02-29 12:34:56Z (1m 1s ago)"
        );
    }
}
