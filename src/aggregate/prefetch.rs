//! Key lookups done ahead of applying an event ([`KeyHint`], and
//! [`KeyHints`] for batches) and the prefetch stages of the batch pipeline:
//! the cache lines an event will touch are requested while earlier events
//! of the batch are applied.

use super::apply::is_traffic;
use super::calendar::Slot;
use super::key::{KeyState, Rings};
use super::pending::Group;
use super::ring::Ring;
use super::v2::{touches_v2, V2Key};
use super::Aggregator;
use crate::decode::{Body, Event};
use crate::util::prefetch::{prefetch, prefetch_all};

/// A key lookup done ahead of applying an event: see
/// [`Aggregator::key_hint`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHint {
    pub(super) hash: u128,
    /// `NO_KEY` when the pair was not in the cache.
    pub(super) key: u32,
}

pub(super) const NO_KEY: u32 = u32::MAX;

/// A prefetchable copy of the aggregator's key cache, for batches: three
/// entries per cache-line-sized bucket at a position computed from the pair
/// hash alone, so that the line can be prefetched while the event is still
/// being decoded (a `HashMap` probe can only be done, not prefetched). A
/// miss falls back to the aggregator's cache; entries are copied from it
/// (never from overflow pairs, which must go through label interning), so
/// a hit always equals what that cache would answer.
#[derive(Debug, Default)]
pub(crate) struct KeyHints {
    pub(super) buckets: Vec<HintBucket>,
}

#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct HintBucket {
    pub(super) hash: [u128; HINT_SLOTS],
    pub(super) key: [u32; HINT_SLOTS],
}

/// Entries per bucket: as many as fit one cache line. With two, at the
/// table's load of 0.5 to 1 key per bucket, about 7% of the keys of a
/// 100k-key partition found no entry, evicted each other and took an
/// unprefetched `HashMap` probe (two dependent cache misses); with three,
/// about 2%.
const HINT_SLOTS: usize = 3;
const _: () = assert!(std::mem::size_of::<HintBucket>() == 64);

const EMPTY_BUCKET: HintBucket = HintBucket {
    hash: [0; HINT_SLOTS],
    key: [NO_KEY; HINT_SLOTS],
};

impl KeyHints {
    /// The pair hash of `ev`, prefetching its bucket.
    #[inline]
    pub fn start(&self, ev: &Event<'_>) -> u128 {
        let hash = pair_hash(&ev.channel, &ev.campaign);
        if !self.buckets.is_empty() {
            prefetch(&self.buckets[self.index(hash)]);
        }
        hash
    }

    #[inline]
    pub(super) fn index(&self, hash: u128) -> usize {
        (hash as usize) & (self.buckets.len() - 1)
    }

    /// The key lookup of a pair hash from [`start`](Self::start), as
    /// [`Aggregator::key_hint`] would answer it.
    #[inline]
    pub fn resolve(&mut self, agg: &Aggregator, hash: u128) -> KeyHint {
        if agg.keys.len() >= self.buckets.len() {
            // Room for twice the keys; refilled from the aggregator's cache.
            let n = (agg.keys.len() * 2).next_power_of_two().max(1024) / 2;
            self.buckets = vec![EMPTY_BUCKET; n];
        }
        let i = self.index(hash);
        let b = &mut self.buckets[i];
        for s in 0..HINT_SLOTS {
            if b.key[s] != NO_KEY && b.hash[s] == hash {
                return KeyHint {
                    hash,
                    key: b.key[s],
                };
            }
        }
        let key = agg.cache.get(&hash).copied().unwrap_or(NO_KEY);
        if key != NO_KEY {
            let s = (0..HINT_SLOTS)
                .find(|&s| b.key[s] == NO_KEY)
                .unwrap_or((hash >> 64) as usize % HINT_SLOTS);
            b.hash[s] = hash;
            b.key[s] = key;
        }
        KeyHint { hash, key }
    }
}

impl Aggregator {
    /// The key lookup of `ev`, done ahead of [`apply_hinted`](Self::apply_hinted)
    /// (for batches: the lookups of several events then overlap). A key
    /// found stays valid: keys and their cache entries are never removed.
    #[inline]
    pub(crate) fn key_hint(&self, ev: &Event<'_>) -> KeyHint {
        let hash = pair_hash(&ev.channel, &ev.campaign);
        let key = self.cache.get(&hash).copied().unwrap_or(NO_KEY);
        KeyHint { hash, key }
    }

    /// Prefetches the key state of a found key: its first cache line and
    /// the lines of its totals that `ev` updates.
    #[inline]
    pub(crate) fn prefetch_key(&self, ev: &Event<'_>, hint: KeyHint) {
        if let Some(k) = self.keys.get(hint.key as usize) {
            prefetch(k);
            let t = &k.totals;
            match &ev.body {
                Body::Impression { .. } | Body::Click { .. } | Body::Spend { .. } => prefetch(t),
                Body::Lead { stage } => prefetch(&t.leads[*stage as usize]),
                Body::Deal { stage, .. } => {
                    prefetch(&t.deals[*stage as usize]);
                    prefetch(&t.revenue_won);
                    prefetch(&t.open_pipeline);
                }
                Body::Subscription { change, .. } => {
                    prefetch(&t.mrr_movement[*change as usize]);
                    prefetch(&t.mrr);
                }
                _ => {}
            }
            if touches_v2(&ev.body) {
                prefetch(&k.v2);
            }
        }
    }

    /// Prefetches the log entries `ev` will use and, when the log is about
    /// to be added to the rings, the whole log and the ring pointers (its
    /// key's first line should be in cache already, see
    /// [`prefetch_key`](Self::prefetch_key)).
    #[inline]
    pub(crate) fn prefetch_rings(&self, ev: &Event<'_>, hint: KeyHint) {
        if let Some(v) = self.v2_of(ev, hint) {
            v.prefetch_fields(&ev.body);
        }
        let Some(k) = self.keys.get(hint.key as usize) else {
            return;
        };
        if is_traffic(&ev.body) && k.absorbs(ev.ts) || is_v2(&ev.body) {
            return;
        }
        let n = usize::from(k.log_len);
        if k.flush_coming() {
            prefetch_all(&k.log);
            prefetch(&k.leads);
            prefetch(&k.subs);
        } else {
            // The last entry (it may absorb this update) and the next.
            prefetch(&k.log.0[n.saturating_sub(1)]);
            if let Some(e) = k.log.0.get(n) {
                prefetch(e);
            }
        }
    }

    /// `ev`'s key if applying `ev` will likely flush its log into the rings
    /// (a hint for the prefetch stages).
    #[inline(always)]
    pub(super) fn flushing_key(&self, ev: &Event<'_>, hint: KeyHint) -> Option<&KeyState> {
        let k = self.keys.get(hint.key as usize)?;
        let absorbed = is_traffic(&ev.body) && k.absorbs(ev.ts) || is_v2(&ev.body);
        (!absorbed && k.flush_coming()).then_some(k)
    }

    /// `ev`'s key's v2 block when `ev` adds to its rings.
    #[inline(always)]
    fn v2_of(&self, ev: &Event<'_>, hint: KeyHint) -> Option<&V2Key> {
        let k = self.keys.get(hint.key as usize)?;
        k.v2.as_deref().filter(|_| touches_v2(&ev.body))
    }

    /// Prefetches the rings the log of `ev`'s key is about to be added to
    /// (the ring pointers should be in cache already, see
    /// [`prefetch_rings`](Self::prefetch_rings)).
    #[inline]
    pub(crate) fn prefetch_buckets(&self, ev: &Event<'_>, hint: KeyHint) {
        if let Some(v) = self.v2_of(ev, hint) {
            v.prefetch_rings(&ev.body);
        }
        let Some(k) = self.flushing_key(ev, hint) else {
            return;
        };
        fn pf<T>(r: &Rings<T>) {
            if let Some(r) = r {
                prefetch_all::<[T]>(r);
            }
        }
        let groups = k.log_groups;
        let has = |g: Group| groups & (1 << g as u8) != 0;
        if has(Group::Traffic) {
            pf(&k.traffic);
        }
        if has(Group::Leads) {
            pf(&k.leads);
        }
        if has(Group::Deals) {
            pf(&k.deals);
            pf(&k.cycles);
        }
        if has(Group::Subs) {
            pf(&k.subs);
        }
    }

    /// Prefetches where the log of `ev`'s key is about to append buckets:
    /// the end of the bytes of each of its rings still inside its window
    /// (the ring headers should be in cache already, see
    /// [`prefetch_buckets`](Self::prefetch_buckets)).
    #[inline]
    pub(crate) fn prefetch_tails(&self, ev: &Event<'_>, hint: KeyHint) {
        if let Some(v) = self.v2_of(ev, hint) {
            v.prefetch_tails(&ev.body, &self.slots, ev.ts);
        }
        let Some(k) = self.flushing_key(ev, hint) else {
            return;
        };
        fn pf<const N: usize>(r: &Rings<Ring<N>>, slots: &[Slot], ts: i64) {
            if let Some(r) = r {
                for (ring, slot) in r.iter().zip(slots) {
                    ring.prefetch_tail(slot.oldest(ts, false));
                }
            }
        }
        let (groups, specs) = (k.log_groups, &self.slots);
        let has = |g: Group| groups & (1 << g as u8) != 0;
        if has(Group::Traffic) {
            pf(&k.traffic, specs, ev.ts);
        }
        if has(Group::Leads) {
            pf(&k.leads, specs, ev.ts);
        }
        if has(Group::Deals) {
            pf(&k.deals, specs, ev.ts);
        }
        if has(Group::Subs) {
            pf(&k.subs, specs, ev.ts);
        }
    }
}

/// The v2 event types: their window part goes straight to the v2 rings,
/// never through the key's log, so they neither use nor flush it.
#[inline(always)]
fn is_v2(body: &Body<'_>) -> bool {
    matches!(
        body,
        Body::Session { .. } | Body::Email { .. } | Body::Survey { .. } | Body::Conversion { .. }
    )
}

/// 128-bit hash of a (channel, campaign) pair; `0xFF` never occurs in UTF-8,
/// so the separator makes the encoding unambiguous.
#[inline]
pub(super) fn pair_hash(channel: &str, campaign: &str) -> u128 {
    let mut buf = [0u8; 256];
    let (c, k) = (channel.as_bytes(), campaign.as_bytes());
    if c.len() + k.len() < buf.len() {
        buf[..c.len()].copy_from_slice(c);
        buf[c.len()] = 0xFF;
        buf[c.len() + 1..c.len() + 1 + k.len()].copy_from_slice(k);
        xxhash_rust::xxh3::xxh3_128(&buf[..c.len() + 1 + k.len()])
    } else {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(c);
        h.update(&[0xFF]);
        h.update(k);
        h.digest128()
    }
}
