//! Unit tests of `cuts.rs`: the cuts measured at build time against the old per-query
//! re-encoding, size by size.
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::RData;

use super::*;
use crate::zone::prepared::encoded_so_far;
use crate::zone::Prepared;

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn srv(owner: &Name, target: &Name, port: u16) -> Record {
    Record::from_rdata(
        owner.clone(),
        0,
        RData::SRV(SRV::new(1, 1, port, target.clone())),
    )
}

fn a(owner: &Name, i: usize) -> Record {
    let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
    Record::from_rdata(owner.clone(), 0, RData::A(A(ip)))
}

fn aaaa(owner: &Name, i: usize) -> Record {
    let ip = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (i >> 16) as u16, i as u16);
    Record::from_rdata(owner.clone(), 0, RData::AAAA(AAAA(ip)))
}

const OWNER: &str = "_web._tcp.service.dc1.consul.";

/// An SRV answer of `count` instances the way the registry zone builds one: node-named
/// and address-named targets, each with its address in the additional section.
fn service(count: usize) -> (Vec<Record>, Vec<Record>) {
    let owner = name(OWNER);
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    for i in 0..count {
        let target = if i % 3 == 0 {
            name(&format!("{:08x}.addr.dc1.consul.", 0x0a00_0000 + i))
        } else {
            name(&format!("node-{i}.node.dc1.consul."))
        };
        answers.push(srv(&owner, &target, 8000 + i as u16));
        additionals.push(a(&target, i));
    }
    (answers, additionals)
}

/// Harder shapes: two addresses per target, additionals out of answer order, targets
/// mentioned twice, targets without an address, and an additional nothing points at.
fn odd_service(count: usize) -> (Vec<Record>, Vec<Record>) {
    let owner = name(OWNER);
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    for i in 0..count {
        let target = name(&format!("host-{}.example.com.", i % (count / 2 + 1)));
        answers.push(srv(&owner, &target, 9000 + i as u16));
        if i % 5 != 4 {
            additionals.push(aaaa(&target, i));
            additionals.push(a(&target, i));
        }
    }
    additionals.reverse();
    additionals.push(a(&name("unrelated.example.com."), 1));
    (answers, additionals)
}

/// The old per-query cut: decode the prepared response, encode prefixes.
fn reference(prepared: &Prepared, budget: usize) -> Option<Vec<u8>> {
    let full = Message::from_vec(prepared.wire()).unwrap();
    let owner = full.queries[0].name().clone();
    let qtype = full.queries[0].query_type();
    Prepared::longest_prefix(&owner, qtype, &full.answers, &full.additionals, budget)
        .map(|cut| cut.wire().to_vec())
}

fn cut(prepared: &Prepared, budget: usize, question: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    prepared
        .write_cut(budget, question, &mut out)
        .then_some(out)
}

fn check(prepared: &Prepared, budgets: impl IntoIterator<Item = usize>, label: &str) {
    let question = prepared.wire()[12..prepared.question_end()].to_vec();
    for budget in budgets {
        let expected = reference(prepared, budget);
        let actual = cut(prepared, budget, &question);
        assert_eq!(actual, expected, "{label}: cut at {budget} bytes");
    }
}

/// Budgets either side of every cut size up to `up_to`, where an off-by-one would show.
fn boundaries(prepared: &Prepared, up_to: usize) -> Vec<usize> {
    let cuts = prepared.cuts().unwrap();
    (0..=cuts.answer_count())
        .filter_map(|k| cuts.size(k))
        .filter(|size| *size <= up_to)
        .flat_map(|size| [size - 1, size, size + 1])
        .filter(|budget| *budget >= SMALLEST_BUDGET)
        .collect()
}

#[test]
fn every_size_is_cut_as_the_encoder_cut_it() {
    let owner = name(OWNER);
    for count in [8, 60] {
        let (answers, additionals) = service(count);
        let prepared =
            Prepared::encode(&owner, RecordType::SRV, &answers, &[], &additionals).unwrap();
        check(
            &prepared,
            (SMALLEST_BUDGET..=4096).chain([65_535]),
            &format!("{count} instances"),
        );
    }
    // Past hickory's 120 compressed names: every cut size, and budgets in between.
    let (answers, additionals) = service(130);
    let prepared = Prepared::encode(&owner, RecordType::SRV, &answers, &[], &additionals).unwrap();
    let mut budgets = boundaries(&prepared, 65_535);
    budgets.extend((SMALLEST_BUDGET..=4096).step_by(13).chain([65_535]));
    check(&prepared, budgets, "130 instances");
    let (answers, additionals) = odd_service(70);
    let prepared = Prepared::encode(&owner, RecordType::SRV, &answers, &[], &additionals).unwrap();
    check(
        &prepared,
        (SMALLEST_BUDGET..=4096).chain([65_535]),
        "odd shapes",
    );
}

#[test]
fn large_answers_are_cut_as_the_encoder_cut_them() {
    let owner = name(OWNER);
    // 500 SRV records with addresses (about 30 KiB), 900 (over 64 KiB: trimmed when
    // built), and 3,000 addresses.
    for count in [500, 900] {
        let (answers, additionals) = service(count);
        let prepared =
            Prepared::encode(&owner, RecordType::SRV, &answers, &[], &additionals).unwrap();
        let mut budgets = boundaries(&prepared, 8192);
        budgets.extend((SMALLEST_BUDGET..=4096).step_by(97));
        budgets.extend([16_384, 32_768, 65_524, 65_535]);
        check(&prepared, budgets, &format!("{count} instances"));
    }
    let addresses: Vec<Record> = (0..3000).map(|i| a(&owner, i)).collect();
    let prepared = Prepared::encode(&owner, RecordType::A, &addresses, &[], &[]).unwrap();
    let mut budgets = boundaries(&prepared, 4096);
    budgets.extend([600, 1000, 1400, 4096, 65_535]);
    check(&prepared, budgets, "3000 addresses");
}

#[test]
fn an_alias_gets_the_encoded_cut_with_its_own_question() {
    let (answers, additionals) = service(60);
    let prepared = Prepared::encode_shared(&name(OWNER), RecordType::SRV, &answers, &additionals)
        .expect("shareable");
    let mut question = b"\x03WEB\x07service\x06consul\x00".to_vec();
    question.extend_from_slice(&[0, 33, 0, 1]);
    let canonical = prepared.wire()[12..prepared.question_end()].to_vec();
    for budget in SMALLEST_BUDGET..=4096 {
        let Some(reply) = cut(&prepared, budget, &question) else {
            panic!("no cut at {budget}");
        };
        let ours = Message::from_vec(&reply).unwrap();
        let room = budget + canonical.len() - question.len();
        let expected = Message::from_vec(&cut(&prepared, room, &canonical).unwrap()).unwrap();
        assert!(reply.len() <= budget);
        assert!(ours.metadata.truncation);
        assert_eq!(ours.queries[0].name().to_string(), "WEB.service.consul.");
        let data = |m: &Message| m.answers.iter().map(|r| r.data.clone()).collect::<Vec<_>>();
        assert_eq!(data(&ours), data(&expected), "answers at {budget}");
        assert_eq!(
            ours.additionals, expected.additionals,
            "additionals at {budget}"
        );
    }
}

#[test]
fn cutting_encodes_nothing() {
    let (answers, additionals) = service(500);
    let prepared =
        Prepared::encode(&name(OWNER), RecordType::SRV, &answers, &[], &additionals).unwrap();
    let question = prepared.wire()[12..prepared.question_end()].to_vec();
    let before = encoded_so_far();
    let mut out = Vec::new();
    for budget in [600, 1000, 1400, 4096, 65_524] {
        assert!(prepared.write_cut(budget, &question, &mut out));
        assert!(out.len() <= budget && out[2] & 0x02 != 0);
    }
    assert_eq!(encoded_so_far(), before, "no message encoded per cut");
}

#[test]
fn a_huge_answer_is_trimmed_by_the_quarter_rule_in_bounded_work() {
    let owner = name(OWNER);
    let mut work = Vec::new();
    for count in [20_000, 40_000] {
        let (answers, additionals) = service(count);
        let before = encoded_so_far();
        let prepared =
            Prepared::encode(&owner, RecordType::SRV, &answers, &[], &additionals).unwrap();
        let after = encoded_so_far();
        work.push(after.1 - before.1);
        // The rule of before: a quarter fewer answers at a time until the message fits.
        let mut keep = count;
        let expected = loop {
            keep = keep * 3 / 4;
            // Each answer here has its own address record, in the same order.
            if let Ok((wire, _)) = encode_sections(
                &owner,
                RecordType::SRV,
                &answers[..keep],
                &additionals[..keep],
            ) {
                break wire;
            }
        };
        assert_eq!(prepared.answer_count(), keep, "{count} instances");
        assert!(prepared.is_truncated());
        assert!(prepared.wire().len() <= MAX_MESSAGE_LEN);
        let cuts = prepared.cuts().expect("cuts of the kept answers");
        assert_eq!(cuts.answer_count(), keep);
        assert_eq!(prepared.wire(), &expected[..], "{count} instances");
    }
    // Encoding work depends on what fits into 64 KiB, not on the number of instances.
    assert!(
        work[1] <= work[0] + work[0] / 10,
        "records encoded for 20,000 and 40,000 instances: {work:?}"
    );
}
