//! The board of `funnelstream tail`: the windowed counts of every
//! (channel, campaign) key as the KPI API serves them, rolled up per
//! channel, per campaign or per (channel, campaign), with the headline KPIs
//! of one window as columns. Ratios are computed from the rolled-up counts
//! (sum of numerator over sum of denominator, METRICS.md), never averaged.
//! Knows no terminal: [`text`] is the plain board of `--once`, the
//! full-screen board (`screen.rs`) draws the same [`Board`].

use crate::export::api::Snapshot;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The series the board reads, by metric name (all windowed).
pub const INPUTS: &[&str] = &[
    "funnel_spend",
    "funnel_ad_spend",
    "funnel_impressions",
    "funnel_clicks",
    "funnel_leads",
    "funnel_mqls",
    "funnel_sqls",
    "funnel_opportunities",
    "funnel_deals_won",
    "funnel_deals_lost",
    "funnel_revenue_won",
    "funnel_sales_cycle_mean_seconds",
];

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

/// Sums of the inputs over a group of keys. `cycle_s` is the sum of the won
/// deals' sales cycles (mean times deals won, per key), so that the mean of
/// a group is weighted by its deals, as the engine's own mean is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub v: [f64; INPUTS.len()],
    pub cycle_s: f64,
}

impl Sums {
    fn add_key(&mut self, key: &HashMap<usize, f64>) {
        for (i, x) in key {
            if *i == CYCLE_MEAN {
                self.cycle_s += x * key.get(&WON).copied().unwrap_or(0.0);
            } else {
                self.v[*i] += x;
            }
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
}

pub struct Column {
    /// Short header shown on the board.
    pub header: &'static str,
    /// The metric of METRICS.md the column is (rolled up).
    pub metric: &'static str,
    pub unit: Unit,
    pub value: fn(&Sums) -> Option<f64>,
}

/// The board's KPI columns, in display order.
pub static COLUMNS: &[Column] = &[
    Column {
        header: "SPEND",
        metric: "funnel_spend",
        unit: Unit::Money,
        value: |s| Some(s.v[SPEND]),
    },
    Column {
        header: "CLICKS",
        metric: "funnel_clicks",
        unit: Unit::Count,
        value: |s| Some(s.v[CLICKS]),
    },
    Column {
        header: "CTR",
        metric: "funnel_ctr_ratio",
        unit: Unit::Percent,
        value: |s| div(s.v[CLICKS], s.v[IMPRESSIONS]),
    },
    Column {
        header: "LEADS",
        metric: "funnel_leads",
        unit: Unit::Count,
        value: |s| Some(s.v[LEADS]),
    },
    Column {
        header: "CPL",
        metric: "funnel_cpl",
        unit: Unit::Money,
        value: |s| div(s.v[SPEND], s.v[LEADS]),
    },
    Column {
        header: "MQLS",
        metric: "funnel_mqls",
        unit: Unit::Count,
        value: |s| Some(s.v[MQLS]),
    },
    Column {
        header: "SQLS",
        metric: "funnel_sqls",
        unit: Unit::Count,
        value: |s| Some(s.v[SQLS]),
    },
    Column {
        header: "OPPS",
        metric: "funnel_opportunities",
        unit: Unit::Count,
        value: |s| Some(s.v[OPPS]),
    },
    Column {
        header: "WON",
        metric: "funnel_deals_won",
        unit: Unit::Count,
        value: |s| Some(s.v[WON]),
    },
    Column {
        header: "WIN",
        metric: "funnel_win_ratio",
        unit: Unit::Percent,
        value: |s| div(s.v[WON], s.v[WON] + s.v[LOST]),
    },
    Column {
        header: "CAC",
        metric: "funnel_cac",
        unit: Unit::Money,
        value: |s| div(s.v[SPEND], s.v[WON]),
    },
    Column {
        header: "REVENUE",
        metric: "funnel_revenue_won",
        unit: Unit::Money,
        value: |s| Some(s.v[REVENUE]),
    },
    Column {
        header: "ROAS",
        metric: "funnel_roas_ratio",
        unit: Unit::Percent,
        value: |s| div(s.v[REVENUE], s.v[AD_SPEND]),
    },
    Column {
        header: "VELOCITY/D",
        metric: "funnel_pipeline_velocity",
        unit: Unit::Money,
        value: velocity,
    },
];

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
pub fn column_index(name: &str) -> Option<usize> {
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
    }
}

/// What a row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
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

impl std::str::FromStr for View {
    type Err = String;
    fn from_str(s: &str) -> Result<View, String> {
        match s.trim() {
            "channel" => Ok(View::Channel),
            "campaign" => Ok(View::Campaign),
            "channel/campaign" | "channel,campaign" | "key" => Ok(View::ChannelCampaign),
            other => Err(format!(
                "`{other}`: use channel, campaign or channel/campaign"
            )),
        }
    }
}

/// The latest value of every input series, per key and window, kept up to
/// date from the API's snapshot and change events.
#[derive(Debug, Default, Clone)]
pub struct Store {
    /// (channel, campaign) -> window -> input index -> value.
    keys: BTreeMap<(String, String), BTreeMap<String, HashMap<usize, f64>>>,
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
            self.windows.clear();
        }
        self.now = snap.now;
        for s in &snap.series {
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
        w.sort_by_key(|w| match crate::config::parse_duration_ms(w) {
            Ok(ms) => (0, ms, String::new()),
            Err(_) => (1, 0, w.clone()),
        });
        w
    }

    /// The rows of one view and window whose labels match `filter`,
    /// unsorted, and their total.
    pub fn rows(&self, view: View, window: &str, filter: &str) -> (Vec<Row>, Row) {
        let filter = filter.to_lowercase();
        let mut groups: BTreeMap<Vec<String>, Sums> = BTreeMap::new();
        let mut total = Sums::default();
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
            groups.entry(name).or_default().add_key(key);
            total.add_key(key);
        }
        let rows = groups.into_iter().map(|(n, s)| Row::of(n, &s)).collect();
        let mut total_name = vec!["TOTAL".to_string()];
        total_name.resize(view.headers().len(), String::new());
        (rows, Row::of(total_name, &total))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
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

/// The header cells of a view: labels, then the KPI columns.
pub fn headers(view: View) -> Vec<String> {
    view.headers()
        .iter()
        .map(|h| h.to_string())
        .chain(COLUMNS.iter().map(|c| c.header.to_string()))
        .collect()
}

/// What to show: everything the keys of the board choose.
#[derive(Debug, Clone)]
pub struct Settings {
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
pub fn widths(head: &[String], rows: &[&Row]) -> Vec<usize> {
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
    let head = headers(s.view);
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
