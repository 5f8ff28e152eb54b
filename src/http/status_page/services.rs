//! The services table of the status page: every service with its passing / total instances,
//! those with instances not served first, each such instance with the reason
//! [`verdict::instance_verdict`] gives (the account `/v1/explain` gives too).
//!
//! One walk over the registry state per request. The table is bounded: at most [`MAX_ROWS`]
//! services and [`MAX_INSTANCES_LISTED`] instances per service, with a line saying how many
//! more there are, so a registry of 10,000 services renders a page a browser can show.

use std::fmt::Write as _;

use super::super::html::Text;
use crate::registry::{Entries, RegistryState};
use crate::snapshot::verdict::instance_verdict;
use crate::snapshot::HealthFilter;

/// Services listed at most.
pub(super) const MAX_ROWS: usize = 500;

/// Instances not served listed at most per service.
pub(super) const MAX_INSTANCES_LISTED: usize = 10;

/// One service's counts.
struct Row<'a> {
    name: &'a str,
    entries: &'a Entries,
    passing: usize,
}

impl Row<'_> {
    fn failing(&self) -> bool {
        self.passing < self.entries.len()
    }
}

/// Writes the services section of `state`: a summary line and the table.
pub(super) fn write_services(out: &mut String, state: &RegistryState, health: HealthFilter) {
    let mut failing = Vec::new();
    let mut healthy = Vec::new();
    let (mut instances, mut passing, mut n_healthy) = (0, 0, 0);
    for (name, entries) in state.services.iter() {
        let row = Row {
            name,
            entries,
            passing: entries.iter().filter(|entry| health.serves(entry)).count(),
        };
        instances += entries.len();
        passing += row.passing;
        if row.failing() {
            failing.push(row);
        } else {
            n_healthy += 1;
            // Healthy rows past the cap are counted, not kept.
            if healthy.len() < MAX_ROWS {
                healthy.push(row);
            }
        }
    }
    // A service with nothing served first, then the ones partly served, by name within each.
    failing.sort_by_key(|row| row.passing > 0);
    let n_failing = failing.len();
    let _ = writeln!(
        out,
        "<p>{} services, {instances} instances, {passing} passing. \
         Services with instances not served: <strong>{n_failing}</strong>.</p>",
        state.services.len()
    );
    if state.services.is_empty() {
        out.push_str("<p>The registry has no services.</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"services\">\n<thead><tr><th scope=\"col\">Service</th>\
         <th scope=\"col\">Passing / total</th><th scope=\"col\">Not served, and why</th></tr></thead>\n<tbody>\n",
    );
    let shown: Vec<&Row<'_>> = failing.iter().chain(&healthy).take(MAX_ROWS).collect();
    for row in &shown {
        write_row(out, row, health);
    }
    out.push_str("</tbody>\n</table>\n");
    let not_shown = n_failing + n_healthy - shown.len();
    if not_shown > 0 {
        let failing_hidden = n_failing.saturating_sub(shown.len());
        let _ = writeln!(
            out,
            "<p class=\"more\">{not_shown} more services not listed \
             ({failing_hidden} of them with instances not served).</p>"
        );
    }
}

fn write_row(out: &mut String, row: &Row<'_>, health: HealthFilter) {
    let total = row.entries.len();
    let class = match (row.failing(), row.passing) {
        (false, _) => "ok",
        (true, 0) => "down",
        (true, _) => "failing",
    };
    let _ = write!(
        out,
        "<tr class=\"{class}\"><th scope=\"row\">{}</th><td class=\"count\">{} / {total}</td><td>",
        Text(row.name),
        row.passing,
    );
    if row.failing() {
        out.push_str("<ul>");
        let not_served = row.entries.iter().filter(|entry| !health.serves(entry));
        for entry in not_served.clone().take(MAX_INSTANCES_LISTED) {
            let verdict = instance_verdict(row.name, entry, health);
            let _ = write!(
                out,
                "<li><span class=\"instance\">{} on {}</span>: ",
                Text(&entry.service.id),
                Text(&entry.node.node)
            );
            let reasons: Vec<String> = verdict
                .reasons
                .iter()
                .filter(|reason| reason.excludes(health))
                .map(|reason| reason.describe(entry))
                .collect();
            let reasons = if reasons.is_empty() {
                "not served".to_string()
            } else {
                reasons.join("; ")
            };
            let _ = write!(out, "{}</li>", Text(&reasons));
        }
        let more = not_served.count().saturating_sub(MAX_INSTANCES_LISTED);
        if more > 0 {
            let _ = write!(out, "<li class=\"more\">and {more} more not served</li>");
        }
        out.push_str("</ul>");
    }
    out.push_str("</td></tr>\n");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::registry::{CheckScope, EntryCheck, HealthEntry, Node};

    fn entry(service: &str, node: &str, status: &str) -> HealthEntry {
        let mut entry = HealthEntry {
            node: Arc::new(Node {
                node: node.into(),
                address: "10.0.0.1".into(),
                ..Node::default()
            }),
            ..HealthEntry::default()
        };
        entry.service.service = service.into();
        entry.service.id = format!("{service}-{node}").into();
        entry.checks = vec![EntryCheck {
            check_id: format!("service:{service}-{node}").into(),
            status: status.into(),
            scope: CheckScope::Service,
            modify_index: 1,
            ..EntryCheck::default()
        }];
        entry
    }

    fn page(services: Vec<(String, Vec<HealthEntry>)>) -> String {
        let mut state = RegistryState::default();
        for (name, entries) in services {
            state.services.insert(name, Arc::new(entries));
        }
        let mut out = String::new();
        write_services(&mut out, &state, HealthFilter::PassingOnly);
        out
    }

    #[test]
    fn failing_services_come_first_and_the_table_is_bounded() {
        let mut services: Vec<(String, Vec<HealthEntry>)> = (0..600)
            .map(|i| {
                let name = format!("s{i:03}");
                let entries = vec![entry(&name, "n1", "passing")];
                (name, entries)
            })
            .collect();
        services[599].1.push(entry("s599", "n2", "critical"));
        services[300].1[0] = entry("s300", "n1", "critical");
        let many: Vec<HealthEntry> = (0..15)
            .map(|i| entry("s450", &format!("m{i}"), "warning"))
            .collect();
        services[450].1.extend(many);
        let out = page(services);
        let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("<tr class")).collect();
        assert_eq!(rows.len(), MAX_ROWS);
        assert!(rows[0].starts_with("<tr class=\"down\"><th scope=\"row\">s300</th>"));
        assert!(rows[1].starts_with("<tr class=\"failing\"><th scope=\"row\">s450</th>"));
        assert!(rows[1].contains("<td class=\"count\">1 / 16</td>"));
        assert_eq!(rows[1].matches("<li><span").count(), MAX_INSTANCES_LISTED);
        assert!(rows[1].contains("and 5 more not served"));
        assert!(rows[2].contains(
            "s599-n2 on n2</span>: check service:s599-n2 on instance s599-n2 is critical"
        ));
        assert!(rows[3].starts_with("<tr class=\"ok\"><th scope=\"row\">s000</th>"));
        assert!(out.contains("100 more services not listed (0 of them with instances not served)"));
        assert!(out.starts_with("<p>600 services, 616 instances, 599 passing."));
    }

    #[test]
    fn registry_strings_are_escaped() {
        let hostile = "<script>alert('x')</script>";
        let out = page(vec![(
            hostile.to_string(),
            vec![entry(hostile, &format!("n&{hostile}"), "critical")],
        )]);
        assert!(!out.contains("<script"), "{out}");
        assert!(
            out.contains("<th scope=\"row\">&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</th>")
        );
        assert!(out.contains("on n&amp;&lt;script&gt;"));
    }
}
