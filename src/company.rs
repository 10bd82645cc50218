//! A believable B2B SaaS company for `demo` (issue 20): "Northwind
//! Analytics", a mid-market SaaS business of about 2,500 customers at an
//! average MRR near 2,000, winning about 100 deals a month. Unlike
//! [`Synth`](crate::synth::Synth) (a benchmark stream whose events are
//! drawn independently), this is a simulation: every lead moves through
//! `new -> mql -> sql -> opportunity -> won/lost` in order, with delays of
//! days and sales cycles of weeks; every subscription movement belongs to
//! an existing account, attributed once (the channel and campaign of the
//! deal that won it); traffic follows a daily and weekly rhythm.
//!
//! Its parameters come from the KPI articles of `../shared/background/`
//! (quoted in issue 20), and `tests/it/demo_ranges.rs` checks the resulting
//! KPIs against those articles' ranges independently of the numbers here:
//!
//! | KPI | company | articles |
//! |---|---|---|
//! | CTR | 0.6% (display) .. 2.8% (brand search) | 0.5-3% by channel |
//! | click-to-lead | 1% .. 6% | "a few percent" |
//! | MQL -> SQL | 27% .. 38% | 20-30%+ (article 4), under 25% is broken (article 5) |
//! | win rate | 24% .. 32% | 20-35%, 25-35%+ (article 4) |
//! | sales cycle | median 40 .. 85 days by channel | 30-120 days, 30-90 (article 4) |
//! | customer churn | 2% of customers a month | 1-3% a month, under 5% (article 4) |
//! | NRR | about 108% a year | 95-120%, 110%+ mid-market (article 5) |
//! | MER | about 3.5 | 3x+ (article 4), 5:1 strong, below 2:1 unprofitable (article 2) |
//! | CPL | about 130 | example dashboard 150 (article 4) |
//! | LTV / CAC | above 3 | 3x+ (article 4) |
//! | NPS | about 40 | 20+ (article 4) |
//!
//! Volume is kept small without losing realism the way real sources
//! report: ad platforms and analytics tools send batches (`count` on
//! impressions, clicks and sessions; e-mail tools per send), one record
//! per campaign per slot (4 hours in the history older than a week, down
//! to a minute in the last hour, 10 seconds live); leads, deals,
//! subscriptions, conversions and surveys are single events. The 179
//! days of history are about 124,000 messages, 19 MB (librdkafka's mock
//! broker keeps at most 5 MB a partition: the demo topic has 12, and its
//! busiest holds about 3.4 MB). Rare events are paced by accumulators (expected
//! count plus jitter) rather than coin flips, so that the company's rates
//! hold in every window long enough to contain them.

use crate::decode::time::format_rfc3339_ms;
use crate::synth::Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;

pub(crate) const MINUTE_MS: i64 = 60_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;
/// Days before the history simulated silently, so that the pipeline
/// (leads weeks from a deal, deals months from closing) is in a steady
/// state when the history starts.
const WARM_UP_DAYS: i64 = 200;

/// Ads bought by a source: impressions a day, click-through rate, and
/// cost per click (search, social) or per thousand impressions (display).
#[derive(Debug, Clone, Copy)]
struct Ads {
    impressions_per_day: f64,
    ctr: f64,
    cpc: f64,
    cpm: f64,
}

/// One (channel, campaign) key of the company and its funnel.
#[derive(Debug, Clone)]
struct Source {
    channel: &'static str,
    campaign: &'static str,
    ads: Option<Ads>,
    /// Share of clicks that become leads (ad sources).
    click_to_lead: f64,
    /// Leads a day not driven by ad clicks (organic, outbound, ...).
    leads_per_day: f64,
    /// Website sessions a day besides paid clicks (which land as sessions).
    sessions_per_day: f64,
    bounce: f64,
    /// Other spend: (category, amount a day).
    spend: Option<(&'static str, f64)>,
    to_mql: f64,
    to_sql: f64,
    to_opp: f64,
    win: f64,
    /// Annual contract value of a deal (average).
    acv: f64,
    /// Median sales cycle, days.
    cycle_days: f64,
    /// Share of won deals with a marketing touch before the close.
    influenced: f64,
    /// Conversion action of an inbound lead's form (None: not a web form).
    actions: &'static [(&'static str, f64)],
}

const DEMO_FORMS: &[(&str, f64)] = &[("demo_request", 0.55), ("signup", 0.25), ("download", 0.2)];
const CONTENT_FORMS: &[(&str, f64)] = &[
    ("download", 0.6),
    ("demo_request", 0.25),
    ("form_submit", 0.15),
];
const NO_FORMS: &[(&str, f64)] = &[];

const fn cpc(impressions_per_day: f64, ctr: f64, cpc: f64) -> Option<Ads> {
    Some(Ads {
        impressions_per_day,
        ctr,
        cpc,
        cpm: 0.0,
    })
}

const fn cpm(impressions_per_day: f64, ctr: f64, cpm: f64) -> Option<Ads> {
    Some(Ads {
        impressions_per_day,
        ctr,
        cpc: 0.0,
        cpm,
    })
}

/// The company's sources at size 1 (averages over a week): ads as
/// impressions a day, click-through rate and cost per click ([`cpc`]) or
/// per thousand impressions ([`cpm`]); funnel rates lead -> MQL, MQL ->
/// SQL, SQL -> opportunity and win rate.
#[rustfmt::skip]
const SOURCES: [Source; 13] = [
    Source { channel: "paid_search", campaign: "brand-search", ads: cpc(6_000.0, 0.028, 3.5), click_to_lead: 0.06, leads_per_day: 0.0, sessions_per_day: 0.0, bounce: 0.38, spend: None, to_mql: 0.40, to_sql: 0.38, to_opp: 0.80, win: 0.32, acv: 22_000.0, cycle_days: 40.0, influenced: 1.0, actions: DEMO_FORMS },
    Source { channel: "paid_search", campaign: "generic-search", ads: cpc(40_000.0, 0.019, 6.5), click_to_lead: 0.03, leads_per_day: 0.0, sessions_per_day: 0.0, bounce: 0.47, spend: None, to_mql: 0.33, to_sql: 0.32, to_opp: 0.75, win: 0.27, acv: 21_000.0, cycle_days: 50.0, influenced: 1.0, actions: DEMO_FORMS },
    Source { channel: "paid_search", campaign: "competitor-search", ads: cpc(12_000.0, 0.013, 8.0), click_to_lead: 0.025, leads_per_day: 0.0, sessions_per_day: 0.0, bounce: 0.52, spend: None, to_mql: 0.35, to_sql: 0.30, to_opp: 0.75, win: 0.25, acv: 26_000.0, cycle_days: 55.0, influenced: 1.0, actions: DEMO_FORMS },
    Source { channel: "paid_social", campaign: "linkedin-lead-gen", ads: cpc(80_000.0, 0.007, 7.5), click_to_lead: 0.04, leads_per_day: 0.0, sessions_per_day: 0.0, bounce: 0.58, spend: None, to_mql: 0.30, to_sql: 0.28, to_opp: 0.70, win: 0.26, acv: 24_000.0, cycle_days: 60.0, influenced: 1.0, actions: CONTENT_FORMS },
    Source { channel: "paid_social", campaign: "linkedin-abm", ads: cpc(30_000.0, 0.0055, 9.5), click_to_lead: 0.02, leads_per_day: 0.0, sessions_per_day: 0.0, bounce: 0.55, spend: None, to_mql: 0.40, to_sql: 0.36, to_opp: 0.80, win: 0.28, acv: 42_000.0, cycle_days: 75.0, influenced: 1.0, actions: DEMO_FORMS },
    Source { channel: "display", campaign: "retargeting", ads: cpm(150_000.0, 0.006, 6.5), click_to_lead: 0.012, leads_per_day: 0.0, sessions_per_day: 0.0, bounce: 0.68, spend: None, to_mql: 0.30, to_sql: 0.28, to_opp: 0.70, win: 0.24, acv: 18_000.0, cycle_days: 50.0, influenced: 1.0, actions: DEMO_FORMS },
    Source { channel: "organic", campaign: "blog", ads: None, click_to_lead: 0.0, leads_per_day: 24.0, sessions_per_day: 1_400.0, bounce: 0.55, spend: Some(("agency", 900.0)), to_mql: 0.28, to_sql: 0.28, to_opp: 0.70, win: 0.26, acv: 19_000.0, cycle_days: 50.0, influenced: 1.0, actions: CONTENT_FORMS },
    Source { channel: "organic", campaign: "seo-landing", ads: None, click_to_lead: 0.0, leads_per_day: 15.0, sessions_per_day: 500.0, bounce: 0.42, spend: Some(("tools", 300.0)), to_mql: 0.38, to_sql: 0.33, to_opp: 0.75, win: 0.30, acv: 20_000.0, cycle_days: 45.0, influenced: 1.0, actions: DEMO_FORMS },
    Source { channel: "direct", campaign: "none", ads: None, click_to_lead: 0.0, leads_per_day: 10.0, sessions_per_day: 650.0, bounce: 0.33, spend: None, to_mql: 0.40, to_sql: 0.35, to_opp: 0.75, win: 0.31, acv: 22_000.0, cycle_days: 40.0, influenced: 0.8, actions: DEMO_FORMS },
    Source { channel: "referral", campaign: "g2-reviews", ads: None, click_to_lead: 0.0, leads_per_day: 6.0, sessions_per_day: 220.0, bounce: 0.40, spend: Some(("listing", 300.0)), to_mql: 0.40, to_sql: 0.36, to_opp: 0.75, win: 0.30, acv: 23_000.0, cycle_days: 45.0, influenced: 0.9, actions: DEMO_FORMS },
    Source { channel: "email", campaign: "newsletter", ads: None, click_to_lead: 0.0, leads_per_day: 8.0, sessions_per_day: 260.0, bounce: 0.40, spend: Some(("tools", 150.0)), to_mql: 0.30, to_sql: 0.30, to_opp: 0.70, win: 0.27, acv: 20_000.0, cycle_days: 50.0, influenced: 1.0, actions: CONTENT_FORMS },
    Source { channel: "partner", campaign: "reseller-program", ads: None, click_to_lead: 0.0, leads_per_day: 5.0, sessions_per_day: 0.0, bounce: 0.0, spend: Some(("partner_fees", 700.0)), to_mql: 0.50, to_sql: 0.38, to_opp: 0.85, win: 0.30, acv: 34_000.0, cycle_days: 70.0, influenced: 0.5, actions: NO_FORMS },
    Source { channel: "outbound", campaign: "sdr-outreach", ads: None, click_to_lead: 0.0, leads_per_day: 12.0, sessions_per_day: 0.0, bounce: 0.0, spend: Some(("salaries", 4_200.0)), to_mql: 0.45, to_sql: 0.30, to_opp: 0.80, win: 0.24, acv: 48_000.0, cycle_days: 85.0, influenced: 0.4, actions: NO_FORMS },
];

/// Settings of the company.
#[derive(Debug, Clone)]
pub(crate) struct CompanyConfig {
    pub seed: u64,
    /// Multiplies every volume (traffic, leads, customers): ratios stay.
    pub size: f64,
    /// Customers at the start of the history (at size 1).
    pub customers: f64,
    /// Share of emitted messages re-sent (a retrying producer).
    pub duplicate_ratio: f64,
    /// Share of malformed messages.
    pub invalid_ratio: f64,
}

impl Default for CompanyConfig {
    fn default() -> Self {
        CompanyConfig {
            seed: 7,
            size: 1.0,
            customers: 2_500.0,
            duplicate_ratio: 0.01,
            invalid_ratio: 0.003,
        }
    }
}

/// Customer churn, contraction and expansion rates per month (shares of
/// customers), and reactivations per month.
const CHURN_MONTHLY: f64 = 0.02;
const CONTRACTION_MONTHLY: f64 = 0.006;
const EXPANSION_MONTHLY: f64 = 0.07;
const REACTIVATIONS_MONTHLY: f64 = 1.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Mql,
    Sql,
    Opportunity,
    Close,
    Subscribe,
}

/// A future step of a lead or deal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    ts: i64,
    step: Step,
    src: usize,
    lead: u64,
    deal: u64,
    created: i64,
    amount: i64,
    won: bool,
}

#[derive(Debug, Clone)]
struct Account {
    id: u64,
    src: usize,
    mrr: i64,
}

/// Per-source accumulators: fractional counts carried between slots.
#[derive(Debug, Clone, Default)]
struct Carry {
    impressions: f64,
    clicks: f64,
    leads: f64,
    sessions: f64,
    bounces: f64,
    pageviews: f64,
    mql: f64,
    sql: f64,
    opp: f64,
    win: f64,
}

/// One step of the simulation: from `t0` to `t1` (`days` long), at the
/// business rhythm of its hour and weekday.
#[derive(Debug, Clone, Copy)]
struct Slot {
    t0: i64,
    t1: i64,
    days: f64,
    rhythm: f64,
}

/// A newsletter send whose opens and clicks trickle in over days.
#[derive(Debug, Clone)]
struct Send {
    ts: i64,
    campaign: String,
    delivered: f64,
    opened: f64,
    clicked: f64,
    unsubscribed: f64,
}

/// The company: call [`history`](Self::history) once, then
/// [`advance`](Self::advance) with the wall clock.
#[derive(Debug, Clone)]
pub(crate) struct Company {
    cfg: CompanyConfig,
    rng: Rng,
    sources: Vec<Source>,
    carry: Vec<Carry>,
    queue: BinaryHeap<Reverse<Pending>>,
    accounts: Vec<Account>,
    churned: Vec<Account>,
    sends: Vec<Send>,
    /// Company-wide accumulators: churn, contraction, expansion,
    /// reactivation, NPS, CSAT, newsletter sign-ups.
    acc: [f64; 7],
    /// Nurture e-mails: sent, bounced, opened, clicked.
    nurture: [f64; 4],
    /// Event time simulated so far.
    t: i64,
    /// Events before this time are simulated but not emitted (warm-up).
    emit_from: i64,
    seq: u64,
    tag: String,
    next_id: u64,
    last: String,
    hour_norm: f64,
    survey_seq: f64,
    /// Share of new customers by source (for the installed base).
    base_mix: Vec<f64>,
}

impl Company {
    pub fn new(cfg: CompanyConfig) -> Self {
        let sources = SOURCES.to_vec();
        // Expected won deals a day by source: the installed base is spread
        // over the sources like the new business.
        let base_mix: Vec<f64> = sources
            .iter()
            .map(|s| {
                let leads = s.leads_per_day
                    + s.ads
                        .map_or(0.0, |a| a.impressions_per_day * a.ctr * s.click_to_lead);
                leads * s.to_mql * s.to_sql * s.to_opp * s.win
            })
            .collect();
        let hour_norm = (0..24 * 60)
            .map(|m| hour_shape(m as f64 / 60.0))
            .sum::<f64>()
            / (24.0 * 60.0);
        let mut rng = Rng::new(cfg.seed);
        let tag = format!("{:x}", rng.next_u64() & 0xff_ffff);
        Company {
            carry: vec![Carry::default(); sources.len()],
            sources,
            rng,
            queue: BinaryHeap::new(),
            accounts: Vec::new(),
            churned: Vec::new(),
            sends: Vec::new(),
            acc: [0.0; 7],
            nurture: [0.0; 4],
            t: 0,
            emit_from: 0,
            seq: 0,
            tag,
            next_id: 1,
            last: String::new(),
            hour_norm,
            survey_seq: 0.0,
            base_mix,
            cfg,
        }
    }

    /// The history of `days` days up to `now`, each message passed to
    /// `emit`: the installed base's sign-ups (most older than any window:
    /// they count in MRR and customers only), hourly batches, then 5-minute
    /// batches over the last day. Returns the messages emitted.
    pub fn history(&mut self, now: i64, days: i64, emit: &mut dyn FnMut(&str)) -> u64 {
        let start = now - days * DAY_MS;
        self.emit_from = start;
        let mut n = 0u64;
        self.installed_base(start, &mut |l| {
            n += 1;
            emit(l)
        });
        // Warm-up: the pipeline runs silently, with no accounts yet. Then
        // slots shrink towards now, as reports get finer: 4 hours beyond a
        // week, an hour beyond a day, 15 minutes beyond an hour, then
        // minutes (the live traffic runs in 10-second slots).
        self.t = start - WARM_UP_DAYS * DAY_MS;
        for (until, slot) in [
            (start, 4 * HOUR_MS),
            (now - 7 * DAY_MS, 4 * HOUR_MS),
            (now - DAY_MS, HOUR_MS),
            (now - HOUR_MS, 15 * MINUTE_MS),
            (now, MINUTE_MS),
        ] {
            while self.t < until {
                let t1 = (self.t + slot).min(until);
                n += self.advance(t1, emit);
            }
        }
        n
    }

    fn installed_base(&mut self, start: i64, emit: &mut dyn FnMut(&str)) {
        let total: f64 = self.base_mix.iter().sum();
        let n = (self.cfg.customers * self.cfg.size).round() as u64;
        let mut base = Vec::new();
        for _ in 0..n {
            let mut u = self.rng.unit() * total;
            let mut src = 0;
            while src + 1 < self.base_mix.len() && u >= self.base_mix[src] {
                u -= self.base_mix[src];
                src += 1;
            }
            // Signed up over the last two years before the history.
            let ts = start - 1 - (self.rng.unit() * 730.0 * DAY_MS as f64) as i64;
            let mrr = (self.sources[src].acv / 12.0 * self.lognormal(0.35)).round() as i64;
            base.push((ts, src, mrr.max(100)));
        }
        base.sort_unstable();
        for (ts, src, mrr) in base {
            let id = self.id();
            self.accounts.push(Account { id, src, mrr });
            let line = self.subscription(ts, src, id, "new", mrr);
            self.out(line, emit);
        }
    }

    /// Event time simulated so far, epoch ms.
    pub(crate) fn time_ms(&self) -> i64 {
        self.t
    }

    /// Simulates up to `t1` (event time, ms), passing each message to
    /// `emit`; returns how many were emitted.
    pub fn advance(&mut self, t1: i64, emit: &mut dyn FnMut(&str)) -> u64 {
        let t0 = self.t;
        if t1 <= t0 {
            return 0;
        }
        let mut lines: Vec<(i64, String)> = Vec::new();
        let days = (t1 - t0) as f64 / DAY_MS as f64;
        let rhythm = self.rhythm((t0 + t1) / 2);
        let size = self.cfg.size;
        let live = t0 >= self.emit_from;
        for i in 0..self.sources.len() {
            let s = self.sources[i].clone();
            let mut clicks = 0.0;
            if let Some(ads) = s.ads {
                let want = ads.impressions_per_day * size * days * rhythm * self.jitter(0.1);
                let imp = take(&mut self.carry[i].impressions, want);
                let want = imp as f64 * ads.ctr * self.jitter(0.08);
                let c = take(&mut self.carry[i].clicks, want);
                clicks = c as f64;
                if live && imp > 0 {
                    let cost = imp as f64 * ads.cpm / 1000.0;
                    lines.push((t0, self.batch(t0, &s, "impression", imp, cost, "")));
                }
                if live && c > 0 {
                    let cost = c as f64 * ads.cpc * self.jitter(0.1);
                    lines.push((t0, self.batch(t0, &s, "click", c, cost, "")));
                }
            }
            // Sessions: paid clicks land on the site, plus the source's own.
            if live {
                let want =
                    clicks * 0.92 + s.sessions_per_day * size * days * rhythm * self.jitter(0.1);
                let n = take(&mut self.carry[i].sessions, want);
                if n > 0 {
                    let want = n as f64 * s.bounce * self.jitter(0.1);
                    let bounces = take(&mut self.carry[i].bounces, want).min(n);
                    // About 2.4 pages a session.
                    let want = n as f64 * (1.2 + 0.4 * self.rng.unit());
                    let pageviews = n + take(&mut self.carry[i].pageviews, want);
                    let extra = format!(r#","pageviews":{pageviews},"bounces":{bounces}"#);
                    lines.push((t0, self.batch(t0, &s, "session", n, 0.0, &extra)));
                }
                if let Some((category, per_day)) = s.spend {
                    // Salaries and fees accrue evenly, every day.
                    let amount = per_day * size * days;
                    let line = format!(
                        r#"{},"type":"spend","channel":"{}","campaign":"{}","amount":{amount:.2},"category":"{category}"}}"#,
                        self.head(t0),
                        s.channel,
                        s.campaign
                    );
                    lines.push((t0, line));
                }
            }
            // New leads.
            let want = (clicks * s.click_to_lead + s.leads_per_day * size * days * rhythm)
                * (0.5 + self.rng.unit());
            self.carry[i].leads += want;
            while self.carry[i].leads >= 1.0 {
                self.carry[i].leads -= 1.0;
                let ts = t0 + self.rng.below((t1 - t0) as u64) as i64;
                self.new_lead(ts, i, &mut lines);
            }
        }
        if live {
            let slot = Slot {
                t0,
                t1,
                days,
                rhythm,
            };
            self.accounts_step(slot, &mut lines);
            self.email_step(slot, &mut lines);
        }
        // Steps of leads and deals falling in the slot (each may schedule
        // a later one, possibly in this slot too).
        while let Some(Reverse(p)) = self.queue.peek().copied() {
            if p.ts >= t1 {
                break;
            }
            self.queue.pop();
            self.step(p, &mut lines);
        }
        self.t = t1;
        lines.sort_by_key(|(ts, _)| *ts);
        let mut n = 0;
        for (ts, line) in lines {
            if ts >= self.emit_from {
                n += self.out(line, emit);
            }
        }
        n
    }

    fn new_lead(&mut self, ts: i64, i: usize, lines: &mut Vec<(i64, String)>) {
        let (channel, campaign, actions) = {
            let s = &self.sources[i];
            (s.channel, s.campaign, s.actions)
        };
        let lead = self.id();
        let head = self.head(ts);
        lines.push((
            ts,
            format!(
                r#"{head},"type":"lead","channel":"{channel}","campaign":"{campaign}","lead_id":"L-{lead}","stage":"new"}}"#
            ),
        ));
        if !actions.is_empty() {
            // The form the lead filled in.
            let mut u = self.rng.unit();
            let mut action = actions[0].0;
            for (a, share) in actions {
                action = a;
                if u < *share {
                    break;
                }
                u -= share;
            }
            let head = self.head(ts);
            lines.push((
                ts,
                format!(
                    r#"{head},"type":"conversion","channel":"{channel}","campaign":"{campaign}","action":"{action}"}}"#
                ),
            ));
        }
        let to_mql = self.sources[i].to_mql;
        if pace(&mut self.carry[i].mql, to_mql) {
            // Lead scoring marks it marketing-qualified within hours.
            let delay = self.exp_ms(8.0 * HOUR_MS as f64).max(5 * MINUTE_MS);
            self.queue.push(Reverse(Pending {
                ts: ts + delay,
                step: Step::Mql,
                src: i,
                lead,
                deal: 0,
                created: 0,
                amount: 0,
                won: false,
            }));
        }
    }

    fn step(&mut self, p: Pending, lines: &mut Vec<(i64, String)>) {
        let s = self.sources[p.src].clone();
        let head = self.head(p.ts);
        let key = format!(r#""channel":"{}","campaign":"{}""#, s.channel, s.campaign);
        let next = |c: &mut Self, step: Step, mean_days: f64| Pending {
            ts: workday(p.ts + c.exp_ms(mean_days * DAY_MS as f64).max(HOUR_MS)),
            step,
            ..p
        };
        match p.step {
            Step::Mql | Step::Sql => {
                let stage = if p.step == Step::Mql { "mql" } else { "sql" };
                lines.push((
                    p.ts,
                    format!(
                        r#"{head},"type":"lead",{key},"lead_id":"L-{}","stage":"{stage}"}}"#,
                        p.lead
                    ),
                ));
                if p.step == Step::Mql {
                    if pace(&mut self.carry[p.src].sql, s.to_sql) {
                        let n = next(self, Step::Sql, 3.0);
                        self.queue.push(Reverse(n));
                    }
                } else if pace(&mut self.carry[p.src].opp, s.to_opp) {
                    let mut n = next(self, Step::Opportunity, 2.0);
                    n.deal = self.id();
                    n.amount = (s.acv * self.lognormal(0.45) / 100.0).round() as i64 * 100;
                    self.queue.push(Reverse(n));
                }
            }
            Step::Opportunity => {
                lines.push((
                    p.ts,
                    format!(
                        r#"{head},"type":"deal",{key},"deal_id":"D-{}","stage":"open","amount":{}}}"#,
                        p.deal, p.amount
                    ),
                ));
                let won = pace(&mut self.carry[p.src].win, s.win);
                // Lost deals tend to die a little sooner.
                let median = s.cycle_days * if won { 1.0 } else { 0.8 };
                let days = (median * self.lognormal(0.3)).clamp(21.0, 180.0);
                self.queue.push(Reverse(Pending {
                    ts: workday(p.ts + (days * DAY_MS as f64) as i64),
                    step: Step::Close,
                    created: p.ts,
                    won,
                    ..p
                }));
            }
            Step::Close => {
                let amount = if p.won {
                    (p.amount as f64 * (0.88 + 0.17 * self.rng.unit()) / 100.0).round() as i64 * 100
                } else {
                    p.amount
                };
                let mut extra = String::new();
                if p.won {
                    let influenced = self.rng.unit() < s.influenced;
                    let _ = write!(extra, r#","influenced":{influenced}"#);
                }
                lines.push((
                    p.ts,
                    format!(
                        r#"{head},"type":"deal",{key},"deal_id":"D-{}","stage":"{}","amount":{amount},"created_ts":"{}"{extra}}}"#,
                        p.deal,
                        if p.won { "won" } else { "lost" },
                        format_rfc3339_ms(p.created)
                    ),
                ));
                if p.won {
                    // The subscription starts within two days of signing.
                    let delay = HOUR_MS + self.rng.below(47 * HOUR_MS as u64) as i64;
                    self.queue.push(Reverse(Pending {
                        ts: p.ts + delay,
                        step: Step::Subscribe,
                        amount,
                        ..p
                    }));
                }
            }
            Step::Subscribe => {
                // Accounts won during the warm-up are in the installed base.
                if p.ts >= self.emit_from {
                    let id = self.id();
                    let mrr = (p.amount as f64 / 12.0).round() as i64;
                    self.accounts.push(Account {
                        id,
                        src: p.src,
                        mrr,
                    });
                    lines.push((p.ts, self.subscription(p.ts, p.src, id, "new", mrr)));
                }
            }
        }
    }

    /// Churn, contraction, expansion and reactivation of existing
    /// accounts; NPS and CSAT answers from customers.
    fn accounts_step(&mut self, slot: Slot, lines: &mut Vec<(i64, String)>) {
        let months = slot.days / 30.0;
        let customers = self.accounts.len() as f64;
        let rates = [
            customers * CHURN_MONTHLY * months,
            customers * CONTRACTION_MONTHLY * months,
            customers * EXPANSION_MONTHLY * months,
            REACTIVATIONS_MONTHLY * self.cfg.size * months,
            // Surveys: ~12 NPS and ~4 CSAT answers a day, in work hours.
            12.0 * self.cfg.size * slot.days * slot.rhythm,
            4.0 * self.cfg.size * slot.days * slot.rhythm,
        ];
        for (kind, rate) in rates.into_iter().enumerate() {
            self.acc[kind] += rate * (0.5 + self.rng.unit());
            while self.acc[kind] >= 1.0 {
                self.acc[kind] -= 1.0;
                let ts = slot.t0 + self.rng.below((slot.t1 - slot.t0) as u64) as i64;
                match kind {
                    0..=2 if !self.accounts.is_empty() => {
                        let i = self.rng.below(self.accounts.len() as u64) as usize;
                        let a = self.accounts[i].clone();
                        let (change, delta) = match kind {
                            0 => {
                                self.accounts.swap_remove(i);
                                self.churned.push(a.clone());
                                ("churn", a.mrr)
                            }
                            1 => {
                                let d =
                                    ((a.mrr as f64) * (0.1 + 0.3 * self.rng.unit())).round() as i64;
                                let d = d.clamp(1, (a.mrr - 50).max(1));
                                self.accounts[i].mrr -= d;
                                ("contraction", d)
                            }
                            _ => {
                                let d = ((a.mrr as f64) * (0.15 + 0.5 * self.rng.unit())).round()
                                    as i64;
                                self.accounts[i].mrr += d.max(1);
                                ("expansion", d.max(1))
                            }
                        };
                        lines.push((ts, self.subscription(ts, a.src, a.id, change, delta)));
                    }
                    3 if !self.churned.is_empty() => {
                        let i = self.rng.below(self.churned.len() as u64) as usize;
                        let mut a = self.churned.swap_remove(i);
                        a.mrr = ((a.mrr as f64) * 0.8).round().max(100.0) as i64;
                        lines.push((
                            ts,
                            self.subscription(ts, a.src, a.id, "reactivation", a.mrr),
                        ));
                        self.accounts.push(a);
                    }
                    4 | 5 if !self.accounts.is_empty() => {
                        let i = self.rng.below(self.accounts.len() as u64) as usize;
                        let s = &self.sources[self.accounts[i].src];
                        let (channel, campaign) = (s.channel, s.campaign);
                        // A low-discrepancy sequence rather than coin flips:
                        // the shares hold in any window of a few dozen answers.
                        self.survey_seq = (self.survey_seq + 0.618_033_988_749_895) % 1.0;
                        let u = self.survey_seq;
                        let (kind, score) = if kind == 4 {
                            // 55% promoters, 30% passives, 15% detractors.
                            let score = if u < 0.55 {
                                9 + self.rng.below(2)
                            } else if u < 0.85 {
                                7 + self.rng.below(2)
                            } else {
                                2 + self.rng.below(5)
                            };
                            ("nps", score)
                        } else {
                            (
                                "csat",
                                if u < 0.82 {
                                    4 + self.rng.below(2)
                                } else {
                                    1 + self.rng.below(3)
                                },
                            )
                        };
                        let head = self.head(ts);
                        lines.push((
                            ts,
                            format!(
                                r#"{head},"type":"survey","channel":"{channel}","campaign":"{campaign}","kind":"{kind}","score":{score}}}"#
                            ),
                        ));
                    }
                    _ => {}
                }
            }
        }
    }

    /// The weekly newsletter (Tuesdays 14:00 UTC, its own campaign each
    /// week; opens and clicks over the following days), the onboarding
    /// nurture sequence (continuous), and list sign-ups.
    fn email_step(&mut self, slot: Slot, lines: &mut Vec<(i64, String)>) {
        let size = self.cfg.size;
        // 1970-01-01 was a Thursday: Tuesday is day 5 of the week from it.
        let send_at = |t: i64| {
            let week = (t - 5 * DAY_MS).div_euclid(7 * DAY_MS);
            5 * DAY_MS + week * 7 * DAY_MS + 14 * HOUR_MS
        };
        let ts = send_at(slot.t1 - 1);
        if ts >= slot.t0 && ts < slot.t1 {
            let (y, w) = iso_week(ts);
            let campaign = format!("newsletter-{y}-w{w:02}");
            let sent = (42_000.0 * size * self.jitter(0.02)).round();
            let delivered = (sent * (0.975 + 0.01 * self.rng.unit())).round();
            for (action, n) in [
                ("sent", sent),
                ("delivered", delivered),
                ("bounced", sent - delivered),
            ] {
                lines.push((ts, self.email(ts, &campaign, action, n as u64)));
            }
            self.sends.push(Send {
                ts,
                campaign,
                delivered,
                opened: 0.0,
                clicked: 0.0,
                unsubscribed: 0.0,
            });
        }
        // Opens, clicks and unsubscribes of recent sends, decaying over
        // hours (opens and clicks are unique per recipient).
        let mut sends = std::mem::take(&mut self.sends);
        for s in &mut sends {
            let f = |t: i64, tau_h: f64| {
                let age = (t - s.ts).max(0) as f64 / HOUR_MS as f64;
                1.0 - (-age / tau_h).exp()
            };
            for (action, rate, tau, done) in [
                ("opened", 0.24, 6.0, &mut s.opened),
                ("clicked", 0.028, 8.0, &mut s.clicked),
                ("unsubscribed", 0.0025, 12.0, &mut s.unsubscribed),
            ] {
                let due = (s.delivered * rate * f(slot.t1, tau)).floor();
                if due > *done {
                    let n = (due - *done) as u64;
                    *done = due;
                    let ts = slot.t0.max(s.ts);
                    lines.push((ts, self.email(ts, &s.campaign, action, n)));
                }
            }
        }
        sends.retain(|s| slot.t1 - s.ts < 7 * DAY_MS);
        self.sends = sends;
        // Nurture: ~1,500 e-mails a day to new leads and trial users.
        let want = 1_500.0 * size * slot.days * slot.rhythm * self.jitter(0.1);
        let sent = take(&mut self.nurture[0], want);
        if sent > 0 {
            // Fractions carried over, so that slots of one e-mail add up.
            let bounced = take(&mut self.nurture[1], sent as f64 * 0.015).min(sent);
            let delivered = sent - bounced;
            let opened = take(&mut self.nurture[2], delivered as f64 * 0.31);
            let clicked = take(&mut self.nurture[3], delivered as f64 * 0.045);
            for (action, n) in [
                ("sent", sent),
                ("delivered", delivered),
                ("bounced", bounced),
                ("opened", opened),
                ("clicked", clicked),
            ] {
                if n > 0 {
                    lines.push((
                        slot.t0,
                        self.email(slot.t0, "nurture-onboarding", action, n),
                    ));
                }
            }
        }
        let subs = take(&mut self.acc[6], 45.0 * size * slot.days * slot.rhythm);
        if subs > 0 {
            lines.push((
                slot.t0,
                self.email(slot.t0, "newsletter", "subscribed", subs),
            ));
        }
    }

    fn email(&mut self, ts: i64, campaign: &str, action: &str, count: u64) -> String {
        format!(
            r#"{},"type":"email","campaign":"{campaign}","action":"{action}","count":{count}}}"#,
            self.head(ts)
        )
    }

    fn subscription(
        &mut self,
        ts: i64,
        src: usize,
        account: u64,
        change: &str,
        mrr: i64,
    ) -> String {
        let head = self.head(ts);
        let s = &self.sources[src];
        format!(
            r#"{head},"type":"subscription","channel":"{}","campaign":"{}","account_id":"A-{account}","change":"{change}","mrr_delta":{mrr}}}"#,
            s.channel, s.campaign
        )
    }

    fn batch(
        &mut self,
        ts: i64,
        s: &Source,
        kind: &str,
        count: u64,
        cost: f64,
        extra: &str,
    ) -> String {
        let cost = if kind == "session" {
            String::new()
        } else {
            format!(r#","cost":{cost:.2}"#)
        };
        format!(
            r#"{},"type":"{kind}","channel":"{}","campaign":"{}","count":{count}{cost}{extra}}}"#,
            self.head(ts),
            s.channel,
            s.campaign
        )
    }

    /// `{"id":...,"ts":...` of a new event (no closing brace).
    fn head(&mut self, ts: i64) -> String {
        self.seq += 1;
        format!(
            r#"{{"id":"nw-{}-{}","ts":"{}""#,
            self.tag,
            self.seq,
            format_rfc3339_ms(ts)
        )
    }

    /// Passes `line` on, now and then resent (a retrying producer) or
    /// preceded by a malformed message; returns the messages emitted.
    fn out(&mut self, line: String, emit: &mut dyn FnMut(&str)) -> u64 {
        let mut n = 1;
        let r = self.rng.unit();
        if r < self.cfg.invalid_ratio {
            const BAD: [&str; 4] = [
                r#"{"id":"bad-1","type":"click","ts":"yesterday"}"#,
                r#"{"id":"bad-2","type":"refund","ts":0}"#,
                r#"{"id":"bad-3","type":"spend","ts":0,"amount":-5}"#,
                r#"{"id":"bad-4","type":"click","#,
            ];
            emit(BAD[self.rng.below(4) as usize]);
            n += 1;
        }
        emit(&line);
        if r > 1.0 - self.cfg.duplicate_ratio {
            emit(&line);
            n += 1;
        }
        self.last = line;
        n
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Traffic factor at `t`: weekdays against weekends, and the hours of
    /// European and American offices (peak mid-afternoon UTC); its mean
    /// over a week is 1.
    fn rhythm(&self, t: i64) -> f64 {
        let day = t.div_euclid(DAY_MS);
        // 1970-01-01 was a Thursday: days 2 and 3 of each week are the
        // weekend.
        let weekend = matches!(day.rem_euclid(7), 2 | 3);
        let week = if weekend { 0.35 } else { 1.0 } / ((5.0 + 2.0 * 0.35) / 7.0);
        let hour = t.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
        week * hour_shape(hour) / self.hour_norm
    }

    /// A factor of mean 1 and spread `+-w`.
    fn jitter(&mut self, w: f64) -> f64 {
        1.0 - w + 2.0 * w * self.rng.unit()
    }

    /// Log-normal factor of median 1.
    fn lognormal(&mut self, sigma: f64) -> f64 {
        let u1 = self.rng.unit().max(1e-12);
        let u2 = self.rng.unit();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (sigma * z).exp()
    }

    fn exp_ms(&mut self, mean_ms: f64) -> i64 {
        (-(1.0 - self.rng.unit()).ln() * mean_ms) as i64
    }
}

/// Activity by hour of day (UTC): a floor at night, a broad peak over
/// European afternoons and American mornings.
fn hour_shape(h: f64) -> f64 {
    0.25 + 1.5 * (-((h - 15.0) / 4.5).powi(2)).exp()
}

/// Sales work on weekdays: a step falling on a weekend moves to Monday,
/// in office hours (8:00 to 18:00 UTC).
fn workday(ts: i64) -> i64 {
    let day = ts.div_euclid(DAY_MS);
    // 1970-01-01 was a Thursday: days 2 and 3 of each week are the weekend.
    let shift = match day.rem_euclid(7) {
        2 => 2,
        3 => 1,
        _ => return ts,
    };
    let in_day = ts.rem_euclid(DAY_MS) * 10 / 24 + 8 * HOUR_MS;
    (day + shift) * DAY_MS + in_day
}

/// Takes the whole part of `carry + want`, keeping the fraction.
fn take(carry: &mut f64, want: f64) -> u64 {
    *carry += want.max(0.0);
    let n = carry.floor();
    *carry -= n;
    n as u64
}

/// Paced Bernoulli: adds `p` and says yes each time a whole unit is due,
/// so that a share `p` of the trials succeed in any long enough run.
fn pace(acc: &mut f64, p: f64) -> bool {
    *acc += p;
    if *acc >= 1.0 {
        *acc -= 1.0;
        true
    } else {
        false
    }
}

/// ISO year and week of `ms`.
fn iso_week(ms: i64) -> (i64, i64) {
    let days = ms.div_euclid(DAY_MS);
    // Monday = 0; 1970-01-01 was a Thursday (3).
    let wd = (days + 3).rem_euclid(7);
    let thursday = days - wd + 3;
    let (y, _, _) = civil(thursday);
    let jan1 = days_from_civil(y, 1, 1);
    (y, (thursday - jan1) / 7 + 1)
}

fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, DecodeConfig};

    #[test]
    fn iso_weeks() {
        // 2026-12-06 (a Sunday) is in ISO week 49 of 2026; 2027-01-01 (a
        // Friday) in week 53 of 2026.
        assert_eq!(iso_week(days_from_civil(2026, 12, 6) * DAY_MS), (2026, 49));
        assert_eq!(iso_week(days_from_civil(2027, 1, 1) * DAY_MS), (2026, 53));
        assert_eq!(civil(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    /// Every message is valid except the deliberate malformed ones, deals
    /// move through their stages in order, and every subscription movement
    /// after `new` belongs to an account already created, under one key.
    #[test]
    fn the_history_is_valid_and_consistent() {
        let now = 1_796_000_000_000;
        let mut c = Company::new(CompanyConfig {
            size: 0.3,
            ..CompanyConfig::default()
        });
        let mut lines = Vec::new();
        let n = c.history(now, 30, &mut |l| lines.push(l.to_string()));
        assert_eq!(n as usize, lines.len());
        let cfg = DecodeConfig::default();
        let (mut bad, mut deals, mut accounts) = (
            0,
            std::collections::HashMap::new(),
            std::collections::HashMap::new(),
        );
        let (mut ids, mut dups) = (std::collections::HashSet::new(), 0);
        for l in &lines {
            let Ok(ev) = decode(l.as_bytes(), &cfg, now + 1) else {
                bad += 1;
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            if !ids.insert(v["id"].as_str().unwrap().to_string()) {
                dups += 1; // a resend
                continue;
            }
            let key = format!("{}/{}", v["channel"], v["campaign"]);
            match v["type"].as_str().unwrap() {
                "deal" => {
                    let id = v["deal_id"].as_str().unwrap().to_string();
                    let stage = v["stage"].as_str().unwrap();
                    if stage != "open" {
                        let cycle = ev.ts
                            - crate::decode::time::parse_rfc3339_ms(
                                v["created_ts"].as_str().unwrap(),
                            )
                            .unwrap();
                        assert!((21 * DAY_MS..=183 * DAY_MS).contains(&cycle), "{l}");
                    }
                    if let Some((prev, k)) = deals.insert(id, (stage.to_string(), key.clone())) {
                        assert_eq!(prev, "open", "{l}");
                        assert_eq!(k, key, "{l}");
                        assert_ne!(stage, "open", "{l}");
                    }
                }
                "subscription" => {
                    let id = v["account_id"].as_str().unwrap().to_string();
                    let change = v["change"].as_str().unwrap();
                    match accounts.get(&id) {
                        None => assert_eq!(change, "new", "{l}"),
                        Some(k) => {
                            assert_ne!(change, "new", "{l}");
                            assert_eq!(k, &key, "{l}");
                        }
                    }
                    accounts.insert(id, key);
                }
                _ => {}
            }
        }
        assert!(bad as f64 <= lines.len() as f64 * 0.01, "{bad} malformed");
        assert!(dups as f64 <= lines.len() as f64 * 0.02, "{dups} resent");
        assert!(deals.values().any(|(s, _)| s == "won"));
    }
}
