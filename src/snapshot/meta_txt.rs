//! A node's `Meta` as TXT records, in Consul's format (`makeTXTRecordFromNodeMeta`,
//! `encodeKVasRFC1464`): one record per pair, `key=value` with RFC 1464 escaping, the bare value
//! for `rfc1035-` keys. Consul's order is Go map iteration (random); here it is key order, so
//! every replica gives the same answer.

use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, Record};

use crate::registry::Node;

/// The TXT records of `node`'s metadata, owned by `owner`, in key order; none without metadata.
pub(super) fn node_meta_records(owner: &Name, ttl: u32, node: &Node) -> Vec<Record> {
    node.meta
        .iter()
        .map(|(key, value)| {
            Record::from_rdata(
                owner.clone(),
                ttl,
                RData::TXT(TXT::new(vec![meta_text(key, value)])),
            )
        })
        .collect()
}

/// One pair as Consul writes it: a key starting with `rfc1035-` (any case) gives the bare value;
/// otherwise `key=value`, where in the key a backquote is doubled, `=` is preceded by a
/// backquote and so is each leading and trailing space, and in the value a backquote is doubled.
fn meta_text(key: &str, value: &str) -> String {
    let is_bare = key
        .get(..8)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("rfc1035-"));
    if is_bare {
        return value.to_string();
    }
    let key = key.replace('`', "``").replace('=', "`=");
    // Consul backquotes the leading spaces, then the trailing spaces of the result.
    let rest = key.trim_start_matches(' ');
    let key = format!("{}{rest}", "` ".repeat(key.len() - rest.len()));
    let head = key.trim_end_matches(' ');
    let key = format!("{head}{}", "` ".repeat(key.len() - head.len()));
    format!("{key}={}", value.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::meta_text;

    #[test]
    fn pairs_are_escaped_as_consul_does() {
        // Consul's TestDNS_EncodeKVasRFC1464, from the examples of RFC 1464.
        for (key, value, expected) in [
            ("color", "blue", "color=blue"),
            ("equation", "a=4", "equation=a=4"),
            ("a=a", "true", "a`=a=true"),
            ("a\\=a", "false", "a\\`=a=false"),
            ("=", "\\=", "`==\\="),
            ("string", "\"Cat\"", "string=\"Cat\""),
            ("string2", "`abc`", "string2=``abc``"),
            ("novalue", "", "novalue="),
            ("a b", "c d", "a b=c d"),
            ("abc ", "123 ", "abc` =123 "),
            (" abc", " 321", "` abc= 321"),
            ("`a", "b", "``a=b"),
            ("  two ", "x", "` ` two` =x"),
            ("rfc1035-a", "b", "b"),
            ("RFC1035-x", "bare value", "bare value"),
        ] {
            assert_eq!(meta_text(key, value), expected, "{key:?} = {value:?}");
        }
    }
}
