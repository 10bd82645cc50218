//! The dead-letter topic: every rejected event copied unchanged (same key,
//! same bytes) with headers saying why and where it came from. A copy that
//! the broker has not acknowledged holds back its partition's commit, so a
//! crash never loses a rejected event; a failed write is retried, counted
//! (`funnel_dead_letter_failures_total`) and visible
//! (`funnel_dead_letter_pending`), and never blocks the partition.

pub(crate) use crate::live::DeadLetterStats;
use crate::live::Slot;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::warn;

/// Header names on dead-lettered messages.
pub(crate) const HEADER_REASON: &str = "funnelstream.reason";
pub(crate) const HEADER_TOPIC: &str = "funnelstream.source.topic";
pub(crate) const HEADER_PARTITION: &str = "funnelstream.source.partition";
pub(crate) const HEADER_OFFSET: &str = "funnelstream.source.offset";

/// One copy on its way; kept until acknowledged, so it can be re-sent.
pub struct Copy {
    slot: Arc<Slot>,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    reason: &'static str,
}

pub(crate) struct Context {
    stats: Arc<DeadLetterStats>,
    retry: Arc<Mutex<Vec<Copy>>>,
    last_warning: Mutex<Option<Instant>>,
}

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Copy>;

    fn delivery(&self, result: &DeliveryResult<'_>, copy: Box<Copy>) {
        match result {
            Ok(_) => {
                copy.slot
                    .dlq_pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&copy.offset);
                self.stats.written.fetch_add(1, Ordering::Relaxed);
                self.stats.pending.fetch_sub(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed(e);
                self.retry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(*copy);
            }
        }
    }
}

impl Context {
    fn failed(&self, e: &KafkaError) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            warn!(error = %e, "dead-letter write failed; retrying (partition commits wait for it)");
            *last = Some(Instant::now());
        }
    }
}

pub(crate) struct DeadLetter {
    producer: ThreadedProducer<Context>,
    topic: String,
    pub stats: Arc<DeadLetterStats>,
    retry: Arc<Mutex<Vec<Copy>>>,
}

/// The dead-letter producer's configuration: funnelstream's defaults,
/// then the user's properties (security and tuning apply to the producer
/// too; the consumer's own are left out). Built here and by
/// [`super::client::validate`], so that a property conflict is found
/// before anything connects.
pub(crate) fn config(brokers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "30000");
    for (k, v) in properties {
        if !crate::source::CONSUMER_ONLY.contains(&k.as_str()) {
            c.set(k, v);
        }
    }
    c
}

impl DeadLetter {
    pub fn new(
        brokers: &str,
        topic: &str,
        properties: &[(String, String)],
    ) -> Result<Self, KafkaError> {
        let stats = Arc::new(DeadLetterStats::default());
        let retry = Arc::new(Mutex::new(Vec::new()));
        let producer = config(brokers, properties).create_with_context(Context {
            stats: stats.clone(),
            retry: retry.clone(),
            last_warning: Mutex::new(None),
        })?;
        Ok(DeadLetter {
            producer,
            topic: topic.to_string(),
            stats,
            retry,
        })
    }

    /// Copies a rejected event; its offset holds back the commit until the
    /// broker acknowledges the copy.
    pub fn send(
        &self,
        slot: &Arc<Slot>,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
        reason: &'static str,
    ) {
        slot.dlq_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(offset);
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        self.enqueue(Box::new(Copy {
            slot: slot.clone(),
            offset,
            key: key.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            reason,
        }));
    }

    fn enqueue(&self, copy: Box<Copy>) {
        let partition = copy.slot.partition.to_string();
        let offset = copy.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: HEADER_REASON,
                value: Some(copy.reason),
            })
            .insert(Header {
                key: HEADER_TOPIC,
                value: Some(copy.slot.topic.as_str()),
            })
            .insert(Header {
                key: HEADER_PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: HEADER_OFFSET,
                value: Some(offset.as_str()),
            });
        let key = copy.key.clone();
        let payload = copy.payload.clone();
        let mut record = BaseRecord::with_opaque_to(&self.topic, copy)
            .payload(&payload)
            .headers(headers);
        if let Some(k) = &key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, r)) => {
                    self.producer.context().failed(&e);
                    self.retry
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(*r.delivery_opaque);
                    return;
                }
            }
        }
    }

    /// Re-sends the copies whose writes failed (called a few times a second).
    pub(crate) fn retry_failed(&self) {
        let failed: Vec<Copy> =
            std::mem::take(&mut *self.retry.lock().unwrap_or_else(|e| e.into_inner()));
        for c in failed {
            self.enqueue(Box::new(c));
        }
    }

    /// Waits up to `timeout` for every copy to be acknowledged, retrying.
    pub fn flush(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.stats.pending.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            self.retry_failed();
            let _ = self.producer.flush(Duration::from_millis(200));
        }
    }
}
