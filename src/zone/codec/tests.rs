//! Unit tests of `codec.rs`: fragments survive a round trip byte for byte, and damaged input
//! is rejected without a panic.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::{A, CNAME, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;
use crate::zone::{FragmentBuilder, Zone, ZoneBuilder};

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn a(owner: &Name, i: usize) -> Record {
    let ip = Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8);
    Record::from_rdata(owner.clone(), 0, RData::A(A(ip)))
}

/// A fragment with every shape a registry fragment has: a shared SRV answer large enough to
/// be cut (with its additional records), shared A answers, a CNAME, plain names and the empty
/// non-terminals above them.
fn sample() -> Fragment {
    let apex = name("consul.");
    let owners = [
        name("_web._tcp.service.dc1.consul."),
        name("_web._tcp.service.consul."),
        name("web.service.consul."),
    ];
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    for i in 0..60 {
        let target = name(&format!("node-{i}.node.dc1.consul."));
        answers.push(Record::from_rdata(
            owners[0].clone(),
            0,
            RData::SRV(SRV::new(1, 1, 8000 + i as u16, target.clone())),
        ));
        additionals.push(a(&target, i));
    }
    let mut builder = FragmentBuilder::new();
    builder.add_shared(&owners, RecordType::SRV, &answers, &additionals);
    let addresses: Vec<Record> = (0..40).map(|i| a(&owners[0], i)).collect();
    builder.add_shared(&owners, RecordType::A, &addresses, &[]);
    for i in 0..5 {
        let node = name(&format!("node-{i}.node.dc1.consul."));
        builder.add_answer(&node, RecordType::A, &[a(&node, i)], &[]);
    }
    let alias = name("db.service.consul.");
    let cname = Record::from_rdata(alias.clone(), 0, RData::CNAME(CNAME(name("db.example."))));
    builder.add_answer(&alias, RecordType::CNAME, &[cname], &[]);
    let node = name("node-1.node.dc1.consul.");
    builder.add_pointer("10.0.0.1".parse().unwrap(), PtrKind::Node, &node, 0);
    builder.add_pointer("fd00::1".parse().unwrap(), PtrKind::Service, &alias, 5);
    builder.finish(&crate::zone::wire_key(&apex).unwrap())
}

fn zone_of(fragment: &Fragment) -> Zone {
    let apex = name("consul.");
    let soa = Record::from_rdata(
        apex.clone(),
        0,
        RData::SOA(SOA::new(
            name("ns.consul."),
            name("h.consul."),
            1,
            1,
            1,
            1,
            0,
        )),
    );
    ZoneBuilder::new(&apex, soa, 1)
        .build_with(&[fragment])
        .unwrap()
}

/// Every name with, per type, the response and every cut of it a client can get.
/// Per type: the type, the response, its relocations and its cuts at several budgets.
type Answers = Vec<(u16, Vec<u8>, Vec<u16>, Vec<Vec<u8>>)>;

fn contents(zone: &Zone) -> BTreeMap<Vec<u8>, Answers> {
    let ptr = u16::from(RecordType::PTR);
    let pointers = zone
        .pointers()
        .map(|(key, p)| (key.to_vec(), vec![(ptr, p.wire().to_vec(), vec![], vec![])]));
    zone.names()
        .map(|(key, by_type)| {
            let types = by_type
                .iter()
                .map(|(rtype, prepared)| {
                    let question = &prepared.wire()[12..prepared.question_end()];
                    let cuts = [100, 300, 512, 1232, 4096]
                        .iter()
                        .map(|&budget| {
                            let mut out = Vec::new();
                            prepared.write_cut(budget, question, &mut out);
                            out
                        })
                        .collect();
                    let relocations = prepared.relocations().to_vec();
                    (*rtype, prepared.wire().to_vec(), relocations, cuts)
                })
                .collect();
            (key.to_vec(), types)
        })
        .chain(pointers)
        .collect()
}

fn encode(fragment: &Fragment) -> Vec<u8> {
    let mut encoder = Encoder::default();
    encoder.fragment(fragment);
    encoder.out
}

fn decode(bytes: &[u8]) -> Result<Fragment> {
    let mut decoder = Decoder::new(bytes);
    let fragment = decoder.fragment()?;
    if decoder.remaining() != 0 {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(fragment)
}

#[test]
fn a_decoded_fragment_indexes_to_the_same_zone() {
    let fragment = sample();
    assert!(
        fragment
            .names
            .iter()
            .flat_map(|answers| answers.by_type.iter())
            .any(|(_, prepared)| prepared.cuts().is_some()),
        "the sample has a cut response"
    );
    let bytes = encode(&fragment);
    let decoded = decode(&bytes).unwrap();
    assert_eq!(decoded.record_count, fragment.record_count);
    assert_eq!(decoded.pointers, fragment.pointers);
    assert_eq!(zone_of(&decoded).pointer_count(), 2);
    assert_eq!(contents(&zone_of(&decoded)), contents(&zone_of(&fragment)));
    assert_eq!(
        encode(&decoded),
        bytes,
        "decoding then encoding changes nothing"
    );
}

#[test]
fn a_response_shared_by_aliases_stays_shared() {
    let decoded = decode(&encode(&sample())).unwrap();
    let srv_of = |owner: &str| {
        let key = crate::zone::wire_key(&name(owner)).unwrap();
        let answers = decoded.names.iter().find(|a| a.key() == &key[..]).unwrap();
        answers
            .by_type
            .iter()
            .find(|(t, _)| *t == 33)
            .unwrap()
            .1
            .clone()
    };
    assert!(Arc::ptr_eq(
        &srv_of("_web._tcp.service.dc1.consul."),
        &srv_of("web.service.consul.")
    ));
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = encode(&sample());
    for len in 0..bytes.len() {
        assert!(
            decode(&bytes[..len]).is_err(),
            "{len} of {} bytes",
            bytes.len()
        );
    }
}

#[test]
fn corrupt_bytes_never_panic_and_what_decodes_can_be_answered_from() {
    let bytes = encode(&sample());
    let mut accepted = 0;
    for at in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut damaged = bytes.clone();
            damaged[at] ^= flip;
            if let Ok(fragment) = decode(&damaged) {
                // Whatever passes the checks must be safe to answer from.
                contents(&zone_of(&fragment));
                accepted += 1;
            }
        }
    }
    // Record data itself is not checked (the file's CRC is): some flips decode.
    assert!(accepted > 0);
}

#[test]
fn impossible_counts_and_integers_are_rejected() {
    // A count far past the input must not allocate.
    let mut encoder = Encoder::default();
    encoder.uint(0);
    encoder.uint(u64::MAX);
    assert!(decode(&encoder.out).is_err());
    // An integer longer than 64 bits.
    assert!(Decoder::new(&[0xFF; 11]).uint().is_err());
    assert!(!is_wire_name(b"\x03web"));
    assert!(!is_wire_name(b"\x40aaaa\x00"));
    assert!(is_wire_name(b"\x03web\x00"));
}
