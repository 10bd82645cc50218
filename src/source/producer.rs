//! Writing events to Kafka (`produce`, the demo's generator): a threaded
//! librdkafka producer that counts acknowledgements, and events keyed by
//! campaign, so a campaign's events, its retried duplicates and its deals
//! share a partition.

use super::throttle::{Throttle, REPEAT_EVERY};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use rdkafka::error::KafkaError as ProduceError;

/// Counts acknowledgements and failures.
#[derive(Default)]
pub struct Acks {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// How long the message timeout lets librdkafka retry a delivery.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(120);
struct AckContext {
    acks: Arc<Acks>,
    /// Errors and warnings: the first, then one every `REPEAT_EVERY`.
    throttle: Throttle,
}

impl ClientContext for AckContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        super::throttle::log(&self.throttle, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(held_back) = self.throttle.show() {
            tracing::error!(
                target: "librdkafka",
                %error,
                held_back,
                "kafka client error: {reason} (librdkafka retries until message.timeout.ms, {} s unless set; repeats shown every {} s)",
                MESSAGE_TIMEOUT.as_secs(),
                REPEAT_EVERY.as_secs()
            )
        }
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acks.ok.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                if let Some(held_back) = self.throttle.show() {
                    tracing::warn!(error = %e, held_back, "delivery failed");
                }
                self.acks.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// A producer of event lines.
pub struct EventProducer(ThreadedProducer<AckContext>);

impl EventProducer {
    /// Waits until every queued event is acknowledged or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.0.flush(timeout)
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

/// A producer to `brokers` with extra librdkafka `props`, and its counters.
pub fn producer(
    brokers: &str,
    props: &[(String, String)],
) -> Result<(EventProducer, Arc<Acks>), KafkaError> {
    let acks = Arc::new(Acks::default());
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set(
            "message.timeout.ms",
            MESSAGE_TIMEOUT.as_millis().to_string(),
        );
    for (k, v) in props {
        c.set(k, v);
    }
    let p = c.create_with_context(AckContext {
        acks: acks.clone(),
        throttle: Throttle::default(),
    })?;
    Ok((EventProducer(p), acks))
}

/// Sends one event, waiting while librdkafka's queue is full.
pub fn send(p: &EventProducer, topic: &str, line: &[u8]) -> Result<(), KafkaError> {
    let key = campaign_key(line);
    let mut record = BaseRecord::to(topic).key(&key).payload(line);
    loop {
        match p.0.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => return Err(e),
        }
    }
}
