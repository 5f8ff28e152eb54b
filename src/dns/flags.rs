//! Header flag bits as they sit in the third and fourth bytes of a DNS message (RFC 1035
//! §4.1.1, RFC 4035 §3.1.6), for the code that patches prepared or relayed responses in place.

/// Byte 2: this is a response.
pub(crate) const QR: u8 = 0x80;
/// Byte 2: authoritative answer.
pub(crate) const AA: u8 = 0x04;
/// Byte 2: truncated.
pub(crate) const TC: u8 = 0x02;
/// Byte 2: recursion desired.
pub(crate) const RD: u8 = 0x01;
/// Byte 3: recursion available.
pub(crate) const RA: u8 = 0x80;
/// Byte 3: authentic data.
pub(crate) const AD: u8 = 0x20;
/// Byte 3: checking disabled.
pub(crate) const CD: u8 = 0x10;
