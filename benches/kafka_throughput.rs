//! Issue 16's live-path figures on Apache Kafka, printed (not asserted),
//! each next to its baseline in the same run. Starts one Kafka broker
//! through the shared helper (`scripts/kafka`; Java and Maven, see README).
//! Run: `cargo bench --bench kafka_throughput`.
//!
//! 1. Throughput on the skewed stream: the realistic log of
//!    `tests/realistic/gen.py` (N events, default 1,000,000) keyed by
//!    campaign into 4 partitions (roughly 47/37/10/6% of the events),
//!    drained in alternating rounds, each in a new group, by
//!    - a no-op rdkafka consumer (the ceiling: poll, nothing else),
//!    - the engine's source and workers (event clock, the CLI's default
//!      worker count: 1 on 2 cores),
//!    - the hand-written Python consumer (`benches/python_consumer.py`),
//!
//!    timed from the first message (first applied batch) to the last.
//!    Next to them, the worker's ceiling: the same messages, captured once
//!    from the topic in arrival order, applied in memory by one thread in
//!    the batches the source would hand over (no Kafka). For the engine
//!    rounds the CPU seconds of each thread (`/proc/self/task`) and of the
//!    broker's JVM are printed: where the time goes.
//! 2. Freshness: while a producer writes 50,000 events/s, 200 probe events
//!    with a unique campaign are sent; the time until each is applied is
//!    recorded: p50 and p99.
//!
//! Environment: `KAFKA_BENCH_EVENTS` (default 1,000,000), `KAFKA_BENCH_ROUNDS`
//! (default 3), `KAFKA_BENCH_WORKERS` (default: the CLI's),
//! `KAFKA_BENCH_PYTHON=0` (skip Python), `KAFKA_BENCH_PROPS=k=v,k=v` (extra
//! librdkafka properties for the engine's consumer), `KAFKA_BENCH_ONLY=throughput|freshness|engine` (`engine`:
//! the engine's rounds alone, for profilers).

mod support;

use funnelstream::config::{ClockMode, EngineConfig};
use funnelstream::engine::{Engine, Outcome};
use funnelstream::live::LiveState;
use funnelstream::source::{KafkaSettings, Source};

use funnelstream::wall_clock_ms;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::Broker;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn workers() -> usize {
    // The CLI's default: one core left to the poll thread.
    env(
        "KAFKA_BENCH_WORKERS",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .saturating_sub(1)
            .max(1),
    )
}

/// Extra librdkafka properties for the engine, `KAFKA_BENCH_PROPS=k=v,k=v`.
fn props() -> Vec<(String, String)> {
    env("KAFKA_BENCH_PROPS", String::new())
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn settings(brokers: &str, topic: &str, group: &str) -> KafkaSettings {
    KafkaSettings {
        brokers: brokers.into(),
        topics: vec![topic.into()],
        group: group.into(),
        properties: props(),
        workers: workers(),
        dead_letter_topic: None,
        checkpoint: None,
    }
}

/// The engine drained: a log of history, so event time (every event is
/// windowed), room for every campaign.
fn engine_config(clock: ClockMode) -> EngineConfig {
    EngineConfig {
        clock,
        max_campaigns: 100_000,
        ..EngineConfig::default()
    }
}

/// CPU seconds (user + system) by thread name, this process.
fn thread_cpu() -> BTreeMap<String, f64> {
    let tick = 100.0; // USER_HZ on Linux
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let p = t.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(p.join("comm")),
            std::fs::read_to_string(p.join("stat")),
        ) else {
            continue;
        };
        if let Some(cpu) = stat_cpu(&stat) {
            // librdkafka names its threads rdk:main, rdk:broker1, ...
            let name = comm.trim().trim_end_matches(char::is_numeric).to_string();
            *out.entry(name).or_insert(0.0) += cpu / tick;
        }
    }
    out
}

/// utime + stime (ticks) from a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
}

/// CPU seconds of the broker's JVM.
fn jvm_cpu(broker: &Broker) -> f64 {
    std::fs::read_to_string(broker.dir.join("node-1/pid"))
        .ok()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok())
        .and_then(|s| stat_cpu(&s))
        .map_or(f64::NAN, |t| t / 100.0)
}

fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d >= 0.05)
        .map(|(k, d)| format!("{k} {d:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The engine's rate, and where its CPU went.
fn engine_rate(brokers: &str, broker: &Broker, topic: &str, group: &str, n: u64) -> (f64, String) {
    let live = LiveState::new(Engine::new(engine_config(ClockMode::Event)));
    let source = Source::new(live.clone(), settings(brokers, topic, group)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let h = std::thread::Builder::new()
        .name("funnel-poll".into())
        .spawn(move || source.run(&s2))
        .unwrap();
    let mut start = None;
    loop {
        let a = support::applied(&live);
        if a > 0 && start.is_none() {
            start = Some((Instant::now(), thread_cpu(), jvm_cpu(broker)));
        }
        if a as u64 >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (t0, cpu0, jvm0) = start.unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = format!(
        "wall {wall:.2} s; CPU s: {}, broker JVM {:.2}",
        cpu_delta(&cpu0, &thread_cpu()),
        jvm_cpu(broker) - jvm0
    );
    stop.store(true, Ordering::Release);
    h.join().unwrap();
    (n as f64 / wall, cpu)
}

/// Every message of `topic`, in the order one consumer receives them:
/// (partition, payload).
fn capture(brokers: &str, topic: &str, n: u64) -> Vec<(i32, Vec<u8>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-capture")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::with_capacity(n as usize);
    while (out.len() as u64) < n {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push((m.partition(), m.payload().unwrap_or(&[]).to_vec()));
        }
    }
    out
}

/// The worker alone: `msgs` applied by one thread to fresh partitions in
/// runs of consecutive messages of one partition, at most `batch`
/// messages a hand-over, as the source's workers apply them. Events/s.
fn in_memory_rate(msgs: &[(i32, Vec<u8>)], batch: usize) -> f64 {
    let engine = Engine::new(engine_config(ClockMode::Event));
    let mut parts: Vec<_> = (0..4).map(|_| engine.live_partition()).collect();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut payloads: Vec<&[u8]> = Vec::new();
    let t = Instant::now();
    for chunk in msgs.chunks(batch) {
        let wall = wall_clock_ms();
        let mut i = 0;
        while i < chunk.len() {
            let p = chunk[i].0;
            let end = chunk[i..]
                .iter()
                .position(|m| m.0 != p)
                .map_or(chunk.len(), |k| i + k);
            payloads.clear();
            payloads.extend(chunk[i..end].iter().map(|m| m.1.as_slice()));
            outcomes.clear();
            parts[p as usize].process_batch_at(&payloads, wall, &mut outcomes);
            i = end;
        }
    }
    msgs.len() as f64 / t.elapsed().as_secs_f64()
}

fn throughput(brokers: &str, broker: &Broker, n: u64, rounds: usize) {
    let n = support::load_skewed(brokers, broker, n);
    if env("KAFKA_BENCH_ONLY", String::new()) == "engine" {
        // For profilers: the engine's rounds alone.
        for r in 0..rounds {
            let (b, cpu) = engine_rate(brokers, broker, "skew", &format!("bench-engine-{r}"), n);
            println!("round {r}: engine {b:.0}/s; {cpu}");
        }
        return;
    }
    let msgs = capture(brokers, "skew", n);
    let mut runs = 0;
    for w in msgs.windows(2) {
        runs += usize::from(w[0].0 != w[1].0);
    }
    println!(
        "captured in arrival order: {} messages, {} runs of one partition (mean {:.0} messages)",
        msgs.len(),
        runs + 1,
        msgs.len() as f64 / (runs + 1) as f64
    );
    let python = env("KAFKA_BENCH_PYTHON", 1) != 0;
    let (mut noop, mut engine, mut py, mut mem) = (vec![], vec![], vec![], vec![]);
    for r in 0..rounds {
        let a = support::noop_rate(brokers, "skew", &format!("bench-noop-{r}"), n);
        let (b, cpu) = engine_rate(brokers, broker, "skew", &format!("bench-engine-{r}"), n);
        let c = if python {
            support::python_rate(brokers, "skew", &format!("bench-python-{r}"), n)
        } else {
            f64::NAN
        };
        let m = in_memory_rate(&msgs, 1024);
        println!(
            "round {r}: no-op rdkafka {a:.0}/s, engine {b:.0}/s ({} workers), python {c:.0}/s, \
             worker alone in memory {m:.0}/s: engine/no-op {:.2}, engine/python {:.1}, \
             engine/in-memory {:.2}",
            workers(),
            b / a,
            b / c,
            b / m
        );
        println!("round {r}: engine {cpu}");
        noop.push(a);
        engine.push(b);
        py.push(c);
        mem.push(m);
    }
    let ratios: Vec<f64> = engine.iter().zip(&noop).map(|(e, n)| e / n).collect();
    let py_ratios: Vec<f64> = engine.iter().zip(&py).map(|(e, p)| e / p).collect();
    println!(
        "throughput (median of {rounds}): no-op rdkafka {:.0}/s, engine {:.0}/s, python {:.0}/s, \
         in memory {:.0}/s; engine/no-op {:.2} (rounds {:?}), engine/python {:.1} (rounds {:?})",
        support::median(noop),
        support::median(engine),
        support::median(py),
        support::median(mem),
        support::median(ratios.clone()),
        ratios
            .iter()
            .map(|r| (r * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        support::median(py_ratios.clone()),
        py_ratios
            .iter()
            .map(|r| (r * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
    );
}

fn main() {
    let broker = Broker::start();
    let brokers = broker.addr();
    let n: u64 = env("KAFKA_BENCH_EVENTS", 1_000_000);
    let rounds: usize = env("KAFKA_BENCH_ROUNDS", 3);
    let only: String = env("KAFKA_BENCH_ONLY", String::new());
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at start: {}", l.trim());
    }
    if only.is_empty() || only == "throughput" || only == "engine" {
        throughput(&brokers, &broker, n, rounds);
    }
    if only.is_empty() || only == "freshness" {
        support::freshness(
            &broker,
            &brokers,
            Engine::new(engine_config(ClockMode::Wall)),
            settings(&brokers, "fresh", "bench-fresh"),
        );
    }
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at end: {}", l.trim());
    }
}
