//! The set of remembered ids: an open-addressing table of `u64` hashes with
//! linear probing and deletion by backward shift (Knuth's Algorithm R), so a
//! removal leaves no tombstone and churn never calls for a rehash.
//!
//! An id lives at its home slot (`id & mask`) or after it, with no empty
//! slot in between. The value 0 marks an empty slot, so the id 0 is kept in
//! a flag (`zero`) instead. The table holds at most half as many ids as it
//! has slots (`count <= slots / 2`) and doubles only when an insertion
//! would pass that: it grows with the number of ids it holds, never with
//! the number of insertions and removals, so with at most `capacity` ids it
//! reaches `slot_count_for(capacity)` slots and stays there.
//!
//! Why half: at load a, linear probing reads on average (1 + 1/(1-a))/2
//! slots to find an id and (1 + 1/(1-a)^2)/2 to find it absent (Knuth),
//! 1.5 and 2.5 at a half, against 2.5 and 8.5 at three quarters, and the
//! 8-byte slots put 8 to a cache line, so a probe mostly stays in the home
//! slot's line. The default million ids fill 2^21 slots to 47.7% (16.8 MB),
//! and any limit from there to 95% gives that same size.

use crate::util::prefetch::prefetch;

/// The value of an empty slot.
const EMPTY: u64 = 0;
/// Slots of a new table (128 bytes).
const MIN_SLOTS: usize = 16;

/// Slots of a table sized for `n` ids: the smallest power of two, at least
/// [`MIN_SLOTS`], holding `n` at no more than half load.
pub(super) fn slot_count_for(n: usize) -> usize {
    n.saturating_mul(2).next_power_of_two().max(MIN_SLOTS)
}

#[derive(Debug)]
pub(super) struct IdTable {
    /// A power of two of them; `EMPTY` or an id stored at or after its home.
    slots: Box<[u64]>,
    /// Ids in `slots` (the id 0 not counted).
    count: usize,
    /// The id 0 is a member.
    zero: bool,
}

impl Default for IdTable {
    fn default() -> Self {
        IdTable::with_capacity(0)
    }
}

impl IdTable {
    /// A table that holds `n` ids without growing.
    pub(super) fn with_capacity(n: usize) -> Self {
        IdTable {
            slots: vec![EMPTY; slot_count_for(n)].into_boxed_slice(),
            count: 0,
            zero: false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.count + usize::from(self.zero)
    }

    /// Slots allocated (8 bytes each).
    pub(super) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    pub(super) fn contains(&self, id: u64) -> bool {
        if id == EMPTY {
            return self.zero;
        }
        let mask = self.mask();
        let mut i = id as usize & mask;
        loop {
            let s = self.slots[i];
            if s == id {
                return true;
            }
            if s == EMPTY {
                return false;
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `id`; `false` (and no change) if it is a member already.
    pub(super) fn insert(&mut self, id: u64) -> bool {
        if self.contains(id) {
            return false;
        }
        self.insert_absent(id);
        true
    }

    /// Adds `id`, which must not be a member.
    #[inline]
    pub(super) fn insert_absent(&mut self, id: u64) {
        debug_assert!(!self.contains(id), "{id:#x} inserted twice");
        if id == EMPTY {
            self.zero = true;
            return;
        }
        if self.count >= self.slots.len() / 2 {
            self.grow();
        }
        self.place(id);
        self.count += 1;
    }

    /// Stores `id` in the first empty slot from its home.
    #[inline]
    fn place(&mut self, id: u64) {
        let mask = self.mask();
        let mut i = id as usize & mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = id;
    }

    /// Removes `id`; `false` if it was not a member.
    #[inline]
    pub(super) fn remove(&mut self, id: u64) -> bool {
        if id == EMPTY {
            return std::mem::replace(&mut self.zero, false);
        }
        let mask = self.mask();
        let mut hole = id as usize & mask;
        loop {
            let s = self.slots[hole];
            if s == id {
                break;
            }
            if s == EMPTY {
                return false;
            }
            hole = (hole + 1) & mask;
        }
        // Backward shift: each id after the hole, up to the next empty slot,
        // moves into the hole unless its home lies cyclically after the hole
        // (in `(hole, j]`), where the move would put it before its home.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = s as usize & mask;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.count -= 1;
        true
    }

    /// Asks the CPU to start loading the home slot of `id` (a hint only:
    /// it never faults and changes no state).
    #[inline(always)]
    pub(super) fn prefetch(&self, id: u64) {
        prefetch(self.slots.as_ptr().wrapping_add(id as usize & self.mask()));
    }

    fn grow(&mut self) {
        let bigger = vec![EMPTY; self.slots.len() * 2].into_boxed_slice();
        let old = std::mem::replace(&mut self.slots, bigger);
        for &s in old.iter().filter(|&&s| s != EMPTY) {
            self.place(s);
        }
    }

    /// Every member, in no particular order (tests).
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.zero
            .then_some(0)
            .into_iter()
            .chain(self.slots.iter().copied().filter(|&s| s != EMPTY))
    }

    /// Every stored id is reachable from its home (no empty slot between),
    /// and the load limit holds (tests).
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let mask = self.mask();
        let mut n = 0;
        for (i, &s) in self.slots.iter().enumerate() {
            if s == EMPTY {
                continue;
            }
            n += 1;
            let mut k = s as usize & mask;
            while k != i {
                assert_ne!(self.slots[k], EMPTY, "{s:#x} at {i} cut off from {k}");
                k = (k + 1) & mask;
            }
        }
        assert_eq!(n, self.count);
        assert!(self.count <= self.slots.len() / 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// Ids whose low bits collide: `lo` picks the home slot in any table of
    /// up to 256 slots (15 and 255 are the last slot of a 16-slot table, so
    /// their chains wrap to slot 0); `hi` tells them apart.
    fn colliding() -> impl Strategy<Value = u64> {
        prop_oneof![
            8 => (0u64..6, prop::sample::select(vec![0u64, 1, 2, 14, 15, 31, 255]))
                .prop_map(|(hi, lo)| (hi << 40) | lo),
            1 => any::<u64>(),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => colliding().prop_map(Op::Insert),
            2 => colliding().prop_map(Op::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Against a `HashSet`: membership, length, the load limit and
        /// every id reachable from its home after each operation.
        #[test]
        fn behaves_as_a_set(ops in prop::collection::vec(op(), 0..200)) {
            let mut t = IdTable::default();
            let mut model = HashSet::new();
            for op in ops {
                match op {
                    Op::Insert(id) => prop_assert_eq!(t.insert(id), model.insert(id)),
                    Op::Remove(id) => prop_assert_eq!(t.remove(id), model.remove(&id)),
                }
                t.check_invariants();
                prop_assert_eq!(t.len(), model.len());
                for &id in &model {
                    prop_assert!(t.contains(id));
                }
                let mut got: Vec<u64> = t.iter().collect();
                got.sort_unstable();
                let mut want: Vec<u64> = model.iter().copied().collect();
                want.sort_unstable();
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn backward_shift_across_the_end_of_the_table() {
        // Four ids at home slot 15 of 16: they fill 15, 0, 1, 2; an id at
        // home 0 lands in 3. Removing the one at 15 shifts the chain back
        // over the wrap; the id at home 0 follows (to 2: still at or after
        // its home).
        let mut t = IdTable::default();
        assert_eq!(t.slot_count(), 16);
        let at15: Vec<u64> = (1..=4).map(|k| (k << 32) | 15).collect();
        let at0 = 7 << 32;
        for &id in &at15 {
            assert!(t.insert(id));
        }
        assert!(t.insert(at0));
        assert_eq!(t.slots[3], at0);
        assert!(t.remove(at15[0]));
        assert_eq!(&t.slots[15], &at15[1]);
        assert_eq!(&t.slots[..3], &[at15[2], at15[3], at0]);
        assert_eq!(t.slots[3], EMPTY);
        t.check_invariants();
        assert!(at15[1..].iter().all(|&id| t.contains(id)) && t.contains(at0));
        assert!(!t.contains(at15[0]));
    }

    #[test]
    fn the_id_zero_is_a_member_like_any_other() {
        let mut t = IdTable::default();
        assert!(!t.contains(0));
        assert!(t.insert(0));
        assert!(!t.insert(0));
        assert!(t.contains(0));
        assert_eq!(t.len(), 1);
        // Ids at home slot 0 are not confused with it.
        assert!(!t.contains(1 << 40));
        assert!(t.insert(1 << 40));
        assert!(t.remove(0));
        assert!(!t.remove(0));
        assert!(!t.contains(0) && t.contains(1 << 40));
        assert_eq!(t.len(), 1);
        t.check_invariants();
    }

    #[test]
    fn grows_by_doubling_at_half_load() {
        let mut t = IdTable::default();
        for id in 1..=8u64 {
            t.insert(id << 20);
        }
        assert_eq!(t.slot_count(), 16);
        t.insert(9 << 20);
        assert_eq!(t.slot_count(), 32);
        assert!((1..=9u64).all(|id| t.contains(id << 20)));
        t.check_invariants();
        assert_eq!(slot_count_for(8), 16);
        assert_eq!(slot_count_for(9), 32);
        assert_eq!(IdTable::with_capacity(1000).slot_count(), 2048);
    }
}
