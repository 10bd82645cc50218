//! Every formula of METRICS.md on small hand-worked examples, in the style
//! of the KPI articles in shared/background.

use super::*;
use crate::aggregate::{field, Totals, WindowSums};

const M: i64 = 1_000_000; // micro-units per currency unit
const DAY_MS: i64 = 86_400_000;

fn v(name: &str, t: &Totals, w: &WindowSums) -> Option<f64> {
    window_value(name, t, w).map(Value::as_f64)
}

fn close(a: Option<f64>, b: f64) {
    let a = a.expect("value present");
    assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} != {b}");
}

/// A paid-search month: 200,000 impressions, 3,000 clicks, $9,000 of ad
/// spend plus $6,000 of tools and salaries; 150 leads, 60 MQLs, 24 SQLs,
/// 20 opportunities; 2 deals won ($20,000) and 6 lost; won deals took 40
/// and 60 days.
fn month() -> WindowSums {
    let mut w = WindowSums::default();
    w.traffic[field::IMPRESSIONS] = 200_000;
    w.traffic[field::CLICKS] = 3_000;
    w.traffic[field::AD_SPEND] = 9_000 * M;
    w.traffic[field::OTHER_SPEND] = 6_000 * M;
    w.leads = [150, 60, 24];
    w.deals[field::OPEN] = 20;
    w.deals[field::WON] = 2;
    w.deals[field::LOST] = 6;
    w.deals[field::REVENUE_WON] = 20_000 * M;
    w.deals[field::CYCLE_SUM_MS] = 100 * DAY_MS;
    w.cycles = vec![
        (crate::aggregate::ring::sketch::index(40 * DAY_MS), 1),
        (crate::aggregate::ring::sketch::index(60 * DAY_MS), 1),
    ];
    w
}

#[test]
fn advertising_kpis() {
    let (t, w) = (Totals::default(), month());
    close(v("funnel_ctr_ratio", &t, &w), 0.015); // 3,000 / 200,000
    close(v("funnel_cpc", &t, &w), 3.0); // $9,000 / 3,000 clicks
    close(v("funnel_cpm", &t, &w), 45.0); // $9,000 / 200,000 * 1000
    close(v("funnel_roas_ratio", &t, &w), 20_000.0 / 9_000.0);
}

#[test]
fn funnel_conversion_kpis() {
    let (t, w) = (Totals::default(), month());
    close(v("funnel_cpl", &t, &w), 100.0); // $15,000 total spend / 150 leads
    close(v("funnel_cost_per_mql", &t, &w), 250.0); // $15,000 / 60
    close(v("funnel_click_to_lead_ratio", &t, &w), 0.05); // 150 / 3,000
    close(v("funnel_lead_to_mql_ratio", &t, &w), 0.4); // 60 / 150
    close(v("funnel_mql_to_sql_ratio", &t, &w), 0.4); // 24 / 60
    close(v("funnel_sql_to_opportunity_ratio", &t, &w), 20.0 / 24.0);
    close(v("funnel_lead_to_customer_ratio", &t, &w), 2.0 / 150.0);
}

#[test]
fn sales_kpis() {
    let (t, w) = (Totals::default(), month());
    close(v("funnel_win_ratio", &t, &w), 0.25); // 2 / (2 + 6)
    close(v("funnel_avg_deal_size", &t, &w), 10_000.0); // $20,000 / 2
    close(v("funnel_cac", &t, &w), 7_500.0); // $15,000 / 2 new customers
    close(v("funnel_roi_ratio", &t, &w), 1.0 / 3.0); // (20,000 - 15,000) / 15,000
    close(
        v("funnel_sales_cycle_mean_seconds", &t, &w),
        50.0 * 86_400.0,
    );
    // Pipeline velocity = 20 opportunities * $10,000 * 25% / 50 days.
    close(v("funnel_pipeline_velocity", &t, &w), 1_000.0);
    // Nearest rank of two values: p50 is the first, p90 the second.
    let p50 = v("funnel_sales_cycle_p50_seconds", &t, &w).unwrap();
    let p90 = v("funnel_sales_cycle_p90_seconds", &t, &w).unwrap();
    assert!((p50 / (40.0 * 86_400.0) - 1.0).abs() <= 0.01, "{p50}");
    assert!((p90 / (60.0 * 86_400.0) - 1.0).abs() <= 0.01, "{p90}");
}

#[test]
fn retention_kpis() {
    // MRR now $110,000 and 52 customers. In the window: +$10,000 new (5
    // customers), +$8,000 expansion, +$2,000 reactivation (1 customer),
    // -$3,000 contraction, -$5,000 churn (4 customers).
    let t = Totals {
        mrr: 110_000 * i128::from(M),
        customers: 52,
        ..Totals::default()
    };
    let mut w = WindowSums::default();
    w.subs[crate::decode::Change::New as usize] = 10_000 * M;
    w.subs[crate::decode::Change::Expansion as usize] = 8_000 * M;
    w.subs[crate::decode::Change::Reactivation as usize] = 2_000 * M;
    w.subs[crate::decode::Change::Contraction as usize] = 3_000 * M;
    w.subs[crate::decode::Change::Churn as usize] = 5_000 * M;
    w.subs[field::CUSTOMERS_NEW] = 5;
    w.subs[field::CUSTOMERS_REACTIVATED] = 1;
    w.subs[field::CUSTOMERS_CHURNED] = 4;
    // mrr_start = 110,000 - (10,000 + 8,000 + 2,000 - 3,000 - 5,000) = 98,000
    assert_eq!(mrr_start(&t, &w), 98_000 * i128::from(M));
    close(v("funnel_nrr_ratio", &t, &w), 100_000.0 / 98_000.0);
    close(
        v("funnel_gross_mrr_churn_ratio", &t, &w),
        8_000.0 / 98_000.0,
    );
    // customers_start = 52 - (5 + 1 - 4) = 50; churn = 4 / 50
    assert_eq!(customers_start(&t, &w), 50);
    close(v("funnel_customer_churn_ratio", &t, &w), 0.08);
}

#[test]
fn kpis_are_absent_while_the_denominator_is_zero() {
    let t = Totals::default();
    let w = WindowSums::default();
    let first_kpi = FAMILIES
        .iter()
        .position(|f| f.name == "funnel_ctr_ratio")
        .unwrap();
    for (i, fam) in FAMILIES.iter().enumerate() {
        if let Eval::Window(f) = fam.eval {
            let value = f(&t, &w);
            // Counts (v1 ones first; v2 ones are gated by their group).
            let ratio = fam.name.ends_with("_ratio");
            if i < first_kpi || (fam.gate != 0 && !ratio) || fam.name.ends_with("_previous") {
                assert!(value.is_some(), "{} should publish 0", fam.name);
            } else {
                assert_eq!(value, None, "{} should be absent", fam.name);
            }
        }
    }
    // A zero cycle gives a mean of 0 but no velocity (division by 0 days).
    let mut w = WindowSums::default();
    w.deals[field::OPEN] = 3;
    w.deals[field::WON] = 1;
    w.deals[field::REVENUE_WON] = 500 * M;
    w.cycles = vec![(0, 1)];
    close(v("funnel_sales_cycle_mean_seconds", &t, &w), 0.0);
    assert_eq!(v("funnel_pipeline_velocity", &t, &w), None);
    assert_eq!(v("funnel_sales_cycle_p50_seconds", &t, &w), Some(0.0));
}

#[test]
fn exactly_zero_mrr_start_hides_retention_kpis() {
    // Every subscription event of the key is inside the window: the start
    // MRR is exactly 0 in fixed point, even for amounts like 0.1 + 0.2.
    let t = Totals {
        mrr: 300_000,
        customers: 1,
        ..Totals::default()
    };
    let mut w = WindowSums::default();
    w.subs[crate::decode::Change::New as usize] = 100_000;
    w.subs[crate::decode::Change::Expansion as usize] = 200_000;
    w.subs[field::CUSTOMERS_NEW] = 1;
    assert_eq!(v("funnel_nrr_ratio", &t, &w), None);
    assert_eq!(v("funnel_gross_mrr_churn_ratio", &t, &w), None);
    assert_eq!(v("funnel_customer_churn_ratio", &t, &w), None);
}

#[test]
fn negative_starting_stock_hides_retention_kpis() {
    // The key's accounts were attributed elsewhere when they started: an
    // older churn (-100) before the window, then a churn (-500) and an
    // expansion (+200) in it, of accounts whose `new` went to another
    // campaign. It holds -400 MRR and -2 customers and started the window
    // at -100 MRR and -1 customer.
    let t = Totals {
        mrr: -400_000_000,
        customers: -2,
        ..Totals::default()
    };
    let mut w = WindowSums::default();
    w.subs[crate::decode::Change::Churn as usize] = 500_000_000;
    w.subs[crate::decode::Change::Expansion as usize] = 200_000_000;
    w.subs[field::CUSTOMERS_CHURNED] = 1;
    assert_eq!(mrr_start(&t, &w), -100_000_000);
    assert_eq!(customers_start(&t, &w), -1);
    assert_eq!(v("funnel_nrr_ratio", &t, &w), None);
    assert_eq!(v("funnel_gross_mrr_churn_ratio", &t, &w), None);
    assert_eq!(v("funnel_customer_churn_ratio", &t, &w), None);
    // The counts themselves are still published.
    assert_eq!(v("funnel_mrr_churned", &t, &w), Some(500.0));
    // One unit of positive stock is enough.
    let t = Totals {
        mrr: 1,
        customers: 1,
        ..Totals::default()
    };
    let w = WindowSums::default();
    assert_eq!(v("funnel_nrr_ratio", &t, &w), Some(1.0));
    assert_eq!(v("funnel_customer_churn_ratio", &t, &w), Some(0.0));
}

#[test]
fn catalogue_matches_the_contract_names() {
    let names: Vec<_> = FAMILIES.iter().map(|f| f.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "duplicate family");
    for f in FAMILIES {
        assert!(f.name.starts_with("funnel_"));
        assert_eq!(
            f.name.ends_with("_total"),
            f.kind == MetricType::Counter,
            "{}",
            f.name
        );
        assert!(!f.help.is_empty());
    }
    // v1: 19 windowed counts + 22 windowed KPIs + 3 current + 8 all-time.
    // v2: 22 windowed counts of one series a window (pipeline created, 2
    // influenced, 4 web, 8 email, 6 survey, mrr_net_new) and 21 such KPIs;
    // 3 by origin, 4 by action (2 counts, 2 KPIs); 3 current; 6 all-time.
    let windowed = FAMILIES
        .iter()
        .filter(|f| matches!(f.eval, Eval::Window(_)))
        .count();
    // Growth (v2): 9 previous windows and 9 growth ratios of one series a
    // window, 2 by action.
    assert_eq!(windowed, 41 + 22 + 21 + 18);
    assert_eq!(FAMILIES.len(), 52 + 43 + 3 + 4 + 3 + 6 + 20);
}

// --- v2 (METRICS.md v2), hand-worked ------------------------------------------

const THIRTY_DAYS_MS: i64 = 30 * DAY_MS;

/// A subscription business at the end of a window: MRR $9,600 from 48
/// customers (ARPA $200); 2 customers churned in the window and none were
/// won, so 50 were there at its start (customer churn 2 / 50 = 4%).
fn subscriptions(window_ms: i64, gross_margin: f64) -> (Totals, WindowSums) {
    let t = Totals {
        mrr: 9_600 * M as i128,
        customers: 48,
        ..Totals::default()
    };
    let mut w = WindowSums::default();
    w.subs[field::CUSTOMERS_CHURNED] = 2;
    w.subs[Change::Churn as usize] = 400 * M;
    w.params = crate::aggregate::KpiParams {
        window_ms,
        gross_margin,
    };
    (t, w)
}

#[test]
fn ltv_with_a_30_day_month_and_gross_margin() {
    // 30d window: monthly churn = 4% * 30 / 30 = 4%; LTV = $200 * 0.8 / 0.04.
    let (t, w) = subscriptions(THIRTY_DAYS_MS, 0.8);
    close(v("funnel_ltv", &t, &w), 4_000.0);
    // 7d window, same 4%: monthly churn = 4% * 30 / 7 = 17.142857...%, so
    // LTV = $160 / (0.04 * 30 / 7) = $933.33...
    let (t, w) = subscriptions(7 * DAY_MS, 0.8);
    close(v("funnel_ltv", &t, &w), 160.0 * 7.0 / 1.2);
    // Gross margin 1: LTV is lifetime revenue, $200 / 4% = $5,000.
    let (t, w) = subscriptions(THIRTY_DAYS_MS, 1.0);
    close(v("funnel_ltv", &t, &w), 5_000.0);
    // ARPA itself, and ARR, from the current state.
    assert_eq!(family("funnel_arr").map(|f| f.gate), Some(0));
    // No churn in the window: absent (a lifetime would be infinite).
    let (t, mut w) = subscriptions(THIRTY_DAYS_MS, 0.8);
    w.subs[field::CUSTOMERS_CHURNED] = 0;
    assert_eq!(v("funnel_ltv", &t, &w), None);
    // No customers now: absent.
    let (mut t, w) = subscriptions(THIRTY_DAYS_MS, 0.8);
    t.customers = 0;
    assert_eq!(v("funnel_ltv", &t, &w), None);
    // Render parameters not set (a bare WindowSums): absent, never inf.
    let (t, mut w) = subscriptions(THIRTY_DAYS_MS, 0.8);
    w.params = Default::default();
    assert_eq!(v("funnel_ltv", &t, &w), None);
}

#[test]
fn ltv_to_cac_and_cac_payback() {
    // 30d, gm 0.8: LTV $4,000. Spend $15,000 for 3 won deals: CAC $5,000,
    // so LTV:CAC = 0.8. New MRR $1,250 * 0.8 = $1,000 a month of gross
    // profit pays the $15,000 back in 15 months.
    let (t, mut w) = subscriptions(THIRTY_DAYS_MS, 0.8);
    w.traffic[field::AD_SPEND] = 9_000 * M;
    w.traffic[field::OTHER_SPEND] = 6_000 * M;
    w.deals[field::WON] = 3;
    w.subs[Change::New as usize] = 1_250 * M;
    close(v("funnel_ltv_to_cac_ratio", &t, &w), 0.8);
    close(v("funnel_cac_payback_months", &t, &w), 15.0);
    // Gross margin 1: 15,000 / 1,250 = 12 months.
    w.params.gross_margin = 1.0;
    close(v("funnel_cac_payback_months", &t, &w), 12.0);
    // No new MRR: absent.
    w.subs[Change::New as usize] = 0;
    assert_eq!(v("funnel_cac_payback_months", &t, &w), None);
    // No won deal: no CAC, so no LTV:CAC.
    w.deals[field::WON] = 0;
    assert_eq!(v("funnel_ltv_to_cac_ratio", &t, &w), None);
}

#[test]
fn mrr_growth_quick_ratio_and_net_churn() {
    // MRR now $10,500; in the window new 1,000, expansion 500, contraction
    // 200, churn 300: net new $1,000, so MRR at the start was $9,500.
    let t = Totals {
        mrr: 10_500 * M as i128,
        ..Totals::default()
    };
    let mut w = WindowSums::default();
    w.subs[Change::New as usize] = 1_000 * M;
    w.subs[Change::Expansion as usize] = 500 * M;
    w.subs[Change::Contraction as usize] = 200 * M;
    w.subs[Change::Churn as usize] = 300 * M;
    close(v("funnel_mrr_net_new", &t, &w), 1_000.0);
    close(v("funnel_mrr_growth_ratio", &t, &w), 1_000.0 / 9_500.0);
    close(v("funnel_quick_ratio", &t, &w), 1_500.0 / 500.0);
    // Net MRR churn: (200 + 300 - 500) / 9,500 = 0.
    close(v("funnel_net_mrr_churn_ratio", &t, &w), 0.0);
}

#[test]
fn nps_from_promoters_and_detractors() {
    // 50 answers: 30 promoters (9-10), 12 passives, 8 detractors (0-6):
    // NPS = 100 * (30 - 8) / 50 = 44.
    let t = Totals::default();
    let mut w = WindowSums::default();
    w.v2.survey = [50, 30, 12, 8, 20, 17];
    close(v("funnel_nps_score", &t, &w), 44.0);
    close(v("funnel_csat_ratio", &t, &w), 0.85); // 17 / 20
                                                 // More detractors than promoters: negative, down to -100.
    w.v2.survey = [4, 0, 0, 4, 0, 0];
    close(v("funnel_nps_score", &t, &w), -100.0);
    assert_eq!(v("funnel_csat_ratio", &t, &w), None);
    w.v2.survey = [0; 6];
    assert_eq!(v("funnel_nps_score", &t, &w), None);
}

#[test]
fn web_and_email_ratios() {
    let t = Totals::default();
    let mut w = WindowSums::default();
    // 120 sessions, 48 bounced, 72 engaged; 6 leads.
    w.v2.web = [120, 310, 48, 72];
    w.leads[0] = 6;
    close(v("funnel_bounce_ratio", &t, &w), 0.4);
    close(v("funnel_engagement_ratio", &t, &w), 0.6);
    close(v("funnel_session_to_lead_ratio", &t, &w), 0.05);
    // 1,000 sent, 980 delivered, 20 bounced, 245 opened, 49 clicked,
    // 7 unsubscribed.
    w.v2.email = [1_000, 980, 20, 245, 49, 0, 7, 1];
    close(v("funnel_email_delivery_ratio", &t, &w), 0.98);
    close(v("funnel_email_bounce_ratio", &t, &w), 0.02);
    close(v("funnel_email_open_ratio", &t, &w), 0.25);
    close(v("funnel_email_click_ratio", &t, &w), 0.05);
    close(v("funnel_email_unsubscribe_ratio", &t, &w), 7.0 / 980.0);
    close(v("funnel_email_click_to_open_ratio", &t, &w), 0.2);
}

/// Replays deal events through a partition and returns
/// `funnel_marketing_originated_ratio` and `funnel_deals_won_by_origin` of
/// one key in the 1d window, from the exposition.
fn origin_figures(lines: &[&str], cfg: crate::config::EngineConfig) -> Vec<String> {
    use crate::engine::{Engine, Health};
    let e = Engine::new(crate::config::EngineConfig {
        clock: crate::config::ClockMode::Event,
        ..cfg
    });
    let mut p = e.partition();
    for l in lines {
        assert!(matches!(
            p.process_at(l.as_bytes(), 1_900_000_000_000),
            crate::engine::Outcome::Applied { .. }
        ));
    }
    let text =
        crate::export::prometheus::render(&[&p.agg], &Health::of(&[&p]), e.clock.current(), "t");
    text.lines()
        .filter(|l| {
            l.contains("window=\"1d\"")
                && (l.starts_with("funnel_marketing_originated_ratio")
                    || l.starts_with("funnel_deals_won_by_origin"))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn marketing_originated_ratio_with_default_mapping_and_explicit_origin() {
    let won = |id: &str, channel: &str, extra: &str| {
        format!(
            r#"{{"id":"{id}","type":"deal","ts":1795600000000,"channel":"{channel}","campaign":"c","deal_id":"{id}","stage":"won","amount":100,"created_ts":1795500000000{extra}}}"#
        )
    };
    // outbound/c: two won deals sourced by an SDR (default: outbound ->
    // sales), one of which the CRM says marketing sourced (explicit
    // origin), one with an invalid origin (read as the default), and one
    // more explicitly from a partner: marketing originated 1 of 4.
    let lines = [
        won("d1", "outbound", ""),
        won("d2", "outbound", r#","origin":"marketing""#),
        won("d3", "outbound", r#","origin":"MARKETING""#),
        won("d4", "outbound", r#","origin":"partner""#),
        // paid_search/c: default marketing, so 1 of 1.
        won("d5", "paid_search", ""),
    ];
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let got = origin_figures(&refs, crate::config::EngineConfig::default());
    let has = |s: &str| got.iter().any(|l| l == s);
    assert!(
        has(
            r#"funnel_marketing_originated_ratio{channel="outbound",campaign="c",window="1d"} 0.25"#
        ),
        "{got:#?}"
    );
    assert!(
        has(
            r#"funnel_deals_won_by_origin{channel="outbound",campaign="c",origin="sales",window="1d"} 2"#
        ),
        "{got:#?}"
    );
    assert!(
        has(
            r#"funnel_deals_won_by_origin{channel="outbound",campaign="c",origin="partner",window="1d"} 1"#
        ),
        "{got:#?}"
    );
    assert!(
        has(
            r#"funnel_marketing_originated_ratio{channel="paid_search",campaign="c",window="1d"} 1.0"#
        ),
        "{got:#?}"
    );
    // channel_origins overrides the default: outbound -> marketing makes
    // d1 and d3 marketing too (3 of 4); paid_search -> other makes 0 of 1.
    let cfg = crate::config::EngineConfig {
        channel_origins: vec![
            ("outbound".into(), crate::decode::Origin::Marketing),
            ("paid_search".into(), crate::decode::Origin::Other),
        ],
        ..crate::config::EngineConfig::default()
    };
    let got = origin_figures(&refs, cfg);
    let has = |s: &str| got.iter().any(|l| l == s);
    assert!(
        has(
            r#"funnel_marketing_originated_ratio{channel="outbound",campaign="c",window="1d"} 0.75"#
        ),
        "{got:#?}"
    );
    assert!(
        has(
            r#"funnel_marketing_originated_ratio{channel="paid_search",campaign="c",window="1d"} 0.0"#
        ),
        "{got:#?}"
    );
}
