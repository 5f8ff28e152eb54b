//! The zone's SOA serial: the registry index, kept increasing for secondaries that compare
//! serials in RFC 1982 arithmetic (docs/transfer.md).

use crate::registry::RegistryState;

/// The SOA serial after `previous` (none for a first build) for a state whose own serial is
/// `wanted` ([`serial_of`]) and whose answers `changed`. It follows the registry index
/// forward, so replicas that saw the same index agree; when the index goes backwards (a
/// restored or new cluster) or stays while the data changed (a registry file without
/// indexes), it counts on from `previous` instead, so that secondaries, which compare
/// serials in RFC 1982 arithmetic, still see a newer zone (docs/transfer.md).
pub(super) fn next_serial(wanted: u32, previous: Option<u32>, changed: bool) -> u32 {
    match previous {
        None => wanted,
        Some(previous) if serial_greater(wanted, previous) => wanted,
        Some(previous) if changed => previous.wrapping_add(1),
        Some(previous) => previous,
    }
}

/// `a > b` in RFC 1982 serial number arithmetic (32 bits).
pub fn serial_greater(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// The SOA serial the registry state asks for, so replicas with the same state agree: the
/// registry index when there is one, else the highest modify index in the data, else a
/// checksum of the data.
pub fn serial_of(state: &RegistryState) -> u32 {
    if state.index > 0 {
        return (state.index & u64::from(u32::MAX)) as u32;
    }
    let highest = state
        .services
        .values()
        .flat_map(|entries| entries.iter())
        .flat_map(|e| {
            [e.node.modify_index, e.service.modify_index]
                .into_iter()
                .chain(e.checks.iter().map(|c| c.modify_index))
        })
        .max()
        .unwrap_or(0);
    if highest > 0 {
        return (highest & u64::from(u32::MAX)) as u32;
    }
    let bytes = serde_json::to_vec(&state.services).unwrap_or_default();
    crc32fast::hash(&bytes).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_follow_the_index_forward_and_count_on_when_it_goes_back() {
        assert_eq!(
            next_serial(500, None, true),
            500,
            "a first build takes the index"
        );
        assert_eq!(next_serial(600, Some(500), true), 600, "forward: the index");
        assert_eq!(
            next_serial(600, Some(500), false),
            600,
            "forward without change too"
        );
        assert_eq!(
            next_serial(500, Some(500), false),
            500,
            "nothing new: the same"
        );
        assert_eq!(
            next_serial(500, Some(500), true),
            501,
            "changed data, same index"
        );
        assert_eq!(
            next_serial(7, Some(500), true),
            501,
            "a restored cluster's lower index"
        );
        assert_eq!(next_serial(7, Some(500), false), 500);
        assert_eq!(
            next_serial(3, Some(u32::MAX), true),
            3,
            "wraps as RFC 1982 says"
        );
        assert_eq!(
            next_serial(u32::MAX - 5, Some(u32::MAX), true),
            0,
            "wrapping count"
        );
    }

    #[test]
    fn rfc_1982_comparison() {
        assert!(serial_greater(2, 1));
        assert!(!serial_greater(1, 2));
        assert!(!serial_greater(5, 5));
        assert!(serial_greater(0, u32::MAX));
        assert!(serial_greater(1 << 30, 0));
        assert!(
            !serial_greater(1 << 31 | 1, 0),
            "more than half the space back"
        );
    }
}
