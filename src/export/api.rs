//! The KPI API behind `funnelstream tail`: `GET /api/v1/kpis` (a JSON
//! snapshot of every business series, filtered) and
//! `GET /api/v1/kpis/stream` (server-sent events: the full snapshot first,
//! then, every interval, only the series whose value changed or that
//! disappeared).
//!
//! Filters (query parameters, exact matches): `metric`, `window`, `channel`,
//! `campaign`; `interval` (stream only, seconds, default 1, 0.2..=60).

use crate::export::prometheus::{visit_series, SeriesVisitor};
use crate::kpi::{Value, FAMILIES};
use crate::live::LiveState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Filter {
    pub metric: Option<String>,
    pub window: Option<String>,
    pub channel: Option<String>,
    pub campaign: Option<String>,
    pub interval: Option<f64>,
}

/// One series of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KpiSeries {
    pub metric: String,
    /// `channel`, `campaign`, and `window`, `stage` or `change`.
    pub labels: BTreeMap<String, String>,
    /// `null` when the series disappeared (stream only).
    pub value: Option<f64>,
}

impl KpiSeries {
    /// A stable identity: metric name and labels.
    pub fn id(&self) -> String {
        let mut s = self.metric.clone();
        for (k, v) in &self.labels {
            s.push_str(&format!(",{k}={v}"));
        }
        s
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    /// Engine time, epoch milliseconds.
    pub now: i64,
    pub series: Vec<KpiSeries>,
}

struct Collector<'a> {
    filter: &'a Filter,
    keep_key: bool,
    channel: String,
    campaign: String,
    out: Vec<KpiSeries>,
}

impl SeriesVisitor for Collector<'_> {
    fn key(&mut self, channel: &str, campaign: &str) {
        self.keep_key = self.filter.channel.as_deref().is_none_or(|c| c == channel)
            && self
                .filter
                .campaign
                .as_deref()
                .is_none_or(|c| c == campaign);
        self.channel = channel.to_string();
        self.campaign = campaign.to_string();
    }

    fn series(&mut self, family: usize, extra: &[(&'static str, &str)], value: Value) {
        if !self.keep_key {
            return;
        }
        let name = FAMILIES[family].name;
        if self.filter.metric.as_deref().is_some_and(|m| m != name) {
            return;
        }
        if let Some(w) = self.filter.window.as_deref() {
            if extra.iter().any(|(k, v)| *k == "window" && *v != w) {
                return;
            }
        }
        let mut labels = BTreeMap::new();
        labels.insert("channel".to_string(), self.channel.clone());
        labels.insert("campaign".to_string(), self.campaign.clone());
        for (k, v) in extra {
            labels.insert(k.to_string(), v.to_string());
        }
        self.out.push(KpiSeries {
            metric: name.to_string(),
            labels,
            value: Some(value.as_f64()),
        });
    }
}

/// The filtered snapshot of every business series.
pub fn snapshot(live: &LiveState, filter: &Filter) -> Snapshot {
    live.with_partitions(|parts, now| {
        let aggs: Vec<_> = parts.iter().map(|p| &p.agg).collect();
        let mut c = Collector {
            filter,
            keep_key: false,
            channel: String::new(),
            campaign: String::new(),
            out: Vec::new(),
        };
        visit_series(&aggs, now, &mut c);
        Snapshot { now, series: c.out }
    })
}

/// The series of `next` that are new or changed since `prev`, plus those of
/// `prev` that disappeared (value `None`).
pub fn changes(prev: &BTreeMap<String, Option<f64>>, next: &Snapshot) -> Vec<KpiSeries> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in &next.series {
        let id = s.id();
        if prev.get(&id) != Some(&s.value) {
            out.push(s.clone());
        }
        seen.insert(id);
    }
    for id in prev.keys().filter(|id| !seen.contains(*id)) {
        let mut parts = id.split(',');
        let metric = parts.next().unwrap_or_default().to_string();
        let labels = parts
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.push(KpiSeries {
            metric,
            labels,
            value: None,
        });
    }
    out
}

pub async fn kpis(
    axum::extract::State(live): axum::extract::State<Arc<LiveState>>,
    axum::extract::Query(filter): axum::extract::Query<Filter>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::task::spawn_blocking(move || snapshot(&live, &filter)).await {
        Ok(s) => axum::Json(s).into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "snapshot failed\n",
        )
            .into_response(),
    }
}

pub async fn stream(
    axum::extract::State(live): axum::extract::State<Arc<LiveState>>,
    axum::extract::Query(filter): axum::extract::Query<Filter>,
) -> axum::response::sse::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let interval =
        std::time::Duration::from_secs_f64(filter.interval.unwrap_or(1.0).clamp(0.2, 60.0));
    let state = (live, filter, BTreeMap::<String, Option<f64>>::new(), true);
    let s = futures_util::stream::unfold(state, move |(live, filter, prev, first)| async move {
        if !first {
            tokio::time::sleep(interval).await;
        }
        let (l, f) = (live.clone(), filter.clone());
        let snap = tokio::task::spawn_blocking(move || snapshot(&l, &f))
            .await
            .ok()?;
        let changed = changes(&prev, &snap);
        let next_prev = snap.series.iter().map(|s| (s.id(), s.value)).collect();
        let payload = Snapshot {
            now: snap.now,
            series: changed,
        };
        let event = Event::default()
            .event(if first { "snapshot" } else { "changes" })
            .json_data(&payload)
            .unwrap_or_else(|_| Event::default().comment("encoding failed"));
        Some((Ok(event), (live, filter, next_prev, false)))
    });
    Sse::new(s).keep_alive(KeepAlive::default())
}
