//! Property test: for random event streams (out of order, duplicates, late,
//! future and invalid events, both clocks), the engine's incremental state
//! equals a brute-force recomputation from the raw events, for every key,
//! every window and every metric, and so do the health counters.
//!
//! The model below knows nothing of buckets-as-rings, dedup memories or
//! caches: it keeps the list of accepted events and, at the end, filters
//! them with the window rule of docs/SEMANTICS.md, and the rules of
//! METRICS.md v2 for previous windows (growth) and calendar windows, whose
//! periods it finds on civil dates in the zone (the engine keeps buckets on
//! a local-time grid: the model only knows the documented rounding of a
//! to-date window's previous end point up to that grid).

use crate::support::serial;
use funnelstream::aggregate::ring::sketch;
use funnelstream::aggregate::v2::{f2, seen};
use funnelstream::aggregate::{field, Totals, WindowSums};
use funnelstream::config::{
    parse_calendar_windows, parse_timezone, parse_windows, CalWindow, CalendarConfig, ClockMode,
    EngineConfig, WindowSpec,
};
use funnelstream::decode::{Change, RejectReason};
use funnelstream::engine::{Engine, Outcome};
use funnelstream::kpi::{Eval, Value, FAMILIES};
use jiff::civil::{Date, DateTime};
use jiff::Timestamp;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::collections::{BTreeMap, HashMap};

const BASE: i64 = 1_790_000_000_000; // 2026-09-21
const DAY: i64 = 86_400_000;
const MICRO_PER_CENT: i64 = 10_000;
const CHANNELS: [&str; 2] = ["paid_search", "email"];
const CAMPAIGNS: [&str; 3] = ["brand", "q4", "none"];
/// Deal `origin` values: the four valid ones, then invalid ones (read as
/// the default of the channel: marketing for both `CHANNELS`).
const ORIGIN_VALUES: [&str; 6] = [
    "\"marketing\"",
    "\"sales\"",
    "\"partner\"",
    "\"other\"",
    "\"Sales\"",
    "null",
];
const INFLUENCED_VALUES: [&str; 3] = ["true", "false", "\"yes\""];
const ACTIONS: [&str; 3] = ["signup", "demo_request", "download"];
const EMAIL_ACTIONS: [&str; 8] = [
    "sent",
    "delivered",
    "bounced",
    "opened",
    "clicked",
    "subscribed",
    "unsubscribed",
    "complained",
];

#[derive(Debug, Clone)]
enum Kind {
    Impression {
        count: u64,
        cents: i64,
    },
    Click {
        count: u64,
        cents: i64,
    },
    Lead {
        stage: usize,
    },
    Deal {
        deal: u8,
        stage: usize,
        cents: i64,
        cycle_ms: i64,
        /// v2: an index into `ORIGIN_VALUES` (`None`: no field).
        origin: Option<usize>,
        /// v2: an index into `INFLUENCED_VALUES` (`None`: no field).
        influenced: Option<usize>,
    },
    Session {
        count: u64,
        extra_pageviews: Option<u64>,
        bounces: Option<u64>,
        engaged: Option<u64>,
    },
    Conversion {
        action: usize,
        count: u64,
        cents: i64,
    },
    Email {
        action: usize,
        count: u64,
    },
    Survey {
        csat: bool,
        score: u64,
    },
    Spend {
        cents: i64,
        ads: bool,
    },
    Subscription {
        change: usize,
        cents: i64,
    },
}

#[derive(Debug, Clone)]
enum Broken {
    MissingId,
    BadType,
    NegativeCost,
    NotJson,
    CreatedAfterTs,
}

#[derive(Debug, Clone)]
struct Spec {
    id: u8,
    key: (usize, usize),
    ts: i64,
    kind: Kind,
    future: bool,
    broken: Option<Broken>,
    /// Wall-clock advance before this event (wall mode).
    wall_step: i64,
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn ts_json(ts: i64, as_string: bool) -> String {
    if as_string {
        format!("\"{}\"", funnelstream::decode::time::format_rfc3339_ms(ts))
    } else {
        ts.to_string()
    }
}

impl Spec {
    fn line(&self, ts: i64) -> String {
        let (c, k) = self.key;
        let mut fields = vec![
            format!("\"id\":\"e{}\"", self.id),
            format!("\"ts\":{}", ts_json(ts, self.id % 2 == 0)),
            format!("\"channel\":\"{}\"", CHANNELS[c]),
        ];
        if CAMPAIGNS[k] != "none" {
            fields.push(format!("\"campaign\":\"{}\"", CAMPAIGNS[k]));
        }
        let stages = ["new", "mql", "sql"];
        let deal_stages = ["open", "won", "lost"];
        let changes = ["new", "expansion", "contraction", "churn", "reactivation"];
        match &self.kind {
            Kind::Impression { count, cents } | Kind::Click { count, cents } => {
                let t = if matches!(self.kind, Kind::Click { .. }) { "click" } else { "impression" };
                fields.push(format!("\"type\":\"{t}\",\"count\":{count}"));
                let cost = if matches!(self.broken, Some(Broken::NegativeCost)) {
                    "-1.5".to_string()
                } else {
                    money(*cents)
                };
                fields.push(format!("\"cost\":{cost}"));
            }
            Kind::Lead { stage } => fields.push(format!(
                "\"type\":\"lead\",\"lead_id\":\"L{}\",\"stage\":\"{}\"",
                self.id, stages[*stage]
            )),
            Kind::Deal { deal, stage, cents, cycle_ms, origin, influenced } => {
                fields.push(format!(
                    "\"type\":\"deal\",\"deal_id\":\"D{deal}\",\"stage\":\"{}\",\"amount\":{}",
                    deal_stages[*stage],
                    money(*cents)
                ));
                if let Some(o) = origin {
                    fields.push(format!("\"origin\":{}", ORIGIN_VALUES[*o]));
                }
                if let Some(i) = influenced {
                    fields.push(format!("\"influenced\":{}", INFLUENCED_VALUES[*i]));
                }
                if *stage != 0 || matches!(self.broken, Some(Broken::CreatedAfterTs)) {
                    let created = if matches!(self.broken, Some(Broken::CreatedAfterTs)) {
                        ts + 1
                    } else {
                        ts - cycle_ms
                    };
                    fields.push(format!("\"created_ts\":{}", ts_json(created, false)));
                }
            }
            Kind::Spend { cents, ads } => fields.push(format!(
                "\"type\":\"spend\",\"amount\":{},\"category\":\"{}\"",
                money(*cents),
                if *ads { "ads" } else { "salaries" }
            )),
            Kind::Subscription { change, cents } => fields.push(format!(
                "\"type\":\"subscription\",\"account_id\":\"A1\",\"change\":\"{}\",\"mrr_delta\":{}",
                changes[*change],
                money(*cents)
            )),
            Kind::Session { count, extra_pageviews, bounces, engaged } => {
                fields.push(format!("\"type\":\"session\",\"count\":{count}"));
                if let Some(p) = extra_pageviews {
                    fields.push(format!("\"pageviews\":{}", count + p));
                }
                if let Some(b) = bounces {
                    fields.push(format!("\"bounces\":{}", b.min(count)));
                }
                if let Some(e) = engaged {
                    fields.push(format!("\"engaged\":{}", e.min(count)));
                }
            }
            Kind::Conversion { action, count, cents } => fields.push(format!(
                "\"type\":\"conversion\",\"action\":\"{}\",\"count\":{count},\"value\":{}",
                ACTIONS[*action],
                money(*cents)
            )),
            Kind::Email { action, count } => fields.push(format!(
                "\"type\":\"email\",\"action\":\"{}\",\"count\":{count}",
                EMAIL_ACTIONS[*action]
            )),
            Kind::Survey { csat, score } => fields.push(format!(
                "\"type\":\"survey\",\"kind\":\"{}\",\"score\":{score}",
                if *csat { "csat" } else { "nps" }
            )),
        }
        match self.broken {
            Some(Broken::MissingId) => {
                fields.remove(0);
            }
            Some(Broken::BadType) => fields.push("\"type\":\"refund\"".into()),
            _ => {}
        }
        let json = format!("{{{}}}", fields.join(","));
        if matches!(self.broken, Some(Broken::NotJson)) {
            json[..json.len() - 1].to_string()
        } else {
            json
        }
    }

    /// The reason the model expects, if the event is invalid. `wall` is the
    /// wall clock when it is processed.
    fn reason(&self, ts: i64, wall: i64) -> Option<RejectReason> {
        let created_after = matches!(self.broken, Some(Broken::CreatedAfterTs))
            && matches!(self.kind, Kind::Deal { .. });
        match &self.broken {
            Some(Broken::NotJson) => return Some(RejectReason::InvalidJson),
            Some(Broken::BadType) => return Some(RejectReason::InvalidValue),
            Some(Broken::MissingId) => return Some(RejectReason::MissingField),
            Some(Broken::NegativeCost)
                if matches!(self.kind, Kind::Impression { .. } | Kind::Click { .. }) =>
            {
                return Some(RejectReason::InvalidNumber)
            }
            _ => {}
        }
        if ts > wall + 5 * 60_000 {
            return Some(RejectReason::FutureTimestamp);
        }
        created_after.then_some(RejectReason::CreatedAfterTs)
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    let cents = 0i64..5_000_000;
    prop_oneof![
        (1u64..5000, cents.clone()).prop_map(|(count, cents)| Kind::Impression { count, cents }),
        (1u64..20, cents.clone()).prop_map(|(count, cents)| Kind::Click { count, cents }),
        (0usize..3).prop_map(|stage| Kind::Lead { stage }),
        (
            0u8..6,
            0usize..3,
            cents.clone(),
            prop_oneof![Just(0i64), 0..60 * DAY]
        )
            .prop_map(|(deal, stage, cents, cycle_ms)| (deal, stage, cents, cycle_ms))
            .prop_flat_map(|(deal, stage, cents, cycle_ms)| (
                Just((deal, stage, cents, cycle_ms)),
                prop::option::of(0usize..ORIGIN_VALUES.len()),
                prop::option::of(0usize..INFLUENCED_VALUES.len()),
            ))
            .prop_map(
                |((deal, stage, cents, cycle_ms), origin, influenced)| Kind::Deal {
                    deal,
                    stage,
                    cents,
                    cycle_ms,
                    origin,
                    influenced,
                }
            ),
        (cents.clone(), any::<bool>()).prop_map(|(cents, ads)| Kind::Spend { cents, ads }),
        (0usize..5, cents.clone()).prop_map(|(change, cents)| Kind::Subscription { change, cents }),
        (
            1u64..500,
            prop::option::of(0u64..900),
            prop::option::of(0u64..500),
            prop::option::of(0u64..500)
        )
            .prop_map(|(count, extra_pageviews, bounces, engaged)| Kind::Session {
                count,
                extra_pageviews,
                bounces,
                engaged
            }),
        (0usize..3, 1u64..5, cents.clone()).prop_map(|(action, count, cents)| Kind::Conversion {
            action,
            count,
            cents
        }),
        (0usize..8, 1u64..900).prop_map(|(action, count)| Kind::Email { action, count }),
        prop_oneof![
            (0u64..=10).prop_map(|score| Kind::Survey { csat: false, score }),
            (1u64..=5).prop_map(|score| Kind::Survey { csat: true, score }),
        ],
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    // Event times cluster on a few days, with minute and second spread, so
    // that the short windows hold several events and bucket edges are hit.
    let ts = (0i64..100, 0i64..3, 0i64..120, 0i64..1000)
        .prop_map(|(d, m, s, ms)| BASE + d * DAY + m * 60_000 + s * 1000 + ms);
    let broken = prop_oneof![
        12 => Just(None),
        1 => prop_oneof![
            Just(Broken::MissingId),
            Just(Broken::BadType),
            Just(Broken::NegativeCost),
            Just(Broken::NotJson),
            Just(Broken::CreatedAfterTs),
        ].prop_map(Some),
    ];
    (
        0u8..40,
        (0usize..2, 0usize..3),
        ts,
        kind(),
        prop::bool::weighted(0.03),
        broken,
        0i64..20 * 60_000,
    )
        .prop_map(|(id, key, ts, kind, future, broken, wall_step)| Spec {
            id,
            key,
            ts,
            kind,
            future,
            broken,
            wall_step,
        })
}

#[derive(Default)]
struct Model {
    accepted: Vec<(Spec, i64, bool)>, // (spec, ts_eff, late)
    rejected: BTreeMap<&'static str, u64>,
    duplicates: u64,
}

fn key_names(s: &Spec) -> (String, String) {
    (
        CHANNELS[s.key.0].to_string(),
        CAMPAIGNS[s.key.1].to_string(),
    )
}

/// The calendar of the model runs: every calendar window, in a zone with
/// daylight saving, a fiscal year from April. The streams span late
/// September to the end of December 2026: month and quarter edges, and
/// the end of summer time on 25 October.
const ZONE: &str = "Europe/Berlin";
const FISCAL_START: i64 = 4;

/// One published window of the model.
#[derive(Debug, Clone)]
enum MW {
    Rolling(WindowSpec),
    Cal(CalWindow),
}

impl MW {
    fn label(&self) -> String {
        match self {
            MW::Rolling(w) => w.label.clone(),
            MW::Cal(c) => c.label().to_string(),
        }
    }
}

/// Whether an event at `ts` is in a window, its previous window, or after
/// it (a closed period's), at `now`.
#[derive(Debug, Clone, Copy, Default)]
struct Member {
    cur: bool,
    prev: bool,
    after: bool,
}

fn civil(ts: i64) -> DateTime {
    // (Engine time is i64::MIN before the first event.)
    Timestamp::from_millisecond(ts.clamp(-377_705_023_201_000, 253_402_207_200_000))
        .unwrap()
        .to_zoned(parse_timezone(ZONE).unwrap())
        .datetime()
}

fn utc(dt: DateTime) -> i64 {
    dt.to_zoned(parse_timezone(ZONE).unwrap())
        .unwrap()
        .timestamp()
        .as_millisecond()
}

/// Midnight of the first day of month `am` (`year * 12 + month - 1`).
fn month_start(am: i64) -> DateTime {
    Date::new((am.div_euclid(12)) as i16, (am.rem_euclid(12) + 1) as i8, 1)
        .unwrap()
        .to_datetime(jiff::civil::Time::midnight())
}

/// `dt` rounded up to the engine's grid: 6 hours (month windows) or a day.
fn round_up(dt: DateTime, hours: i64) -> DateTime {
    let t = dt.time();
    let in_day = i64::from(t.hour()) * 3_600_000_000_000
        + i64::from(t.minute()) * 60_000_000_000
        + i64::from(t.second()) * 1_000_000_000
        + i64::from(t.subsec_nanosecond());
    let step = hours * 3_600_000_000_000;
    let up = (in_day + step - 1) / step * step;
    dt.date()
        .to_datetime(jiff::civil::Time::midnight())
        .checked_add(jiff::Span::new().nanoseconds(up))
        .unwrap()
}

/// Current month, fiscal quarter and fiscal year of `now` (absolute months).
fn periods(now: i64) -> (i64, i64, i64) {
    let d = civil(now);
    let am = i64::from(d.year()) * 12 + i64::from(d.month()) - 1;
    let into = (i64::from(d.month()) - FISCAL_START).rem_euclid(12);
    (am, am - into % 3, am - into)
}

/// A calendar window's bounds at `now` as local date-times: `[start, end)`
/// (end `None`: until now), and its previous window `[pstart, pend)`.
fn cal_bounds(c: CalWindow, now: i64) -> (DateTime, Option<DateTime>, DateTime, DateTime) {
    let (am, q, y) = periods(now);
    let (len, start, grid) = match c {
        CalWindow::Mtd | CalWindow::LastMonth => (1, am, 6),
        CalWindow::Qtd | CalWindow::LastQuarter => (3, q, 24),
        CalWindow::Ytd => (12, y, 24),
    };
    match c {
        CalWindow::LastMonth | CalWindow::LastQuarter => (
            month_start(start - len),
            Some(month_start(start)),
            month_start(start - 2 * len),
            month_start(start - len),
        ),
        _ => {
            // The same local point in the previous period: same month
            // offset, day and time; the whole period if the day is missing.
            let n = civil(now);
            let target = month_start(am - len).date();
            let end = if n.day() > target.days_in_month() {
                month_start(start)
            } else {
                round_up(
                    Date::new(target.year(), target.month(), n.day())
                        .unwrap()
                        .to_datetime(n.time()),
                    grid,
                )
            };
            (month_start(start), None, month_start(start - len), end)
        }
    }
}

fn member(w: &MW, ts: i64, now: i64) -> Member {
    match w {
        MW::Rolling(w) => {
            let (b, n) = (ts.div_euclid(w.width_ms), now.div_euclid(w.width_ms));
            Member {
                cur: b > n - 60,
                prev: b > n - 120 && b <= n - 60,
                after: false,
            }
        }
        MW::Cal(c) => {
            let (start, end, pstart, pend) = cal_bounds(*c, now);
            let t = civil(ts);
            Member {
                cur: t >= start && end.is_none_or(|e| t < e),
                prev: t >= pstart && t < pend,
                after: end.is_some_and(|e| t >= e),
            }
        }
    }
}

/// `W` of a window at `now` (the covered span for calendar windows).
fn window_ms(w: &MW, now: i64) -> i64 {
    match w {
        MW::Rolling(w) => w.len_ms,
        MW::Cal(c) => match cal_bounds(*c, now) {
            (start, None, _, _) => now.saturating_sub(utc(start)),
            (start, Some(end), _, _) => utc(end).saturating_sub(utc(start)),
        },
    }
}

/// Is an event at `ts` late at `now`: older than twice the longest rolling
/// window and than the previous period of every calendar window?
fn is_late(ts: i64, now: i64, longest: i64, cal: &[CalWindow]) -> bool {
    let (am, q, y) = periods(now);
    let oldest = cal
        .iter()
        .map(|c| match c {
            CalWindow::Mtd => am - 1,
            CalWindow::LastMonth => am - 2,
            CalWindow::Qtd => q - 3,
            CalWindow::LastQuarter => q - 6,
            CalWindow::Ytd => y - 12,
        })
        .min();
    let cal_cut = oldest.map_or(i64::MAX, |m| utc(month_start(m)));
    ts < now - 2 * longest && ts < cal_cut
}

/// Expected (totals, per-window sums, exact cycle samples, v2) per key.
type Expected = BTreeMap<(String, String), (Totals, Vec<WindowSums>, Vec<Vec<i64>>, V2Want)>;

/// The v2 part the model expects of a key: the v2 totals (without the
/// conversions) and the conversions by action name, all-time and per
/// window (label ids are the engine's business, so names are compared).
#[derive(Debug, Clone, Default, PartialEq)]
struct V2Want {
    totals: funnelstream::aggregate::v2::V2Totals,
    conversions: BTreeMap<String, i128>,
    windows: Vec<BTreeMap<String, [i64; 2]>>,
    /// Conversions by action in each previous window.
    prev: Vec<BTreeMap<String, [i64; 2]>>,
}

/// Moves the engine's conversions out of its window sums and totals into
/// a [`V2Want`] keyed by action names.
/// A key's (channel, campaign) names and its finished window sums at `now`.
fn key_sums(
    agg: &funnelstream::aggregate::Aggregator,
    k: &funnelstream::aggregate::KeyState,
    now: i64,
    [channels, campaigns]: [&[std::sync::Arc<str>]; 2],
) -> ((String, String), Vec<WindowSums>) {
    let mut sums: Vec<WindowSums> = agg.sums_at(k, now).into_iter().map(|x| x.1).collect();
    for w in sums.iter_mut() {
        w.params.gross_margin = 0.0;
    }
    let key = (
        channels[k.channel as usize].to_string(),
        campaigns[k.campaign as usize].to_string(),
    );
    (key, sums)
}

fn v2_got(
    k: &funnelstream::aggregate::KeyState,
    sums: &mut [WindowSums],
    names: &[std::sync::Arc<str>],
) -> V2Want {
    let mut totals = k.v2_totals();
    let conversions = totals
        .conversions
        .drain(..)
        .map(|(a, c)| (names[a as usize].to_string(), c))
        .collect();
    let windows = sums
        .iter_mut()
        .map(|w| {
            w.v2.conversions
                .drain(..)
                .filter(|(_, v)| *v != [0, 0])
                .map(|(a, v)| (names[a as usize].to_string(), v))
                .collect()
        })
        .collect();
    let prev = sums
        .iter_mut()
        .map(|w| {
            w.prev
                .conversions
                .drain(..)
                .filter(|(_, v)| *v != [0, 0])
                .map(|(a, v)| (names[a as usize].to_string(), v))
                .collect()
        })
        .collect();
    V2Want {
        totals,
        conversions,
        windows,
        prev,
    }
}

fn expected(model: &Model, specs: &[MW], now: i64) -> Expected {
    let mut out: Expected = BTreeMap::new();
    let mut deals: HashMap<u8, ((String, String), i128, bool)> = HashMap::new();
    for (s, ts_eff, late) in &model.accepted {
        let key = key_names(s);
        let e = out.entry(key.clone()).or_insert_with(|| {
            (
                Totals::default(),
                vec![WindowSums::default(); specs.len()],
                vec![vec![]; specs.len()],
                V2Want {
                    windows: vec![BTreeMap::new(); specs.len()],
                    prev: vec![BTreeMap::new(); specs.len()],
                    ..V2Want::default()
                },
            )
        });
        let t = &mut e.0;
        let v = &mut e.3;
        let mut deal_a = [0i64; 7];
        let mut deal_b = [0i64; 8];
        let mut web = [0i64; 4];
        let mut email = [0i64; 8];
        let mut survey = [0i64; 6];
        let mut conv: Option<(String, [i64; 2])> = None;
        let mut traffic = [0i64; 4];
        let mut leads = [0i64; 3];
        let mut dl = [0i64; 5];
        let mut subs = [0i64; 8];
        let mut cycle = None;
        match &s.kind {
            Kind::Impression { count, cents } => {
                t.impressions += *count as i128;
                t.ad_spend += (*cents * MICRO_PER_CENT) as i128;
                t.spend += (*cents * MICRO_PER_CENT) as i128;
                traffic[field::IMPRESSIONS] = *count as i64;
                traffic[field::AD_SPEND] = cents * MICRO_PER_CENT;
            }
            Kind::Click { count, cents } => {
                t.clicks += *count as i128;
                t.ad_spend += (*cents * MICRO_PER_CENT) as i128;
                t.spend += (*cents * MICRO_PER_CENT) as i128;
                traffic[field::CLICKS] = *count as i64;
                traffic[field::AD_SPEND] = cents * MICRO_PER_CENT;
            }
            Kind::Spend { cents, ads } => {
                let m = cents * MICRO_PER_CENT;
                t.spend += m as i128;
                if *ads {
                    t.ad_spend += m as i128;
                    traffic[field::AD_SPEND] = m;
                } else {
                    traffic[field::OTHER_SPEND] = m;
                }
            }
            Kind::Lead { stage } => {
                t.leads[*stage] += 1;
                leads[*stage] = 1;
            }
            Kind::Deal {
                deal,
                stage,
                cents,
                cycle_ms,
                origin,
                influenced,
            } => {
                let m = (cents * MICRO_PER_CENT) as i128;
                t.deals[*stage] += 1;
                // v2: the origin given if valid, else the channel's default
                // (marketing for both channels here); influenced on won.
                v.totals.seen |= seen::DEAL;
                let o = match origin {
                    Some(o) if *o < 4 => *o,
                    _ => 0,
                };
                let infl = *stage == 1 && *influenced == Some(0);
                match *stage {
                    0 => {
                        v.totals.pipeline_created += m;
                        deal_a[f2::PIPELINE_CREATED] = m as i64;
                        deal_b[f2::PIPELINE_BY_ORIGIN + o] = m as i64;
                    }
                    1 => {
                        deal_a[f2::WON_BY_ORIGIN + o] = 1;
                        deal_b[f2::REVENUE_BY_ORIGIN + o] = m as i64;
                        if infl {
                            deal_a[f2::WON_INFLUENCED] = 1;
                            deal_a[f2::REVENUE_INFLUENCED] = m as i64;
                        }
                    }
                    _ => {}
                }
                dl[*stage] = 1; // OPEN=0, WON=1, LOST=2
                if *stage == 1 {
                    t.revenue_won += m;
                    dl[field::REVENUE_WON] = m as i64;
                    dl[field::CYCLE_SUM_MS] = *cycle_ms;
                    cycle = Some(*cycle_ms);
                }
                match deals.get_mut(deal) {
                    Some((_, _, true)) => {}
                    Some(d) => {
                        if *stage == 0 {
                            *d = (key.clone(), m, false);
                        } else {
                            *d = (d.0.clone(), 0, true);
                        }
                    }
                    None => {
                        deals.insert(
                            *deal,
                            (key.clone(), if *stage == 0 { m } else { 0 }, *stage != 0),
                        );
                    }
                }
            }
            Kind::Session {
                count,
                extra_pageviews,
                bounces,
                engaged,
            } => {
                v.totals.seen |= seen::WEB;
                let pv = count + extra_pageviews.unwrap_or(0);
                let b = bounces.map_or(0, |b| b.min(*count));
                let en = engaged.map_or(count - b, |e| e.min(*count));
                v.totals.sessions += *count as i128;
                v.totals.pageviews += pv as i128;
                web = [*count as i64, pv as i64, b as i64, en as i64];
            }
            Kind::Conversion {
                action,
                count,
                cents,
            } => {
                *v.conversions
                    .entry(ACTIONS[*action].to_string())
                    .or_default() += *count as i128;
                conv = Some((
                    ACTIONS[*action].to_string(),
                    [*count as i64, cents * MICRO_PER_CENT],
                ));
            }
            Kind::Email { action, count } => {
                v.totals.seen |= seen::EMAIL;
                v.totals.email[*action] += *count as i128;
                email[*action] = *count as i64;
            }
            Kind::Survey { csat, score } => {
                v.totals.seen |= seen::SURVEY;
                if *csat {
                    v.totals.survey[1] += 1;
                    survey[f2::CSAT_RESPONSES] = 1;
                    survey[f2::CSAT_SATISFIED] = i64::from(*score >= 4);
                } else {
                    v.totals.survey[0] += 1;
                    survey[f2::NPS_RESPONSES] = 1;
                    let class = match score {
                        9.. => f2::NPS_PROMOTERS,
                        7..=8 => f2::NPS_PASSIVES,
                        _ => f2::NPS_DETRACTORS,
                    };
                    survey[class] = 1;
                }
            }
            Kind::Subscription { change, cents } => {
                v.totals.seen |= seen::SUBS;
                let m = cents * MICRO_PER_CENT;
                t.mrr_movement[*change] += m as i128;
                let sign = if *change == Change::Contraction as usize
                    || *change == Change::Churn as usize
                {
                    -1
                } else {
                    1
                };
                t.mrr += (sign * m) as i128;
                subs[*change] = m;
                match *change {
                    0 => {
                        t.customers += 1;
                        subs[field::CUSTOMERS_NEW] = 1;
                    }
                    3 => {
                        t.customers -= 1;
                        subs[field::CUSTOMERS_CHURNED] = 1;
                    }
                    4 => {
                        t.customers += 1;
                        subs[field::CUSTOMERS_REACTIVATED] = 1;
                    }
                    _ => {}
                }
            }
        }
        if *late {
            continue;
        }
        let add = |a: &mut [i64], b: &[i64]| {
            for (a, b) in a.iter_mut().zip(b) {
                *a += b;
            }
        };
        for (i, w) in specs.iter().enumerate() {
            let m = member(w, *ts_eff, now);
            let ws = &mut e.1[i];
            if m.after {
                add(&mut ws.after_subs, &subs);
            }
            if m.prev {
                // The growth groups only.
                add(&mut ws.prev.leads, &leads);
                add(&mut ws.prev.deals, &dl);
                add(&mut ws.prev.subs, &subs);
                add(&mut ws.prev.deal_a, &deal_a);
                add(&mut ws.prev.web, &web);
                if let Some((a, c)) = &conv {
                    add(e.3.prev[i].entry(a.clone()).or_default(), c);
                }
            }
            if !m.cur {
                continue;
            }
            for (a, b) in ws.traffic.iter_mut().zip(traffic) {
                *a += b;
            }
            for (a, b) in ws.leads.iter_mut().zip(leads) {
                *a += b;
            }
            for (a, b) in ws.deals.iter_mut().zip(dl) {
                *a += b;
            }
            for (a, b) in ws.subs.iter_mut().zip(subs) {
                *a += b;
            }
            if let Some(c) = cycle {
                ws.cycles.push((sketch::index(c), 1));
                e.2[i].push(c);
            }
            add(&mut ws.v2.deal_a, &deal_a);
            add(&mut ws.v2.deal_b, &deal_b);
            add(&mut ws.v2.web, &web);
            add(&mut ws.v2.email, &email);
            add(&mut ws.v2.survey, &survey);
            if let Some((a, c)) = &conv {
                let x = e.3.windows[i].entry(a.clone()).or_default();
                add(x, c);
            }
        }
    }
    for (key, amount, closed) in deals.values() {
        if !closed {
            if let Some(e) = out.get_mut(key) {
                e.0.open_pipeline += amount;
            }
        }
    }
    for e in out.values_mut() {
        for (w, spec) in e.1.iter_mut().zip(specs) {
            w.finish();
            w.params.window_ms = window_ms(spec, now);
        }
    }
    out
}

fn nearest_rank(values: &mut [i64], num: usize, den: usize) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (values.len() * num).div_ceil(den).max(1);
    Some(values[rank - 1] as f64 / 1000.0)
}

fn check(specs_in: Vec<Spec>, clock: ClockMode) -> Result<(), TestCaseError> {
    let cal = parse_calendar_windows("mtd,qtd,ytd,last_month,last_quarter").unwrap();
    let cfg = EngineConfig {
        windows: parse_windows("5m,1h,1d,7d,30d,90d").unwrap(),
        clock,
        dedup_horizon_ms: 3_600_000,
        calendar: CalendarConfig {
            windows: cal.clone(),
            timezone: ZONE.into(),
            tz: parse_timezone(ZONE).unwrap(),
            fiscal_year_start_month: FISCAL_START as u8,
        },
        ..EngineConfig::default()
    };
    let longest = cfg.longest_window_ms();
    let rolling = cfg.windows.clone();
    let windows: Vec<MW> = rolling
        .iter()
        .cloned()
        .map(MW::Rolling)
        .chain(cal.iter().copied().map(MW::Cal))
        .collect();
    let engine = Engine::new(cfg);
    let mut part = engine.partition();
    let mut model = Model::default();
    let mut wall = BASE + 60 * DAY;
    let mut now = i64::MIN;
    let mut last_seen: HashMap<u8, i64> = HashMap::new();
    for s in &specs_in {
        if clock == ClockMode::Wall {
            wall += s.wall_step;
        } else {
            wall = BASE + 101 * DAY;
        }
        let ts = if s.future {
            wall + 6 * 60_000 + 1
        } else if clock == ClockMode::Event {
            s.ts
        } else if s.id % 3 == 0 {
            // Recent: within two hours behind the wall clock, up to 4
            // minutes ahead (inside the future skew, so clamped to now).
            wall + 4 * 60_000 - (s.ts - BASE) % (2 * 3_600_000)
        } else {
            // Anywhere up to 100 days back: some are late.
            wall + 4 * 60_000 - (s.ts - BASE)
        };
        let line = s.line(ts);
        let outcome = part.process_at(line.as_bytes(), wall);
        // The model.
        if let Some(r) = s.reason(ts, wall) {
            *model.rejected.entry(r.as_str()).or_default() += 1;
            prop_assert_eq!(outcome, Outcome::Rejected(r), "line {}", line);
            continue;
        }
        now = now.max(if clock == ClockMode::Event { ts } else { wall });
        let ts_eff = ts.min(now);
        // EVENTS.md, Duplicates: an id is remembered for the horizon of
        // engine time after it was accepted, whatever its `ts`.
        if last_seen
            .get(&s.id)
            .is_some_and(|&accepted| accepted >= now - 3_600_000)
        {
            model.duplicates += 1;
            prop_assert_eq!(outcome, Outcome::Duplicate, "line {}", line);
            continue;
        }
        last_seen.insert(s.id, now);
        let late = is_late(ts_eff, now, longest, &cal);
        prop_assert_eq!(outcome, Outcome::Applied { late }, "line {}", line);
        model.accepted.push((s.clone(), ts_eff, late));
    }
    let render_now = engine.clock.now(wall);
    let want = expected(&model, &windows, render_now);

    // Engine state by key names.
    let names_c = part.agg.labels().channel.names();
    let names_k = part.agg.labels().campaign.names();
    let names_a = part.agg.labels().action.names();
    let mut got: BTreeMap<(String, String), (Totals, Vec<WindowSums>)> = BTreeMap::new();
    for k in part.agg.keys() {
        let (key, mut sums) = key_sums(&part.agg, k, render_now, [&names_c, &names_k]);
        let v2 = v2_got(k, &mut sums, &names_a);
        prop_assert_eq!(&v2, &want[&key].3, "v2 of {:?}", key);
        got.insert(key, (k.totals.clone(), sums));
    }
    prop_assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (key, (t, sums)) in &got {
        let (wt, wsums, cycles, _) = &want[key];
        prop_assert_eq!(t, wt, "totals of {:?}", key);
        for (i, w) in windows.iter().enumerate() {
            prop_assert_eq!(
                &sums[i],
                &wsums[i],
                "sums of {:?} window {}",
                key,
                w.label()
            );
            // Every published metric, from the engine's state.
            for fam in FAMILIES {
                if let Eval::Window(f) = fam.eval {
                    let v = f(t, &sums[i]);
                    let mut c = cycles[i].clone();
                    let exact = match fam.name {
                        "funnel_sales_cycle_p50_seconds" => Some(nearest_rank(&mut c, 1, 2)),
                        "funnel_sales_cycle_p90_seconds" => Some(nearest_rank(&mut c, 9, 10)),
                        _ => None,
                    };
                    match exact {
                        Some(e) => {
                            prop_assert_eq!(v.is_some(), e.is_some(), "{} {:?}", fam.name, key);
                            if let (Some(v), Some(e)) = (v, e) {
                                let v = v.as_f64();
                                prop_assert!(
                                    (v - e).abs() <= 0.01 * e,
                                    "{}: {} vs exact {}",
                                    fam.name,
                                    v,
                                    e
                                );
                            }
                        }
                        None => prop_assert_eq!(
                            v,
                            f(wt, &wsums[i]),
                            "{} {:?} {}",
                            fam.name,
                            key,
                            w.label()
                        ),
                    }
                    if let Some(Value::Float(x)) = v {
                        prop_assert!(x.is_finite(), "{} not finite", fam.name);
                    }
                }
            }
        }
    }
    // Later renders with no new event, at the last instant each of some
    // events' buckets is inside a window and the first it is not: windows
    // slide exactly at bucket edges, whatever the state still holds.
    for (s, ts_eff, late) in model.accepted.iter().take(24) {
        if *late {
            continue;
        }
        for w in &rolling {
            let leaves = (ts_eff.div_euclid(w.width_ms) + 60) * w.width_ms;
            // Leaving the window (into its previous one), and leaving that.
            let gone = leaves + 60 * w.width_ms;
            for now in [leaves - 1, leaves, gone - 1, gone] {
                if now < render_now {
                    continue;
                }
                let want = expected(&model, &windows, now);
                for k in part.agg.keys() {
                    let (key, mut sums) = key_sums(&part.agg, k, now, [&names_c, &names_k]);
                    let v2 = v2_got(k, &mut sums, &names_a);
                    prop_assert_eq!(&v2, &want[&key].3, "v2 of {:?} at {}", key, now);
                    prop_assert_eq!(
                        &sums,
                        &want[&key].1,
                        "{:?} at {} (event {})",
                        key,
                        now,
                        s.id
                    );
                }
            }
        }
    }
    // Calendar periods roll over at local midnight with no new event: the
    // next month's and the next fiscal quarter's first instant, and the
    // one before.
    let (am, q, _) = periods(render_now.max(BASE));
    for edge in [utc(month_start(am + 1)), utc(month_start(q + 3))] {
        for now in [edge - 1, edge] {
            let want = expected(&model, &windows, now);
            for k in part.agg.keys() {
                let (key, mut sums) = key_sums(&part.agg, k, now, [&names_c, &names_k]);
                let v2 = v2_got(k, &mut sums, &names_a);
                prop_assert_eq!(&v2, &want[&key].3, "v2 of {:?} at {}", key, now);
                prop_assert_eq!(&sums, &want[&key].1, "{:?} at {}", key, now);
            }
        }
    }
    // Health counters.
    for r in RejectReason::ALL {
        prop_assert_eq!(
            part.stats.rejected[r.index()],
            model.rejected.get(r.as_str()).copied().unwrap_or(0),
            "rejected {}",
            r
        );
    }
    prop_assert_eq!(part.stats.duplicates, model.duplicates);
    prop_assert_eq!(
        part.agg.stats.late,
        model.accepted.iter().filter(|a| a.2).count() as u64
    );
    prop_assert_eq!(
        part.stats.ingested.iter().sum::<u64>(),
        model.accepted.len() as u64
    );
    if std::env::var_os("MODEL_STATS").is_some() {
        eprintln!(
            "{:?}: {} events, {} accepted ({} late), {} duplicates, {} rejected, {} keys",
            clock,
            specs_in.len(),
            model.accepted.len(),
            part.agg.stats.late,
            model.duplicates,
            model.rejected.values().sum::<u64>(),
            got.len()
        );
    }
    Ok(())
}

// Each test holds `serial()` (it keeps both cores busy for a minute).
fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    }
}

#[test]
fn incremental_state_equals_brute_force_event_clock() {
    let _one_at_a_time = serial();
    proptest!(cases(), |(specs in prop::collection::vec(spec(), 1..150))| {
        check(specs, ClockMode::Event)?;
    });
}

#[test]
fn incremental_state_equals_brute_force_wall_clock() {
    let _one_at_a_time = serial();
    proptest!(cases(), |(specs in prop::collection::vec(spec(), 1..150))| {
        check(specs, ClockMode::Wall)?;
    });
}

/// A long stream in one go: many bucket rollovers in every window.
#[test]
fn long_stream_equals_brute_force() {
    let _one_at_a_time = serial();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..3 {
        let specs = prop::collection::vec(spec(), 3000)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        check(specs, ClockMode::Event).unwrap();
    }
}
