//! The sums a render reads: one window's sums of every group
//! ([`WindowSums`], with its previous window's growth groups in
//! [`PrevSums`]), and the field positions inside the groups.

use super::ring::add_into;
use super::v2::{self, V2Sums};

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

pub(crate) const TRAFFIC_N: usize = 4;
pub(crate) const LEADS_N: usize = 3;
pub(crate) const DEALS_N: usize = 5;
pub(crate) const SUBS_N: usize = 8;

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

    pub(crate) fn add_conversion(&mut self, action: u32, v: &[i64; v2::CONV_N]) {
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
