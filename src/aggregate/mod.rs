//! Stage 3 of the flow: **aggregate**. One [`Aggregator`] per partition turns
//! validated, deduplicated events into per-(channel, campaign) state: exact
//! rolling windows, all-time totals, current-state gauges and open deals.
//!
//! Invariants: no I/O, no clock (engine time is passed in), nothing about
//! Kafka or Prometheus; every structure is bounded (rings by the bucket
//! count, keys by the label cardinality limits, deals by
//! `max_tracked_deals`). Per-event cost is O(number of windows).

pub mod calendar;
pub mod labels;
pub mod pending;
pub mod ring;
pub mod v2;

use crate::config::{EngineConfig, WindowSpec, MAX_WINDOWS};
use crate::decode::{Body, DealStage, Event, Origin, SurveyKind};
use crate::util::codec::{CheckpointError, ReadResult, Reader, Writer};
use crate::util::hash::{id_hash, PreHashedMap, PreHashedMap128};
use calendar::{within, Calendar, Slot, View};
use labels::LabelTable;
use pending::{Entry, Group, Kind, LOG_LEN};
use ring::{add_into, prefetch, prefetch_all, sketch, CycleRing, Ring};
use std::collections::HashMap;
use std::sync::Arc;
use v2::{f2, seen, V2Key, V2Sums, V2Totals};

/// Field positions inside the window groups.
pub mod field {
    // traffic group
    pub const IMPRESSIONS: usize = 0;
    pub const CLICKS: usize = 1;
    pub const AD_SPEND: usize = 2;
    /// Spend of every category other than `ads`.
    pub const OTHER_SPEND: usize = 3;
    // leads group: indexed by `LeadStage as usize` (new, mql, sql)
    // deals group
    pub const OPEN: usize = 0;
    pub const WON: usize = 1;
    pub const LOST: usize = 2;
    pub const REVENUE_WON: usize = 3;
    pub const CYCLE_SUM_MS: usize = 4;
    // subscriptions group: MRR by `Change as usize` (new, expansion,
    // contraction, churn, reactivation), then customer counts
    pub const CUSTOMERS_NEW: usize = 5;
    pub const CUSTOMERS_CHURNED: usize = 6;
    pub const CUSTOMERS_REACTIVATED: usize = 7;
}

pub const TRAFFIC_N: usize = 4;
pub const LEADS_N: usize = 3;
pub const DEALS_N: usize = 5;
pub const SUBS_N: usize = 8;

/// One group's rings of one key, one ring per window (group-major, so an
/// event touches one contiguous block). Allocated on the key's first event
/// of the group: a key pays only for the kinds of events it receives.
type Rings<T> = Option<Box<[T]>>;

fn rings<T: Default + Clone>(slot: &mut Rings<T>, windows: usize) -> &mut [T] {
    slot.get_or_insert_with(|| vec![T::default(); windows].into_boxed_slice())
}

fn rings_heap<T>(slot: &Rings<T>, heap: impl Fn(&T) -> usize) -> usize {
    slot.as_ref().map_or(0, |r| {
        r.iter().map(|x| std::mem::size_of::<T>() + heap(x)).sum()
    })
}

/// The sums of one window at one instant (possibly merged across
/// partitions). Money in micro-units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowSums {
    pub traffic: [i64; TRAFFIC_N],
    pub leads: [i64; LEADS_N],
    pub deals: [i64; DEALS_N],
    pub subs: [i64; SUBS_N],
    /// Sales-cycle sketch `(index, count)`, sorted by index, merged.
    pub cycles: Vec<(u16, u64)>,
    /// The v2 groups.
    pub v2: V2Sums,
    /// The growth groups over the previous window (METRICS.md v2).
    pub prev: PrevSums,
    /// Subscription sums from the window's end until now (a closed
    /// calendar period's; zero for windows that end now): the starting
    /// stock is the current one minus the movement since the window's
    /// start.
    pub after_subs: [i64; SUBS_N],
    /// What the KPIs of this window need besides sums: set when rendering
    /// (zero, and the KPIs that need them absent, otherwise).
    pub params: KpiParams,
}

/// Settings and window facts some KPIs need (METRICS.md v2).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KpiParams {
    /// The window's length `W`.
    pub window_ms: i64,
    /// `gross_margin`, 0 < gm <= 1.
    pub gross_margin: f64,
}

impl WindowSums {
    /// Adds another key's (or partition's) sums.
    pub fn add(&mut self, o: &WindowSums) {
        add_into(&mut self.traffic, &o.traffic);
        add_into(&mut self.leads, &o.leads);
        add_into(&mut self.deals, &o.deals);
        add_into(&mut self.subs, &o.subs);
        self.cycles.extend_from_slice(&o.cycles);
        self.v2.add(&o.v2);
        self.prev.add(&o.prev);
        add_into(&mut self.after_subs, &o.after_subs);
        if self.params.window_ms == 0 {
            self.params = o.params;
        }
    }

    /// Sorts and merges the sketch entries collected from several buckets.
    pub fn finish(&mut self) {
        self.v2.finish();
        self.prev.finish();
        self.cycles.sort_unstable_by_key(|e| e.0);
        self.cycles.dedup_by(|next, acc| {
            if next.0 == acc.0 {
                acc.1 += next.1;
                true
            } else {
                false
            }
        });
    }
}

/// The sums of the growth groups over a previous window: the groups'
/// whole rings, of which the families read leads (all stages), deals
/// opened and won, revenue won, customers new, pipeline created, sessions
/// and conversions (METRICS.md v2, "Growth against the previous window").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrevSums {
    pub leads: [i64; LEADS_N],
    pub deals: [i64; DEALS_N],
    pub subs: [i64; SUBS_N],
    pub deal_a: [i64; v2::DEAL_A_N],
    pub web: [i64; v2::WEB_N],
    /// `(action label id, sums)`, sorted by id after `finish`.
    pub conversions: Vec<(u32, [i64; v2::CONV_N])>,
}

impl PrevSums {
    pub fn add(&mut self, o: &PrevSums) {
        add_into(&mut self.leads, &o.leads);
        add_into(&mut self.deals, &o.deals);
        add_into(&mut self.subs, &o.subs);
        add_into(&mut self.deal_a, &o.deal_a);
        add_into(&mut self.web, &o.web);
        for (a, v) in &o.conversions {
            self.add_conversion(*a, v);
        }
    }

    pub fn add_conversion(&mut self, action: u32, v: &[i64; v2::CONV_N]) {
        v2::add_action(&mut self.conversions, action, v);
    }

    pub fn finish(&mut self) {
        self.conversions.sort_unstable_by_key(|x| x.0);
    }

    /// The sums of one conversion action (zero when it has none here).
    pub fn conversion(&self, action: u32) -> [i64; v2::CONV_N] {
        v2::action_sums(&self.conversions, action)
    }
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
    fn fields(&self) -> [&i128; 19] {
        let t = self;
        [
            &t.impressions,
            &t.clicks,
            &t.leads[0],
            &t.leads[1],
            &t.leads[2],
            &t.deals[0],
            &t.deals[1],
            &t.deals[2],
            &t.revenue_won,
            &t.ad_spend,
            &t.spend,
            &t.mrr_movement[0],
            &t.mrr_movement[1],
            &t.mrr_movement[2],
            &t.mrr_movement[3],
            &t.mrr_movement[4],
            &t.mrr,
            &t.customers,
            &t.open_pipeline,
        ]
    }

    fn encode_into(&self, w: &mut Writer) {
        for v in self.fields() {
            w.i128var(*v);
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> ReadResult<Totals> {
        let mut v = [0i128; 19];
        for x in v.iter_mut() {
            *x = r.i128var()?;
        }
        Ok(Totals {
            impressions: v[0],
            clicks: v[1],
            leads: [v[2], v[3], v[4]],
            deals: [v[5], v[6], v[7]],
            revenue_won: v[8],
            ad_spend: v[9],
            spend: v[10],
            mrr_movement: [v[11], v[12], v[13], v[14], v[15]],
            mrr: v[16],
            customers: v[17],
            open_pipeline: v[18],
        })
    }

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
    pend_lo: i64,
    /// Length of the pending span, 0 when there is none; saturated, so
    /// only a hint for prefetching ([`absorbs`](Self::absorbs)).
    pend_len: u32,
    /// Entries used in `log`.
    log_len: u8,
    /// Bits of the groups (`Group as u8`) that have entries in `log`.
    log_groups: u8,
    /// The [`v2::seen`] groups this key has received an event of.
    seen: u8,
    pend: [i64; TRAFFIC_N],
    traffic: Rings<Ring<TRAFFIC_N>>,
    pub totals: Totals,
    pub channel: u32,
    pub campaign: u32,
    leads: Rings<Ring<LEADS_N>>,
    deals: Rings<Ring<DEALS_N>>,
    cycles: Rings<CycleRing>,
    subs: Rings<Ring<SUBS_N>>,
    /// The v2 groups, allocated on the first event with something for them.
    v2: Option<Box<V2Key>>,
    /// Window updates not yet in the rings (see [`pending`]).
    log: Log,
}

#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
struct Log([Entry; LOG_LEN]);

impl KeyState {
    /// Adds this key's sums into `out`: one entry per view (see
    /// [`Aggregator::views`]), with its previous window's growth groups and
    /// the subscription sums after it. Call [`WindowSums::finish`] after the
    /// last merge.
    pub fn sums_into(&self, slots: &[Slot], views: &[View], out: &mut [WindowSums]) {
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
    pub fn v2_totals_into(&self, out: &mut V2Totals) {
        out.seen |= self.seen;
        if let Some(v) = &self.v2 {
            out.add(&v.totals);
        }
    }

    fn v2_mut(&mut self) -> &mut V2Key {
        self.v2.get_or_insert_with(Box::default)
    }

    /// Drops the buckets that have left their window at `now`, giving the
    /// memory back too when `shrink`.
    fn evict(&mut self, slots: &[Slot], now: i64, shrink: bool) {
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
    fn absorbs(&self, ts: i64) -> bool {
        self.has_pending() && (ts.wrapping_sub(self.pend_lo) as u64) < u64::from(self.pend_len)
    }

    #[inline]
    fn has_pending(&self) -> bool {
        self.pend_len > 0
    }

    /// Will the next update likely add the log to the rings? (A hint: a
    /// traffic event can log two entries.)
    #[inline]
    fn flush_coming(&self) -> bool {
        usize::from(self.log_len) + 2 > LOG_LEN
    }

    /// The logged entries.
    #[inline]
    fn logged(&self) -> &[Entry] {
        &self.log.0[..usize::from(self.log_len)]
    }

    /// Starts new pending sums for the span `span`, logging the current
    /// ones.
    #[inline(always)]
    fn start_pending(&mut self, span: (i64, i64), d: [i64; TRAFFIC_N], slots: &[Slot], now: i64) {
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
    fn log_traffic(&mut self, lo: i64, v: &[i64; TRAFFIC_N], slots: &[Slot], now: i64) {
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
    fn log(&mut self, lo: i64, kind: Kind, a: i64, b: i64, slots: &[Slot], now: i64) {
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
    /// `i64::MIN`). Consecutive entries of one span and group are added
    /// as one update. Out of line, so that appending to the log stays small
    /// enough to inline.
    #[inline(never)]
    fn flush(&mut self, slots: &[Slot], now: i64) {
        let n = usize::from(self.log_len);
        if n == 0 {
            return;
        }
        let mut b = Buckets::new(slots, now);
        // Sums of the current run (sketch samples go to the rings directly).
        let mut d = WindowSums::default();
        let mut cur: Option<(i64, Group)> = None;
        for i in 0..n {
            let e = self.log.0[i];
            let at = (e.lo, e.kind.group());
            if cur.is_some_and(|c| c != at) {
                self.add_deltas(cur.take(), &mut d, &mut b);
            }
            cur = Some(at);
            if let Some(cycle) = e.add_to(&mut d) {
                let h = sketch::index(cycle);
                for (wi, r) in rings(&mut self.cycles, b.n).iter_mut().enumerate() {
                    if let Some(idx) = b.of(wi, e.lo, false) {
                        r.add(b.oldest[wi], idx, h);
                    }
                }
            }
        }
        self.add_deltas(cur, &mut d, &mut b);
        self.log_len = 0;
        self.log_groups = 0;
    }

    /// Adds the deltas of group `at.1` at time `at.0` to their rings and
    /// clears them.
    fn add_deltas(&mut self, at: Option<(i64, Group)>, d: &mut WindowSums, b: &mut Buckets) {
        fn add<const N: usize>(
            rings: &mut [Ring<N>],
            b: &mut Buckets,
            lo: i64,
            d: &mut [i64; N],
            growth: bool,
        ) {
            for (wi, r) in rings.iter_mut().enumerate() {
                if let Some(idx) = b.of(wi, lo, growth) {
                    r.add(b.oldest(wi, growth), idx, d);
                }
            }
            *d = [0; N];
        }
        let Some((lo, group)) = at else {
            return;
        };
        let nw = b.n;
        match group {
            Group::Traffic => add(rings(&mut self.traffic, nw), b, lo, &mut d.traffic, false),
            Group::Leads => add(rings(&mut self.leads, nw), b, lo, &mut d.leads, true),
            Group::Deals => add(rings(&mut self.deals, nw), b, lo, &mut d.deals, true),
            Group::Subs => add(rings(&mut self.subs, nw), b, lo, &mut d.subs, true),
        }
    }

    /// Adds the pending traffic and the log to the rings (no sum changes),
    /// dropping the buckets that have left their window at `now` (none at
    /// `i64::MIN`).
    fn settle(&mut self, slots: &[Slot], now: i64) {
        if self.has_pending() {
            let (lo, p) = (self.pend_lo, self.pend);
            self.log_traffic(lo, &p, slots, now);
            self.pend_lo = 0;
            self.pend_len = 0;
            self.pend = [0; TRAFFIC_N];
        }
        self.flush(slots, now);
    }

    fn heap_bytes(&self) -> usize {
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
    fn merge_from(&mut self, o: &KeyState, nw: usize) {
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

    /// Checkpoint encoding; the pending traffic and the log must have been
    /// settled.
    fn encode_into(&self, w: &mut Writer, action_name: &dyn Fn(u32) -> String) {
        debug_assert!(!self.has_pending() && self.log_len == 0);
        self.totals.encode_into(w);
        let mask = u8::from(self.traffic.is_some())
            | u8::from(self.leads.is_some()) << 1
            | u8::from(self.deals.is_some()) << 2
            | u8::from(self.cycles.is_some()) << 3
            | u8::from(self.subs.is_some()) << 4
            | u8::from(self.v2.is_some()) << 5;
        w.u8(mask);
        // Format 3: the v2 seen bits, then (mask bit 5) the v2 block at
        // the end.
        w.u8(self.seen);
        fn each<T>(r: &Rings<T>, w: &mut Writer, f: impl Fn(&T, &mut Writer)) {
            for x in r.iter().flat_map(|r| r.iter()) {
                f(x, w);
            }
        }
        each(&self.traffic, w, Ring::encode_into);
        each(&self.leads, w, Ring::encode_into);
        each(&self.deals, w, Ring::encode_into);
        each(&self.cycles, w, CycleRing::encode_into);
        each(&self.subs, w, Ring::encode_into);
        if let Some(v) = &self.v2 {
            v.encode_into(w, action_name);
        }
    }

    fn decode_from(
        &mut self,
        r: &mut Reader<'_>,
        nw: usize,
        version: u16,
        intern: &mut dyn FnMut(&str) -> u32,
    ) -> ReadResult<()> {
        self.totals = Totals::decode_from(r)?;
        let mask = r.u8()?;
        let max_bits = if version >= 3 { 6 } else { 5 };
        if mask >> max_bits != 0 {
            return Err(CheckpointError::Corrupt("key group mask".into()));
        }
        if version >= 3 {
            self.seen = r.u8()?;
            if self.seen & !seen::ALL != 0 {
                return Err(CheckpointError::Corrupt("key seen bits".into()));
            }
        }
        fn each<T>(
            present: bool,
            r: &mut Reader<'_>,
            nw: usize,
            f: impl Fn(&mut Reader<'_>) -> ReadResult<T>,
        ) -> ReadResult<Rings<T>> {
            if !present {
                return Ok(None);
            }
            let mut v = Vec::with_capacity(nw);
            for _ in 0..nw {
                v.push(f(r)?);
            }
            Ok(Some(v.into_boxed_slice()))
        }
        self.traffic = each(mask & 1 != 0, r, nw, Ring::decode_from)?;
        self.leads = each(mask & 2 != 0, r, nw, Ring::decode_from)?;
        self.deals = each(mask & 4 != 0, r, nw, Ring::decode_from)?;
        self.cycles = each(mask & 8 != 0, r, nw, CycleRing::decode_from)?;
        self.subs = each(mask & 16 != 0, r, nw, Ring::decode_from)?;
        if mask & 32 != 0 {
            self.v2 = Some(Box::new(V2Key::decode_from(r, nw, intern)?));
        }
        if version < 3 {
            // Formats 1 and 2 knew no v2 groups: a key had deal events if
            // it counted any, subscription events if it holds any movement
            // or subscription rings (one whose every movement was 0 and
            // has left every window is not told apart).
            let t = &self.totals;
            if t.deals.iter().any(|&d| d != 0) {
                self.seen |= seen::DEAL;
            }
            if self.subs.is_some() || t.mrr_movement.iter().any(|&m| m != 0) || t.customers != 0 {
                self.seen |= seen::SUBS;
            }
        }
        Ok(())
    }

    /// Composite key of the two label ids.
    pub fn label_key(&self) -> u64 {
        (u64::from(self.channel) << 32) | u64::from(self.campaign)
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

/// A key lookup done ahead of applying an event: see
/// [`Aggregator::key_hint`].
#[derive(Debug, Clone, Copy)]
pub struct KeyHint {
    hash: u128,
    /// `NO_KEY` when the pair was not in the cache.
    key: u32,
}

const NO_KEY: u32 = u32::MAX;

/// A prefetchable copy of the aggregator's key cache, for batches: three
/// entries per cache-line-sized bucket at a position computed from the pair
/// hash alone, so that the line can be prefetched while the event is still
/// being decoded (a `HashMap` probe can only be done, not prefetched). A
/// miss falls back to the aggregator's cache; entries are copied from it
/// (never from overflow pairs, which must go through label interning), so
/// a hit always equals what that cache would answer.
#[derive(Debug, Default)]
pub struct KeyHints {
    buckets: Vec<HintBucket>,
}

#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct HintBucket {
    hash: [u128; HINT_SLOTS],
    key: [u32; HINT_SLOTS],
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
    fn index(&self, hash: u128) -> usize {
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

#[derive(Debug, Clone, Copy)]
struct DealState {
    key: u32,
    amount: i64,
    closed: bool,
}

/// Counters the aggregator keeps about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggStats {
    pub late: u64,
    /// Events whose channel (0), campaign (1) or conversion action (2)
    /// was folded into `__overflow__`, and events whose whole key was
    /// folded by the series budget (3).
    pub label_overflow: [u64; 4],
    /// Deal events whose `origin` (0) or `influenced` (1) had an invalid
    /// value, read as the default (`funnel_fields_ignored_total`).
    pub fields_ignored: [u64; 2],
    /// Deal events not tracked for the open pipeline because
    /// `max_tracked_deals` was reached.
    pub deals_untracked: u64,
}

/// Aggregate state of one partition.
#[derive(Debug)]
pub struct Aggregator {
    /// The rolling windows, as configured.
    specs: Vec<WindowSpec>,
    /// Where the rings keep their buckets: one slot per rolling window,
    /// then the calendar grids (see [`calendar`]).
    slots: Vec<Slot>,
    calendar: Option<Calendar>,
    calendar_config: crate::config::CalendarConfig,
    /// Age past which an event reaches no rolling window (its previous
    /// window included) ...
    late_before_ms: i64,
    /// ... and, with calendar windows, the UTC time before which it reaches
    /// none of theirs (lateness included), valid while engine time is in
    /// the range (a local day).
    late_calendar: (i64, (i64, i64)),
    allowed_lateness_ms: i64,
    max_tracked_deals: usize,
    /// `channel_origins` overrides of the default origin of a channel.
    channel_origins: Arc<[(String, Origin)]>,
    gross_margin: f64,
    labels: Arc<LabelTable>,
    /// Label-id pair -> key, for every key.
    index: HashMap<u64, u32, ahash::RandomState>,
    /// 128-bit hash of the raw (channel, campaign) strings -> key, for
    /// pairs that were not folded into `__overflow__` (so it is bounded by
    /// the cardinality limits). One probe per event instead of two shared
    /// label lookups and a second map.
    cache: PreHashedMap128<u32>,
    keys: Vec<KeyState>,
    deals: PreHashedMap<DealState>,
    /// The span of the last event time (see [`KeyState::pend`]).
    ts_span: SpanMemo,
    pub stats: AggStats,
}

/// The span of time around an instant inside which no window's bucket
/// changes (with the default windows, one 5-second bucket of the 5m
/// window), remembered: consecutive events mostly fall in the same span,
/// and then cost no division.
#[derive(Debug, Clone)]
struct SpanMemo {
    lo: i64,
    hi: i64,
}

impl SpanMemo {
    /// `lo..hi` containing `t` (`i64::MIN..i64::MAX` with no windows).
    #[inline]
    fn span(&mut self, slots: &[Slot], t: i64) -> (i64, i64) {
        if t < self.lo || t >= self.hi {
            let (mut lo, mut hi) = (i64::MIN, i64::MAX);
            for slot in slots {
                let (_, l, h) = slot.span(t);
                lo = lo.max(l);
                hi = hi.min(h);
            }
            (self.lo, self.hi) = (lo, hi);
        }
        (self.lo, self.hi)
    }
}

impl Aggregator {
    pub fn new(cfg: &EngineConfig, labels: Arc<LabelTable>) -> Self {
        assert!(
            cfg.windows.len() <= MAX_WINDOWS,
            "window lists are checked by config::parse_windows"
        );
        let mut slots: Vec<Slot> = cfg.windows.iter().map(Slot::rolling).collect();
        let calendar = Calendar::new(&cfg.calendar, &mut slots);
        Aggregator {
            specs: cfg.windows.clone(),
            slots,
            calendar,
            calendar_config: cfg.calendar.clone(),
            // Twice the longest window: v2 publishes the previous window.
            late_before_ms: cfg
                .longest_window_ms()
                .saturating_mul(2)
                .saturating_add(cfg.allowed_lateness_ms),
            late_calendar: (i64::MIN, (0, 0)),
            allowed_lateness_ms: cfg.allowed_lateness_ms,
            max_tracked_deals: cfg.max_tracked_deals,
            channel_origins: cfg.channel_origins.clone().into(),
            gross_margin: cfg.gross_margin,
            labels,
            index: HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)),
            cache: PreHashedMap128::default(),
            keys: Vec::new(),
            deals: PreHashedMap::default(),
            // Empty: the first lookup computes.
            ts_span: SpanMemo { lo: 0, hi: 0 },
            stats: AggStats::default(),
        }
    }

    /// The rolling windows.
    pub fn windows(&self) -> &[WindowSpec] {
        &self.specs
    }

    /// Where the rings keep their buckets (see [`calendar`]).
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// Every published window at engine time `now`: the rolling windows in
    /// configured order, then the calendar windows in the contract's.
    pub fn views(&self, now: i64) -> Vec<View> {
        let mut v: Vec<View> = self
            .specs
            .iter()
            .enumerate()
            .map(|(i, s)| View::rolling(s, i, now))
            .collect();
        if let Some(c) = &self.calendar {
            v.extend(c.views(now));
        }
        v
    }

    /// One key's sums in every view at `now`, finished, with the labels of
    /// the views (tests and tools; the exposition merges keys first).
    pub fn sums_at(&self, key: &KeyState, now: i64) -> Vec<(Arc<str>, WindowSums)> {
        let views = self.views(now);
        let mut out = vec![WindowSums::default(); views.len()];
        key.sums_into(&self.slots, &views, &mut out);
        views
            .into_iter()
            .zip(out)
            .map(|(v, mut w)| {
                w.finish();
                w.params = KpiParams {
                    window_ms: v.window_ms,
                    gross_margin: self.gross_margin,
                };
                (v.label, w)
            })
            .collect()
    }

    /// The calendar settings.
    pub fn calendar_config(&self) -> &crate::config::CalendarConfig {
        &self.calendar_config
    }

    pub fn keys(&self) -> &[KeyState] {
        &self.keys
    }

    pub fn labels(&self) -> &Arc<LabelTable> {
        &self.labels
    }

    /// The `gross_margin` setting.
    pub fn gross_margin(&self) -> f64 {
        self.gross_margin
    }

    /// A deal's origin when its event names none (EVENTS.md v2).
    fn default_origin(&self, channel: &str) -> Origin {
        self.channel_origins
            .iter()
            .find(|(c, _)| c == channel)
            .map_or_else(|| Origin::default_for_channel(channel), |x| x.1)
    }

    #[inline]
    fn key_index(&mut self, hint: KeyHint, channel: &str, campaign: &str) -> usize {
        if hint.key != NO_KEY {
            return hint.key as usize;
        }
        let h = hint.hash;
        if let Some(&k) = self.cache.get(&h) {
            return k as usize;
        }
        let (ch, ch_over) = self.labels.channel.intern(channel);
        let (ca, ca_over) = self.labels.campaign.intern(campaign);
        self.stats.label_overflow[0] += u64::from(ch_over);
        self.stats.label_overflow[1] += u64::from(ca_over);
        let (ch, ca, admitted) = self.admit(ch, ca);
        self.stats.label_overflow[3] += u64::from(!admitted);
        let composite = (u64::from(ch) << 32) | u64::from(ca);
        let next = self.keys.len() as u32;
        let idx = *self.index.entry(composite).or_insert(next);
        if idx == next {
            self.keys.push(KeyState {
                channel: ch,
                campaign: ca,
                ..KeyState::default()
            });
        }
        if !ch_over && !ca_over && admitted {
            self.cache.insert(h, idx);
        }
        idx as usize
    }

    /// The label ids a key is published under: its own when the series
    /// budget admits it, else the overflow key's; and whether it was
    /// admitted.
    #[inline]
    fn admit(&self, ch: u32, ca: u32) -> (u32, u32, bool) {
        if self
            .labels
            .keys
            .admit((u64::from(ch) << 32) | u64::from(ca))
        {
            (ch, ca, true)
        } else {
            (0, 0, false)
        }
    }

    /// Is an event at `ts_eff` too old for every window at `now` (the
    /// previous windows and calendar periods included; EVENTS.md v2)?
    #[inline]
    pub fn is_late(&mut self, ts_eff: i64, now: i64) -> bool {
        if ts_eff >= now.saturating_sub(self.late_before_ms) {
            return false;
        }
        match &self.calendar {
            None => true,
            Some(_) => ts_eff < self.calendar_cutoff(now),
        }
    }

    /// The UTC time before which an event reaches no calendar window at
    /// `now`, recomputed once per local day.
    #[cold]
    fn calendar_cutoff(&mut self, now: i64) -> i64 {
        let (cut, (lo, hi)) = self.late_calendar;
        if now >= lo && now < hi {
            return cut;
        }
        let Some(c) = &self.calendar else {
            return i64::MIN;
        };
        let (start, valid) = c.oldest_start(now);
        let cut = start.saturating_sub(self.allowed_lateness_ms);
        self.late_calendar = (cut, valid);
        cut
    }

    /// Applies one validated, deduplicated event. `ts_eff` is the event time
    /// clamped to `now` (see docs/SEMANTICS.md). Returns whether it was
    /// late (see [`is_late`](Self::is_late)).
    pub fn apply(&mut self, ev: &Event<'_>, ts_eff: i64, now: i64) -> bool {
        let hint = KeyHint {
            hash: pair_hash(&ev.channel, &ev.campaign),
            key: NO_KEY,
        };
        self.apply_hinted(ev, ts_eff, now, hint)
    }

    /// The key lookup of `ev`, done ahead of [`apply_hinted`](Self::apply_hinted)
    /// (for batches: the lookups of several events then overlap). A key
    /// found stays valid: keys and their cache entries are never removed.
    #[inline]
    pub fn key_hint(&self, ev: &Event<'_>) -> KeyHint {
        let hash = pair_hash(&ev.channel, &ev.campaign);
        let key = self.cache.get(&hash).copied().unwrap_or(NO_KEY);
        KeyHint { hash, key }
    }

    /// Prefetches the key state of a found key: its first cache line and
    /// the lines of its totals that `ev` updates.
    #[inline]
    pub fn prefetch_key(&self, ev: &Event<'_>, hint: KeyHint) {
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
        }
    }

    /// Prefetches the log entries `ev` will use and, when the log is about
    /// to be added to the rings, the whole log and the ring pointers (its
    /// key's first line should be in cache already, see
    /// [`prefetch_key`](Self::prefetch_key)).
    #[inline]
    pub fn prefetch_rings(&self, ev: &Event<'_>, hint: KeyHint) {
        let Some(k) = self.keys.get(hint.key as usize) else {
            return;
        };
        if is_traffic(&ev.body) && k.absorbs(ev.ts) {
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
    fn flushing_key(&self, ev: &Event<'_>, hint: KeyHint) -> Option<&KeyState> {
        let k = self.keys.get(hint.key as usize)?;
        let absorbed = is_traffic(&ev.body) && k.absorbs(ev.ts);
        (!absorbed && k.flush_coming()).then_some(k)
    }

    /// Prefetches the rings the log of `ev`'s key is about to be added to
    /// (the ring pointers should be in cache already, see
    /// [`prefetch_rings`](Self::prefetch_rings)).
    #[inline]
    pub fn prefetch_buckets(&self, ev: &Event<'_>, hint: KeyHint) {
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
    pub fn prefetch_tails(&self, ev: &Event<'_>, hint: KeyHint) {
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

    /// [`apply`](Self::apply) with the key lookup done ahead by
    /// [`key_hint`](Self::key_hint) on this aggregator.
    pub fn apply_hinted(&mut self, ev: &Event<'_>, ts_eff: i64, now: i64, hint: KeyHint) -> bool {
        let k = self.key_index(hint, &ev.channel, &ev.campaign);
        let late = self.is_late(ts_eff, now);
        if late {
            self.stats.late += 1;
        }
        // Late events reach no window: an empty slot list skips the rings
        // (which are still sized for every slot).
        let specs: &[Slot] = if late { &[] } else { &self.slots };
        let key = &mut self.keys[k];
        let t = &mut key.totals;
        match &ev.body {
            Body::Impression { count, cost } | Body::Click { count, cost } => {
                let is_click = matches!(ev.body, Body::Click { .. });
                let (count, cost) = (*count as i64, *cost);
                if is_click {
                    t.clicks += i128::from(count);
                } else {
                    t.impressions += i128::from(count);
                }
                t.ad_spend += i128::from(cost);
                t.spend += i128::from(cost);
                let (impressions, clicks) = if is_click { (0, count) } else { (count, 0) };
                let d = traffic_delta(impressions, clicks, cost, 0);
                add_traffic(key, &mut self.ts_span, specs, now, ts_eff, d);
            }
            Body::Spend { amount, ads } => {
                if *ads {
                    t.ad_spend += i128::from(*amount);
                }
                t.spend += i128::from(*amount);
                let (ad, other) = if *ads { (*amount, 0) } else { (0, *amount) };
                add_traffic(
                    key,
                    &mut self.ts_span,
                    specs,
                    now,
                    ts_eff,
                    traffic_delta(0, 0, ad, other),
                );
            }
            Body::Lead { stage } => {
                t.leads[*stage as usize] += 1;
                let kind = Kind::Lead(*stage);
                log_event(key, &mut self.ts_span, specs, now, ts_eff, kind, 1, 0);
            }
            Body::Subscription { change, mrr_delta } => {
                key.seen |= seen::SUBS;
                let c = *change as usize;
                t.mrr_movement[c] += i128::from(*mrr_delta);
                t.mrr += i128::from(change.sign() * mrr_delta);
                let customers = pending::customer_field(*change).is_some();
                if customers {
                    t.customers += change.sign() as i128;
                }
                let (kind, b) = (Kind::Sub(*change), i64::from(customers));
                log_event(
                    key,
                    &mut self.ts_span,
                    specs,
                    now,
                    ts_eff,
                    kind,
                    *mrr_delta,
                    b,
                );
            }
            Body::Deal {
                deal_id,
                stage,
                amount,
                created_ts,
                origin,
                influenced,
                ignored,
            } => {
                t.deals[*stage as usize] += 1;
                let cycle = ev.ts - created_ts.unwrap_or(ev.ts);
                if *stage == DealStage::Won {
                    t.revenue_won += i128::from(*amount);
                }
                let (kind, a, b) = Entry::deal(*stage, *amount, cycle);
                log_event(key, &mut self.ts_span, specs, now, ts_eff, kind, a, b);
                key.seen |= seen::DEAL;
                if *ignored != 0 {
                    self.stats.fields_ignored[0] += u64::from(ignored & 1);
                    self.stats.fields_ignored[1] += u64::from(ignored >> 1 & 1);
                }
                let (stage, amount) = (*stage, *amount);
                if stage != DealStage::Lost {
                    let o = origin.unwrap_or_else(|| self.default_origin(&ev.channel)) as usize;
                    let (mut da, mut db) = ([0; v2::DEAL_A_N], [0; v2::DEAL_B_N]);
                    if stage == DealStage::Open {
                        da[f2::PIPELINE_CREATED] = amount;
                        db[f2::PIPELINE_BY_ORIGIN + o] = amount;
                    } else {
                        da[f2::WON_BY_ORIGIN + o] = 1;
                        db[f2::REVENUE_BY_ORIGIN + o] = amount;
                        if *influenced {
                            da[f2::WON_INFLUENCED] = 1;
                            da[f2::REVENUE_INFLUENCED] = amount;
                        }
                    }
                    let v = self.keys[k].v2_mut();
                    if stage == DealStage::Open {
                        v.totals.pipeline_created += i128::from(amount);
                    }
                    v.deal(specs, now, ts_eff, &da, &db);
                }
                self.track_deal(k as u32, deal_id, stage, amount);
            }
            _ => self.apply_v2(k, ev, late, ts_eff, now),
        }
        late
    }

    /// The v2 event types (rare next to traffic: out of the v1 path).
    #[inline(never)]
    fn apply_v2(&mut self, k: usize, ev: &Event<'_>, late: bool, ts: i64, now: i64) {
        let action = match &ev.body {
            Body::Conversion { action, .. } => {
                let (id, over) = self.labels.action.intern(action);
                self.stats.label_overflow[2] += u64::from(over);
                id
            }
            _ => 0,
        };
        let specs: &[Slot] = if late { &[] } else { &self.slots };
        let key = &mut self.keys[k];
        match &ev.body {
            Body::Session {
                count,
                pageviews,
                bounces,
                engaged,
            } => {
                key.seen |= seen::WEB;
                let v = key.v2_mut();
                v.totals.sessions += i128::from(*count);
                v.totals.pageviews += i128::from(*pageviews);
                let mut d = [0; v2::WEB_N];
                d[f2::SESSIONS] = *count as i64;
                d[f2::PAGEVIEWS] = *pageviews as i64;
                d[f2::BOUNCES] = *bounces as i64;
                d[f2::ENGAGED] = *engaged as i64;
                v.web(specs, now, ts, &d);
            }
            Body::Conversion { count, value, .. } => {
                let mut d = [0; v2::CONV_N];
                d[f2::CONVERSIONS] = *count as i64;
                d[f2::CONVERSION_VALUE] = *value;
                key.v2_mut().conversion(specs, now, ts, action, &d);
            }
            Body::Email { action, count } => {
                key.seen |= seen::EMAIL;
                let v = key.v2_mut();
                v.totals.email[*action as usize] += i128::from(*count);
                let mut d = [0; v2::EMAIL_N];
                d[*action as usize] = *count as i64;
                v.email(specs, now, ts, &d);
            }
            Body::Survey { kind, score } => {
                key.seen |= seen::SURVEY;
                let v = key.v2_mut();
                v.totals.survey[*kind as usize] += 1;
                let mut d = [0; v2::SURVEY_N];
                match kind {
                    SurveyKind::Nps => {
                        d[f2::NPS_RESPONSES] = 1;
                        let class = match score {
                            9..=10 => f2::NPS_PROMOTERS,
                            7..=8 => f2::NPS_PASSIVES,
                            _ => f2::NPS_DETRACTORS,
                        };
                        d[class] = 1;
                    }
                    SurveyKind::Csat => {
                        d[f2::CSAT_RESPONSES] = 1;
                        d[f2::CSAT_SATISFIED] = i64::from(*score >= 4);
                    }
                }
                v.survey(specs, now, ts, &d);
            }
            _ => {}
        }
    }

    fn track_deal(&mut self, key: u32, deal_id: &str, stage: DealStage, amount: i64) {
        let h = id_hash(deal_id);
        let full = self.deals.len() >= self.max_tracked_deals;
        let pipeline_change = match self.deals.get_mut(&h) {
            Some(d) if d.closed => None,
            Some(d) => {
                let old = (d.key, d.amount);
                if stage == DealStage::Open {
                    d.key = key;
                    d.amount = amount;
                } else {
                    d.amount = 0;
                    d.closed = true;
                }
                Some(old)
            }
            None if full => {
                self.stats.deals_untracked += 1;
                return;
            }
            None => {
                let closed = stage != DealStage::Open;
                let amount = if closed { 0 } else { amount };
                self.deals.insert(
                    h,
                    DealState {
                        key,
                        amount,
                        closed,
                    },
                );
                Some((key, 0))
            }
        };
        if let Some((old_key, old_amount)) = pipeline_change {
            self.keys[old_key as usize].totals.open_pipeline -= i128::from(old_amount);
            if stage == DealStage::Open {
                self.keys[key as usize].totals.open_pipeline += i128::from(amount);
            }
        }
    }

    /// Adds every key's pending traffic and log to its rings (before a
    /// checkpoint, which encodes rings only). Entries that have left a
    /// window at `now` are dropped from it rather than added: engine time
    /// only grows, so no later render could count them (a checkpoint of a
    /// backfill would otherwise carry every logged update in its short
    /// windows), and so are ring buckets that have left their window
    /// (rings drop them lazily). Never changes a published value.
    pub fn settle(&mut self, now: i64) {
        for k in &mut self.keys {
            k.settle(&self.slots, now);
            k.evict(&self.slots, now, false);
        }
    }

    /// Checkpoint encoding: counters, keys (by label names, since label ids
    /// are per process), open deals.
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.uvar(self.stats.late);
        w.uvar(self.stats.label_overflow[0]);
        w.uvar(self.stats.label_overflow[1]);
        w.uvar(self.stats.deals_untracked);
        // Format 3.
        w.uvar(self.stats.label_overflow[2]);
        w.uvar(self.stats.fields_ignored[0]);
        w.uvar(self.stats.fields_ignored[1]);
        let channels = self.labels.channel.names();
        let campaigns = self.labels.campaign.names();
        let name = |names: &[Arc<str>], id: u32| -> Arc<str> {
            names
                .get(id as usize)
                .cloned()
                .unwrap_or_else(|| Arc::from(labels::OVERFLOW))
        };
        let actions = self.labels.action.names();
        let action_name = |id: u32| name(&actions, id).to_string();
        w.uvar(self.keys.len() as u64);
        for k in &self.keys {
            w.str(&name(&channels, k.channel));
            w.str(&name(&campaigns, k.campaign));
            k.encode_into(w, &action_name);
        }
        w.uvar(self.deals.len() as u64);
        for (h, d) in &self.deals {
            w.u64_fixed(*h);
            w.uvar(u64::from(d.key));
            w.ivar(d.amount);
            w.u8(u8::from(d.closed));
        }
        // Events folded by the series budget: written only when there were
        // any, last (the aggregator ends the partition's state), so that a
        // checkpoint without any is byte for byte format 3 as before the
        // budget existed.
        if self.stats.label_overflow[3] != 0 {
            w.uvar(self.stats.label_overflow[3]);
        }
    }

    /// Inverse of [`encode_into`](Self::encode_into), into an empty
    /// aggregator.
    pub(crate) fn decode_from(&mut self, r: &mut Reader<'_>, version: u16) -> ReadResult<()> {
        self.stats.late = r.uvar()?;
        self.stats.label_overflow[0] = r.uvar()?;
        self.stats.label_overflow[1] = r.uvar()?;
        self.stats.deals_untracked = r.uvar()?;
        if version >= 3 {
            self.stats.label_overflow[2] = r.uvar()?;
            self.stats.fields_ignored[0] = r.uvar()?;
            self.stats.fields_ignored[1] = r.uvar()?;
        }
        let labels = self.labels.clone();
        let mut intern = |name: &str| labels.action.intern(name).0;
        let nw = self.slots.len();
        let n = r.count(3)?;
        // Index in the checkpoint -> index here (keys can fold together
        // when a label limit is now lower).
        let mut remap = Vec::with_capacity(n);
        for _ in 0..n {
            let (channel, campaign) = (r.str()?, r.str()?);
            let mut key = KeyState::default();
            key.decode_from(r, nw, version, &mut intern)?;
            let (ch, ch_over) = self.labels.channel.intern(channel);
            let (ca, ca_over) = self.labels.campaign.intern(campaign);
            let (ch, ca, admitted) = self.admit(ch, ca);
            let composite = (u64::from(ch) << 32) | u64::from(ca);
            let next = self.keys.len() as u32;
            let idx = *self.index.entry(composite).or_insert(next);
            if idx == next {
                key.channel = ch;
                key.campaign = ca;
                self.keys.push(key);
            } else {
                self.keys[idx as usize].merge_from(&key, nw);
            }
            if !ch_over && !ca_over && admitted {
                self.cache.insert(pair_hash(channel, campaign), idx);
            }
            remap.push(idx);
        }
        let n = r.count(11)?;
        self.deals.reserve(n);
        for _ in 0..n {
            let h = r.u64_fixed()?;
            let key = usize::try_from(r.uvar()?)
                .ok()
                .and_then(|k| remap.get(k).copied())
                .ok_or_else(|| CheckpointError::Corrupt("deal key".into()))?;
            let amount = r.ivar()?;
            let closed = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(CheckpointError::Corrupt("deal flag".into())),
            };
            self.deals.insert(
                h,
                DealState {
                    key,
                    amount,
                    closed,
                },
            );
        }
        // The count of events folded by the series budget (see encode_into).
        if r.remaining() != 0 {
            self.stats.label_overflow[3] = r.uvar()?;
        }
        Ok(())
    }

    /// Deals remembered for pipeline matching.
    pub fn tracked_deals(&self) -> usize {
        self.deals.len()
    }

    /// Approximate bytes held by this aggregator (keys, rings, maps).
    pub fn memory_bytes(&self) -> usize {
        let rings: usize = self.keys.iter().map(KeyState::heap_bytes).sum();
        self.keys.capacity() * std::mem::size_of::<KeyState>()
            + rings
            + self.index.capacity() * 16
            + self.cache.capacity() * 24
            + self.deals.capacity() * (8 + std::mem::size_of::<DealState>())
    }
}

/// Impressions, clicks and spend: the traffic group, which goes through
/// the pending sums (see [`KeyState::pend`]).
#[inline]
fn is_traffic(body: &Body<'_>) -> bool {
    matches!(
        body,
        Body::Impression { .. } | Body::Click { .. } | Body::Spend { .. }
    )
}

/// Traffic into the pending sums of its key when the event falls in their
/// span; an event of a later span moves them to the log and starts new
/// ones; an event of an earlier span goes to the log directly.
///
/// The delta comes by value, built from constant indices (see
/// [`traffic_delta`]), so that it stays in registers: an array stored
/// element by element and read back whole stalls on store forwarding,
/// behind every store still waiting for a cache miss.
#[inline(always)]
fn add_traffic(
    key: &mut KeyState,
    memo: &mut SpanMemo,
    specs: &[Slot],
    now: i64,
    ts_eff: i64,
    d: [i64; TRAFFIC_N],
) {
    if specs.is_empty() {
        return; // late: all-time totals only
    }
    let span = memo.span(specs, ts_eff);
    if key.has_pending() && span.0 == key.pend_lo {
        add_into(&mut key.pend, &d);
    } else if key.has_pending() && ts_eff < key.pend_lo {
        key.log_traffic(span.0, &d, specs, now);
    } else {
        key.start_pending(span, d, specs, now);
    }
}

/// A traffic group delta.
#[inline(always)]
fn traffic_delta(
    impressions: i64,
    clicks: i64,
    ad_spend: i64,
    other_spend: i64,
) -> [i64; TRAFFIC_N] {
    let mut d = [0; TRAFFIC_N];
    d[field::IMPRESSIONS] = impressions;
    d[field::CLICKS] = clicks;
    d[field::AD_SPEND] = ad_spend;
    d[field::OTHER_SPEND] = other_spend;
    d
}

/// The window part of a lead, deal or subscription event, into its key's
/// log (see [`pending`]).
#[allow(clippy::too_many_arguments)]
#[inline]
fn log_event(
    key: &mut KeyState,
    memo: &mut SpanMemo,
    specs: &[Slot],
    now: i64,
    ts_eff: i64,
    kind: Kind,
    a: i64,
    b: i64,
) {
    if specs.is_empty() {
        return; // late: all-time totals only
    }
    let lo = memo.span(specs, ts_eff).0;
    key.log(lo, kind, a, b, specs, now);
}

/// Bucket indices of each slot for a run of times, at one engine time:
/// consecutive log entries mostly fall in the bucket of the one before in
/// all but the shortest windows, and then cost no division.
struct Buckets<'a> {
    n: usize,
    slots: &'a [Slot],
    /// The oldest bucket kept, of the groups without a previous window and
    /// of the growth groups.
    oldest: [i64; MAX_SLOTS],
    oldest_growth: [i64; MAX_SLOTS],
    /// The last bucket looked up, and the UTC range `start..start + len`
    /// known to lie in it.
    idx: [i64; MAX_SLOTS],
    start: [i64; MAX_SLOTS],
    len: [i64; MAX_SLOTS],
}

/// Rolling windows and the two calendar grids.
const MAX_SLOTS: usize = MAX_WINDOWS + 2;

impl<'a> Buckets<'a> {
    fn new(slots: &'a [Slot], now: i64) -> Self {
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
    fn oldest(&self, wi: usize, growth: bool) -> i64 {
        if growth {
            self.oldest_growth[wi]
        } else {
            self.oldest[wi]
        }
    }

    /// The bucket of `ts` in slot `wi`, if its rings (of a growth group or
    /// not) still keep it.
    #[inline]
    fn of(&mut self, wi: usize, ts: i64, growth: bool) -> Option<i64> {
        if ts.wrapping_sub(self.start[wi]) as u64 >= self.len[wi] as u64 {
            let (idx, lo, hi) = self.slots[wi].span(ts);
            self.idx[wi] = idx;
            self.start[wi] = lo;
            self.len[wi] = hi.saturating_sub(lo);
        }
        (self.idx[wi] >= self.oldest(wi, growth)).then_some(self.idx[wi])
    }
}

/// 128-bit hash of a (channel, campaign) pair; `0xFF` never occurs in UTF-8,
/// so the separator makes the encoding unambiguous.
#[inline]
fn pair_hash(channel: &str, campaign: &str) -> u128 {
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod budget_tests;
