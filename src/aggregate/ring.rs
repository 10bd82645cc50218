//! Sparse time-bucket rings: the storage behind every rolling window.
//!
//! A ring holds, sorted by bucket index, only the buckets that received an
//! event and are still inside its window: at most
//! [`BUCKETS_PER_WINDOW`](crate::config::BUCKETS_PER_WINDOW) of them. Values
//! are summed with wrapping integer arithmetic, which is exact whenever the
//! true sum fits in an `i64` and never panics on input.
//!
//! The newest bucket is inline; the older ones are packed into bytes
//! ([`Packed`]), or held in a circular array once a backfill updates a
//! full ring all over ([`dense`]).

use crate::util::codec::{CheckpointError, ReadResult, Reader, Writer};
use crate::util::prefetch::prefetch;
use crate::util::varint::{get_uvar, put_uvar_at, unzigzag, zigzag};
use std::collections::VecDeque;

mod dense;
pub use dense::in_use as dense_bytes_in_use;
use dense::Dense;

/// Bucket index of a timestamp for a bucket width.
#[inline]
pub fn bucket_of(ts_ms: i64, width_ms: i64) -> i64 {
    ts_ms.div_euclid(width_ms)
}

/// The oldest bucket index inside a window at engine time `now`.
#[inline]
pub fn oldest_bucket(now_ms: i64, width_ms: i64) -> i64 {
    bucket_of(now_ms, width_ms) - (crate::config::BUCKETS_PER_WINDOW - 1)
}

/// The newest bucket is kept inline, so that the common case (an event in
/// the current bucket) touches no heap memory; older buckets are packed
/// (see [`Packed`]) or, in a ring a backfill updates all over, dense (see
/// [`dense`]), all older than the inline one.
#[derive(Debug, Clone)]
pub struct Ring<const N: usize> {
    /// Index of the inline bucket; `EMPTY` when the ring is empty (then
    /// `older` is empty too).
    last_idx: i64,
    last: [i64; N],
    older: Older<N>,
}

/// A packed ring holding this many buckets becomes dense on its next
/// older-bucket update, if the buckets span fewer than [`dense::CAP`]
/// indices and the budget allows: each such update then scans about half
/// of them.
const DENSE_FROM: usize = 24;

#[cfg(test)]
thread_local! {
    /// Keeps this thread's rings packed, for tests of the packed code.
    static PACKED_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[inline(always)]
fn packed_only() -> bool {
    #[cfg(test)]
    return PACKED_ONLY.get();
    #[cfg(not(test))]
    false
}

/// The older buckets of a ring.
#[derive(Debug, Clone)]
enum Older<const N: usize> {
    Packed(Packed<N>),
    Dense(Dense<N>),
}

// The enum takes no more room than a packed ring: a ring costs what it did.
const _: () = assert!(std::mem::size_of::<Older<8>>() == std::mem::size_of::<Packed<8>>());
const _: () = assert!(std::mem::size_of::<Older<2>>() == std::mem::size_of::<Packed<2>>());

impl<const N: usize> Default for Older<N> {
    fn default() -> Self {
        Older::Packed(Packed::default())
    }
}

impl<const N: usize> Older<N> {
    #[inline]
    fn len(&self) -> usize {
        match self {
            Older::Packed(p) => p.len(),
            Older::Dense(d) => d.len(),
        }
    }

    #[inline]
    fn is_empty(&self) -> bool {
        match self {
            Older::Packed(p) => p.len == 0,
            Older::Dense(d) => d.is_empty(),
        }
    }

    /// The newest bucket held (when not empty).
    #[inline]
    fn back(&self) -> i64 {
        match self {
            Older::Packed(p) => p.back,
            Older::Dense(d) => d.back(),
        }
    }

    /// Appends bucket `idx`, newer than every bucket held.
    #[inline]
    fn push_back(&mut self, oldest: i64, idx: i64, v: &[i64; N]) {
        match self {
            Older::Packed(p) => p.push_back(oldest, idx, v),
            Older::Dense(d) => {
                if !d.add(oldest, idx, v) {
                    self.make_packed().push_back(oldest, idx, v);
                }
            }
        }
    }

    /// Adds `delta` to bucket `idx`, not newer than the newest held.
    #[inline]
    fn add_older(&mut self, oldest: i64, idx: i64, delta: &[i64; N]) {
        if let Some(d) = self.dense_for(oldest, idx) {
            if d.add(oldest, idx, delta) {
                return;
            }
        }
        match self {
            Older::Packed(p) => p.add_older(oldest, idx, delta),
            Older::Dense(_) => self.make_packed().add_older(oldest, idx, delta),
        }
    }

    /// [`Packed::add_many`], or one add each in a dense ring.
    #[inline]
    fn add_many(&mut self, oldest: i64, ups: &[(i64, [i64; N])]) {
        if let Some(d) = self.dense_for(oldest, ups[0].0) {
            // The slots are lines apart: their misses overlap.
            for (idx, _) in ups {
                d.prefetch(*idx);
            }
            for (i, (idx, delta)) in ups.iter().enumerate() {
                if !d.add(oldest, *idx, delta) {
                    let rest = &ups[i..];
                    let p = self.make_packed();
                    if rest.len() == 1 {
                        p.add_older(oldest, rest[0].0, &rest[0].1);
                    } else {
                        p.add_many(oldest, rest);
                    }
                    return;
                }
            }
            return;
        }
        match self {
            Older::Packed(p) => p.add_many(oldest, ups),
            Older::Dense(_) => unreachable!("dense_for returns a dense ring"),
        }
    }

    /// The dense ring to update older buckets from `lo` in: this one if
    /// dense, else this one made dense if it holds at least [`DENSE_FROM`]
    /// buckets (after dropping those older than `oldest`) which, with
    /// bucket `lo`, span fewer than [`dense::CAP`] indices, and the budget
    /// allows.
    #[inline]
    fn dense_for(&mut self, oldest: i64, lo: i64) -> Option<&mut Dense<N>> {
        if let Older::Packed(p) = self {
            if p.len() < DENSE_FROM || packed_only() {
                return None;
            }
            p.drop_before(oldest);
            if p.len() < DENSE_FROM || !Dense::<N>::fits(p.first.min(lo), p.back) {
                return None;
            }
            let mut d = Dense::new()?;
            for (idx, v) in p.iter() {
                let added = d.add(i64::MIN, idx, &v);
                debug_assert!(added);
            }
            *self = Older::Dense(d);
        }
        match self {
            Older::Dense(d) => Some(d),
            Older::Packed(_) => None,
        }
    }

    /// Makes this ring packed, keeping its buckets.
    fn make_packed(&mut self) -> &mut Packed<N> {
        if let Older::Dense(d) = self {
            let mut p = Packed::default();
            for (idx, v) in d.iter() {
                p.push_back(i64::MIN, idx, &v);
            }
            *self = Older::Packed(p);
        }
        match self {
            Older::Packed(p) => p,
            Older::Dense(_) => unreachable!("made packed above"),
        }
    }

    #[inline]
    fn drop_before(&mut self, oldest: i64) {
        match self {
            Older::Packed(p) => p.drop_before(oldest),
            Older::Dense(d) => d.drop_before(oldest),
        }
    }

    /// Empties the ring, keeping a packed ring's memory (see
    /// [`Ring::drop_expired`]); a dense one gives its memory back.
    #[inline]
    fn clear(&mut self) {
        match self {
            Older::Packed(p) => p.clear(),
            Older::Dense(_) => *self = Older::default(),
        }
    }

    /// Gives back unused memory: a dense ring that no longer holds
    /// [`DENSE_FROM`] buckets becomes packed (and so returns its share of
    /// the dense budget); one that does is still worth its slots.
    fn shrink(&mut self) {
        if let Older::Dense(d) = self {
            if d.len() >= DENSE_FROM {
                return;
            }
        }
        self.make_packed().shrink();
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Older::Packed(p) => p.bytes.capacity(),
            Older::Dense(d) => d.heap_bytes(),
        }
    }

    /// Prefetches where an append of bucket `idx` writes.
    #[inline(always)]
    fn prefetch(&self, idx: i64) {
        match self {
            Older::Packed(p) => p.prefetch(),
            Older::Dense(d) => d.prefetch(idx),
        }
    }

    /// The buckets, oldest first.
    fn iter(&self) -> OlderIter<'_, N> {
        match self {
            Older::Packed(p) => OlderIter::Packed(p.iter()),
            Older::Dense(d) => OlderIter::Dense(d.iter()),
        }
    }
}

/// The buckets of a [`Packed`], oldest first.
struct PackedIter<'a, const N: usize> {
    packed: &'a Packed<N>,
    /// Offset of the next bucket.
    p: usize,
    /// Index of the bucket before it (of the first, before it is read).
    idx: i64,
    /// Buckets read.
    i: u32,
}

impl<const N: usize> Iterator for PackedIter<'_, N> {
    type Item = (i64, [i64; N]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.i == self.packed.len {
            return None;
        }
        let (gap, v) = self.packed.read(&mut self.p);
        if self.i > 0 {
            self.idx = self.idx.wrapping_add(gap as i64);
        }
        self.i += 1;
        Some((self.idx, v))
    }
}

enum OlderIter<'a, const N: usize> {
    Packed(PackedIter<'a, N>),
    Dense(dense::Iter<'a, N>),
}

impl<const N: usize> Iterator for OlderIter<'_, N> {
    type Item = (i64, [i64; N]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            OlderIter::Packed(i) => i.next(),
            OlderIter::Dense(i) => i.next(),
        }
    }
}

impl<const N: usize> PartialEq for Ring<N> {
    fn eq(&self, o: &Self) -> bool {
        self.buckets().eq(o.buckets())
    }
}

impl<const N: usize> Eq for Ring<N> {}

const EMPTY: i64 = i64::MIN;

/// The older buckets of a ring, oldest first, packed into bytes. A bucket
/// is a varint of its index gap to the bucket before it, a byte with one
/// bit per non-zero value, then those values as zigzag varints. A bucket
/// mostly holds one or two small values, so it takes about 8 bytes instead
/// of `8 * (N + 1)`: memory per key is dominated by these buckets (a key
/// that sees an event a day keeps about 100 of them across the default
/// windows), and fewer bytes are also fewer cache misses.
///
/// Appending a newer bucket and dropping the oldest are O(1); changing an
/// older bucket (an event older than the newest bucket of its window)
/// scans from the oldest one, O(buckets), and splices in place.
#[derive(Debug, Clone, Default)]
struct Packed<const N: usize> {
    bytes: Vec<u8>,
    /// Offset of the first live bucket: the bytes before it belong to
    /// dropped buckets, reclaimed once they are half of the vector.
    head: u32,
    len: u32,
    /// Indices of the first and the last live bucket (when `len > 0`).
    first: i64,
    back: i64,
}

/// The high bit of each byte of `w`, gathered into the low 8 bits (bit
/// `j` from byte `j`, little-endian).
#[inline(always)]
fn high_bits(w: u64) -> u64 {
    ((w >> 7) & 0x0101_0101_0101_0101).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// `NTH_END[m][k]`: the position of the `k+1`-th set bit of `m` (from the
/// lowest), or 8 when `m` has fewer: where the `k+1`-th varint ending
/// among 8 bytes is (see `Packed::step`).
static NTH_END: [[u8; 8]; 256] = {
    let mut t = [[8u8; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let (mut bit, mut k) = (0, 0);
        while bit < 8 {
            if m & (1 << bit) != 0 {
                t[m][k] = bit as u8;
                k += 1;
            }
            bit += 1;
        }
        m += 1;
    }
    t
};

/// `VALUES[m]`: the values a bucket with mask `m` holds (its set bits; a
/// table, as the baseline x86_64 target has no popcount instruction).
static VALUES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut m = 0;
    while m < 256 {
        t[m] = (m as u8).count_ones() as u8;
        m += 1;
    }
    t
};

/// Most bytes one bucket can take: gap, mask, up to 8 values (a mask
/// byte has 8 bits).
const MAX_BUCKET_BYTES: usize = 10 + 1 + 10 * 8;

/// Room [`Packed::add_older`] makes before a splice: one bucket and the
/// next one's gap.
const ADD_OLDER_ROOM: usize = MAX_BUCKET_BYTES + 10;

thread_local! {
    /// The bytes [`Packed::add_many`] re-encodes, kept between calls.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl<const N: usize> Packed<N> {
    const ONE_MASK_BIT_PER_VALUE: () = assert!(N <= 8);
    #[inline]
    fn len(&self) -> usize {
        self.len as usize
    }

    /// Appends a bucket newer than every bucket held. Buckets older than
    /// `oldest` are only dropped when the bytes are full (see
    /// [`make_room`](Self::make_room)), so that the common append reads
    /// and writes only the end of the bytes.
    #[inline]
    fn push_back(&mut self, oldest: i64, idx: i64, v: &[i64; N]) {
        let () = Self::ONE_MASK_BIT_PER_VALUE;
        let mut gap = self.gap_to(idx);
        // Encoded on the stack, appended at once.
        let mut buf = [0u8; MAX_BUCKET_BYTES];
        let mut n = Self::encode(&mut buf, gap, v);
        if self.bytes.capacity() - self.bytes.len() < n {
            self.make_room(oldest, n);
            let g = self.gap_to(idx);
            if g != gap {
                // Every bucket had expired: this one is now the first.
                gap = g;
                n = Self::encode(&mut buf, gap, v);
            }
        }
        self.bytes.extend_from_slice(&buf[..n]);
        self.back = idx;
        self.len += 1;
    }

    /// The gap an appended bucket `idx` is written with (0 for the first,
    /// which then starts the bytes afresh).
    #[inline]
    fn gap_to(&mut self, idx: i64) -> u64 {
        if self.len == 0 {
            self.bytes.clear();
            self.head = 0;
            self.first = idx;
            0
        } else {
            debug_assert!(idx > self.back);
            idx.wrapping_sub(self.back) as u64
        }
    }

    /// Makes room for `n` more bytes: drops the buckets older than
    /// `oldest`, moves the live ones to the front, and grows the vector
    /// unless that leaves room for half as many bytes again. Each live byte
    /// is thus moved at most once per half as many appended bytes, and the
    /// vector stays within about 1.5 times the most bytes its live buckets
    /// took (at most `BUCKETS_PER_WINDOW` buckets are live).
    #[inline(never)]
    fn make_room(&mut self, oldest: i64, n: usize) {
        self.drop_before(oldest);
        if self.head > 0 {
            self.bytes.drain(..self.head as usize);
            self.head = 0;
        }
        let need = self.bytes.len() + self.bytes.len() / 2 + n;
        if self.bytes.capacity() < need {
            // At least four buckets' worth, so that appends move bytes
            // rarely (a batch of several buckets, see `add_many`, counts
            // as one bucket here: the vector stays within its bound).
            self.bytes
                .reserve_exact((need - self.bytes.len()).max(4 * n.min(ADD_OLDER_ROOM)));
        }
    }

    /// Writes one bucket into `buf`, returning its length.
    #[inline]
    fn encode(buf: &mut [u8], gap: u64, v: &[i64; N]) -> usize {
        let mut n = put_uvar_at(buf, 0, gap);
        let mask_at = n;
        n += 1;
        let mut mask = 0u8;
        for (i, x) in v.iter().enumerate() {
            if *x != 0 {
                mask |= 1 << i;
                n = put_uvar_at(buf, n, zigzag(*x));
            }
        }
        buf[mask_at] = mask;
        n
    }

    /// Moves `*p` past the bucket there.
    #[inline]
    fn skip(&self, p: &mut usize) {
        *p = self.step(*p).1;
    }

    /// The gap of the bucket at `p` and the offset of the next one,
    /// without a branch per byte: a varint's last byte is the one with its
    /// high bit clear, so after the mask the bucket ends at the `k`-th such
    /// byte, `k` being the values the mask says it holds. They are found 8
    /// bytes at a time (most buckets need one load), byte by byte only
    /// within the last 8 bytes of the vector.
    #[inline(always)]
    fn step(&self, p: usize) -> (u64, usize) {
        let b = &self.bytes;
        let mut q = p;
        let gap = if b[p] < 0x80 {
            q += 1;
            u64::from(b[p])
        } else {
            get_uvar(b, &mut q)
        };
        let mut values = usize::from(VALUES[usize::from(b[q])]);
        q += 1;
        while values > 0 {
            let Some(w) = b.get(q..q + 8) else {
                while values > 0 {
                    if b[q] < 0x80 {
                        values -= 1;
                    }
                    q += 1;
                }
                break;
            };
            let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            let ends = !high_bits(w) as u8;
            let nth = NTH_END[usize::from(ends)][values - 1];
            if nth < 8 {
                return (gap, q + usize::from(nth) + 1);
            }
            values -= ends.count_ones() as usize;
            q += 8;
        }
        (gap, q)
    }

    /// Replaces the bytes `start..end` with `new`, moving the bytes after
    /// them (in place: the caller has reserved room for any growth).
    #[inline]
    fn replace(&mut self, start: usize, end: usize, new: &[u8]) {
        let len = self.bytes.len();
        let moved = start + new.len();
        if moved > end {
            self.bytes.resize(len + (moved - end), 0);
            self.bytes.copy_within(end..len, moved);
        } else if moved < end {
            self.bytes.copy_within(end..len, moved);
            self.bytes.truncate(len - (end - moved));
        }
        self.bytes[start..moved].copy_from_slice(new);
    }

    /// Decodes the bucket at `*p` (its gap and values), moving `*p` past it.
    #[inline]
    fn read(&self, p: &mut usize) -> (u64, [i64; N]) {
        let b = &self.bytes;
        let gap = get_uvar(b, p);
        let mask = b[*p];
        *p += 1;
        let mut v = [0i64; N];
        for (i, x) in v.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                *x = unzigzag(get_uvar(b, p));
            }
        }
        (gap, v)
    }

    /// Drops the buckets older than `oldest`.
    #[inline]
    fn drop_before(&mut self, oldest: i64) {
        if self.len == 0 || self.first >= oldest {
            return;
        }
        let mut p = self.head as usize;
        while self.len > 0 && self.first < oldest {
            self.skip(&mut p);
            self.len -= 1;
            if self.len > 0 {
                // The next bucket's gap gives its index; `head` points at
                // the gap, which is read again (and ignored) from there.
                let mut q = p;
                self.first = self
                    .first
                    .wrapping_add(get_uvar(&self.bytes, &mut q) as i64);
            }
        }
        if self.len == 0 {
            self.clear();
            return;
        }
        self.head = p as u32;
        if p >= 64 && p * 2 >= self.bytes.len() {
            self.bytes.drain(..p);
            self.head = 0;
        }
    }

    #[inline]
    fn clear(&mut self) {
        self.bytes.clear();
        self.head = 0;
        self.len = 0;
    }

    /// The buckets, oldest first.
    fn iter(&self) -> PackedIter<'_, N> {
        PackedIter {
            packed: self,
            p: self.head as usize,
            idx: self.first,
            i: 0,
        }
    }

    /// Adds `delta` to bucket `idx`, which is not newer than the last
    /// bucket held, creating the bucket if needed: a scan from the oldest
    /// bucket, then the bytes of one bucket (and the gap of the next) are
    /// replaced in place.
    /// Buckets older than `oldest` are dropped first.
    #[cold]
    fn add_older(&mut self, oldest: i64, idx: i64, delta: &[i64; N]) {
        self.drop_before(oldest);
        // The splices below then never grow the vector on their own terms.
        const MOST: usize = ADD_OLDER_ROOM;
        if self.bytes.capacity() - self.bytes.len() < MOST {
            self.make_room(oldest, MOST);
        }
        let mut p = self.head as usize;
        let mut cur = self.first;
        let mut prev: Option<i64> = None;
        for i in 0..self.len {
            let (gap, next) = self.step(p);
            if i > 0 {
                cur = cur.wrapping_add(gap as i64);
            }
            if cur >= idx {
                let mut buf = [0u8; MAX_BUCKET_BYTES + 10];
                if cur == idx {
                    // The bucket exists: re-encode it with its (unchanged)
                    // gap.
                    let mut end = p;
                    let (_, mut v) = self.read(&mut end);
                    add_into(&mut v, delta);
                    let n = Self::encode(&mut buf, gap, &v);
                    self.replace(p, end, &buf[..n]);
                } else {
                    // A new bucket before this one, whose gap now starts
                    // at it.
                    let mut after_gap = p;
                    get_uvar(&self.bytes, &mut after_gap);
                    let new_gap = prev.map_or(0, |pv| idx.wrapping_sub(pv) as u64);
                    let n = Self::encode(&mut buf, new_gap, delta);
                    let n = put_uvar_at(&mut buf, n, cur.wrapping_sub(idx) as u64);
                    self.replace(p, after_gap, &buf[..n]);
                    if prev.is_none() {
                        self.first = idx;
                    }
                    self.len += 1;
                }
                return;
            }
            prev = Some(cur);
            p = next;
        }
        // Newer than every bucket held (not the callers' case).
        self.push_back(oldest, idx, delta);
    }

    /// Adds each `(idx, delta)` of `ups` to its bucket, creating the
    /// buckets needed, in one pass: `ups` are strictly increasing, none
    /// older than `oldest` nor newer than the last bucket held. Where
    /// [`add_older`](Self::add_older) scans from the oldest bucket once per
    /// update and splices each, this scans once, re-encodes the buckets
    /// from the first update's to the last's into a scratch buffer (each
    /// unchanged one copied but for its gap) and splices them in at once.
    /// Buckets older than `oldest` are dropped first.
    fn add_many(&mut self, oldest: i64, ups: &[(i64, [i64; N])]) {
        debug_assert!(ups.windows(2).all(|w| w[0].0 < w[1].0));
        debug_assert!(ups.first().is_some_and(|u| u.0 >= oldest));
        debug_assert!(ups.last().is_some_and(|u| self.len > 0 && u.0 <= self.back));
        self.drop_before(oldest);
        if self.len == 0 {
            // Not the callers' case: every update would be newer.
            for (idx, d) in ups {
                self.push_back(oldest, *idx, d);
            }
            return;
        }
        SCRATCH.with_borrow_mut(|out| {
            out.clear();
            let b = &self.bytes;
            let mut p = self.head as usize;
            let mut cur = self.first;
            let mut left = self.len;
            // The bucket before the region, in the result.
            let mut prev: Option<i64> = None;
            let (mut gap, mut next) = self.step(p);
            // Up to the first bucket not older than the first update.
            while cur < ups[0].0 {
                prev = Some(cur);
                p = next;
                left -= 1;
                (gap, next) = self.step(p);
                cur = cur.wrapping_add(gap as i64);
            }
            let start = p;
            let mut added = 0;
            let mut buf = [0u8; MAX_BUCKET_BYTES];
            let gap_from = |prev: Option<i64>, idx: i64, own: u64| {
                prev.map_or(own, |pv| idx.wrapping_sub(pv) as u64)
            };
            // The bytes before `copied` are in `out`; those from there to
            // the bucket at `p` are unchanged, copied at once when a changed
            // bucket follows. After a new bucket, the bucket at `p` needs its
            // gap rewritten (`regap`).
            let mut copied = start;
            let mut regap = false;
            for (idx, d) in ups {
                while cur < *idx {
                    if regap {
                        let mut q = p;
                        get_uvar(b, &mut q);
                        let n = put_uvar_at(&mut buf, 0, gap_from(prev, cur, gap));
                        out.extend_from_slice(&buf[..n]);
                        copied = q;
                        regap = false;
                    }
                    prev = Some(cur);
                    p = next;
                    left -= 1;
                    (gap, next) = self.step(p);
                    cur = cur.wrapping_add(gap as i64);
                }
                out.extend_from_slice(&b[copied..p]);
                if cur == *idx {
                    let mut end = p;
                    let (_, mut v) = self.read(&mut end);
                    add_into(&mut v, d);
                    let n = Self::encode(&mut buf, gap_from(prev, cur, gap), &v);
                    out.extend_from_slice(&buf[..n]);
                    prev = Some(cur);
                    p = next;
                    left -= 1;
                    if left > 0 {
                        (gap, next) = self.step(p);
                        cur = cur.wrapping_add(gap as i64);
                    }
                    regap = false;
                } else {
                    // A new bucket before the one at `p`.
                    let n = Self::encode(&mut buf, gap_from(prev, *idx, 0), d);
                    out.extend_from_slice(&buf[..n]);
                    prev = Some(*idx);
                    added += 1;
                    regap = true;
                }
                copied = p;
            }
            // The gap of the bucket after the region, if a new bucket now
            // comes before it.
            let mut end = p;
            if regap {
                get_uvar(b, &mut end);
                let n = put_uvar_at(&mut buf, 0, gap_from(prev, cur, gap));
                out.extend_from_slice(&buf[..n]);
            }
            let (mut start, mut end) = (start, end);
            let grow = out.len().saturating_sub(end - start);
            if self.bytes.capacity() - self.bytes.len() < grow {
                let head = self.head as usize;
                self.make_room(oldest, grow);
                // `make_room` moved the live bytes to the front.
                start -= head;
                end -= head;
            }
            if start == self.head as usize && ups[0].0 < self.first {
                self.first = ups[0].0;
            }
            self.replace(start, end, out);
            self.len += added;
        });
    }

    /// Gives back unused capacity (for idle keys: see `Aggregator::trim`)
    /// when most of it is unused: all of it when the ring is empty,
    /// otherwise when more than half the bytes are spare. A ring still
    /// being appended to keeps its slack (bytes grow by doubling, so a
    /// busy ring is at least half full): moving its bytes to a tight
    /// vector only for the next append to grow it again made a trim of
    /// 4,096 keys of a 160k-key mixed backfill take 7 to 22 ms (3.3 to
    /// 7 ms with this rule).
    fn shrink(&mut self) {
        if self.len == 0 {
            self.bytes = Vec::new();
            self.head = 0;
            return;
        }
        let live = self.bytes.len() - self.head as usize;
        if self.bytes.capacity() <= 2 * live + 64 {
            return;
        }
        if self.head > 0 {
            self.bytes.drain(..self.head as usize);
            self.head = 0;
        }
        self.bytes.shrink_to_fit();
    }

    #[inline(always)]
    fn prefetch(&self) {
        if self.bytes.capacity() > 0 {
            prefetch(self.bytes.as_ptr().wrapping_add(self.bytes.len()));
        }
    }
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Ring {
            last_idx: EMPTY,
            last: [0; N],
            older: Older::default(),
        }
    }
}

/// `v += d`, element-wise, wrapping (window sums never panic on input).
#[inline]
pub(crate) fn add_into<const N: usize>(v: &mut [i64; N], d: &[i64; N]) {
    for (a, x) in v.iter_mut().zip(d) {
        *a = a.wrapping_add(*x);
    }
}

/// The values of bucket `idx` in `batch[..*k]` (sorted by strictly
/// increasing bucket, as [`Ring::add_sorted`] takes them), inserted as
/// zeros if absent. Looks from the end: updates mostly come in order.
/// Panics if `batch` is full and `idx` absent.
#[inline]
pub(crate) fn batch_slot<'a, const N: usize>(
    batch: &'a mut [(i64, [i64; N])],
    k: &mut usize,
    idx: i64,
) -> &'a mut [i64; N] {
    let mut j = *k;
    while j > 0 && batch[j - 1].0 > idx {
        j -= 1;
    }
    if j == 0 || batch[j - 1].0 != idx {
        batch.copy_within(j..*k, j + 1);
        batch[j] = (idx, [0; N]);
        *k += 1;
        j += 1;
    }
    &mut batch[j - 1].1
}

impl<const N: usize> Ring<N> {
    /// Drops the buckets older than `oldest`, and gives unused memory back
    /// when `shrink` (for idle keys: see `Aggregator::trim`).
    #[inline]
    pub fn evict(&mut self, oldest: i64, shrink: bool) {
        self.drop_expired(oldest);
        if shrink {
            self.older.shrink();
        }
    }

    /// Drops the buckets older than `oldest`, keeping the memory: a sparse
    /// key's ring, emptied by one event and refilled by the next, would
    /// otherwise free and allocate again on every other event.
    #[inline]
    fn drop_expired(&mut self, oldest: i64) {
        if self.last_idx == EMPTY {
            return;
        }
        if self.last_idx < oldest {
            self.last_idx = EMPTY;
            self.older.clear();
            return;
        }
        self.older.drop_before(oldest);
    }

    /// Adds `delta` to bucket `idx`. A bucket older than `oldest` is
    /// outside the window and is ignored. Held buckets older than `oldest`
    /// are dropped lazily: all at once when the newest one has expired (the
    /// header says so), otherwise when the bytes are full or an older
    /// bucket is changed. Until then they cost only memory within the
    /// bound `make_room` keeps, and [`sum_into`](Self::sum_into) skips
    /// them.
    #[inline]
    pub fn add(&mut self, oldest: i64, idx: i64, delta: &[i64; N]) {
        if idx == self.last_idx && idx >= oldest {
            // The hot path.
            add_into(&mut self.last, delta);
            return;
        }
        if self.last_idx != EMPTY && self.last_idx < oldest {
            self.last_idx = EMPTY;
            self.older.clear();
        }
        if idx < oldest {
            return;
        }
        if self.last_idx == EMPTY {
            self.last_idx = idx;
            self.last = *delta;
        } else if idx > self.last_idx {
            self.older.push_back(oldest, self.last_idx, &self.last);
            self.last_idx = idx;
            self.last = *delta;
        } else if idx == self.last_idx {
            add_into(&mut self.last, delta);
        } else if self.older.is_empty() || idx > self.older.back() {
            // Between the older buckets and the inline one.
            self.older.push_back(oldest, idx, delta);
        } else {
            self.older.add_older(oldest, idx, delta);
        }
    }

    /// Adds each `(idx, delta)` of `ups`, sorted by strictly increasing
    /// `idx`: what [`add`](Self::add) of each would give, but the updates
    /// of older buckets (all but those at or after the newest older bucket)
    /// take one pass over the packed buckets instead of one each.
    pub fn add_sorted(&mut self, oldest: i64, ups: &[(i64, [i64; N])]) {
        debug_assert!(ups.windows(2).all(|w| w[0].0 < w[1].0));
        if self.last_idx != EMPTY && self.last_idx < oldest {
            self.last_idx = EMPTY;
            self.older.clear();
        }
        let ups = &ups[ups.partition_point(|u| u.0 < oldest)..];
        let older = if self.older.is_empty() {
            0
        } else {
            let back = self.older.back();
            ups.partition_point(|u| u.0 <= back)
        };
        match older {
            0 => {}
            1 => self.older.add_older(oldest, ups[0].0, &ups[0].1),
            _ => self.older.add_many(oldest, &ups[..older]),
        }
        for (idx, d) in &ups[older..] {
            self.add(oldest, *idx, d);
        }
    }

    /// Prefetches the end of the heap bytes, where an [`add`](Self::add)
    /// rolling the inline bucket over appends, unless the ring is empty or
    /// wholly older than `oldest` (then it is cleared, not appended to).
    #[inline(always)]
    pub fn prefetch_tail(&self, oldest: i64) {
        if self.last_idx != EMPTY && self.last_idx >= oldest {
            self.older.prefetch(self.last_idx);
        }
    }

    /// Adds the sums of the buckets at or after `oldest` into `out`.
    #[inline]
    pub fn sum_into(&self, oldest: i64, out: &mut [i64; N]) {
        self.sum_range((oldest, i64::MAX), out);
    }

    /// Adds the sums of the buckets in `[r.0, r.1)` into `out`.
    #[inline]
    pub fn sum_range(&self, r: (i64, i64), out: &mut [i64; N]) {
        if self.last_idx == EMPTY || self.last_idx < r.0 || r.0 >= r.1 {
            return;
        }
        if self.last_idx < r.1 {
            add_into(out, &self.last);
        }
        if self.older.is_empty() || self.older.back() < r.0 {
            return;
        }
        for (idx, v) in self.older.iter() {
            if idx >= r.1 {
                break;
            }
            if idx >= r.0 {
                add_into(out, &v);
            }
        }
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        usize::from(self.last_idx != EMPTY) + self.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_idx == EMPTY
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.older.heap_bytes()
    }

    /// The buckets, oldest first.
    fn buckets(&self) -> impl Iterator<Item = (i64, [i64; N])> + '_ {
        let last = (self.last_idx != EMPTY).then_some((self.last_idx, self.last));
        self.older.iter().chain(last)
    }

    /// Adds every bucket of `other` (used when restored keys fold together).
    pub fn merge_from(&mut self, other: &Ring<N>) {
        for (idx, v) in other.buckets() {
            self.add(i64::MIN, idx, &v);
        }
    }

    /// Checkpoint encoding: the bucket count, then each bucket (oldest
    /// first) as an index delta and its N values.
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.uvar(self.len() as u64);
        let mut prev = None;
        for (idx, v) in self.buckets() {
            match prev {
                None => w.ivar(idx),
                Some(p) => w.uvar(idx.wrapping_sub(p) as u64),
            }
            prev = Some(idx);
            for x in v {
                w.ivar(x);
            }
        }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> ReadResult<Self> {
        let n = r.count(1 + N)?;
        let mut ring = Ring::default();
        let mut idx = 0i64;
        for i in 0..n {
            if i == 0 {
                idx = r.ivar()?;
            } else {
                let d = r.uvar()?;
                idx = match i64::try_from(d).ok().and_then(|d| idx.checked_add(d)) {
                    Some(next) if d > 0 => next,
                    _ => {
                        return Err(CheckpointError::Corrupt(
                            "ring buckets not increasing".into(),
                        ))
                    }
                };
            }
            if idx == EMPTY {
                return Err(CheckpointError::Corrupt("ring bucket index".into()));
            }
            let mut v = [0i64; N];
            for x in v.iter_mut() {
                *x = r.ivar()?;
            }
            if i + 1 < n {
                ring.older.push_back(i64::MIN, idx, &v);
            } else {
                ring.last_idx = idx;
                ring.last = v;
            }
        }
        Ok(ring)
    }
}

/// Log-bucketed quantile sketch index with relative error `ALPHA`
/// (DDSketch's mapping). Index 0 holds exactly 0.
pub mod sketch {
    pub const ALPHA: f64 = 0.005;
    const GAMMA: f64 = (1.0 + ALPHA) / (1.0 - ALPHA);

    #[inline]
    pub fn index(v_ms: i64) -> u16 {
        if v_ms <= 0 {
            return 0;
        }
        let i = ((v_ms as f64).ln() / GAMMA.ln()).ceil();
        // ln(i64::MAX) / ln(GAMMA) < 4400, far below u16::MAX.
        (i as u16).saturating_add(1)
    }

    /// The representative value of an index: within `ALPHA` relative error
    /// of every value mapped to it.
    #[inline]
    pub fn value(idx: u16) -> f64 {
        if idx == 0 {
            return 0.0;
        }
        2.0 * GAMMA.powi(i32::from(idx) - 1) / (GAMMA + 1.0)
    }

    /// Nearest-rank quantile (`rank = ceil(num/den * n)`) of sorted
    /// `(index, count)` pairs.
    pub fn quantile(sorted: &[(u16, u64)], num: u64, den: u64) -> Option<f64> {
        let n: u64 = sorted.iter().map(|e| e.1).sum();
        if n == 0 {
            return None;
        }
        let rank = (n * num).div_ceil(den).max(1);
        let mut seen = 0;
        for &(idx, c) in sorted {
            seen += c;
            if seen >= rank {
                return Some(value(idx));
            }
        }
        None
    }
}

/// Per-window sales-cycle samples: `(bucket, sketch index) -> count`, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleRing {
    entries: VecDeque<(i64, u16, u32)>,
}

impl CycleRing {
    pub fn evict(&mut self, oldest: i64) {
        while self.entries.front().is_some_and(|e| e.0 < oldest) {
            self.entries.pop_front();
        }
        if self.entries.is_empty() && self.entries.capacity() > 8 {
            self.entries = VecDeque::new();
        }
    }

    pub fn add(&mut self, oldest: i64, idx: i64, hist: u16) {
        self.evict(oldest);
        if idx < oldest {
            return;
        }
        let pos = self.entries.partition_point(|e| (e.0, e.1) < (idx, hist));
        match self.entries.get_mut(pos) {
            Some(e) if e.0 == idx && e.1 == hist => e.2 = e.2.saturating_add(1),
            _ => self.entries.insert(pos, (idx, hist, 1)),
        }
    }

    /// Appends the `(sketch index, count)` samples of buckets at or after
    /// `oldest` to `out` (unsorted).
    pub fn collect_into(&self, oldest: i64, out: &mut Vec<(u16, u64)>) {
        self.collect_range((oldest, i64::MAX), out);
    }

    /// Appends the samples of buckets in `[r.0, r.1)` to `out` (unsorted).
    pub fn collect_range(&self, r: (i64, i64), out: &mut Vec<(u16, u64)>) {
        for &(idx, h, c) in self.entries.iter().rev() {
            if idx < r.0 {
                break;
            }
            if idx < r.1 {
                out.push((h, u64::from(c)));
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(i64, u16, u32)>()
    }

    /// Adds every sample of `other` (used when restored keys fold together).
    pub fn merge_from(&mut self, other: &CycleRing) {
        for &(idx, hist, c) in &other.entries {
            let pos = self.entries.partition_point(|e| (e.0, e.1) < (idx, hist));
            match self.entries.get_mut(pos) {
                Some(e) if e.0 == idx && e.1 == hist => e.2 = e.2.saturating_add(c),
                _ => self.entries.insert(pos, (idx, hist, c)),
            }
        }
    }

    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.uvar(self.entries.len() as u64);
        let mut prev = None;
        for &(idx, hist, c) in &self.entries {
            match prev {
                None => w.ivar(idx),
                Some(p) => w.uvar(idx.wrapping_sub(p) as u64),
            }
            prev = Some(idx);
            w.uvar(u64::from(hist));
            w.uvar(u64::from(c));
        }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> ReadResult<Self> {
        let n = r.count(3)?;
        let mut entries = VecDeque::with_capacity(n);
        let mut prev: Option<(i64, u16)> = None;
        for _ in 0..n {
            let idx = match prev {
                None => r.ivar()?,
                Some((p, _)) => i64::try_from(r.uvar()?)
                    .ok()
                    .and_then(|d| p.checked_add(d))
                    .ok_or_else(|| CheckpointError::Corrupt("cycle bucket index".into()))?,
            };
            let hist = u16::try_from(r.uvar()?)
                .map_err(|_| CheckpointError::Corrupt("cycle sketch index".into()))?;
            let c = r.u32()?;
            if c == 0 || prev.is_some_and(|p| p >= (idx, hist)) {
                return Err(CheckpointError::Corrupt("cycle samples not sorted".into()));
            }
            prev = Some((idx, hist));
            entries.push_back((idx, hist, c));
        }
        Ok(CycleRing { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_only_window_buckets() {
        let mut r = Ring::<2>::default();
        r.add(0, 5, &[1, 10]);
        r.add(0, 3, &[1, 1]);
        r.add(0, 5, &[1, 0]);
        r.add(0, 4, &[1, 0]);
        let mut s = [0; 2];
        r.sum_into(4, &mut s);
        assert_eq!(s, [3, 10]);
        r.add(5, 7, &[1, 1]);
        // Buckets 3 and 4 expired; they are dropped lazily.
        r.evict(5, false);
        assert_eq!(r.len(), 2);
        r.add(6, 7, &[1, 1]);
        let mut s = [0; 2];
        r.sum_into(6, &mut s);
        assert_eq!(s, [2, 2]);
        // The inline bucket expired: an event in it is outside the window.
        r.add(8, 7, &[5, 5]);
        assert!(r.is_empty());
        r.add(8, 9, &[0, 0]);
        assert_eq!(r.len(), 1);
        r.add(5, 1, &[100, 100]);
        let mut s = [0; 2];
        r.sum_into(0, &mut s);
        assert_eq!(s, [0, 0]);
        r.add(100, 9, &[1, 1]);
        assert!(r.is_empty());
    }

    /// Random adds (in order, late, expired, extreme values) and evictions
    /// against a sorted map of the buckets inside the window; the bytes
    /// held stay within twice the most the live buckets ever took (plus a
    /// few buckets' worth), although expired buckets are dropped lazily.
    #[test]
    fn packed_ring_equals_a_plain_model() {
        // Three values, and eight (a mask byte with its high bit set).
        let modes = packed_model::<3>(0x9E37_79B9_7F4A_7C15, 200, false);
        assert_eq!(modes, (true, false));
        packed_model::<8>(0x2545_F491_4F6C_DD1D, 60, false);
    }

    /// The same with dense rings allowed: rings become dense, and packed
    /// again when their buckets spread too far, and hold the same buckets
    /// as the model throughout.
    #[test]
    fn dense_ring_equals_a_plain_model() {
        let modes = packed_model::<3>(0x9E37_79B9_7F4A_7C15, 200, true);
        assert_eq!(modes, (true, true), "(packed, dense) seen");
        let modes = packed_model::<8>(0x2545_F491_4F6C_DD1D, 60, true);
        assert_eq!(modes, (true, true), "(packed, dense) seen");
    }

    /// Returns whether the rings were seen (packed, dense) after a step.
    fn packed_model<const N: usize>(seed: u64, rings: usize, dense: bool) -> (bool, bool) {
        PACKED_ONLY.set(!dense);
        let mut seen = (false, false);
        use std::collections::BTreeMap;
        let mut rng = seed;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for _ in 0..rings {
            let mut ring = Ring::<N>::default();
            let mut model: BTreeMap<i64, [i64; N]> = BTreeMap::new();
            let mut oldest = next(1000) as i64 - 500;
            let mut max_live = 0;
            for _ in 0..400 {
                match next(12) {
                    0 => {
                        // The window moves on; buckets are dropped lazily
                        // unless evicted.
                        oldest += next(8) as i64;
                        if next(4) == 0 {
                            ring.evict(oldest, next(2) == 0);
                        }
                        model.retain(|k, _| *k >= oldest);
                    }
                    1 | 2 => {
                        // A batch (what a flush gives one ring): updates
                        // before the first bucket, equal to a held one,
                        // between two, after the newest, repeated, and
                        // before the window; summed by bucket and added
                        // at once, the model adding them one by one.
                        // Expired buckets may still be held (see above).
                        let mut raw: Vec<(i64, [i64; N])> = Vec::new();
                        for _ in 0..1 + next(20) {
                            let held: Vec<i64> = ring.buckets().map(|b| b.0).collect();
                            let first = held.first().copied().unwrap_or(oldest);
                            let newest = held.last().copied().unwrap_or(oldest);
                            let idx = match next(7) {
                                0 => oldest + next(70) as i64 - 5,
                                1 => first - 1 - next(3) as i64,
                                2 if !held.is_empty() => held[next(held.len() as u64) as usize],
                                3 => first + next((newest - first + 1) as u64) as i64,
                                4 if !raw.is_empty() => raw[next(raw.len() as u64) as usize].0,
                                5 => newest - next(4) as i64,
                                _ => newest + next(3) as i64,
                            };
                            raw.push((idx, random_delta::<N>(&mut next)));
                        }
                        let mut batch = vec![(0, [0; N]); raw.len()];
                        let mut k = 0;
                        for (idx, d) in &raw {
                            add_into(batch_slot(&mut batch, &mut k, *idx), d);
                        }
                        ring.add_sorted(oldest, &batch[..k]);
                        model.retain(|k, _| *k >= oldest);
                        for (idx, d) in raw {
                            if idx >= oldest {
                                add_into(model.entry(idx).or_insert([0; N]), &d);
                            }
                        }
                    }
                    _ => {
                        // Mostly at or after the newest bucket, sometimes
                        // inside the window, sometimes before it.
                        let newest = model.keys().next_back().copied().unwrap_or(oldest);
                        let idx = match next(6) {
                            0 => oldest + next(70) as i64 - 5,
                            1 => newest - next(4) as i64,
                            _ => newest + next(3) as i64,
                        };
                        let d = random_delta::<N>(&mut next);
                        ring.add(oldest, idx, &d);
                        model.retain(|k, _| *k >= oldest);
                        if idx >= oldest {
                            add_into(model.entry(idx).or_insert([0; N]), &d);
                        }
                    }
                }
                let got: Vec<_> = ring.buckets().filter(|b| b.0 >= oldest).collect();
                let want: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
                assert_eq!(got, want);
                let mut buf = [0u8; MAX_BUCKET_BYTES];
                let mut prev = None;
                let live: usize = model
                    .iter()
                    .map(|(k, v)| {
                        let gap = prev.map_or(0, |p: i64| (k - p) as u64);
                        prev = Some(*k);
                        Packed::<N>::encode(&mut buf, gap, v)
                    })
                    .sum();
                max_live = max_live.max(live);
                match &ring.older {
                    Older::Packed(_) => {
                        seen.0 = true;
                        assert!(
                            ring.heap_bytes() <= 2 * max_live + 6 * MAX_BUCKET_BYTES,
                            "{} bytes held for at most {max_live} live",
                            ring.heap_bytes()
                        );
                    }
                    Older::Dense(_) => {
                        seen.1 = true;
                        assert_eq!(ring.heap_bytes(), Dense::<N>::BYTES);
                    }
                }
                for from in [oldest, oldest + 3, oldest + 40] {
                    let (mut s, mut m) = ([0i64; N], [0i64; N]);
                    ring.sum_into(from, &mut s);
                    for v in model.range(from..).map(|e| e.1) {
                        add_into(&mut m, v);
                    }
                    assert_eq!(s, m);
                }
            }
            // A checkpoint round trip keeps every bucket.
            let mut w = Writer::default();
            ring.encode_into(&mut w);
            let bytes = w.buf;
            let back = Ring::<N>::decode_from(&mut Reader::new(&bytes)).unwrap();
            assert_eq!(back, ring);
        }
        PACKED_ONLY.set(false);
        seen
    }

    /// Zero, extremes, and one-, two- and three-byte varints.
    fn random_delta<const N: usize>(next: &mut impl FnMut(u64) -> u64) -> [i64; N] {
        let mut d = [0i64; N];
        for x in d.iter_mut() {
            *x = match next(8) {
                0 | 1 => 0,
                2 => i64::MAX - next(3) as i64,
                3 => i64::MIN + next(3) as i64,
                4 | 5 => next(128) as i64 - 64,
                6 => next(16_000) as i64 - 8_000,
                _ => next(2_000_000) as i64 - 1_000_000,
            };
        }
        d
    }

    /// A ring only ever appended to (the common case, where expired
    /// buckets are dropped lazily) holds no more than twice the bytes of
    /// the window's buckets, and sums only those.
    #[test]
    fn appended_ring_stays_bounded() {
        let mut ring = Ring::<2>::default();
        let n = crate::config::BUCKETS_PER_WINDOW;
        for idx in 0..10_000i64 {
            let oldest = idx - (n - 1);
            ring.add(oldest, idx, &[1_000, idx]);
            let mut s = [0; 2];
            ring.sum_into(oldest, &mut s);
            let first = oldest.max(0);
            assert_eq!(s, [1_000 * (idx - first + 1), (first..=idx).sum::<i64>()]);
            // A bucket takes at most 7 bytes here: gap, mask, 2 + 3 bytes.
            assert!(ring.heap_bytes() <= 2 * 7 * n as usize + 4 * MAX_BUCKET_BYTES);
        }
    }

    #[test]
    fn sketch_relative_error_is_within_one_percent() {
        let mut v: i64 = 1;
        while v < 4_000_000_000_000 {
            let est = sketch::value(sketch::index(v));
            let err = (est - v as f64).abs() / v as f64;
            assert!(err <= 0.0051, "v={v} est={est} err={err}");
            v = v * 3 / 2 + 1;
        }
        assert_eq!(sketch::value(sketch::index(0)), 0.0);
        assert!(sketch::index(i64::MAX) < 5000);
    }

    #[test]
    fn nearest_rank() {
        // values 0, 0, 0 and index of 1000 ms once: p50 -> 0, p90 -> ~1000
        let i = sketch::index(1000);
        let s = [(0u16, 3u64), (i, 1)];
        assert_eq!(sketch::quantile(&s, 1, 2), Some(0.0));
        let p90 = sketch::quantile(&s, 9, 10).unwrap();
        assert!((p90 - 1000.0).abs() <= 10.0);
        assert_eq!(sketch::quantile(&[], 1, 2), None);
    }
}
