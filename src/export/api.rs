//! The KPI API behind `funnelstream tail`: `GET /api/v1/kpis` (a JSON
//! snapshot of every business series, filtered) and
//! `GET /api/v1/kpis/stream` (server-sent events: the full snapshot first,
//! then, every interval, only the series whose value changed or that
//! disappeared).
//!
//! Filters (query parameters, exact matches): `metric`, `window`, `channel`,
//! `campaign` (a `metric` or `window` this engine does not publish is a 400
//! saying so); `interval` (stream only, seconds, default 1, 0.2..=60; any
//! other value, or one that does not parse, is answered 400 naming it).
//!
//! Streams cost once, not per client: every client of the same filter and
//! interval shares one feed ([`StreamHub`]), which takes one snapshot per
//! interval, encodes its changes once and hands the same bytes to every
//! subscriber. A new subscriber starts from the feed's latest snapshot (at
//! most one interval old; its `now` says when). Each client has a bounded
//! queue; a client that stops reading is disconnected and counted
//! (`funnel_stream_clients_dropped_total`). On shutdown every stream gets
//! `event: shutdown` with `data: {"reason":"engine stopping"}` and ends.

use crate::export::prometheus::{visit_copied, KeyCopies, SeriesVisitor};
use crate::kpi::{Value, FAMILIES};
use crate::live::LiveState;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub(crate) struct Filter {
    pub metric: Option<String>,
    pub window: Option<String>,
    pub channel: Option<String>,
    pub campaign: Option<String>,
    pub interval: Option<f64>,
}

impl Filter {
    /// Whether the series of key (`channel`, `campaign`) are kept.
    fn keeps_key(&self, channel: &str, campaign: &str) -> bool {
        self.channel.as_deref().is_none_or(|c| c == channel)
            && self.campaign.as_deref().is_none_or(|c| c == campaign)
    }

    /// Whether a series of family `name` with labels `extra` (besides the
    /// key's) is kept.
    fn keeps_series(&self, name: &str, extra: &[(&'static str, &str)]) -> bool {
        self.metric.as_deref().is_none_or(|m| m == name)
            && self
                .window
                .as_deref()
                .is_none_or(|w| !extra.iter().any(|(k, v)| *k == "window" && *v != w))
    }
}

/// One series of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct KpiSeries {
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
pub(crate) struct Snapshot {
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
        self.keep_key = self.filter.keeps_key(channel, campaign);
        self.channel = channel.to_string();
        self.campaign = campaign.to_string();
    }

    fn series(&mut self, family: usize, extra: &[(&'static str, &str)], value: Value) {
        let name = FAMILIES[family].name;
        if !self.keep_key || !self.filter.keeps_series(name, extra) {
            return;
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
    let (keys, _, now) = live.copy_partitions();
    filtered(&keys, now, filter)
}

fn filtered(keys: &KeyCopies, now: i64, filter: &Filter) -> Snapshot {
    let mut c = Collector {
        filter,
        keep_key: false,
        channel: String::new(),
        campaign: String::new(),
        out: Vec::new(),
    };
    visit_copied(keys, &mut c);
    Snapshot { now, series: c.out }
}

/// The series of `next` that are new or changed since `prev`, plus those of
/// `prev` that disappeared (value `None`): what a stream's `changes` event
/// says (the reference of [`changes_frame`]'s tests).
#[cfg(test)]
fn changes(prev: &BTreeMap<String, Option<f64>>, next: &Snapshot) -> Vec<KpiSeries> {
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

/// The stream intervals served, in seconds (`tail --interval` too).
pub(crate) const INTERVALS: std::ops::RangeInclusive<f64> = 0.2..=60.0;

/// `interval` in seconds (default 1), or the 400 answer telling why not:
/// a value out of range is refused rather than quietly clamped.
fn interval(filter: &Filter) -> Result<f64, (axum::http::StatusCode, String)> {
    match filter.interval {
        None => Ok(1.0),
        Some(x) if INTERVALS.contains(&x) => Ok(x),
        Some(x) => Err((
            axum::http::StatusCode::BAD_REQUEST,
            format!(
                "interval: `{x}` is not a number of seconds from {} to {}\n",
                INTERVALS.start(),
                INTERVALS.end()
            ),
        )),
    }
}

/// `window`, when given, is one this engine publishes (a rolling window of
/// `--windows` or a calendar window of `--calendar-windows`), or the 400
/// answer naming the ones it does: a typo is told, not answered with no
/// series.
pub(crate) fn served_window(
    config: &crate::config::EngineConfig,
    window: Option<&str>,
) -> Result<(), (axum::http::StatusCode, String)> {
    let Some(w) = window else {
        return Ok(());
    };
    let served: Vec<&str> = config
        .windows
        .iter()
        .map(|s| s.label.as_str())
        .chain(config.calendar.windows.iter().map(|c| c.label()))
        .collect();
    if served.contains(&w) {
        return Ok(());
    }
    Err((
        axum::http::StatusCode::BAD_REQUEST,
        format!(
            "window: `{w}` is not a window this engine publishes ({})\n",
            served.join(",")
        ),
    ))
}

/// `metric`, when given, is a KPI family this engine publishes, or the 400
/// answer saying it is not: a typo, or a family only a newer engine has, is told
/// (`tail --metric` shows it), not answered with no series forever.
pub(crate) fn served_metric(metric: Option<&str>) -> Result<(), (axum::http::StatusCode, String)> {
    match metric {
        Some(m) if !FAMILIES.iter().any(|f| f.name == m) => Err((
            axum::http::StatusCode::BAD_REQUEST,
            format!("metric: `{m}` is not a KPI family this engine publishes (like funnel_clicks or funnel_cac)\n"),
        )),
        _ => Ok(()),
    }
}

pub async fn kpis(
    axum::extract::State(live): axum::extract::State<Arc<LiveState>>,
    axum::extract::Query(filter): axum::extract::Query<Filter>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Err(r) = interval(&filter)
        .and_then(|_| served_window(&live.engine.config, filter.window.as_deref()))
        .and_then(|()| served_metric(filter.metric.as_deref()))
    {
        return r.into_response();
    }
    match tokio::task::spawn_blocking(move || snapshot(&live, &filter)).await {
        Ok(s) => axum::Json(s).into_response(),
        Err(_) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "snapshot failed\n",
        )
            .into_response(),
    }
}

/// The final event of every stream when the engine stops.
pub(crate) const SHUTDOWN_EVENT: &str =
    "event: shutdown\ndata: {\"reason\":\"engine stopping\"}\n\n";
const KEEP_ALIVE: &str = ":\n\n";
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);
/// How often each client's forwarder checks that its client still reads.
const STALL_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Limits of the stream endpoint.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Most clients following streams at once; more get 503.
    pub(crate) max_clients: usize,
    /// Events queued for one client; a client whose queue is full, or whose
    /// oldest queued event waited `stall_timeout`, is disconnected and
    /// counted in `funnel_stream_clients_dropped_total`.
    pub(crate) client_buffer: usize,
    pub(crate) stall_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_clients: 1000,
            client_buffer: 16,
            stall_timeout: Duration::from_secs(10),
        }
    }
}

/// What identifies a feed: the filter and the interval in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FeedKey {
    metric: Option<String>,
    window: Option<String>,
    channel: Option<String>,
    campaign: Option<String>,
    interval_ms: u64,
}

/// One computed interval of a feed, shared by all its subscribers.
struct Tick {
    series: Arc<Encoded>,
    /// `event: snapshot` with the whole snapshot, encoded on first need.
    full: OnceLock<Bytes>,
    /// `event: changes` against the previous tick.
    changes: Bytes,
}

impl Tick {
    fn full_frame(&self) -> Bytes {
        self.full
            .get_or_init(|| {
                let s = &self.series;
                let mut out = frame_start("snapshot", s.now, s.text.len() + 24 * s.len());
                for i in 0..s.len() {
                    push_series(&mut out, s.head(i), Some(s.values[i]));
                }
                frame_end(out)
            })
            .clone()
    }
}

#[cfg(test)]
fn frame(event: &str, payload: &Snapshot) -> Bytes {
    let mut out = Vec::with_capacity(64 + payload.series.len() * 128);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut out, payload).is_err() {
        return Bytes::from_static(b": encoding failed\n\n");
    }
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A feed's series at one tick, encoded once as the JSON of
/// [`Snapshot`]'s series: each series' object up to its value
/// (`{"metric":…,"labels":{…},"value":`, its identity) in one text, and
/// the values. Frames are cut from it: no per-series allocation, and the
/// same bytes as serialising a [`Snapshot`].
struct Encoded {
    now: i64,
    text: Vec<u8>,
    /// End of each series' head in `text` (it starts where the previous ends).
    ends: Vec<usize>,
    values: Vec<f64>,
}

impl Encoded {
    fn len(&self) -> usize {
        self.values.len()
    }

    fn head(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

/// Encodes every series of `keys` that `filter` keeps.
struct Encoder<'a> {
    filter: &'a Filter,
    keep_key: bool,
    channel: String,
    campaign: String,
    out: Encoded,
}

impl SeriesVisitor for Encoder<'_> {
    fn key(&mut self, channel: &str, campaign: &str) {
        self.keep_key = self.filter.keeps_key(channel, campaign);
        self.channel.clear();
        self.channel.push_str(channel);
        self.campaign.clear();
        self.campaign.push_str(campaign);
    }

    fn series(&mut self, family: usize, extra: &[(&'static str, &str)], value: Value) {
        let name = FAMILIES[family].name;
        if !self.keep_key || !self.filter.keeps_series(name, extra) {
            return;
        }
        // Labels in key order, as a BTreeMap serialises them (a later
        // duplicate replaces an earlier one, as BTreeMap::insert does).
        const MOST: usize = 8;
        let mut labels: [(&str, &str); MOST] = [("", ""); MOST];
        let mut n = 0;
        for (k, v) in [("channel", &*self.channel), ("campaign", &*self.campaign)]
            .into_iter()
            .chain(extra.iter().copied())
        {
            match labels[..n].iter_mut().find(|l| l.0 == k) {
                Some(l) => l.1 = v,
                None if n < MOST => {
                    labels[n] = (k, v);
                    n += 1;
                }
                None => {}
            }
        }
        let labels = &mut labels[..n];
        labels.sort_unstable_by_key(|l| l.0);
        let out = &mut self.out.text;
        out.extend_from_slice(b"{\"metric\":");
        json_str(out, name);
        out.extend_from_slice(b",\"labels\":{");
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(out, k);
            out.push(b':');
            json_str(out, v);
        }
        out.extend_from_slice(b"},\"value\":");
        self.out.ends.push(out.len());
        self.out.values.push(value.as_f64());
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn encode(keys: &KeyCopies, now: i64, filter: &Filter) -> Encoded {
    let mut e = Encoder {
        filter,
        keep_key: false,
        channel: String::new(),
        campaign: String::new(),
        out: Encoded {
            now,
            text: Vec::new(),
            ends: Vec::new(),
            values: Vec::new(),
        },
    };
    visit_copied(keys, &mut e);
    e.out
}

/// `event: EVENT\ndata: {"now":NOW,"series":[`
fn frame_start(event: &str, now: i64, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + capacity);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: {\"now\":");
    out.extend_from_slice(itoa::Buffer::new().format(now).as_bytes());
    out.extend_from_slice(b",\"series\":[");
    out
}

/// One series of a frame: its head, then its value (`null`: gone).
fn push_series(out: &mut Vec<u8>, head: &[u8], value: Option<f64>) {
    if out.last() != Some(&b'[') {
        out.push(b',');
    }
    out.extend_from_slice(head);
    // Serialising an f64 into a Vec cannot fail (not finite: null).
    let _ = serde_json::to_writer(&mut *out, &value);
    out.push(b'}');
}

fn frame_end(mut out: Vec<u8>) -> Bytes {
    out.extend_from_slice(b"]}\n\n");
    Bytes::from(out)
}

/// `event: changes`: the series of `next` that are new or whose value
/// changed since `prev`, then those of `prev` that disappeared (value
/// `null`), in the order of `next` and `prev`.
fn changes_frame(prev: &Encoded, next: &Encoded) -> Bytes {
    let mut out = frame_start("changes", next.now, 4096);
    if prev.ends == next.ends && prev.text == next.text {
        // The same series as before (the usual case): compare in place.
        for (i, (a, b)) in prev.values.iter().zip(&next.values).enumerate() {
            if a != b {
                push_series(&mut out, next.head(i), Some(*b));
            }
        }
        return frame_end(out);
    }
    let index: ahash::AHashMap<&[u8], usize> = (0..prev.len()).map(|j| (prev.head(j), j)).collect();
    let mut kept = vec![false; prev.len()];
    for i in 0..next.len() {
        let (head, value) = (next.head(i), next.values[i]);
        match index.get(head) {
            Some(&j) => {
                kept[j] = true;
                if prev.values[j] != value {
                    push_series(&mut out, head, Some(value));
                }
            }
            None => push_series(&mut out, head, Some(value)),
        }
    }
    for (j, _) in kept.iter().enumerate().filter(|(_, k)| !**k) {
        push_series(&mut out, prev.head(j), None);
    }
    frame_end(out)
}

/// One snapshot per interval for one filter, computed once and broadcast
/// to every subscriber of that filter and interval.
struct Feed {
    tx: broadcast::Sender<Arc<Tick>>,
    /// The latest tick: a new subscriber starts from it.
    latest: Mutex<Option<Arc<Tick>>>,
}

/// The shared source of every `/api/v1/kpis/stream`: one feed per (filter,
/// interval), alive while it has subscribers. Streams cost one snapshot per
/// interval and filter, not one per client.
pub(crate) struct StreamHub {
    live: Arc<LiveState>,
    feeds: Mutex<HashMap<FeedKey, Arc<Feed>>>,
    permits: Arc<Semaphore>,
    limits: StreamLimits,
    stopping: CancellationToken,
    copies: Mutex<Option<(Instant, Copies)>>,
}

/// Every key at one engine time, shared by the feeds.
type Copies = Arc<(KeyCopies, i64)>;

/// How long one copy of the partitions serves the feeds that tick.
const COPY_REUSE: Duration = Duration::from_millis(100);

impl StreamHub {
    pub fn new(live: Arc<LiveState>, limits: StreamLimits) -> Arc<Self> {
        Arc::new(StreamHub {
            live,
            feeds: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(limits.max_clients)),
            limits,
            stopping: CancellationToken::new(),
            copies: Mutex::new(None),
        })
    }

    /// Ends every stream: each client gets `event: shutdown`, then its
    /// response ends. New streams are refused.
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    /// Every key copied out of the partitions, shared by all feeds that
    /// tick within [`COPY_REUSE`] of each other: however many distinct
    /// filters are followed, the partitions are copied at most a few times
    /// a second.
    fn copies(&self) -> Copies {
        let mut cache = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, c)) = &*cache {
            if at.elapsed() < COPY_REUSE {
                return c.clone();
            }
        }
        let (keys, _, now) = self.live.copy_partitions();
        let c = Arc::new((keys, now));
        *cache = Some((Instant::now(), c.clone()));
        c
    }

    /// Number of feeds computing now (one per distinct filter and interval).
    #[cfg(test)]
    fn feeds(&self) -> usize {
        self.feeds.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Subscribes to the feed of `key`, starting it if needed: the receiver
    /// and the latest tick (none until the feed's first tick).
    fn subscribe(
        self: &Arc<Self>,
        key: FeedKey,
        filter: Filter,
    ) -> (broadcast::Receiver<Arc<Tick>>, Option<Arc<Tick>>) {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        let feed = feeds
            .entry(key.clone())
            .or_insert_with(|| {
                // Ticks are small (an Arc each); a receiver more than this
                // behind has a full client buffer long before.
                let (tx, _) = broadcast::channel(self.limits.client_buffer.max(1) * 2);
                let feed = Arc::new(Feed {
                    tx,
                    latest: Mutex::new(None),
                });
                tokio::spawn(run_feed(self.clone(), key, filter, feed.clone()));
                feed
            })
            .clone();
        let latest = feed.latest.lock().unwrap_or_else(|e| e.into_inner());
        (feed.tx.subscribe(), latest.clone())
    }
}

async fn run_feed(hub: Arc<StreamHub>, key: FeedKey, filter: Filter, feed: Arc<Feed>) {
    let interval = Duration::from_millis(key.interval_ms);
    // None before the first tick, whose changes nobody receives: a
    // subscriber's first event is the full snapshot of the latest tick.
    let mut prev: Option<Arc<Encoded>> = None;
    loop {
        let (h, f, p) = (hub.clone(), filter.clone(), prev.clone());
        let computed = tokio::task::spawn_blocking(move || {
            let (keys, now) = &*h.copies();
            let next = encode(keys, *now, &f);
            let changes = p.map_or_else(Bytes::new, |p| changes_frame(&p, &next));
            (Arc::new(next), changes)
        })
        .await;
        if let Ok((series, changes)) = computed {
            prev = Some(series.clone());
            let tick = Arc::new(Tick {
                series,
                full: OnceLock::new(),
                changes,
            });
            let mut latest = feed.latest.lock().unwrap_or_else(|e| e.into_inner());
            *latest = Some(tick.clone());
            let _ = feed.tx.send(tick);
        }
        tokio::select! {
            _ = hub.stopping.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
        let mut feeds = hub.feeds.lock().unwrap_or_else(|e| e.into_inner());
        if feed.tx.receiver_count() == 0 {
            feeds.remove(&key);
            return;
        }
    }
    hub.feeds
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
}

/// Set on each request by the server: closing it closes the connection
/// (used to drop a stream client that stopped reading).
#[derive(Clone, Debug)]
pub(crate) struct ConnectionCloser(pub CancellationToken);

/// The frames queued for one client, and when the client last took one.
struct ClientBody {
    rx: mpsc::Receiver<Bytes>,
    taken: Arc<AtomicU64>,
    epoch: Instant,
}

impl futures_util::Stream for ClientBody {
    type Item = Result<Bytes, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let r = self.rx.poll_recv(cx);
        if let std::task::Poll::Ready(Some(_)) = &r {
            let ms = self.epoch.elapsed().as_millis() as u64;
            self.taken.store(ms, Ordering::Relaxed);
        }
        r.map(|o| o.map(Ok))
    }
}

/// Keeps `funnel_stream_clients` right however a client ends.
struct ClientGuard(Arc<LiveState>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.streams.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

pub async fn stream(
    axum::extract::State(hub): axum::extract::State<Arc<StreamHub>>,
    axum::extract::Query(filter): axum::extract::Query<Filter>,
    closer: Option<axum::Extension<ConnectionCloser>>,
) -> axum::response::Response {
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    let interval = match interval(&filter)
        .and_then(|x| served_window(&hub.live.engine.config, filter.window.as_deref()).map(|()| x))
        .and_then(|x| served_metric(filter.metric.as_deref()).map(|()| x))
    {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    if hub.stopping.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "engine stopping\n").into_response();
    }
    let Ok(permit) = hub.permits.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            format!(
                "too many stream clients (at most {}); retry later\n",
                hub.limits.max_clients
            ),
        )
            .into_response();
    };
    let key = FeedKey {
        metric: filter.metric.clone(),
        window: filter.window.clone(),
        channel: filter.channel.clone(),
        campaign: filter.campaign.clone(),
        interval_ms: (interval * 1000.0).round() as u64,
    };
    let (rx, latest) = hub.subscribe(key, filter);
    let (tx, body_rx) = mpsc::channel(hub.limits.client_buffer.max(1));
    let taken = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    hub.live.streams.clients.fetch_add(1, Ordering::Relaxed);
    let guard = ClientGuard(hub.live.clone());
    let closer = closer.map(|c| c.0 .0.clone());
    tokio::spawn(forward(
        hub.clone(),
        rx,
        latest,
        tx,
        taken.clone(),
        epoch,
        closer,
        (permit, guard),
    ));
    let body = axum::body::Body::from_stream(ClientBody {
        rx: body_rx,
        taken,
        epoch,
    });
    let mut r = axum::response::Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Moves one client's events from its feed into its bounded queue, drops
/// the client once it stops reading, and ends its stream on shutdown.
#[allow(clippy::too_many_arguments)]
async fn forward(
    hub: Arc<StreamHub>,
    mut rx: broadcast::Receiver<Arc<Tick>>,
    latest: Option<Arc<Tick>>,
    tx: mpsc::Sender<Bytes>,
    taken: Arc<AtomicU64>,
    epoch: Instant,
    closer: Option<CancellationToken>,
    _held: (OwnedSemaphorePermit, ClientGuard),
) {
    let drop_client = |why: &str| {
        hub.live.streams.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("dropping a stream client: {why}");
        if let Some(c) = &closer {
            c.cancel();
        }
    };
    let first = match latest {
        Some(t) => Some(t),
        None => tokio::select! {
            _ = hub.stopping.cancelled() => None,
            _ = tx.closed() => return,
            r = rx.recv() => r.ok(),
        },
    };
    if let Some(t) = first {
        // The queue is empty: this cannot fail but for a gone client.
        if tx.try_send(t.full_frame()).is_err() {
            return;
        }
    }
    let mut keep_alive = tokio::time::interval_at(
        tokio::time::Instant::now() + KEEP_ALIVE_EVERY,
        KEEP_ALIVE_EVERY,
    );
    let mut check = tokio::time::interval(STALL_CHECK_EVERY);
    let mut waiting_since = epoch.elapsed().as_millis() as u64;
    loop {
        let frame = tokio::select! {
            biased;
            _ = hub.stopping.cancelled() => {
                if tx.try_send(Bytes::from_static(SHUTDOWN_EVENT.as_bytes())).is_err() {
                    // Not reading: closing it now spares the grace period.
                    if let Some(c) = &closer {
                        c.cancel();
                    }
                }
                return;
            }
            _ = tx.closed() => return,
            r = rx.recv() => match r {
                Ok(t) => t.changes.clone(),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    drop_client("it fell behind its feed");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = keep_alive.tick() => Bytes::from_static(KEEP_ALIVE.as_bytes()),
            _ = check.tick() => {
                // Stalled: something has been waiting, and nothing was
                // taken, for the whole stall timeout.
                let queued = tx.max_capacity() - tx.capacity();
                let now = epoch.elapsed().as_millis() as u64;
                let active = waiting_since.max(taken.load(Ordering::Relaxed));
                if queued > 0 && now.saturating_sub(active) > hub.limits.stall_timeout.as_millis() as u64 {
                    drop_client("it stopped reading");
                    return;
                }
                continue;
            }
        };
        if tx.capacity() == tx.max_capacity() {
            waiting_since = epoch.elapsed().as_millis() as u64;
        }
        match tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                drop_client("its buffer is full");
                return;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    fn key(campaign: Option<&str>) -> FeedKey {
        FeedKey {
            metric: None,
            window: None,
            channel: None,
            campaign: campaign.map(String::from),
            interval_ms: 200,
        }
    }

    /// A live state fed `events` synthetic events (v1 and v2) over `keys`
    /// keys, on the event clock.
    fn fed(seed: u64, keys: u64, events: usize) -> Arc<LiveState> {
        use crate::clock::wall_clock_ms;
        use crate::config::{ClockMode, EngineConfig};
        use crate::synth::{Synth, SynthConfig};
        let live = LiveState::new(Engine::new(EngineConfig {
            clock: ClockMode::Event,
            ..EngineConfig::default()
        }));
        let slot = live.slot("t", 0);
        slot.assigned.store(true, Ordering::Release);
        let mut p = slot.state.lock().unwrap();
        let day = 86_400_000.0;
        let mut g = Synth::new(SynthConfig {
            seed,
            keys,
            start_ms: 1_700_000_000_000 - 40 * 86_400_000,
            step_ms: 40.0 * day / events as f64,
            v2_ratio: 0.3,
            ..SynthConfig::default()
        });
        for _ in 0..events {
            p.process_at(g.next_line().as_bytes(), wall_clock_ms());
        }
        drop(p);
        live
    }

    fn parse(frame: &Bytes, event: &str) -> Snapshot {
        let text = std::str::from_utf8(frame).unwrap();
        let data = text
            .strip_prefix(&format!("event: {event}\ndata: "))
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not an SSE {event} event: {text:.80}"));
        serde_json::from_str(data).unwrap()
    }

    fn sorted(mut s: Vec<KpiSeries>) -> Vec<KpiSeries> {
        s.sort_by_key(|x| x.id());
        s
    }

    /// The frames cut from the encoded series are what serialising the
    /// snapshot (the API's `Snapshot` type) gives, byte for byte, and a
    /// `changes` frame lists exactly the series the reference `changes`
    /// finds: new, changed and gone, under several filters.
    #[test]
    fn encoded_frames_match_the_snapshot_serialisation() {
        let states = [fed(3, 12, 6_000), fed(3, 12, 9_000), fed(5, 7, 4_000)];
        let copies: Vec<_> = states
            .iter()
            .map(|l| {
                let (keys, _, now) = l.copy_partitions();
                (keys, now)
            })
            .collect();
        let filters = [
            Filter::default(),
            Filter {
                window: Some("7d".into()),
                ..Filter::default()
            },
            Filter {
                metric: Some("funnel_clicks".into()),
                ..Filter::default()
            },
        ];
        let (mut changed, mut gone) = (0, 0);
        for f in &filters {
            for (a, b) in [(0, 1), (1, 2), (2, 0), (1, 1)] {
                let (ka, na) = &copies[a];
                let (kb, nb) = &copies[b];
                let (prev, next) = (encode(ka, *na, f), encode(kb, *nb, f));
                let (sa, sb) = (filtered(ka, *na, f), filtered(kb, *nb, f));
                assert!(!sb.series.is_empty());
                let tick = Tick {
                    series: Arc::new(next),
                    full: OnceLock::new(),
                    changes: Bytes::new(),
                };
                assert_eq!(tick.full_frame(), frame("snapshot", &sb), "{f:?}");
                let before: BTreeMap<_, _> = sa.series.iter().map(|s| (s.id(), s.value)).collect();
                let want = changes(&before, &sb);
                let got = parse(&changes_frame(&prev, &tick.series), "changes");
                assert_eq!(got.now, *nb);
                assert_eq!(sorted(got.series), sorted(want.clone()), "{f:?} {a} -> {b}");
                changed += want.iter().filter(|s| s.value.is_some()).count();
                gone += want.iter().filter(|s| s.value.is_none()).count();
                if a == b {
                    assert!(want.is_empty());
                }
            }
        }
        assert!(changed > 0 && gone > 0, "{changed} changed, {gone} gone");
    }

    /// Same series, some values changed: compared in place, in order.
    #[test]
    fn changes_of_the_same_series_are_found_in_place() {
        let (keys, _, now) = fed(9, 5, 3_000).copy_partitions();
        let f = Filter::default();
        let prev = encode(&keys, now, &f);
        let mut next = encode(&keys, now + 1, &f);
        let moved = [0, 7, next.len() - 1];
        for &i in &moved {
            next.values[i] += 1.5;
        }
        let got = parse(&changes_frame(&prev, &next), "changes");
        let mut snap = filtered(&keys, now, &f);
        let want: Vec<_> = moved
            .iter()
            .map(|&i| {
                let s = &mut snap.series[i];
                s.value = s.value.map(|v| v + 1.5);
                s.clone()
            })
            .collect();
        assert_eq!(got.series, want);
        assert_eq!(got.now, now + 1);
    }

    /// Fifty clients of one filter share one feed and receive the very same
    /// tick; another filter has its own feed; feeds end with their clients.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_feed_per_filter_and_interval() {
        let live = LiveState::new(Engine::new(Default::default()));
        let hub = StreamHub::new(live, StreamLimits::default());
        let mut subs: Vec<_> = (0..50)
            .map(|_| hub.subscribe(key(None), Filter::default()).0)
            .collect();
        let other = hub.subscribe(key(Some("x")), Filter::default()).0;
        assert_eq!(hub.feeds(), 2);
        let mut ticks = Vec::new();
        for rx in subs.iter_mut() {
            ticks.push(rx.recv().await.unwrap());
        }
        assert!(ticks.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
        // A later subscriber starts from the latest tick.
        let (_late, latest) = hub.subscribe(key(None), Filter::default());
        assert!(latest.is_some());
        assert_eq!(hub.feeds(), 2);
        drop((subs, other, _late, ticks, latest));
        let deadline = Instant::now() + Duration::from_secs(5);
        while hub.feeds() > 0 {
            assert!(Instant::now() < deadline, "feeds outlived their clients");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
