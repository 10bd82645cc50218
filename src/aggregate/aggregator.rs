//! The [`Aggregator`] of one partition: its keys (found by label ids, and
//! by a cache of the raw label pair), the open deals, its counters; which
//! windows an event still reaches (the late rule) and which a render
//! publishes (views).

use super::apply::SpanMemo;
use super::calendar::{Calendar, Slot, View};
use super::key::KeyState;
use super::labels::LabelTable;
use super::prefetch::{KeyHint, NO_KEY};
use super::sums::{KpiParams, WindowSums};
use crate::config::{EngineConfig, WindowSpec, MAX_WINDOWS};
use crate::decode::Origin;
use crate::util::hash::{IdHasher, PreHashedMap, PreHashedMap128};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub(super) struct DealState {
    pub(super) key: u32,
    pub(super) amount: i64,
    pub(super) closed: bool,
}

/// Counters the aggregator keeps about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggStats {
    pub late: u64,
    /// Events whose channel (0), campaign (1) or conversion action (2)
    /// was folded into `__overflow__`, and events whose whole key was
    /// folded by the series budget (3).
    pub(crate) label_overflow: [u64; 4],
    /// Deal events whose `origin` (0) or `influenced` (1) had an invalid
    /// value, read as the default (`funnel_fields_ignored_total`).
    pub(crate) fields_ignored: [u64; 2],
    /// Deal events not tracked for the open pipeline because
    /// `max_tracked_deals` was reached.
    pub(crate) deals_untracked: u64,
}

/// Aggregate state of one partition.
#[derive(Debug)]
pub struct Aggregator {
    /// The rolling windows, as configured.
    pub(super) specs: Vec<WindowSpec>,
    /// Where the rings keep their buckets: one slot per rolling window,
    /// then the calendar grids (see [`calendar`]).
    pub(super) slots: Vec<Slot>,
    pub(super) calendar: Option<Calendar>,
    pub(super) calendar_config: crate::config::CalendarConfig,
    /// Age past which an event reaches no rolling window (its previous
    /// window included) ...
    pub(super) late_before_ms: i64,
    /// ... and, with calendar windows, the UTC time before which it reaches
    /// none of theirs (lateness included), valid while engine time is in
    /// the range (a local day).
    pub(super) late_calendar: (i64, (i64, i64)),
    pub(super) allowed_lateness_ms: i64,
    pub(super) max_tracked_deals: usize,
    /// `channel_origins` overrides of the default origin of a channel.
    pub(super) channel_origins: Arc<[(String, Origin)]>,
    pub(super) gross_margin: f64,
    pub(super) labels: Arc<LabelTable>,
    /// Label-id pair -> key, for every key.
    pub(super) index: HashMap<u64, u32, ahash::RandomState>,
    /// 128-bit hash of the raw (channel, campaign) strings -> key, for
    /// pairs that were not folded into `__overflow__` (so it is bounded by
    /// the cardinality limits). One probe per event instead of two shared
    /// label lookups and a second map.
    pub(super) cache: PreHashedMap128<u32>,
    pub(super) keys: Vec<KeyState>,
    pub(super) deals: PreHashedMap<DealState>,
    /// How this partition hashes event and deal ids (its dedup memory's
    /// too: one key per partition, kept in its checkpoints).
    pub(crate) ids: IdHasher,
    /// The span of the last event time (see [`KeyState::pend`]).
    pub(super) ts_span: SpanMemo,
    pub stats: AggStats,
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
            ids: IdHasher::random(),
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
    pub(super) fn default_origin(&self, channel: &str) -> Origin {
        self.channel_origins
            .iter()
            .find(|(c, _)| c == channel)
            .map_or_else(|| Origin::default_for_channel(channel), |x| x.1)
    }

    #[inline]
    pub(super) fn key_index(&mut self, hint: KeyHint, channel: &str, campaign: &str) -> usize {
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
    pub(super) fn admit(&self, ch: u32, ca: u32) -> (u32, u32, bool) {
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
    pub(super) fn calendar_cutoff(&mut self, now: i64) -> i64 {
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

    /// Drops the ring buckets that have left their window at `now` from up
    /// to `n` keys, starting at key `cursor`, and gives their memory back
    /// (a dense ring left with few buckets becomes packed, returning its
    /// share of the dense budget). Rings otherwise drop expired buckets
    /// only when their key gets an event, so a key gone idle would hold
    /// its last 90 days of buckets, and a backfilled key its dense slots,
    /// for good. Returns the cursor to go on from: called repeatedly, it
    /// sweeps all keys in turn. Never changes a published value: engine
    /// time only grows, so no later render could count what it drops.
    pub fn trim(&mut self, now: i64, cursor: usize, n: usize) -> usize {
        let len = self.keys.len();
        if len == 0 {
            return 0;
        }
        let from = if cursor < len { cursor } else { 0 };
        let to = from.saturating_add(n).min(len);
        for k in &mut self.keys[from..to] {
            k.evict(&self.slots, now, true);
        }
        to % len
    }

    /// Buckets held by the v1 groups' rings of every key (tests of
    /// trimming).
    #[cfg(test)]
    pub(crate) fn v1_buckets(&self) -> usize {
        self.keys.iter().map(KeyState::v1_buckets).sum()
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
