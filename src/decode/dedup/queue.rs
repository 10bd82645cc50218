//! The remembered ids in acceptance order, 12 bytes an id: the id and the
//! gap in milliseconds from the previous id's acceptance time (times never
//! decrease, so gaps are never negative), with the front's time kept aside.
//!
//! A gap of `u32::MAX` ms (49.7 days) or more is stored as [`BIG`] and its
//! value in a second queue, `big`, in the same order. Expiry keeps a gap
//! that long in the queue only with a dedup horizon that long (before an id
//! is added, every id older than the horizon is gone), so `big` stays empty
//! at any horizon below 49.7 days (the default is 24 hours).

use std::collections::VecDeque;

/// A gap stored in `big`.
const BIG: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
struct Entry {
    id: u64,
    /// Milliseconds after the previous entry's time (nothing for the front:
    /// its time is `front_at`); [`BIG`]: the next value of `big`.
    gap: u32,
}

#[derive(Debug, Default)]
pub(super) struct Queue {
    entries: VecDeque<Entry>,
    /// The gaps of [`BIG`] entries behind the front, oldest first.
    big: VecDeque<u64>,
    /// Acceptance time of the front entry (when there is one).
    front_at: i64,
    /// Acceptance time of the back entry (when there is one).
    back_at: i64,
}

impl Queue {
    pub(super) fn with_capacity(n: usize) -> Self {
        Queue {
            entries: VecDeque::with_capacity(n),
            ..Queue::default()
        }
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The oldest id's acceptance time.
    #[inline]
    pub(super) fn front_at(&self) -> Option<i64> {
        (!self.entries.is_empty()).then_some(self.front_at)
    }

    /// The newest id's acceptance time.
    #[inline]
    pub(super) fn back_at(&self) -> Option<i64> {
        (!self.entries.is_empty()).then_some(self.back_at)
    }

    /// The `n`th oldest id.
    #[inline]
    pub(super) fn id(&self, n: usize) -> Option<u64> {
        self.entries.get(n).map(|e| e.id)
    }

    /// Adds `id` accepted at `at`, no earlier than the back (else the gap
    /// wraps around; [`iter`](Self::iter) still gives `at` back).
    #[inline]
    pub(super) fn push_back(&mut self, id: u64, at: i64) {
        let gap = if self.entries.is_empty() {
            self.front_at = at;
            0
        } else {
            // Exact for any two i64 with at >= back_at.
            let gap = at.wrapping_sub(self.back_at) as u64;
            if gap >= u64::from(BIG) {
                self.big.push_back(gap);
                BIG
            } else {
                gap as u32
            }
        };
        self.back_at = at;
        self.entries.push_back(Entry { id, gap });
    }

    /// Removes the oldest id.
    #[inline]
    pub(super) fn pop_front(&mut self) -> Option<u64> {
        let id = self.entries.pop_front()?.id;
        if let Some(next) = self.entries.front() {
            let gap = match next.gap {
                BIG => self.big.pop_front().expect("a big gap for each BIG"),
                g => u64::from(g),
            };
            self.front_at = self.front_at.wrapping_add(gap as i64);
        }
        Some(id)
    }

    /// `(id, acceptance time)`, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, i64)> + '_ {
        let mut big = self.big.iter();
        let mut at = self.front_at;
        self.entries.iter().enumerate().map(move |(i, e)| {
            if i > 0 {
                let gap = match e.gap {
                    BIG => *big.next().expect("a big gap for each BIG"),
                    g => u64::from(g),
                };
                at = at.wrapping_add(gap as i64);
            }
            (e.id, at)
        })
    }
}
