//! Reverse names (`in-addr.arpa.`, `ip6.arpa.`) of the addresses the registry knows: their
//! prepared PTR answers are served before such a name would be forwarded (docs/dns.md,
//! "Reverse lookups").

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::{Outcome, Reply, Responder, Scratch};
use crate::zone::{is_subdomain_key, Prepared, Zone};

/// The reverse trees in lower-cased wire format.
const IN_ADDR_ARPA: &[u8] = b"\x07in-addr\x04arpa\x00";
const IP6_ARPA: &[u8] = b"\x03ip6\x04arpa\x00";

/// True for names under `in-addr.arpa.` or `ip6.arpa.`; one comparison for other names.
pub(super) fn is_reverse(key: &[u8]) -> bool {
    key.ends_with(b"\x04arpa\x00")
        && (is_subdomain_key(key, IN_ADDR_ARPA) || is_subdomain_key(key, IP6_ARPA))
}

impl Responder {
    /// A reverse name of an address the registry knows: its PTR answer for PTR and ANY, NODATA
    /// with the registry zone's SOA for other types.
    pub(super) fn answer_pointer(
        &self,
        zone: &Zone,
        prepared: &Prepared,
        reply: &Reply<'_>,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        if let Some(refusal) = reply.outside_zone_data(out) {
            return refusal;
        }
        let query = reply.query;
        if query.qtype == u16::from(RecordType::PTR) || query.qtype == u16::from(RecordType::ANY) {
            return self.send_prepared(prepared, reply, out, scratch);
        }
        reply.negative(zone, ResponseCode::NoError, out);
        Outcome::Reply
    }
}
