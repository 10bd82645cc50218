//! Applying one event to the aggregator: its key's totals, then the
//! window part (traffic into the pending sums, other v1 groups into the
//! log, the v2 groups into their rings), and the deal tracking of the open
//! pipeline.

use super::aggregator::DealState;
use super::calendar::Slot;
use super::key::KeyState;
use super::pending::{self, Entry, Kind};
use super::prefetch::{pair_hash, KeyHint, NO_KEY};
use super::ring::add_into;
use super::sums::{field, TRAFFIC_N};
use super::v2::{self, f2, seen};
use super::Aggregator;
use crate::decode::{Body, DealStage, Event, SurveyKind};

/// The span of time around an instant inside which no window's bucket
/// changes (with the default windows, one 5-second bucket of the 5m
/// window), remembered: consecutive events mostly fall in the same span,
/// and then cost no division.
#[derive(Debug, Clone)]
pub(super) struct SpanMemo {
    pub(super) lo: i64,
    pub(super) hi: i64,
}

impl SpanMemo {
    /// `lo..hi` containing `t` (`i64::MIN..i64::MAX` with no windows).
    #[inline]
    pub(super) fn span(&mut self, slots: &[Slot], t: i64) -> (i64, i64) {
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

    /// [`apply`](Self::apply) with the key lookup done ahead by
    /// [`key_hint`](Self::key_hint) on this aggregator.
    pub(crate) fn apply_hinted(
        &mut self,
        ev: &Event<'_>,
        ts_eff: i64,
        now: i64,
        hint: KeyHint,
    ) -> bool {
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
                ignored,
                ..
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
                self.attribute_deal(k, ev, late, ts_eff, now);
                self.track_deal(k as u32, deal_id, *stage, *amount);
            }
            _ => self.apply_v2(k, ev, late, ts_eff, now),
        }
        late
    }

    /// A deal's v2 attribution (METRICS.md v2): pipeline created, by origin,
    /// when it opens; won and revenue by origin (and influenced) when won.
    #[inline]
    fn attribute_deal(&mut self, k: usize, ev: &Event<'_>, late: bool, ts_eff: i64, now: i64) {
        let Body::Deal {
            stage,
            amount,
            origin,
            influenced,
            ..
        } = &ev.body
        else {
            return;
        };
        let (stage, amount) = (*stage, *amount);
        if stage == DealStage::Lost {
            return;
        }
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
        let specs: &[Slot] = if late { &[] } else { &self.slots };
        let v = self.keys[k].v2_mut();
        if stage == DealStage::Open {
            v.totals.pipeline_created += i128::from(amount);
        }
        v.deal(specs, now, ts_eff, &da, &db);
    }

    /// The v2 event types (rare next to traffic: out of the v1 path).
    #[inline(never)]
    pub(super) fn apply_v2(&mut self, k: usize, ev: &Event<'_>, late: bool, ts: i64, now: i64) {
        let action = match &ev.body {
            Body::Conversion { action, .. } => {
                let (id, over) = self.labels.action.intern(action);
                self.stats.label_overflow[2] += u64::from(over);
                id
            }
            _ => 0,
        };
        let k = self.charge_v2(k, ev, action);
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

    pub(super) fn track_deal(&mut self, key: u32, deal_id: &str, stage: DealStage, amount: i64) {
        let h = self.ids.hash(deal_id);
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
}

/// Impressions, clicks and spend: the traffic group, which goes through
/// the pending sums (see [`KeyState::pend`]).
#[inline]
pub(super) fn is_traffic(body: &Body<'_>) -> bool {
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
pub(super) fn add_traffic(
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
pub(super) fn traffic_delta(
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
pub(super) fn log_event(
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
