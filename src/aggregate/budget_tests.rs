//! The series budget (`max_series`, [`labels::KeyBudget`]): whole keys fold
//! into the overflow key, every total over all keys stays what it is without
//! a budget, and a checkpoint restore reproduces the same folding.

use super::labels::OVERFLOW;
use super::*;
use crate::checkpoint::{decode, encode, CheckpointMeta};
use crate::config::{ClockMode, EngineConfig};
use crate::engine::{Engine, Health, Partition};
use crate::export::prometheus::render;
use crate::kpi::series_per_key;
use crate::kpi::Eval;
use crate::synth::{Synth, SynthConfig};
use std::collections::BTreeSet;

const WALL: i64 = 1_900_000_000_000;

fn config(max_series: usize) -> EngineConfig {
    EngineConfig {
        clock: ClockMode::Event,
        max_series,
        ..EngineConfig::default()
    }
}

fn lines(n: usize, seed: u64, keys: u64) -> Vec<String> {
    let mut g = Synth::new(SynthConfig {
        seed,
        keys,
        step_ms: 20_000.0,
        duplicate_ratio: 0.02,
        invalid_ratio: 0.01,
        v2_ratio: 0.2,
        ..SynthConfig::default()
    });
    (0..n).map(|_| g.next_line()).collect()
}

fn feed(p: &mut Partition, lines: &[String]) {
    for l in lines {
        p.process_at(l.as_bytes(), WALL);
    }
}

fn names(p: &Partition) -> BTreeSet<(String, String)> {
    let l = p.agg.labels();
    p.agg
        .keys()
        .iter()
        .map(|k| {
            (
                l.channel.name(k.channel).to_string(),
                l.campaign.name(k.campaign).to_string(),
            )
        })
        .collect()
}

fn totals(parts: &[&Partition]) -> Totals {
    let mut t = Totals::default();
    for p in parts {
        for k in p.agg.keys() {
            t.add(&k.totals);
        }
    }
    t
}

/// Window sums over every key of every partition, with conversion
/// actions by name (action ids are per engine).
fn windows(parts: &[&Partition], specs: &[WindowSpec], now: i64) -> Vec<WindowSums> {
    let views = parts[0].agg.views(now);
    assert_eq!(views.len(), specs.len());
    let mut out = vec![WindowSums::default(); views.len()];
    for p in parts {
        for k in p.agg.keys() {
            k.sums_into(p.agg.slots(), &views, &mut out);
        }
    }
    let names = parts[0].agg.labels().action.names();
    for o in &mut out {
        o.finish();
        let mut by_name: Vec<_> =
            o.v2.conversions
                .iter()
                .map(|(a, v)| (names[*a as usize].to_string(), *v))
                .collect();
        by_name.sort();
        o.v2.conversions.clear();
        o.v2.conversions
            .extend(by_name.iter().enumerate().map(|(i, (_, v))| (i as u32, *v)));
    }
    out
}

/// A budget of `keys` keys' worth of v1 series, and the overflow key's
/// reserve.
fn budget_of(keys: usize) -> usize {
    let c = crate::kpi::charges(6);
    series_per_key(6) * keys + c.full(EngineConfig::default().max_actions + 1)
}

#[test]
fn whole_keys_fold_and_every_total_stays_exact() {
    let all = lines(6000, 11, 40);
    let (free, tight) = (
        Engine::new(config(usize::MAX)),
        Engine::new(config(budget_of(7))),
    );
    assert_eq!(tight.labels.keys.max_keys(), 7);
    // Two partitions of each engine, fed the same halves.
    let (mut f0, mut f1, mut t0, mut t1) = (
        free.partition(),
        free.partition(),
        tight.partition(),
        tight.partition(),
    );
    let (a, b) = all.split_at(all.len() / 2);
    feed(&mut f0, a);
    feed(&mut f1, b);
    feed(&mut t0, a);
    feed(&mut t1, b);
    assert_eq!(totals(&[&f0, &f1]), totals(&[&t0, &t1]));
    let specs = free.config.windows.clone();
    let now = free.clock.current();
    assert_eq!(now, tight.clock.current());
    assert_eq!(
        windows(&[&f0, &f1], &specs, now),
        windows(&[&t0, &t1], &specs, now)
    );
    // At most seven keys under their own labels in all (fewer: the v2
    // groups of the stream are charged too), the rest folded whole.
    let own: BTreeSet<_> = names(&t0)
        .union(&names(&t1))
        .filter(|k| k.0 != OVERFLOW)
        .cloned()
        .collect();
    assert!((1..=7).contains(&own.len()), "{own:?}");
    let overflow = (OVERFLOW.to_string(), OVERFLOW.to_string());
    assert!(names(&t0).contains(&overflow));
    // A key is folded in every partition or in none.
    for k in names(&f0).union(&names(&f1)) {
        let in_tight = names(&t0).contains(k) || names(&t1).contains(k);
        assert_eq!(in_tight, own.contains(k), "{k:?}");
    }
    // Admitted keys keep exactly their own values (a v2 group that no
    // longer fitted is absent, counted in the overflow key).
    let render_of = |e: &Engine, ps: [&Partition; 2]| {
        render(
            &[&ps[0].agg, &ps[1].agg],
            &Health::of(&ps),
            e.clock.current(),
            "t",
        )
    };
    let free_text = render_of(&free, [&f0, &f1]);
    let tight_text = render_of(&tight, [&t0, &t1]);
    for (ch, ca) in &own {
        let label = format!("channel=\"{ch}\",campaign=\"{ca}\"");
        let pick = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.contains(&label))
                .map(String::from)
                .collect()
        };
        let free: BTreeSet<String> = pick(&free_text).into_iter().collect();
        let tight = pick(&tight_text);
        assert!(tight.len() > 100, "{label}");
        for l in tight {
            assert!(free.contains(&l), "{l}");
        }
    }
    // Every event of a folded key is counted.
    let folded = t0.agg.stats.label_overflow[3] + t1.agg.stats.label_overflow[3];
    assert!(folded > 0);
    assert!(tight_text.contains(&format!(
        "funnel_label_overflow_total{{label=\"key\"}} {folded}\n"
    )));
    assert!(tight_text.contains(&format!("funnel_series_budget {}\n", budget_of(7))));
    let series: u64 = tight_text
        .lines()
        .find_map(|l| l.strip_prefix("funnel_series "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(series > 0);
}

#[test]
fn admission_is_first_come_and_the_same_in_every_partition() {
    let e = Engine::new(config(budget_of(2)));
    let (mut p0, mut p1) = (e.partition(), e.partition());
    let ev = |i: u32, ch: &str, ca: &str| {
        format!(
            r#"{{"id":"e{i}","type":"click","ts":1895000000000,"channel":"{ch}","campaign":"{ca}","count":1,"cost":0.5}}"#
        )
    };
    p0.process_at(ev(1, "a", "x").as_bytes(), WALL);
    p1.process_at(ev(2, "b", "y").as_bytes(), WALL);
    // Full: a third key folds in either partition, the first two do not.
    p0.process_at(ev(3, "c", "z").as_bytes(), WALL);
    p1.process_at(ev(4, "c", "z").as_bytes(), WALL);
    p1.process_at(ev(5, "a", "x").as_bytes(), WALL);
    p0.process_at(ev(6, "b", "y").as_bytes(), WALL);
    let o = || (OVERFLOW.to_string(), OVERFLOW.to_string());
    let k = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(names(&p0), BTreeSet::from([k("a", "x"), o(), k("b", "y")]));
    assert_eq!(names(&p1), BTreeSet::from([k("b", "y"), o(), k("a", "x")]));
    assert_eq!(p0.agg.stats.label_overflow[3], 1);
    assert_eq!(p1.agg.stats.label_overflow[3], 1);
}

#[test]
fn restore_reproduces_the_folding() {
    let all = lines(4000, 5, 30);
    let a = Engine::new(config(budget_of(9)));
    let (mut p0, mut p1) = (a.partition(), a.partition());
    let (x, y) = all.split_at(all.len() / 2);
    feed(&mut p0, x);
    feed(&mut p1, y);
    let meta = |p: i32| CheckpointMeta {
        topic: "events".into(),
        partition: p,
        next_offset: 2000,
        written_at_ms: 1,
        engine_now_ms: a.clock.current(),
    };
    let (b0, b1) = (encode(&mut p0, &meta(0)), encode(&mut p1, &meta(1)));
    // A fresh engine with the same budget, restoring in the other order.
    let b = Engine::new(config(budget_of(9)));
    let (r1, _) = decode(&b1, &b, false).unwrap();
    let (r0, _) = decode(&b0, &b, false).unwrap();
    assert_eq!(names(&p0), names(&r0));
    assert_eq!(names(&p1), names(&r1));
    assert_eq!(r0.agg.stats, p0.agg.stats);
    assert_eq!(r1.agg.stats, p1.agg.stats);
    assert_eq!(a.labels.keys.admitted(), b.labels.keys.admitted());
    // The same events after the restore fold the same way.
    let more = lines(1000, 6, 60);
    let (mut q0, mut q1) = (p0, r0);
    feed(&mut q0, &more);
    feed(&mut q1, &more);
    assert_eq!(names(&q0), names(&q1));
    assert_eq!(q0.agg.stats, q1.agg.stats);
    // A checkpoint with no folded event is byte for byte what it was
    // before the budget existed: no trailing count.
    let e = Engine::new(config(usize::MAX));
    let mut p = e.partition();
    feed(&mut p, &all[..100]);
    let bytes = encode(&mut p, &meta(2));
    let (back, _) = decode(&bytes, &e, false).unwrap();
    assert_eq!(back.agg.stats.label_overflow[3], 0);
}

/// The charge per key is the most series a key publishes from the v1 event
/// types: a key with every v1 event type, also in the previous 5m window,
/// publishes every family without a gate or of a group v1 types open (but
/// the KPIs over v2 sums), and counting each one once per window (per extra
/// label value) gives the charge.
#[test]
fn the_charge_is_every_family_of_a_full_v1_key() {
    let e = Engine::new(config(usize::MAX));
    let mut p = e.partition();
    let ts = 1_895_000_000_000i64;
    let evs = [
        r#""type":"impression","count":1000,"cost":10"#,
        r#""type":"click","count":50,"cost":20"#,
        r#""type":"spend","amount":100,"category":"salaries""#,
        r#""type":"lead","lead_id":"l1","stage":"new""#,
        r#""type":"lead","lead_id":"l1","stage":"mql""#,
        r#""type":"lead","lead_id":"l1","stage":"sql""#,
        r#""type":"deal","deal_id":"d1","stage":"open","amount":500"#,
        r#""type":"deal","deal_id":"d2","stage":"won","amount":700,"created_ts":CREATED"#,
        r#""type":"deal","deal_id":"d3","stage":"lost","amount":300,"created_ts":CREATED"#,
        r#""type":"subscription","account_id":"a1","change":"new","mrr_delta":100"#,
        r#""type":"subscription","account_id":"a2","change":"new","mrr_delta":80"#,
        r#""type":"subscription","account_id":"a2","change":"expansion","mrr_delta":10"#,
        r#""type":"subscription","account_id":"a1","change":"churn","mrr_delta":100"#,
    ];
    // Now, in the previous 5m window, and before every window (a starting
    // stock of MRR and customers).
    for (i, body) in evs.iter().enumerate() {
        for (j, at) in [ts - 100 * 86_400_000, ts - 450_000, ts].iter().enumerate() {
            let body = body.replace("CREATED", &(at - 86_400_000).to_string());
            let line =
                format!(r#"{{"id":"e{i}-{j}","ts":{at},"channel":"c","campaign":"k",{body}}}"#);
            assert!(
                matches!(
                    p.process_at(line.as_bytes(), WALL),
                    crate::engine::Outcome::Applied { .. }
                ),
                "{line}"
            );
        }
    }
    let text = render(&[&p.agg], &Health::of(&[&p]), e.clock.current(), "t");
    let gate0 = |name: &str| {
        crate::kpi::FAMILIES
            .iter()
            .any(|f| f.name == name && f.gate & !super::labels::V1_TYPE_GROUPS == 0)
    };
    // Family -> its series' labels without `window`, and whether windowed.
    let mut seen: std::collections::BTreeMap<String, (BTreeSet<String>, bool)> = Default::default();
    let mut published = 0;
    for l in text.lines().filter(|l| l.contains("campaign=\"k\"")) {
        let (name, rest) = l.split_once('{').unwrap();
        if !gate0(name) {
            continue;
        }
        published += 1;
        let labels = rest.split_once('}').unwrap().0;
        let windowed = labels.contains("window=\"");
        let other: Vec<_> = labels
            .split(',')
            .filter(|x| !x.starts_with("window="))
            .collect();
        let entry = seen.entry(name.to_string()).or_default();
        entry.0.insert(other.join(","));
        entry.1 |= windowed;
    }
    // Every family without a gate, but the conversion families (one
    // series per action received) and the KPIs over v2 sums.
    let missing: Vec<_> = crate::kpi::FAMILIES
        .iter()
        .filter(|f| f.gate & !super::labels::V1_TYPE_GROUPS == 0 && !seen.contains_key(f.name))
        .filter(|f| {
            !matches!(
                f.eval,
                Eval::ActionWindow(_) | Eval::ActionGrowth(_) | Eval::ActionKey(_)
            )
        })
        .map(|f| f.name)
        .collect();
    let mut over_v2: Vec<_> = super::labels::OVER_V2_SUMS.iter().map(|o| o.0).collect();
    let mut missing = missing;
    over_v2.sort_unstable();
    missing.sort_unstable();
    assert_eq!(
        missing, over_v2,
        "families every v1 key has that were not published"
    );
    let bound: usize = seen
        .values()
        .map(|(combos, windowed)| combos.len() * if *windowed { 6 } else { 1 })
        .sum();
    assert_eq!(bound, series_per_key(6));
    assert!(published <= bound);
}

/// The figures of the sizing guide (docs/PERFORMANCE.md, "Series budget").
#[test]
fn the_sizing_guide_charges() {
    let got: Vec<usize> = [1, 3, 6, 8].iter().map(|&w| series_per_key(w)).collect();
    // 22 series without a window, 83 per window (67, and the previous
    // window and growth ratio of 8 counts: leads, mqls, sqls,
    // opportunities, deals won, revenue won, customers new and, opened by
    // any deal event, pipeline created).
    assert_eq!(got, [105, 271, 520, 686]);
}
