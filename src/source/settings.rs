//! What the source is told (`KafkaSettings`) and the librdkafka client
//! configuration built from it.

use super::checkpoint::CheckpointSettings;
use super::SourceError;
use rdkafka::config::ClientConfig;

/// librdkafka properties funnelstream sets itself, because exactness
/// depends on them; passing them through is refused.
pub(crate) const MANAGED_PROPERTIES: [&str; 5] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
];

/// Consumer-only librdkafka properties, not passed to the dead-letter
/// producer.
pub(crate) const CONSUMER_ONLY: [&str; 12] = [
    "auto.offset.reset",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.queue.backoff.ms",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "partition.assignment.strategy",
    "group.instance.id",
];

/// What the source needs to know.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group: String,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, `ssl.*`,
    /// tuning), applied after funnelstream's defaults.
    pub properties: Vec<(String, String)>,
    pub workers: usize,
    /// Where rejected events are copied, if anywhere.
    pub dead_letter_topic: Option<String>,
    /// Where partition state is checkpointed, if anywhere.
    pub checkpoint: Option<CheckpointSettings>,
}

/// The client configuration funnelstream uses (exposed for `check-config`).
pub(crate) fn client_config(s: &KafkaSettings) -> Result<ClientConfig, SourceError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.brokers)
        .set("group.id", &s.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        // librdkafka stops fetching a partition whose prefetch queue is
        // over its bounds (`queued.min.messages`) for this long: 1 s by
        // default. The workers are slower than fetching, so the poll thread
        // waits on their full queues, librdkafka's queue fills, and the
        // partition then sat unfetched for up to a second after the
        // workers had drained everything: on a skewed stream the worker
        // waited for messages a quarter of the time (docs/PERFORMANCE.md,
        // issue 16). Rechecking every 10 ms refetches as soon as there is
        // room; the check is a timer, not a request.
        .set("fetch.queue.backoff.ms", "10")
        .set("statistics.interval.ms", "1000")
        .set("reconnect.backoff.ms", "200")
        .set("reconnect.backoff.max.ms", "5000");
    for (k, v) in &s.properties {
        if MANAGED_PROPERTIES.contains(&k.as_str()) {
            return Err(SourceError::Config(format!(
                "kafka property `{k}` is set by funnelstream (use --brokers/--group, or leave it out)"
            )));
        }
        c.set(k, v);
    }
    Ok(c)
}
