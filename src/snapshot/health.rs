//! Which instances DNS serves, by the worst of their checks: passing only (snapdns's default,
//! Consul's `only_passing = true`), or passing and warning (`--serve-warning`, Consul's
//! default `only_passing = false`). Critical checks, maintenance (a critical check in Consul)
//! and statuses Consul does not document never serve. Everything that counts served instances
//! (the snapshot's counts, self-preservation, what is left out) asks this one rule.

use crate::registry::{CheckStatus, HealthEntry};

/// The health an instance needs to be served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HealthFilter {
    /// Every check on the node and the instance passing.
    #[default]
    PassingOnly,
    /// No check critical (or of an unknown status): warning instances are served too.
    PassingOrWarning,
}

/// How an instance's checks judge it, worst check first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Worst {
    /// Every check passing (or no checks).
    Passing,
    /// Some check warning, none worse.
    Warning,
    /// Some check critical, or of a status Consul does not set.
    Failing,
}

impl HealthFilter {
    /// True when DNS serves `entry`.
    pub fn serves(self, entry: &HealthEntry) -> bool {
        match worst(entry) {
            Worst::Passing => true,
            Worst::Warning => self == Self::PassingOrWarning,
            Worst::Failing => false,
        }
    }
}

/// The worst of the checks on `entry`'s node and instance.
pub(crate) fn worst(entry: &HealthEntry) -> Worst {
    let mut worst = Worst::Passing;
    for check in &entry.checks {
        match check.status {
            CheckStatus::Passing => {}
            CheckStatus::Warning => worst = Worst::Warning,
            // Consul only sets the three; an unknown status is kept out rather than guessed.
            CheckStatus::Critical | CheckStatus::Other(_) => return Worst::Failing,
        }
    }
    worst
}

/// The SRV weight of a served instance: `Weights.Warning` while a check warns, as Consul's
/// `findWeight`, else `Weights.Passing`.
pub(crate) fn srv_weight(entry: &HealthEntry) -> u16 {
    let weights = entry.service.weights;
    let weight = match worst(entry) {
        Worst::Warning => weights.warning,
        Worst::Passing | Worst::Failing => weights.passing,
    };
    weight.min(u32::from(u16::MAX)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::EntryCheck;

    fn entry(statuses: &[&str]) -> HealthEntry {
        let mut entry = HealthEntry::default();
        entry.service.weights.passing = 10;
        entry.service.weights.warning = 2;
        entry.checks = statuses
            .iter()
            .map(|status| EntryCheck {
                status: (*status).into(),
                ..EntryCheck::default()
            })
            .collect();
        entry
    }

    #[test]
    fn the_worst_check_decides() {
        use HealthFilter::*;
        for (statuses, passing_only, or_warning, weight) in [
            (&[][..], true, true, 10),
            (&["passing", "passing"][..], true, true, 10),
            (&["passing", "warning"][..], false, true, 2),
            (&["warning", "critical"][..], false, false, 10),
            (&["passing", "maintenance"][..], false, false, 10),
        ] {
            let entry = entry(statuses);
            assert_eq!(PassingOnly.serves(&entry), passing_only, "{statuses:?}");
            assert_eq!(PassingOrWarning.serves(&entry), or_warning, "{statuses:?}");
            assert_eq!(srv_weight(&entry), weight, "{statuses:?}");
        }
    }
}
