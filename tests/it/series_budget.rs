//! The series budget (`--max-series`, issue 21) through `replay`: whole
//! keys fold into `__overflow__`, every total over all keys equals the
//! sums computed here from the events themselves (independently of the
//! engine), and a million distinct campaigns stay under the budget.

use crate::support::BIN;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

const OVERFLOW: &str = "__overflow__";
/// The event clock's "now": the newest event.
const NOW: i64 = 1_795_000_000_000;

/// `replay --clock event` of `lines` (written to stdin by a thread) with
/// extra flags; the exposition.
fn replay(lines: impl Iterator<Item = String> + Send + 'static, flags: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .args(["replay", "--clock", "event", "--from", "-"])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
    let writer = std::thread::spawn(move || {
        for l in lines {
            stdin.write_all(l.as_bytes()).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Samples of `name` (exact name, any labels) as (labels, value).
fn samples<'a>(text: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, labels) = series.split_once('{').unwrap_or((series, "}"));
            (n == name).then(|| (labels.trim_end_matches('}'), v.parse().unwrap()))
        })
        .collect()
}

fn one(text: &str, name: &str) -> f64 {
    let s = samples(text, name);
    assert_eq!(s.len(), 1, "{name}");
    s[0].1
}

fn sum(text: &str, name: &str, filter: &str) -> f64 {
    samples(text, name)
        .iter()
        .filter(|(l, _)| l.contains(filter))
        .map(|x| x.1)
        .sum()
}

/// (channel, campaign) of every business series.
fn keys(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter(|l| l.starts_with("funnel_clicks_total{"))
        .map(|l| {
            let get = |k: &str| {
                let at = l.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
                l[at..at + l[at..].find('"').unwrap()].to_string()
            };
            (get("channel"), get("campaign"))
        })
        .collect()
}

/// One event line. Money in cents, written with two decimals.
fn event(i: u64, ts: i64, ch: &str, ca: &str, body: &str) -> String {
    format!(r#"{{"id":"e{i}","ts":{ts},"channel":"{ch}","campaign":"{ca}",{body}}}"#)
}

fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Independent sums over all events of the families checked.
#[derive(Default, Debug, PartialEq)]
struct Want {
    clicks: u64,
    impressions: u64,
    ad_spend_cents: u64,
    spend_cents: u64,
    leads: u64,
    deals_won: u64,
    revenue_cents: u64,
    /// Events per key, in first-seen order.
    events: Vec<((String, String), u64)>,
}

/// 80 keys over 4 channels; clicks, impressions, other spend, leads and
/// won deals, within the last day so every window holds all of them.
fn mixed() -> (Vec<String>, Want) {
    let mut w = Want::default();
    let mut lines = Vec::new();
    let mut per_key: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut order = Vec::new();
    for i in 0..4000u64 {
        let key = (format!("ch{}", i % 4), format!("cmp-{}", (i * 7) % 80));
        let ts = NOW - 86_000_000 + (i as i64) * 20_000;
        let (ch, ca) = (&key.0, &key.1);
        let body = match i % 5 {
            0 => {
                let (n, c) = (1 + i % 9, i % 1000);
                w.clicks += n;
                w.ad_spend_cents += c;
                w.spend_cents += c;
                format!(r#""type":"click","count":{n},"cost":{}"#, money(c))
            }
            1 => {
                let (n, c) = (100 + i % 50, 7 * (i % 300));
                w.impressions += n;
                w.ad_spend_cents += c;
                w.spend_cents += c;
                format!(r#""type":"impression","count":{n},"cost":{}"#, money(c))
            }
            2 => {
                let c = 1000 + i;
                w.spend_cents += c;
                format!(r#""type":"spend","amount":{},"category":"tools""#, money(c))
            }
            3 => {
                w.leads += 1;
                format!(r#""type":"lead","lead_id":"L{i}","stage":"new""#)
            }
            _ => {
                let c = 50_000 + 13 * i;
                w.deals_won += 1;
                w.revenue_cents += c;
                format!(
                    r#""type":"deal","deal_id":"D{i}","stage":"won","amount":{},"created_ts":{}"#,
                    money(c),
                    ts - 86_400_000
                )
            }
        };
        if !per_key.contains_key(&key) {
            order.push(key.clone());
        }
        *per_key.entry(key.clone()).or_default() += 1;
        lines.push(event(i, ts, ch, ca, &body));
    }
    lines.push(event(
        99_999,
        NOW,
        "ch0",
        "cmp-0",
        r#""type":"lead","lead_id":"L-last","stage":"new""#,
    ));
    w.leads += 1;
    *per_key.get_mut(&order[0]).unwrap() += 1;
    assert_eq!(order[0], ("ch0".to_string(), "cmp-0".to_string()));
    w.events = order.iter().map(|k| (k.clone(), per_key[k])).collect();
    (lines, w)
}

fn check_totals(text: &str, w: &Want) {
    assert_eq!(sum(text, "funnel_clicks_total", ""), w.clicks as f64);
    assert_eq!(
        sum(text, "funnel_impressions_total", ""),
        w.impressions as f64
    );
    assert_eq!(
        sum(text, "funnel_leads_total", "stage=\"new\""),
        w.leads as f64
    );
    assert_eq!(
        sum(text, "funnel_deals_total", "stage=\"won\""),
        w.deals_won as f64
    );
    // Money: compared in cents, rounded (the exposition prints exact
    // decimals; the f64 sum of a few thousand of them is within 1e-6).
    let cents = |x: f64| (x * 100.0).round() as u64;
    assert_eq!(
        cents(sum(text, "funnel_ad_spend_total", "")),
        w.ad_spend_cents
    );
    assert_eq!(cents(sum(text, "funnel_spend_total", "")), w.spend_cents);
    assert_eq!(
        cents(sum(text, "funnel_revenue_won_total", "")),
        w.revenue_cents
    );
    // The events span the last 24 hours: the windows of 7 days and more
    // hold them all (the 1d window's trailing bucket may not).
    for win in ["7d", "30d", "90d"] {
        let f = format!("window=\"{win}\"");
        assert_eq!(sum(text, "funnel_clicks", &f), w.clicks as f64, "{win}");
        assert_eq!(sum(text, "funnel_leads", &f), w.leads as f64, "{win}");
        assert_eq!(cents(sum(text, "funnel_spend", &f)), w.spend_cents, "{win}");
        assert_eq!(
            cents(sum(text, "funnel_revenue_won", &f)),
            w.revenue_cents,
            "{win}"
        );
    }
}

#[test]
fn whole_keys_fold_into_overflow_and_every_total_stays_exact() {
    let (lines, want) = mixed();
    let free = replay(lines.clone().into_iter(), &[]);
    check_totals(&free, &want);
    assert_eq!(keys(&free).len(), 80);
    // A budget that holds a few keys only.
    let budget = one(&free, "funnel_series") as usize / 80 * 30;
    let tight = replay(lines.into_iter(), &["--max-series", &budget.to_string()]);
    check_totals(&tight, &want);
    assert_eq!(one(&tight, "funnel_series_budget"), budget as f64);
    let series = one(&tight, "funnel_series");
    assert!(series <= budget as f64, "{series} > {budget}");
    // Whole keys: the first ones to arrive keep their labels, every later
    // one is folded into (__overflow__, __overflow__), and its events are
    // counted.
    let got = keys(&tight);
    let own: Vec<_> = got.iter().filter(|k| k.0 != OVERFLOW).cloned().collect();
    assert!(
        (5..80).contains(&own.len()),
        "{} keys kept of 80",
        own.len()
    );
    assert!(got.contains(&(OVERFLOW.into(), OVERFLOW.into())));
    let first: BTreeSet<_> = want.events[..own.len()]
        .iter()
        .map(|e| e.0.clone())
        .collect();
    assert_eq!(own.iter().cloned().collect::<BTreeSet<_>>(), first);
    let folded: u64 = want.events[own.len()..].iter().map(|e| e.1).sum();
    assert_eq!(
        sum(&tight, "funnel_label_overflow_total", "label=\"key\""),
        folded as f64
    );
    // Admitted keys publish exactly what they publish without a budget.
    for (ch, ca) in &own {
        let label = format!("channel=\"{ch}\",campaign=\"{ca}\"");
        let pick = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.contains(&label))
                .map(String::from)
                .collect()
        };
        assert_eq!(pick(&free), pick(&tight), "{label}");
    }
    // Deterministic: the same input folds the same way.
    let (lines, _) = mixed();
    let again = replay(lines.into_iter(), &["--max-series", &budget.to_string()]);
    assert_eq!(
        crate::support::series(&again),
        crate::support::series(&tight),
        "two replays differ"
    );
}

#[test]
fn a_million_distinct_campaigns_stay_under_the_budget_with_exact_totals() {
    const N: u64 = 1_000_000;
    let lines = (0..N).map(|i| {
        let ts = NOW - 3_600_000 + (i as i64 * 3_600_000 / N as i64);
        event(
            i,
            ts,
            ["search", "social", "display", "email"][(i % 4) as usize],
            &format!("unique-{i}"),
            &format!(
                r#""type":"click","count":{},"cost":{}"#,
                1 + i % 5,
                money(i % 1000)
            ),
        )
    });
    let text = replay(lines, &[]);
    let budget = one(&text, "funnel_series_budget");
    assert_eq!(budget, 200_000.0);
    let series = one(&text, "funnel_series");
    assert!(series <= budget, "{series} series > budget {budget}");
    // Independent sums.
    let clicks: u64 = (0..N).map(|i| 1 + i % 5).sum();
    let cents: u64 = (0..N).map(|i| i % 1000).sum();
    assert_eq!(sum(&text, "funnel_clicks_total", ""), clicks as f64);
    for win in ["1d", "7d", "30d", "90d"] {
        let f = format!("window=\"{win}\"");
        assert_eq!(sum(&text, "funnel_clicks", &f), clicks as f64, "{win}");
    }
    // Money summed exactly: the rendered decimals, added as integers.
    let exact_cents: i128 = text
        .lines()
        .filter(|l| l.starts_with("funnel_ad_spend_total{"))
        .map(|l| {
            let v = l.rsplit_once(' ').unwrap().1;
            let (int, frac) = v.split_once('.').unwrap_or((v, ""));
            let frac = format!("{frac:0<6}");
            int.parse::<i128>().unwrap() * 1_000_000 + frac.parse::<i128>().unwrap()
        })
        .sum();
    assert_eq!(exact_cents, i128::from(cents) * 10_000);
    let folded = sum(&text, "funnel_label_overflow_total", "label=\"key\"");
    assert!(folded > 0.0);
    let kept = keys(&text).len();
    eprintln!(
        "1M distinct campaigns: {series} series (budget {budget}), {kept} keys published, \
         {folded} events folded by the budget, {} by the campaign limit",
        sum(&text, "funnel_label_overflow_total", "label=\"campaign\"")
    );
}

/// Independent sums of the v2 families checked, by label value.
#[derive(Default, Debug)]
struct WantV2 {
    clicks: u64,
    sessions: u64,
    pageviews: u64,
    emails: BTreeMap<&'static str, u64>,
    surveys: BTreeMap<&'static str, u64>,
    conversions: BTreeMap<String, u64>,
}

const EMAIL_ACTIONS: [&str; 4] = ["sent", "delivered", "opened", "clicked"];

/// 240 keys, each with a click, then sessions, email, surveys and
/// conversions (one of 6 actions), key after key, so that the budget fills
/// with v2 groups before it runs out of keys; then a second pass over every
/// key with another action and more of each group (groups and actions new
/// to admitted keys when the budget is full).
fn v2_mix() -> (Vec<String>, WantV2) {
    let mut w = WantV2::default();
    let mut lines = Vec::new();
    let mut i = 0u64;
    for pass in 0..2u64 {
        for k in 0..240u64 {
            let (ch, ca) = (format!("ch{}", k % 3), format!("cmp-{k}"));
            let mut push = |body: String| {
                let ts = NOW - 80_000_000 + (i as i64) * 10_000;
                lines.push(event(i, ts, &ch, &ca, &body));
                i += 1;
            };
            let n = 1 + k % 4;
            w.clicks += n;
            push(format!(r#""type":"click","count":{n},"cost":0.25"#));
            if pass == 1 || k % 2 == 0 {
                let (s, pv) = (10 + k % 7, 30 + k % 11);
                w.sessions += s;
                w.pageviews += pv;
                push(format!(
                    r#""type":"session","count":{s},"pageviews":{pv},"bounces":3"#
                ));
            }
            if pass == 1 || k % 3 == 0 {
                let a = EMAIL_ACTIONS[(k % 4) as usize];
                let c = 100 + k;
                *w.emails.entry(a).or_default() += c;
                push(format!(r#""type":"email","action":"{a}","count":{c}"#));
            }
            if pass == 1 || k % 5 == 0 {
                let (kind, score) = if k % 2 == 0 {
                    ("nps", k % 11)
                } else {
                    ("csat", 1 + k % 5)
                };
                *w.surveys.entry(kind).or_default() += 1;
                push(format!(
                    r#""type":"survey","kind":"{kind}","score":{score}"#
                ));
            }
            let a = format!("act-{}", (k + pass * 3) % 6);
            let c = 1 + k % 3;
            *w.conversions.entry(a.clone()).or_default() += c;
            push(format!(
                r#""type":"conversion","action":"{a}","count":{c},"value":5"#
            ));
        }
    }
    (lines, w)
}

fn check_v2_totals(text: &str, w: &WantV2) {
    assert_eq!(sum(text, "funnel_clicks_total", ""), w.clicks as f64);
    assert_eq!(sum(text, "funnel_sessions_total", ""), w.sessions as f64);
    assert_eq!(sum(text, "funnel_pageviews_total", ""), w.pageviews as f64);
    for (a, n) in &w.emails {
        let f = format!("action=\"{a}\"");
        assert_eq!(sum(text, "funnel_email_events_total", &f), *n as f64, "{a}");
    }
    for (kind, n) in &w.surveys {
        let f = format!("kind=\"{kind}\"");
        assert_eq!(
            sum(text, "funnel_survey_responses_total", &f),
            *n as f64,
            "{kind}"
        );
    }
    for (a, n) in &w.conversions {
        let f = format!("action=\"{a}\"");
        assert_eq!(sum(text, "funnel_conversions_total", &f), *n as f64, "{a}");
        let f = format!("action=\"{a}\",window=\"7d\"");
        assert_eq!(sum(text, "funnel_conversions", &f), *n as f64, "{a} 7d");
    }
    let f = "window=\"7d\"";
    assert_eq!(sum(text, "funnel_sessions", f), w.sessions as f64);
    assert_eq!(sum(text, "funnel_clicks", f), w.clicks as f64);
}

/// The v2 groups and conversion actions are charged to the budget: with
/// sessions, email, surveys and conversions on every key, what is published
/// stays under the budget, every total is exact, and every series a key
/// publishes under its own labels is the one it publishes without a budget
/// (a group folded for a key is absent there, counted in the overflow key).
#[test]
fn v2_groups_and_actions_stay_under_the_budget_with_exact_totals() {
    let (lines, want) = v2_mix();
    let free = replay(lines.clone().into_iter(), &[]);
    check_v2_totals(&free, &want);
    let free_series = one(&free, "funnel_series");
    assert_eq!(keys(&free).len(), 240);
    // A budget of about a third of what the keys publish.
    let budget = (free_series / 3.0) as usize;
    let tight = replay(
        lines.clone().into_iter(),
        &["--max-series", &budget.to_string()],
    );
    check_v2_totals(&tight, &want);
    let series = one(&tight, "funnel_series");
    assert!(series <= budget as f64, "{series} series > budget {budget}");
    // The charges are the most a key or group can publish: keys publish
    // less (KPIs absent without their denominators).
    assert!(
        series > budget as f64 * 0.3,
        "{series} of {budget}: the budget is not used"
    );
    eprintln!(
        "v2 mix: {free_series} series without a budget, {series} with {budget}, {} keys kept, \
         {} events folded",
        keys(&tight).len() - 1,
        sum(&tight, "funnel_label_overflow_total", "label=\"key\"")
    );
    let own = keys(&tight).into_iter().filter(|k| k.0 != OVERFLOW).count();
    assert!((20..240).contains(&own), "{own} keys kept of 240");
    // The overflow key holds folded groups and keys.
    assert!(sum(&tight, "funnel_sessions_total", "campaign=\"__overflow__\"") > 0.0);
    assert!(sum(&tight, "funnel_label_overflow_total", "label=\"key\"") > 0.0);
    // Every series of an admitted key is the one published without a budget.
    let free_lines: BTreeSet<&str> = free.lines().collect();
    let mut checked = 0;
    for l in tight.lines() {
        if l.contains("campaign=\"") && !l.contains(OVERFLOW) && !l.starts_with('#') {
            assert!(free_lines.contains(l), "not as without a budget: {l}");
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked}");
    // Some admitted key had a group folded: published fewer series of its
    // own than without a budget.
    let per_key = |t: &str, ca: &str| {
        t.lines()
            .filter(|l| l.contains(&format!("campaign=\"{ca}\"")))
            .count()
    };
    let trimmed = keys(&tight)
        .iter()
        .filter(|k| k.0 != OVERFLOW && per_key(&tight, &k.1) < per_key(&free, &k.1))
        .count();
    assert!(trimmed > 0, "no admitted key had a group folded");
    // Deterministic.
    let again = replay(lines.into_iter(), &["--max-series", &budget.to_string()]);
    assert_eq!(
        crate::support::series(&again),
        crate::support::series(&tight),
        "two replays differ"
    );
}
