//! Engine-wide interning of `channel` and `campaign` values with a
//! cardinality limit per label. Shared by every partition's aggregator, so
//! the limit holds for the whole engine; the fast path is a lock-free read.

use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::v2::seen;

/// Value that every label value past the limit collapses into.
pub const OVERFLOW: &str = "__overflow__";

/// The name of `id` in a snapshot of [`LabelValues::names`]; [`OVERFLOW`]
/// for an id it does not hold.
pub fn name_in(names: &[Arc<str>], id: u32) -> Arc<str> {
    names
        .get(id as usize)
        .cloned()
        .unwrap_or_else(|| Arc::from(OVERFLOW))
}

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
    pub(crate) fn intern(&self, value: &str) -> (u32, bool) {
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
        name_in(&self.names.lock().unwrap_or_else(|e| e.into_inner()), id)
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

    /// The same table with the `max_series` budget, charging what
    /// `charges` says (`kpi::charges`); the overflow key's most is
    /// reserved, with every conversion action this table can intern.
    pub(crate) fn with_series_budget(mut self, max_series: usize, charges: Charges) -> Self {
        self.keys = KeyBudget::new(max_series, charges, self.action.limit + 1);
        self
    }
}

/// Composite of the whole-key overflow pair (`__overflow__`,
/// `__overflow__`): both label ids are 0.
pub(crate) const OVERFLOW_KEY: u64 = 0;

/// The series the budget charges, with the engine's windows (`kpi::charges`:
/// rolling and calendar windows alike).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charges {
    /// A key, on admission: every family a key can have from v1 event types.
    pub key: usize,
    /// The v2 groups, when a key first receives an event of one.
    pub web: usize,
    pub email: usize,
    pub survey: usize,
    /// Each conversion `action`, when a key first receives it.
    pub action: usize,
}

impl Charges {
    /// The charge of the v2 groups in `groups` ([`CHARGED_GROUPS`] bits).
    pub fn groups(&self, groups: u8) -> usize {
        let bit = |b: u8, n: usize| if groups & b != 0 { n } else { 0 };
        bit(seen::WEB, self.web) + bit(seen::EMAIL, self.email) + bit(seen::SURVEY, self.survey)
    }

    /// The most one key is charged with `actions` conversion actions.
    pub fn full(&self, actions: usize) -> usize {
        self.key + self.groups(CHARGED_GROUPS) + self.action * actions
    }
}

/// The v2 groups charged apart from a key's admission (the v2 types'
/// groups; the deal and subscription groups are in [`Charges::key`]).
pub(crate) const CHARGED_GROUPS: u8 = seen::WEB | seen::EMAIL | seen::SURVEY;

/// What a key is charged for beyond its admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charge {
    /// A v2 group ([`CHARGED_GROUPS`] bit).
    Group(u8),
    /// A conversion action (its label id).
    Action(u32),
}

/// The series budget (`max_series`), counted in series and enforced on
/// whole (channel, campaign) keys, engine-wide.
///
/// - A key is admitted on its first event while the series charged so far
///   plus [`Charges::key`] (everything v1 event types can open) fit; once
///   admitted it stays admitted. Every later key folds into ([`OVERFLOW`],
///   [`OVERFLOW`]) in every partition, so its events still count in every
///   total.
/// - A v2 group (web, email, survey) or a conversion action is charged to a
///   key when the key first receives it (an ads-only key is charged no
///   email series). When that charge no longer fits, the key keeps what it
///   has and that group's (or action's) events of that key fold into the
///   overflow key: the key's own series never change meaning (each is its
///   complete sum or absent), and every total over keys stays exact.
/// - The overflow key's most ([`Charges::full`] with every action) is
///   reserved up front, so what the engine publishes never exceeds the
///   budget.
///
/// Decisions depend only on the order in which keys and their groups first
/// arrive, and are the same in every partition (a refused charge is refused
/// again: the series charged only grow). A checkpoint holds admitted keys
/// by name with their groups and actions, and folded ones (and folded
/// groups) as the overflow key, so a restore under the same budget charges
/// exactly what was charged; a restored key that no longer fits whole folds
/// whole (as a lower label limit folds on restore).
#[derive(Debug)]
pub struct KeyBudget {
    /// Admitted keys and the [`CHARGED_GROUPS`] charged to them.
    admitted: DashMap<u64, u8, ahash::RandomState>,
    /// (key, action) pairs charged.
    actions: DashMap<(u64, u32), (), ahash::RandomState>,
    count: AtomicUsize,
    /// Series charged, the overflow key's reserve included.
    charged: AtomicUsize,
    lock: Mutex<()>,
    max_series: usize,
    charges: Charges,
    reserve: usize,
}

impl KeyBudget {
    pub(crate) fn unlimited() -> Self {
        KeyBudget {
            admitted: DashMap::with_hasher(ahash::RandomState::new()),
            actions: DashMap::with_hasher(ahash::RandomState::new()),
            count: AtomicUsize::new(0),
            charged: AtomicUsize::new(0),
            lock: Mutex::new(()),
            max_series: usize::MAX,
            charges: Charges::default(),
            reserve: 0,
        }
    }

    /// A budget of `max_series`, with at most `actions` conversion actions
    /// (label values, the overflow value included) for the overflow key.
    pub fn new(max_series: usize, charges: Charges, actions: usize) -> Self {
        let charges = Charges {
            key: charges.key.max(1),
            ..charges
        };
        let reserve = charges.full(actions);
        KeyBudget {
            max_series,
            charges,
            reserve,
            charged: AtomicUsize::new(reserve),
            ..KeyBudget::unlimited()
        }
    }

    fn unlimited_budget(&self) -> bool {
        self.max_series == usize::MAX
    }

    fn fits(&self, n: usize) -> bool {
        self.charged.load(Ordering::Acquire).saturating_add(n) <= self.max_series
    }

    /// Whether the key of label ids `composite` is published under its own
    /// labels, admitting it if there is room. The overflow key always is.
    #[inline]
    pub(crate) fn admit(&self, composite: u64) -> bool {
        if composite == OVERFLOW_KEY || self.admitted.contains_key(&composite) {
            return true;
        }
        if self.unlimited_budget() {
            if self.admitted.insert(composite, 0).is_none() {
                self.count.fetch_add(1, Ordering::Release);
            }
            return true;
        }
        // Charges are never taken back: once full, always full.
        if !self.fits(self.charges.key) {
            return false;
        }
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.admitted.contains_key(&composite) {
            return true;
        }
        if !self.fits(self.charges.key) {
            return false;
        }
        self.take(composite, 0, &[], self.charges.key);
        true
    }

    /// Records an admission (under the lock).
    fn take(&self, composite: u64, groups: u8, actions: &[u32], series: usize) {
        self.admitted.insert(composite, groups);
        for &a in actions {
            self.actions.insert((composite, a), ());
        }
        self.count.fetch_add(1, Ordering::Release);
        self.charged.fetch_add(series, Ordering::Release);
    }

    fn has(&self, composite: u64, c: Charge) -> bool {
        match c {
            Charge::Group(g) => self.admitted.get(&composite).is_some_and(|x| *x & g == g),
            Charge::Action(a) => self.actions.contains_key(&(composite, a)),
        }
    }

    fn cost(&self, c: Charge) -> usize {
        match c {
            Charge::Group(g) => self.charges.groups(g),
            Charge::Action(_) => self.charges.action,
        }
    }

    fn record(&self, composite: u64, c: Charge) {
        match c {
            Charge::Group(g) => {
                if let Some(mut x) = self.admitted.get_mut(&composite) {
                    *x |= g;
                }
            }
            Charge::Action(a) => {
                self.actions.insert((composite, a), ());
            }
        }
        self.charged.fetch_add(self.cost(c), Ordering::Release);
    }

    /// Charges `c` to the admitted key `composite` if it is not yet, when it
    /// fits: whether the key has it now. The overflow key always has
    /// (reserved); so has every key when the budget is unlimited.
    pub(crate) fn charge(&self, composite: u64, c: Charge) -> bool {
        if composite == OVERFLOW_KEY || self.unlimited_budget() || self.has(composite, c) {
            return true;
        }
        if !self.fits(self.cost(c)) {
            return false;
        }
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.has(composite, c) {
            return true;
        }
        if !self.fits(self.cost(c)) {
            return false;
        }
        self.record(composite, c);
        true
    }

    /// Admission of a key restored from a checkpoint with the v2 `groups`
    /// and conversion `actions` it had: admitted whole if it is admitted
    /// already (what it has then is charged: it was published under this
    /// budget before) or if all of it fits, else folded whole.
    pub(crate) fn admit_restored(&self, composite: u64, groups: u8, actions: &[u32]) -> bool {
        let groups = groups & CHARGED_GROUPS;
        if composite == OVERFLOW_KEY {
            return true;
        }
        if self.unlimited_budget() {
            return self.admit(composite);
        }
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let had = self.admitted.get(&composite).map(|x| *x);
        match had {
            Some(had) => {
                let missing = groups & !had;
                if missing != 0 {
                    self.record(composite, Charge::Group(missing));
                }
                for &a in actions {
                    if !self.has(composite, Charge::Action(a)) {
                        self.record(composite, Charge::Action(a));
                    }
                }
                true
            }
            None => {
                let mut actions = actions.to_vec();
                actions.sort_unstable();
                actions.dedup();
                let n = self.charges.key
                    + self.charges.groups(groups)
                    + self.charges.action * actions.len();
                if !self.fits(n) {
                    return false;
                }
                self.take(composite, groups, &actions, n);
                true
            }
        }
    }

    /// Keys admitted so far (the overflow key excluded).
    pub fn admitted(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Keys the budget admits at most, when no key receives a v2 group or
    /// conversion action (`usize::MAX` when unlimited).
    pub fn max_keys(&self) -> usize {
        if self.unlimited_budget() {
            return usize::MAX;
        }
        self.max_series.saturating_sub(self.reserve) / self.charges.key
    }

    /// The `max_series` setting (`usize::MAX` when unlimited).
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// Series charged so far, the overflow key's reserve included (0 when
    /// unlimited): what the engine publishes at most.
    pub fn charged(&self) -> usize {
        self.charged.load(Ordering::Acquire)
    }

    /// What the budget charges.
    pub fn charges(&self) -> Charges {
        self.charges
    }

    /// Series reserved for the overflow key.
    pub fn reserve(&self) -> usize {
        self.reserve
    }
}

/// KPIs with no group gate whose denominator is a sum of a v2 type's group
/// (web, email, survey), so they are absent on every key without events of
/// that group: charged with the group (`kpi::series_per_group`).
/// (`budget_tests::the_charge_is_every_family_of_a_full_v1_key` fails when
/// a family is added that this list or the gates should cover.)
pub(crate) const OVER_V2_SUMS: &[(&str, u8)] = &[
    ("funnel_bounce_ratio", seen::WEB),
    ("funnel_engagement_ratio", seen::WEB),
    ("funnel_session_to_lead_ratio", seen::WEB),
    ("funnel_email_delivery_ratio", seen::EMAIL),
    ("funnel_email_bounce_ratio", seen::EMAIL),
    ("funnel_email_open_ratio", seen::EMAIL),
    ("funnel_email_click_ratio", seen::EMAIL),
    ("funnel_email_unsubscribe_ratio", seen::EMAIL),
    ("funnel_email_click_to_open_ratio", seen::EMAIL),
    ("funnel_nps_score", seen::SURVEY),
    ("funnel_csat_ratio", seen::SURVEY),
];

/// Groups that v1 event types open: any deal event opens the v2 deal group
/// (`_by_origin`, `_influenced`, `pipeline_created`), any subscription
/// event `funnel_mrr_net_new`.
pub(crate) const V1_TYPE_GROUPS: u8 = seen::DEAL | seen::SUBS;

/// The series budget's two hooks into the aggregator.
impl super::Aggregator {
    /// The key `ev` (a v2 type, conversion `action`) is applied to: its own
    /// key `k` when the key has the event's group (or action) or the budget
    /// can charge it, else the overflow key (the event is counted as
    /// folded by the budget).
    pub(super) fn charge_v2(
        &mut self,
        k: usize,
        ev: &crate::decode::Event<'_>,
        action: u32,
    ) -> usize {
        use crate::decode::Body;
        let key = &self.keys[k];
        let c = match &ev.body {
            Body::Session { .. } => Charge::Group(seen::WEB),
            Body::Email { .. } => Charge::Group(seen::EMAIL),
            Body::Survey { .. } => Charge::Group(seen::SURVEY),
            Body::Conversion { .. } => Charge::Action(action),
            _ => return k,
        };
        let here = match c {
            Charge::Group(g) => key.seen & g != 0,
            Charge::Action(a) => key
                .v2
                .as_ref()
                .is_some_and(|v| v.totals.conversions.iter().any(|x| x.0 == a)),
        };
        let composite = (u64::from(key.channel) << 32) | u64::from(key.campaign);
        if here || self.labels.keys.charge(composite, c) {
            return k;
        }
        self.stats.label_overflow[3] += 1;
        let next = self.keys.len() as u32;
        let idx = *self.index.entry(OVERFLOW_KEY).or_insert(next);
        if idx == next {
            self.keys.push(super::KeyState::default());
        }
        idx as usize
    }

    /// [`admit`](super::Aggregator::admit) for a key restored from a
    /// checkpoint, with what it had ([`KeyBudget::admit_restored`]).
    pub(super) fn admit_restored(
        &self,
        ch: u32,
        ca: u32,
        key: &super::KeyState,
    ) -> (u32, u32, bool) {
        let actions: Vec<u32> = key
            .v2
            .as_ref()
            .map(|v| v.totals.conversions.iter().map(|x| x.0).collect())
            .unwrap_or_default();
        let composite = (u64::from(ch) << 32) | u64::from(ca);
        if self
            .labels
            .keys
            .admit_restored(composite, key.seen, &actions)
        {
            (ch, ca, true)
        } else {
            (0, 0, false)
        }
    }
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

    const C: Charges = Charges {
        key: 100,
        web: 10,
        email: 20,
        survey: 30,
        action: 5,
    };

    /// Keys are charged on admission, groups and actions when first
    /// charged, once each; past the budget new keys fold, and a group or an
    /// action that no longer fits is refused for good, whoever asks.
    #[test]
    fn charges_series_once_and_refuses_what_does_not_fit() {
        // Overflow reserve: 100 + 60 + 2 actions x 5 = 170.
        let b = KeyBudget::new(170 + 2 * 100 + 35, C, 2);
        assert_eq!(b.reserve(), 170);
        assert_eq!(b.max_keys(), 2);
        assert!(b.admit(1) && b.admit(2));
        assert!(!b.admit(3), "a third key does not fit");
        assert_eq!(b.charged(), 370);
        assert!(b.charge(1, Charge::Group(seen::EMAIL)));
        assert!(b.charge(1, Charge::Group(seen::EMAIL)), "charged once");
        assert_eq!(b.charged(), 390);
        assert!(b.charge(2, Charge::Action(7)));
        assert!(b.charge(2, Charge::Action(7)));
        assert_eq!(b.charged(), 395);
        // 10 left: web fits once, survey never.
        assert!(!b.charge(2, Charge::Group(seen::SURVEY)));
        assert!(b.charge(2, Charge::Group(seen::WEB)));
        assert!(!b.charge(1, Charge::Group(seen::WEB)));
        assert!(!b.charge(1, Charge::Action(7)));
        assert_eq!(b.charged(), 405);
        // The overflow key has everything (reserved).
        assert!(b.charge(OVERFLOW_KEY, Charge::Group(seen::SURVEY)));
        assert!(b.admit(OVERFLOW_KEY));
        assert_eq!(b.admitted(), 2);
        assert_eq!(b.charged(), 405);
    }

    /// A restored key is admitted with what it had, whole or not at all;
    /// one admitted already (from another partition's checkpoint) has what
    /// this one had charged too.
    #[test]
    fn restore_admits_whole_keys_with_their_groups() {
        let b = KeyBudget::new(170 + 250, C, 2);
        assert!(b.admit_restored(1, seen::WEB | seen::DEAL, &[3, 3]));
        assert_eq!(b.charged(), 170 + 100 + 10 + 5);
        assert!(
            !b.admit_restored(2, seen::ALL, &[]),
            "160 does not fit in 135"
        );
        assert!(b.admit_restored(1, seen::EMAIL, &[4]));
        assert_eq!(b.charged(), 170 + 100 + 10 + 5 + 20 + 5);
        assert!(b.charge(1, Charge::Group(seen::WEB | seen::EMAIL)));
        assert!(b.admit_restored(5, 0, &[]));
        assert!(!b.admit(6));
        let free = KeyBudget::unlimited();
        assert!(free.admit_restored(9, seen::ALL, &[1]));
        assert!(free.charge(9, Charge::Action(2)));
        assert_eq!(free.admitted(), 1);
    }

    /// The charges of the sizing guide (docs/PERFORMANCE.md, "Series
    /// budget"), by number of windows.
    #[test]
    fn the_sizing_guide_charges_v2_groups() {
        let got: Vec<Charges> = [1, 6, 8].iter().map(|&w| crate::kpi::charges(w)).collect();
        let keys: Vec<usize> = got.iter().map(|c| c.key).collect();
        assert_eq!(keys, [105, 520, 686]);
        let groups: Vec<[usize; 4]> = got
            .iter()
            .map(|c| [c.web, c.email, c.survey, c.action])
            .collect();
        assert_eq!(
            groups,
            [[11, 23, 10, 7], [56, 93, 50, 37], [74, 121, 66, 49]]
        );
        // Keys admitted by the default budget (200,000) and action limit
        // (50) when no key has a v2 group.
        let admitted: Vec<usize> = [1, 3, 6, 8]
            .iter()
            .map(|&w| KeyBudget::new(200_000, crate::kpi::charges(w), 51).max_keys())
            .collect();
        assert_eq!(admitted, [1899, 733, 379, 286]);
    }
}
