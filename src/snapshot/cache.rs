//! The zone cache: a built snapshot in a form that is served again without encoding a record,
//! so a restart answers within a second whatever the registry's size.
//!
//! What is written is everything a rebuild needs besides the registry state: the encoded
//! fragment of every served service, which registry keys feed each of them, what each key
//! leaves out of DNS, the counts, and which base and which zone options it was built from.
//! [`Snapshot::from_cache`] serves it as it is (its state holds no services: the sync must not
//! start from it), and [`Snapshot::rebuild_over`] later takes in the real state, re-encoding
//! only the services that differ from the base the cache was built for.
//!
//! Payload layout (the file's framing is `persist/zone_cache.rs`):
//!
//! ```text
//! options: bytes        the zone options it was built with, as [`options_key`] writes them
//! base: uint x 3        generation, saved_at_ms and index of the base it belongs to
//! fetched_at_ms, serial, services, instances, passing: uint
//! skips: uint n, n x (reason: bytes, keys: uint m, m x (key: bytes, count: uint, example: bytes))
//! served_from: uint n, n x (served: bytes, keys: uint m, m x key: bytes)
//! watching: uint n, n x (served: bytes, names: uint m, m x name: bytes)
//! fragments: uint chunks, chunks x (bytes: uint n, n x (served: bytes, fragment))
//! ```
//!
//! A fragment holds its reverse names too (`zone/codec.rs`), and `options` the
//! `srv-node-meta-txt` switch: both shape the answers.
//!
//! Fragments come in chunks so that they are decoded on several threads.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use imbl::OrdMap;

use super::build::ZoneOptions;
use super::health::HealthFilter;
use super::names::{BAD_ADDRESS, BAD_NODE_NAME, BAD_SERVICE_NAME, BAD_TAG};
use super::nameservers::apex;
use super::parts::{Parts, SkipIndex};
use super::{Snapshot, SnapshotStats};
use crate::registry::RegistryState;
use crate::zone::codec::{DecodeError, Decoder, Encoder};
use crate::zone::Fragment;

/// Fragments per chunk of the payload.
const CHUNK: usize = 2048;

/// Why a zone cache cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The bytes are not a zone cache (damaged, or cut short).
    #[error(transparent)]
    Damaged(#[from] DecodeError),
    /// It was built with other zone options (domain, datacenter, TTLs, per-service TTLs,
    /// health filter, name servers).
    #[error("built with other zone options")]
    OtherOptions,
    /// Building the zone from its fragments failed.
    #[error("cannot index the cached zone: {0}")]
    Build(#[from] hickory_proto::ProtoError),
}

/// The base a zone cache belongs to: the persisted state file it was built from (the fields of
/// `persist::BaseId`, named here so that the snapshot does not depend on the persistence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseId {
    /// The base's generation.
    pub generation: u64,
    /// When the base was saved, in ms since the Unix epoch.
    pub saved_at_ms: u64,
    /// The registry index of the base's state.
    pub index: u64,
}

/// A snapshot read from a zone cache, and the base it was built for.
#[derive(Debug)]
pub struct Cached {
    /// The snapshot, ready to publish; its state has the base's index and no services.
    pub snapshot: Snapshot,
    /// The base whose state the cache was built from.
    pub base: BaseId,
}

/// The zone options as bytes: a cache is served only with exactly these.
fn options_key(options: &ZoneOptions) -> Vec<u8> {
    let mut encoder = Encoder::default();
    encoder.bytes(options.domain.to_ascii().to_ascii_lowercase().as_bytes());
    encoder.bytes(options.datacenter.to_ascii_lowercase().as_bytes());
    for ttl in [options.service_ttl, options.node_ttl, options.negative_ttl] {
        encoder.uint(u64::from(ttl));
    }
    let nameservers = options.nameservers.key_items();
    encoder.uint(nameservers.len() as u64);
    for item in &nameservers {
        encoder.bytes(item.as_bytes());
    }
    // Added after the fields above: a cache written before has a shorter key, so it differs.
    encoder.uint(match options.health {
        HealthFilter::PassingOnly => 0,
        HealthFilter::PassingOrWarning => 1,
    });
    encoder.uint(options.service_ttls.patterns().count() as u64);
    for (pattern, ttl) in options.service_ttls.patterns() {
        encoder.bytes(pattern.as_bytes());
        encoder.uint(u64::from(ttl));
    }
    encoder.uint(u64::from(options.srv_node_meta_txt));
    encoder.out
}

impl Snapshot {
    /// Writes this snapshot's zone cache to `out`: `base` is the base its state was saved as.
    /// A snapshot read from a cache has no options and writes none: it is never written back.
    pub fn write_cache(&self, base: &BaseId, out: &mut dyn Write) -> io::Result<()> {
        let parts = &self.parts;
        let mut encoder = Encoder::default();
        encoder.bytes(&parts.options.as_ref().map(options_key).unwrap_or_default());
        for value in [base.generation, base.saved_at_ms, base.index] {
            encoder.uint(value);
        }
        let fetched_at_ms = self
            .fetched_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        encoder.uint(fetched_at_ms);
        encoder.uint(u64::from(self.zone.serial()));
        for count in [
            self.stats.services,
            self.stats.instances,
            self.stats.passing_instances,
        ] {
            encoder.uint(count as u64);
        }
        encoder.uint(parts.skips.by_reason.len() as u64);
        for (reason, keys) in &parts.skips.by_reason {
            encoder.bytes(reason.as_bytes());
            encoder.uint(keys.len() as u64);
            for (key, (count, example)) in keys {
                encoder.bytes(key.as_bytes());
                encoder.uint(*count as u64);
                encoder.bytes(example.as_bytes());
            }
            flush(&mut encoder, out)?;
        }
        encoder.uint(parts.served_from.len() as u64);
        for (served, keys) in &parts.served_from {
            encoder.bytes(served.as_bytes());
            encoder.uint(keys.len() as u64);
            for key in keys.iter() {
                encoder.bytes(key.as_bytes());
            }
            flush(&mut encoder, out)?;
        }
        encoder.uint(parts.watching.len() as u64);
        for (served, names) in &parts.watching {
            encoder.bytes(served.as_bytes());
            encoder.uint(names.len() as u64);
            for name in names.iter() {
                encoder.bytes(name);
            }
        }
        flush(&mut encoder, out)?;
        encoder.uint(parts.fragments.len().div_ceil(CHUNK) as u64);
        let mut chunk = Encoder::default();
        let mut in_chunk = 0;
        let total = parts.fragments.len();
        for (done, (served, fragment)) in parts.fragments.iter().enumerate() {
            chunk.bytes(served.as_bytes());
            chunk.fragment(fragment);
            in_chunk += 1;
            if in_chunk == CHUNK || done + 1 == total {
                encoder.uint(in_chunk as u64);
                encoder.bytes(&chunk.out);
                flush(&mut encoder, out)?;
                chunk.out.clear();
                in_chunk = 0;
            }
        }
        flush(&mut encoder, out)
    }

    /// Reads a zone cache written by [`Snapshot::write_cache`] with the same `options`.
    pub fn from_cache(bytes: &[u8], options: &ZoneOptions) -> Result<Cached, CacheError> {
        let mut decoder = Decoder::new(bytes);
        if decoder.bytes()? != options_key(options).as_slice() {
            return Err(CacheError::OtherOptions);
        }
        let base = BaseId {
            generation: decoder.uint()?,
            saved_at_ms: decoder.uint()?,
            index: decoder.uint()?,
        };
        let fetched_at = UNIX_EPOCH + Duration::from_millis(decoder.uint()?);
        let serial = u32::try_from(decoder.uint()?).map_err(|_| DecodeError("serial"))?;
        let mut counts = [0usize; 3];
        for count in &mut counts {
            *count = usize::try_from(decoder.uint()?).map_err(|_| DecodeError("count"))?;
        }
        let [services, instances, passing] = counts;
        // No options: an ordinary rebuild must not take these parts as the previous build's,
        // since the snapshot's state is not the one they describe (see `rebuild_over`).
        let mut parts = Parts {
            options: None,
            instances,
            passing,
            skips: skips(&mut decoder)?,
            served_from: served_from(&mut decoder)?,
            ..Parts::default()
        };
        for _ in 0..decoder.count(2)? {
            let served: Arc<str> = Arc::from(text(&mut decoder)?);
            let names = (0..decoder.count(1)?)
                .map(|_| decoder.bytes().map(Arc::from))
                .collect::<Result<Vec<Arc<[u8]>>, _>>()?;
            parts.watch(&served, names);
        }
        parts.fragments = fragments(&mut decoder)?;
        if decoder.remaining() != 0 {
            return Err(DecodeError("trailing bytes").into());
        }
        let state = Arc::new(RegistryState {
            index: base.index,
            ..RegistryState::default()
        });
        let all: Vec<&Fragment> = parts.fragments.values().map(AsRef::as_ref).collect();
        let domain = options.domain.to_lowercase();
        let zone = apex(&domain, serial, options)
            .map_err(|super::BuildError::Encode(e)| e)?
            .build_with(&all)?;
        let snapshot = Self {
            zone,
            state,
            fetched_at,
            stats: SnapshotStats {
                services,
                instances,
                passing_instances: passing,
            },
            skipped: parts.skipped(),
            node_ttl: options.node_ttl,
            parts,
            derived: false,
        };
        Ok(Cached { snapshot, base })
    }

    /// The snapshot of `state` built over `cached` (read by [`Snapshot::from_cache`] with
    /// `options`), whose base held `base_state`: only the services that differ between the two
    /// are encoded.
    pub fn rebuild_over(
        cached: &Self,
        base_state: Arc<RegistryState>,
        state: Arc<RegistryState>,
        fetched_at: SystemTime,
        options: &ZoneOptions,
    ) -> Result<Self, super::BuildError> {
        let mut parts = cached.parts.clone();
        parts.options = Some(options.clone());
        let previous = (base_state.as_ref(), &parts, &cached.zone);
        Self::build_over(Some(previous), state, fetched_at, options)
    }
}

/// Writes out what `encoder` holds once it is large enough to be worth a write (or at the end).
fn flush(encoder: &mut Encoder, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(&encoder.out)?;
    encoder.out.clear();
    Ok(())
}

fn text<'a>(decoder: &mut Decoder<'a>) -> Result<&'a str, DecodeError> {
    std::str::from_utf8(decoder.bytes()?).map_err(|_| DecodeError("text is not UTF-8"))
}

fn skips(decoder: &mut Decoder<'_>) -> Result<SkipIndex, DecodeError> {
    let mut skips = SkipIndex::default();
    for _ in 0..decoder.count(2)? {
        let reason = text(decoder)?;
        let reason = [BAD_SERVICE_NAME, BAD_TAG, BAD_NODE_NAME, BAD_ADDRESS]
            .into_iter()
            .find(|known| *known == reason)
            .ok_or(DecodeError("unknown skip reason"))?;
        let mut keys = OrdMap::new();
        let mut total = 0usize;
        for _ in 0..decoder.count(3)? {
            let key: Arc<str> = Arc::from(text(decoder)?);
            let count = usize::try_from(decoder.uint()?).map_err(|_| DecodeError("count"))?;
            total = total.saturating_add(count);
            keys.insert(key, (count, text(decoder)?.to_string()));
        }
        if !keys.is_empty() {
            skips.by_reason.insert(reason, keys);
            skips.totals.insert(reason, total);
        }
    }
    Ok(skips)
}

/// Served service -> the registry keys feeding it, as `Parts` keeps them.
type ServedFrom = OrdMap<Arc<str>, Arc<[Arc<str>]>>;

fn served_from(decoder: &mut Decoder<'_>) -> Result<ServedFrom, DecodeError> {
    let mut out = OrdMap::new();
    for _ in 0..decoder.count(2)? {
        let served: Arc<str> = Arc::from(text(decoder)?);
        let keys = (0..decoder.count(1)?)
            .map(|_| text(decoder).map(Arc::from))
            .collect::<Result<Vec<Arc<str>>, _>>()?;
        out.insert(served, keys.into());
    }
    Ok(out)
}

/// The fragments, chunk by chunk on as many threads as there are cores (up to 8).
fn fragments(decoder: &mut Decoder<'_>) -> Result<OrdMap<Arc<str>, Arc<Fragment>>, DecodeError> {
    let chunks = (0..decoder.count(2)?)
        .map(|_| Ok((decoder.uint()?, decoder.bytes()?)))
        .collect::<Result<Vec<(u64, &[u8])>, DecodeError>>()?;
    let decoded = super::threads::on_threads(&chunks, |(count, bytes)| {
        let mut decoder = Decoder::new(bytes);
        let count = usize::try_from(*count).map_err(|_| DecodeError("count"))?;
        if count > bytes.len() {
            return Err(DecodeError("count past the end"));
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let served: Arc<str> = Arc::from(text(&mut decoder)?);
            out.push((served, Arc::new(decoder.fragment()?)));
        }
        if decoder.remaining() != 0 {
            return Err(DecodeError("trailing bytes in a chunk"));
        }
        Ok(out)
    });
    if decoded.len() != chunks.len() {
        return Err(DecodeError("a chunk was not decoded"));
    }
    let mut out = OrdMap::new();
    for chunk in decoded {
        out.extend(chunk?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
