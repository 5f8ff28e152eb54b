//! Which replica answered: the server's identity and version, told through NSID (RFC 5001)
//! to clients that ask for it, and through the CHAOS-class TXT names of RFC 4892
//! (`id.server.`, `hostname.bind.`, `version.server.`, `version.bind.`), as Knot and NSD do.
//!
//! Nothing here is on the path of a query that asks for neither: the responder tests one
//! class and one flag of the parsed OPT record.

use std::sync::Arc;

/// The CHAOS class (RFC 1035 §3.2.4).
pub(super) const CLASS_CH: u16 = 3;
/// EDNS option code of NSID (RFC 5001 §2.3).
const OPTION_NSID: u16 = 3;
const TYPE_TXT: u16 = 16;

/// The identity and version strings; an empty one is not told at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerIdentity {
    /// NSID, and the TXT of `id.server.` and `hostname.bind.` (`--identity`).
    pub identity: Arc<str>,
    /// The TXT of `version.server.` and `version.bind.` (`--version-string`).
    pub version: Arc<str>,
}

impl ServerIdentity {
    /// Longest string either may be: one TXT character-string.
    pub const MAX_LEN: usize = 255;

    /// The NSID payload, unless the identity is turned off.
    pub(super) fn nsid(&self) -> Option<&[u8]> {
        (!self.identity.is_empty()).then_some(self.identity.as_bytes())
    }

    /// The text a CHAOS query for `key` (lower-cased wire name) of type `qtype` is answered
    /// with; `None` is REFUSED: another name or type, or a string turned off (as Knot).
    pub(super) fn chaos_text(&self, key: &[u8], qtype: u16) -> Option<&[u8]> {
        if qtype != TYPE_TXT {
            return None;
        }
        let text = match key {
            b"\x02id\x06server\x00" | b"\x08hostname\x04bind\x00" => &self.identity,
            b"\x07version\x06server\x00" | b"\x07version\x04bind\x00" => &self.version,
            _ => return None,
        };
        (!text.is_empty()).then_some(text.as_bytes())
    }
}

/// Appends the answer record `<question name> 0 CH TXT "<text>"` (`text` at most
/// [`ServerIdentity::MAX_LEN`] bytes), its owner a pointer to the question at offset 12.
pub(super) fn write_chaos_txt(out: &mut Vec<u8>, text: &[u8]) {
    let len = text.len().min(ServerIdentity::MAX_LEN);
    out.extend_from_slice(&[0xC0, 12]);
    out.extend_from_slice(&TYPE_TXT.to_be_bytes());
    out.extend_from_slice(&CLASS_CH.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(len as u16 + 1).to_be_bytes());
    out.push(len as u8);
    out.extend_from_slice(&text[..len]);
}

/// Puts the NSID option `nsid` into the OPT record that ends `out` (ours: empty RDATA), when
/// the message stays within `limit`; a message that would not is left without it, so asking
/// for NSID never costs a client records or sets TC. Returns whether it was added.
pub fn append_nsid(out: &mut Vec<u8>, nsid: &[u8], limit: usize) -> bool {
    let len = out.len();
    let ends_with_empty_opt = len >= 12 + 11
        && out[10..12] != [0, 0]
        && out[len - 11] == 0
        && out[len - 10..len - 8] == [0, 41]
        && out[len - 2..] == [0, 0];
    if !ends_with_empty_opt
        || len + 4 + nsid.len() > limit
        || nsid.len() > usize::from(u16::MAX) - 4
    {
        return false;
    }
    let rdata_len = (4 + nsid.len()) as u16;
    out[len - 2..].copy_from_slice(&rdata_len.to_be_bytes());
    out.extend_from_slice(&OPTION_NSID.to_be_bytes());
    out.extend_from_slice(&(nsid.len() as u16).to_be_bytes());
    out.extend_from_slice(nsid);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(identity: &str, version: &str) -> ServerIdentity {
        ServerIdentity {
            identity: identity.into(),
            version: version.into(),
        }
    }

    #[test]
    fn chaos_names_answer_their_string_and_nothing_else() {
        let server = identity("replica-1", "snapdns 0.1.0");
        let id: &[u8] = b"replica-1";
        let version: &[u8] = b"snapdns 0.1.0";
        assert_eq!(server.chaos_text(b"\x02id\x06server\x00", 16), Some(id));
        assert_eq!(server.chaos_text(b"\x08hostname\x04bind\x00", 16), Some(id));
        assert_eq!(
            server.chaos_text(b"\x07version\x06server\x00", 16),
            Some(version)
        );
        assert_eq!(
            server.chaos_text(b"\x07version\x04bind\x00", 16),
            Some(version)
        );
        assert_eq!(server.chaos_text(b"\x07version\x04bind\x00", 1), None);
        assert_eq!(server.chaos_text(b"\x07authors\x04bind\x00", 16), None);
        let off = identity("", "");
        assert_eq!(off.chaos_text(b"\x02id\x06server\x00", 16), None);
        assert_eq!(off.nsid(), None);
    }

    #[test]
    fn nsid_goes_into_our_opt_only_when_it_fits() {
        // Header with ARCOUNT 1, then an empty OPT record.
        let mut message = vec![0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        message.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
        let mut too_small = message.clone();
        assert!(!append_nsid(&mut too_small, b"abc", message.len() + 6));
        assert_eq!(too_small, message);
        assert!(append_nsid(&mut message, b"abc", 512));
        assert_eq!(&message[21..], &[0, 7, 0, 3, 0, 3, b'a', b'b', b'c']);
        // Not our empty OPT at the end (here: one already carrying NSID): left alone.
        let before = message.clone();
        assert!(!append_nsid(&mut message, b"abc", 512));
        assert_eq!(message, before);
    }
}
