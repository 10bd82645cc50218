//! Helpers shared by the benchmarks: the engine's settings they measure,
//! and for those that need a broker the integration tests' Apache Kafka
//! processes (`tests/it/support/broker.rs`, included by path) and loading
//! events.
#![allow(dead_code)]

#[path = "../../tests/it/support/broker.rs"]
pub mod broker;
#[allow(unused_imports)]
pub use broker::Broker;

use funnelstream::config::{parse_windows, ClockMode, EngineConfig};
use funnelstream::engine::Engine;
use funnelstream::live::LiveState;
use funnelstream::source::producer::{producer, send};
use funnelstream::source::{KafkaSettings, Source};
use funnelstream::synth::{Synth, SynthConfig};
use funnelstream::wall_clock_ms;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The engine measured: event time, `windows` (e.g. `5m,1h,1d`), room for
/// a million campaigns and no series budget.
pub fn engine_config(windows: &str) -> EngineConfig {
    EngineConfig {
        windows: parse_windows(windows).unwrap(),
        clock: ClockMode::Event,
        max_campaigns: 1_000_000,
        // Every key its own: the default series budget (200,000 series)
        // would fold all but 470 of a 100,000-key stream into one key.
        max_series: usize::MAX,
        ..EngineConfig::default()
    }
}

/// Calendar windows `windows` in zone `tz`, fiscal year from January.
pub fn calendar_config(windows: &str, tz: &str) -> funnelstream::config::CalendarConfig {
    funnelstream::config::CalendarConfig {
        windows: funnelstream::config::parse_calendar_windows(windows).unwrap(),
        timezone: tz.into(),
        tz: funnelstream::config::parse_timezone(tz).unwrap(),
        fiscal_year_start_month: 1,
    }
}

/// Writes `n` synthetic events over `keys` keys, stamped with the wall
/// clock (a live stream), to `topic`, and waits for every acknowledgement.
pub fn load_events(brokers: &str, topic: &str, n: u64, keys: u64) {
    let (p, _) = producer(brokers, &[]).unwrap();
    let mut g = Synth::new(SynthConfig {
        keys,
        step_ms: 0.0,
        ..SynthConfig::default()
    });
    for _ in 0..n {
        g.set_time_ms(wall_clock_ms());
        send(&p, topic, g.next_line().as_bytes()).unwrap();
    }
    p.flush(Duration::from_secs(300)).unwrap();
}

/// The value at quantile `p` of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Freshness under 50k events/s of background load: the time from sending
/// a probe event (a new campaign) to the engine knowing its campaign, p50
/// and p99 of 200 probes, printed. `settings` must read topic `fresh`.
pub fn freshness(broker: &Broker, brokers: &str, engine: Engine, settings: KafkaSettings) {
    broker.create_topic("fresh", 3);
    let live = LiveState::new(engine);
    let source = Source::new(live.clone(), settings).unwrap();
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

pub fn noop_rate(brokers: &str, topic: &str, group: &str, n: u64) -> f64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
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

pub fn applied(live: &LiveState) -> i64 {
    live.slots()
        .iter()
        .map(|s| s.messages.load(Ordering::Acquire))
        .sum()
}

pub fn python_rate(brokers: &str, topic: &str, group: &str, n: u64) -> f64 {
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/python_consumer.py"
        ))
        .args([brokers, topic, group, &n.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python consumer failed (pip install confluent-kafka prometheus_client): {text}"
    );
    text.trim()
        .strip_prefix("events_per_s ")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("python consumer printed {text:?}"))
}

/// The realistic log (`tests/realistic/gen.py`), generated once per size.
pub fn skewed_log(n: u64) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("realistic-{n}.ndjson"));
    if !file.exists() {
        let out = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/realistic/gen.py"
            ))
            .args(["--events", &n.to_string()])
            .output()
            .expect("python3");
        assert!(out.status.success(), "gen.py failed");
        std::fs::write(&file, out.stdout).unwrap();
    }
    file
}

/// The median: the mean of the two middle values of an even count (of two
/// rounds, their mean, not the higher one).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

/// Writes the realistic log of about `n` events (`skewed_log`) to a new
/// 4-partition topic `skew`, keyed by campaign as the generator says, and
/// prints the partitions' shares; the events written.
pub fn load_skewed(brokers: &str, broker: &Broker, n: u64) -> u64 {
    let file = skewed_log(n);
    let lines: Vec<Vec<u8>> = std::fs::read(&file)
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let n = lines.len() as u64;
    broker.create_topic("skew", 4);
    let t = Instant::now();
    let (p, _) = producer(brokers, &[]).unwrap();
    for l in &lines {
        send(&p, "skew", l).unwrap();
    }
    p.flush(Duration::from_secs(300)).unwrap();
    drop(lines);
    let shares: Vec<String> = (0..4)
        .map(|i| {
            let (lo, hi) = broker.watermarks("skew", i);
            format!("{:.0}%", (hi - lo) as f64 * 100.0 / n as f64)
        })
        .collect();
    println!(
        "loaded {n} realistic events keyed by campaign in {:.1}s; partitions hold {}",
        t.elapsed().as_secs_f64(),
        shares.join("/")
    );
    n
}
