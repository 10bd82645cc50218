//! The live KPI board at `/` and the two small API endpoints it needs
//! besides `/api/v1/kpis/stream` (README, "The board"):
//!
//! - `GET /api/v1/kpis/history[?window=W]`: the headline inputs summed over
//!   every key, sampled every [`HISTORY_STEP`] over the last hour of the
//!   process ([`HISTORY_POINTS`] samples, oldest first), for the board's
//!   sparklines. Only counts and money are sampled; a client computes the
//!   ratios from them (sum over sum, as the recording rules do).
//! - `GET /api/v1/health`: readiness and the engine's health counters as
//!   JSON, so that a browser need not read the whole `/metrics`.
//!
//! The page itself is static (HTML, CSS and JavaScript embedded in the
//! binary, no external asset) and reads only the public API.

use crate::export::prometheus::{visit_copied, SeriesVisitor};
use crate::kpi::{Value, FAMILIES};
use crate::live::LiveState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the history is sampled.
pub(crate) const HISTORY_STEP: Duration = Duration::from_secs(10);
/// Samples kept: one hour.
pub(crate) const HISTORY_POINTS: usize = 360;

/// The funnel's windowed counts and money, top to bottom: what both
/// boards (the page at `/` and `tail`'s) roll up first.
pub(crate) const FUNNEL: [&str; 9] = [
    "funnel_impressions",
    "funnel_clicks",
    "funnel_leads",
    "funnel_mqls",
    "funnel_sqls",
    "funnel_opportunities",
    "funnel_deals_won",
    "funnel_deals_lost",
    "funnel_revenue_won",
];

/// `parts` one after the other as one array of `N` names; `N` must be
/// their total length (checked when the constant is evaluated, so a wrong
/// `N` does not compile).
pub const fn concat<const N: usize>(parts: &[&[&'static str]]) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut n, mut p) = (0, 0);
    while p < parts.len() {
        let mut i = 0;
        while i < parts[p].len() {
            out[n] = parts[p][i];
            (n, i) = (n + 1, i + 1);
        }
        p += 1;
    }
    assert!(n == N, "concat: N is not the parts' total length");
    out
}

/// The windowed families summed over keys in each sample (counts and
/// money: sums of sums are exact roll-ups).
pub(crate) const SAMPLED: [&str; 28] = concat(&[
    &FUNNEL,
    &[
        "funnel_ad_spend",
        "funnel_spend",
        "funnel_mrr_new",
        "funnel_mrr_expansion",
        "funnel_mrr_reactivation",
        "funnel_mrr_contraction",
        "funnel_mrr_churned",
        "funnel_customers_new",
        "funnel_customers_churned",
        "funnel_customers_reactivated",
        "funnel_sessions",
        "funnel_bounces",
        "funnel_emails_sent",
        "funnel_emails_delivered",
        "funnel_emails_opened",
        "funnel_emails_clicked",
        "funnel_nps_responses",
        "funnel_nps_promoters",
        "funnel_nps_detractors",
    ],
]);

/// The current-state families summed over keys in each sample.
pub(crate) const SAMPLED_STATE: &[&str] = &["funnel_mrr", "funnel_customers"];

/// The sum of the won deals' sales cycles (mean x deals won per key): the
/// mean of a roll-up is this over the summed deals won.
pub(crate) const CYCLE_SUM: &str = "funnel_sales_cycle_seconds_sum";

/// One sample: engine time, the sums per window, the current-state sums.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Point {
    pub now: i64,
    pub windows: BTreeMap<String, BTreeMap<String, f64>>,
    pub state: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct HistoryReply {
    pub(crate) step_seconds: u64,
    pub points: Vec<Point>,
}

#[derive(Default)]
struct Summer {
    point: Point,
    /// The current key's sales-cycle mean and deals won, per window.
    cycle: HashMap<String, (f64, f64)>,
}

impl Summer {
    fn flush_key(&mut self) {
        for (w, (mean, won)) in self.cycle.drain() {
            *self
                .point
                .windows
                .entry(w)
                .or_default()
                .entry(CYCLE_SUM.to_string())
                .or_default() += mean * won;
        }
    }
}

impl SeriesVisitor for Summer {
    fn key(&mut self, _channel: &str, _campaign: &str) {
        self.flush_key();
    }

    fn series(&mut self, family: usize, extra: &[(&'static str, &str)], value: Value) {
        let name = FAMILIES[family].name;
        let x = value.as_f64();
        match extra {
            [] if SAMPLED_STATE.contains(&name) => {
                *self.point.state.entry(name.to_string()).or_default() += x;
            }
            [("window", w)] => {
                if name == "funnel_sales_cycle_mean_seconds" {
                    self.cycle.entry(w.to_string()).or_default().0 = x;
                    return;
                }
                if !SAMPLED.contains(&name) {
                    return;
                }
                if name == "funnel_deals_won" {
                    self.cycle.entry(w.to_string()).or_default().1 = x;
                }
                *self
                    .point
                    .windows
                    .entry(w.to_string())
                    .or_default()
                    .entry(name.to_string())
                    .or_default() += x;
            }
            _ => {}
        }
    }
}

/// One sample of the engine's state now.
pub fn sample(live: &LiveState) -> Point {
    let (keys, _, now) = live.copy_partitions();
    let mut s = Summer::default();
    visit_copied(&keys, &mut s);
    s.flush_key();
    s.point.now = now;
    s.point
}

/// The last hour of samples, newest last.
#[derive(Default)]
pub(crate) struct History {
    points: Mutex<VecDeque<Arc<Point>>>,
}

impl History {
    /// Samples `live` now and every [`HISTORY_STEP`] until `stop`.
    pub fn start(live: Arc<LiveState>, stop: CancellationToken) -> Arc<History> {
        let h = Arc::new(History::default());
        let me = h.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HISTORY_STEP);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let l = live.clone();
                if let Ok(p) = tokio::task::spawn_blocking(move || sample(&l)).await {
                    me.push(p);
                }
            }
        });
        h
    }

    fn push(&self, p: Point) {
        let mut q = self.points.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == HISTORY_POINTS {
            q.pop_front();
        }
        q.push_back(Arc::new(p));
    }

    /// The samples, oldest first, restricted to one window when given.
    pub(crate) fn reply(&self, window: Option<&str>) -> HistoryReply {
        let q = self.points.lock().unwrap_or_else(|e| e.into_inner());
        let points = q
            .iter()
            .map(|p| {
                let mut p = (**p).clone();
                if let Some(w) = window {
                    p.windows.retain(|k, _| k == w);
                }
                p
            })
            .collect();
        HistoryReply {
            step_seconds: HISTORY_STEP.as_secs(),
            points,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct HistoryQuery {
    pub window: Option<String>,
}

pub async fn history(
    State(live): State<Arc<LiveState>>,
    axum::Extension(h): axum::Extension<Arc<History>>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    if let Err(r) = crate::export::api::served_window(&live.engine.config, q.window.as_deref()) {
        return r.into_response();
    }
    axum::Json(h.reply(q.window.as_deref())).into_response()
}

/// `GET /api/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct HealthReply {
    pub ready: bool,
    /// Why not ready (the body of `/readyz`), when not.
    pub reason: Option<String>,
    pub version: String,
    /// Engine time, epoch milliseconds.
    pub now: i64,
    /// Sums over labels of `funnel_events_ingested_total`,
    /// `funnel_events_rejected_total`, `funnel_events_duplicate_total`,
    /// `funnel_events_late_total`, `funnel_consumer_lag_messages`.
    pub ingested: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub late: u64,
    pub lag: i64,
    /// `funnel_stream_clients`.
    pub(crate) stream_clients: u64,
}

pub(crate) fn health_now(live: &LiveState) -> HealthReply {
    // One partition locked at a time, only to read its counters.
    let mut h = crate::engine::Health::default();
    let mut lag = 0;
    for s in live.slots() {
        if !s.assigned.load(Ordering::Acquire) {
            continue;
        }
        h.add(&s.state.lock().unwrap_or_else(|e| e.into_inner()));
        lag += s.lag.load(Ordering::Acquire).max(0);
    }
    let now = live.engine.clock.now(crate::clock::wall_clock_ms());
    let ready = live.readiness();
    HealthReply {
        ready: ready.is_ok(),
        reason: ready.err().map(|e| e.to_string()),
        version: live.version.to_string(),
        now,
        ingested: h.partition.ingested.iter().sum(),
        rejected: h.partition.rejected.iter().sum(),
        duplicates: h.partition.duplicates,
        late: h.agg.late,
        lag,
        stream_clients: live.streams.clients.load(Ordering::Relaxed),
    }
}

pub async fn health(State(live): State<Arc<LiveState>>) -> Response {
    match tokio::task::spawn_blocking(move || health_now(&live)).await {
        Ok(h) => axum::Json(h).into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "health failed\n",
        )
            .into_response(),
    }
}

const HTML: &str = include_str!("board/board.html");
const CSS: &str = include_str!("board/board.css");
const JS: &str = include_str!("board/board.js");

/// `GET /`: the board, one self-contained page.
pub async fn page(State(live): State<Arc<LiveState>>) -> Response {
    static PAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = PAGE.get_or_init(|| {
        HTML.replace("/*CSS*/", CSS)
            .replace("/*JS*/", JS)
            .replace("{{VERSION}}", live.version)
    });
    let mut r = Response::new(axum::body::Body::from(body.as_str()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Everything is inline: nothing may be loaded from elsewhere.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:",
        ),
    );
    r
}

/// Test support for the lists that pick families by name (here and in
/// `tail`): each of `windowed` must be a family of the one catalogue
/// (`kpi::FAMILIES`) published per window, each of `per_key` one published
/// once per key.
#[cfg(test)]
pub(crate) fn assert_catalogue_families<'a>(
    windowed: impl IntoIterator<Item = &'a str>,
    per_key: &[&str],
) {
    use crate::kpi::{family, Eval};
    for name in windowed {
        assert!(
            matches!(family(name).map(|f| f.eval), Some(Eval::Window(_))),
            "{name} is not a windowed family of kpi::FAMILIES"
        );
    }
    for name in per_key {
        assert!(
            matches!(family(name).map(|f| f.eval), Some(Eval::Key(_))),
            "{name} is not a per-key family of kpi::FAMILIES"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::kpi::family;

    /// What the sampler reads is named after the one catalogue, in the
    /// shape it expects: a family renamed there fails here instead of
    /// leaving a gap in the board's sparklines.
    #[test]
    fn sampled_names_are_families_of_the_catalogue() {
        let windowed = ["funnel_sales_cycle_mean_seconds", "funnel_deals_won"];
        assert_catalogue_families(SAMPLED.iter().chain(&windowed).copied(), SAMPLED_STATE);
        let cycle = CYCLE_SUM.strip_suffix("_sum").unwrap();
        assert!(
            family(cycle).is_none(),
            "{CYCLE_SUM} must not look like a family's"
        );
    }

    /// The sample's sums equal the sums of the API snapshot's series over
    /// keys (the independent path: `/api/v1/kpis`), and the cycle sum is
    /// mean x won per key.
    #[test]
    fn a_sample_sums_the_snapshot() {
        let live = LiveState::new(Engine::new(Default::default()));
        let slot = live.slot("t", 0);
        slot.assigned.store(true, Ordering::Release);
        {
            let mut p = slot.state.lock().unwrap();
            let now = crate::clock::wall_clock_ms();
            for (i, (ch, cp, ty)) in [
                ("search", "a", r#""type":"impression","count":100,"cost":12.5"#),
                ("search", "b", r#""type":"impression","count":50,"cost":2.25"#),
                ("social", "c", r#""type":"click","count":3,"cost":1"#),
                ("search", "a", r#""type":"deal","deal_id":"d1","stage":"won","amount":1000,"created_ts":"2020-01-01T00:00:00Z""#),
                ("social", "c", r#""type":"deal","deal_id":"d2","stage":"won","amount":500,"created_ts":"2020-01-01T00:00:00Z""#),
                ("social", "c", r#""type":"subscription","account_id":"x","change":"new","mrr_delta":99"#),
            ]
            .into_iter()
            .enumerate()
            {
                let line = format!(
                    r#"{{"id":"e{i}","ts":{},"channel":"{ch}","campaign":"{cp}",{ty}}}"#,
                    now - 1000
                );
                let out = p.process_at(line.as_bytes(), now);
                assert!(format!("{out:?}").contains("Applied"), "{line}: {out:?}");
            }
        }
        let p = sample(&live);
        let snap = crate::export::api::snapshot(&live, &Default::default());
        let sum = |m: &str, w: Option<&str>| -> f64 {
            snap.series
                .iter()
                .filter(|s| s.metric == m && s.labels.get("window").map(String::as_str) == w)
                .map(|s| s.value.unwrap())
                .sum()
        };
        let d = &p.windows["1d"];
        assert_eq!(d["funnel_impressions"], 150.0);
        assert_eq!(
            d["funnel_impressions"],
            sum("funnel_impressions", Some("1d"))
        );
        assert_eq!(d["funnel_ad_spend"], sum("funnel_ad_spend", Some("1d")));
        assert_eq!(d["funnel_deals_won"], 2.0);
        let cycle_a = snap
            .series
            .iter()
            .filter(|s| {
                s.metric == "funnel_sales_cycle_mean_seconds"
                    && s.labels.get("window").map(String::as_str) == Some("1d")
            })
            .map(|s| s.value.unwrap())
            .sum::<f64>();
        assert_eq!(d[CYCLE_SUM], cycle_a, "one won deal per key: mean x 1");
        assert_eq!(p.state["funnel_mrr"], 99.0);
        assert_eq!(p.state["funnel_customers"], 1.0);
        assert!(!d.contains_key("funnel_sessions"), "no web events");
    }
}
