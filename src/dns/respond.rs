//! The answering engine: query bytes in, response bytes out, for every name served locally.
//!
//! Local answers come from prepared responses (see [`crate::zone`]): copy, patch the ID,
//! flags and question case, add the OPT record, shuffle A/AAAA in place, and cut to the
//! client's size limit when needed. Nothing here takes a lock or awaits; forwarded names are
//! handed back to the caller as [`Outcome::Forward`]. CHAOS-class queries and NSID are
//! answered from the policy's [`ServerIdentity`] (see [`super::identity`]).

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::ResponseCode;
#[cfg(test)]
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::RecordType;
#[cfg(test)]
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rand::rngs::SmallRng;
use rand::Rng;

use super::flags;
use super::identity::{self, CLASS_CH};
use super::query::{ParsedQuery, Rejection, Signature};
use super::transfer::is_transfer;
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::zone::{Lookup, Prepared, Zone, ZoneSet, MAX_MESSAGE_LEN};

pub(super) use client::canonical;
use client::{limit, may_recurse};
pub use policy::{AnswerPolicy, ForwardLimits, Scratch};

const CLASS_IN: u16 = 1;
const CLASS_ANY: u16 = 255;
/// Classic DNS limit for UDP without EDNS (RFC 1035 §4.2.1).
const PLAIN_UDP_LIMIT: usize = 512;
/// OPT RR: root name, type, class (payload), TTL (ext. rcode, version, flags), empty RDATA.
const OPT_LEN: usize = 11;

/// How a response travels back, which decides its size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: 512 bytes without EDNS, else the advertised size capped by `max_udp_size`.
    Udp,
    /// TCP: up to 64 KiB.
    Tcp,
}

/// What the caller does with the message after [`Responder::respond`].
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `out` holds the response to send.
    Reply,
    /// Send nothing (a response, or too short to be a query).
    Ignore,
    /// The name is not served locally and the client may recurse: forward it.
    Forward,
    /// A zone transfer request over TCP: answer it with [`super::transfer::transfer`].
    Transfer,
    /// A TSIG-signed query and a key is set: answer it with [`super::transfer::signed`].
    Signed,
}

/// Answers queries for the registry zone and the static zones.
#[derive(Clone)]
pub struct Responder {
    registry: SnapshotStore,
    registry_apex: Arc<[u8]>,
    static_zones: Arc<ArcSwap<ZoneSet>>,
    policy: Arc<ArcSwap<AnswerPolicy>>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("policy", &self.policy.load())
            .finish()
    }
}

impl Responder {
    /// A responder over the registry snapshot (zone apex `registry_apex`, lower-cased wire
    /// format) and the static zones.
    pub fn new(
        registry: SnapshotStore,
        registry_apex: &[u8],
        static_zones: Arc<ArcSwap<ZoneSet>>,
        policy: AnswerPolicy,
    ) -> Self {
        Self {
            registry,
            registry_apex: registry_apex.into(),
            static_zones,
            policy: Arc::new(ArcSwap::from_pointee(policy)),
        }
    }

    /// Replaces the answering policy (SIGHUP); queries already being answered finish with
    /// the old one.
    pub fn set_policy(&self, policy: AnswerPolicy) {
        self.policy.store(Arc::new(policy));
    }

    /// The registry snapshot when `key` (lower-cased wire format) is the registry apex.
    pub fn registry_snapshot_for(&self, key: &[u8]) -> Option<Arc<Snapshot>> {
        self.registry_at(key)?.current()
    }

    /// The kept snapshot of the registry zone (apex `key`) whose serial is `serial`.
    pub fn registry_since(&self, key: &[u8], serial: u32) -> Option<Arc<Snapshot>> {
        self.registry_at(key)?.since(serial)
    }

    /// The registry store when `key` is the registry apex.
    fn registry_at(&self, key: &[u8]) -> Option<&SnapshotStore> {
        (*self.registry_apex == *key).then_some(&self.registry)
    }

    /// The static zones in force.
    pub fn static_zones(&self) -> Arc<ZoneSet> {
        self.static_zones.load_full()
    }

    /// The answering policy in force.
    pub fn policy(&self) -> Arc<AnswerPolicy> {
        self.policy.load_full()
    }

    /// Runs `f` with the answering policy in force, without taking a reference count (the UDP
    /// workers ask per response).
    pub fn with_policy<R>(&self, f: impl FnOnce(&AnswerPolicy) -> R) -> R {
        f(&self.policy.load())
    }

    /// True when `client` may recurse through this server.
    pub fn may_recurse(&self, client: IpAddr) -> bool {
        may_recurse(&self.policy.load(), client)
    }

    /// Answers `message` into `out` (cleared first) when the name is served locally.
    pub fn respond(
        &self,
        message: &[u8],
        client: IpAddr,
        transport: Transport,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        self.respond_checked(message, client, transport, out, scratch, false)
    }

    /// [`Responder::respond`] for a TSIG-signed query whose signature the caller verified
    /// (`super::transfer::signed`): answered as if unsigned, for the caller to sign.
    pub(super) fn respond_verified(
        &self,
        message: &[u8],
        client: IpAddr,
        transport: Transport,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        self.respond_checked(message, client, transport, out, scratch, true)
    }

    fn respond_checked(
        &self,
        message: &[u8],
        client: IpAddr,
        transport: Transport,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
        verified: bool,
    ) -> Outcome {
        out.clear();
        let query = match ParsedQuery::parse(message) {
            Ok(query) => query,
            Err(Rejection::Ignore) => return Outcome::Ignore,
            Err(Rejection::FormErr {
                id,
                op_code,
                recursion_desired,
            }) => {
                write_error(out, id, op_code, recursion_desired, ResponseCode::FormErr);
                return Outcome::Reply;
            }
            Err(Rejection::NotImp {
                id,
                op_code,
                recursion_desired,
            }) => {
                write_error(out, id, op_code, recursion_desired, ResponseCode::NotImp);
                return Outcome::Reply;
            }
        };
        let policy = self.policy.load();
        let recursion_available = may_recurse(&policy, client);
        // NSID only in the OPT of the EDNS version we speak (not in BADVERS).
        let nsid = query
            .edns
            .filter(|edns| edns.nsid && edns.version == 0)
            .and_then(|_| policy.identity.nsid());
        let reply = Reply {
            query: &query,
            recursion_available,
            limit: limit(&policy, &query, transport),
            max_udp_size: policy.max_udp_size,
            shuffle: policy.shuffle,
            nsid,
        };
        if let Some(edns) = query.edns {
            if edns.version != 0 {
                reply.bad_version(out);
                return Outcome::Reply;
            }
        }
        // Transfers have their own access rules and signatures; AXFR is not defined over UDP
        // (RFC 5936 §4.2) and stays NOTIMP below.
        // IXFR over UDP is answered with the SOA alone (RFC 1995 §2), AXFR only over TCP.
        let over_udp = query.qtype == u16::from(RecordType::IXFR);
        if is_transfer(query.qtype)
            && query.qclass == CLASS_IN
            && (transport == Transport::Tcp || over_udp)
        {
            return Outcome::Transfer;
        }
        // With `--tsig-key`, a TSIG-signed query (a secondary's SOA check) is verified and its
        // answer signed by the caller. Without one, every signed query is signed with a key
        // we do not know: NOTAUTH for TSIG (RFC 8945 §5.2.2.1, BADKEY), REFUSED for SIG(0)
        // (RFC 2931). Never an unsigned answer to a signed question.
        match query.signature {
            Some(Signature::Tsig) if verified => {}
            Some(Signature::Tsig) if policy.transfer.key.is_some() => return Outcome::Signed,
            Some(Signature::Tsig) => return reply.rcode_only(out, ResponseCode::NotAuth, false),
            Some(Signature::Sig0) => return reply.rcode_only(out, ResponseCode::Refused, false),
            None => {}
        }
        if query.qclass == CLASS_CH {
            // Never forwarded: the answer is about this server.
            return match policy.identity.chaos_text(query.key(), query.qtype) {
                Some(text) => reply.chaos_txt(text, out),
                None => reply.rcode_only(out, ResponseCode::Refused, false),
            };
        }

        if query.is_in(&self.registry_apex) {
            let guard = self.registry.load();
            return match guard.as_deref() {
                Some(snapshot) => {
                    self.answer_from(&snapshot.zone, Some(snapshot), &reply, out, scratch)
                }
                // Never synced: "unknown", not "absent".
                None => reply.rcode_only(out, ResponseCode::ServFail, true),
            };
        }
        let reverse = reverse::is_reverse(query.key());
        if reverse {
            let guard = self.registry.load();
            if let Some(snapshot) = guard.as_deref() {
                if let Some(prepared) = snapshot.zone.pointer(query.key()) {
                    return self.answer_pointer(&snapshot.zone, prepared, &reply, out, scratch);
                }
            }
        }
        let statics = self.static_zones.load();
        if let Some(zone) = statics.find(query.key()) {
            return self.answer_from(zone, None, &reply, out, scratch);
        }
        if recursion_available {
            scratch.forward = ForwardLimits {
                limit: reply.limit,
                advertised: reply.max_udp_size,
                nsid: nsid.map(|_| policy.identity.identity.clone()),
            };
            Outcome::Forward
        } else if reverse && !policy.forwarding {
            // No upstreams (`--no-forward`): a reverse name the registry does not know is
            // absent, as Consul answers without recursors; "unknown" before the first sync.
            match self.registry.load().as_deref() {
                Some(snapshot) => reply.negative(&snapshot.zone, ResponseCode::NXDomain, out),
                None => return reply.rcode_only(out, ResponseCode::ServFail, true),
            }
            Outcome::Reply
        } else {
            reply.rcode_only(out, ResponseCode::Refused, false)
        }
    }

    /// Answers from `zone`; `registry` is the snapshot when it is the registry zone, whose
    /// names not in the zone may be one of the forms answered without names of their own.
    fn answer_from(
        &self,
        zone: &Zone,
        registry: Option<&Snapshot>,
        reply: &Reply<'_>,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        if let Some(refusal) = reply.outside_zone_data(out) {
            return refusal;
        }
        let query = reply.query;
        match zone.lookup(query.key(), query.qtype) {
            Lookup::Answer(prepared) => return self.send_prepared(prepared, reply, out, scratch),
            Lookup::NoData => reply.negative(zone, ResponseCode::NoError, out),
            Lookup::NxDomain => match registry {
                Some(snapshot) => return self.answer_form(snapshot, reply, out, scratch),
                None => reply.negative(zone, ResponseCode::NXDomain, out),
            },
        }
        Outcome::Reply
    }

    /// Sends a prepared response for the query: cut to the client's limit when needed, A and
    /// AAAA records shuffled.
    fn send_prepared(
        &self,
        prepared: &Prepared,
        reply: &Reply<'_>,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        let query = reply.query;
        let budget = reply.limit - if query.edns.is_some() { OPT_LEN } else { 0 };
        // An alias's question can be shorter than the encoded one.
        let len = prepared.wire().len() + query.question.len() + 12;
        if len - prepared.question_end() > budget {
            // Cut where the zone build measured: a copy like any prepared answer.
            reply.cut(prepared, budget, out);
            return Outcome::Reply;
        }
        let shift = reply.prepared(prepared, out);
        if reply.shuffle {
            if let Some(unit) = prepared.shuffle_unit() {
                let range = prepared.answer_range();
                let start = (range.start as isize + shift) as usize;
                let end = (range.end as isize + shift) as usize;
                shuffle_records(&mut out[start..end], unit, &mut scratch.rng);
            }
        }
        Outcome::Reply
    }
}

/// One response being written for one query.
struct Reply<'q> {
    query: &'q ParsedQuery<'q>,
    recursion_available: bool,
    limit: usize,
    max_udp_size: u16,
    shuffle: bool,
    /// The NSID to add to our OPT record, when the client asked for it.
    nsid: Option<&'q [u8]>,
}

impl Reply<'_> {
    fn flags(&self, authoritative: bool, truncated: bool, rcode: ResponseCode) -> [u8; 2] {
        let mut high = flags::QR;
        if authoritative {
            high |= flags::AA;
        }
        if truncated {
            high |= flags::TC;
        }
        if self.query.recursion_desired {
            high |= flags::RD;
        }
        let mut low = rcode.low();
        if self.recursion_available {
            low |= flags::RA;
        }
        if self.query.checking_disabled {
            low |= flags::CD;
        }
        [high, low]
    }

    /// Copies a prepared response and makes it this query's: ID, flags, the question as sent.
    /// Returns how far the sections moved: an alias's question can be shorter than the one
    /// the response was encoded with, and the pointers listed for relocation move with it.
    fn prepared(&self, prepared: &Prepared, out: &mut Vec<u8>) -> isize {
        let wire = prepared.wire();
        let question_end = prepared.question_end();
        out.extend_from_slice(&wire[..12]);
        // The question exactly as sent: case, and (for ANY) type, are the client's.
        out.extend_from_slice(self.query.question);
        out.extend_from_slice(&wire[question_end..]);
        out[0..2].copy_from_slice(&self.query.id.to_be_bytes());
        let truncated = wire[2] & flags::TC != 0;
        let flags = self.flags(true, truncated, ResponseCode::NoError);
        out[2..4].copy_from_slice(&flags);
        let shift = (12 + self.query.question.len()) as isize - question_end as isize;
        if shift != 0 {
            for &offset in prepared.relocations() {
                let at = (offset as isize + shift) as usize;
                let pointer = u16::from_be_bytes([out[at], out[at + 1]]);
                let target = ((pointer & 0x3FFF) as isize + shift) as u16;
                out[at..at + 2].copy_from_slice(&(0xC000 | target).to_be_bytes());
            }
        }
        self.push_opt(out, 0);
        shift
    }

    /// NXDOMAIN or NODATA: the question and the zone's SOA in the authority section.
    fn negative(&self, zone: &Zone, rcode: ResponseCode, out: &mut Vec<u8>) {
        self.header(out, true, rcode, 0, 1);
        out.extend_from_slice(zone.negative_authority());
        self.push_opt(out, 0);
    }

    /// The answer to a CHAOS TXT query about this server.
    fn chaos_txt(&self, text: &[u8], out: &mut Vec<u8>) -> Outcome {
        self.header(out, true, ResponseCode::NoError, 1, 0);
        identity::write_chaos_txt(out, text);
        self.push_opt(out, 0);
        Outcome::Reply
    }

    /// A response with the question and no records.
    /// The answer for a question no zone data answers (another class, or a zone transfer),
    /// written; `None` when the zone's data may answer it.
    fn outside_zone_data(&self, out: &mut Vec<u8>) -> Option<Outcome> {
        let query = self.query;
        if query.qclass != CLASS_IN && query.qclass != CLASS_ANY {
            // Not an answer from the zone's data: no AA.
            return Some(self.rcode_only(out, ResponseCode::Refused, false));
        }
        if is_transfer(query.qtype) {
            return Some(self.rcode_only(out, ResponseCode::NotImp, true));
        }
        None
    }

    fn rcode_only(&self, out: &mut Vec<u8>, rcode: ResponseCode, authoritative: bool) -> Outcome {
        self.header(out, authoritative, rcode, 0, 0);
        self.push_opt(out, 0);
        Outcome::Reply
    }

    /// RFC 6891 §6.1.3: an unsupported EDNS version gets BADVERS (extended rcode 16).
    fn bad_version(&self, out: &mut Vec<u8>) {
        let badvers = ResponseCode::BADVERS;
        self.header(out, false, ResponseCode::from_low(badvers.low()), 0, 0);
        self.push_opt(out, badvers.high());
    }

    fn header(
        &self,
        out: &mut Vec<u8>,
        authoritative: bool,
        rcode: ResponseCode,
        answers: u16,
        authorities: u16,
    ) {
        out.extend_from_slice(&self.query.id.to_be_bytes());
        out.extend_from_slice(&self.flags(authoritative, false, rcode));
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&answers.to_be_bytes());
        out.extend_from_slice(&authorities.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(self.query.question);
    }

    /// Appends our OPT record when the query had one, and counts it.
    fn push_opt(&self, out: &mut Vec<u8>, extended_rcode: u8) {
        if self.query.edns.is_none() {
            return;
        }
        let payload = self.max_udp_size.to_be_bytes();
        out.extend_from_slice(&[
            0,
            0,
            41,
            payload[0],
            payload[1],
            extended_rcode,
            0,
            0,
            0,
            0,
            0,
        ]);
        let additionals = u16::from_be_bytes([out[10], out[11]]) + 1;
        out[10..12].copy_from_slice(&additionals.to_be_bytes());
        if let Some(nsid) = self.nsid {
            // Only if it fits: the room was measured for an empty OPT.
            identity::append_nsid(out, nsid, self.limit);
        }
    }

    /// The response does not fit: send the longest prefix of the answers that does, with the
    /// additional records that belong to it, and TC set. The prefix is the prepared order, so
    /// it is the same on every query and every replica; where to cut was worked out when the
    /// zone was built, for every size.
    fn cut(&self, prepared: &Prepared, budget: usize, out: &mut Vec<u8>) {
        if prepared.write_cut(budget, self.query.question, out) {
            out[0..2].copy_from_slice(&self.query.id.to_be_bytes());
            out[2..4].copy_from_slice(&self.flags(true, true, ResponseCode::NoError));
        } else {
            out.clear();
            self.header(out, true, ResponseCode::NoError, 0, 0);
            out[2] |= flags::TC;
        }
        self.push_opt(out, 0);
    }

    /// The cut as it was made before [`Self::cut`]: decode the whole response and encode
    /// prefixes in a binary search. The tests' reference.
    #[cfg(test)]
    fn truncated_by_reencoding(&self, prepared: &Prepared, out: &mut Vec<u8>) {
        let Ok(full) = Message::from_vec(prepared.wire()) else {
            out.truncate(12);
            out[2] |= flags::TC;
            out[4..12].fill(0);
            return;
        };
        // Rebuild around the client's question (an alias's name, the client's case and type).
        let Ok(client) = Query::read(&mut BinDecoder::new(self.query.question)) else {
            out.truncate(12);
            return;
        };
        let owner = client.name().clone();
        let qtype = client.query_type();
        let mut full = full;
        for record in &mut full.answers {
            record.name = owner.clone();
        }
        let budget = self.limit
            - if self.query.edns.is_some() {
                OPT_LEN
            } else {
                0
            };
        // The same rule as the truncations prepared at build time: the longest prefix that fits.
        let cut = Prepared::longest_prefix(&owner, qtype, &full.answers, &full.additionals, budget);
        out.clear();
        match cut {
            Some(cut) => {
                out.extend_from_slice(cut.wire());
                out[0..2].copy_from_slice(&self.query.id.to_be_bytes());
                out[2..4].copy_from_slice(&self.flags(true, true, ResponseCode::NoError));
            }
            None => {
                self.header(out, true, ResponseCode::NoError, 0, 0);
                out[2] |= flags::TC;
            }
        }
        self.push_opt(out, 0);
    }
}

/// A header-only error response (FORMERR, NOTIMP) for a message whose question is unusable.
fn write_error(
    out: &mut Vec<u8>,
    id: u16,
    op_code: u8,
    recursion_desired: bool,
    rcode: ResponseCode,
) {
    out.extend_from_slice(&id.to_be_bytes());
    let mut high = flags::QR | ((op_code & 0x0f) << 3);
    if recursion_desired {
        high |= flags::RD;
    }
    out.push(high);
    out.push(rcode.low());
    out.extend_from_slice(&[0; 8]);
}

/// Fisher-Yates over fixed-size records in place.
fn shuffle_records(section: &mut [u8], unit: usize, rng: &mut SmallRng) {
    let count = section.len() / unit;
    for i in (1..count).rev() {
        let j = rng.random_range(0..=i);
        if i != j {
            let (head, tail) = section.split_at_mut(i * unit);
            head[j * unit..(j + 1) * unit].swap_with_slice(&mut tail[..unit]);
        }
    }
}

mod client;
mod forms;
mod policy;
mod reverse;
#[cfg(test)]
mod tests;
