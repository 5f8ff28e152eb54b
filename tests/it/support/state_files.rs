//! Damage done to a state directory's files by hand, the way a crash or a bad disk would, for
//! the restart tests: a journal's last record cut short, a base whose payload does not parse.

use std::path::Path;

/// Appends the start of a record to base `generation`'s journal, as a kill -9 during an append
/// leaves it: the records before it are replayed, and the next process writes a whole base
/// rather than append after it (docs/sync.md).
pub fn tear_journal(state: &Path, generation: u64) {
    let path = state.join(format!("journal-{generation:012}.snapdns"));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::Write::write_all(&mut file, b"snapdns-journal 1 ").unwrap();
}

/// Cuts base `generation`'s payload in half and writes a header that matches the rest (length
/// and CRC-32): the file passes the intact check that lets its zone cache be served, and then
/// fails to be read, as a base damaged between the two would.
pub fn spoil_base_payload(state: &Path, generation: u64) {
    let path = state.join(format!("state-{generation:012}.snapdns"));
    let bytes = std::fs::read(&path).unwrap();
    let newline = bytes.iter().position(|b| *b == b'\n').unwrap();
    let payload = &bytes[newline + 1..];
    let payload = &payload[..payload.len() / 2];
    let header = format!(
        "snapdns-state 1 {:08x} {}\n",
        crc32fast::hash(payload),
        payload.len()
    );
    std::fs::write(&path, [header.as_bytes(), payload].concat()).unwrap();
}
