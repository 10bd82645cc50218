//! Prometheus text exposition (format 0.0.4).
//!
//! A direct encoder rather than the `prometheus` crate's registry: building
//! a registry of a million labelled series per scrape costs seconds, while
//! this writes each line straight from the exact sums (see
//! `benches/engine.rs`, `render_*`, for both measured side by side). The
//! output is checked with `promtool check metrics` in the tests.

use crate::aggregate::calendar::{Slot, View};
use crate::aggregate::v2::V2Totals;
use crate::aggregate::{Aggregator, KpiParams, Totals, WindowSums};
use crate::decode::{EventType, RejectReason, IGNORABLE_FIELDS};
use crate::engine::Health;
use crate::kpi::{Eval, Value, FAMILIES};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// Content type of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Appends `v` with `\`, `"` and newline escaped as label values need.
pub(crate) fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a value in a form Prometheus parses exactly: integers as
/// integers, money as an exact decimal, other floats in shortest form.
pub(crate) fn write_value(out: &mut String, v: Value) {
    match v {
        Value::Int(i) => out.push_str(itoa::Buffer::new().format(i)),
        Value::Money(m) => write_micro(out, m),
        Value::Float(x) => {
            if x.is_finite() {
                out.push_str(ryu::Buffer::new().format_finite(x));
            } else if x.is_nan() {
                out.push_str("NaN");
            } else if x > 0.0 {
                out.push_str("+Inf");
            } else {
                out.push_str("-Inf");
            }
        }
    }
}

/// Micro-units as an exact decimal: `12500000` -> `12.5`.
pub(crate) fn write_micro(out: &mut String, m: i128) {
    if m < 0 {
        out.push('-');
    }
    let a = m.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(a / 1_000_000));
    let frac = (a % 1_000_000) as u32;
    if frac != 0 {
        let mut digits = [b'0'; 6];
        let mut f = frac;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        let len = 6 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out.push('.');
        // digits are ASCII
        out.push_str(std::str::from_utf8(&digits[..len]).unwrap_or("0"));
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// (channel, campaign) -> the (aggregator, key) pairs holding it.
type KeyGroups = BTreeMap<(Arc<str>, Arc<str>), Vec<(usize, usize)>>;

fn render_delay(out: &mut String, d: &crate::engine::DelayHistogram) {
    header(
        out,
        "funnel_event_delay_seconds",
        "Processing time minus event time of applied events.",
        "histogram",
    );
    let mut cum = 0u64;
    for (le, c) in crate::engine::DELAY_BUCKETS_S.iter().zip(&d.counts) {
        cum += c;
        let _ = writeln!(
            out,
            "funnel_event_delay_seconds_bucket{{le=\"{le:?}\"}} {cum}"
        );
    }
    cum += d.counts[crate::engine::DELAY_BUCKETS_S.len()];
    let _ = writeln!(
        out,
        "funnel_event_delay_seconds_bucket{{le=\"+Inf\"}} {cum}"
    );
    let mut sum = String::new();
    write_value(&mut sum, Value::Float(d.sum_ms as f64 / 1000.0));
    let _ = writeln!(out, "funnel_event_delay_seconds_sum {sum}");
    let _ = writeln!(out, "funnel_event_delay_seconds_count {cum}");
}

fn render_lag(out: &mut String, lag: &[(String, i32, i64)]) {
    if lag.is_empty() {
        return;
    }
    header(
        out,
        "funnel_consumer_lag_messages",
        "High watermark minus committed position, per assigned partition.",
        "gauge",
    );
    for (topic, partition, v) in lag {
        out.push_str("funnel_consumer_lag_messages{topic=\"");
        escape_label_value(out, topic);
        let _ = writeln!(out, "\",partition=\"{partition}\"}} {v}");
    }
}

/// One (channel, campaign) key merged across partitions.
struct MergedKey {
    totals: Totals,
    v2: V2Totals,
    windows: Vec<WindowSums>,
}

/// Calls `f` for every (channel, campaign) key in label order, with its
/// totals and window sums merged across the aggregators (keys that exist in
/// several partitions add up, so the result equals a single aggregator's over
/// all events).
pub(crate) fn for_each_key(
    aggs: &[&Aggregator],
    now: i64,
    mut f: impl FnMut(&str, &str, &Totals, &V2Totals, &[WindowSums]),
) {
    let Some(first) = aggs.first() else {
        return;
    };
    let views = first.views(now);
    let slots = first.slots();
    let labels = first.labels();
    let channels = labels.channel.names();
    let campaigns = labels.campaign.names();
    let name = crate::aggregate::labels::name_in;
    let mut groups: KeyGroups = BTreeMap::new();
    for (ai, agg) in aggs.iter().enumerate() {
        for (ki, k) in agg.keys().iter().enumerate() {
            groups
                .entry((name(&channels, k.channel), name(&campaigns, k.campaign)))
                .or_default()
                .push((ai, ki));
        }
    }
    let mut merged = MergedKey {
        totals: Totals::default(),
        v2: V2Totals::default(),
        windows: vec![WindowSums::default(); views.len()],
    };
    let gross_margin = first.gross_margin();
    for ((channel, campaign), members) in &groups {
        merged.totals = Totals::default();
        merged.v2 = V2Totals::default();
        for (w, view) in merged.windows.iter_mut().zip(&views) {
            *w = WindowSums::default();
            w.params = KpiParams {
                window_ms: view.window_ms,
                gross_margin,
            };
        }
        for &(ai, ki) in members {
            let k = &aggs[ai].keys()[ki];
            merged.totals.add(&k.totals);
            k.v2_totals_into(&mut merged.v2);
            k.sums_into(slots, &views, &mut merged.windows);
        }
        merged.v2.finish();
        for w in merged.windows.iter_mut() {
            w.finish();
        }
        f(
            channel,
            campaign,
            &merged.totals,
            &merged.v2,
            &merged.windows,
        );
    }
}

/// Exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Text => CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// Content type of OpenMetrics 1.0.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the whole exposition at engine time `now` in the text format.
pub fn render(aggs: &[&Aggregator], health: &Health, now: i64, version: &str) -> String {
    render_as(aggs, health, now, version, Format::Text)
}

/// Receives every business series, key by key (see [`visit_series`]).
pub(crate) trait SeriesVisitor {
    /// A new (channel, campaign) key starts; its series follow.
    fn key(&mut self, channel: &str, campaign: &str);
    /// One series of the current key: family index into [`FAMILIES`], the
    /// extra labels (`window`, `stage`, `change`, `origin`, `action`,
    /// `kind`; `window` last) and the value.
    fn series(&mut self, family: usize, extra: &[(&'static str, &str)], value: Value);
}

/// Evaluates every family of [`FAMILIES`] for every key, in label order.
pub(crate) fn visit_series(aggs: &[&Aggregator], now: i64, v: &mut impl SeriesVisitor) {
    let specs = aggs.first().map(|a| a.views(now)).unwrap_or_default();
    let actions = aggs
        .first()
        .map(|a| a.labels().action.names())
        .unwrap_or_default();
    let mut acts = Vec::new();
    for_each_key(aggs, now, |channel, campaign, totals, v2, windows| {
        let key = KeyView {
            channel,
            campaign,
            totals,
            v2,
            windows,
        };
        visit_key(&specs, &actions, &key, &mut acts, v)
    });
}

/// [`visit_series`] over keys copied out of the partitions.
pub(crate) fn visit_copied(keys: &KeyCopies, v: &mut impl SeriesVisitor) {
    let actions = keys
        .labels
        .as_ref()
        .map(|l| l.action.names())
        .unwrap_or_default();
    let mut acts = Vec::new();
    for key in keys.iter() {
        visit_key(&keys.views, &actions, &key, &mut acts, v);
    }
}

/// One (channel, campaign) key's merged state, as the families read it.
pub(crate) struct KeyView<'a> {
    pub channel: &'a str,
    pub campaign: &'a str,
    pub totals: &'a Totals,
    pub v2: &'a V2Totals,
    pub windows: &'a [WindowSums],
}

fn visit_key<'n>(
    specs: &[View],
    actions: &'n [Arc<str>],
    key: &KeyView<'_>,
    acts: &mut Vec<(&'n str, u32, i128)>,
    v: &mut impl SeriesVisitor,
) {
    let (totals, v2, windows) = (key.totals, key.v2, key.windows);
    let action_name = |id: u32| -> &'n str {
        actions
            .get(id as usize)
            .map_or(crate::aggregate::labels::OVERFLOW, |a| a)
    };
    v.key(key.channel, key.campaign);
    // Conversion actions in name order: ids depend on interning order.
    acts.clear();
    acts.extend(v2.conversions.iter().map(|&(a, c)| (action_name(a), a, c)));
    acts.sort_unstable();
    for (fi, fam) in FAMILIES.iter().enumerate() {
        if fam.gate != 0 && v2.seen & fam.gate == 0 {
            continue;
        }
        match fam.eval {
            Eval::Window(f) => {
                for (w, spec) in windows.iter().zip(specs) {
                    if let Some(value) = f(totals, w) {
                        v.series(fi, &[("window", &*spec.label)], value);
                    }
                }
            }
            Eval::Key(f) => v.series(fi, &[], f(totals)),
            Eval::Labelled { label, values, f } => {
                for (i, lv) in values.iter().enumerate() {
                    v.series(fi, &[(label, lv)], f(totals, i));
                }
            }
            Eval::LabelledWindow { label, values, f } => {
                for (i, lv) in values.iter().enumerate() {
                    for (w, spec) in windows.iter().zip(specs) {
                        if let Some(value) = f(w, i) {
                            v.series(fi, &[(label, lv), ("window", &*spec.label)], value);
                        }
                    }
                }
            }
            Eval::ActionWindow(f) => {
                for &(name, a, _) in acts.iter() {
                    for (w, spec) in windows.iter().zip(specs) {
                        if let Some(value) = f(w, &w.v2.conversion(a)) {
                            v.series(fi, &[("action", name), ("window", &*spec.label)], value);
                        }
                    }
                }
            }
            Eval::ActionGrowth(f) => {
                for &(name, a, _) in acts.iter() {
                    for (w, spec) in windows.iter().zip(specs) {
                        if let Some(value) = f(&w.v2.conversion(a), &w.prev.conversion(a)) {
                            v.series(fi, &[("action", name), ("window", &*spec.label)], value);
                        }
                    }
                }
            }
            Eval::ActionKey(f) => {
                for &(name, _, total) in acts.iter() {
                    v.series(fi, &[("action", name)], f(total));
                }
            }
            Eval::KeyV2(f) => {
                if let Some(value) = f(totals, v2) {
                    v.series(fi, &[], value);
                }
            }
            Eval::LabelledV2 { label, values, f } => {
                for (i, lv) in values.iter().enumerate() {
                    v.series(fi, &[(label, lv)], f(v2, i));
                }
            }
        }
    }
}

/// One key's totals, v2 totals and window sums.
type Sums = (Totals, V2Totals, Vec<WindowSums>);

/// Every key's totals and window sums at one engine time, copied out of
/// the partitions one partition at a time (so that each partition is locked
/// only while its own keys are copied) and merged across partitions. What
/// it renders is exactly what [`render_as`] renders from the partitions
/// themselves: the sums are integers and the sketches and conversion lists
/// are merged by `finish`, so the order of the additions does not matter.
#[derive(Debug, Default)]
pub(crate) struct KeyCopies {
    views: Vec<View>,
    slots: Vec<Slot>,
    gross_margin: f64,
    labels: Option<Arc<crate::aggregate::labels::LabelTable>>,
    /// (channel id, campaign id) -> position in `copied`.
    index: std::collections::HashMap<(u32, u32), usize>,
    copied: Vec<(u32, u32, Sums)>,
    /// After [`finish`](Self::finish): by labels, in label order.
    merged: Vec<(Arc<str>, Arc<str>, Sums)>,
}

impl KeyCopies {
    /// Adds one partition's keys, summed at engine time `now`.
    pub fn add(&mut self, agg: &Aggregator, now: i64) {
        if self.labels.is_none() {
            self.views = agg.views(now);
            self.slots = agg.slots().to_vec();
            self.gross_margin = agg.gross_margin();
            self.labels = Some(agg.labels().clone());
        }
        let n = self.views.len();
        for k in agg.keys() {
            let at = *self
                .index
                .entry((k.channel, k.campaign))
                .or_insert_with(|| {
                    self.copied.push((
                        k.channel,
                        k.campaign,
                        (
                            Totals::default(),
                            V2Totals::default(),
                            vec![WindowSums::default(); n],
                        ),
                    ));
                    self.copied.len() - 1
                });
            let (_, _, (totals, v2, windows)) = &mut self.copied[at];
            totals.add(&k.totals);
            k.v2_totals_into(v2);
            k.sums_into(&self.slots, &self.views, windows);
        }
    }

    /// Resolves label names (after every partition was added, so that every
    /// id is known) and orders the keys as the exposition does.
    pub fn finish(&mut self) {
        let Some(labels) = &self.labels else {
            return;
        };
        let channels = labels.channel.names();
        let campaigns = labels.campaign.names();
        let name = crate::aggregate::labels::name_in;
        let mut by_name: BTreeMap<(Arc<str>, Arc<str>), Sums> = BTreeMap::new();
        for (ch, ca, sums) in self.copied.drain(..) {
            match by_name.entry((name(&channels, ch), name(&campaigns, ca))) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(sums);
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    let (t, v2, ws) = e.get_mut();
                    t.add(&sums.0);
                    v2.add(&sums.1);
                    for (a, b) in ws.iter_mut().zip(&sums.2) {
                        a.add(b);
                    }
                }
            }
        }
        self.index.clear();
        let (views, gross_margin) = (&self.views, self.gross_margin);
        self.merged = by_name
            .into_iter()
            .map(|((ch, ca), (t, mut v2, mut ws))| {
                v2.finish();
                for (w, view) in ws.iter_mut().zip(views) {
                    w.finish();
                    w.params = KpiParams {
                        window_ms: view.window_ms,
                        gross_margin,
                    };
                }
                (ch, ca, (t, v2, ws))
            })
            .collect();
    }

    /// The merged keys in label order (after [`finish`](Self::finish)).
    pub fn iter(&self) -> impl Iterator<Item = KeyView<'_>> {
        self.merged.iter().map(|(ch, ca, (t, v2, ws))| KeyView {
            channel: ch,
            campaign: ca,
            totals: t,
            v2,
            windows: ws,
        })
    }
}

/// Writes series into one buffer per family, so that each family's lines
/// stay together.
struct TextWriter {
    bufs: Vec<String>,
    prefix: String,
    series: u64,
}

impl SeriesVisitor for TextWriter {
    fn key(&mut self, channel: &str, campaign: &str) {
        self.prefix.clear();
        self.prefix.push_str("{channel=\"");
        escape_label_value(&mut self.prefix, channel);
        self.prefix.push_str("\",campaign=\"");
        escape_label_value(&mut self.prefix, campaign);
        self.prefix.push('"');
    }

    fn series(&mut self, family: usize, extra: &[(&'static str, &str)], value: Value) {
        line(
            &mut self.bufs[family],
            FAMILIES[family].name,
            &self.prefix,
            extra,
            value,
        );
        self.series += 1;
    }
}

/// Renders the whole exposition at engine time `now`.
pub(crate) fn render_as(
    aggs: &[&Aggregator],
    health: &Health,
    now: i64,
    version: &str,
    format: Format,
) -> String {
    render_series(|w| visit_series(aggs, now, w), health, version, format)
}

/// [`render_as`] from keys copied out of the partitions: the same bytes.
pub(crate) fn render_copied(
    keys: &KeyCopies,
    health: &Health,
    version: &str,
    format: Format,
) -> String {
    render_series(|w| visit_copied(keys, w), health, version, format)
}

fn render_series(
    visit: impl FnOnce(&mut TextWriter),
    health: &Health,
    version: &str,
    format: Format,
) -> String {
    let mut w = TextWriter {
        bufs: FAMILIES.iter().map(|_| String::new()).collect(),
        prefix: String::new(),
        series: 0,
    };
    visit(&mut w);
    let total: usize = w.bufs.iter().map(String::len).sum();
    let mut out = String::with_capacity(total + FAMILIES.len() * 160 + 4096);
    for (fam, buf) in FAMILIES.iter().zip(&w.bufs) {
        family_header(&mut out, format, fam.name, fam.help, fam.kind.as_str());
        out.push_str(buf);
    }
    render_health(&mut out, format, health, w.series, version);
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Windowed gauge families whose names equal a `_total` counter's family
/// name in OpenMetrics (see `family_header`).
fn collides_in_openmetrics(counter: &str) -> bool {
    let base = counter.trim_end_matches("_total");
    FAMILIES
        .iter()
        .any(|f| f.name == base && f.kind == crate::kpi::MetricType::Gauge)
}

/// HELP and TYPE lines. In OpenMetrics a counter family is named without
/// its `_total` suffix; where that name is already taken by a windowed gauge
/// of the contract (`funnel_impressions` and `funnel_impressions_total`,
/// ...), the counter is declared `unknown` under its full name instead, the
/// closest valid OpenMetrics for the contract's names (see ARCHITECTURE.md).
fn family_header(out: &mut String, format: Format, name: &str, help: &str, kind: &str) {
    if format == Format::OpenMetrics && kind == "counter" {
        if collides_in_openmetrics(name) {
            header(out, name, help, "unknown");
        } else {
            header(out, name.trim_end_matches("_total"), help, "counter");
        }
    } else {
        header(out, name, help, kind);
    }
}

#[inline]
fn line(buf: &mut String, name: &str, prefix: &str, extra: &[(&str, &str)], v: Value) {
    buf.push_str(name);
    buf.push_str(prefix);
    for (k, val) in extra {
        buf.push(',');
        buf.push_str(k);
        buf.push_str("=\"");
        escape_label_value(buf, val);
        buf.push('"');
    }
    buf.push_str("} ");
    write_value(buf, v);
    buf.push('\n');
}

fn labelled_counter<'a>(
    out: &mut String,
    format: Format,
    name: &str,
    help: &str,
    label: &str,
    rows: impl Iterator<Item = (&'a str, u64)>,
) {
    family_header(out, format, name, help, "counter");
    for (lv, v) in rows {
        let _ = writeln!(out, "{name}{{{label}=\"{lv}\"}} {v}");
    }
}

fn plain(out: &mut String, format: Format, name: &str, help: &str, kind: &str, v: u64) {
    family_header(out, format, name, help, kind);
    let _ = writeln!(out, "{name} {v}");
}

fn render_checkpoint(out: &mut String, format: Format, c: &crate::engine::CheckpointHealth) {
    plain(
        out,
        format,
        "funnel_checkpoints_total",
        "Partition checkpoints written and acknowledged by the broker.",
        "counter",
        c.written,
    );
    plain(
        out,
        format,
        "funnel_checkpoint_failures_total",
        "Checkpoints not written (broker errors, or dead-letter copies still pending); retried at the next interval, and commits wait.",
        "counter",
        c.failures,
    );
    plain(
        out,
        format,
        "funnel_checkpoint_restores_total",
        "Partitions whose state was restored from a checkpoint on assignment.",
        "counter",
        c.restored,
    );
    labelled_counter(
        out,
        format,
        "funnel_checkpoint_rebuilds_total",
        "Partitions started from empty state at their earliest retained offset because their checkpoint was missing, corrupt or incompatible (--checkpoint-policy rebuild).",
        "reason",
        crate::checkpoint::REBUILD_REASONS
            .iter()
            .zip(c.rebuilds)
            .map(|(r, v)| (*r, v)),
    );
    plain(
        out,
        format,
        "funnel_checkpoint_bytes",
        "Size of the latest checkpoint of each assigned partition, summed.",
        "gauge",
        c.bytes,
    );
    family_header(
        out,
        format,
        "funnel_checkpoint_age_seconds",
        "Age of the oldest latest checkpoint among assigned partitions.",
        "gauge",
    );
    let _ = writeln!(
        out,
        "funnel_checkpoint_age_seconds {}",
        c.age_ms as f64 / 1000.0
    );
}

/// The engine's own health families, in exposition order.
fn render_health(out: &mut String, format: Format, h: &Health, series: u64, version: &str) {
    render_event_counts(out, format, h);
    render_folds(out, format, h);
    render_capacity(out, format, h, series);
    if let Some(d) = &h.delay {
        render_delay(out, d);
    }
    render_lag(out, &h.lag);
    crate::export::ownership::render(out, &h.owned);
    if let Some(dead_letter) = h.dead_letter {
        render_dead_letter(out, format, dead_letter);
    }
    if let Some(c) = &h.checkpoint {
        render_checkpoint(out, format, c);
    }
    if let Some(streams) = h.streams {
        render_streams(out, format, streams);
    }
    render_build_info(out, version);
}

/// Events applied, rejected, dropped as duplicates and too late.
fn render_event_counts(out: &mut String, format: Format, h: &Health) {
    labelled_counter(
        out,
        format,
        "funnel_events_ingested_total",
        "Valid events applied, by type.",
        "type",
        EventType::ALL
            .iter()
            .map(|t| (t.as_str(), h.partition.ingested[*t as usize])),
    );
    labelled_counter(
        out,
        format,
        "funnel_events_rejected_total",
        "Invalid events, by reason (see EVENTS.md and docs/SEMANTICS.md).",
        "reason",
        RejectReason::ALL
            .iter()
            .map(|r| (r.as_str(), h.partition.rejected[r.index()])),
    );
    plain(
        out,
        format,
        "funnel_events_duplicate_total",
        "Events dropped as duplicates of an id seen within the dedup horizon.",
        "counter",
        h.partition.duplicates,
    );
    plain(
        out,
        format,
        "funnel_events_late_total",
        "Events too old for any window (counted in _total counters only).",
        "counter",
        h.agg.late,
    );
}

/// Label values folded into `__overflow__` and optional fields read as
/// their default.
fn render_folds(out: &mut String, format: Format, h: &Health) {
    labelled_counter(
        out,
        format,
        "funnel_label_overflow_total",
        "Events whose label value was folded into __overflow__ by the cardinality limit (label=\"key\": events applied to the overflow key by the series budget, of a key not admitted or of a v2 group or conversion action not charged to its key).",
        "label",
        [
            ("channel", h.agg.label_overflow[0]),
            ("campaign", h.agg.label_overflow[1]),
            ("action", h.agg.label_overflow[2]),
            ("key", h.agg.label_overflow[3]),
        ]
        .into_iter(),
    );
    labelled_counter(
        out,
        format,
        "funnel_fields_ignored_total",
        "Events whose optional v2 field had an invalid value, read as its default (the event kept).",
        "field",
        IGNORABLE_FIELDS
            .iter()
            .zip(h.agg.fields_ignored)
            .map(|(f, v)| (*f, v)),
    );
}

/// What the memory limits cost: evicted ids, untracked deals, and the
/// series published against their budget.
fn render_capacity(out: &mut String, format: Format, h: &Health, series: u64) {
    plain(
        out,
        format,
        "funnel_dedup_evicted_total",
        "Event ids forgotten before their horizon because the dedup memory was full.",
        "counter",
        h.dedup_evicted,
    );
    plain(
        out,
        format,
        "funnel_deals_untracked_total",
        "Deal events left out of open-pipeline matching because max_tracked_deals was reached.",
        "counter",
        h.agg.deals_untracked,
    );
    plain(
        out,
        format,
        "funnel_series",
        "Business series currently published.",
        "gauge",
        series,
    );
    if h.series_budget != 0 && h.series_budget != u64::MAX {
        plain(
            out,
            format,
            "funnel_series_budget",
            "The max_series setting: past it, whole keys fold into __overflow__.",
            "gauge",
            h.series_budget,
        );
    }
}

fn render_dead_letter(out: &mut String, format: Format, [written, failures, pending]: [u64; 3]) {
    plain(
        out,
        format,
        "funnel_dead_letter_total",
        "Rejected events copied to the dead-letter topic (acknowledged).",
        "counter",
        written,
    );
    plain(
        out,
        format,
        "funnel_dead_letter_failures_total",
        "Failed dead-letter writes (each is retried).",
        "counter",
        failures,
    );
    plain(
        out,
        format,
        "funnel_dead_letter_pending",
        "Dead-letter copies not yet acknowledged; their partitions' commits wait.",
        "gauge",
        pending,
    );
}

fn render_streams(out: &mut String, format: Format, [clients, dropped]: [u64; 2]) {
    plain(
        out,
        format,
        "funnel_stream_clients",
        "Clients following /api/v1/kpis/stream now.",
        "gauge",
        clients,
    );
    plain(
        out,
        format,
        "funnel_stream_clients_dropped_total",
        "Stream clients disconnected by the engine because they stopped reading (their bounded buffer stayed full).",
        "counter",
        dropped,
    );
}

fn render_build_info(out: &mut String, version: &str) {
    header(out, "funnel_build_info", "Build metadata.", "gauge");
    out.push_str("funnel_build_info{version=\"");
    escape_label_value(out, version);
    out.push_str("\"} 1\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact() {
        let cases = [
            (0, "0"),
            (12_500_000, "12.5"),
            (1, "0.000001"),
            (-3_000_001, "-3.000001"),
            (24_000_000_000, "24000"),
        ];
        for (m, want) in cases {
            let mut s = String::new();
            write_micro(&mut s, m);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn escapes_label_values() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\"b\\c\nd");
        assert_eq!(s, r#"a\"b\\c\nd"#);
    }
}
