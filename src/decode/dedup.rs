//! Deduplication by event `id` in bounded memory (EVENTS.md, Duplicates):
//! an accepted id is remembered for the dedup horizon of engine time after
//! it was *accepted*, whatever the event's own `ts`, so the resend of an
//! event from last month is caught like the resend of a fresh one.
//!
//! Ids are remembered as 64-bit XXH3 hashes (a false duplicate needs a hash
//! collision among the remembered ids: about 1 in 3.7e7 with a full
//! million-id memory). Acceptance times never decrease (engine time is
//! monotonic), so the ids form a queue: the oldest is always at the front,
//! expiry and capacity eviction both pop it, and the set holds exactly the
//! ids of the queue. That costs 16 bytes per id in the queue and 9 (one
//! hash slot and its control byte) in the set, over hashbrown's load factor.
//!
//! Once the memory is full, every insertion removes the oldest id, and
//! hashbrown leaves a tombstone for some removals. It clears them by
//! rehashing in place only while the set holds at most half its capacity;
//! past that it doubles the table instead. A set filled to `capacity` by
//! doubling holds more than half, so it used to double once more, some 11
//! capacities of insertions later (about half an hour into a soak at the
//! default million ids): resident memory stepped up long after the
//! warm-up. The set is therefore given that final size when the queue first
//! fills (2 x `capacity` ids of room: 2^22 buckets, 38 MB, for a million),
//! and never grows after it
//! (`the_set_does_not_grow_once_the_memory_is_full`).

use crate::util::codec::{CheckpointError, ReadResult, Reader, Writer};
use crate::util::hash::PreHashed;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasherDefault;

/// The dedup memory of one partition.
#[derive(Debug)]
pub struct Dedup {
    horizon_ms: i64,
    capacity: usize,
    /// Every remembered id: exactly the ids of `order`.
    set: HashSet<u64, BuildHasherDefault<PreHashed>>,
    /// `(id hash, acceptance time)`, oldest first; times never decrease.
    order: VecDeque<(u64, i64)>,
    /// Live ids forgotten because the memory was full.
    pub evicted: u64,
    /// The set was given its final size (see the module comment).
    sized: bool,
}

impl Dedup {
    pub fn new(horizon_ms: i64, capacity: usize) -> Self {
        Dedup {
            horizon_ms,
            capacity: capacity.max(1),
            set: HashSet::default(),
            order: VecDeque::new(),
            evicted: 0,
            sized: false,
        }
    }

    /// Returns `true` when `id_hash` was accepted within the horizon before
    /// engine time `now` (`now - accepted <= horizon`); otherwise remembers
    /// it as accepted at `now` and returns `false`.
    pub fn check_and_insert(&mut self, id_hash: u64, now: i64) -> bool {
        self.expire(now.saturating_sub(self.horizon_ms));
        if self.set.contains(&id_hash) {
            return true;
        }
        while self.order.len() >= self.capacity {
            let (h, _) = self.order.pop_front().expect("non-empty");
            self.set.remove(&h);
            self.evicted += 1;
        }
        // Engine time is monotonic; the max keeps the queue ordered even
        // for a caller that is not.
        let at = self.order.back().map_or(now, |&(_, t)| t.max(now));
        self.set.insert(id_hash);
        self.order.push_back((id_hash, at));
        if self.order.len() == self.capacity && !self.sized {
            self.reach_final_size();
        }
        false
    }

    /// Room for 2 x `capacity` ids: the set then holds at most half its
    /// capacity for good, so hashbrown clears tombstones in place and never
    /// reallocates. Once only: a later `reserve` would count tombstones as
    /// used room and double the table.
    fn reach_final_size(&mut self) {
        self.sized = true;
        self.set
            .reserve((2 * self.capacity).saturating_sub(self.set.len()));
    }

    /// Loads the set slot of `id_hash` ahead of
    /// [`check_and_insert`](Self::check_and_insert), so that the cache
    /// misses of several events overlap. Changes nothing.
    #[inline]
    pub(crate) fn touch(&self, id_hash: u64) {
        std::hint::black_box(self.set.contains(&id_hash));
    }

    /// Loads the set slot of the `n`th oldest id: expiry or capacity
    /// eviction removes it about `n` insertions from now. Changes nothing.
    #[inline]
    pub(crate) fn touch_nth(&self, n: usize) {
        if let Some((h, _)) = self.order.get(n) {
            std::hint::black_box(self.set.contains(h));
        }
    }

    /// Forgets the ids accepted before `cutoff` (all at the front).
    fn expire(&mut self, cutoff: i64) {
        while let Some(&(h, at)) = self.order.front() {
            if at >= cutoff {
                break;
            }
            self.order.pop_front();
            self.set.remove(&h);
        }
    }

    /// Checkpoint encoding (format 2): the queue, oldest first, with
    /// delta-encoded acceptance times.
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.uvar(self.evicted);
        w.uvar(self.order.len() as u64);
        let mut prev = 0i64;
        for &(h, at) in &self.order {
            w.u64_fixed(h);
            w.ivar(at.wrapping_sub(prev));
            prev = at;
        }
    }

    /// Inverse of [`encode_into`](Self::encode_into) for checkpoint format
    /// `version`. Format 1 remembered ids by event time and did not record
    /// when they were accepted: its remembered ids are read as accepted at
    /// the checkpoint's engine time `engine_now` (no earlier than they really
    /// were, so each is remembered at least as long as the contract asks).
    pub(crate) fn decode_from(
        &mut self,
        r: &mut Reader<'_>,
        version: u16,
        engine_now: i64,
    ) -> ReadResult<()> {
        self.set = HashSet::default();
        self.order = VecDeque::new();
        self.sized = false;
        let read = self.decode_queue(r, version, engine_now);
        if self.order.len() >= self.capacity {
            self.reach_final_size();
        }
        read
    }

    fn decode_queue(
        &mut self,
        r: &mut Reader<'_>,
        version: u16,
        engine_now: i64,
    ) -> ReadResult<()> {
        if version == 1 {
            return self.decode_v1(r, engine_now);
        }
        self.evicted = r.uvar()?;
        let n = r.count(9)?;
        self.order.reserve(n);
        self.set.reserve(n);
        let mut at = 0i64;
        for i in 0..n {
            let h = r.u64_fixed()?;
            let d = r.ivar()?;
            if i > 0 && d < 0 {
                return Err(CheckpointError::Corrupt(
                    "dedup acceptance times decrease".into(),
                ));
            }
            at = at.wrapping_add(d);
            if !self.set.insert(h) {
                return Err(CheckpointError::Corrupt("dedup id repeated".into()));
            }
            self.order.push_back((h, at));
        }
        Ok(())
    }

    /// Format 1: `next_seq`, `evicted`, then the insertion order as
    /// `(hash, Δts, Δseq)` including stale entries (an id re-inserted after
    /// its event-time horizon); an id is live at its last position.
    fn decode_v1(&mut self, r: &mut Reader<'_>, engine_now: i64) -> ReadResult<()> {
        let next_seq = r.uvar()?;
        self.evicted = r.uvar()?;
        let n = r.count(10)?;
        let mut entries = Vec::with_capacity(n);
        let mut seq = 0u64;
        for i in 0..n {
            let h = r.u64_fixed()?;
            r.ivar()?;
            let d = r.uvar()?;
            if i > 0 && d == 0 {
                return Err(CheckpointError::Corrupt(
                    "dedup order not increasing".into(),
                ));
            }
            seq = seq.wrapping_add(d);
            entries.push(h);
        }
        if n > 0 && seq >= next_seq {
            return Err(CheckpointError::Corrupt("dedup sequence".into()));
        }
        let mut last: HashMap<u64, usize, BuildHasherDefault<PreHashed>> = HashMap::default();
        for (i, &h) in entries.iter().enumerate() {
            last.insert(h, i);
        }
        self.set.reserve(last.len());
        for (i, &h) in entries.iter().enumerate() {
            if last[&h] == i {
                self.set.insert(h);
                self.order.push_back((h, engine_now));
            }
        }
        Ok(())
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 1000;

    #[test]
    fn remembered_for_the_horizon_after_acceptance_whatever_the_event_time() {
        let mut d = Dedup::new(H, 100);
        // The event's own time plays no part: only when it was accepted.
        assert!(!d.check_and_insert(1, 5_000));
        assert!(d.check_and_insert(1, 5_500));
        assert!(d.check_and_insert(1, 5_000 + H));
        // One horizon and a millisecond after acceptance it is forgotten,
        // and accepting it again remembers it from then.
        assert!(!d.check_and_insert(1, 5_001 + H));
        assert!(d.check_and_insert(1, 5_001 + 2 * H));
        assert_eq!(d.len(), 1);
        assert_eq!(d.evicted, 0);
    }

    #[test]
    fn bounded_by_capacity_oldest_first_and_counts_evictions() {
        let mut d = Dedup::new(i64::MAX / 4, 10);
        for h in 0..100u64 {
            assert!(!d.check_and_insert(h, h as i64));
            assert!(d.len() <= 10);
            assert!(d.order.len() <= 10);
        }
        assert_eq!(d.evicted, 90);
        assert!(d.check_and_insert(99, 100));
        assert!(d.check_and_insert(90, 100));
        assert!(!d.check_and_insert(89, 100));
    }

    #[test]
    fn expiry_frees_memory() {
        let mut d = Dedup::new(10, 1000);
        for i in 0..500 {
            d.check_and_insert(i as u64, i);
        }
        assert!(d.len() <= 12, "{}", d.len());
        assert_eq!(d.len(), d.order.len());
        assert_eq!(d.evicted, 0);
    }

    /// Ids as the engine makes them: 64-bit hashes, spread over every bit.
    fn hashes() -> impl Iterator<Item = u64> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        std::iter::repeat_with(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        })
    }

    #[test]
    fn the_set_does_not_grow_once_the_memory_is_full() {
        // hashbrown's room (`capacity()`: items + growth left) is at its
        // largest right after an allocation; tombstones only lower it.
        // Without the final sizing, a set of 1,000 ids in 2,048 buckets
        // doubles to 4,096 about 12,000 insertions after filling.
        let cap = 1000;
        let mut d = Dedup::new(i64::MAX, cap);
        let mut ids = hashes();
        for (t, h) in ids.by_ref().take(cap).enumerate() {
            assert!(!d.check_and_insert(h, t as i64));
        }
        let room = d.set.capacity();
        assert!(room >= 2 * cap, "{room}");
        for (t, h) in ids.take(50 * cap).enumerate() {
            d.check_and_insert(h, (cap + t) as i64);
            assert!(
                d.set.capacity() <= room,
                "grew to {} after {t}",
                d.set.capacity()
            );
        }
        assert_eq!(d.len(), cap);
        assert_eq!(d.evicted, 50 * cap as u64);
        // A restored full memory is given the same room at once.
        let mut back = Dedup::new(i64::MAX, cap);
        back.decode_from(&mut Reader::new(&encoded(&d)), 2, 0)
            .unwrap();
        assert_eq!(back.set.capacity(), room);
    }

    #[test]
    fn a_clock_going_back_keeps_the_queue_ordered() {
        let mut d = Dedup::new(H, 100);
        assert!(!d.check_and_insert(1, 2_000));
        assert!(!d.check_and_insert(2, 1_500));
        assert_eq!(d.order[1], (2, 2_000));
    }

    fn encoded(d: &Dedup) -> Vec<u8> {
        let mut w = Writer { buf: Vec::new() };
        d.encode_into(&mut w);
        w.buf
    }

    #[test]
    fn checkpoint_round_trip_and_corruption() {
        let mut d = Dedup::new(H, 4);
        for (h, t) in [(7u64, 10i64), (8, 10), (9, 700), (10, 900), (11, 950)] {
            d.check_and_insert(h, t);
        }
        let bytes = encoded(&d);
        let mut back = Dedup::new(H, 4);
        back.decode_from(&mut Reader::new(&bytes), 2, 0).unwrap();
        assert_eq!(back.order, d.order);
        assert_eq!(back.set, d.set);
        assert_eq!(back.evicted, 1);
        // A repeated id or a decreasing time is corrupt, never accepted.
        let mut w = Writer { buf: Vec::new() };
        w.uvar(0);
        w.uvar(2);
        for (h, dt) in [(1u64, 5i64), (1, 1)] {
            w.u64_fixed(h);
            w.ivar(dt);
        }
        let err = Dedup::new(H, 4).decode_from(&mut Reader::new(&w.buf), 2, 0);
        assert!(matches!(err, Err(CheckpointError::Corrupt(_))), "{err:?}");
        let mut w = Writer { buf: Vec::new() };
        w.uvar(0);
        w.uvar(2);
        for (h, dt) in [(1u64, 5i64), (2, -1)] {
            w.u64_fixed(h);
            w.ivar(dt);
        }
        let err = Dedup::new(H, 4).decode_from(&mut Reader::new(&w.buf), 2, 0);
        assert!(matches!(err, Err(CheckpointError::Corrupt(_))), "{err:?}");
    }

    /// Format 1 (ids by event time, stale entries kept in insertion order):
    /// the live entries, in order, become ids accepted at the checkpoint's
    /// engine time.
    #[test]
    fn format_1_memory_is_read_as_accepted_at_the_checkpoint() {
        // next_seq 5, evicted 3; entries (hash, Δts, Δseq): id 1 at seq 0
        // is stale (re-inserted at seq 3).
        let mut w = Writer { buf: Vec::new() };
        w.uvar(5);
        w.uvar(3);
        w.uvar(4);
        for (h, dts, dseq) in [(1u64, 100i64, 0u64), (2, 5, 1), (3, -50, 1), (1, 9_000, 1)] {
            w.u64_fixed(h);
            w.ivar(dts);
            w.uvar(dseq);
        }
        let mut d = Dedup::new(H, 10);
        d.decode_from(&mut Reader::new(&w.buf), 1, 50_000).unwrap();
        assert_eq!(
            d.order.iter().copied().collect::<Vec<_>>(),
            [(2, 50_000), (3, 50_000), (1, 50_000)]
        );
        assert_eq!(d.evicted, 3);
        assert!(d.check_and_insert(3, 50_000 + H));
        assert!(!d.check_and_insert(3, 50_001 + H));
    }
}
