//! The v2 groups of a key (METRICS.md v2): deal attribution (pipeline
//! created, deals and revenue by origin, influenced deals), web sessions,
//! conversions by action, email and surveys.
//!
//! They live in one block per key, [`V2Key`], allocated on the key's first
//! event that has something to add here: a key that only ever sees v1
//! traffic, leads and subscriptions pays one null pointer for all of it, and
//! v1 events other than deals never touch it. v2 events are rare next to
//! traffic, so their window part goes straight to the rings (one update per
//! window) instead of through the key's log; the batch pipeline prefetches
//! those rings as it does the log's (`prefetch_fields`, `_rings`, `_tails`).
//!
//! Which groups a key has received (and so publishes, see METRICS.md) is
//! recorded in [`KeyState`](super::KeyState)'s `seen` bits, which a late
//! event sets too.

use super::calendar::{Slot, View};
use super::key::{rings, rings_heap, Rings};
use super::ring::Ring;
use super::PrevSums;
use crate::decode::{Body, DealStage};
use crate::util::codec::{CheckpointError, ReadResult, Reader, Writer};
use crate::util::prefetch::{prefetch, prefetch_all};

/// Bits of `KeyState::seen`: the groups a key has received an event of.
pub mod seen {
    /// Any deal event (`pipeline_created`, `_by_origin`, `_influenced`).
    pub const DEAL: u8 = 1;
    pub const WEB: u8 = 2;
    pub const EMAIL: u8 = 4;
    pub const SURVEY: u8 = 8;
    /// Any subscription event (`funnel_mrr_net_new` is present only then).
    pub const SUBS: u8 = 16;
    pub const ALL: u8 = 31;
}

/// Field positions of the v2 window groups.
pub mod f2 {
    // deal group, first ring
    pub const PIPELINE_CREATED: usize = 0;
    pub const WON_INFLUENCED: usize = 1;
    pub const REVENUE_INFLUENCED: usize = 2;
    /// Won deals by `Origin as usize` (4 values).
    pub const WON_BY_ORIGIN: usize = 3;
    // deal group, second ring
    /// Revenue won by origin (4 values).
    pub const REVENUE_BY_ORIGIN: usize = 0;
    /// `open` amounts by origin (4 values).
    pub const PIPELINE_BY_ORIGIN: usize = 4;
    // web group
    pub(crate) const SESSIONS: usize = 0;
    pub(crate) const PAGEVIEWS: usize = 1;
    pub(crate) const BOUNCES: usize = 2;
    pub(crate) const ENGAGED: usize = 3;
    // email group: by `EmailAction as usize`
    // survey group
    pub const NPS_RESPONSES: usize = 0;
    pub const NPS_PROMOTERS: usize = 1;
    pub const NPS_PASSIVES: usize = 2;
    pub const NPS_DETRACTORS: usize = 3;
    pub const CSAT_RESPONSES: usize = 4;
    pub const CSAT_SATISFIED: usize = 5;
    // conversion group (per action)
    pub(crate) const CONVERSIONS: usize = 0;
    pub(crate) const CONVERSION_VALUE: usize = 1;
}

pub(crate) const DEAL_A_N: usize = 7;
pub(crate) const DEAL_B_N: usize = 8;
pub(crate) const WEB_N: usize = 4;
pub(crate) const EMAIL_N: usize = 8;
pub(crate) const SURVEY_N: usize = 6;
pub(crate) const CONV_N: usize = 2;

/// All-time v2 totals of one key (or of keys merged for rendering). Money
/// in micro-units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Totals {
    /// [`seen`] bits (merged: or-ed).
    pub seen: u8,
    /// `funnel_pipeline_created_total`.
    pub pipeline_created: i128,
    pub sessions: i128,
    pub pageviews: i128,
    /// `funnel_email_events_total{action}`, by `EmailAction as usize`.
    pub email: [i128; EMAIL_N],
    /// `funnel_survey_responses_total{kind}`, by `SurveyKind as usize`.
    pub survey: [i128; 2],
    /// `(action label id, funnel_conversions_total)` of every action the
    /// key received; sorted by id once merged for rendering.
    pub conversions: Vec<(u32, i128)>,
}

impl V2Totals {
    pub fn add(&mut self, o: &V2Totals) {
        self.seen |= o.seen;
        self.pipeline_created += o.pipeline_created;
        self.sessions += o.sessions;
        self.pageviews += o.pageviews;
        for i in 0..EMAIL_N {
            self.email[i] += o.email[i];
        }
        for i in 0..2 {
            self.survey[i] += o.survey[i];
        }
        for &(a, c) in &o.conversions {
            match self.conversions.iter_mut().find(|x| x.0 == a) {
                Some(x) => x.1 += c,
                None => self.conversions.push((a, c)),
            }
        }
    }

    /// Sorts the conversion actions by id (after the last merge).
    pub fn finish(&mut self) {
        self.conversions.sort_unstable_by_key(|x| x.0);
    }

    /// `funnel_email_subscribers`: subscribes - unsubscribes - complaints.
    pub(crate) fn email_subscribers(&self) -> i128 {
        use crate::decode::EmailAction as A;
        self.email[A::Subscribed as usize]
            - self.email[A::Unsubscribed as usize]
            - self.email[A::Complained as usize]
    }
}

/// The v2 sums of one window (see [`super::WindowSums`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct V2Sums {
    pub deal_a: [i64; DEAL_A_N],
    pub deal_b: [i64; DEAL_B_N],
    pub web: [i64; WEB_N],
    pub email: [i64; EMAIL_N],
    pub survey: [i64; SURVEY_N],
    /// `(action label id, sums)`, sorted by id after
    /// [`finish`](Self::finish).
    pub conversions: Vec<(u32, [i64; CONV_N])>,
}

impl V2Sums {
    pub fn add(&mut self, o: &V2Sums) {
        use super::ring::add_into;
        add_into(&mut self.deal_a, &o.deal_a);
        add_into(&mut self.deal_b, &o.deal_b);
        add_into(&mut self.web, &o.web);
        add_into(&mut self.email, &o.email);
        add_into(&mut self.survey, &o.survey);
        for (a, v) in &o.conversions {
            self.add_conversion(*a, v);
        }
    }

    fn add_conversion(&mut self, action: u32, v: &[i64; CONV_N]) {
        add_action(&mut self.conversions, action, v);
    }

    pub fn finish(&mut self) {
        self.conversions.sort_unstable_by_key(|x| x.0);
    }

    /// The sums of one conversion action (zero when it has none here).
    pub fn conversion(&self, action: u32) -> [i64; CONV_N] {
        action_sums(&self.conversions, action)
    }
}

/// Adds one action's sums to a list of `(action label id, sums)`.
pub(crate) fn add_action(list: &mut Vec<(u32, [i64; CONV_N])>, action: u32, v: &[i64; CONV_N]) {
    match list.iter_mut().find(|x| x.0 == action) {
        Some(x) => super::ring::add_into(&mut x.1, v),
        None => list.push((action, *v)),
    }
}

/// One action's sums in a list of `(action label id, sums)`; zero when it
/// has none there.
pub(crate) fn action_sums(list: &[(u32, [i64; CONV_N])], action: u32) -> [i64; CONV_N] {
    list.iter()
        .find(|x| x.0 == action)
        .map_or([0; CONV_N], |x| x.1)
}

/// One conversion action of a key: its total and rings.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConvAction {
    pub action: u32,
    pub total: i128,
    rings: Rings<Ring<CONV_N>>,
}

/// The v2 state of one key.
#[derive(Debug, Clone, Default)]
pub(crate) struct V2Key {
    pub totals: V2Totals,
    deal_a: Rings<Ring<DEAL_A_N>>,
    deal_b: Rings<Ring<DEAL_B_N>>,
    web: Rings<Ring<WEB_N>>,
    email: Rings<Ring<EMAIL_N>>,
    survey: Rings<Ring<SURVEY_N>>,
    conv: Vec<ConvAction>,
}

/// Adds `d` at time `ts` to one ring per slot (none when late: `slots`
/// is then empty); `growth` for the groups with a previous window.
#[inline]
pub(crate) fn add_now<const N: usize>(
    rs: &mut Rings<Ring<N>>,
    slots: &[Slot],
    now: i64,
    ts: i64,
    d: &[i64; N],
    growth: bool,
) {
    if slots.is_empty() {
        return;
    }
    for (r, slot) in rings(rs, slots.len()).iter_mut().zip(slots) {
        r.add(slot.oldest(now, growth), slot.bucket(ts), d);
    }
}

/// Whether `body` adds to this block's rings (directly, see the module's
/// docs): the v2 event types, and deals other than lost ones (their
/// attribution). A hint for the batch pipeline's prefetch stages.
#[inline(always)]
pub(super) fn touches_v2(body: &Body<'_>) -> bool {
    match body {
        Body::Session { .. }
        | Body::Email { .. }
        | Body::Survey { .. }
        | Body::Conversion { .. } => true,
        Body::Deal { stage, .. } => *stage != DealStage::Lost,
        _ => false,
    }
}

/// Prefetch stages of the batch pipeline for the v2 groups (as
/// `Aggregator::prefetch_rings`, `_buckets` and `_tails` do for the v1
/// ones): each requests what the next needs, once the previous stage's
/// lines have arrived. Hints only: nothing here changes state.
impl V2Key {
    /// Stage 2: the totals and the ring pointers `body` updates.
    #[inline]
    pub(super) fn prefetch_fields(&self, body: &Body<'_>) {
        match body {
            Body::Session { .. } => {
                prefetch(&self.totals.sessions);
                prefetch(&self.web);
            }
            Body::Email { action, .. } => {
                prefetch(&self.totals.email[*action as usize]);
                prefetch(&self.email);
            }
            Body::Survey { kind, .. } => {
                prefetch(&self.totals.survey[*kind as usize]);
                prefetch(&self.survey);
            }
            Body::Conversion { .. } => {
                prefetch(&self.conv);
                prefetch(&self.totals.conversions);
            }
            Body::Deal { .. } => {
                prefetch(&self.totals.pipeline_created);
                prefetch(&self.deal_a);
                prefetch(&self.deal_b);
            }
            _ => {}
        }
    }

    /// Stage 3: the rings' headers (and a conversion's list of actions).
    #[inline]
    pub(super) fn prefetch_rings(&self, body: &Body<'_>) {
        fn pf<T>(r: &Rings<T>) {
            if let Some(r) = r {
                prefetch_all::<[T]>(r);
            }
        }
        match body {
            Body::Session { .. } => pf(&self.web),
            Body::Email { .. } => pf(&self.email),
            Body::Survey { .. } => pf(&self.survey),
            Body::Conversion { .. } => {
                prefetch_all::<[ConvAction]>(&self.conv);
                prefetch_all::<[(u32, i128)]>(&self.totals.conversions);
            }
            Body::Deal { .. } => {
                pf(&self.deal_a);
                pf(&self.deal_b);
            }
            _ => {}
        }
    }

    /// Stage 4: where the rings append a bucket (see `Ring::prefetch_tail`).
    #[inline]
    pub(super) fn prefetch_tails(&self, body: &Body<'_>, slots: &[Slot], ts: i64) {
        fn pf<const N: usize>(r: &Rings<Ring<N>>, slots: &[Slot], ts: i64, growth: bool) {
            if let Some(r) = r {
                for (ring, slot) in r.iter().zip(slots) {
                    ring.prefetch_tail(slot.oldest(ts, growth));
                }
            }
        }
        match body {
            Body::Session { .. } => pf(&self.web, slots, ts, true),
            Body::Email { .. } => pf(&self.email, slots, ts, false),
            Body::Survey { .. } => pf(&self.survey, slots, ts, false),
            Body::Deal { .. } => {
                pf(&self.deal_a, slots, ts, true);
                pf(&self.deal_b, slots, ts, false);
            }
            _ => {}
        }
    }
}

impl V2Key {
    /// The window part of a deal event: pipeline created and by origin,
    /// won by origin and influenced.
    pub fn deal(
        &mut self,
        slots: &[Slot],
        now: i64,
        ts: i64,
        a: &[i64; DEAL_A_N],
        b: &[i64; DEAL_B_N],
    ) {
        if a.iter().any(|&x| x != 0) {
            add_now(&mut self.deal_a, slots, now, ts, a, true);
        }
        if b.iter().any(|&x| x != 0) {
            add_now(&mut self.deal_b, slots, now, ts, b, false);
        }
    }

    pub fn web(&mut self, slots: &[Slot], now: i64, ts: i64, d: &[i64; WEB_N]) {
        add_now(&mut self.web, slots, now, ts, d, true);
    }

    pub fn email(&mut self, slots: &[Slot], now: i64, ts: i64, d: &[i64; EMAIL_N]) {
        add_now(&mut self.email, slots, now, ts, d, false);
    }

    pub fn survey(&mut self, slots: &[Slot], now: i64, ts: i64, d: &[i64; SURVEY_N]) {
        add_now(&mut self.survey, slots, now, ts, d, false);
    }

    /// A conversion of `action` (a label id).
    pub fn conversion(
        &mut self,
        slots: &[Slot],
        now: i64,
        ts: i64,
        action: u32,
        d: &[i64; CONV_N],
    ) {
        let i = match self.conv.iter().position(|c| c.action == action) {
            Some(i) => i,
            None => {
                self.conv.push(ConvAction {
                    action,
                    ..ConvAction::default()
                });
                self.totals.conversions.push((action, 0));
                self.conv.len() - 1
            }
        };
        self.conv[i].total += i128::from(d[f2::CONVERSIONS]);
        self.totals.conversions[i].1 = self.conv[i].total;
        add_now(&mut self.conv[i].rings, slots, now, ts, d, true);
    }

    /// Adds a view's sums into `o`, and its growth groups' previous
    /// window into `p`.
    pub(crate) fn sums_into(&self, v: &View, o: &mut V2Sums, p: &mut PrevSums) {
        let wi = v.slot;
        if let Some(r) = &self.deal_a {
            r[wi].sum_range(v.cur, &mut o.deal_a);
            r[wi].sum_range(v.prev, &mut p.deal_a);
        }
        if let Some(r) = &self.deal_b {
            r[wi].sum_range(v.cur, &mut o.deal_b);
        }
        if let Some(r) = &self.web {
            r[wi].sum_range(v.cur, &mut o.web);
            r[wi].sum_range(v.prev, &mut p.web);
        }
        if let Some(r) = &self.email {
            r[wi].sum_range(v.cur, &mut o.email);
        }
        if let Some(r) = &self.survey {
            r[wi].sum_range(v.cur, &mut o.survey);
        }
        for c in &self.conv {
            let (mut cur, mut prev) = ([0; CONV_N], [0; CONV_N]);
            if let Some(r) = &c.rings {
                r[wi].sum_range(v.cur, &mut cur);
                r[wi].sum_range(v.prev, &mut prev);
            }
            o.add_conversion(c.action, &cur);
            p.add_conversion(c.action, &prev);
        }
    }

    /// Drops the buckets of slot `wi` older than `oldest` (`growth` for the
    /// groups with a previous window).
    pub(crate) fn evict(&mut self, wi: usize, oldest: i64, growth: i64, shrink: bool) {
        fn ev<const N: usize>(r: &mut Rings<Ring<N>>, wi: usize, oldest: i64, shrink: bool) {
            if let Some(r) = r {
                r[wi].evict(oldest, shrink);
            }
        }
        ev(&mut self.deal_a, wi, growth, shrink);
        ev(&mut self.deal_b, wi, oldest, shrink);
        ev(&mut self.web, wi, growth, shrink);
        ev(&mut self.email, wi, oldest, shrink);
        ev(&mut self.survey, wi, oldest, shrink);
        for c in &mut self.conv {
            ev(&mut c.rings, wi, growth, shrink);
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        rings_heap(&self.deal_a, Ring::heap_bytes)
            + rings_heap(&self.deal_b, Ring::heap_bytes)
            + rings_heap(&self.web, Ring::heap_bytes)
            + rings_heap(&self.email, Ring::heap_bytes)
            + rings_heap(&self.survey, Ring::heap_bytes)
            + self
                .conv
                .iter()
                .map(|c| {
                    std::mem::size_of::<ConvAction>() + 16 + rings_heap(&c.rings, Ring::heap_bytes)
                })
                .sum::<usize>()
    }

    /// Adds another key's v2 state (restored keys folding into one);
    /// `remap` turns the other's action ids into this one's.
    pub(crate) fn merge_from(&mut self, o: &V2Key, nw: usize) {
        fn merge<const N: usize>(into: &mut Rings<Ring<N>>, from: &Rings<Ring<N>>, nw: usize) {
            if let Some(src) = from {
                for (a, b) in rings(into, nw).iter_mut().zip(src.iter()) {
                    a.merge_from(b);
                }
            }
        }
        let conv = self.totals.conversions.clone();
        self.totals.add(&o.totals);
        self.totals.conversions = conv;
        merge(&mut self.deal_a, &o.deal_a, nw);
        merge(&mut self.deal_b, &o.deal_b, nw);
        merge(&mut self.web, &o.web, nw);
        merge(&mut self.email, &o.email, nw);
        merge(&mut self.survey, &o.survey, nw);
        for c in &o.conv {
            let i = match self.conv.iter().position(|x| x.action == c.action) {
                Some(i) => i,
                None => {
                    self.conv.push(ConvAction {
                        action: c.action,
                        ..ConvAction::default()
                    });
                    self.totals.conversions.push((c.action, 0));
                    self.conv.len() - 1
                }
            };
            self.conv[i].total += c.total;
            self.totals.conversions[i].1 = self.conv[i].total;
            merge(&mut self.conv[i].rings, &c.rings, nw);
        }
    }

    /// Checkpoint encoding (format 3); action ids as label names.
    pub(crate) fn encode_into(&self, w: &mut Writer, action_name: &dyn Fn(u32) -> String) {
        let t = &self.totals;
        w.u8(t.seen);
        w.i128var(t.pipeline_created);
        w.i128var(t.sessions);
        w.i128var(t.pageviews);
        for v in t.email.iter().chain(&t.survey) {
            w.i128var(*v);
        }
        let mask = u8::from(self.deal_a.is_some())
            | u8::from(self.deal_b.is_some()) << 1
            | u8::from(self.web.is_some()) << 2
            | u8::from(self.email.is_some()) << 3
            | u8::from(self.survey.is_some()) << 4;
        w.u8(mask);
        fn each<const N: usize>(r: &Rings<Ring<N>>, w: &mut Writer) {
            for x in r.iter().flat_map(|r| r.iter()) {
                x.encode_into(w);
            }
        }
        each(&self.deal_a, w);
        each(&self.deal_b, w);
        each(&self.web, w);
        each(&self.email, w);
        each(&self.survey, w);
        w.uvar(self.conv.len() as u64);
        for c in &self.conv {
            w.str(&action_name(c.action));
            w.i128var(c.total);
            w.u8(u8::from(c.rings.is_some()));
            each(&c.rings, w);
        }
    }

    /// Inverse of [`encode_into`](Self::encode_into); `intern` gives an
    /// action name's id here.
    pub(crate) fn decode_from(
        r: &mut Reader<'_>,
        nw: usize,
        intern: &mut dyn FnMut(&str) -> u32,
    ) -> ReadResult<V2Key> {
        let mut k = V2Key::default();
        let seen = r.u8()?;
        if seen & !seen::ALL != 0 {
            return Err(CheckpointError::Corrupt("v2 seen bits".into()));
        }
        k.totals.seen = seen;
        k.totals.pipeline_created = r.i128var()?;
        k.totals.sessions = r.i128var()?;
        k.totals.pageviews = r.i128var()?;
        for i in 0..EMAIL_N {
            k.totals.email[i] = r.i128var()?;
        }
        for i in 0..2 {
            k.totals.survey[i] = r.i128var()?;
        }
        let mask = r.u8()?;
        if mask >> 5 != 0 {
            return Err(CheckpointError::Corrupt("v2 group mask".into()));
        }
        fn each<const N: usize>(
            present: bool,
            r: &mut Reader<'_>,
            nw: usize,
        ) -> ReadResult<Rings<Ring<N>>> {
            if !present {
                return Ok(None);
            }
            let mut v = Vec::with_capacity(nw);
            for _ in 0..nw {
                v.push(Ring::decode_from(r)?);
            }
            Ok(Some(v.into_boxed_slice()))
        }
        k.deal_a = each(mask & 1 != 0, r, nw)?;
        k.deal_b = each(mask & 2 != 0, r, nw)?;
        k.web = each(mask & 4 != 0, r, nw)?;
        k.email = each(mask & 8 != 0, r, nw)?;
        k.survey = each(mask & 16 != 0, r, nw)?;
        let n = r.count(3)?;
        for _ in 0..n {
            let action = intern(r.str()?);
            let total = r.i128var()?;
            let rings = match r.u8()? {
                0 => None,
                1 => each(true, r, nw)?,
                _ => return Err(CheckpointError::Corrupt("conversion rings flag".into())),
            };
            let c = ConvAction {
                action,
                total,
                rings,
            };
            // Two names may fold into one id (a lower limit now).
            let mut one = V2Key::default();
            one.totals.conversions.push((action, total));
            one.conv.push(c);
            k.merge_from(&one, nw);
        }
        Ok(k)
    }
}
