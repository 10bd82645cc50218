//! Live-path figures, printed (not asserted), each next to its baseline in
//! the same run. Starts Apache Kafka through `scripts/kafka` (Java and
//! Maven; see README). Run: `cargo bench --bench live`.
//!
//! 1. Throughput: N events in a local Kafka topic, drained by a no-op
//!    rdkafka consumer (the ceiling), then by the engine's source and
//!    workers (same settings, another group): events/s and their ratio,
//!    timed from the first to the last message.
//! 2. Freshness: while a producer writes 50,000 events/s, probe events with
//!    a unique campaign are sent; the time until each is applied (and so on
//!    /metrics) is recorded: p50 and p99.
//! 3. Scrape: GET /metrics over HTTP on an engine holding ~100k and ~1M
//!    series.

mod support;

use funnelstream::config::{ClockMode, EngineConfig};
use funnelstream::engine::Engine;
use funnelstream::live::LiveState;
use funnelstream::source::producer::{producer, send};
use funnelstream::source::{KafkaSettings, Source};
use funnelstream::synth::{Synth, SynthConfig};
use funnelstream::wall_clock_ms;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::broker::free_port;
use support::{load_events, Broker};

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

fn noop_rate(brokers: &str, topic: &str, n: u64) -> f64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-noop")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut seen = 0u64;
    let mut t0 = None;
    while seen < n {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
            seen += 1;
            t0.get_or_insert_with(Instant::now);
        }
    }
    n as f64 / t0.unwrap().elapsed().as_secs_f64()
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        clock: ClockMode::Wall,
        max_campaigns: 100_000,
        ..EngineConfig::default()
    }
}

fn applied(live: &LiveState) -> i64 {
    live.slots()
        .iter()
        .map(|s| s.messages.load(Ordering::Acquire))
        .sum()
}

fn engine_rate(brokers: &str, topic: &str, n: u64) -> f64 {
    let live = LiveState::new(Engine::new(engine_config()));
    let source = Source::new(live.clone(), settings(brokers, topic, "bench-engine")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let h = std::thread::spawn(move || source.run(&s2));
    let mut t0 = None;
    loop {
        let a = applied(&live);
        if a > 0 {
            t0.get_or_insert_with(Instant::now);
        }
        if a as u64 >= n {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let rate = n as f64 / t0.unwrap().elapsed().as_secs_f64();
    stop.store(true, Ordering::Release);
    h.join().unwrap();
    rate
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn freshness(brokers: &str, broker: &Broker) {
    broker.create_topic("fresh", 3);
    let live = LiveState::new(Engine::new(engine_config()));
    let source = Source::new(live.clone(), settings(brokers, "fresh", "bench-fresh")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let h = std::thread::spawn(move || source.run(&s2));
    while live.readiness().is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Background load at 50k events/s.
    let load_stop = Arc::new(AtomicBool::new(false));
    let ls = load_stop.clone();
    let b = brokers.to_string();
    let load = std::thread::spawn(move || {
        let (p, _) = producer(&b, &[]).unwrap();
        let mut g = Synth::new(SynthConfig {
            keys: 200,
            step_ms: 0.0,
            ..SynthConfig::default()
        });
        let start = Instant::now();
        let mut sent = 0u64;
        while !ls.load(Ordering::Acquire) {
            let due = (start.elapsed().as_secs_f64() * 50_000.0) as u64;
            while sent < due {
                g.set_time_ms(wall_clock_ms());
                let _ = send(&p, "fresh", g.next_line().as_bytes());
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = p.flush(Duration::from_secs(10));
        sent as f64 / start.elapsed().as_secs_f64()
    });
    std::thread::sleep(Duration::from_secs(2));
    let (p, _) = producer(brokers, &[("linger.ms".into(), "0".into())]).unwrap();
    let mut lat = Vec::new();
    for i in 0..200 {
        let campaign = format!("probe-{i}");
        let line = format!(
            r#"{{"id":"probe-{i}","type":"click","ts":{},"channel":"probe","campaign":"{campaign}"}}"#,
            wall_clock_ms()
        );
        let t = Instant::now();
        send(&p, "fresh", line.as_bytes()).unwrap();
        loop {
            if live
                .engine
                .labels
                .campaign
                .names()
                .iter()
                .any(|n| **n == *campaign)
            {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
            if t.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        lat.push(t.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_millis(40));
    }
    load_stop.store(true, Ordering::Release);
    let achieved = load.join().unwrap();
    lat.sort_by(f64::total_cmp);
    println!(
        "freshness under {:.0} events/s: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} probes)",
        achieved,
        percentile(&lat, 0.5) * 1000.0,
        percentile(&lat, 0.99) * 1000.0,
        lat.last().unwrap() * 1000.0,
        lat.len()
    );
    stop.store(true, Ordering::Release);
    h.join().unwrap();
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

fn main() {
    let broker = Broker::start();
    let brokers = broker.addr();
    let n: u64 = std::env::var("LIVE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    broker.create_topic("bench", 1);
    let t = Instant::now();
    load_events(&brokers, "bench", n, 1000);
    println!(
        "loaded {n} events into Kafka in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let noop = noop_rate(&brokers, "bench", n);
    let engine = engine_rate(&brokers, "bench", n);
    println!(
        "throughput: no-op consumer {:.0} events/s, engine {:.0} events/s, ratio {:.2}",
        noop,
        engine,
        engine / noop
    );
    freshness(&brokers, &broker);
    scrape(400, 400_000);
    scrape(3_800, 2_000_000);
}
