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
//! ids of the queue.
//!
//! The set is [`table::IdTable`], open addressing with linear probing over
//! the bare 8-byte hashes, kept at most half full, and deleting by backward
//! shift. Once the memory is full every insertion removes the oldest id;
//! with no tombstones that churn never rehashes, so the table grows with
//! the number of ids only and never reallocates once the memory has first
//! filled (`the_set_does_not_grow_once_the_memory_is_full`). hashbrown's set
//! did: it doubled a full million-id set again some 11M insertions after it
//! filled, to clear its tombstones.
//!
//! The queue is [`queue::Queue`]: 12 bytes an id, the hash and the gap in
//! milliseconds from the previous acceptance time (gaps of 49.7 days and
//! more, possible only with a horizon that long, are kept aside), instead
//! of 16 for `(hash, time)`.
//!
//! Memory at the default capacity of 1,000,000 ids, once full: the table's
//! 2^21 slots of 8 bytes (16.8 MB) and the queue's 2^20 entries of 12 bytes
//! (12.6 MB), 29.4 MB a partition, 29.4 bytes an id. hashbrown's set and a
//! queue of `(u64, i64)`: 2^22 buckets of 9 bytes once it had doubled (or
//! been reserved so), 37.7 MB, 54.5 MB with the queue.

mod queue;
mod table;

use crate::util::codec::{CheckpointError, ReadResult, Reader, Writer};
use crate::util::hash::PreHashed;
use queue::Queue;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use table::IdTable;

/// How far behind the id it removes [`Dedup::expire`] prefetches a slot.
const EXPIRE_AHEAD: usize = 8;

/// The dedup memory of one partition.
#[derive(Debug)]
pub struct Dedup {
    horizon_ms: i64,
    capacity: usize,
    /// Every remembered id: exactly the ids of `order`.
    set: IdTable,
    /// `(id hash, acceptance time)`, oldest first; times never decrease.
    order: Queue,
    /// Live ids forgotten because the memory was full.
    pub evicted: u64,
}

impl Dedup {
    pub fn new(horizon_ms: i64, capacity: usize) -> Self {
        Dedup {
            horizon_ms,
            capacity: capacity.max(1),
            set: IdTable::default(),
            order: Queue::default(),
            evicted: 0,
        }
    }

    /// Returns `true` when `id_hash` was accepted within the horizon before
    /// engine time `now` (`now - accepted <= horizon`); otherwise remembers
    /// it as accepted at `now` and returns `false`.
    pub fn check_and_insert(&mut self, id_hash: u64, now: i64) -> bool {
        self.expire(now.saturating_sub(self.horizon_ms));
        if self.set.contains(id_hash) {
            return true;
        }
        while self.order.len() >= self.capacity {
            let h = self.order.pop_front().expect("non-empty");
            self.set.remove(h);
            self.evicted += 1;
        }
        // Engine time is monotonic; the max keeps the queue ordered even
        // for a caller that is not.
        let at = self.order.back_at().map_or(now, |t| t.max(now));
        self.set.insert_absent(id_hash);
        self.order.push_back(id_hash, at);
        false
    }

    /// Starts loading the table slot of `id_hash` ahead of
    /// [`check_and_insert`](Self::check_and_insert), so that the cache
    /// misses of several events overlap (a prefetch: changes nothing).
    #[inline]
    pub(crate) fn touch(&self, id_hash: u64) {
        self.set.prefetch(id_hash);
    }

    /// Starts loading the table slot of the `n`th oldest id: expiry or
    /// capacity eviction removes it about `n` insertions from now (a
    /// prefetch: changes nothing).
    #[inline]
    pub(crate) fn touch_nth(&self, n: usize) {
        if let Some(h) = self.order.id(n) {
            self.set.prefetch(h);
        }
    }

    /// Forgets the ids accepted before `cutoff` (all at the front). When
    /// engine time jumps (a backfill ending, a restart after a pause), a
    /// whole day of ids can leave at once, each from a random slot: the
    /// slot of the id [`EXPIRE_AHEAD`] behind is loaded while the front one
    /// is removed, so that their misses overlap.
    fn expire(&mut self, cutoff: i64) {
        while self.order.front_at().is_some_and(|at| at < cutoff) {
            self.touch_nth(EXPIRE_AHEAD);
            let h = self.order.pop_front().expect("non-empty");
            self.set.remove(h);
        }
    }

    /// Checkpoint encoding (format 2): the queue, oldest first, with
    /// delta-encoded acceptance times.
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.uvar(self.evicted);
        w.uvar(self.order.len() as u64);
        let mut prev = 0i64;
        for (h, at) in self.order.iter() {
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
        self.set = IdTable::default();
        self.order = Queue::default();
        self.decode_queue(r, version, engine_now)
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
        // Room for `n`, rounded up as growth by doubling would (to at most
        // `capacity`, so a restored nearly full memory never doubles).
        let room = if n >= self.capacity {
            n
        } else {
            n.next_power_of_two().min(self.capacity)
        };
        self.order = Queue::with_capacity(room);
        self.set = IdTable::with_capacity(n);
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
            self.order.push_back(h, at);
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
        self.set = IdTable::with_capacity(last.len());
        for (i, &h) in entries.iter().enumerate() {
            if last[&h] == i {
                self.set.insert(h);
                self.order.push_back(h, engine_now);
            }
        }
        Ok(())
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Slots of the id table (8 bytes each): it grows with the ids
    /// remembered and never shrinks.
    pub fn table_slots(&self) -> usize {
        self.set.slot_count()
    }

    pub fn is_empty(&self) -> bool {
        self.set.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

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
        // The table grows with the ids it holds, never with churn: full
        // (1,000 ids at most half a table's load: 2,048 slots), it keeps
        // that size through 50 capacities of insertions and evictions,
        // where hashbrown doubled about 12,000 insertions after filling.
        let cap = 1000;
        let mut d = Dedup::new(i64::MAX, cap);
        let mut ids = hashes();
        for (t, h) in ids.by_ref().take(cap).enumerate() {
            assert!(!d.check_and_insert(h, t as i64));
        }
        let slots = d.set.slot_count();
        assert_eq!(slots, 2048);
        for (t, h) in ids.take(50 * cap).enumerate() {
            d.check_and_insert(h, (cap + t) as i64);
            assert_eq!(d.set.slot_count(), slots, "resized after {t} insertions");
        }
        d.set.check_invariants();
        assert_eq!(d.len(), cap);
        assert_eq!(d.evicted, 50 * cap as u64);
        // A restored full memory gets the same size at once.
        let mut back = Dedup::new(i64::MAX, cap);
        back.decode_from(&mut Reader::new(&encoded(&d)), 2, 0)
            .unwrap();
        assert_eq!(back.set.slot_count(), slots);
        // At the default capacity: 2^21 slots of 8 bytes.
        assert_eq!(table::slot_count_for(1_000_000), 1 << 21);
    }

    #[test]
    fn a_clock_going_back_keeps_the_queue_ordered() {
        let mut d = Dedup::new(H, 100);
        assert!(!d.check_and_insert(1, 2_000));
        assert!(!d.check_and_insert(2, 1_500));
        assert_eq!(d.order.iter().nth(1), Some((2, 2_000)));
    }

    fn sorted(t: &IdTable) -> Vec<u64> {
        let mut v: Vec<u64> = t.iter().collect();
        v.sort_unstable();
        v
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
        assert_eq!(
            back.order.iter().collect::<Vec<_>>(),
            d.order.iter().collect::<Vec<_>>()
        );
        assert_eq!(sorted(&back.set), sorted(&d.set));
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
            d.order.iter().collect::<Vec<_>>(),
            [(2, 50_000), (3, 50_000), (1, 50_000)]
        );
        assert_eq!(d.evicted, 3);
        assert!(d.check_and_insert(3, 50_000 + H));
        assert!(!d.check_and_insert(3, 50_001 + H));
    }

    #[test]
    fn gaps_of_49_days_and_more_under_a_longer_horizon() {
        // Gaps from u32::MAX ms on are kept aside; times come back exact
        // through expiry, eviction and a checkpoint.
        let big = 1i64 << 33;
        let mut d = Dedup::new(4 * big, 3);
        let times = [0, 5, 5 + big, 5 + big + u32::MAX as i64, 6 + 3 * big];
        for (h, &t) in times.iter().enumerate() {
            assert!(!d.check_and_insert(h as u64 + 1, t));
        }
        assert_eq!(d.evicted, 2);
        let want = [
            (3, 5 + big),
            (4, 5 + big + u32::MAX as i64),
            (5, 6 + 3 * big),
        ];
        assert_eq!(d.order.iter().collect::<Vec<_>>(), want);
        let mut back = Dedup::new(4 * big, 3);
        back.decode_from(&mut Reader::new(&encoded(&d)), 2, 0)
            .unwrap();
        assert_eq!(back.order.iter().collect::<Vec<_>>(), want);
        // Id 3 is remembered until 5 + 5 * big, then forgotten.
        assert!(back.check_and_insert(3, 5 + 5 * big));
        assert!(!back.check_and_insert(3, 6 + 5 * big));
        assert_eq!(
            back.order.iter().next(),
            Some((4, 5 + big + u32::MAX as i64))
        );
    }

    /// The contract's dedup memory written plainly: a queue of `(id, time
    /// accepted)`, searched from end to end.
    #[derive(Default)]
    struct Model {
        queue: VecDeque<(u64, i64)>,
        evicted: u64,
    }

    impl Model {
        fn check_and_insert(&mut self, id: u64, now: i64, horizon: i64, cap: usize) -> bool {
            self.queue
                .retain(|&(_, at)| now.saturating_sub(at) <= horizon);
            if self.queue.iter().any(|&(h, _)| h == id) {
                return true;
            }
            while self.queue.len() >= cap {
                self.queue.pop_front();
                self.evicted += 1;
            }
            let at = self.queue.back().map_or(now, |&(_, t)| t.max(now));
            self.queue.push_back((id, at));
            false
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// An event with this id, `dt` ms after the previous one.
        Event(u64, i64),
        Touch(u64),
        TouchNth(usize),
        /// Checkpoint and restore.
        Restore,
    }

    /// Ids whose low bits collide (home slots at the end of small tables,
    /// so chains wrap to slot 0), the id 0, and random ones.
    fn id() -> impl Strategy<Value = u64> {
        prop_oneof![
            8 => (0u64..5, prop::sample::select(vec![0u64, 1, 14, 15, 31, 63]))
                .prop_map(|(hi, lo)| (hi << 48) | lo),
            1 => any::<u64>(),
        ]
    }

    /// Mostly small steps, some back (a clock that is not monotonic), and
    /// some of 49.7 days and more (gaps the queue keeps aside).
    fn dt() -> impl Strategy<Value = i64> {
        prop_oneof![
            12 => 0i64..4,
            2 => -3i64..0,
            1 => (1i64 << 32) - 2..(1i64 << 34),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            12 => (id(), dt()).prop_map(|(h, dt)| Op::Event(h, dt)),
            1 => id().prop_map(Op::Touch),
            1 => (0usize..20).prop_map(Op::TouchNth),
            1 => Just(Op::Restore),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn matches_the_plain_model(
            cap in 1usize..40,
            horizon in prop_oneof![3 => 0i64..30, 1 => Just(1i64 << 36)],
            ops in prop::collection::vec(op(), 0..300),
        ) {
            let mut d = Dedup::new(horizon, cap);
            let mut m = Model::default();
            let mut now = 1_000i64;
            for op in ops {
                match op {
                    Op::Event(h, dt) => {
                        now += dt;
                        prop_assert_eq!(
                            d.check_and_insert(h, now),
                            m.check_and_insert(h, now, horizon, cap),
                            "id {:#x} at {}", h, now
                        );
                    }
                    Op::Touch(h) => d.touch(h),
                    Op::TouchNth(n) => d.touch_nth(n),
                    Op::Restore => {
                        let mut back = Dedup::new(horizon, cap);
                        back.decode_from(&mut Reader::new(&encoded(&d)), 2, now).unwrap();
                        d = back;
                    }
                }
                d.set.check_invariants();
                prop_assert_eq!(d.order.iter().collect::<Vec<_>>(),
                    m.queue.iter().copied().collect::<Vec<_>>());
                let mut ids: Vec<u64> = m.queue.iter().map(|&(h, _)| h).collect();
                ids.sort_unstable();
                prop_assert_eq!(sorted(&d.set), ids);
                prop_assert_eq!(d.len(), m.queue.len());
                prop_assert_eq!(d.evicted, m.evicted);
            }
        }
    }
}
