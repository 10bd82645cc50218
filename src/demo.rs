//! `funnelstream demo`: the embedded default. An in-process Kafka-protocol
//! broker (librdkafka's mock cluster), a realistic synthetic stream written
//! into it (89 days of history first, then live traffic with a daily
//! rhythm, ~1% duplicates and ~0.5% malformed events), and the engine
//! consuming it through exactly the code path of `run`.

use crate::cli::{init_logging, DemoArgs, LogFormat, RunConfig};
use crate::config::{ClockMode, EngineConfig};
use crate::engine::wall_clock_ms;
use crate::produce::{producer, send};
use crate::source::KafkaSettings;
use crate::synth::{Synth, SynthConfig};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::Producer;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TOPIC: &str = "funnel-events";
/// Share of v2 events (sessions, conversions, email, surveys) in the
/// demo's and `produce`'s synthetic streams.
pub const DEMO_V2_RATIO: f64 = 0.25;
const DAY_MS: f64 = 86_400_000.0;

pub fn run(args: &DemoArgs) -> i32 {
    init_logging(LogFormat::Text, "info,librdkafka=error");
    let listen_s = args
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:9490".into());
    let listen = match listen_s.parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!(
                "funnelstream: invalid configuration: listen: `{listen_s}` is not an ADDR:PORT"
            );
            return 2;
        }
    };
    let cluster = match MockCluster::new(1) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("funnelstream: cannot start the embedded broker: {e}");
            return 1;
        }
    };
    if let Err(e) = cluster.create_topic(TOPIC, 3, 1) {
        eprintln!("funnelstream: cannot create the demo topic: {e}");
        return 1;
    }
    let bootstrap = cluster.bootstrap_servers();
    let stop = Arc::new(AtomicBool::new(false));
    let gen = {
        let (stop, bootstrap, rate, history, keys) = (
            stop.clone(),
            bootstrap.clone(),
            args.rate,
            args.history,
            args.keys.max(1),
        );
        std::thread::Builder::new()
            .name("funnel-demo-gen".into())
            .spawn(move || generate(&bootstrap, history, rate, keys, &stop))
            .expect("spawn generator")
    };
    if args.duration > 0 {
        let (stop, secs) = (stop.clone(), args.duration);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            stop.store(true, Ordering::Release);
        });
    }
    let cfg = RunConfig {
        engine: EngineConfig {
            clock: ClockMode::Wall,
            max_series: args.max_series.max(1),
            max_tracked_deals: args.max_tracked_deals.max(1),
            ..EngineConfig::default()
        },
        kafka: KafkaSettings {
            brokers: bootstrap.clone(),
            topics: vec![TOPIC.into()],
            group: "funnelstream-demo".into(),
            properties: vec![],
            workers: 1,
            dead_letter_topic: None,
            checkpoint: None,
        },
        listen,
        log_format: LogFormat::Text,
        log_level: "info".into(),
        web_config_file: None,
        security: Default::default(),
        probe_listen: None,
        http: Default::default(),
    };
    let code = crate::run::serve(cfg, Some(stop.clone()), |addr| {
        println!(
            "funnelstream demo is running\n\
             \x20 metrics:       http://{addr}/metrics\n\
             \x20 landing page:  http://{addr}/\n\
             \x20 Kafka broker:  {bootstrap} (topic {TOPIC}, 3 partitions)\n\
             \x20 add events:    funnelstream produce --brokers {bootstrap} --topic {TOPIC} --from FILE\n\
             Press Ctrl-C to stop."
        );
    });
    stop.store(true, Ordering::Release);
    let _ = gen.join();
    drop(cluster);
    code
}

/// History, then live traffic until `stop`.
fn generate(bootstrap: &str, history: u64, rate: u64, keys: u64, stop: &AtomicBool) {
    let (p, _acks) = match producer(bootstrap, &[]) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("demo generator: {e}");
            return;
        }
    };
    let now = wall_clock_ms();
    let span = 89.0 * DAY_MS;
    let mut g = Synth::new(SynthConfig {
        seed: now as u64,
        keys,
        start_ms: now - span as i64,
        // Duplicates and malformed events do not advance event time: spread
        // the valid ones over the whole span, up to now.
        step_ms: if history > 0 {
            span / (history as f64 * (1.0 - 0.01 - 0.005))
        } else {
            0.0
        },
        duplicate_ratio: 0.01,
        invalid_ratio: 0.005,
        // Every v2 family has values within seconds (issue 18).
        v2_ratio: DEMO_V2_RATIO,
        ..SynthConfig::default()
    });
    for _ in 0..history {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let _ = send(&p, TOPIC, g.next_line().as_bytes());
    }
    let _ = p.flush(Duration::from_secs(30));
    tracing::info!(
        events = history,
        "demo history written; live traffic follows"
    );
    g.set_step_ms(0.0);
    let start = Instant::now();
    let mut sent = 0f64;
    while !stop.load(Ordering::Acquire) {
        // A daily rhythm: busiest mid-afternoon UTC, quietest at night.
        let t = wall_clock_ms();
        let day_frac = (t as f64 % DAY_MS) / DAY_MS;
        let factor = 1.0 + 0.6 * (std::f64::consts::TAU * (day_frac - 0.375)).sin();
        let target = rate as f64 * factor * start.elapsed().as_secs_f64();
        while sent < target {
            g.set_time_ms(wall_clock_ms());
            let _ = send(&p, TOPIC, g.next_line().as_bytes());
            sent += 1.0;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = p.flush(Duration::from_secs(5));
}
