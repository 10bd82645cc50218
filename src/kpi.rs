//! Stage 4 of the flow: **kpi**. The catalogue of published business metric
//! families (METRICS.md) and their formulas, as pure functions of a key's
//! exact sums. Knows nothing of the exposition format: the export stage asks
//! it for values and writes them.
//!
//! A KPI is `None` (absent) while its denominator is exactly zero, so no NaN
//! or infinity is ever produced from valid sums.

use crate::aggregate::ring::sketch;
use crate::aggregate::{field as f, Totals, WindowSums};
use crate::decode::{Change, DealStage, LeadStage};

/// A metric value. Money stays exact (micro-units) until it is printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i128),
    /// Micro-units of the deployment's currency.
    Money(i128),
    Float(f64),
}

impl Value {
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Int(v) => v as f64,
            Value::Money(v) => v as f64 / 1e6,
            Value::Float(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
        }
    }
}

type WindowFn = fn(&Totals, &WindowSums) -> Option<Value>;

/// How a family's values are obtained for one key.
#[derive(Clone, Copy)]
pub enum Eval {
    /// One series per window (`window` label).
    Window(WindowFn),
    /// One series per key.
    Key(fn(&Totals) -> Value),
    /// One series per value of an extra label.
    Labelled {
        label: &'static str,
        values: &'static [&'static str],
        f: fn(&Totals, usize) -> Value,
    },
}

#[derive(Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    pub eval: Eval,
}

const fn gauge_w(name: &'static str, help: &'static str, f: WindowFn) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Gauge,
        eval: Eval::Window(f),
    }
}

// --- exact window quantities ------------------------------------------------

fn impressions(w: &WindowSums) -> i128 {
    i128::from(w.traffic[f::IMPRESSIONS])
}
fn clicks(w: &WindowSums) -> i128 {
    i128::from(w.traffic[f::CLICKS])
}
fn ad_spend(w: &WindowSums) -> i128 {
    i128::from(w.traffic[f::AD_SPEND])
}
fn spend(w: &WindowSums) -> i128 {
    ad_spend(w) + i128::from(w.traffic[f::OTHER_SPEND])
}
fn leads(w: &WindowSums, s: LeadStage) -> i128 {
    i128::from(w.leads[s as usize])
}
fn deals(w: &WindowSums, i: usize) -> i128 {
    i128::from(w.deals[i])
}
fn mrr(w: &WindowSums, c: Change) -> i128 {
    i128::from(w.subs[c as usize])
}
fn subs(w: &WindowSums, i: usize) -> i128 {
    i128::from(w.subs[i])
}

/// Net MRR movement within the window.
fn mrr_net(w: &WindowSums) -> i128 {
    mrr(w, Change::New) + mrr(w, Change::Expansion) + mrr(w, Change::Reactivation)
        - mrr(w, Change::Contraction)
        - mrr(w, Change::Churn)
}

/// MRR at the start of the window: current MRR minus the window's movement.
pub fn mrr_start(t: &Totals, w: &WindowSums) -> i128 {
    t.mrr - mrr_net(w)
}

/// Customers at the start of the window.
pub fn customers_start(t: &Totals, w: &WindowSums) -> i128 {
    t.customers
        - (subs(w, f::CUSTOMERS_NEW) + subs(w, f::CUSTOMERS_REACTIVATED)
            - subs(w, f::CUSTOMERS_CHURNED))
}

/// `num / den` with both sides in the same unit; `None` when `den == 0`.
fn ratio(num: i128, den: i128) -> Option<Value> {
    (den != 0).then(|| Value::Float(num as f64 / den as f64))
}

/// `num / stock` for a KPI over a starting stock (`mrr_start`,
/// `customers_start`): `None` unless the stock is positive. A key whose
/// accounts' events carry other campaigns can start a window with negative
/// MRR or customers, and a ratio over that means nothing (METRICS.md v2).
fn over_stock(num: i128, stock: i128) -> Option<Value> {
    (stock > 0).then(|| Value::Float(num as f64 / stock as f64))
}

/// Money (micro-units) per count.
fn per(money: i128, den: i128) -> Option<Value> {
    (den != 0).then(|| Value::Float(money as f64 / 1e6 / den as f64))
}

pub fn sales_cycle_mean_seconds(w: &WindowSums) -> Option<f64> {
    let won = deals(w, f::WON);
    (won != 0).then(|| deals(w, f::CYCLE_SUM_MS) as f64 / won as f64 / 1000.0)
}

fn cycle_quantile(w: &WindowSums, num: u64, den: u64) -> Option<Value> {
    sketch::quantile(&w.cycles, num, den).map(|ms| Value::Float(ms / 1000.0))
}

fn pipeline_velocity(w: &WindowSums) -> Option<Value> {
    let won = deals(w, f::WON);
    let closed = won + deals(w, f::LOST);
    let mean_s = sales_cycle_mean_seconds(w)?;
    if won == 0 || closed == 0 || mean_s <= 0.0 {
        return None;
    }
    let avg_deal = deals(w, f::REVENUE_WON) as f64 / 1e6 / won as f64;
    let win_ratio = won as f64 / closed as f64;
    Some(Value::Float(
        deals(w, f::OPEN) as f64 * avg_deal * win_ratio / (mean_s / 86_400.0),
    ))
}

/// Every published business family, in exposition order.
pub static FAMILIES: &[Family] = &[
    // Windowed counts (gauge: the sum over the window).
    gauge_w("funnel_impressions", "Impressions in the window.", |_, w| Some(Value::Int(impressions(w)))),
    gauge_w("funnel_clicks", "Clicks in the window.", |_, w| Some(Value::Int(clicks(w)))),
    gauge_w("funnel_leads", "New leads (stage=new) in the window.", |_, w| Some(Value::Int(leads(w, LeadStage::New)))),
    gauge_w("funnel_mqls", "Marketing qualified leads (stage=mql) in the window.", |_, w| Some(Value::Int(leads(w, LeadStage::Mql)))),
    gauge_w("funnel_sqls", "Sales qualified leads (stage=sql) in the window.", |_, w| Some(Value::Int(leads(w, LeadStage::Sql)))),
    gauge_w("funnel_opportunities", "Opportunities opened (deal stage=open) in the window.", |_, w| Some(Value::Int(deals(w, f::OPEN)))),
    gauge_w("funnel_deals_won", "Deals won in the window.", |_, w| Some(Value::Int(deals(w, f::WON)))),
    gauge_w("funnel_deals_lost", "Deals lost in the window.", |_, w| Some(Value::Int(deals(w, f::LOST)))),
    gauge_w("funnel_revenue_won", "Amount of deals won in the window.", |_, w| Some(Value::Money(deals(w, f::REVENUE_WON)))),
    gauge_w("funnel_ad_spend", "Ad spend in the window: impression and click cost plus spend with category=ads.", |_, w| Some(Value::Money(ad_spend(w)))),
    gauge_w("funnel_spend", "Total spend in the window: ad spend plus every other spend category.", |_, w| Some(Value::Money(spend(w)))),
    gauge_w("funnel_mrr_new", "MRR added by new subscriptions in the window.", |_, w| Some(Value::Money(mrr(w, Change::New)))),
    gauge_w("funnel_mrr_expansion", "MRR added by expansions in the window.", |_, w| Some(Value::Money(mrr(w, Change::Expansion)))),
    gauge_w("funnel_mrr_reactivation", "MRR added by reactivations in the window.", |_, w| Some(Value::Money(mrr(w, Change::Reactivation)))),
    gauge_w("funnel_mrr_contraction", "MRR removed by contractions in the window.", |_, w| Some(Value::Money(mrr(w, Change::Contraction)))),
    gauge_w("funnel_mrr_churned", "MRR removed by churn in the window.", |_, w| Some(Value::Money(mrr(w, Change::Churn)))),
    gauge_w("funnel_customers_new", "New customers (subscription change=new) in the window.", |_, w| Some(Value::Int(subs(w, f::CUSTOMERS_NEW)))),
    gauge_w("funnel_customers_churned", "Churned customers (subscription change=churn) in the window.", |_, w| Some(Value::Int(subs(w, f::CUSTOMERS_CHURNED)))),
    gauge_w("funnel_customers_reactivated", "Reactivated customers (subscription change=reactivation) in the window.", |_, w| Some(Value::Int(subs(w, f::CUSTOMERS_REACTIVATED)))),
    // Windowed KPIs (absent while the denominator is 0).
    gauge_w("funnel_ctr_ratio", "Click-through rate: clicks / impressions.", |_, w| ratio(clicks(w), impressions(w))),
    gauge_w("funnel_cpc", "Cost per click: ad_spend / clicks.", |_, w| per(ad_spend(w), clicks(w))),
    gauge_w("funnel_cpm", "Cost per thousand impressions: ad_spend / impressions * 1000.", |_, w| per(ad_spend(w) * 1000, impressions(w))),
    gauge_w("funnel_cpl", "Cost per lead: spend / leads.", |_, w| per(spend(w), leads(w, LeadStage::New))),
    gauge_w("funnel_cost_per_mql", "Cost per MQL: spend / mqls.", |_, w| per(spend(w), leads(w, LeadStage::Mql))),
    gauge_w("funnel_click_to_lead_ratio", "Click to lead conversion: leads / clicks.", |_, w| ratio(leads(w, LeadStage::New), clicks(w))),
    gauge_w("funnel_lead_to_mql_ratio", "Lead to MQL conversion: mqls / leads.", |_, w| ratio(leads(w, LeadStage::Mql), leads(w, LeadStage::New))),
    gauge_w("funnel_mql_to_sql_ratio", "MQL to SQL conversion: sqls / mqls.", |_, w| ratio(leads(w, LeadStage::Sql), leads(w, LeadStage::Mql))),
    gauge_w("funnel_sql_to_opportunity_ratio", "SQL to opportunity conversion: opportunities / sqls.", |_, w| ratio(deals(w, f::OPEN), leads(w, LeadStage::Sql))),
    gauge_w("funnel_win_ratio", "Win rate: deals_won / (deals_won + deals_lost).", |_, w| ratio(deals(w, f::WON), deals(w, f::WON) + deals(w, f::LOST))),
    gauge_w("funnel_lead_to_customer_ratio", "Lead to customer conversion: deals_won / leads.", |_, w| ratio(deals(w, f::WON), leads(w, LeadStage::New))),
    gauge_w("funnel_avg_deal_size", "Average deal size: revenue_won / deals_won.", |_, w| per(deals(w, f::REVENUE_WON), deals(w, f::WON))),
    gauge_w("funnel_cac", "Customer acquisition cost: spend / deals_won.", |_, w| per(spend(w), deals(w, f::WON))),
    gauge_w("funnel_roas_ratio", "Return on ad spend: revenue_won / ad_spend.", |_, w| ratio(deals(w, f::REVENUE_WON), ad_spend(w))),
    gauge_w("funnel_roi_ratio", "Return on investment: (revenue_won - spend) / spend.", |_, w| ratio(deals(w, f::REVENUE_WON) - spend(w), spend(w))),
    gauge_w("funnel_sales_cycle_mean_seconds", "Mean sales cycle (ts - created_ts) of won deals.", |_, w| sales_cycle_mean_seconds(w).map(Value::Float)),
    gauge_w("funnel_sales_cycle_p50_seconds", "Median sales cycle of won deals (relative error <= 1%).", |_, w| cycle_quantile(w, 1, 2)),
    gauge_w("funnel_sales_cycle_p90_seconds", "90th percentile sales cycle of won deals (relative error <= 1%).", |_, w| cycle_quantile(w, 9, 10)),
    gauge_w("funnel_pipeline_velocity", "Pipeline velocity, value per day: opportunities * avg_deal_size * win_ratio / (sales_cycle_mean_seconds / 86400).", |_, w| pipeline_velocity(w)),
    // Over a starting stock: absent unless the stock is positive.
    gauge_w("funnel_nrr_ratio", "Net revenue retention: (mrr_start + expansion + reactivation - contraction - churned) / mrr_start.", |t, w| {
        let start = mrr_start(t, w);
        over_stock(start + mrr(w, Change::Expansion) + mrr(w, Change::Reactivation) - mrr(w, Change::Contraction) - mrr(w, Change::Churn), start)
    }),
    gauge_w("funnel_gross_mrr_churn_ratio", "Gross MRR churn: (contraction + churned) / mrr_start.", |t, w| {
        over_stock(mrr(w, Change::Contraction) + mrr(w, Change::Churn), mrr_start(t, w))
    }),
    gauge_w("funnel_customer_churn_ratio", "Customer churn: customers_churned / customers_start.", |t, w| {
        over_stock(subs(w, f::CUSTOMERS_CHURNED), customers_start(t, w))
    }),
    // Current state.
    Family { name: "funnel_mrr", help: "Net MRR of all subscription events ever consumed.", kind: MetricType::Gauge, eval: Eval::Key(|t| Value::Money(t.mrr)) },
    Family { name: "funnel_customers", help: "Customers: new + reactivation - churn over all subscription events ever consumed.", kind: MetricType::Gauge, eval: Eval::Key(|t| Value::Int(t.customers)) },
    Family { name: "funnel_open_pipeline_value", help: "Amount of deals opened and not yet won or lost, by the open event's channel and campaign.", kind: MetricType::Gauge, eval: Eval::Key(|t| Value::Money(t.open_pipeline)) },
    // All-time counters.
    Family { name: "funnel_impressions_total", help: "Impressions ever consumed.", kind: MetricType::Counter, eval: Eval::Key(|t| Value::Int(t.impressions)) },
    Family { name: "funnel_clicks_total", help: "Clicks ever consumed.", kind: MetricType::Counter, eval: Eval::Key(|t| Value::Int(t.clicks)) },
    Family { name: "funnel_leads_total", help: "Lead events ever consumed, by stage.", kind: MetricType::Counter, eval: Eval::Labelled { label: "stage", values: &LEAD_STAGES, f: |t, i| Value::Int(t.leads[i]) } },
    Family { name: "funnel_deals_total", help: "Deal events ever consumed, by stage.", kind: MetricType::Counter, eval: Eval::Labelled { label: "stage", values: &DEAL_STAGES, f: |t, i| Value::Int(t.deals[i]) } },
    Family { name: "funnel_revenue_won_total", help: "Amount of deals won, ever.", kind: MetricType::Counter, eval: Eval::Key(|t| Value::Money(t.revenue_won)) },
    Family { name: "funnel_ad_spend_total", help: "Ad spend ever consumed.", kind: MetricType::Counter, eval: Eval::Key(|t| Value::Money(t.ad_spend)) },
    Family { name: "funnel_spend_total", help: "Total spend ever consumed.", kind: MetricType::Counter, eval: Eval::Key(|t| Value::Money(t.spend)) },
    Family { name: "funnel_mrr_movement_total", help: "Size of MRR movements ever consumed, by change.", kind: MetricType::Counter, eval: Eval::Labelled { label: "change", values: &CHANGES, f: |t, i| Value::Money(t.mrr_movement[i]) } },
];

const LEAD_STAGES: [&str; 3] = [
    LeadStage::ALL[0].as_str(),
    LeadStage::ALL[1].as_str(),
    LeadStage::ALL[2].as_str(),
];
const DEAL_STAGES: [&str; 3] = [
    DealStage::ALL[0].as_str(),
    DealStage::ALL[1].as_str(),
    DealStage::ALL[2].as_str(),
];
const CHANGES: [&str; 5] = [
    Change::ALL[0].as_str(),
    Change::ALL[1].as_str(),
    Change::ALL[2].as_str(),
    Change::ALL[3].as_str(),
    Change::ALL[4].as_str(),
];

/// Looks a family up by name (tests, `tail` filters).
pub fn family(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.name == name)
}

/// Evaluates a windowed family for one key and window.
pub fn window_value(name: &str, t: &Totals, w: &WindowSums) -> Option<Value> {
    match family(name)?.eval {
        Eval::Window(f) => f(t, w),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
