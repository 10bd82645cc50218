//! Checkpoint cost, printed (not asserted). Run: `cargo bench --bench
//! checkpoint` (parts 2 and 3 start Apache Kafka through `scripts/kafka`,
//! which needs Java and Maven; see README).
//!
//! 1. Size and codec time: one partition holding 100,000 active keys with
//!    the default 6 windows (20 events per key over 90 days, like the
//!    memory bench), encoded and decoded in memory.
//! 2. Write and restore through a local Kafka broker: the same checkpoint
//!    written to a checkpoint topic (chunks + manifest, acknowledged) and
//!    loaded back by the reader used on assignment.
//! 3. Throughput cost: the live engine drains N events over 100,000 keys
//!    from Kafka without checkpoints, then (another group) with a
//!    checkpoint every second, 30 times the default 30 s interval; the
//!    cost at the default interval is the measured cost scaled by 1/30.

mod support;

use funnelstream::checkpoint::{decode, encode, CheckpointMeta};
use funnelstream::config::{ClockMode, EngineConfig};
use funnelstream::engine::Engine;
use funnelstream::live::LiveState;
use funnelstream::source::checkpoint::{CheckpointSettings, Loaded, Policy, Store};
use funnelstream::source::{KafkaSettings, Source};
use funnelstream::synth::{Synth, SynthConfig};
use funnelstream::wall_clock_ms;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{load_events, Broker};

const KEYS: u64 = 100_000;

fn config() -> EngineConfig {
    EngineConfig {
        clock: ClockMode::Event,
        max_campaigns: 1_000_000,
        // 100,000 whole keys: the default series budget (200,000 series)
        // would fold all but a few hundred into `__overflow__`.
        max_series: 1_000_000_000,
        ..EngineConfig::default()
    }
}

fn settings(brokers: &str, group: &str, ck: Option<Duration>) -> KafkaSettings {
    KafkaSettings {
        brokers: brokers.into(),
        topics: vec!["bench".into()],
        group: group.into(),
        properties: vec![],
        workers: 1,
        dead_letter_topic: None,
        checkpoint: ck.map(|interval| CheckpointSettings {
            topic: "checkpoints".into(),
            interval,
            policy: Policy::Rebuild,
            create: false,
        }),
    }
}

/// Events/s of the engine draining `n` events, and the checkpoint counters.
fn engine_rate(brokers: &str, group: &str, n: i64, ck: Option<Duration>) -> (f64, u64, u64) {
    let live = LiveState::new(Engine::new(EngineConfig {
        max_campaigns: 1_000_000,
        ..EngineConfig::default()
    }));
    let source = Source::new(live.clone(), settings(brokers, group, ck)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let h = std::thread::spawn(move || source.run(&s2));
    let applied = || -> i64 {
        live.slots()
            .iter()
            .map(|s| s.messages.load(Ordering::Acquire))
            .sum()
    };
    let mut t0 = None;
    while applied() < n {
        if applied() > 0 {
            t0.get_or_insert_with(Instant::now);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let rate = n as f64 / t0.unwrap().elapsed().as_secs_f64();
    let (written, bytes) = live.checkpoint.get().map_or((0, 0), |c| {
        (
            c.written.load(Ordering::Relaxed),
            c.written_bytes.load(Ordering::Relaxed),
        )
    });
    stop.store(true, Ordering::Release);
    h.join().unwrap();
    (rate, written, bytes)
}

fn main() {
    // 1. In memory.
    let engine = Engine::new(config());
    let mut part = engine.partition();
    let mut g = Synth::new(SynthConfig {
        keys: KEYS,
        step_ms: 90.0 * 86_400_000.0 / (KEYS as f64 * 20.0),
        ..SynthConfig::default()
    });
    for _ in 0..KEYS * 20 {
        part.process_at(g.next_line().as_bytes(), i64::MAX / 4);
    }
    let meta = CheckpointMeta {
        topic: "bench".into(),
        partition: 0,
        next_offset: (KEYS * 20) as i64,
        written_at_ms: wall_clock_ms(),
        engine_now_ms: engine.clock.current(),
    };
    let t = Instant::now();
    let bytes = encode(&mut part, &meta);
    let enc = t.elapsed();
    let t = Instant::now();
    let restored = decode(&bytes, &Engine::new(config()), false).unwrap();
    let dec = t.elapsed();
    assert_eq!(restored.0.agg.keys().len(), part.agg.keys().len());
    println!(
        "checkpoint of {} keys ({} events, 6 windows): {:.1} MB, {:.0} bytes/key (engine memory {:.0} bytes/key); encode {:.0} ms, decode {:.0} ms",
        part.agg.keys().len(),
        KEYS * 20,
        bytes.len() as f64 / 1e6,
        bytes.len() as f64 / part.agg.keys().len() as f64,
        part.agg.memory_bytes() as f64 / part.agg.keys().len() as f64,
        enc.as_secs_f64() * 1000.0,
        dec.as_secs_f64() * 1000.0
    );

    // 2. Through Kafka.
    let broker = Broker::start();
    let brokers = broker.addr();
    broker.create_topic("checkpoints", 1);
    broker.create_topic("bench", 1);
    let ck = CheckpointSettings {
        topic: "checkpoints".into(),
        interval: Duration::from_secs(30),
        policy: Policy::Rebuild,
        create: false,
    };
    let store = Store::new(&brokers, "bench-store", &[], &[], ck).unwrap();
    // Warm the connection and metadata with a small write.
    store.write(&bytes[..1000], &meta, 1).unwrap();
    let t = Instant::now();
    store.write(&bytes, &meta, 0).unwrap();
    let wrote = t.elapsed();
    let t = Instant::now();
    let target = Engine::new(config());
    let loaded = store.load(&target, "bench", 0, 0).unwrap();
    let read = t.elapsed();
    match loaded {
        Loaded::Found { part: p, .. } => assert_eq!(p.agg.keys().len(), part.agg.keys().len()),
        Loaded::NotFound { problems } => panic!("not found: {problems:?}"),
    }
    println!(
        "through Kafka: write {:.0} ms ({:.0} MB/s), restore (scan + read + decode) {:.0} ms",
        wrote.as_secs_f64() * 1000.0,
        bytes.len() as f64 / 1e6 / wrote.as_secs_f64(),
        read.as_secs_f64() * 1000.0
    );
    drop(part);
    drop(restored);

    // 3. Throughput with and without checkpoints.
    let n: i64 = std::env::var("CHECKPOINT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000_000);
    load_events(&brokers, "bench", n as u64, KEYS);
    let (plain, _, _) = engine_rate(&brokers, "bench-plain", n, None);
    let (with, written, wbytes) =
        engine_rate(&brokers, "bench-ckpt", n, Some(Duration::from_secs(1)));
    let cost = 1.0 - with / plain;
    println!(
        "throughput over {n} events, {KEYS} keys: no checkpoints {plain:.0} events/s, checkpoint every 1s {with:.0} events/s ({written} checkpoints, {:.1} MB written), ratio {:.3}: cost {:.1}% at 1s, so about {:.2}% at the default 30s",
        wbytes as f64 / 1e6,
        with / plain,
        cost * 100.0,
        cost.max(0.0) * 100.0 / 30.0
    );
}
