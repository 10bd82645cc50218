//! The demo company's numbers are believable (issue 20): runs the real
//! `funnelstream demo`, waits until its history is consumed, scrapes
//! `/metrics` and checks every headline KPI of every published window
//! against the ranges of the KPI articles (`../shared/background/`, quoted
//! in issue 20), not against the generator's own parameters.
//!
//! | KPI | range | source |
//! |---|---|---|
//! | CTR, per channel | 0.5% - 3% | issue 20 (article 1: "in some industries, 1% may indicate a profitable campaign") |
//! | click-to-lead | 1% - 10% ("a few percent") | issue 20 |
//! | MQL-to-SQL | 20% - 50% | article 4: "SQL conversion rate 20-30%+"; article 5: "under 25%, your definitions are broken" (50%: sanity cap) |
//! | win rate | 20% - 40% | issue 20: 20-35%; article 4: "win rate 25-35%+" (the + leaves room above 35%: a week of 80 closes at 28% can read 36%), example dashboard 28% |
//! | sales cycle (mean, p50) | 30 - 120 days | issue 20; article 4: "30-90 days (industry dependent)" |
//! | customer churn | 1% - 3% of customers a month | issue 20; article 4: "under 5% monthly churn" |
//! | gross MRR churn | at most 5% a month | article 4: "under 5% monthly churn" |
//! | NRR | 95% - 120% | issue 20; article 5: "110%+ for mid-market"; article 4: "120%+ NRR" as the expansion target |
//! | MER (revenue / spend) | 2 - 10 | article 2: "5:1 is quite strong; anything below 2:1 is not profitable"; article 4: "MER 3x+" |
//! | ROAS, per paid channel | 1 - 10 | article 2's ratio on ad spend alone: one channel may run below break-even, none believably above 10 |
//! | LTV / CAC | at least 3 | article 4: "LTV/CAC ratio (should be 3x+)" |
//! | CAC payback | at most 12 months, per channel | article 4: "Payback within 12 months" |
//! | CPL | 30 - 500 | article 4: example dashboard "Cost per Lead €150", target €120 (band: sanity around it) |
//! | NPS | 20 - 80 | article 4: "20+ NPS score" (80: sanity cap) |
//! | opportunities per SQL | at most 1 | an opportunity is a qualified lead that sales opened (issue 20: "more opportunities than SQLs") |
//!
//! KPIs the articles give no figure for (CPC, CPM, lead-to-MQL, deal size,
//! bounce, e-mail rates, marketing-originated share) are checked against
//! wide sanity bands, marked `sanity` in the table this test prints.
//!
//! Ratios are aggregated across keys as sum of numerator over sum of
//! denominator (the roll-up rule of METRICS.md): company-wide, and per
//! channel where the articles give per-channel ranges. A range is checked
//! where the count driving the ratio's noise is at least `MIN_COUNT` (a
//! 5-minute window of a B2B company has no won deal, as in production);
//! smaller samples are only checked for finiteness and sign. Every
//! headline KPI must be range-checked on the 30d and 90d windows, the ad
//! KPIs and the top of the funnel on 1d and 7d, NRR on every window, so a
//! missing KPI fails. E-mail opens and clicks trail their send by hours to
//! days, and MQL -> SQL -> opportunity steps take days (on weekdays), so
//! those rates are checked on windows of a week or more: a shorter
//! window's ratio of two stages compares different cohorts.
//!
//! Rates: the live traffic runs at the history's pace, so a window's
//! volume grows with its length (1d is about a seventh of 7d, and so on).

use crate::support::{http_get, Engine};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const DAY: f64 = 86_400.0;
/// Events behind a ratio needed before its range is checked.
const MIN_COUNT: f64 = 20.0;

/// One sample: family name, labels, value.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (head, value) = l.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => {
                let mut labels = BTreeMap::new();
                for kv in rest.trim_end_matches('}').split("\",") {
                    if let Some((k, v)) = kv.split_once("=\"") {
                        labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                    }
                }
                (n.to_string(), labels)
            }
            None => (head.to_string(), BTreeMap::new()),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn seconds(w: &str) -> f64 {
    let (n, unit) = w.split_at(w.len() - 1);
    let n: f64 = n.parse().unwrap();
    n * match unit {
        "m" => 60.0,
        "h" => 3600.0,
        "d" => DAY,
        "w" => 7.0 * DAY,
        _ => panic!("window {w}"),
    }
}

/// Sums of windowed counts by (window, channel), and current state by
/// channel.
struct Sums {
    windowed: BTreeMap<(String, String), BTreeMap<String, f64>>,
    current: BTreeMap<String, BTreeMap<String, f64>>,
    /// KPI series as published: (family, window) -> values.
    published: BTreeMap<(String, String), Vec<f64>>,
}

impl Sums {
    fn new(samples: &[Sample]) -> Sums {
        let mut s = Sums {
            windowed: BTreeMap::new(),
            current: BTreeMap::new(),
            published: BTreeMap::new(),
        };
        for x in samples {
            let Some(channel) = x.labels.get("channel") else {
                continue;
            };
            let name = x.name.trim_start_matches("funnel_").to_string();
            match x.labels.get("window") {
                Some(w) => {
                    *s.windowed
                        .entry((w.clone(), channel.clone()))
                        .or_default()
                        .entry(name.clone())
                        .or_default() += x.value;
                    s.published
                        .entry((name, w.clone()))
                        .or_default()
                        .push(x.value);
                }
                None => {
                    *s.current
                        .entry(channel.clone())
                        .or_default()
                        .entry(name)
                        .or_default() += x.value;
                }
            }
        }
        s
    }

    /// Sum of `count` over the channels matching `pick` in window `w`.
    fn get(&self, w: &str, pick: &dyn Fn(&str) -> bool, count: &str) -> f64 {
        self.windowed
            .iter()
            .filter(|((win, ch), _)| win == w && pick(ch))
            .map(|(_, m)| m.get(count).copied().unwrap_or(0.0))
            .sum()
    }

    fn now(&self, pick: &dyn Fn(&str) -> bool, what: &str) -> f64 {
        self.current
            .iter()
            .filter(|(ch, _)| pick(ch))
            .map(|(_, m)| m.get(what).copied().unwrap_or(0.0))
            .sum()
    }

    fn channels(&self, w: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .windowed
            .keys()
            .filter(|(win, _)| win == w)
            .map(|(_, c)| c.clone())
            .collect();
        v.dedup();
        v
    }
}

#[derive(Default)]
struct Report {
    rows: Vec<String>,
    failures: Vec<String>,
    /// (KPI, window) pairs whose range was checked.
    checked: std::collections::BTreeSet<(String, String)>,
}

impl Report {
    /// Checks `num / den` (scaled by `scale`) against `[lo, hi]` when
    /// `sample` events drive it, else only that it is finite and >= 0
    /// (>= -100 for NPS).
    #[allow(clippy::too_many_arguments)]
    fn ratio(
        &mut self,
        kpi: &str,
        w: &str,
        scope: &str,
        num: f64,
        den: f64,
        scale: f64,
        sample: f64,
        (lo, hi): (f64, f64),
        source: &str,
    ) {
        if den <= 0.0 {
            self.rows.push(format!(
                "{kpi:<28} {w:>4} {scope:<14} absent (denominator 0)"
            ));
            return;
        }
        let v = num / den * scale;
        // Every ratio is non-negative but NPS, which is -100 when the few
        // responses of an hour are all detractors.
        let floor = if kpi == "nps" { -100.0 } else { 0.0 };
        if !v.is_finite() || v < floor {
            self.failures.push(format!(
                "{kpi} {w} {scope}: {v} is not a finite value of at least {floor}"
            ));
            return;
        }
        if sample < MIN_COUNT {
            self.rows.push(format!(
                "{kpi:<28} {w:>4} {scope:<14} {v:>12.4}  (sample {sample:.0} < {MIN_COUNT}: not range-checked)"
            ));
            return;
        }
        let ok = (lo..=hi).contains(&v);
        self.rows.push(format!(
            "{kpi:<28} {w:>4} {scope:<14} {v:>12.4}  in [{lo}, {hi}]? {}  ({source})",
            if ok { "yes" } else { "NO" }
        ));
        self.checked.insert((kpi.to_string(), w.to_string()));
        if !ok {
            self.failures.push(format!(
                "{kpi} {w} {scope}: {v:.4} outside [{lo}, {hi}] ({source})"
            ));
        }
    }
}

/// The demo, once the engine has processed its history; its port and
/// the history's number of events.
fn start_demo() -> (Engine, u16, f64) {
    let d = Engine::demo(&["--duration", "240"]);
    let history = d.wait_history(Duration::from_secs(120));
    let port = d.port;
    (d, port, history)
}

#[test]
fn the_demo_company_sits_in_the_articles_ranges() {
    let started = Instant::now();
    let (_demo, port, history) = start_demo();
    let ready = started.elapsed();
    // A little live traffic on top of the history.
    std::thread::sleep(Duration::from_secs(3));
    let (status, text) = http_get(port, "/metrics", &[]);
    assert_eq!(status, 200);
    let samples = parse(&text);
    let s = Sums::new(&samples);
    let mut calendar: Vec<String> = s
        .windowed
        .keys()
        .map(|(w, _)| w.clone())
        .filter(|w| !w.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    calendar.sort();
    calendar.dedup();
    assert_eq!(calendar, ["mtd", "qtd"], "calendar windows");
    let mut windows: Vec<String> = s
        .windowed
        .keys()
        .map(|(w, _)| w.clone())
        .filter(|w| !calendar.contains(w))
        .collect();
    windows.sort_by(|a, b| seconds(a).total_cmp(&seconds(b)));
    windows.dedup();
    assert_eq!(windows, ["5m", "1h", "1d", "7d", "30d", "90d"], "windows");

    let all = |_: &str| true;
    let mut r = Report::default();
    for w in &windows {
        let days = seconds(w) / DAY;
        let g = |count: &str| s.get(w, &all, count);
        // Ad traffic, per channel that buys impressions, and company-wide.
        let ad_channels: Vec<String> = s
            .channels(w)
            .into_iter()
            .filter(|c| s.get(w, &|x| x == c, "impressions") > 0.0)
            .collect();
        let is_ad = |c: &str| ad_channels.iter().any(|a| a == c);
        for (scope, pick) in std::iter::once(("all ad".to_string(), None))
            .chain(ad_channels.iter().map(|c| (c.clone(), Some(c.clone()))))
        {
            let p = |c: &str| match &pick {
                Some(x) => c == x,
                None => is_ad(c),
            };
            let (imp, clicks, ad_spend) = (
                s.get(w, &p, "impressions"),
                s.get(w, &p, "clicks"),
                s.get(w, &p, "ad_spend"),
            );
            r.ratio(
                "ctr",
                w,
                &scope,
                clicks,
                imp,
                1.0,
                clicks,
                (0.005, 0.03),
                "issue 20",
            );
            r.ratio(
                "cpc",
                w,
                &scope,
                ad_spend,
                clicks,
                1.0,
                clicks,
                (0.5, 25.0),
                "sanity",
            );
            r.ratio(
                "cpm",
                w,
                &scope,
                ad_spend,
                imp,
                1000.0,
                clicks,
                (1.0, 200.0),
                "sanity",
            );
            let leads = s.get(w, &p, "leads");
            r.ratio(
                "click_to_lead",
                w,
                &scope,
                leads,
                clicks,
                1.0,
                leads,
                (0.01, 0.10),
                "issue 20: a few percent",
            );
            let (won, rev, spend, mrr_new) = (
                s.get(w, &p, "deals_won"),
                s.get(w, &p, "revenue_won"),
                s.get(w, &p, "spend"),
                s.get(w, &p, "mrr_new"),
            );
            r.ratio(
                "roas",
                w,
                &scope,
                rev,
                ad_spend,
                1.0,
                won,
                (1.0, 10.0),
                "article 2",
            );
            let new_customers = s.get(w, &p, "customers_new");
            r.ratio(
                "cac_payback_months",
                w,
                &scope,
                spend,
                mrr_new,
                1.0,
                new_customers,
                (0.0, 12.0),
                "article 4",
            );
        }
        // The funnel, company-wide.
        let (leads, mqls, sqls, opps) = (g("leads"), g("mqls"), g("sqls"), g("opportunities"));
        let (won, lost, rev, spend, ad_spend) = (
            g("deals_won"),
            g("deals_lost"),
            g("revenue_won"),
            g("spend"),
            g("ad_spend"),
        );
        let sc = "company";
        r.ratio(
            "cpl",
            w,
            sc,
            spend,
            leads,
            1.0,
            leads,
            (30.0, 500.0),
            "article 4",
        );
        r.ratio(
            "cost_per_mql",
            w,
            sc,
            spend,
            mqls,
            1.0,
            mqls,
            (60.0, 3000.0),
            "sanity",
        );
        r.ratio(
            "lead_to_mql",
            w,
            sc,
            mqls,
            leads,
            1.0,
            mqls,
            (0.1, 0.6),
            "sanity",
        );
        // A lead takes days from MQL to SQL to opportunity, and sales
        // qualify on weekdays (a Monday brings the weekend's): these
        // step rates hold over a week or more.
        if days >= 7.0 {
            r.ratio(
                "mql_to_sql",
                w,
                sc,
                sqls,
                mqls,
                1.0,
                sqls,
                (0.20, 0.50),
                "articles 4, 5",
            );
            r.ratio(
                "sql_to_opportunity",
                w,
                sc,
                opps,
                sqls,
                1.0,
                opps,
                (0.3, 1.0),
                "issue 20",
            );
        }
        r.ratio(
            "win",
            w,
            sc,
            won,
            won + lost,
            1.0,
            won,
            (0.20, 0.40),
            "issue 20, article 4",
        );
        r.ratio(
            "avg_deal_size",
            w,
            sc,
            rev,
            won,
            1.0,
            won,
            (3_000.0, 150_000.0),
            "sanity",
        );
        r.ratio(
            "mer",
            w,
            sc,
            rev,
            spend,
            1.0,
            won,
            (2.0, 10.0),
            "articles 2, 4",
        );
        r.ratio(
            "roas",
            w,
            sc,
            rev,
            ad_spend,
            1.0,
            won,
            (1.0, 15.0),
            "article 2",
        );
        // Sales cycle: the engine's own mean (no sums to roll it up by),
        // weighted by each key's won deals.
        let weighted = |kpi: &str| -> Option<f64> {
            let mut num = 0.0;
            let mut den = 0.0;
            for x in samples
                .iter()
                .filter(|x| x.name == format!("funnel_{kpi}") && x.labels.get("window") == Some(w))
            {
                let key_won = samples
                    .iter()
                    .find(|y| {
                        y.name == "funnel_deals_won"
                            && y.labels.get("window") == Some(w)
                            && y.labels.get("channel") == x.labels.get("channel")
                            && y.labels.get("campaign") == x.labels.get("campaign")
                    })
                    .map_or(0.0, |y| y.value);
                num += x.value * key_won;
                den += key_won;
            }
            (den > 0.0).then_some(num / den)
        };
        for kpi in ["sales_cycle_mean_seconds", "sales_cycle_p50_seconds"] {
            if let Some(v) = weighted(kpi) {
                r.ratio(
                    kpi,
                    w,
                    sc,
                    v,
                    DAY,
                    1.0,
                    won,
                    (30.0, 120.0),
                    "issue 20, article 4 (days)",
                );
            }
        }
        if let (Some(p50), Some(p90)) = (
            weighted("sales_cycle_p50_seconds"),
            weighted("sales_cycle_p90_seconds"),
        ) {
            r.ratio(
                "sales_cycle_p90_over_p50",
                w,
                sc,
                p90,
                p50,
                1.0,
                won,
                (1.0, 4.0),
                "sanity",
            );
        }
        // Pipeline velocity (article 5's formula, value per day): over a
        // window about as long as a sales cycle it is comparable with the
        // revenue won per day.
        if days >= 30.0 {
            let velocity: f64 = s
                .published
                .get(&("pipeline_velocity".to_string(), w.clone()))
                .map_or(0.0, |v| v.iter().sum());
            r.ratio(
                "velocity_per_revenue_day",
                w,
                sc,
                velocity,
                rev / days,
                1.0,
                won,
                (0.2, 5.0),
                "sanity: comparable to revenue/day",
            );
        }
        // Retention: starting stocks from the current state minus the
        // window's movement (METRICS.md), summed over keys.
        let mrr_now = s.now(&all, "mrr");
        let customers_now = s.now(&all, "customers");
        let (new, exp, react, contr, churned) = (
            g("mrr_new"),
            g("mrr_expansion"),
            g("mrr_reactivation"),
            g("mrr_contraction"),
            g("mrr_churned"),
        );
        let mrr_start = mrr_now - (new + exp + react - contr - churned);
        let customers_start = customers_now
            - (g("customers_new") + g("customers_reactivated") - g("customers_churned"));
        let movements = g("customers_churned") + g("customers_new");
        r.ratio(
            "nrr",
            w,
            sc,
            mrr_start + exp + react - contr - churned,
            mrr_start,
            1.0,
            // NRR is a ratio of stocks: the installed base drives it.
            customers_start.max(movements),
            (0.95, 1.20),
            "issue 20, articles 4, 5",
        );
        let month = 30.0 / days;
        r.ratio(
            "customer_churn_monthly",
            w,
            sc,
            g("customers_churned"),
            customers_start,
            month,
            g("customers_churned"),
            (0.01, 0.03),
            "issue 20, article 4",
        );
        r.ratio(
            "gross_mrr_churn_monthly",
            w,
            sc,
            contr + churned,
            mrr_start,
            month,
            g("customers_churned"),
            (0.0, 0.05),
            "article 4",
        );
        // LTV / CAC (article 4): arpa / monthly churn over spend / won.
        if customers_now > 0.0 && customers_start > 0.0 && won > 0.0 && g("customers_churned") > 0.0
        {
            let churn = g("customers_churned") / customers_start * month;
            let ltv = mrr_now / customers_now / churn;
            r.ratio(
                "ltv_to_cac",
                w,
                sc,
                ltv,
                spend / won,
                1.0,
                g("customers_churned").min(won),
                (3.0, 50.0),
                "article 4: 3x+",
            );
        }
        // v2 families.
        let sessions = g("sessions");
        r.ratio(
            "bounce",
            w,
            sc,
            g("bounces"),
            sessions,
            1.0,
            sessions,
            (0.2, 0.8),
            "sanity",
        );
        r.ratio(
            "session_to_lead",
            w,
            sc,
            leads,
            sessions,
            1.0,
            leads,
            (0.002, 0.1),
            "sanity",
        );
        // Opens and clicks trail a send by hours to days: their share of
        // the window's deliveries means something over a week or more.
        if days >= 7.0 {
            let (sent, delivered, opened) =
                (g("emails_sent"), g("emails_delivered"), g("emails_opened"));
            r.ratio(
                "email_delivery",
                w,
                sc,
                delivered,
                sent,
                1.0,
                sent,
                (0.9, 1.0),
                "sanity",
            );
            r.ratio(
                "email_open",
                w,
                sc,
                opened,
                delivered,
                1.0,
                opened,
                (0.05, 0.6),
                "sanity",
            );
            r.ratio(
                "email_click",
                w,
                sc,
                g("emails_clicked"),
                delivered,
                1.0,
                g("emails_clicked"),
                (0.002, 0.1),
                "sanity",
            );
        }
        let responses = g("nps_responses");
        r.ratio(
            "nps",
            w,
            sc,
            g("nps_promoters") - g("nps_detractors"),
            responses,
            100.0,
            responses,
            (20.0, 80.0),
            "article 4: 20+",
        );
        r.ratio(
            "csat",
            w,
            sc,
            g("csat_satisfied"),
            g("csat_responses"),
            1.0,
            g("csat_responses"),
            (0.5, 1.0),
            "sanity",
        );
        let by_origin: f64 = samples
            .iter()
            .filter(|x| {
                x.name == "funnel_deals_won_by_origin"
                    && x.labels.get("window") == Some(w)
                    && x.labels.get("origin").map(String::as_str) == Some("marketing")
            })
            .map(|x| x.value)
            .sum();
        r.ratio(
            "marketing_originated",
            w,
            sc,
            by_origin,
            won,
            1.0,
            // The other origins are the rarer side of the share.
            by_origin.min(won - by_origin),
            (0.2, 0.95),
            "sanity",
        );
        r.ratio(
            "marketing_influenced",
            w,
            sc,
            g("deals_won_influenced"),
            won,
            1.0,
            won,
            (0.2, 1.0),
            "sanity",
        );
    }

    // The live traffic runs at the history's pace: a window's volume grows
    // with its length (weekday/weekend and hour-of-day rhythm allowed).
    for count in ["impressions", "ad_spend", "spend", "leads", "sessions"] {
        let v = |w: &str| s.get(w, &all, count);
        for (short, long, lo, hi) in [
            ("5m", "1h", 0.0, 4.0),
            ("1h", "1d", 0.0, 4.0),
            ("1d", "7d", 0.25, 2.5),
            ("7d", "30d", 0.6, 1.5),
            ("30d", "90d", 0.6, 1.5),
        ] {
            // The short window's share of the long one, over its length's.
            let rel = seconds(long) / seconds(short);
            r.ratio(
                &format!("{count}_pace"),
                &format!("{short}/{long}"),
                "company",
                v(short),
                v(long),
                rel,
                v(short).min(v(long)),
                (lo, hi),
                "live at the history's rate",
            );
        }
    }

    // Growth against the previous window (METRICS.md v2): the company is
    // steady, so a window holds about what its previous window held (the
    // history reaches back 179 days: both 90d windows, and the quarter
    // before this one up to the same point). The calendar windows nest.
    for count in ["leads", "mqls", "opportunities", "sessions"] {
        for w in ["30d", "90d", "qtd"] {
            let (x, prev) = (
                s.get(w, &all, count),
                s.get(w, &all, &format!("{count}_previous")),
            );
            r.ratio(
                &format!("{count}_vs_previous"),
                w,
                "company",
                x,
                prev,
                1.0,
                x.min(prev),
                (0.6, 1.6),
                "steady company",
            );
        }
        let (mtd, qtd) = (s.get("mtd", &all, count), s.get("qtd", &all, count));
        if mtd > qtd {
            r.failures
                .push(format!("{count}: mtd {mtd} is more than qtd {qtd}"));
        }
    }

    println!(
        "demo ready after {:.1} s ({history} history events)\n{}",
        ready.as_secs_f64(),
        r.rows.join("\n")
    );
    let mut must = vec![];
    for kpi in [
        "ctr",
        "cpc",
        "cpm",
        "click_to_lead",
        "cpl",
        "cost_per_mql",
        "lead_to_mql",
        "mql_to_sql",
        "sql_to_opportunity",
        "win",
        "avg_deal_size",
        "mer",
        "roas",
        "cac_payback_months",
        "sales_cycle_mean_seconds",
        "sales_cycle_p50_seconds",
        "velocity_per_revenue_day",
        "nrr",
        "customer_churn_monthly",
        "gross_mrr_churn_monthly",
        "ltv_to_cac",
        "bounce",
        "session_to_lead",
        "email_delivery",
        "email_open",
        "nps",
        "csat",
    ] {
        must.push((kpi, "30d"));
        must.push((kpi, "90d"));
    }
    must.push(("marketing_originated", "90d"));
    // Every window of a day or more; an hour of a weekend night may have
    // too few clicks (and then is checked only for sign and finiteness).
    for w in ["1d", "7d"] {
        for kpi in ["ctr", "cpc", "cpm"] {
            must.push((kpi, w));
        }
    }
    for w in ["5m", "1h", "1d", "7d"] {
        must.push(("nrr", w));
    }
    for w in ["1d", "7d"] {
        for kpi in ["click_to_lead", "cpl", "lead_to_mql", "bounce"] {
            // A day that was mostly weekend (src/company.rs: leads at about
            // 0.43 of the average day's pace) brings about 20 MQLs, the
            // sample's threshold: checked when there are enough, not required.
            if w == "1d" && kpi == "lead_to_mql" && weekend_hours_in_last_day() > 12 {
                continue;
            }
            must.push((kpi, w));
        }
    }
    for (kpi, w) in must {
        if !r.checked.contains(&(kpi.to_string(), w.to_string())) {
            r.failures.push(format!(
                "{kpi} {w}: never range-checked (absent or too few events)"
            ));
        }
    }
    assert!(
        r.failures.is_empty(),
        "{} KPI(s) outside the articles' ranges:\n{}",
        r.failures.len(),
        r.failures.join("\n")
    );
}

/// Hours of the last 24 (UTC, now) that fell on a Saturday or a Sunday.
fn weekend_hours_in_last_day() -> usize {
    let now_h = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
        / 3600;
    // 1970-01-01 was a Thursday: days 2 and 3 of each week are the weekend.
    (0..24)
        .filter(|h| matches!((now_h - h).div_euclid(24).rem_euclid(7), 2 | 3))
        .count()
}
