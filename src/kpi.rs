//! Stage 4 of the flow: **kpi**. The catalogue of published business metric
//! families (METRICS.md) and their formulas, as pure functions of a key's
//! exact sums. Knows nothing of the exposition format: the export stage asks
//! it for values and writes them.
//!
//! A KPI is `None` (absent) while its denominator is exactly zero, so no NaN
//! or infinity is ever produced from valid sums.

use crate::aggregate::labels::{Charges, OVER_V2_SUMS, V1_TYPE_GROUPS};
use crate::aggregate::ring::sketch;
use crate::aggregate::v2::{f2, seen, V2Totals, CONV_N};
use crate::aggregate::{field as f, Totals, WindowSums};
use crate::decode::{Change, DealStage, EmailAction, LeadStage, Origin, SurveyKind};

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
    /// One series per window and value of an extra label (v2: `origin`).
    LabelledWindow {
        label: &'static str,
        values: &'static [&'static str],
        f: fn(&WindowSums, usize) -> Option<Value>,
    },
    /// One series per window and conversion `action` the key received
    /// (v2), from that action's sums (conversions, value).
    ActionWindow(fn(&WindowSums, &[i64; CONV_N]) -> Option<Value>),
    /// One series per window and conversion `action` the key received
    /// (v2), from that action's sums in the window and in its previous
    /// window.
    ActionGrowth(fn(&[i64; CONV_N], &[i64; CONV_N]) -> Option<Value>),
    /// One series per conversion `action` the key received, from its
    /// all-time count (v2).
    ActionKey(fn(i128) -> Value),
    /// One series per key from the v1 and v2 totals, absent on `None` (v2).
    KeyV2(fn(&Totals, &V2Totals) -> Option<Value>),
    /// One series per value of an extra label, from the v2 totals.
    LabelledV2 {
        label: &'static str,
        values: &'static [&'static str],
        f: fn(&V2Totals, usize) -> Value,
    },
}

#[derive(Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricType,
    pub eval: Eval,
    /// [`seen`] bits: the family is published for a key only once it has
    /// received an event of one of these groups (0: always; METRICS.md v2).
    pub(crate) gate: u8,
}

const fn gauge_w(name: &'static str, help: &'static str, f: WindowFn) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Gauge,
        eval: Eval::Window(f),
        gate: 0,
    }
}

/// A windowed family of a v2 group.
const fn gauge_g(name: &'static str, help: &'static str, gate: u8, f: WindowFn) -> Family {
    Family {
        name,
        help,
        kind: MetricType::Gauge,
        eval: Eval::Window(f),
        gate,
    }
}

const fn fam(
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    gate: u8,
    eval: Eval,
) -> Family {
    Family {
        name,
        help,
        kind,
        eval,
        gate,
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

/// Net MRR and customer movement of subscription sums.
fn net_movement(s: &[i64; crate::aggregate::SUBS_N]) -> (i128, i128) {
    let x = |i: usize| i128::from(s[i]);
    let mrr =
        x(Change::New as usize) + x(Change::Expansion as usize) + x(Change::Reactivation as usize)
            - x(Change::Contraction as usize)
            - x(Change::Churn as usize);
    let customers = x(f::CUSTOMERS_NEW) + x(f::CUSTOMERS_REACTIVATED) - x(f::CUSTOMERS_CHURNED);
    (mrr, customers)
}

/// MRR at the start of the window: current MRR minus the movement from the
/// window's start until now (the window's own, and for a closed calendar
/// period everything after it too).
pub fn mrr_start(t: &Totals, w: &WindowSums) -> i128 {
    t.mrr - mrr_net(w) - net_movement(&w.after_subs).0
}

/// Customers at the start of the window.
pub fn customers_start(t: &Totals, w: &WindowSums) -> i128 {
    t.customers
        - (subs(w, f::CUSTOMERS_NEW) + subs(w, f::CUSTOMERS_REACTIVATED)
            - subs(w, f::CUSTOMERS_CHURNED))
        - net_movement(&w.after_subs).1
}

/// `(x - previous) / previous`, absent while `previous` is 0 (METRICS.md
/// v2, "Growth against the previous window").
fn growth(x: i128, previous: i128) -> Option<Value> {
    (previous != 0).then(|| Value::Float((x - previous) as f64 / previous as f64))
}
fn prev_lead(w: &WindowSums, s: LeadStage) -> i128 {
    i128::from(w.prev.leads[s as usize])
}
fn prev_deal(w: &WindowSums, i: usize) -> i128 {
    i128::from(w.prev.deals[i])
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

// --- v2 -----------------------------------------------------------------------

/// Days in the month of METRICS.md v2 (LTV).
pub(crate) const MONTH_MS: i64 = 30 * 86_400_000;

fn count(x: i64) -> Option<Value> {
    Some(Value::Int(i128::from(x)))
}
fn cash(x: i64) -> Option<Value> {
    Some(Value::Money(i128::from(x)))
}
fn web(w: &WindowSums, i: usize) -> i128 {
    i128::from(w.v2.web[i])
}
fn email(w: &WindowSums, a: EmailAction) -> i128 {
    i128::from(w.v2.email[a as usize])
}
fn survey(w: &WindowSums, i: usize) -> i128 {
    i128::from(w.v2.survey[i])
}

/// `funnel_mrr_net_new`: new + expansion + reactivation - contraction -
/// churned.
pub(crate) fn mrr_net_new(w: &WindowSums) -> i128 {
    mrr_net(w)
}

/// `funnel_cac` as a number, when present.
fn cac(w: &WindowSums) -> Option<f64> {
    per(spend(w), deals(w, f::WON)).map(Value::as_f64)
}

/// `funnel_ltv`: arpa * gross_margin / monthly_churn, where arpa = current
/// MRR / current customers (both > 0) and monthly_churn =
/// customer_churn_ratio * month / W (> 0).
pub fn ltv(t: &Totals, w: &WindowSums) -> Option<f64> {
    let (gm, window_ms) = (w.params.gross_margin, w.params.window_ms);
    if t.mrr <= 0 || t.customers <= 0 || window_ms <= 0 || gm <= 0.0 {
        return None;
    }
    let arpa = t.mrr as f64 / 1e6 / t.customers as f64;
    let churn = over_stock(subs(w, f::CUSTOMERS_CHURNED), customers_start(t, w))?.as_f64();
    let monthly = churn * MONTH_MS as f64 / window_ms as f64;
    (monthly > 0.0).then(|| arpa * gm / monthly)
}

/// `funnel_cac_payback_months`: spend / (mrr_new * gross_margin).
pub fn cac_payback_months(w: &WindowSums) -> Option<f64> {
    let den = mrr(w, Change::New) as f64 * w.params.gross_margin;
    (den > 0.0).then(|| spend(w) as f64 / den)
}

/// `funnel_nps_score`: 100 * (promoters - detractors) / responses.
pub(crate) fn nps_score(w: &WindowSums) -> Option<f64> {
    let n = survey(w, f2::NPS_RESPONSES);
    (n != 0).then(|| {
        100.0 * (survey(w, f2::NPS_PROMOTERS) - survey(w, f2::NPS_DETRACTORS)) as f64 / n as f64
    })
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
    Family { name: "funnel_mrr", help: "Net MRR of all subscription events ever consumed.", kind: MetricType::Gauge, eval: Eval::Key(|t| Value::Money(t.mrr)), gate: 0 },
    Family { name: "funnel_customers", help: "Customers: new + reactivation - churn over all subscription events ever consumed.", kind: MetricType::Gauge, eval: Eval::Key(|t| Value::Int(t.customers)), gate: 0 },
    Family { name: "funnel_open_pipeline_value", help: "Amount of deals opened and not yet won or lost, by the open event's channel and campaign.", kind: MetricType::Gauge, eval: Eval::Key(|t| Value::Money(t.open_pipeline)), gate: 0 },
    // All-time counters.
    Family { name: "funnel_impressions_total", help: "Impressions ever consumed.", kind: MetricType::Counter, eval: Eval::Key(|t| Value::Int(t.impressions)), gate: 0 },
    Family { name: "funnel_clicks_total", help: "Clicks ever consumed.", kind: MetricType::Counter, eval: Eval::Key(|t| Value::Int(t.clicks)), gate: 0 },
    Family { name: "funnel_leads_total", help: "Lead events ever consumed, by stage.", kind: MetricType::Counter, eval: Eval::Labelled { label: "stage", values: &LEAD_STAGES, f: |t, i| Value::Int(t.leads[i]) }, gate: 0 },
    Family { name: "funnel_deals_total", help: "Deal events ever consumed, by stage.", kind: MetricType::Counter, eval: Eval::Labelled { label: "stage", values: &DEAL_STAGES, f: |t, i| Value::Int(t.deals[i]) }, gate: 0 },
    Family { name: "funnel_revenue_won_total", help: "Amount of deals won, ever.", kind: MetricType::Counter, eval: Eval::Key(|t| Value::Money(t.revenue_won)), gate: 0 },
    Family { name: "funnel_ad_spend_total", help: "Ad spend ever consumed.", kind: MetricType::Counter, eval: Eval::Key(|t| Value::Money(t.ad_spend)), gate: 0 },
    Family { name: "funnel_spend_total", help: "Total spend ever consumed.", kind: MetricType::Counter, eval: Eval::Key(|t| Value::Money(t.spend)), gate: 0 },
    Family { name: "funnel_mrr_movement_total", help: "Size of MRR movements ever consumed, by change.", kind: MetricType::Counter, eval: Eval::Labelled { label: "change", values: &CHANGES, f: |t, i| Value::Money(t.mrr_movement[i]) }, gate: 0 },
    // --- v2: windowed counts, published once the key received the group.
    gauge_g("funnel_pipeline_created", "Amount of deals opened (stage=open) in the window.", seen::DEAL, |_, w| cash(w.v2.deal_a[f2::PIPELINE_CREATED])),
    fam("funnel_deals_won_by_origin", "Deals won in the window, by the deal's origin.", MetricType::Gauge, seen::DEAL, Eval::LabelledWindow { label: "origin", values: &ORIGINS, f: |w, o| count(w.v2.deal_a[f2::WON_BY_ORIGIN + o]) }),
    fam("funnel_revenue_won_by_origin", "Amount of deals won in the window, by the deal's origin.", MetricType::Gauge, seen::DEAL, Eval::LabelledWindow { label: "origin", values: &ORIGINS, f: |w, o| cash(w.v2.deal_b[f2::REVENUE_BY_ORIGIN + o]) }),
    fam("funnel_pipeline_created_by_origin", "Amount of deals opened in the window, by the deal's origin.", MetricType::Gauge, seen::DEAL, Eval::LabelledWindow { label: "origin", values: &ORIGINS, f: |w, o| cash(w.v2.deal_b[f2::PIPELINE_BY_ORIGIN + o]) }),
    gauge_g("funnel_deals_won_influenced", "Deals won in the window with influenced=true.", seen::DEAL, |_, w| count(w.v2.deal_a[f2::WON_INFLUENCED])),
    gauge_g("funnel_revenue_won_influenced", "Amount of deals won in the window with influenced=true.", seen::DEAL, |_, w| cash(w.v2.deal_a[f2::REVENUE_INFLUENCED])),
    gauge_g("funnel_sessions", "Website sessions in the window.", seen::WEB, |_, w| count(w.v2.web[f2::SESSIONS])),
    gauge_g("funnel_pageviews", "Page views in the window.", seen::WEB, |_, w| count(w.v2.web[f2::PAGEVIEWS])),
    gauge_g("funnel_bounces", "Bounced sessions in the window.", seen::WEB, |_, w| count(w.v2.web[f2::BOUNCES])),
    gauge_g("funnel_engaged_sessions", "Engaged sessions in the window.", seen::WEB, |_, w| count(w.v2.web[f2::ENGAGED])),
    fam("funnel_conversions", "Conversions in the window, by action.", MetricType::Gauge, 0, Eval::ActionWindow(|_, c| Some(Value::Int(i128::from(c[f2::CONVERSIONS]))))),
    fam("funnel_conversion_value", "Value of conversions in the window, by action.", MetricType::Gauge, 0, Eval::ActionWindow(|_, c| Some(Value::Money(i128::from(c[f2::CONVERSION_VALUE]))))),
    gauge_g("funnel_emails_sent", "Email recipients sent to in the window.", seen::EMAIL, |_, w| count(w.v2.email[EmailAction::Sent as usize])),
    gauge_g("funnel_emails_delivered", "Emails delivered in the window.", seen::EMAIL, |_, w| count(w.v2.email[EmailAction::Delivered as usize])),
    gauge_g("funnel_emails_bounced", "Emails bounced in the window.", seen::EMAIL, |_, w| count(w.v2.email[EmailAction::Bounced as usize])),
    gauge_g("funnel_emails_opened", "Emails opened (unique per recipient and message) in the window.", seen::EMAIL, |_, w| count(w.v2.email[EmailAction::Opened as usize])),
    gauge_g("funnel_emails_clicked", "Emails clicked (unique per recipient and message) in the window.", seen::EMAIL, |_, w| count(w.v2.email[EmailAction::Clicked as usize])),
    gauge_g("funnel_email_subscribes", "Email list subscribes in the window.", seen::EMAIL, |_, w| count(w.v2.email[EmailAction::Subscribed as usize])),
    gauge_g("funnel_email_unsubscribes", "Email list unsubscribes in the window.", seen::EMAIL, |_, w| count(w.v2.email[EmailAction::Unsubscribed as usize])),
    gauge_g("funnel_email_complaints", "Email spam complaints in the window.", seen::EMAIL, |_, w| count(w.v2.email[EmailAction::Complained as usize])),
    gauge_g("funnel_nps_responses", "NPS survey responses in the window.", seen::SURVEY, |_, w| count(w.v2.survey[f2::NPS_RESPONSES])),
    gauge_g("funnel_nps_promoters", "NPS promoters (score 9-10) in the window.", seen::SURVEY, |_, w| count(w.v2.survey[f2::NPS_PROMOTERS])),
    gauge_g("funnel_nps_passives", "NPS passives (score 7-8) in the window.", seen::SURVEY, |_, w| count(w.v2.survey[f2::NPS_PASSIVES])),
    gauge_g("funnel_nps_detractors", "NPS detractors (score 0-6) in the window.", seen::SURVEY, |_, w| count(w.v2.survey[f2::NPS_DETRACTORS])),
    gauge_g("funnel_csat_responses", "CSAT survey responses in the window.", seen::SURVEY, |_, w| count(w.v2.survey[f2::CSAT_RESPONSES])),
    gauge_g("funnel_csat_satisfied", "CSAT responses with score 4-5 in the window.", seen::SURVEY, |_, w| count(w.v2.survey[f2::CSAT_SATISFIED])),
    // --- v2: windowed KPIs (absent while the denominator is 0).
    gauge_w("funnel_mer_ratio", "Marketing efficiency ratio: revenue_won / spend.", |_, w| ratio(deals(w, f::REVENUE_WON), spend(w))),
    gauge_w("funnel_sql_to_won_ratio", "SQL to won conversion: deals_won / sqls.", |_, w| ratio(deals(w, f::WON), leads(w, LeadStage::Sql))),
    gauge_g("funnel_mrr_net_new", "Net new MRR: new + expansion + reactivation - contraction - churned.", seen::SUBS, |_, w| Some(Value::Money(mrr_net_new(w)))),
    gauge_w("funnel_mrr_growth_ratio", "MRR growth: mrr_net_new / mrr_start.", |t, w| over_stock(mrr_net_new(w), mrr_start(t, w))),
    gauge_w("funnel_net_mrr_churn_ratio", "Net MRR churn: (contraction + churned - expansion - reactivation) / mrr_start.", |t, w| {
        over_stock(mrr(w, Change::Contraction) + mrr(w, Change::Churn) - mrr(w, Change::Expansion) - mrr(w, Change::Reactivation), mrr_start(t, w))
    }),
    gauge_w("funnel_quick_ratio", "SaaS quick ratio: (mrr_new + expansion) / (contraction + churned).", |_, w| {
        ratio(mrr(w, Change::New) + mrr(w, Change::Expansion), mrr(w, Change::Contraction) + mrr(w, Change::Churn))
    }),
    gauge_w("funnel_ltv", "Customer lifetime value: arpa * gross_margin / monthly customer churn (30-day month).", |t, w| ltv(t, w).map(Value::Float)),
    gauge_w("funnel_ltv_to_cac_ratio", "LTV to CAC: ltv / cac.", |t, w| {
        let c = cac(w)?;
        let l = ltv(t, w)?;
        (c != 0.0).then(|| Value::Float(l / c))
    }),
    gauge_w("funnel_cac_payback_months", "CAC payback in months: spend / (mrr_new * gross_margin).", |_, w| cac_payback_months(w).map(Value::Float)),
    gauge_w("funnel_marketing_originated_ratio", "Share of won deals that marketing originated: deals_won_by_origin{origin=marketing} / deals_won.", |_, w| {
        ratio(i128::from(w.v2.deal_a[f2::WON_BY_ORIGIN + Origin::Marketing as usize]), deals(w, f::WON))
    }),
    gauge_w("funnel_marketing_influenced_ratio", "Share of won deals that marketing influenced: deals_won_influenced / deals_won.", |_, w| {
        ratio(i128::from(w.v2.deal_a[f2::WON_INFLUENCED]), deals(w, f::WON))
    }),
    gauge_w("funnel_bounce_ratio", "Bounce rate: bounces / sessions.", |_, w| ratio(web(w, f2::BOUNCES), web(w, f2::SESSIONS))),
    gauge_w("funnel_engagement_ratio", "Engagement rate: engaged_sessions / sessions.", |_, w| ratio(web(w, f2::ENGAGED), web(w, f2::SESSIONS))),
    gauge_w("funnel_session_to_lead_ratio", "Traffic to lead conversion: leads / sessions.", |_, w| ratio(leads(w, LeadStage::New), web(w, f2::SESSIONS))),
    fam("funnel_session_conversion_ratio", "Visitor conversion rate: conversions{action} / sessions.", MetricType::Gauge, 0, Eval::ActionWindow(|w, c| ratio(i128::from(c[f2::CONVERSIONS]), web(w, f2::SESSIONS)))),
    fam("funnel_cpa", "Cost per action: ad_spend / conversions{action}.", MetricType::Gauge, 0, Eval::ActionWindow(|w, c| per(ad_spend(w), i128::from(c[f2::CONVERSIONS])))),
    gauge_w("funnel_email_delivery_ratio", "Email delivery rate: delivered / sent.", |_, w| ratio(email(w, EmailAction::Delivered), email(w, EmailAction::Sent))),
    gauge_w("funnel_email_bounce_ratio", "Email bounce rate: bounced / sent.", |_, w| ratio(email(w, EmailAction::Bounced), email(w, EmailAction::Sent))),
    gauge_w("funnel_email_open_ratio", "Email open rate: opened / delivered.", |_, w| ratio(email(w, EmailAction::Opened), email(w, EmailAction::Delivered))),
    gauge_w("funnel_email_click_ratio", "Email click rate: clicked / delivered.", |_, w| ratio(email(w, EmailAction::Clicked), email(w, EmailAction::Delivered))),
    gauge_w("funnel_email_unsubscribe_ratio", "Email unsubscribe rate: unsubscribes / delivered.", |_, w| ratio(email(w, EmailAction::Unsubscribed), email(w, EmailAction::Delivered))),
    gauge_w("funnel_email_click_to_open_ratio", "Email click-to-open rate: clicked / opened.", |_, w| ratio(email(w, EmailAction::Clicked), email(w, EmailAction::Opened))),
    gauge_w("funnel_nps_score", "Net promoter score: 100 * (promoters - detractors) / nps_responses.", |_, w| nps_score(w).map(Value::Float)),
    gauge_w("funnel_csat_ratio", "Customer satisfaction: csat_satisfied / csat_responses.", |_, w| ratio(survey(w, f2::CSAT_SATISFIED), survey(w, f2::CSAT_RESPONSES))),
    // --- v2: current state.
    fam("funnel_arpa", "Average revenue per account: funnel_mrr / funnel_customers (absent unless both are positive).", MetricType::Gauge, 0, Eval::KeyV2(|t, _| {
        (t.mrr > 0 && t.customers > 0).then(|| Value::Float(t.mrr as f64 / 1e6 / t.customers as f64))
    })),
    fam("funnel_arr", "Annual recurring revenue: 12 * funnel_mrr.", MetricType::Gauge, 0, Eval::KeyV2(|t, _| Some(Value::Money(12 * t.mrr)))),
    fam("funnel_email_subscribers", "Email subscribers: subscribes - unsubscribes - complaints over all email events ever consumed.", MetricType::Gauge, seen::EMAIL, Eval::KeyV2(|_, v| Some(Value::Int(v.email_subscribers())))),
    // --- v2: all-time counters.
    fam("funnel_pipeline_created_total", "Amount of deals opened, ever.", MetricType::Counter, seen::DEAL, Eval::KeyV2(|_, v| Some(Value::Money(v.pipeline_created)))),
    fam("funnel_sessions_total", "Website sessions ever consumed.", MetricType::Counter, seen::WEB, Eval::KeyV2(|_, v| Some(Value::Int(v.sessions)))),
    fam("funnel_pageviews_total", "Page views ever consumed.", MetricType::Counter, seen::WEB, Eval::KeyV2(|_, v| Some(Value::Int(v.pageviews)))),
    fam("funnel_conversions_total", "Conversions ever consumed, by action.", MetricType::Counter, 0, Eval::ActionKey(Value::Int)),
    fam("funnel_email_events_total", "Email recipients ever consumed, by action.", MetricType::Counter, seen::EMAIL, Eval::LabelledV2 { label: "action", values: &EMAIL_ACTIONS, f: |v, i| Value::Int(v.email[i]) }),
    // Growth against the previous window (v2): x over the previous window
    // (`now - 2W < ts <= now - W`, or the previous calendar period) and
    // (x - previous) / previous.
    gauge_w("funnel_leads_previous", "New leads in the previous window.", |_, w| Some(Value::Int(prev_lead(w, LeadStage::New)))),
    gauge_w("funnel_leads_growth_ratio", "Lead growth: (leads - leads_previous) / leads_previous.", |_, w| growth(leads(w, LeadStage::New), prev_lead(w, LeadStage::New))),
    gauge_w("funnel_mqls_previous", "MQLs in the previous window.", |_, w| Some(Value::Int(prev_lead(w, LeadStage::Mql)))),
    gauge_w("funnel_mqls_growth_ratio", "MQL growth, the lead velocity rate: (mqls - mqls_previous) / mqls_previous.", |_, w| growth(leads(w, LeadStage::Mql), prev_lead(w, LeadStage::Mql))),
    gauge_w("funnel_sqls_previous", "SQLs in the previous window.", |_, w| Some(Value::Int(prev_lead(w, LeadStage::Sql)))),
    gauge_w("funnel_sqls_growth_ratio", "SQL growth: (sqls - sqls_previous) / sqls_previous.", |_, w| growth(leads(w, LeadStage::Sql), prev_lead(w, LeadStage::Sql))),
    gauge_w("funnel_opportunities_previous", "Opportunities opened in the previous window.", |_, w| Some(Value::Int(prev_deal(w, f::OPEN)))),
    gauge_w("funnel_opportunities_growth_ratio", "Opportunity growth: (opportunities - opportunities_previous) / opportunities_previous.", |_, w| growth(deals(w, f::OPEN), prev_deal(w, f::OPEN))),
    gauge_w("funnel_deals_won_previous", "Deals won in the previous window.", |_, w| Some(Value::Int(prev_deal(w, f::WON)))),
    gauge_w("funnel_deals_won_growth_ratio", "Won deal growth: (deals_won - deals_won_previous) / deals_won_previous.", |_, w| growth(deals(w, f::WON), prev_deal(w, f::WON))),
    gauge_w("funnel_revenue_won_previous", "Amount of deals won in the previous window.", |_, w| Some(Value::Money(prev_deal(w, f::REVENUE_WON)))),
    gauge_w("funnel_revenue_won_growth_ratio", "Won revenue growth: (revenue_won - revenue_won_previous) / revenue_won_previous.", |_, w| growth(deals(w, f::REVENUE_WON), prev_deal(w, f::REVENUE_WON))),
    gauge_g("funnel_pipeline_created_previous", "Amount of deals opened in the previous window.", seen::DEAL, |_, w| cash(w.prev.deal_a[f2::PIPELINE_CREATED])),
    gauge_g("funnel_pipeline_created_growth_ratio", "Pipeline created growth: (pipeline_created - pipeline_created_previous) / pipeline_created_previous.", seen::DEAL, |_, w| growth(i128::from(w.v2.deal_a[f2::PIPELINE_CREATED]), i128::from(w.prev.deal_a[f2::PIPELINE_CREATED]))),
    gauge_w("funnel_customers_new_previous", "New customers in the previous window.", |_, w| Some(Value::Int(i128::from(w.prev.subs[f::CUSTOMERS_NEW])))),
    gauge_w("funnel_customers_new_growth_ratio", "New customer growth: (customers_new - customers_new_previous) / customers_new_previous.", |_, w| growth(subs(w, f::CUSTOMERS_NEW), i128::from(w.prev.subs[f::CUSTOMERS_NEW]))),
    gauge_g("funnel_sessions_previous", "Website sessions in the previous window.", seen::WEB, |_, w| count(w.prev.web[f2::SESSIONS])),
    gauge_g("funnel_sessions_growth_ratio", "Session growth (organic traffic growth on channel=organic): (sessions - sessions_previous) / sessions_previous.", seen::WEB, |_, w| growth(web(w, f2::SESSIONS), i128::from(w.prev.web[f2::SESSIONS]))),
    fam("funnel_conversions_previous", "Conversions in the previous window, by action.", MetricType::Gauge, 0, Eval::ActionGrowth(|_, p| Some(Value::Int(i128::from(p[f2::CONVERSIONS]))))),
    fam("funnel_conversions_growth_ratio", "Conversion growth: (conversions - conversions_previous) / conversions_previous, by action.", MetricType::Gauge, 0, Eval::ActionGrowth(|c, p| growth(i128::from(c[f2::CONVERSIONS]), i128::from(p[f2::CONVERSIONS])))),
    fam("funnel_survey_responses_total", "Survey responses ever consumed, by kind.", MetricType::Counter, seen::SURVEY, Eval::LabelledV2 { label: "kind", values: &SURVEY_KINDS, f: |v, i| Value::Int(v.survey[i]) }),
];

const ORIGINS: [&str; 4] = [
    Origin::ALL[0].as_str(),
    Origin::ALL[1].as_str(),
    Origin::ALL[2].as_str(),
    Origin::ALL[3].as_str(),
];
const EMAIL_ACTIONS: [&str; 8] = [
    EmailAction::ALL[0].as_str(),
    EmailAction::ALL[1].as_str(),
    EmailAction::ALL[2].as_str(),
    EmailAction::ALL[3].as_str(),
    EmailAction::ALL[4].as_str(),
    EmailAction::ALL[5].as_str(),
    EmailAction::ALL[6].as_str(),
    EmailAction::ALL[7].as_str(),
];
const SURVEY_KINDS: [&str; 2] = [SurveyKind::ALL[0].as_str(), SurveyKind::ALL[1].as_str()];

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
#[cfg(test)]
pub(crate) fn window_value(name: &str, t: &Totals, w: &WindowSums) -> Option<Value> {
    match family(name)?.eval {
        Eval::Window(f) => f(t, w),
        _ => None,
    }
}

/// The most series one key publishes from the v1 event types, with
/// `windows` windows (rolling and calendar alike: every window label value
/// counts): the families without a gate (v1, and the v2 KPIs over v1 sums)
/// and those of the groups v1 types open, windowed families once per
/// window (KPIs counted as present), labelled ones once per label value.
/// The groups of the v2 types (web, email, survey, with the KPIs over
/// their sums) and conversion actions are charged apart, when a key first
/// has them: [`series_per_group`], [`series_per_action`]
/// (docs/PERFORMANCE.md, "Series budget").
pub(crate) fn series_per_key(windows: usize) -> usize {
    FAMILIES
        .iter()
        .filter(|f| f.gate & !V1_TYPE_GROUPS == 0 && !OVER_V2_SUMS.iter().any(|o| o.0 == f.name))
        .map(|f| series_of(f, windows))
        .sum()
}

/// The most series the v2 group `group` (one of [`seen`]'s `WEB`, `EMAIL`,
/// `SURVEY`) adds to a key with `windows` windows: the group's families and
/// the KPIs without a gate whose denominator is a sum of the group.
pub(crate) fn series_per_group(group: u8, windows: usize) -> usize {
    FAMILIES
        .iter()
        .filter(|f| {
            f.gate & group != 0 || OVER_V2_SUMS.iter().any(|o| o.0 == f.name && o.1 == group)
        })
        .map(|f| series_of(f, windows))
        .sum()
}

/// The most series one conversion `action` adds to a key with `windows`
/// windows (every family labelled by `action`).
pub(crate) fn series_per_action(windows: usize) -> usize {
    FAMILIES
        .iter()
        .map(|f| match f.eval {
            Eval::ActionWindow(_) | Eval::ActionGrowth(_) => windows,
            Eval::ActionKey(_) => 1,
            _ => 0,
        })
        .sum()
}

/// What the series budget charges with `windows` windows (rolling and
/// calendar alike: every `window` label value counts).
pub fn charges(windows: usize) -> Charges {
    Charges {
        key: series_per_key(windows),
        web: series_per_group(seen::WEB, windows),
        email: series_per_group(seen::EMAIL, windows),
        survey: series_per_group(seen::SURVEY, windows),
        action: series_per_action(windows),
    }
}

/// Series of one family for one key (one action, for the action families).
fn series_of(f: &Family, windows: usize) -> usize {
    match f.eval {
        Eval::Window(_) => windows,
        Eval::Key(_) | Eval::KeyV2(_) => 1,
        Eval::Labelled { values, .. } | Eval::LabelledV2 { values, .. } => values.len(),
        Eval::LabelledWindow { values, .. } => values.len() * windows,
        Eval::ActionWindow(_) | Eval::ActionGrowth(_) | Eval::ActionKey(_) => 0,
    }
}

#[cfg(test)]
mod tests;
