//! Property test: for random event streams (out of order, duplicates, late,
//! future and invalid events, both clocks), the engine's incremental state
//! equals a brute-force recomputation from the raw events, for every key,
//! every window and every metric, and so do the health counters.
//!
//! The model below knows nothing of buckets-as-rings, dedup memories or
//! caches: it keeps the list of accepted events and, at the end, filters
//! them with the window rule of docs/SEMANTICS.md.

use funnelstream::aggregate::ring::sketch;
use funnelstream::aggregate::{field, Totals, WindowSums};
use funnelstream::config::{parse_windows, ClockMode, EngineConfig, WindowSpec};
use funnelstream::decode::{Change, RejectReason};
use funnelstream::engine::{Engine, Outcome};
use funnelstream::kpi::{Eval, Value, FAMILIES};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::collections::{BTreeMap, HashMap};

const BASE: i64 = 1_790_000_000_000; // 2026-09-21
const DAY: i64 = 86_400_000;
const MICRO_PER_CENT: i64 = 10_000;
const CHANNELS: [&str; 2] = ["paid_search", "email"];
const CAMPAIGNS: [&str; 3] = ["brand", "q4", "none"];

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
            Kind::Deal { deal, stage, cents, cycle_ms } => {
                fields.push(format!(
                    "\"type\":\"deal\",\"deal_id\":\"D{deal}\",\"stage\":\"{}\",\"amount\":{}",
                    deal_stages[*stage],
                    money(*cents)
                ));
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
            .prop_map(|(deal, stage, cents, cycle_ms)| Kind::Deal {
                deal,
                stage,
                cents,
                cycle_ms
            }),
        (cents.clone(), any::<bool>()).prop_map(|(cents, ads)| Kind::Spend { cents, ads }),
        (0usize..5, cents).prop_map(|(change, cents)| Kind::Subscription { change, cents }),
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

fn included(ts_eff: i64, now: i64, w: &WindowSpec) -> bool {
    ts_eff.div_euclid(w.width_ms) > now.div_euclid(w.width_ms) - 60
}

/// Expected (totals, per-window sums, exact cycle samples) per key.
type Expected = BTreeMap<(String, String), (Totals, Vec<WindowSums>, Vec<Vec<i64>>)>;

fn expected(model: &Model, specs: &[WindowSpec], now: i64) -> Expected {
    let mut out: Expected = BTreeMap::new();
    let mut deals: HashMap<u8, ((String, String), i128, bool)> = HashMap::new();
    for (s, ts_eff, late) in &model.accepted {
        let key = key_names(s);
        let e = out.entry(key.clone()).or_insert_with(|| {
            (
                Totals::default(),
                vec![WindowSums::default(); specs.len()],
                vec![vec![]; specs.len()],
            )
        });
        let t = &mut e.0;
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
            } => {
                let m = (cents * MICRO_PER_CENT) as i128;
                t.deals[*stage] += 1;
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
            Kind::Subscription { change, cents } => {
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
        for (i, w) in specs.iter().enumerate() {
            if !included(*ts_eff, now, w) {
                continue;
            }
            let ws = &mut e.1[i];
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
        for w in e.1.iter_mut() {
            w.finish();
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
    let cfg = EngineConfig {
        windows: parse_windows("5m,1h,1d,7d,30d,90d").unwrap(),
        clock,
        dedup_horizon_ms: 3_600_000,
        ..EngineConfig::default()
    };
    let longest = cfg.longest_window_ms();
    let windows = cfg.windows.clone();
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
        let late = ts_eff < now - longest;
        prop_assert_eq!(outcome, Outcome::Applied { late }, "line {}", line);
        model.accepted.push((s.clone(), ts_eff, late));
    }
    let render_now = engine.clock.now(wall);
    let want = expected(&model, &windows, render_now);

    // Engine state by key names.
    let names_c = part.agg.labels().channel.names();
    let names_k = part.agg.labels().campaign.names();
    let mut got: BTreeMap<(String, String), (Totals, Vec<WindowSums>)> = BTreeMap::new();
    for k in part.agg.keys() {
        let mut sums = vec![WindowSums::default(); windows.len()];
        k.sums_into(&windows, render_now, &mut sums);
        for w in sums.iter_mut() {
            w.finish();
        }
        got.insert(
            (
                names_c[k.channel as usize].to_string(),
                names_k[k.campaign as usize].to_string(),
            ),
            (k.totals.clone(), sums),
        );
    }
    prop_assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (key, (t, sums)) in &got {
        let (wt, wsums, cycles) = &want[key];
        prop_assert_eq!(t, wt, "totals of {:?}", key);
        for (i, w) in windows.iter().enumerate() {
            prop_assert_eq!(&sums[i], &wsums[i], "sums of {:?} window {}", key, w.label);
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
                            w.label
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
        for w in &windows {
            let leaves = (ts_eff.div_euclid(w.width_ms) + 60) * w.width_ms;
            for now in [leaves - 1, leaves] {
                if now < render_now {
                    continue;
                }
                let want = expected(&model, &windows, now);
                for k in part.agg.keys() {
                    let mut sums = vec![WindowSums::default(); windows.len()];
                    k.sums_into(&windows, now, &mut sums);
                    for w in sums.iter_mut() {
                        w.finish();
                    }
                    let key = (
                        names_c[k.channel as usize].to_string(),
                        names_k[k.campaign as usize].to_string(),
                    );
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn incremental_state_equals_brute_force_event_clock(specs in prop::collection::vec(spec(), 1..150)) {
        check(specs, ClockMode::Event)?;
    }

    #[test]
    fn incremental_state_equals_brute_force_wall_clock(specs in prop::collection::vec(spec(), 1..150)) {
        check(specs, ClockMode::Wall)?;
    }
}

/// A long stream in one go: many bucket rollovers in every window.
#[test]
fn long_stream_equals_brute_force() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..3 {
        let specs = prop::collection::vec(spec(), 3000)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        check(specs, ClockMode::Event).unwrap();
    }
}
