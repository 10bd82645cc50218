//! The state of one (channel, campaign) key ([`KeyState`]): all-time
//! [`Totals`], the pending traffic sums, the log of window updates not yet
//! in the rings (see [`pending`](super::pending)), and one block of rings
//! per event group received; and how the log is added to the rings.

use super::calendar::{within, Slot, View};
use super::pending::{Entry, Group, Kind, LOG_LEN};
use super::ring::{add_into, batch_slot, sketch, CycleRing, Ring};
use super::sums::{field, WindowSums, DEALS_N, LEADS_N, SUBS_N, TRAFFIC_N};
use super::v2::{V2Key, V2Totals};
use crate::config::MAX_WINDOWS;

/// One group's rings of one key, one ring per window (group-major, so an
/// event touches one contiguous block). Allocated on the key's first event
/// of the group: a key pays only for the kinds of events it receives.
pub(super) type Rings<T> = Option<Box<[T]>>;

pub(super) fn rings<T: Default + Clone>(slot: &mut Rings<T>, windows: usize) -> &mut [T] {
    slot.get_or_insert_with(|| vec![T::default(); windows].into_boxed_slice())
}

pub(super) fn rings_heap<T>(slot: &Rings<T>, heap: impl Fn(&T) -> usize) -> usize {
    slot.as_ref().map_or(0, |r| {
        r.iter().map(|x| std::mem::size_of::<T>() + heap(x)).sum()
    })
}

/// All-time totals and current state of one key. Money in micro-units.
/// The fields traffic events update come first, in one cache line (see
/// [`KeyState`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Totals {
    pub impressions: i128,
    pub clicks: i128,
    pub ad_spend: i128,
    pub spend: i128,
    /// By `LeadStage as usize`.
    pub leads: [i128; 3],
    /// By `DealStage as usize`.
    pub deals: [i128; 3],
    pub revenue_won: i128,
    /// Size of each movement, by `Change as usize`.
    pub mrr_movement: [i128; 5],
    /// Net MRR (`funnel_mrr`).
    pub mrr: i128,
    /// `funnel_customers`.
    pub customers: i128,
    /// `funnel_open_pipeline_value`.
    pub open_pipeline: i128,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.impressions += o.impressions;
        self.clicks += o.clicks;
        for i in 0..3 {
            self.leads[i] += o.leads[i];
            self.deals[i] += o.deals[i];
        }
        self.revenue_won += o.revenue_won;
        self.ad_spend += o.ad_spend;
        self.spend += o.spend;
        for i in 0..5 {
            self.mrr_movement[i] += o.mrr_movement[i];
        }
        self.mrr += o.mrr;
        self.customers += o.customers;
        self.open_pipeline += o.open_pipeline;
    }
}

/// State of one (channel, campaign) key, laid out for traffic events (most
/// of a stream): those of the current span touch the first cache line
/// (pending sums) and the second (their totals) only; those of a new span
/// also the line of one log entry.
#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
pub struct KeyState {
    /// Traffic not yet added to the rings: events whose times fall in the
    /// span starting at `pend_lo` (one span of [`SpanMemo`], inside which no
    /// window's bucket changes) are summed here. A live key sees many
    /// events per bucket; each then updates this one array instead of a
    /// ring per window. Moved to the log when an event of a later span
    /// arrives.
    pub(super) pend_lo: i64,
    /// Length of the pending span, 0 when there is none; saturated, so
    /// only a hint for prefetching ([`absorbs`](Self::absorbs)).
    pub(super) pend_len: u32,
    /// Entries used in `log`.
    pub(super) log_len: u8,
    /// Bits of the groups (`Group as u8`) that have entries in `log`.
    pub(super) log_groups: u8,
    /// The [`v2::seen`] groups this key has received an event of.
    pub(super) seen: u8,
    pub(super) pend: [i64; TRAFFIC_N],
    pub(super) traffic: Rings<Ring<TRAFFIC_N>>,
    pub totals: Totals,
    pub channel: u32,
    pub campaign: u32,
    pub(super) leads: Rings<Ring<LEADS_N>>,
    pub(super) deals: Rings<Ring<DEALS_N>>,
    pub(super) cycles: Rings<CycleRing>,
    pub(super) subs: Rings<Ring<SUBS_N>>,
    /// The v2 groups, allocated on the first event with something for them.
    pub(super) v2: Option<Box<V2Key>>,
    /// Window updates not yet in the rings (see [`pending`]).
    pub(super) log: Log,
}

#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
pub(super) struct Log(pub(super) [Entry; LOG_LEN]);

impl KeyState {
    /// Adds this key's sums into `out`: one entry per view (see
    /// [`Aggregator::views`]), with its previous window's growth groups and
    /// the subscription sums after it. Call [`WindowSums::finish`] after the
    /// last merge.
    pub(crate) fn sums_into(&self, slots: &[Slot], views: &[View], out: &mut [WindowSums]) {
        for (v, o) in views.iter().zip(out.iter_mut()) {
            let (i, slot) = (v.slot, &slots[v.slot]);
            if let Some(r) = &self.traffic {
                r[i].sum_range(v.cur, &mut o.traffic);
            }
            // In a range iff its bucket is.
            if self.has_pending() && within(slot.bucket(self.pend_lo), v.cur) {
                add_into(&mut o.traffic, &self.pend);
            }
            for e in self.logged() {
                let b = slot.bucket(e.lo);
                if within(b, v.cur) {
                    if let Some(cycle) = e.add_to(o) {
                        o.cycles.push((sketch::index(cycle), 1));
                    }
                } else if within(b, v.prev) {
                    e.add_to_prev(&mut o.prev);
                }
                if within(b, v.after) {
                    e.add_to_subs(&mut o.after_subs);
                }
            }
            if let Some(r) = &self.leads {
                r[i].sum_range(v.cur, &mut o.leads);
                r[i].sum_range(v.prev, &mut o.prev.leads);
            }
            if let Some(r) = &self.deals {
                r[i].sum_range(v.cur, &mut o.deals);
                r[i].sum_range(v.prev, &mut o.prev.deals);
            }
            if let Some(r) = &self.cycles {
                r[i].collect_range(v.cur, &mut o.cycles);
            }
            if let Some(r) = &self.subs {
                r[i].sum_range(v.cur, &mut o.subs);
                r[i].sum_range(v.prev, &mut o.prev.subs);
                r[i].sum_range(v.after, &mut o.after_subs);
            }
            if let Some(k) = &self.v2 {
                k.sums_into(v, &mut o.v2, &mut o.prev);
            }
        }
    }

    /// The v2 totals of this key (its [`v2::seen`] bits included).
    pub fn v2_totals(&self) -> V2Totals {
        let mut t = self
            .v2
            .as_ref()
            .map(|v| v.totals.clone())
            .unwrap_or_default();
        t.seen = self.seen;
        t
    }

    /// Adds this key's v2 totals (and [`v2::seen`] bits) into `out`.
    pub(crate) fn v2_totals_into(&self, out: &mut V2Totals) {
        out.seen |= self.seen;
        if let Some(v) = &self.v2 {
            out.add(&v.totals);
        }
    }

    pub(super) fn v2_mut(&mut self) -> &mut V2Key {
        self.v2.get_or_insert_with(Box::default)
    }

    /// Drops the buckets that have left their window at `now`, giving the
    /// memory back too when `shrink`.
    pub(super) fn evict(&mut self, slots: &[Slot], now: i64, shrink: bool) {
        for (i, slot) in slots.iter().enumerate() {
            let (oldest, growth) = (slot.oldest(now, false), slot.oldest(now, true));
            if let Some(r) = &mut self.traffic {
                r[i].evict(oldest, shrink);
            }
            if let Some(r) = &mut self.leads {
                r[i].evict(growth, shrink);
            }
            if let Some(r) = &mut self.deals {
                r[i].evict(growth, shrink);
            }
            if let Some(r) = &mut self.cycles {
                r[i].evict(oldest);
            }
            if let Some(r) = &mut self.subs {
                r[i].evict(growth, shrink);
            }
            if let Some(v) = &mut self.v2 {
                v.evict(i, oldest, growth, shrink);
            }
        }
    }

    /// Would traffic at `ts` go to the pending sums (so its rings need no
    /// prefetch)? A hint: the engine time may still clamp `ts`.
    #[inline]
    pub(super) fn absorbs(&self, ts: i64) -> bool {
        self.has_pending() && (ts.wrapping_sub(self.pend_lo) as u64) < u64::from(self.pend_len)
    }

    #[inline]
    pub(super) fn has_pending(&self) -> bool {
        self.pend_len > 0
    }

    /// Will the next update likely add the log to the rings? (A hint: a
    /// traffic event can log two entries.)
    #[inline]
    pub(super) fn flush_coming(&self) -> bool {
        usize::from(self.log_len) + 2 > LOG_LEN
    }

    /// The logged entries.
    #[inline]
    pub(super) fn logged(&self) -> &[Entry] {
        &self.log.0[..usize::from(self.log_len)]
    }

    /// Starts new pending sums for the span `span`, logging the current
    /// ones.
    #[inline(always)]
    pub(super) fn start_pending(
        &mut self,
        span: (i64, i64),
        d: [i64; TRAFFIC_N],
        slots: &[Slot],
        now: i64,
    ) {
        if self.has_pending() {
            let (lo, p) = (self.pend_lo, self.pend);
            self.log_traffic(lo, &p, slots, now);
        }
        self.pend_lo = span.0;
        self.pend_len = u32::try_from(span.1.wrapping_sub(span.0) as u64).unwrap_or(u32::MAX);
        self.pend = d;
    }

    /// Logs traffic sums of the span starting at `lo`: one entry when
    /// they are impressions or clicks with their ad spend (the span of a
    /// sparse key's one event, mostly), else two.
    #[inline(always)]
    pub(super) fn log_traffic(&mut self, lo: i64, v: &[i64; TRAFFIC_N], slots: &[Slot], now: i64) {
        use field::{CLICKS, IMPRESSIONS, OTHER_SPEND};
        let kinds: &[Kind] = if v[OTHER_SPEND] == 0 && v[CLICKS] == 0 {
            &[Kind::Impressions]
        } else if v[OTHER_SPEND] == 0 && v[IMPRESSIONS] == 0 {
            &[Kind::Clicks]
        } else {
            &[Kind::Counts, Kind::Money]
        };
        for &kind in kinds {
            let (fa, fb) = kind.traffic_fields().expect("a traffic kind");
            let (a, b) = (v[fa], v[fb]);
            if a != 0 || b != 0 {
                self.log(lo, kind, a, b, slots, now);
            }
        }
    }

    /// Appends an update to the log (summed into the last entry when that
    /// one is of the same span and kind), first adding the log to the
    /// rings when it is full. Takes the entry's fields as values and
    /// writes them one by one: an `Entry` built on the stack and copied in
    /// wider loads stalls on store forwarding.
    #[inline(always)]
    pub(super) fn log(&mut self, lo: i64, kind: Kind, a: i64, b: i64, slots: &[Slot], now: i64) {
        let n = usize::from(self.log_len);
        if let Some(last) = self.log.0[..n].last_mut() {
            if last.absorbs(lo, kind) {
                last.a = last.a.wrapping_add(a);
                last.b = last.b.wrapping_add(b);
                return;
            }
        }
        if n == LOG_LEN {
            self.flush(slots, now);
        }
        let e = &mut self.log.0[usize::from(self.log_len)];
        e.lo = lo;
        e.a = a;
        e.b = b;
        e.kind = kind;
        self.log_len += 1;
        self.log_groups |= kind.group_bit();
    }

    /// Adds the logged updates to the rings (no sum changes), dropping
    /// the buckets that have left their window at `now` (none at
    /// `i64::MIN`). Ring by ring: the entries of the ring's group are
    /// summed by bucket, and the buckets older than the ring's newest are
    /// updated in one pass (see [`Ring::add_sorted`]): on a backfill most
    /// entries land in older buckets, a scan of the ring each when added
    /// one by one. Out of line, so that appending to the log stays small
    /// enough to inline.
    #[inline(never)]
    pub(super) fn flush(&mut self, slots: &[Slot], now: i64) {
        let n = usize::from(self.log_len);
        if n == 0 {
            return;
        }
        let mut b = Buckets::new(slots, now);
        let (log, groups, nw) = (&self.log.0[..n], self.log_groups, b.n);
        let has = |g: Group| groups & (1 << g as u8) != 0;
        if has(Group::Traffic) {
            let r = rings(&mut self.traffic, nw);
            add_group(r, &mut b, log, Group::Traffic, false, Entry::add_to_traffic);
        }
        if has(Group::Leads) {
            let r = rings(&mut self.leads, nw);
            add_group(r, &mut b, log, Group::Leads, true, Entry::add_to_leads);
        }
        if has(Group::Deals) {
            let r = rings(&mut self.deals, nw);
            add_group(r, &mut b, log, Group::Deals, true, |e, d| {
                e.add_to_deals(d);
            });
            // Sketch samples go to the rings one by one.
            for e in log.iter().filter(|e| e.kind == Kind::DealWon) {
                let h = sketch::index(e.b);
                for (wi, r) in rings(&mut self.cycles, nw).iter_mut().enumerate() {
                    if let Some(idx) = b.of(wi, e.lo, false) {
                        r.add(b.oldest[wi], idx, h);
                    }
                }
            }
        }
        if has(Group::Subs) {
            let r = rings(&mut self.subs, nw);
            add_group(r, &mut b, log, Group::Subs, true, Entry::add_to_subs);
        }
        self.log_len = 0;
        self.log_groups = 0;
    }

    /// Adds the pending traffic and the log to the rings (no sum changes),
    /// dropping the buckets that have left their window at `now` (none at
    /// `i64::MIN`).
    pub(super) fn settle(&mut self, slots: &[Slot], now: i64) {
        if self.has_pending() {
            let (lo, p) = (self.pend_lo, self.pend);
            self.log_traffic(lo, &p, slots, now);
            self.pend_lo = 0;
            self.pend_len = 0;
            self.pend = [0; TRAFFIC_N];
        }
        self.flush(slots, now);
    }

    /// Buckets held by the v1 groups' rings (tests of trimming).
    #[cfg(test)]
    pub(super) fn v1_buckets(&self) -> usize {
        fn held<const N: usize>(r: &Rings<Ring<N>>) -> usize {
            r.as_ref().map_or(0, |r| r.iter().map(Ring::len).sum())
        }
        held(&self.traffic) + held(&self.leads) + held(&self.deals) + held(&self.subs)
    }

    pub(super) fn heap_bytes(&self) -> usize {
        rings_heap(&self.traffic, Ring::heap_bytes)
            + rings_heap(&self.leads, Ring::heap_bytes)
            + rings_heap(&self.deals, Ring::heap_bytes)
            + rings_heap(&self.cycles, CycleRing::heap_bytes)
            + rings_heap(&self.subs, Ring::heap_bytes)
            + self
                .v2
                .as_ref()
                .map_or(0, |v| std::mem::size_of::<V2Key>() + v.heap_bytes())
    }

    /// Adds another key's state (restored keys that fold into one; they
    /// have no pending traffic or log, see [`Aggregator::settle`]).
    pub(super) fn merge_from(&mut self, o: &KeyState, nw: usize) {
        debug_assert!(!o.has_pending() && o.log_len == 0);
        self.totals.add(&o.totals);
        fn merge<T: Default + Clone>(
            into: &mut Rings<T>,
            from: &Rings<T>,
            nw: usize,
            f: impl Fn(&mut T, &T),
        ) {
            if let Some(src) = from {
                for (a, b) in rings(into, nw).iter_mut().zip(src.iter()) {
                    f(a, b);
                }
            }
        }
        merge(&mut self.traffic, &o.traffic, nw, Ring::merge_from);
        merge(&mut self.leads, &o.leads, nw, Ring::merge_from);
        merge(&mut self.deals, &o.deals, nw, Ring::merge_from);
        merge(&mut self.cycles, &o.cycles, nw, CycleRing::merge_from);
        merge(&mut self.subs, &o.subs, nw, Ring::merge_from);
        self.seen |= o.seen;
        if let Some(v) = &o.v2 {
            self.v2_mut().merge_from(v, nw);
        }
    }
}

/// Adds the entries of `log` of group `group` to its rings (one per
/// slot), `add` giving an entry's values: per ring, the entries are summed
/// by bucket (in a sorted batch, on the stack) and the batch is added at
/// once.
#[inline]
fn add_group<const N: usize>(
    rings: &mut [Ring<N>],
    b: &mut Buckets,
    log: &[Entry],
    group: Group,
    growth: bool,
    add: impl Fn(&Entry, &mut [i64; N]),
) {
    let mut batch = [(0i64, [0i64; N]); LOG_LEN];
    for (wi, r) in rings.iter_mut().enumerate() {
        let mut k = 0;
        for e in log.iter().filter(|e| e.kind.group() == group) {
            let Some(idx) = b.of(wi, e.lo, growth) else {
                continue;
            };
            add(e, batch_slot(&mut batch, &mut k, idx));
        }
        r.add_sorted(b.oldest(wi, growth), &batch[..k]);
    }
}

// The layout promised above.
const _: () = {
    assert!(std::mem::offset_of!(KeyState, traffic) + 16 <= 64);
    assert!(std::mem::offset_of!(KeyState, totals) == 64);
    assert!(std::mem::offset_of!(Totals, spend) + 16 <= 64);
    assert!(LOG_LEN <= u8::MAX as usize);
    // The v2 pointer and seen bits took padding: a key costs what it did.
    assert!(std::mem::size_of::<KeyState>() == 960);
};

/// Bucket indices of each slot for a run of times, at one engine time:
/// consecutive log entries mostly fall in the bucket of the one before in
/// all but the shortest windows, and then cost no division.
pub(super) struct Buckets<'a> {
    pub(super) n: usize,
    pub(super) slots: &'a [Slot],
    /// The oldest bucket kept, of the groups without a previous window and
    /// of the growth groups.
    pub(super) oldest: [i64; MAX_SLOTS],
    pub(super) oldest_growth: [i64; MAX_SLOTS],
    /// The last bucket looked up, and the UTC range `start..start + len`
    /// known to lie in it.
    pub(super) idx: [i64; MAX_SLOTS],
    pub(super) start: [i64; MAX_SLOTS],
    pub(super) len: [i64; MAX_SLOTS],
}

/// Rolling windows and the two calendar grids.
const MAX_SLOTS: usize = MAX_WINDOWS + 2;

impl<'a> Buckets<'a> {
    pub(super) fn new(slots: &'a [Slot], now: i64) -> Self {
        let mut b = Buckets {
            n: slots.len(),
            slots,
            oldest: [0; MAX_SLOTS],
            oldest_growth: [0; MAX_SLOTS],
            idx: [0; MAX_SLOTS],
            // No time is in an empty range.
            start: [0; MAX_SLOTS],
            len: [0; MAX_SLOTS],
        };
        for (i, slot) in slots.iter().enumerate() {
            b.oldest[i] = slot.oldest(now, false);
            b.oldest_growth[i] = slot.oldest(now, true);
        }
        b
    }

    #[inline]
    pub(super) fn oldest(&self, wi: usize, growth: bool) -> i64 {
        if growth {
            self.oldest_growth[wi]
        } else {
            self.oldest[wi]
        }
    }

    /// The bucket of `ts` in slot `wi`, if its rings (of a growth group or
    /// not) still keep it.
    #[inline]
    pub(super) fn of(&mut self, wi: usize, ts: i64, growth: bool) -> Option<i64> {
        if ts.wrapping_sub(self.start[wi]) as u64 >= self.len[wi] as u64 {
            let (idx, lo, hi) = self.slots[wi].span(ts);
            self.idx[wi] = idx;
            self.start[wi] = lo;
            self.len[wi] = hi.saturating_sub(lo);
        }
        (self.idx[wi] >= self.oldest(wi, growth)).then_some(self.idx[wi])
    }
}
