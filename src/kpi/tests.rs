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
            if i < first_kpi {
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
    // 19 windowed counts + 22 windowed KPIs + 3 current + 8 all-time.
    let windowed = FAMILIES
        .iter()
        .filter(|f| matches!(f.eval, Eval::Window(_)))
        .count();
    assert_eq!(windowed, 41);
    assert_eq!(FAMILIES.len(), 52);
}
