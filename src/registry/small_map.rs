//! A small string-keyed map stored as a sorted boxed slice: the JSON objects of Consul's
//! entries (`TaggedAddresses`, `Meta`) hold a handful of keys, and a `BTreeMap` node costs
//! hundreds of bytes per entry, which adds up to tens of megabytes at 100,000 instances. Keys
//! are [`CompactString`]s (inline up to 24 bytes); an empty map allocates nothing.

use std::fmt;

use compact_str::CompactString;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A map from string keys to `V`, sorted by key, (de)serialised as a JSON object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmallMap<V>(Box<[(CompactString, V)]>);

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        Self(Box::default())
    }
}

impl<V> SmallMap<V> {
    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|index| &self.0[index].1)
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: impl Into<CompactString>, value: V) {
        let key = key.into();
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(index) => self.0[index].1 = value,
            Err(index) => {
                // Rare (maps are built whole when read): reallocating keeps the map exact.
                let mut entries = std::mem::take(&mut self.0).into_vec();
                entries.insert(index, (key, value));
                self.0 = entries.into_boxed_slice();
            }
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<K: Into<CompactString>, V> FromIterator<(K, V)> for SmallMap<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_pairs(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl<V> SmallMap<V> {
    /// Sorted for lookups; on duplicate keys the last one wins, as in a map.
    fn from_pairs(mut entries: Vec<(CompactString, V)>) -> Self {
        entries.reverse();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, earlier| later.0 == earlier.0);
        Self(entries.into_boxed_slice())
    }
}

impl<V: Serialize> Serialize for SmallMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SmallMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = SmallMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(CompactString, V)> =
                    Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some((key, value)) = access.next_entry::<CompactString, V>()? {
                    entries.push((key, value));
                }
                Ok(SmallMap::from_pairs(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use compact_str::CompactString;

    use super::SmallMap;

    #[test]
    fn reads_and_writes_a_json_object() {
        let map: SmallMap<CompactString> =
            serde_json::from_str(r#"{"wan": "b", "lan": "a", "lan": "c"}"#).unwrap();
        assert_eq!(
            map.get("lan").map(CompactString::as_str),
            Some("c"),
            "the last duplicate wins"
        );
        assert_eq!(map.get("wan").map(CompactString::as_str), Some("b"));
        assert_eq!(map.get("lan_ipv4"), None);
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            r#"{"lan":"c","wan":"b"}"#
        );
    }
}
