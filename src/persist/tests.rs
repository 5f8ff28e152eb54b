//! Unit tests of the persisted state: base generations, journal replay and its failures.
use std::fs;
use std::path::Path;

use super::base::{file_name, generations};
use super::*;
use crate::registry::HealthEntry;

fn persisted(index: u64) -> Persisted {
    let mut state = RegistryState {
        index,
        ..RegistryState::default()
    };
    state
        .services
        .insert("web".into(), Arc::new(vec![HealthEntry::default()]));
    Persisted {
        datacenter: "dc1".into(),
        fetched_at_ms: 1_700_000_000_000,
        saved_at_ms: 1_700_000_000_500,
        state: Arc::new(state),
    }
}

#[test]
fn round_trip_and_generations() {
    let dir = tempfile::tempdir().unwrap();
    for index in 1..=5 {
        let saved = save(dir.path(), &persisted(index)).unwrap();
        assert_eq!(saved.generation, index);
    }
    let loaded = load(dir.path(), "dc1");
    let (found, generation, _) = loaded.found.unwrap();
    assert_eq!((found.state.index, generation), (5, 5));
    assert!(loaded.skipped.is_empty());
    assert_eq!(generations(dir.path()).unwrap().len(), KEEP_GENERATIONS);
}

#[test]
fn damaged_files_fall_back_to_the_previous_generation() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), &persisted(1)).unwrap();
    let newest = save(dir.path(), &persisted(2)).unwrap();
    let mut bytes = fs::read(&newest.path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x20;
    fs::write(&newest.path, &bytes).unwrap();
    let loaded = load(dir.path(), "dc1");
    assert_eq!(loaded.found.unwrap().0.state.index, 1);
    assert!(
        matches!(loaded.skipped[0], PersistError::Corrupt { .. }),
        "{:?}",
        loaded.skipped
    );

    // Truncated (torn) file.
    fs::write(&newest.path, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(load(dir.path(), "dc1").found.unwrap().0.state.index, 1);
}

#[test]
fn newer_format_and_other_datacenter_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), &persisted(1)).unwrap();
    fs::write(
        dir.path().join(file_name(7)),
        "snapdns-state 99 00000000 2\n{}",
    )
    .unwrap();
    let loaded = load(dir.path(), "dc1");
    assert!(matches!(
        loaded.skipped[0],
        PersistError::NewerFormat { version: 99, .. }
    ));
    assert_eq!(loaded.found.unwrap().1, 1);
    let other = load(dir.path(), "dc2");
    assert!(other.found.is_none());
    assert!(matches!(
        other.skipped[1],
        PersistError::OtherDatacenter { .. }
    ));
}

#[test]
fn files_are_private_links_are_not_followed_and_garbage_is_not_echoed() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    let saved = save(&dir, &persisted(1)).unwrap();
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&saved.path), 0o600);

    // A newer "generation" that is a link to another file: skipped, its content unread.
    let secret = root.path().join("secret");
    fs::write(&secret, "snapdns-state 1 TOP-SECRET-CONTENT\n").unwrap();
    std::os::unix::fs::symlink(&secret, dir.join(file_name(5))).unwrap();
    let loaded = load(&dir, "dc1");
    assert_eq!(loaded.found.unwrap().1, 1);
    let message = loaded.skipped[0].to_string();
    assert!(message.contains("not a regular file"), "{message}");
    assert!(!message.contains("SECRET"), "{message}");

    // Garbage: at most a short, escaped excerpt.
    let mut garbage = b"\x1b[31mBINARY".to_vec();
    garbage.extend(std::iter::repeat_n(b'A', 100));
    garbage.push(b'\n');
    fs::write(dir.join(file_name(6)), &garbage).unwrap();
    let message = load(&dir, "dc1").skipped[0].to_string();
    assert!(message.contains(r#""\x1b[31mBINARYAAAAA"..."#), "{message}");
    assert!(
        !message.contains('\x1b') && !message.contains("AAAAAAAAAA"),
        "{message}"
    );
}

#[test]
fn missing_directory_is_empty_and_unwritable_directory_errors() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&dir.path().join("absent"), "dc1");
    assert!(loaded.found.is_none() && loaded.skipped.is_empty());
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    let error = save(&file.join("state"), &persisted(1)).unwrap_err();
    assert!(
        matches!(error, PersistError::Io { op: "create", .. }),
        "{error}"
    );
}

/// A sequence of published states: service `svc-<i % 5>` changes at step i, and `svc-0` is
/// removed at step 7.
fn states(steps: u64) -> Vec<Persisted> {
    let mut out = vec![persisted(1)];
    for step in 1..=steps {
        let mut next = out.last().unwrap().clone();
        let state = Arc::make_mut(&mut next.state);
        state.index = 1 + step;
        let mut entry = HealthEntry::default();
        entry.service.port = u16::try_from(step).unwrap();
        if step == 7 {
            state.services.remove("svc-0");
        } else {
            state
                .services
                .insert(format!("svc-{}", step % 5), Arc::new(vec![entry]));
        }
        next.fetched_at_ms += step;
        next.saved_at_ms += step;
        out.push(next);
    }
    out
}

/// Writes `states[0]` as base 1 and the others as its journal; returns the journal's path and
/// the byte offset after each record.
fn journaled(dir: &Path, states: &[Persisted]) -> (std::path::PathBuf, Vec<u64>) {
    save_generation(dir, 1, &states[0]).unwrap();
    let mut journal = Journal::create(dir, BaseId::of(1, &states[0])).unwrap();
    let mut ends = vec![0];
    for pair in states.windows(2) {
        journal
            .append(&Delta::between(&pair[0].state, &pair[1].state), &pair[1])
            .unwrap();
        ends.push(journal.bytes());
    }
    (journal.path().to_path_buf(), ends)
}

#[test]
fn every_prefix_of_the_journal_replays_to_a_published_state_and_a_torn_tail_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let states = states(9);
    let (path, ends) = journaled(dir.path(), &states);
    let full = fs::read(&path).unwrap();
    let loaded = load(dir.path(), "dc1");
    assert_eq!(loaded.found.unwrap().0, states[9]);
    assert_eq!(
        (loaded.journal.applied, loaded.journal.stopped.is_none()),
        (9, true)
    );
    // Cut anywhere: the state of the last whole record, never a mix.
    for cut in 0..=full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let loaded = load(dir.path(), "dc1");
        let whole = ends.iter().rposition(|end| *end as usize <= cut).unwrap();
        assert_eq!(loaded.found.unwrap().0, states[whole], "cut at {cut}");
        assert_eq!(loaded.journal.applied, whole as u64);
        let torn = ends[whole] as usize != cut;
        assert_eq!(loaded.journal.stopped.is_some(), torn, "cut at {cut}");
    }
}

#[test]
fn a_damaged_record_stops_replay_there_even_when_later_ones_are_intact() {
    let dir = tempfile::tempdir().unwrap();
    let states = states(6);
    let (path, ends) = journaled(dir.path(), &states);
    let mut bytes = fs::read(&path).unwrap();
    // A flipped bit inside the third record's payload.
    bytes[(ends[2] + ends[3]) as usize / 2] ^= 0x04;
    fs::write(&path, &bytes).unwrap();
    let loaded = load(dir.path(), "dc1");
    assert_eq!(loaded.found.unwrap().0, states[2]);
    assert_eq!(loaded.journal.applied, 2);
    let message = loaded.journal.stopped.unwrap().to_string();
    assert!(message.contains("record 3 at byte"), "{message}");
    assert!(message.contains("checksum"), "{message}");
}

#[test]
fn a_journal_of_another_base_is_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let states = states(3);
    let (path, _) = journaled(dir.path(), &states);
    // Base 1 rewritten (say, a generation number used again): the old journal does not fit.
    let mut other = states[0].clone();
    other.saved_at_ms += 1000;
    save_generation(dir.path(), 1, &other).unwrap();
    assert!(path.exists());
    let loaded = load(dir.path(), "dc1");
    assert_eq!(loaded.found.unwrap().0, other);
    assert_eq!(loaded.journal.applied, 0);
    let message = loaded.journal.stopped.unwrap().to_string();
    assert!(message.contains("another base"), "{message}");
}

#[test]
fn compaction_starts_a_new_base_whose_journal_follows_and_old_journals_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let states = states(12);
    save_generation(dir.path(), 1, &states[0]).unwrap();
    let mut journals = vec![Journal::create(dir.path(), BaseId::of(1, &states[0])).unwrap()];
    for (step, pair) in states.windows(2).enumerate() {
        let delta = Delta::between(&pair[0].state, &pair[1].state);
        assert_eq!(delta.len(), 1, "one service per step");
        for journal in &mut journals {
            journal.append(&delta, &pair[1]).unwrap();
        }
        if step % 3 == 2 {
            // Compaction: the next base's journal first, then the base, then only it is followed.
            let generation = next_generation(dir.path()).unwrap();
            let base = &pair[1];
            journals.push(Journal::create(dir.path(), BaseId::of(generation, base)).unwrap());
            // A crash before the base is in place: the older base and its journal serve.
            assert_eq!(load(dir.path(), "dc1").found.unwrap().0, *base);
            save_generation(dir.path(), generation, base).unwrap();
            journals.remove(0);
        }
        let loaded = load(dir.path(), "dc1");
        assert_eq!(loaded.found.unwrap().0, pair[1], "step {step}");
    }
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let journals_on_disk = names.iter().filter(|n| n.starts_with("journal-")).count();
    assert_eq!(journals_on_disk, KEEP_GENERATIONS, "{names:?}");
    assert_eq!(generations(dir.path()).unwrap().len(), KEEP_GENERATIONS);
}

#[test]
fn a_version_1_state_file_from_before_the_journal_loads() {
    let dir = tempfile::tempdir().unwrap();
    // Written by snapdns before journals existed (format 1, no journal beside it).
    let payload = r#"{"datacenter":"dc1","fetched_at_ms":1700000000000,"saved_at_ms":1700000000500,"state":{"index":42,"services":{"web":[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"web-1","Service":"web","Port":80},"Checks":[]}]}}}"#;
    let file = format!(
        "snapdns-state 1 {:08x} {}\n{payload}",
        crc32fast::hash(payload.as_bytes()),
        payload.len()
    );
    fs::write(dir.path().join(file_name(3)), file).unwrap();
    let loaded = load(dir.path(), "dc1");
    let (found, generation, _) = loaded.found.unwrap();
    assert_eq!((found.state.index, generation), (42, 3));
    assert_eq!(found.state.services.get("web").unwrap()[0].service.port, 80);
    assert_eq!(loaded.journal.applied, 0);
    assert!(loaded.journal.stopped.is_none());
    // The next base comes after it.
    assert_eq!(next_generation(dir.path()).unwrap(), 4);
}

#[test]
fn a_base_is_checked_without_decoding_it() {
    let dir = tempfile::tempdir().unwrap();
    let saved = save(dir.path(), &persisted(1)).unwrap();
    check_generation(dir.path(), saved.generation).unwrap();
    let mut bytes = fs::read(&saved.path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&saved.path, &bytes).unwrap();
    let error = check_generation(dir.path(), saved.generation).unwrap_err();
    assert!(error.to_string().contains("checksum"), "{error}");
    fs::write(&saved.path, &bytes[..last]).unwrap();
    let error = check_generation(dir.path(), saved.generation).unwrap_err();
    assert!(error.to_string().contains("header says"), "{error}");
    assert!(check_generation(dir.path(), 9).is_err());
}

#[test]
fn zone_caches_are_private_checked_and_pruned_with_their_base() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let saved = save(dir.path(), &persisted(1)).unwrap();
    let written = zone_cache::save(dir.path(), saved.generation, |out| {
        out.write_all(b"payload")
    })
    .unwrap();
    let path = zone_cache::path(dir.path(), saved.generation);
    assert_eq!(fs::metadata(&path).unwrap().len(), written);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let file = zone_cache::read(dir.path(), saved.generation).unwrap();
    assert_eq!(file.payload(), b"payload");

    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let error = zone_cache::read(dir.path(), saved.generation).unwrap_err();
    assert!(error.to_string().contains("checksum"), "{error}");
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&saved.path, &path).unwrap();
    let error = zone_cache::read(dir.path(), saved.generation).unwrap_err();
    assert!(error.to_string().contains("not followed"), "{error}");
    fs::remove_file(&path).unwrap();

    // Caches go with their bases.
    zone_cache::save(dir.path(), 1, |out| out.write_all(b"x")).unwrap();
    for index in 2..=(KEEP_GENERATIONS as u64 + 1) {
        save(dir.path(), &persisted(index)).unwrap();
    }
    assert!(!zone_cache::path(dir.path(), 1).exists());
}

#[test]
fn inspect_replays_intact_bases_counts_the_journal_of_damaged_ones_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let states = states(4);
    let (journal_path, ends) = journaled(dir.path(), &states);
    save_generation(dir.path(), 2, &persisted(50)).unwrap();
    // A torn last record: three replayed, and where it stopped.
    let journal = fs::read(&journal_path).unwrap();
    fs::write(&journal_path, &journal[..journal.len() - 5]).unwrap();
    let listing = |dir: &Path| {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing(dir.path());

    let found = inspect::inspect(dir.path()).unwrap();
    assert_eq!(
        found.iter().map(|g| g.generation).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(found[0].state.as_ref().unwrap().state.index, 50);
    assert_eq!(found[1].state.as_ref().unwrap(), &states[3]);
    assert_eq!(found[1].journal_records, 3);
    assert!(found[1].journal_stopped.is_some());
    assert_eq!(
        inspect::newest_intact(dir.path()).unwrap().len(),
        1,
        "stops at the first intact base"
    );

    // A damaged base 1: not replayed, its journal's whole records counted; base 2 is still
    // the newest intact one.
    let base = dir.path().join(file_name(1));
    let mut bytes = fs::read(&base).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&base, &bytes).unwrap();
    let found = inspect::inspect(dir.path()).unwrap();
    assert!(matches!(found[1].state, Err(PersistError::Corrupt { .. })));
    assert_eq!((found[1].journal_records, ends.len()), (3, 5));
    assert_eq!(listing(dir.path()), before, "nothing created or removed");
    assert!(inspect::inspect(&dir.path().join("missing")).is_err());
}
