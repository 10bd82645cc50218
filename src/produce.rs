//! `funnelstream produce`: synthetic or file-supplied events into a Kafka
//! topic, keyed by campaign (so a campaign's events, its retried duplicates
//! and its deals share a partition), with an optional rate limit. Exits 0
//! once every event is acknowledged by the broker.

use crate::cli::config_error;
use crate::config::ConfigError;
use crate::engine::wall_clock_ms;
use crate::synth::{Synth, SynthConfig};
use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        value_name = "HOST:PORT[,..]",
        env = "FUNNELSTREAM_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Topic to write to.
    #[arg(long, value_name = "T", default_value = "funnel-events")]
    pub topic: String,
    /// NDJSON file of events (`-` for stdin); synthetic events without it.
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// Events per second, 0 = as fast as possible [default: 0 with --from, 1000 synthetic].
    #[arg(long, value_name = "EVENTS_PER_S")]
    pub rate: Option<f64>,
    /// Synthetic events to write.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub count: u64,
    /// Distinct (channel, campaign) keys of synthetic events.
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub keys: u64,
    /// Seed of the synthetic generator.
    #[arg(long, value_name = "N", default_value_t = 42)]
    pub seed: u64,
    /// Extra librdkafka property; repeatable.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_property: Vec<String>,
}

/// Counts acknowledgements and failures.
#[derive(Default)]
pub struct Acks {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

pub struct AckContext(pub Arc<Acks>);

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                tracing::warn!(error = %e, "delivery failed");
                self.0.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// The partitioning key of an event line: its campaign (`none` when absent
/// or unreadable, as the engine's default).
pub fn campaign_key(line: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct K {
        campaign: Option<String>,
    }
    serde_json::from_slice::<K>(line)
        .ok()
        .and_then(|k| k.campaign)
        .unwrap_or_else(|| "none".into())
}

pub fn producer(
    brokers: &str,
    props: &[(String, String)],
) -> Result<(ThreadedProducer<AckContext>, Arc<Acks>), KafkaError> {
    let acks = Arc::new(Acks::default());
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000");
    for (k, v) in props {
        c.set(k, v);
    }
    let p = c.create_with_context(AckContext(acks.clone()))?;
    Ok((p, acks))
}

/// Sends one event, waiting while librdkafka's queue is full.
pub fn send(p: &ThreadedProducer<AckContext>, topic: &str, line: &[u8]) -> Result<(), KafkaError> {
    let key = campaign_key(line);
    let mut record = BaseRecord::to(topic).key(&key).payload(line);
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

fn parse_props(list: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    list.iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .ok_or_else(|| {
                    ConfigError::invalid("kafka-property", format!("`{kv}` is not KEY=VALUE"))
                })
        })
        .collect()
}

pub fn run(args: &ProduceArgs) -> i32 {
    let props = match parse_props(&args.kafka_property) {
        Ok(p) => p,
        Err(e) => return config_error(&e),
    };
    if let Some(r) = args.rate {
        if !(r >= 0.0 && r.is_finite()) {
            return config_error(&ConfigError::invalid(
                "rate",
                "must be 0 or a positive number",
            ));
        }
    }
    crate::cli::init_logging(crate::cli::LogFormat::Text, "warn");
    let (p, acks) = match producer(&args.brokers, &props) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("funnelstream: invalid configuration: kafka: {e}");
            return 2;
        }
    };
    let rate = args
        .rate
        .unwrap_or(if args.from.is_some() { 0.0 } else { 1000.0 });
    let start = Instant::now();
    // A bar over the input file's bytes on a terminal (the periodic lines
    // below otherwise, as for synthetic events).
    let pb = match &args.from {
        Some(path) if path.as_os_str() == "-" => crate::progress::bar(None, "produce"),
        Some(path) => crate::progress::bar(
            std::fs::metadata(path)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| m.len()),
            "produce",
        ),
        None => indicatif::ProgressBar::hidden(),
    };
    let mut sent: u64 = 0;
    let mut last_progress = Instant::now();
    let mut emit = |line: &[u8]| -> Result<(), KafkaError> {
        if rate > 0.0 {
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        send(&p, &args.topic, line)?;
        sent += 1;
        if !pb.is_hidden() {
            if sent % 1000 == 0 {
                pb.set_message(format!(
                    "{sent} events, {} acknowledged",
                    acks.ok.load(Ordering::Relaxed)
                ));
            }
        } else if last_progress.elapsed() >= Duration::from_secs(2) {
            eprintln!(
                "funnelstream: produced {sent} events ({:.0}/s), {} acknowledged",
                sent as f64 / start.elapsed().as_secs_f64(),
                acks.ok.load(Ordering::Relaxed)
            );
            last_progress = Instant::now();
        }
        Ok(())
    };
    let result: Result<(), String> = match &args.from {
        Some(path) => {
            let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
                Box::new(std::io::BufReader::new(
                    pb.wrap_read(std::io::stdin().lock()),
                ))
            } else {
                match std::fs::File::open(path) {
                    Ok(f) => Box::new(std::io::BufReader::new(pb.wrap_read(f))),
                    Err(e) => {
                        eprintln!("funnelstream: --from {}: {e}", path.display());
                        return 2;
                    }
                }
            };
            let mut r = Ok(());
            for line in reader.split(b'\n') {
                match line {
                    Ok(mut bytes) => {
                        if bytes.last() == Some(&b'\r') {
                            bytes.pop();
                        }
                        if bytes.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        // Sent byte for byte: invalid UTF-8 included.
                        if let Err(e) = emit(&bytes) {
                            r = Err(e.to_string());
                            break;
                        }
                    }
                    Err(e) => {
                        r = Err(format!("reading {}: {e}", path.display()));
                        break;
                    }
                }
            }
            r
        }
        None => {
            let mut g = Synth::new(SynthConfig {
                seed: args.seed,
                keys: args.keys.max(1),
                step_ms: 0.0,
                v2_ratio: crate::demo::DEMO_V2_RATIO,
                ..SynthConfig::default()
            });
            let mut r = Ok(());
            for _ in 0..args.count {
                g.set_time_ms(wall_clock_ms());
                if let Err(e) = emit(g.next_line().as_bytes()) {
                    r = Err(e.to_string());
                    break;
                }
            }
            r
        }
    };
    pb.finish_and_clear();
    if let Err(e) = p.flush(Duration::from_secs(120)) {
        eprintln!("funnelstream: flushing: {e}");
    }
    let (ok, failed) = (
        acks.ok.load(Ordering::Relaxed),
        acks.failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "funnelstream: produced {sent} events to {} in {:.1}s: {ok} acknowledged, {failed} failed",
        args.topic,
        start.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        eprintln!("funnelstream: {e}");
        return 1;
    }
    if failed > 0 || ok < sent {
        return 1;
    }
    0
}
