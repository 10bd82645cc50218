//! Window updates of one key not yet added to its rings.
//!
//! A key's rings are spread over a dozen cache lines (one ring per window
//! and group, and their packed buckets). An event that opens a new bucket
//! touches all of its group's rings: on a large, sparse state (a backfill of
//! history, where a key sees an event every few hours) that is most events,
//! and each costs a cache miss per line. So the window part of an event is
//! first written to a short log inside the key state, one 32-byte entry,
//! and the log is added to the rings when it is full: the rings are then
//! touched once per [`LOG_LEN`] updates instead of once per event, and
//! their misses overlap. Rendering adds the logged entries to the windows
//! their time falls in, so the log never changes a published value.
//!
//! An entry records the span of its event time (see
//! [`SpanMemo`](super::SpanMemo)): inside a span no window's bucket
//! changes, so the span's start stands for the event time in every window.

use super::{field, PrevSums, WindowSums, DEALS_N, LEADS_N, SUBS_N, TRAFFIC_N};
use crate::decode::{Change, DealStage, LeadStage};

/// Entries per key: 16 x 32 bytes, 8 cache lines. Longer logs touch the
/// rings less often but cost memory on every key and time on every render.
pub(crate) const LOG_LEN: usize = 16;

/// One logged update: `kind` says which group it belongs to and what `a`
/// and `b` mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Entry {
    /// Start of the span the event time falls in.
    pub lo: i64,
    pub a: i64,
    pub b: i64,
    pub kind: Kind,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 32);

/// What an entry adds. Coalescable kinds sum `a` and `b` when two updates
/// of the same span follow each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Traffic: `a` impressions, `b` clicks.
    #[default]
    Counts,
    /// Traffic: `a` ad spend, `b` other spend.
    Money,
    /// Traffic: `a` impressions, `b` ad spend (a span of impression
    /// events only: one entry instead of two).
    Impressions,
    /// Traffic: `a` clicks, `b` ad spend (a span of click events only).
    Clicks,
    /// Leads: `a` leads at this stage.
    Lead(LeadStage),
    /// Deals: `a` deals opened.
    DealOpen,
    /// Deals: `a` deals lost.
    DealLost,
    /// One won deal: `a` its amount, `b` its sales cycle in ms (a sketch
    /// sample each, so never coalesced).
    DealWon,
    /// Subscriptions: `a` the MRR moved, `b` the customers counted.
    Sub(Change),
}

/// The group an entry belongs to, by which rings it goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    Traffic,
    Leads,
    Deals,
    Subs,
}

impl Kind {
    pub fn group(self) -> Group {
        match self {
            Kind::Counts | Kind::Money | Kind::Impressions | Kind::Clicks => Group::Traffic,
            Kind::Lead(_) => Group::Leads,
            Kind::DealOpen | Kind::DealLost | Kind::DealWon => Group::Deals,
            Kind::Sub(_) => Group::Subs,
        }
    }

    /// The traffic fields `a` and `b` of a traffic kind stand for (one
    /// table for writing entries and for adding them up).
    #[inline(always)]
    pub(crate) fn traffic_fields(self) -> Option<(usize, usize)> {
        use field::{AD_SPEND, CLICKS, IMPRESSIONS, OTHER_SPEND};
        match self {
            Kind::Counts => Some((IMPRESSIONS, CLICKS)),
            Kind::Money => Some((AD_SPEND, OTHER_SPEND)),
            Kind::Impressions => Some((IMPRESSIONS, AD_SPEND)),
            Kind::Clicks => Some((CLICKS, AD_SPEND)),
            _ => None,
        }
    }

    /// Bit of [`Group`] in a key's log group mask.
    pub(crate) fn group_bit(self) -> u8 {
        1 << self.group() as u8
    }
}

/// The customer count a subscription change moves (`funnel_customers_*`).
pub(crate) fn customer_field(change: Change) -> Option<usize> {
    match change {
        Change::New => Some(field::CUSTOMERS_NEW),
        Change::Churn => Some(field::CUSTOMERS_CHURNED),
        Change::Reactivation => Some(field::CUSTOMERS_REACTIVATED),
        Change::Expansion | Change::Contraction => None,
    }
}

impl Entry {
    /// Can a later update of span `lo` and kind `kind` be summed into
    /// this entry?
    #[inline]
    pub(crate) fn absorbs(&self, lo: i64, kind: Kind) -> bool {
        self.lo == lo && self.kind == kind && kind != Kind::DealWon
    }

    /// Adds this entry's values into the sums of its group (the sketch
    /// samples excepted: a won deal's sales cycle is returned for it).
    #[inline]
    pub(crate) fn add_to(&self, d: &mut WindowSums) -> Option<i64> {
        self.add_to_groups(&mut d.traffic, &mut d.leads, &mut d.deals, &mut d.subs)
    }

    /// Adds the entry to a previous window's sums when it is of a group
    /// with one (leads, deals, subscriptions; not traffic).
    pub(crate) fn add_to_prev(&self, p: &mut PrevSums) {
        if self.kind.group() != Group::Traffic {
            let mut traffic = [0; TRAFFIC_N];
            self.add_to_groups(&mut traffic, &mut p.leads, &mut p.deals, &mut p.subs);
        }
    }

    fn add_to_groups(
        &self,
        traffic: &mut [i64; TRAFFIC_N],
        leads: &mut [i64; LEADS_N],
        deals: &mut [i64; DEALS_N],
        subs: &mut [i64; SUBS_N],
    ) -> Option<i64> {
        match self.kind.group() {
            Group::Traffic => self.add_to_traffic(traffic),
            Group::Leads => self.add_to_leads(leads),
            Group::Deals => return self.add_to_deals(deals),
            Group::Subs => self.add_to_subs(subs),
        }
        None
    }

    /// Adds a traffic entry to `t` (others add nothing).
    #[inline]
    pub(crate) fn add_to_traffic(&self, t: &mut [i64; TRAFFIC_N]) {
        if let Some((fa, fb)) = self.kind.traffic_fields() {
            t[fa] = t[fa].wrapping_add(self.a);
            t[fb] = t[fb].wrapping_add(self.b);
        }
    }

    /// Adds a lead entry to `l` (others add nothing).
    #[inline]
    pub(crate) fn add_to_leads(&self, l: &mut [i64; LEADS_N]) {
        if let Kind::Lead(s) = self.kind {
            l[s as usize] = l[s as usize].wrapping_add(self.a);
        }
    }

    /// Adds a deal entry to `d` (others add nothing), returning a won
    /// deal's sales cycle (a sketch sample).
    #[inline]
    pub(crate) fn add_to_deals(&self, d: &mut [i64; DEALS_N]) -> Option<i64> {
        let (a, b) = (self.a, self.b);
        let add = |x: &mut i64, v: i64| *x = x.wrapping_add(v);
        match self.kind {
            Kind::DealOpen => add(&mut d[field::OPEN], a),
            Kind::DealLost => add(&mut d[field::LOST], a),
            Kind::DealWon => {
                add(&mut d[field::WON], 1);
                add(&mut d[field::REVENUE_WON], a);
                add(&mut d[field::CYCLE_SUM_MS], b);
                return Some(b);
            }
            _ => {}
        }
        None
    }

    /// Adds a subscription entry to `s` (others add nothing): also the
    /// sums after a closed window.
    #[inline]
    pub(crate) fn add_to_subs(&self, s: &mut [i64; SUBS_N]) {
        if let Kind::Sub(c) = self.kind {
            s[c as usize] = s[c as usize].wrapping_add(self.a);
            if let Some(f) = customer_field(c) {
                s[f] = s[f].wrapping_add(self.b);
            }
        }
    }

    /// The kind and values of a deal event.
    pub fn deal(stage: DealStage, amount: i64, cycle_ms: i64) -> (Kind, i64, i64) {
        match stage {
            DealStage::Open => (Kind::DealOpen, 1, 0),
            DealStage::Lost => (Kind::DealLost, 1, 0),
            DealStage::Won => (Kind::DealWon, amount, cycle_ms),
        }
    }
}
