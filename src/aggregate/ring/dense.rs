//! Dense older buckets: one slot per bucket index, for the rings a
//! backfill updates all over.
//!
//! A packed ring (see [`Packed`](super::Packed)) changes an older bucket by
//! a scan from its oldest bucket and a splice: cheap while a ring holds a
//! few buckets or is only appended to, but a shuffled backfill into a few
//! busy keys lands nearly every event in an older bucket of a full ring,
//! and then scans and splices dominate the worker's time. A dense ring
//! holds the older buckets of a span of [`CAP`] indices in a circular array,
//! so such an update is one add at a known place.
//!
//! It costs `CAP * N * 8` bytes however few buckets it holds, so a ring only
//! becomes dense when it already holds many buckets
//! ([`DENSE_FROM`](super::DENSE_FROM)), and all dense rings of the process
//! together stay within [`BUDGET`]: past it, rings stay packed (exact all
//! the same, only slower on backfills). A ring goes back to packed when its
//! buckets no longer fit in [`CAP`] indices, and when it is emptied or
//! trimmed.

use super::add_into;
use crate::util::prefetch::prefetch;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bucket indices a dense ring spans: more than the 120 buckets a
/// growth group keeps (a window and its previous one).
pub(super) const CAP: usize = 128;

/// Bytes all dense rings of the process may take together.
pub const BUDGET: usize = 64 << 20;

/// Bytes the dense rings of the process take now.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// Bytes all dense rings take now (for tests and benches).
pub fn in_use() -> usize {
    IN_USE.load(Ordering::Relaxed)
}

/// The header lives in the ring itself (the enum it is a variant of costs
/// no more than a packed ring: see `Older`), so that checks and the slot
/// of an update need no load beyond the slot's own line.
#[derive(Debug)]
pub(super) struct Dense<const N: usize> {
    /// Zero in every slot not held.
    vals: Box<[[i64; N]; CAP]>,
    /// Bit `slot(idx)` is set for each bucket held (bit `s % 64` of word
    /// `s / 64`).
    present: [u64; 2],
    /// The oldest and newest bucket held (when any is); their distance is
    /// below `CAP`, so no two held buckets share a slot.
    first: i64,
    back: i64,
}

#[inline(always)]
fn slot(idx: i64) -> usize {
    (idx as u64 % CAP as u64) as usize
}

/// Whether buckets `lo..=hi` fit in one dense ring.
#[inline(always)]
fn spans(lo: i64, hi: i64) -> bool {
    hi.checked_sub(lo)
        .is_some_and(|d| (0..CAP as i64).contains(&d))
}

impl<const N: usize> Dense<N> {
    /// Heap bytes of one dense ring.
    pub(super) const BYTES: usize = std::mem::size_of::<[[i64; N]; CAP]>();

    /// An empty dense ring, if the budget has room for it.
    pub(super) fn new() -> Option<Self> {
        if IN_USE.load(Ordering::Relaxed) + Self::BYTES > BUDGET {
            return None;
        }
        let before = IN_USE.fetch_add(Self::BYTES, Ordering::Relaxed);
        if before + Self::BYTES > BUDGET {
            IN_USE.fetch_sub(Self::BYTES, Ordering::Relaxed);
            return None;
        }
        Some(Dense {
            vals: Box::new([[0; N]; CAP]),
            present: [0; 2],
            first: 0,
            back: 0,
        })
    }

    /// Whether buckets `lo..=hi` would fit (an empty or a dense ring).
    pub(super) fn fits(lo: i64, hi: i64) -> bool {
        spans(lo, hi)
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.present == [0; 2]
    }

    pub(super) fn len(&self) -> usize {
        (self.present[0].count_ones() + self.present[1].count_ones()) as usize
    }

    #[inline]
    pub(super) fn back(&self) -> i64 {
        self.back
    }

    pub(super) fn heap_bytes(&self) -> usize {
        Self::BYTES
    }

    #[inline(always)]
    fn held(&self, idx: i64) -> bool {
        let s = slot(idx);
        self.present[s / 64] & (1 << (s % 64)) != 0
    }

    /// Adds `delta` to bucket `idx` (any index, newer or older than those
    /// held), creating it if needed, after dropping the buckets older than
    /// `oldest`. False, changing nothing but the drop, when the buckets
    /// would then no longer fit in `CAP` indices.
    #[inline]
    pub(super) fn add(&mut self, oldest: i64, idx: i64, delta: &[i64; N]) -> bool {
        self.drop_before(oldest);
        if self.is_empty() {
            self.first = idx;
            self.back = idx;
        } else {
            let (lo, hi) = (self.first.min(idx), self.back.max(idx));
            if !spans(lo, hi) {
                return false;
            }
            self.first = lo;
            self.back = hi;
        }
        let s = slot(idx);
        let (w, bit) = (s / 64, 1 << (s % 64));
        if self.present[w] & bit != 0 {
            add_into(&mut self.vals[s], delta);
        } else {
            self.vals[s] = *delta;
            self.present[w] |= bit;
        }
        true
    }

    /// Drops the buckets older than `oldest`.
    #[inline]
    pub(super) fn drop_before(&mut self, oldest: i64) {
        if self.first >= oldest || self.is_empty() {
            return;
        }
        if self.back < oldest {
            self.clear();
            return;
        }
        // At most CAP steps: `first..oldest` lies within `first..=back`.
        let mut idx = self.first;
        while idx < oldest {
            if self.held(idx) {
                let s = slot(idx);
                self.vals[s] = [0; N];
                self.present[s / 64] &= !(1 << (s % 64));
            }
            idx += 1;
        }
        // `back` is held and not older than `oldest`.
        while !self.held(idx) {
            idx += 1;
        }
        self.first = idx;
    }

    pub(super) fn clear(&mut self) {
        for (w, bits) in self.present.iter_mut().enumerate() {
            while *bits != 0 {
                self.vals[w * 64 + bits.trailing_zeros() as usize] = [0; N];
                *bits &= *bits - 1;
            }
        }
    }

    /// The buckets, oldest first.
    pub(super) fn iter(&self) -> Iter<'_, N> {
        Iter {
            dense: self,
            idx: self.first,
            left: self.len(),
        }
    }

    /// Prefetches the slot of bucket `idx`.
    #[inline(always)]
    pub(super) fn prefetch(&self, idx: i64) {
        prefetch(&self.vals[slot(idx)]);
    }
}

/// The buckets of a [`Dense`], oldest first.
pub(super) struct Iter<'a, const N: usize> {
    dense: &'a Dense<N>,
    /// Where the next held bucket is looked for.
    idx: i64,
    left: usize,
}

impl<const N: usize> Iterator for Iter<'_, N> {
    type Item = (i64, [i64; N]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // A held bucket lies at or before `back`, within `CAP` steps.
        while !self.dense.held(self.idx) {
            self.idx += 1;
        }
        let idx = self.idx;
        // Past `back` only after the last bucket.
        self.idx = self.idx.wrapping_add(1);
        self.left -= 1;
        Some((idx, self.dense.vals[slot(idx)]))
    }
}

impl<const N: usize> Clone for Dense<N> {
    fn clone(&self) -> Self {
        // A copy is accounted for, over the budget or not: it is dropped
        // like any other.
        IN_USE.fetch_add(Self::BYTES, Ordering::Relaxed);
        Dense {
            vals: self.vals.clone(),
            present: self.present,
            first: self.first,
            back: self.back,
        }
    }
}

impl<const N: usize> Drop for Dense<N> {
    fn drop(&mut self) {
        IN_USE.fetch_sub(Self::BYTES, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_in_one_span_add_drop_and_refuse_what_does_not_fit() {
        let mut d = Dense::<2>::new().expect("budget");
        assert!(d.add(0, 10, &[1, 2]));
        assert!(d.add(0, 5, &[1, 0]));
        assert!(d.add(0, 10, &[1, 1]));
        assert!(d.add(0, 5 + CAP as i64 - 1, &[0, 0]));
        assert_eq!(d.len(), 3);
        // One index too far back for the newest bucket held.
        assert!(!d.add(0, 4, &[7, 7]));
        let got: Vec<_> = d.iter().collect();
        assert_eq!(got, vec![(5, [1, 0]), (10, [2, 3]), (132, [0, 0])]);
        // Dropping bucket 5 makes room for a newer one.
        assert!(d.add(6, 5 + CAP as i64, &[1, 1]));
        assert_eq!(
            d.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![10, 132, 133]
        );
        d.drop_before(200);
        assert_eq!(d.len(), 0);
        // Dropped slots are zero again.
        assert!(d.add(0, 10 + CAP as i64 * 3, &[0, 4]));
        assert_eq!(d.iter().collect::<Vec<_>>(), vec![(394, [0, 4])]);
        // Indices at the ends of i64 never overflow.
        assert!(!d.add(i64::MIN, i64::MIN, &[1, 1]));
        assert!(!d.add(i64::MIN, i64::MAX, &[1, 1]));
    }

    #[test]
    fn the_budget_is_given_back_when_a_ring_is_dropped() {
        // Other tests run beside this one: only this ring's own bytes are
        // certain, and only as a lower bound while it lives.
        let d = Dense::<8>::new().expect("budget");
        assert!(in_use() >= Dense::<8>::BYTES);
        let c = d.clone();
        assert!(in_use() >= 2 * Dense::<8>::BYTES);
        drop((d, c));
    }
}
