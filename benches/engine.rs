//! Throughput of the core engine, per event, on one core:
//! decode alone, aggregate alone, decode + dedup + aggregate (the
//! `Partition::process` hot path) from 100 to 100,000 keys and with 1 and 6
//! windows, and exposition rendering (ours vs the `prometheus` crate's
//! encoder on the same series).
//!
//! Events are ~200-byte synthetic events (`funnelstream::synth`), keys drawn
//! uniformly (no hot keys, the worst case for caches), event time advancing
//! 100 ms per event so buckets keep rolling over, as in a backfill of
//! history (pessimistic). The `live` variant advances event time 1 us per
//! event, as a live stream at 1M events/s does (at 100 and 100,000 keys,
//! and with 1 window at 100,000). The `ooo` variant is the backfill
//! stream arriving out of order: shuffled within blocks of 1,024 events
//! (about 100 s of event time), as interleaved producers deliver it. The
//! `batch` variants run the
//! same streams through `Partition::process_batch_at`, 256 messages a call.
//! The `sparse` variant is the backfill stream at 100 keys with event time
//! advancing 100 s per event, so that each key sees an event every 10^4 s
//! as each of 100,000 keys does on the backfill stream: the same per-event
//! work (new buckets, log flushes) on a state that stays in cache.
//! The `zipf` variant is the backfill stream at 100,000 keys with keys
//! drawn by popularity (the key of rank `r` gets a share proportional to
//! `1/r`) instead of uniformly.
//! The 1-window variants use 90d, and at 100,000 keys on the backfill
//! stream also 5m (`1window-5m`): the two ends of what one window costs.
//! Each measurement runs on a partition pre-warmed with 1M events: at
//! 100,000 keys that is 10 events per key, whose rings are still filling.
//! The `aged` variants run the backfill stream on partitions 30M events (35
//! days of event time) in, where most rings are full and every new bucket
//! expires an old one; their events are generated as they go, untimed.

mod support;

use criterion::measurement::WallTime;
use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use funnelstream::config::EngineConfig;
use funnelstream::decode::{decode, DecodeConfig};
use funnelstream::engine::{Engine, Health, Partition};
use funnelstream::export::prometheus::render;
use funnelstream::synth::{Synth, SynthConfig};
use std::time::{Duration, Instant};
use support::engine_config;

const WALL: i64 = i64::MAX / 4;
const WARM: usize = 1_000_000;
const TIMED: usize = 1_000_000;
/// Messages per `process_batch_at` call in the `batch` variants.
const BATCH: usize = 256;

fn lines(keys: u64, n: usize) -> Vec<String> {
    lines_step(keys, n, 100.0)
}

fn lines_step(keys: u64, n: usize, step_ms: f64) -> Vec<String> {
    synth_lines(
        SynthConfig {
            keys,
            step_ms,
            ..SynthConfig::default()
        },
        n,
    )
}

/// The backfill stream with keys drawn by a Zipf law of exponent `skew`.
fn lines_skewed(keys: u64, n: usize, skew: f64) -> Vec<String> {
    synth_lines(
        SynthConfig {
            keys,
            key_skew: skew,
            ..SynthConfig::default()
        },
        n,
    )
}

fn synth_lines(cfg: SynthConfig, n: usize) -> Vec<String> {
    let mut g = Synth::new(cfg);
    (0..n).map(|_| g.next_line()).collect()
}

/// `lines` shuffled within consecutive blocks of `block` lines.
fn shuffled(mut lines: Vec<String>, block: usize) -> Vec<String> {
    let mut rng = funnelstream::synth::Rng::new(7);
    for b in lines.chunks_mut(block) {
        for i in (1..b.len()).rev() {
            b.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }
    lines
}

/// What an independent check would feed: Zipf campaign sizes, history
/// delivered shuffled (backfill order over blocks of ~28 h of event time),
/// 1% malformed events and 2% exact resends of random earlier lines, from
/// adjacent to the far end of the log (so most are of events days older
/// than engine time, which only dedup by acceptance time catches).
fn lines_realistic(keys: u64, n: usize) -> Vec<String> {
    let base = synth_lines(
        SynthConfig {
            keys,
            key_skew: 1.0,
            invalid_ratio: 0.01,
            ..SynthConfig::default()
        },
        n,
    );
    let base = shuffled(base, 1 << 20);
    let mut rng = funnelstream::synth::Rng::new(15);
    let mut out = Vec::with_capacity(n + n / 40);
    for line in base {
        out.push(line);
        if rng.below(50) == 0 {
            let earlier = rng.below(out.len() as u64) as usize;
            out.push(out[earlier].clone());
        }
    }
    out.truncate(n);
    out
}

/// A partition warmed with `warm`, timed over `timed`, rebuilt when used up.
struct Bed<'a> {
    cfg: EngineConfig,
    warm: &'a [String],
    timed: &'a [String],
    part: Option<Partition>,
    pos: usize,
}

impl<'a> Bed<'a> {
    fn new(cfg: EngineConfig, pool: &'a [String]) -> Self {
        let (warm, timed) = pool.split_at(WARM);
        Bed {
            cfg,
            warm,
            timed,
            part: None,
            pos: usize::MAX,
        }
    }
    fn run(&mut self, iters: u64) -> Duration {
        self.run_with(iters, |p, batch| {
            for l in batch {
                black_box(p.process_at(l.as_bytes(), WALL));
            }
        })
    }
    /// The same through `Partition::process_batch_at`, `BATCH` messages a
    /// call (as a live worker hands over a polled batch).
    fn run_batch(&mut self, iters: u64) -> Duration {
        let mut out = Vec::with_capacity(BATCH);
        self.run_with(iters, |p, batch| {
            for b in batch.chunks(BATCH) {
                out.clear();
                p.process_batch_at(b, WALL, &mut out);
                black_box(&out);
            }
        })
    }
    fn run_with(&mut self, iters: u64, mut f: impl FnMut(&mut Partition, &[String])) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters as usize;
        while left > 0 {
            if self.pos >= self.timed.len() || self.part.is_none() {
                let mut p = Engine::new(self.cfg.clone()).partition();
                for l in self.warm {
                    p.process_at(l.as_bytes(), WALL);
                }
                self.part = Some(p);
                self.pos = 0;
            }
            let p = self.part.as_mut().unwrap();
            let n = left.min(self.timed.len() - self.pos);
            let batch = &self.timed[self.pos..self.pos + n];
            let t = Instant::now();
            f(p, batch);
            total += t.elapsed();
            self.pos += n;
            left -= n;
        }
        total
    }
}

/// Events into the backfill stream before the `aged` variants are timed.
const AGED_WARM: usize = 30_000_000;

/// A partition `AGED_WARM` events into the backfill stream over `keys`,
/// timed on the stream's continuation, generated `BATCH` lines at a time
/// outside the timing.
struct Aged {
    synth: Synth,
    part: Partition,
    lines: Vec<String>,
    out: Vec<funnelstream::engine::Outcome>,
}

impl Aged {
    fn new(keys: u64, windows: &str) -> Self {
        let mut a = Aged {
            synth: Synth::new(SynthConfig {
                keys,
                ..SynthConfig::default()
            }),
            part: Engine::new(engine_config(windows)).partition(),
            lines: Vec::with_capacity(BATCH),
            out: Vec::with_capacity(BATCH),
        };
        for _ in 0..AGED_WARM / BATCH {
            a.next_batch(BATCH);
        }
        a
    }
    fn next_batch(&mut self, n: usize) -> Duration {
        self.lines.clear();
        for _ in 0..n {
            self.lines.push(self.synth.next_line());
        }
        self.out.clear();
        let t = Instant::now();
        self.part.process_batch_at(&self.lines, WALL, &mut self.out);
        let d = t.elapsed();
        black_box(&self.out);
        d
    }
    fn run_batch(&mut self, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters as usize;
        while left > 0 {
            let n = left.min(BATCH);
            total += self.next_batch(n);
            left -= n;
        }
        total
    }
}

/// The `engine` group, per event, 10 samples of 8 s.
fn engine_group(c: &mut Criterion) -> BenchmarkGroup<'_, WallTime> {
    let mut g = c.benchmark_group("engine");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(1));
    g
}

fn bench_aged(c: &mut Criterion) {
    let mut g = engine_group(c);
    for (keys, windows) in [
        (100u64, "5m,1h,1d,7d,30d,90d"),
        (100_000, "5m,1h,1d,7d,30d,90d"),
        (100_000, "90d"),
    ] {
        let n = windows.split(',').count();
        // Aged on first use, so that a filtered-out variant costs nothing.
        let mut aged = None;
        g.bench_with_input(
            BenchmarkId::new(format!("decode+aggregate/{n}windows/aged/batch"), keys),
            &keys,
            |b, _| {
                let aged = aged.get_or_insert_with(|| Aged::new(keys, windows));
                b.iter_custom(|iters| aged.run_batch(iters))
            },
        );
    }
    g.finish();
}

fn bench_engine(c: &mut Criterion) {
    let mut g = engine_group(c);

    let pool = lines(10_000, WARM + TIMED);
    let avg = pool.iter().map(String::len).sum::<usize>() / pool.len();
    eprintln!("average event size: {avg} bytes");

    let dcfg = DecodeConfig::default();
    g.bench_function("decode", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % pool.len();
            black_box(decode(pool[i].as_bytes(), &dcfg, WALL).is_ok())
        })
    });

    // Aggregate alone: events decoded up front, applied in order.
    let events: Vec<_> = pool
        .iter()
        .map(|l| decode(l.as_bytes(), &dcfg, WALL).unwrap())
        .collect();
    g.bench_function("aggregate/10000keys/6windows", |b| {
        let cfg = engine_config("5m,1h,1d,7d,30d,90d");
        b.iter_custom(|iters| {
            let engine = Engine::new(cfg.clone());
            let mut agg = engine.partition().agg;
            let mut now = i64::MIN;
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            let mut i = 0;
            while left > 0 {
                let n = left.min(events.len() - i);
                let t = Instant::now();
                for ev in &events[i..i + n] {
                    now = now.max(ev.ts);
                    agg.apply(ev, ev.ts, now);
                }
                total += t.elapsed();
                left -= n;
                i += n;
                if i == events.len() {
                    i = 0;
                    agg = engine.partition().agg;
                    now = i64::MIN;
                }
            }
            total
        })
    });
    drop(events);

    for keys in [100u64, 1_000, 10_000, 100_000] {
        let pool = if keys == 10_000 {
            pool.clone()
        } else {
            lines(keys, WARM + TIMED)
        };
        let mut bed = Bed::new(engine_config("5m,1h,1d,7d,30d,90d"), &pool);
        g.bench_with_input(
            BenchmarkId::new("decode+aggregate/6windows", keys),
            &keys,
            |b, _| b.iter_custom(|iters| bed.run(iters)),
        );
        g.bench_with_input(
            BenchmarkId::new("decode+aggregate/6windows/batch", keys),
            &keys,
            |b, _| b.iter_custom(|iters| bed.run_batch(iters)),
        );
        if keys == 100 || keys == 100_000 {
            let ooo = shuffled(pool.clone(), 1024);
            let mut bed = Bed::new(engine_config("5m,1h,1d,7d,30d,90d"), &ooo);
            g.bench_with_input(
                BenchmarkId::new("decode+aggregate/6windows/ooo/batch", keys),
                &keys,
                |b, _| b.iter_custom(|iters| bed.run_batch(iters)),
            );
            drop(bed);
            drop(ooo);
            // Live at 1M events/s: event time advances 1 us per event.
            let live = lines_step(keys, WARM + TIMED, 0.001);
            let mut bed = Bed::new(engine_config("5m,1h,1d,7d,30d,90d"), &live);
            g.bench_with_input(
                BenchmarkId::new("decode+aggregate/6windows/live", keys),
                &keys,
                |b, _| b.iter_custom(|iters| bed.run(iters)),
            );
            g.bench_with_input(
                BenchmarkId::new("decode+aggregate/6windows/live/batch", keys),
                &keys,
                |b, _| b.iter_custom(|iters| bed.run_batch(iters)),
            );
            if keys == 100 {
                // 100 keys, each as sparse as one of 100,000 on the
                // backfill stream (an event every 10^4 s of event time):
                // the same per-event work on a state that fits in cache.
                let sparse = lines_step(keys, WARM + TIMED, 100_000.0);
                let mut bed = Bed::new(engine_config("5m,1h,1d,7d,30d,90d"), &sparse);
                g.bench_with_input(
                    BenchmarkId::new("decode+aggregate/6windows/sparse/batch", keys),
                    &keys,
                    |b, _| b.iter_custom(|iters| bed.run_batch(iters)),
                );
            }
            if keys == 100_000 {
                let mut bed = Bed::new(engine_config("90d"), &live);
                g.bench_with_input(
                    BenchmarkId::new("decode+aggregate/1window/live/batch", keys),
                    &keys,
                    |b, _| b.iter_custom(|iters| bed.run_batch(iters)),
                );
            }
        }
        if keys == 100_000 {
            let mut bed = Bed::new(engine_config("90d"), &pool);
            g.bench_with_input(
                BenchmarkId::new("decode+aggregate/1window", keys),
                &keys,
                |b, _| b.iter_custom(|iters| bed.run(iters)),
            );
            g.bench_with_input(
                BenchmarkId::new("decode+aggregate/1window/batch", keys),
                &keys,
                |b, _| b.iter_custom(|iters| bed.run_batch(iters)),
            );
            // The other single window: with 5m alone, as with the six
            // windows, a sparse key's every event opens a new 5 s span
            // and goes to the log; with 90d alone its events mostly fall
            // in the pending span (36 h) and never reach the log.
            let mut bed = Bed::new(engine_config("5m"), &pool);
            g.bench_with_input(
                BenchmarkId::new("decode+aggregate/1window-5m/batch", keys),
                &keys,
                |b, _| b.iter_custom(|iters| bed.run_batch(iters)),
            );
            drop(bed);
            // The same backfill stream with a quarter of its events of
            // the v2 types (sessions, conversions, emails, surveys) and v2
            // deal fields: a mixed v1+v2 stream (issue 18's target row).
            let mixed = synth_lines(
                SynthConfig {
                    keys,
                    step_ms: 100.0,
                    v2_ratio: 0.25,
                    ..SynthConfig::default()
                },
                WARM + TIMED,
            );
            let mut bed = Bed::new(engine_config("5m,1h,1d,7d,30d,90d"), &mixed);
            g.bench_with_input(
                BenchmarkId::new("decode+aggregate/6windows/mixed/batch", keys),
                &keys,
                |b, _| b.iter_custom(|iters| bed.run_batch(iters)),
            );
            drop(bed);
            drop(mixed);
            // Keys drawn by popularity (Zipf, exponent 1) instead of
            // uniformly: how traffic spreads over campaigns in practice.
            let zipf = lines_skewed(keys, WARM + TIMED, 1.0);
            let mut bed = Bed::new(engine_config("5m,1h,1d,7d,30d,90d"), &zipf);
            g.bench_with_input(
                BenchmarkId::new("decode+aggregate/6windows/zipf/batch", keys),
                &keys,
                |b, _| b.iter_custom(|iters| bed.run_batch(iters)),
            );
            drop(bed);
            drop(zipf);
            let realistic = lines_realistic(keys, WARM + TIMED);
            let mut bed = Bed::new(engine_config("5m,1h,1d,7d,30d,90d"), &realistic);
            g.bench_with_input(
                BenchmarkId::new("decode+aggregate/6windows/realistic/batch", keys),
                &keys,
                |b, _| b.iter_custom(|iters| bed.run_batch(iters)),
            );
        }
    }
    g.finish();
}

/// Parses our own exposition into (name, labels, value) for the crate path.
/// (name, label pairs, value) of one series.
type Series = (String, Vec<(String, String)>, f64);

fn parse(text: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = l.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once("=\"").unwrap();
                (k.to_string(), v.trim_end_matches('"').to_string())
            })
            .collect();
        out.push((name.to_string(), labels, value.parse().unwrap()));
    }
    out
}

fn bench_render(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    // ~3,800 fully active keys publish about a million series.
    let mut part = Engine::new(engine_config("5m,1h,1d,7d,30d,90d")).partition();
    let mut gen = Synth::new(SynthConfig {
        keys: 3_800,
        step_ms: 2.0,
        ..SynthConfig::default()
    });
    for _ in 0..2_000_000 {
        part.process_at(gen.next_line().as_bytes(), WALL);
    }
    let now = gen.current_ms();
    let text = render(&[&part.agg], &Health::of(&[&part]), now, "bench");
    let series = text
        .lines()
        .find(|l| l.starts_with("funnel_series "))
        .unwrap()
        .to_string();
    eprintln!("render: {series}, {} MB of text", text.len() / 1_000_000);
    g.bench_function("funnelstream/1M_series", |b| {
        b.iter(|| black_box(render(&[&part.agg], &Health::of(&[&part]), now, "bench").len()))
    });

    // The same series through the prometheus crate's protobuf model and
    // TextEncoder (what a custom Collector would do per scrape).
    use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};
    use prometheus::Encoder;
    let parsed = parse(&text);
    g.bench_function("prometheus_crate/1M_series", |b| {
        b.iter(|| {
            let mut fams: Vec<MetricFamily> = Vec::new();
            for (name, labels, v) in &parsed {
                if fams.last().map(|f| f.name() != name).unwrap_or(true) {
                    let mut f = MetricFamily::default();
                    f.set_name(name.clone());
                    f.set_help("help".into());
                    f.set_field_type(MetricType::GAUGE);
                    fams.push(f);
                }
                let mut m = Metric::default();
                m.set_label(
                    labels
                        .iter()
                        .map(|(k, v)| {
                            let mut p = LabelPair::default();
                            p.set_name(k.clone());
                            p.set_value(v.clone());
                            p
                        })
                        .collect(),
                );
                let mut gv = Gauge::default();
                gv.set_value(*v);
                m.set_gauge(gv);
                fams.last_mut().unwrap().mut_metric().push(m);
            }
            let mut buf = Vec::with_capacity(text.len() + text.len() / 4);
            prometheus::TextEncoder::new()
                .encode(&fams, &mut buf)
                .unwrap();
            black_box(buf.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_engine, bench_aged, bench_render);
criterion_main!(benches);
