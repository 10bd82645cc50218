//! The board of `funnelstream tail`: the windowed counts of every
//! (channel, campaign) key as the KPI API serves them, rolled up per
//! channel, per campaign or per (channel, campaign), with the headline KPIs
//! of one window as columns. Ratios are computed from the rolled-up counts
//! (sum of numerator over sum of denominator, METRICS.md), never averaged.
//! Knows no terminal: [`text`] is the plain board of `--once`, the
//! full-screen board (`screen.rs`) draws the same [`Board`].

use crate::export::api::Snapshot;
use crate::export::board::{concat, FUNNEL};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The series the board reads, by metric name (all windowed).
pub(crate) const INPUTS: [&str; 26] = concat(&[
    &["funnel_spend", "funnel_ad_spend"],
    &FUNNEL,
    &[
        "funnel_sales_cycle_mean_seconds",
        // v2 (METRICS.md v2): web, email, NPS, and what LTV and CAC payback
        // need.
        "funnel_sessions",
        "funnel_bounces",
        "funnel_emails_delivered",
        "funnel_emails_opened",
        "funnel_nps_responses",
        "funnel_nps_promoters",
        "funnel_nps_detractors",
        "funnel_mrr_new",
        "funnel_customers_new",
        "funnel_customers_reactivated",
        "funnel_customers_churned",
        // Per-key KPIs, not summed: the engine's gross margin and LTV constant
        // are recovered from them (see [`Constants`]).
        "funnel_cac_payback_months",
        "funnel_ltv",
        "funnel_customer_churn_ratio",
    ],
]);

/// The current-state series the board reads (no window): those the page's
/// history sums.
pub(crate) const STATE_INPUTS: &[&str] = crate::export::board::SAMPLED_STATE;

// Indices into INPUTS.
const SPEND: usize = 0;
const AD_SPEND: usize = 1;
const IMPRESSIONS: usize = 2;
const CLICKS: usize = 3;
const LEADS: usize = 4;
const MQLS: usize = 5;
const SQLS: usize = 6;
const OPPS: usize = 7;
const WON: usize = 8;
const LOST: usize = 9;
const REVENUE: usize = 10;
const CYCLE_MEAN: usize = 11;
const SESSIONS: usize = 12;
const BOUNCES: usize = 13;
const DELIVERED: usize = 14;
const OPENED: usize = 15;
const NPS_RESPONSES: usize = 16;
const PROMOTERS: usize = 17;
const DETRACTORS: usize = 18;
const MRR_NEW: usize = 19;
const CUSTOMERS_NEW: usize = 20;
const CUSTOMERS_REACTIVATED: usize = 21;
const CUSTOMERS_CHURNED: usize = 22;
const PAYBACK: usize = 23;
const LTV: usize = 24;
const CHURN_RATIO: usize = 25;

/// Two settings of the engine that LTV and CAC payback need and that are
/// no series: `gross_margin`, and `gross_margin * W / month` for the
/// window. Recovered exactly from the engine's own per-key KPIs, as the
/// recording rules do (deploy/prometheus/recording-rules.yml):
/// gross_margin = spend / (mrr_new * cac_payback_months) and
/// gross_margin * W / month = ltv * customer_churn_ratio / arpa.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Constants {
    pub gross_margin: Option<f64>,
    pub(crate) gm_w_month: Option<f64>,
    /// A closed calendar period (`last_month`, `last_quarter`): its
    /// starting stock is today's minus the movement since the period
    /// began, which its own sums do not hold, so roll-ups over a starting
    /// stock are absent (the engine's per-key values have it).
    pub closed: bool,
}

/// Sums of the inputs over a group of keys. `cycle_s` is the sum of the won
/// deals' sales cycles (mean times deals won, per key), so that the mean of
/// a group is weighted by its deals, as the engine's own mean is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub v: [f64; INPUTS.len()],
    pub(crate) cycle_s: f64,
    /// Current MRR and customers of the group's keys (state, no window).
    pub mrr: f64,
    pub customers: f64,
    pub c: Constants,
}

impl Sums {
    fn add_key(&mut self, key: &HashMap<usize, f64>, state: Option<&[f64; 2]>) {
        for (i, x) in key {
            match *i {
                CYCLE_MEAN => self.cycle_s += x * key.get(&WON).copied().unwrap_or(0.0),
                PAYBACK | LTV | CHURN_RATIO => {}
                i => self.v[i] += x,
            }
        }
        if let Some([mrr, customers]) = state {
            self.mrr += mrr;
            self.customers += customers;
        }
    }
}

fn div(num: f64, den: f64) -> Option<f64> {
    (den != 0.0).then(|| num / den)
}

/// How a column's values print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Money,
    Percent,
    /// A plain number, two decimals (LTV:CAC, months, NPS points).
    Number,
}

pub(crate) struct Column {
    /// Short header shown on the board.
    pub header: &'static str,
    /// The metric of METRICS.md the column is (rolled up).
    pub metric: &'static str,
    pub unit: Unit,
    pub value: fn(&Sums) -> Option<f64>,
    /// A v2 column: shown only while the board's total has a value.
    pub v2: bool,
}

/// The board's KPI columns, in display order.
pub(crate) static COLUMNS: &[Column] = &[
    Column {
        header: "SPEND",
        metric: "funnel_spend",
        unit: Unit::Money,
        value: |s| Some(s.v[SPEND]),
        v2: false,
    },
    Column {
        header: "CLICKS",
        metric: "funnel_clicks",
        unit: Unit::Count,
        value: |s| Some(s.v[CLICKS]),
        v2: false,
    },
    Column {
        header: "CTR",
        metric: "funnel_ctr_ratio",
        unit: Unit::Percent,
        value: |s| div(s.v[CLICKS], s.v[IMPRESSIONS]),
        v2: false,
    },
    Column {
        header: "LEADS",
        metric: "funnel_leads",
        unit: Unit::Count,
        value: |s| Some(s.v[LEADS]),
        v2: false,
    },
    Column {
        header: "CPL",
        metric: "funnel_cpl",
        unit: Unit::Money,
        value: |s| div(s.v[SPEND], s.v[LEADS]),
        v2: false,
    },
    Column {
        header: "MQLS",
        metric: "funnel_mqls",
        unit: Unit::Count,
        value: |s| Some(s.v[MQLS]),
        v2: false,
    },
    Column {
        header: "SQLS",
        metric: "funnel_sqls",
        unit: Unit::Count,
        value: |s| Some(s.v[SQLS]),
        v2: false,
    },
    Column {
        header: "OPPS",
        metric: "funnel_opportunities",
        unit: Unit::Count,
        value: |s| Some(s.v[OPPS]),
        v2: false,
    },
    Column {
        header: "WON",
        metric: "funnel_deals_won",
        unit: Unit::Count,
        value: |s| Some(s.v[WON]),
        v2: false,
    },
    Column {
        header: "WIN",
        metric: "funnel_win_ratio",
        unit: Unit::Percent,
        value: |s| div(s.v[WON], s.v[WON] + s.v[LOST]),
        v2: false,
    },
    Column {
        header: "CAC",
        metric: "funnel_cac",
        unit: Unit::Money,
        value: |s| div(s.v[SPEND], s.v[WON]),
        v2: false,
    },
    Column {
        header: "REVENUE",
        metric: "funnel_revenue_won",
        unit: Unit::Money,
        value: |s| Some(s.v[REVENUE]),
        v2: false,
    },
    Column {
        header: "ROAS",
        metric: "funnel_roas_ratio",
        unit: Unit::Percent,
        value: |s| div(s.v[REVENUE], s.v[AD_SPEND]),
        v2: false,
    },
    Column {
        header: "VELOCITY/D",
        metric: "funnel_pipeline_velocity",
        unit: Unit::Money,
        value: velocity,
        v2: false,
    },
    Column {
        header: "LTV:CAC",
        metric: "funnel_ltv_to_cac_ratio",
        unit: Unit::Number,
        value: ltv_to_cac,
        v2: true,
    },
    Column {
        header: "PAYBACK/MO",
        metric: "funnel_cac_payback_months",
        unit: Unit::Number,
        value: |s| {
            let gm = s.c.gross_margin?;
            div(s.v[SPEND], s.v[MRR_NEW] * gm).filter(|_| s.v[MRR_NEW] > 0.0)
        },
        v2: true,
    },
    Column {
        header: "BOUNCE",
        metric: "funnel_bounce_ratio",
        unit: Unit::Percent,
        value: |s| div(s.v[BOUNCES], s.v[SESSIONS]),
        v2: true,
    },
    Column {
        header: "OPEN",
        metric: "funnel_email_open_ratio",
        unit: Unit::Percent,
        value: |s| div(s.v[OPENED], s.v[DELIVERED]),
        v2: true,
    },
    Column {
        header: "NPS",
        metric: "funnel_nps_score",
        unit: Unit::Number,
        value: |s| {
            div(
                100.0 * (s.v[PROMOTERS] - s.v[DETRACTORS]),
                s.v[NPS_RESPONSES],
            )
        },
        v2: true,
    },
];

/// ltv / cac with ltv = arpa * gross_margin / monthly churn, every factor
/// from the group's sums (METRICS.md v2): arpa = MRR / customers (both
/// positive), churn = churned / customers at the window's start (positive).
fn ltv_to_cac(s: &Sums) -> Option<f64> {
    if s.c.closed {
        return None;
    }
    let gm_w = s.c.gm_w_month?;
    if s.mrr <= 0.0 || s.customers <= 0.0 {
        return None;
    }
    let arpa = s.mrr / s.customers;
    let start =
        s.customers - (s.v[CUSTOMERS_NEW] + s.v[CUSTOMERS_REACTIVATED] - s.v[CUSTOMERS_CHURNED]);
    if start <= 0.0 || s.v[CUSTOMERS_CHURNED] <= 0.0 {
        return None;
    }
    let churn = s.v[CUSTOMERS_CHURNED] / start;
    let ltv = arpa * gm_w / churn;
    let cac = div(s.v[SPEND], s.v[WON])?;
    div(ltv, cac)
}

/// opportunities * avg_deal_size * win_ratio / (sales_cycle_mean_seconds / 86400),
/// each factor from the group's sums.
fn velocity(s: &Sums) -> Option<f64> {
    let won = s.v[WON];
    let closed = won + s.v[LOST];
    if won == 0.0 || closed == 0.0 || s.cycle_s <= 0.0 {
        return None;
    }
    let avg_deal = s.v[REVENUE] / won;
    let win = won / closed;
    let mean_s = s.cycle_s / won;
    Some(s.v[OPPS] * avg_deal * win / (mean_s / 86_400.0))
}

/// A column by header or metric name (case-insensitive); `name` (the row
/// labels) is column 0, the KPIs follow.
pub(crate) fn column_index(name: &str) -> Option<usize> {
    let n = name.trim().to_ascii_lowercase();
    if matches!(n.as_str(), "name" | "channel" | "campaign") {
        return Some(0);
    }
    COLUMNS
        .iter()
        .position(|c| c.header.to_ascii_lowercase() == n || c.metric == n)
        .map(|i| i + 1)
}

pub fn format(unit: Unit, v: Option<f64>) -> String {
    match (unit, v) {
        (_, None) => "-".into(),
        (Unit::Count, Some(x)) => format!("{x:.0}"),
        (Unit::Money, Some(x)) => format!("{x:.2}"),
        (Unit::Percent, Some(x)) => format!("{:.2}%", x * 100.0),
        (Unit::Number, Some(x)) => format!("{x:.2}"),
    }
}

/// What a row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum View {
    #[default]
    Channel,
    Campaign,
    ChannelCampaign,
}

impl View {
    pub fn next(self) -> View {
        match self {
            View::Channel => View::Campaign,
            View::Campaign => View::ChannelCampaign,
            View::ChannelCampaign => View::Channel,
        }
    }
    pub fn headers(self) -> &'static [&'static str] {
        match self {
            View::Channel => &["CHANNEL"],
            View::Campaign => &["CAMPAIGN"],
            View::ChannelCampaign => &["CHANNEL", "CAMPAIGN"],
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            View::Channel => "channel",
            View::Campaign => "campaign",
            View::ChannelCampaign => "channel/campaign",
        }
    }
}

/// A `--by` value that names no view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}`: use channel, campaign or channel/campaign")]
pub(crate) struct UnknownView(pub String);

impl std::str::FromStr for View {
    type Err = UnknownView;
    fn from_str(s: &str) -> Result<View, UnknownView> {
        match s.trim() {
            "channel" => Ok(View::Channel),
            "campaign" => Ok(View::Campaign),
            "channel/campaign" | "channel,campaign" | "key" => Ok(View::ChannelCampaign),
            other => Err(UnknownView(other.to_string())),
        }
    }
}

/// The latest value of every input series, per key and window, kept up to
/// date from the API's snapshot and change events.
#[derive(Debug, Default, Clone)]
pub struct Store {
    /// (channel, campaign) -> window -> input index -> value.
    keys: BTreeMap<(String, String), BTreeMap<String, HashMap<usize, f64>>>,
    /// (channel, campaign) -> [MRR, customers] now (0 while absent).
    state: BTreeMap<(String, String), [f64; 2]>,
    windows: BTreeSet<String>,
    /// Engine time of the last update, epoch ms.
    pub now: i64,
}

impl Store {
    /// Applies a full snapshot (`full`: replaces everything) or the changes
    /// of a stream event (`value: None` removes a series).
    pub fn apply(&mut self, snap: &Snapshot, full: bool) {
        if full {
            self.keys.clear();
            self.state.clear();
            self.windows.clear();
        }
        self.now = snap.now;
        for s in &snap.series {
            if let Some(i) = STATE_INPUTS.iter().position(|m| *m == s.metric) {
                if let (Some(ch), Some(cp), None) = (
                    s.labels.get("channel"),
                    s.labels.get("campaign"),
                    s.labels.get("window"),
                ) {
                    let st = self.state.entry((ch.clone(), cp.clone())).or_default();
                    st[i] = s.value.unwrap_or(0.0);
                }
                continue;
            }
            let Some(i) = INPUTS.iter().position(|m| *m == s.metric) else {
                continue;
            };
            let (Some(ch), Some(cp), Some(w)) = (
                s.labels.get("channel"),
                s.labels.get("campaign"),
                s.labels.get("window"),
            ) else {
                continue;
            };
            let key = self.keys.entry((ch.clone(), cp.clone())).or_default();
            match s.value {
                Some(v) => {
                    self.windows.insert(w.clone());
                    key.entry(w.clone()).or_default().insert(i, v);
                }
                None => {
                    if let Some(m) = key.get_mut(w) {
                        m.remove(&i);
                    }
                }
            }
        }
    }

    /// The windows served, shortest first (calendar windows after the
    /// rolling ones, by name).
    pub fn windows(&self) -> Vec<String> {
        let mut w: Vec<String> = self.windows.iter().cloned().collect();
        // Rolling windows by length, then calendar windows in the
        // contract's order, then anything else by name.
        w.sort_by_key(|w| match crate::config::parse_duration_ms(w) {
            Ok(ms) => (0, ms, String::new()),
            Err(_) => match crate::config::CalWindow::ALL
                .iter()
                .position(|c| c.label() == w)
            {
                Some(i) => (1, i as i64, String::new()),
                None => (2, 0, w.clone()),
            },
        });
        w
    }

    /// The engine's constants for `window`, from the first key that
    /// publishes the KPIs they are read from.
    pub(crate) fn constants(&self, window: &str) -> Constants {
        let mut c = Constants {
            closed: matches!(window, "last_month" | "last_quarter"),
            ..Constants::default()
        };
        for (k, windows) in &self.keys {
            let Some(m) = windows.get(window) else {
                continue;
            };
            let g = |i: usize| m.get(&i).copied().unwrap_or(0.0);
            if c.gross_margin.is_none() && g(PAYBACK) > 0.0 && g(MRR_NEW) > 0.0 && g(SPEND) > 0.0 {
                c.gross_margin = Some(g(SPEND) / (g(MRR_NEW) * g(PAYBACK)));
            }
            let [mrr, customers] = self.state.get(k).copied().unwrap_or_default();
            if c.gm_w_month.is_none()
                && g(LTV) > 0.0
                && g(CHURN_RATIO) > 0.0
                && mrr > 0.0
                && customers > 0.0
            {
                c.gm_w_month = Some(g(LTV) * g(CHURN_RATIO) / (mrr / customers));
            }
            if c.gross_margin.is_some() && c.gm_w_month.is_some() {
                break;
            }
        }
        c
    }

    /// The rows of one view and window whose labels match `filter`,
    /// unsorted, and their total.
    pub fn rows(&self, view: View, window: &str, filter: &str) -> (Vec<Row>, Row) {
        let filter = filter.to_lowercase();
        let c = self.constants(window);
        let mut groups: BTreeMap<Vec<String>, Sums> = BTreeMap::new();
        let mut total = Sums {
            c,
            ..Sums::default()
        };
        for ((ch, cp), windows) in &self.keys {
            let Some(key) = windows.get(window) else {
                continue;
            };
            let name = match view {
                View::Channel => vec![ch.clone()],
                View::Campaign => vec![cp.clone()],
                View::ChannelCampaign => vec![ch.clone(), cp.clone()],
            };
            if !matches(&name, &filter) {
                continue;
            }
            let state = self.state.get(&(ch.clone(), cp.clone()));
            groups
                .entry(name)
                .or_insert_with(|| Sums {
                    c,
                    ..Sums::default()
                })
                .add_key(key, state);
            total.add_key(key, state);
        }
        let rows = groups.into_iter().map(|(n, s)| Row::of(n, &s)).collect();
        let mut total_name = vec!["TOTAL".to_string()];
        total_name.resize(view.headers().len(), String::new());
        (rows, Row::of(total_name, &total))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub name: Vec<String>,
    pub values: Vec<Option<f64>>,
    pub cells: Vec<String>,
}

impl Row {
    fn of(name: Vec<String>, s: &Sums) -> Row {
        let values: Vec<Option<f64>> = COLUMNS.iter().map(|c| (c.value)(s)).collect();
        let cells = COLUMNS
            .iter()
            .zip(&values)
            .map(|(c, v)| format(c.unit, *v))
            .collect();
        Row {
            name,
            values,
            cells,
        }
    }
}

/// Case-insensitive substring match on any of a row's labels (`lower`:
/// the filter, lower case).
fn matches(name: &[String], lower: &str) -> bool {
    lower.is_empty() || name.iter().any(|n| n.to_lowercase().contains(lower))
}

/// Sorts rows by column `col` (0: the labels); rows without a value last
/// in either direction, ties by labels.
pub fn sort(rows: &mut [Row], col: usize, descending: bool) {
    rows.sort_by(|a, b| {
        let ord = if col == 0 {
            a.name.cmp(&b.name)
        } else {
            match (a.values[col - 1], b.values[col - 1]) {
                (Some(x), Some(y)) => {
                    let o = x.total_cmp(&y);
                    if descending {
                        o.reverse()
                    } else {
                        o
                    }
                }
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            }
        };
        let ord = if col == 0 && descending {
            ord.reverse()
        } else {
            ord
        };
        ord.then_with(|| a.name.cmp(&b.name))
    });
}

/// The columns shown (indices into [`COLUMNS`]): every v1 column, and the
/// v2 ones whose total has a value (an engine or a window without web,
/// email, survey or subscription events shows none of them).
pub fn visible(total: &Row) -> Vec<usize> {
    COLUMNS
        .iter()
        .enumerate()
        .filter(|(i, c)| !c.v2 || total.values[*i].is_some())
        .map(|(i, _)| i)
        .collect()
}

/// The header cells of a view: labels, then the KPI columns `cols`.
pub fn headers(view: View, cols: &[usize]) -> Vec<String> {
    view.headers()
        .iter()
        .map(|h| h.to_string())
        .chain(cols.iter().map(|i| COLUMNS[*i].header.to_string()))
        .collect()
}

impl Row {
    /// The row with only the columns `cols`.
    pub(crate) fn project(&self, cols: &[usize]) -> Row {
        Row {
            name: self.name.clone(),
            values: cols.iter().map(|i| self.values[*i]).collect(),
            cells: cols.iter().map(|i| self.cells[*i].clone()).collect(),
        }
    }
}

/// What to show: everything the keys of the board choose.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub view: View,
    pub window: String,
    pub sort: usize,
    pub descending: bool,
    pub filter: String,
}

/// The board's rows as shown: filtered and sorted, and the total of the
/// filtered rows.
pub fn shown(store: &Store, s: &Settings) -> (Vec<Row>, Row) {
    let (mut rows, total) = store.rows(s.view, &s.window, &s.filter);
    sort(&mut rows, s.sort, s.descending);
    (rows, total)
}

/// A one-line description of what the board shows.
pub fn title(url: &str, store: &Store, s: &Settings) -> String {
    let sort = if s.sort == 0 {
        s.view.headers().join("/")
    } else {
        COLUMNS[s.sort - 1].header.to_string()
    };
    let mut t = format!(
        "funnelstream tail  {url}  window {}  by {}  sorted by {sort} {}",
        s.window,
        s.view.label(),
        if s.descending { "desc" } else { "asc" },
    );
    if !s.filter.is_empty() {
        t.push_str(&format!("  filter \"{}\"", s.filter));
    }
    if store.now > 0 {
        t.push_str(&format!(
            "  engine time {}",
            crate::decode::time::format_rfc3339_ms(store.now)
        ));
    }
    t
}

/// Column widths of a table (header and rows).
pub(crate) fn widths(head: &[String], rows: &[&Row]) -> Vec<usize> {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.name.iter().chain(&r.cells).enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    w
}

/// The board as plain text: a title line, the header, the rows and the
/// total; labels left-aligned, numbers right-aligned, two spaces apart.
pub fn text(url: &str, store: &Store, s: &Settings) -> String {
    let (rows, total) = shown(store, s);
    let cols = visible(&total);
    let head = headers(s.view, &cols);
    let rows: Vec<Row> = rows.iter().map(|r| r.project(&cols)).collect();
    let total = total.project(&cols);
    let all: Vec<&Row> = rows.iter().chain(std::iter::once(&total)).collect();
    let w = widths(&head, &all);
    let labels = s.view.headers().len();
    let mut out = title(url, store, s);
    out.push('\n');
    let line = |cells: Vec<&str>| -> String {
        let mut l: Vec<String> = Vec::new();
        for (i, c) in cells.iter().enumerate() {
            let wi = w[i];
            l.push(if i < labels {
                format!("{c:<wi$}")
            } else {
                format!("{c:>wi$}")
            });
        }
        let mut l = l.join("  ").trim_end().to_string();
        l.push('\n');
        l
    };
    out.push_str(&line(head.iter().map(String::as_str).collect()));
    for r in &all {
        out.push_str(&line(
            r.name.iter().chain(&r.cells).map(String::as_str).collect(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::api::KpiSeries;

    /// The board reads and shows families of the one catalogue
    /// (`kpi::FAMILIES`): a family renamed there fails here instead of
    /// leaving an empty column.
    #[test]
    fn inputs_and_columns_are_families_of_the_catalogue() {
        crate::export::board::assert_catalogue_families(
            INPUTS
                .iter()
                .copied()
                .chain(COLUMNS.iter().map(|c| c.metric)),
            STATE_INPUTS,
        );
    }

    fn series(metric: &str, ch: &str, cp: &str, w: &str, v: f64) -> KpiSeries {
        KpiSeries {
            metric: metric.into(),
            labels: [("channel", ch), ("campaign", cp), ("window", w)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: Some(v),
        }
    }

    #[test]
    fn ratios_roll_up_as_sum_over_sum() {
        let mut st = Store::default();
        st.apply(
            &Snapshot {
                now: 1,
                series: vec![
                    series("funnel_spend", "a", "x", "1d", 100.0),
                    series("funnel_leads", "a", "x", "1d", 1.0),
                    series("funnel_spend", "a", "y", "1d", 300.0),
                    series("funnel_leads", "a", "y", "1d", 3.0),
                    series("funnel_cpl", "a", "y", "1d", 100.0),
                    series("funnel_spend", "b", "z", "1d", 50.0),
                    series("funnel_spend", "b", "z", "5m", 5.0),
                ],
            },
            true,
        );
        assert_eq!(st.windows(), ["5m", "1d"]);
        let (rows, total) = st.rows(View::Channel, "1d", "");
        let cpl = column_index("funnel_cpl").unwrap() - 1;
        // (100 + 300) / (1 + 3), not the mean of 100 and 100.
        assert_eq!(rows[0].values[cpl], Some(100.0));
        assert_eq!(rows[1].values[cpl], None);
        assert_eq!(total.values[0], Some(450.0));
        assert_eq!(total.values[cpl], Some(112.5));
        // A removed series leaves the roll-up.
        let mut gone = series("funnel_spend", "a", "y", "1d", 0.0);
        gone.value = None;
        st.apply(
            &Snapshot {
                now: 2,
                series: vec![gone],
            },
            false,
        );
        assert_eq!(st.rows(View::Channel, "1d", "").1.values[0], Some(150.0));
    }

    /// Hand-worked: gross margin 0.5 and a 30-day window (W / month = 1).
    /// Key a: spend 300, 3 won, new MRR 100, so CAC payback = 300 / (100 x
    /// 0.5) = 6 months; MRR 1000 over 10 customers (arpa 100), 2 new and 1
    /// churned: 9 at the start, churn 1/9, LTV = 100 x 0.5 / (1/9) = 450.
    /// Key b: spend 100, 1 won, nothing else. Channel a: LTV:CAC 450 / 100
    /// = 4.5; the total: CAC (300 + 100) / 4 = 100, payback 400 / 50 = 8.
    #[test]
    fn v2_columns_roll_up_with_the_engines_constants() {
        let mut st = Store::default();
        let mut mrr = series("funnel_mrr", "a", "x", "", 1000.0);
        mrr.labels.remove("window");
        let mut customers = series("funnel_customers", "a", "x", "", 10.0);
        customers.labels.remove("window");
        let w = "30d";
        st.apply(
            &Snapshot {
                now: 1,
                series: vec![
                    series("funnel_spend", "a", "x", w, 300.0),
                    series("funnel_deals_won", "a", "x", w, 3.0),
                    series("funnel_mrr_new", "a", "x", w, 100.0),
                    series("funnel_customers_new", "a", "x", w, 2.0),
                    series("funnel_customers_churned", "a", "x", w, 1.0),
                    series("funnel_customers_reactivated", "a", "x", w, 0.0),
                    series("funnel_cac_payback_months", "a", "x", w, 6.0),
                    series("funnel_ltv", "a", "x", w, 450.0),
                    series("funnel_customer_churn_ratio", "a", "x", w, 1.0 / 9.0),
                    series("funnel_sessions", "a", "x", w, 200.0),
                    series("funnel_bounces", "a", "x", w, 90.0),
                    series("funnel_nps_responses", "a", "x", w, 10.0),
                    series("funnel_nps_promoters", "a", "x", w, 6.0),
                    series("funnel_nps_detractors", "a", "x", w, 2.0),
                    mrr,
                    customers,
                    series("funnel_spend", "b", "y", w, 100.0),
                    series("funnel_deals_won", "b", "y", w, 1.0),
                ],
            },
            true,
        );
        let c = st.constants(w);
        assert!((c.gross_margin.unwrap() - 0.5).abs() < 1e-12);
        assert!((c.gm_w_month.unwrap() - 0.5).abs() < 1e-12);
        let col = |name: &str| column_index(name).unwrap() - 1;
        let (rows, total) = st.rows(View::Channel, w, "");
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(close(rows[0].values[col("LTV:CAC")], 4.5), "{:?}", rows[0]);
        assert!(close(rows[0].values[col("PAYBACK/MO")], 6.0));
        assert!(close(rows[0].values[col("BOUNCE")], 0.45));
        assert!(close(rows[0].values[col("NPS")], 40.0));
        assert_eq!(rows[1].values[col("NPS")], None);
        assert_eq!(rows[1].values[col("LTV:CAC")], None, "no customers");
        assert!(close(total.values[col("funnel_ltv_to_cac_ratio")], 4.5));
        assert!(close(total.values[col("PAYBACK/MO")], 8.0));
        // No email events: the OPEN column is hidden, the others shown.
        let shown: Vec<&str> = visible(&total).iter().map(|i| COLUMNS[*i].header).collect();
        assert!(shown.contains(&"NPS") && shown.contains(&"LTV:CAC"));
        assert!(!shown.contains(&"OPEN"));
    }

    #[test]
    fn sorting_puts_missing_values_last() {
        let row = |n: &str, v: Option<f64>| Row {
            name: vec![n.into()],
            values: vec![v; COLUMNS.len()],
            cells: vec![],
        };
        let mut rows = vec![row("a", Some(1.0)), row("b", None), row("c", Some(3.0))];
        sort(&mut rows, 1, true);
        assert_eq!(
            rows.iter().map(|r| &r.name[0][..]).collect::<Vec<_>>(),
            ["c", "a", "b"]
        );
        sort(&mut rows, 1, false);
        assert_eq!(
            rows.iter().map(|r| &r.name[0][..]).collect::<Vec<_>>(),
            ["a", "c", "b"]
        );
        sort(&mut rows, 0, true);
        assert_eq!(
            rows.iter().map(|r| &r.name[0][..]).collect::<Vec<_>>(),
            ["c", "b", "a"]
        );
    }
}
