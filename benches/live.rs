//! Live-path figures, printed (not asserted), each next to its baseline in
//! the same run. Starts Apache Kafka through `scripts/kafka` (Java and
//! Maven; see README). Run: `cargo bench --bench live`.
//!
//! 1. Throughput on a skewed stream: the realistic log of
//!    `tests/realistic/gen.py` (N events, default 1,000,000) keyed by
//!    campaign into 4 partitions (the Zipf-sized campaigns put roughly
//!    half the events in one partition), drained in alternating rounds by
//!    a no-op rdkafka consumer (the ceiling), the engine's source and
//!    workers (event clock, the CLI's default worker count), and the
//!    hand-written Python consumer (`benches/python_consumer.py`:
//!    confluent-kafka, json.loads, prometheus_client counters), each in a
//!    new group: events/s and the ratios, timed from the first to the last
//!    message.
//! 2. Freshness: while a producer writes 50,000 events/s, probe events with
//!    a unique campaign are sent; the time until each is applied (and so on
//!    /metrics) is recorded: p50 and p99.
//! 3. Scrape: GET /metrics over HTTP on an engine holding ~100k and ~1M
//!    series.

mod support;

use funnelstream::config::{ClockMode, EngineConfig};
use funnelstream::engine::Engine;
use funnelstream::live::LiveState;
use funnelstream::source::{KafkaSettings, Source};
use funnelstream::synth::{Synth, SynthConfig};
use funnelstream::wall_clock_ms;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::broker::free_port;
use support::Broker;

fn settings(brokers: &str, topic: &str, group: &str) -> KafkaSettings {
    KafkaSettings {
        brokers: brokers.into(),
        topics: vec![topic.into()],
        group: group.into(),
        properties: vec![],
        workers: 1,
        dead_letter_topic: None,
        checkpoint: None,
    }
}

fn workers() -> usize {
    std::env::var("LIVE_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            // The CLI's default: one core left to the poll thread.
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .saturating_sub(1)
                .max(1)
        })
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        clock: ClockMode::Wall,
        max_campaigns: 100_000,
        ..EngineConfig::default()
    }
}

fn engine_rate(brokers: &str, topic: &str, group: &str, n: u64) -> f64 {
    let live = LiveState::new(Engine::new(EngineConfig {
        // A log of history: event time, so that every event is windowed.
        clock: ClockMode::Event,
        ..engine_config()
    }));
    let source = Source::new(
        live.clone(),
        KafkaSettings {
            workers: workers(),
            ..settings(brokers, topic, group)
        },
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let h = std::thread::spawn(move || source.run(&s2));
    let mut t0 = None;
    loop {
        let a = support::applied(&live);
        if a > 0 {
            t0.get_or_insert_with(Instant::now);
        }
        if a as u64 >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let rate = n as f64 / t0.unwrap().elapsed().as_secs_f64();
    stop.store(true, Ordering::Release);
    h.join().unwrap();
    rate
}

fn scrape(keys: u64, events: u64) {
    let live = LiveState::new(Engine::new(EngineConfig {
        max_campaigns: 1_000_000,
        ..engine_config()
    }));
    let slot = live.slot("bench", 0);
    // Only assigned partitions are published.
    slot.assigned.store(true, Ordering::Release);
    {
        let mut p = slot.state.lock().unwrap();
        let mut g = Synth::new(SynthConfig {
            keys,
            start_ms: wall_clock_ms() - 20 * 86_400_000,
            step_ms: 20.0 * 86_400_000.0 / events as f64,
            ..SynthConfig::default()
        });
        for _ in 0..events {
            p.process_at(g.next_line().as_bytes(), wall_clock_ms());
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let port = free_port();
    let l2 = live.clone();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        funnelstream::export::http::serve(listener, l2, Default::default(), std::future::pending())
            .await
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut times = Vec::new();
    let mut size = 0;
    let mut series = String::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = Vec::new();
        s.read_to_end(&mut body).unwrap();
        times.push(t.elapsed().as_secs_f64());
        size = body.len();
        if series.is_empty() {
            let text = String::from_utf8_lossy(&body);
            series = text
                .lines()
                .find(|l| l.starts_with("funnel_series "))
                .unwrap_or("?")
                .to_string();
        }
    }
    times.sort_by(f64::total_cmp);
    assert!(size > 100_000, "the scrape published nothing: {series}");
    println!(
        "scrape /metrics: {series} ({} MB): median {:.0} ms, best {:.0} ms",
        size / 1_000_000,
        times[2] * 1000.0,
        times[0] * 1000.0
    );
}

fn throughput(brokers: &str, broker: &Broker, n: u64, rounds: usize) {
    let n = support::load_skewed(brokers, broker, n);
    let python = std::env::var("LIVE_BENCH_PYTHON").map_or(true, |v| v != "0");
    let (mut noop, mut engine, mut py) = (vec![], vec![], vec![]);
    for r in 0..rounds {
        let a = support::noop_rate(brokers, "skew", &format!("bench-noop-{r}"), n);
        let b = engine_rate(brokers, "skew", &format!("bench-engine-{r}"), n);
        let c = if python {
            support::python_rate(brokers, "skew", &format!("bench-python-{r}"), n)
        } else {
            f64::NAN
        };
        println!(
            "round {r}: no-op rdkafka {a:.0}/s, engine {b:.0}/s ({} workers), python {c:.0}/s: \
             engine/no-op {:.2}, engine/python {:.1}",
            workers(),
            b / a,
            b / c
        );
        noop.push(a);
        engine.push(b);
        py.push(c);
    }
    let ratios: Vec<f64> = engine.iter().zip(&noop).map(|(e, n)| e / n).collect();
    let py_ratios: Vec<f64> = engine.iter().zip(&py).map(|(e, p)| e / p).collect();
    println!(
        "throughput (median of {rounds}): no-op rdkafka {:.0}/s, engine {:.0}/s, python {:.0}/s; \
         engine/no-op {:.2} (rounds {:?}), engine/python {:.1}",
        support::median(noop),
        support::median(engine),
        support::median(py),
        support::median(ratios.clone()),
        ratios
            .iter()
            .map(|r| (r * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        support::median(py_ratios)
    );
}

fn main() {
    let broker = Broker::start();
    let brokers = broker.addr();
    let n: u64 = std::env::var("LIVE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = std::env::var("LIVE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let only = std::env::var("LIVE_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "throughput" {
        throughput(&brokers, &broker, n, rounds);
    }
    if only.is_empty() || only == "freshness" {
        support::freshness(
            &broker,
            &brokers,
            Engine::new(engine_config()),
            settings(&brokers, "fresh", "bench-fresh"),
        );
    }
    if only.is_empty() || only == "scrape" {
        scrape(400, 400_000);
        scrape(3_800, 2_000_000);
    }
}
