//! Engine-wide interning of `channel` and `campaign` values with a
//! cardinality limit per label. Shared by every partition's aggregator, so
//! the limit holds for the whole engine; the fast path is a lock-free read.

use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Value that every label value past the limit collapses into.
pub const OVERFLOW: &str = "__overflow__";

/// Interned values of one label. Id 0 is always [`OVERFLOW`].
#[derive(Debug)]
pub struct LabelValues {
    ids: DashMap<Box<str>, u32, ahash::RandomState>,
    names: Mutex<Vec<Arc<str>>>,
    limit: usize,
}

impl LabelValues {
    pub fn new(limit: usize) -> Self {
        let ids = DashMap::with_hasher(ahash::RandomState::new());
        ids.insert(OVERFLOW.into(), 0);
        LabelValues {
            ids,
            names: Mutex::new(vec![Arc::from(OVERFLOW)]),
            limit,
        }
    }

    /// The id of `value`, interning it while under the limit. The flag is
    /// `true` when the value was folded into [`OVERFLOW`].
    #[inline]
    pub fn intern(&self, value: &str) -> (u32, bool) {
        if let Some(id) = self.ids.get(value) {
            return (*id, false);
        }
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = self.ids.get(value) {
            return (*id, false);
        }
        // names[0] is the overflow value; `limit` real values may follow.
        if names.len() > self.limit {
            return (0, true);
        }
        let id = names.len() as u32;
        names.push(Arc::from(value));
        self.ids.insert(value.into(), id);
        (id, false)
    }

    pub fn name(&self, id: u32) -> Arc<str> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(OVERFLOW))
    }

    /// All names by id, for rendering without a lock per lookup.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Distinct values interned (the overflow value excluded).
    pub fn len(&self) -> usize {
        self.names.lock().map(|n| n.len() - 1).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cardinality-limited labels: the two business labels and the
/// conversion `action` (v2), and the series budget over (channel, campaign)
/// keys.
#[derive(Debug)]
pub struct LabelTable {
    pub channel: LabelValues,
    pub campaign: LabelValues,
    pub action: LabelValues,
    pub keys: KeyBudget,
}

impl LabelTable {
    /// A table with no series budget (see [`with_series_budget`](Self::with_series_budget)).
    pub fn new(max_channels: usize, max_campaigns: usize, max_actions: usize) -> Self {
        LabelTable {
            channel: LabelValues::new(max_channels),
            campaign: LabelValues::new(max_campaigns),
            action: LabelValues::new(max_actions),
            keys: KeyBudget::unlimited(),
        }
    }

    /// The same table with the `max_series` budget for `windows` windows.
    pub fn with_series_budget(mut self, max_series: usize, windows: usize) -> Self {
        self.keys = KeyBudget::new(max_series, windows);
        self
    }
}

/// Composite of the whole-key overflow pair (`__overflow__`,
/// `__overflow__`): both label ids are 0.
pub const OVERFLOW_KEY: u64 = 0;

/// The series budget (`max_series`), enforced on whole (channel, campaign)
/// keys, engine-wide: a key is admitted on its first event while fewer than
/// [`max_keys`](Self::max_keys) keys are admitted, and stays admitted; every
/// later key folds into ([`OVERFLOW`], [`OVERFLOW`]) in every partition, so
/// its events still count in every total. Each key is charged
/// [`key_series`](Self::key_series), the most series a key publishes from
/// the families every key has (the v1 families; v2 groups add theirs only to
/// keys with events of the group: docs/PERFORMANCE.md, series budget), and
/// one key's worth is kept for the overflow key itself.
///
/// Admission depends only on the order in which keys first arrive, and a
/// checkpoint holds admitted keys by name and folded ones as the overflow
/// key, so a restore under the same budget re-admits exactly the keys that
/// were admitted (a lower budget folds the excess on restore, as a lower
/// label limit does).
#[derive(Debug)]
pub struct KeyBudget {
    admitted: DashMap<u64, (), ahash::RandomState>,
    count: AtomicUsize,
    lock: Mutex<()>,
    max_keys: usize,
    max_series: usize,
    key_series: usize,
}

impl KeyBudget {
    pub fn unlimited() -> Self {
        KeyBudget {
            admitted: DashMap::with_hasher(ahash::RandomState::new()),
            count: AtomicUsize::new(0),
            lock: Mutex::new(()),
            max_keys: usize::MAX,
            max_series: usize::MAX,
            key_series: 0,
        }
    }

    pub fn new(max_series: usize, windows: usize) -> Self {
        let key_series = series_per_key(windows).max(1);
        KeyBudget {
            max_keys: (max_series / key_series).saturating_sub(1),
            max_series,
            key_series,
            ..KeyBudget::unlimited()
        }
    }

    /// Whether the key of label ids `composite` is published under its own
    /// labels, admitting it if there is room. The overflow key always is.
    #[inline]
    pub fn admit(&self, composite: u64) -> bool {
        if composite == OVERFLOW_KEY || self.admitted.contains_key(&composite) {
            return true;
        }
        // Admitted keys are never removed: once full, always full.
        if self.count.load(Ordering::Acquire) >= self.max_keys {
            return false;
        }
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.admitted.contains_key(&composite) {
            return true;
        }
        if self.count.load(Ordering::Acquire) >= self.max_keys {
            return false;
        }
        self.admitted.insert(composite, ());
        self.count.fetch_add(1, Ordering::Release);
        true
    }

    /// Keys admitted so far (the overflow key excluded).
    pub fn admitted(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Keys the budget admits at most.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The `max_series` setting (`usize::MAX` when unlimited).
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// Series charged per key.
    pub fn key_series(&self) -> usize {
        self.key_series
    }
}

/// KPIs with no group gate whose denominator is a sum of a v2 type's group, so
/// they are absent on every key without events of that group (web, email,
/// survey): not charged, like the groups themselves.
/// (`budget_tests::the_charge_is_every_family_of_a_full_v1_key` fails when
/// a family is added that this list or the gates should cover.)
pub(crate) const OVER_V2_SUMS: &[&str] = &[
    "funnel_bounce_ratio",
    "funnel_engagement_ratio",
    "funnel_session_to_lead_ratio",
    "funnel_email_delivery_ratio",
    "funnel_email_bounce_ratio",
    "funnel_email_open_ratio",
    "funnel_email_click_ratio",
    "funnel_email_unsubscribe_ratio",
    "funnel_email_click_to_open_ratio",
    "funnel_nps_score",
    "funnel_csat_ratio",
];

/// Groups that v1 event types open: any deal event opens the v2 deal group
/// (`_by_origin`, `_influenced`, `pipeline_created`), any subscription
/// event `funnel_mrr_net_new`.
pub const V1_TYPE_GROUPS: u8 = super::v2::seen::DEAL | super::v2::seen::SUBS;

/// The most series one key publishes from the v1 event types, with
/// `windows` windows: the families without a gate (v1, and the v2 KPIs
/// over v1 sums) and those of the groups v1 types open, windowed families
/// once per window (KPIs counted as present), labelled ones once per label
/// value. The groups of the v2 types (web, email, survey), the KPIs over
/// their sums and conversion actions are not included (docs/PERFORMANCE.md,
/// "Series budget", gives what they add).
pub fn series_per_key(windows: usize) -> usize {
    use crate::kpi::{Eval, FAMILIES};
    FAMILIES
        .iter()
        .filter(|f| f.gate & !V1_TYPE_GROUPS == 0 && !OVER_V2_SUMS.contains(&f.name))
        .map(|f| match f.eval {
            Eval::Window(_) => windows,
            Eval::Key(_) | Eval::KeyV2(_) => 1,
            Eval::Labelled { values, .. } | Eval::LabelledV2 { values, .. } => values.len(),
            Eval::LabelledWindow { values, .. } => values.len() * windows,
            Eval::ActionWindow(_) | Eval::ActionKey(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_past_the_limit() {
        let t = LabelValues::new(2);
        assert_eq!(t.intern("a"), (1, false));
        assert_eq!(t.intern("b"), (2, false));
        assert_eq!(t.intern("c"), (0, true));
        assert_eq!(t.intern("a"), (1, false));
        assert_eq!(&*t.name(2), "b");
        assert_eq!(&*t.name(0), OVERFLOW);
        assert_eq!(t.len(), 2);
        // A producer sending the literal overflow value is not "folded".
        assert_eq!(t.intern(OVERFLOW), (0, false));
    }
}
