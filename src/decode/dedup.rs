//! Deduplication by event `id` within a horizon of event time, in bounded
//! memory. Ids are remembered as 64-bit XXH3 hashes (a false duplicate needs
//! a hash collision among the remembered ids: about 1 in 3.7e7 with a full
//! million-id memory).

use crate::checkpoint::{CheckpointError, ReadResult, Reader, Writer};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// A `Hasher` for keys that are already uniformly distributed hashes.
#[derive(Default, Clone, Copy)]
pub struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are used; fold anything else in case it happens.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

pub type PreHashedMap<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;
pub type PreHashedMap128<V> = HashMap<u128, V, BuildHasherDefault<PreHashed>>;

/// Hash of an event id or a deal id.
#[inline]
pub fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    ts: i64,
    seq: u64,
}

/// The dedup memory of one partition.
#[derive(Debug)]
pub struct Dedup {
    horizon_ms: i64,
    capacity: usize,
    map: PreHashedMap<Entry>,
    /// Insertion order, for expiry and capacity eviction. May hold entries
    /// that were replaced since (their `seq` no longer matches the map).
    order: VecDeque<(u64, Entry)>,
    next_seq: u64,
    /// Live ids forgotten because the memory was full.
    pub evicted: u64,
}

impl Dedup {
    pub fn new(horizon_ms: i64, capacity: usize) -> Self {
        Dedup {
            horizon_ms,
            capacity: capacity.max(1),
            map: PreHashedMap::default(),
            order: VecDeque::new(),
            next_seq: 0,
            evicted: 0,
        }
    }

    /// Returns `true` when `id_hash` is a duplicate at engine time `now`;
    /// otherwise remembers it with `ts_eff` and returns `false`.
    pub fn check_and_insert(&mut self, id_hash: u64, ts_eff: i64, now: i64) -> bool {
        let cutoff = now.saturating_sub(self.horizon_ms);
        if let Some(e) = self.map.get(&id_hash) {
            if e.ts >= cutoff {
                return true;
            }
        }
        self.expire(cutoff);
        while self.order.len() >= self.capacity {
            let (h, e) = self.order.pop_front().expect("non-empty");
            if self.remove_if_live(h, e) {
                self.evicted += 1;
            }
        }
        let e = Entry {
            ts: ts_eff,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.map.insert(id_hash, e);
        self.order.push_back((id_hash, e));
        false
    }

    /// Loads the map slot of `id_hash` ahead of
    /// [`check_and_insert`](Self::check_and_insert), so that the cache
    /// misses of several events overlap. Changes nothing.
    #[inline]
    pub fn touch(&self, id_hash: u64) {
        std::hint::black_box(self.map.contains_key(&id_hash));
    }

    /// Loads the map slot of the `n`th oldest entry in insertion order:
    /// expiry or capacity eviction looks it up about `n` insertions from
    /// now. Changes nothing.
    #[inline]
    pub fn touch_nth(&self, n: usize) {
        if let Some((h, _)) = self.order.get(n) {
            std::hint::black_box(self.map.contains_key(h));
        }
    }

    fn remove_if_live(&mut self, h: u64, e: Entry) -> bool {
        match self.map.get(&h) {
            Some(cur) if cur.seq == e.seq => {
                self.map.remove(&h);
                true
            }
            _ => false,
        }
    }

    /// Forgets entries at the front of the insertion order that are expired
    /// or stale. Entries behind a live one wait their turn; the lookup in
    /// [`check_and_insert`](Self::check_and_insert) ignores expired entries,
    /// so this only bounds memory and never changes a decision.
    fn expire(&mut self, cutoff: i64) {
        while let Some(&(h, e)) = self.order.front() {
            let live = self.map.get(&h).is_some_and(|cur| cur.seq == e.seq);
            if live && e.ts >= cutoff {
                break;
            }
            self.order.pop_front();
            if live {
                self.map.remove(&h);
            }
        }
    }

    /// Checkpoint encoding: the insertion order verbatim (stale entries
    /// included, so capacity evictions happen exactly when they would have
    /// without a restart); the map is the last entry of each hash in it.
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.uvar(self.next_seq);
        w.uvar(self.evicted);
        w.uvar(self.order.len() as u64);
        let (mut ts, mut seq) = (0i64, 0u64);
        for (h, e) in &self.order {
            w.u64_fixed(*h);
            w.ivar(e.ts.wrapping_sub(ts));
            w.uvar(e.seq.wrapping_sub(seq));
            (ts, seq) = (e.ts, e.seq);
        }
    }

    pub(crate) fn decode_from(&mut self, r: &mut Reader<'_>) -> ReadResult<()> {
        self.next_seq = r.uvar()?;
        self.evicted = r.uvar()?;
        let n = r.count(10)?;
        self.order = VecDeque::with_capacity(n);
        self.map = PreHashedMap::default();
        self.map.reserve(n);
        let (mut ts, mut seq) = (0i64, 0u64);
        for i in 0..n {
            let h = r.u64_fixed()?;
            ts = ts.wrapping_add(r.ivar()?);
            let d = r.uvar()?;
            if i > 0 && d == 0 {
                return Err(CheckpointError::Corrupt(
                    "dedup order not increasing".into(),
                ));
            }
            seq = seq.wrapping_add(d);
            let e = Entry { ts, seq };
            self.order.push_back((h, e));
            self.map.insert(h, e);
        }
        if n > 0 && seq >= self.next_seq {
            return Err(CheckpointError::Corrupt("dedup sequence".into()));
        }
        Ok(())
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_within_horizon_only() {
        let mut d = Dedup::new(1000, 100);
        assert!(!d.check_and_insert(1, 0, 0));
        assert!(d.check_and_insert(1, 0, 500));
        assert!(d.check_and_insert(1, 0, 1000));
        // Older than the horizon at the time of the second arrival.
        assert!(!d.check_and_insert(1, 1001, 1001));
        assert!(d.check_and_insert(1, 1001, 1500));
    }

    #[test]
    fn bounded_by_capacity_and_counts_evictions() {
        let mut d = Dedup::new(i64::MAX / 4, 10);
        for h in 0..100u64 {
            assert!(!d.check_and_insert(h, 0, 0));
            assert!(d.len() <= 10);
            assert!(d.order.len() <= 10);
        }
        assert_eq!(d.evicted, 90);
        assert!(d.check_and_insert(99, 0, 0));
        assert!(!d.check_and_insert(0, 0, 0));
    }

    #[test]
    fn expiry_frees_memory() {
        let mut d = Dedup::new(10, 1000);
        for i in 0..500 {
            d.check_and_insert(i as u64, i, i);
        }
        assert!(d.len() <= 12, "{}", d.len());
    }
}
