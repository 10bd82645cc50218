//! Checkpoints in Kafka itself: each partition's state (see
//! [`crate::checkpoint`] for the bytes) is written to a compacted topic,
//! and read back when the partition is assigned.
//!
//! One checkpoint of source partition `(topic, p)` is a few *chunk* records
//! (at most [`CHUNK_BYTES`] of state each) followed by one *manifest*
//! record (JSON: which source partition, the offset covered, the offsets of
//! its chunks). Every record of `(topic, p)` goes to the same checkpoint
//! partition, keyed `funnelstream/<group>/<topic>/<p>/<slot>/<chunk|m>`.
//! Checkpoints alternate between two slots, so compaction (which keeps the
//! newest record per key) always keeps the previous complete checkpoint
//! while the next one is being written.
//!
//! Reading scans the checkpoint partition backwards from its end in growing
//! windows until it finds manifests of the wanted source partition, then
//! tries them newest first (by offset covered): a checkpoint whose chunks
//! are gone, corrupt or incompatible is reported and the next one tried.

use crate::checkpoint::{self, CheckpointError, CheckpointMeta};
use crate::engine::{Engine, Partition};
pub(crate) use crate::live::CheckpointStats;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// State bytes per chunk record (below librdkafka's and Kafka's default
/// 1 MB message limit, with room for the header).
pub(crate) const CHUNK_BYTES: usize = 512 * 1024;
const CHUNK_MAGIC: [u8; 8] = *b"FNLSTCHK";
pub const CHUNK_HEADER: usize = 8 + 8 + 4;
/// Manifest format version.
pub const MANIFEST_FORMAT: u32 = 1;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What to do when a partition's checkpoint is missing, corrupt or
/// incompatible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Start the partition from empty state at its earliest retained offset.
    Rebuild,
    /// Stop the engine with an error (exit code 1).
    Refuse,
}

/// A checkpoint policy that is neither `rebuild` nor `refuse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a policy: use rebuild or refuse")]
pub struct UnknownPolicy(pub String);

impl std::str::FromStr for Policy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, UnknownPolicy> {
        match s {
            "rebuild" => Ok(Policy::Rebuild),
            "refuse" => Ok(Policy::Refuse),
            _ => Err(UnknownPolicy(s.to_string())),
        }
    }
}

/// Why the checkpoint store could not write, read or use its topic.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A Kafka client call failed; `what` names it.
    #[error("{what}: {source}")]
    Kafka {
        what: String,
        #[source]
        source: KafkaError,
    },
    /// The checkpoint topic is missing, cannot be created or has no
    /// partitions.
    #[error("{0}")]
    Topic(String),
    /// A stored checkpoint's records cannot be put back together.
    #[error("{0}")]
    Unreadable(String),
    /// No acknowledgement, or no end of a read, within [`IO_TIMEOUT`].
    #[error("{0}")]
    Timeout(String),
    /// A checkpoint must not cover a rejected event whose dead-letter copy
    /// the broker has not acknowledged yet.
    #[error("dead-letter copy of offset {0} not yet acknowledged")]
    DeadLetterPending(i64),
    #[error("checkpoint manifest: {0}")]
    Manifest(#[from] serde_json::Error),
    #[error("checkpoint topic admin runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Wraps a Kafka error with what was being done.
fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> StoreError {
    let what = what.into();
    move |source| StoreError::Kafka { what, source }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Rebuild => "rebuild",
            Policy::Refuse => "refuse",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSettings {
    pub topic: String,
    pub interval: Duration,
    pub policy: Policy,
    /// Create the topic when it is missing ([`CREATED_TOPIC_CONFIG`]);
    /// off for clusters where the engine may not create topics.
    pub create: bool,
}

/// The configuration of a checkpoint topic the engine creates, as Kafka
/// Streams creates its changelog topics. Its partition count is that of
/// the largest source topic (at least 1), so that a restore scans about one
/// source partition's checkpoints; its replication factor is the broker's
/// `default.replication.factor`.
pub(crate) const CREATED_TOPIC_CONFIG: [(&str, &str); 4] = [
    ("cleanup.policy", "compact"),
    // A chunk is 512 KiB of state plus a 20-byte header and its key: room
    // for one with margin, or two in a producer batch.
    ("max.message.bytes", "2097152"),
    // Compaction never cleans the active segment: segments of 64 MiB,
    // rolled at least daily, let superseded checkpoints go even when the
    // topic is written slowly.
    ("segment.bytes", "67108864"),
    ("segment.ms", "86400000"),
];

/// A checkpoint's manifest record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
    pub generation: u64,
    pub slot: u8,
    /// Offsets of the chunk records, in order.
    pub chunks: Vec<i64>,
    pub bytes: u64,
    pub written_at_ms: i64,
}

/// The value of a chunk record: magic, the checkpoint's generation, the
/// chunk's index, then its share of the state bytes.
pub fn chunk_record(generation: u64, index: u32, part: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(CHUNK_HEADER + part.len());
    value.extend_from_slice(&CHUNK_MAGIC);
    value.extend_from_slice(&generation.to_le_bytes());
    value.extend_from_slice(&index.to_le_bytes());
    value.extend_from_slice(part);
    value
}

type Results = Arc<Mutex<Vec<Option<Result<i64, KafkaError>>>>>;

/// The checkpoint reader's callbacks: its end-of-partition events are how
/// a read ends, not errors worth a log line.
pub(crate) struct QuietReader;
impl ClientContext for QuietReader {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::warn!(%error, reason, "checkpoint reader");
        }
    }
}
impl rdkafka::consumer::ConsumerContext for QuietReader {}

pub(crate) struct DeliveryContext;
impl ClientContext for DeliveryContext {}
impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<(Results, usize)>;
    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let (results, i) = *opaque;
        let r = match result {
            Ok(m) => Ok(m.offset()),
            Err((e, _)) => Err(e.clone()),
        };
        let mut all = results.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = all.get_mut(i) {
            *slot = Some(r);
        }
    }
}

/// Outcome of looking for a partition's checkpoint.
pub enum Loaded {
    Found {
        part: Box<Partition>,
        meta: CheckpointMeta,
        /// The checkpoint slot it was written to, and its size.
        slot: u8,
        bytes: u64,
        /// Newer checkpoints that could not be used, and why.
        skipped: Vec<String>,
    },
    /// No usable checkpoint. Empty `problems`: none was ever written.
    NotFound {
        problems: Vec<(&'static str, String)>,
    },
}

pub struct Store {
    producer: ThreadedProducer<DeliveryContext>,
    reader: ClientConfig,
    admin: ClientConfig,
    pub topic: String,
    partitions: std::sync::OnceLock<i32>,
    group: String,
    source_topics: Vec<String>,
    pub settings: CheckpointSettings,
    pub stats: Arc<CheckpointStats>,
    generation: AtomicU64,
    /// One checkpoint write at a time.
    write_lock: Mutex<()>,
}

fn key(group: &str, topic: &str, partition: i32, slot: u8, chunk: Option<usize>) -> String {
    match chunk {
        Some(i) => format!("funnelstream/{group}/{topic}/{partition}/{slot}/{i}"),
        None => format!("funnelstream/{group}/{topic}/{partition}/{slot}/m"),
    }
}

/// The configurations of the store's three clients.
pub(crate) struct Clients {
    pub producer: ClientConfig,
    pub reader: ClientConfig,
    pub admin: ClientConfig,
}

/// The store's clients: the user's properties (not the consumer's own),
/// then what exactness needs, which they cannot override. Built here and
/// by [`super::client::validate`], so that a property conflict is found
/// before anything connects.
pub(crate) fn clients(brokers: &str, group: &str, properties: &[(String, String)]) -> Clients {
    let mut common = ClientConfig::new();
    common.set("bootstrap.servers", brokers);
    for (k, v) in properties {
        if !crate::source::CONSUMER_ONLY.contains(&k.as_str()) {
            common.set(k, v);
        }
    }
    let mut producer = common.clone();
    // A checkpoint is written and then waited for: nothing to linger for.
    producer
        .set("linger.ms", "0")
        // A metadata request must not create the topic with the broker's
        // default (deleting) retention.
        .set("allow.auto.create.topics", "false")
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "30000");
    let admin = common.clone();
    let mut reader = common;
    reader
        .set("group.id", format!("{group}.checkpoint-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .set("auto.offset.reset", "earliest");
    Clients {
        producer,
        reader,
        admin,
    }
}

impl Store {
    /// Connects a producer and checks that the checkpoint topic exists.
    pub fn new(
        brokers: &str,
        group: &str,
        source_topics: &[String],
        properties: &[(String, String)],
        settings: CheckpointSettings,
    ) -> Result<Self, StoreError> {
        let Clients {
            producer: p,
            reader,
            admin,
        } = clients(brokers, group, properties);
        let producer: ThreadedProducer<DeliveryContext> = p
            .create_with_context(DeliveryContext)
            .map_err(kafka("checkpoint producer"))?;
        Ok(Store {
            producer,
            reader,
            admin,
            topic: settings.topic.clone(),
            partitions: std::sync::OnceLock::new(),
            group: group.to_string(),
            source_topics: source_topics.to_vec(),
            settings,
            stats: Arc::new(CheckpointStats::default()),
            generation: AtomicU64::new(
                xxhash_rust::xxh3::xxh3_64(
                    format!("{}-{}", std::process::id(), crate::clock::wall_clock_ms()).as_bytes(),
                ) & 0xFFFF_FFFF_0000_0000,
            ),
            write_lock: Mutex::new(()),
        })
    }

    /// Partitions of the checkpoint topic (looked up on first use, retried
    /// while brokers are down).
    fn partition_count(&self) -> Result<i32, StoreError> {
        if let Some(n) = self.partitions.get() {
            return Ok(*n);
        }
        let n = match self.lookup_partition_count()? {
            Some(n) => n,
            None => return Err(StoreError::Topic(self.missing_message())),
        };
        Ok(*self.partitions.get_or_init(|| n))
    }

    fn missing_message(&self) -> String {
        format!(
            "checkpoint topic `{}` does not exist: create it (compacted, cleanup.policy=compact) \
             before starting{}",
            self.topic,
            if self.settings.create {
                ""
            } else {
                " (checkpoint_topic_create is off)"
            }
        )
    }

    /// Creates the missing checkpoint topic ([`CREATED_TOPIC_CONFIG`]);
    /// another instance creating it at the same moment is no error.
    fn create_topic(&self) -> Result<(), StoreError> {
        let client = self.producer.client();
        let mut partitions = 1;
        for t in &self.source_topics {
            if let Ok(md) = client.fetch_metadata(Some(t), Duration::from_secs(10)) {
                for mt in md.topics() {
                    partitions = partitions.max(mt.partitions().len() as i32);
                }
            }
        }
        let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = self
            .admin
            .create()
            .map_err(kafka("checkpoint topic admin client"))?;
        let mut new = rdkafka::admin::NewTopic::new(
            &self.topic,
            partitions,
            // The broker's default.replication.factor.
            rdkafka::admin::TopicReplication::Fixed(-1),
        );
        for (k, v) in CREATED_TOPIC_CONFIG {
            new = new.set(k, v);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let opts = rdkafka::admin::AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(30)))
            .request_timeout(Some(Duration::from_secs(30)));
        let res = rt
            .block_on(admin.create_topics([&new], &opts))
            .map_err(kafka(format!(
                "cannot create checkpoint topic `{}`",
                self.topic
            )))?;
        for r in res {
            match r {
                Ok(_) => {
                    tracing::info!(topic = %self.topic, partitions,
                        config = ?CREATED_TOPIC_CONFIG, "checkpoint topic created")
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, e)) => {
                    return Err(StoreError::Topic(format!(
                        "cannot create checkpoint topic `{}`: {e}; create it yourself \
                         (compacted, cleanup.policy=compact) or allow the engine to",
                        self.topic
                    )))
                }
            }
        }
        // Until every broker's metadata knows it.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(n) = self.lookup_partition_count()? {
                let _ = self.partitions.set(n);
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Topic(format!(
                    "checkpoint topic `{}` was created but does not appear",
                    self.topic
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Checks, before the first assignment uses it, that the checkpoint
    /// topic exists (creating it if allowed), and warns when it is not
    /// compacted (retention could then delete the checkpoint of a partition
    /// that stays idle).
    pub(crate) fn check_topic(&self) -> Result<(), StoreError> {
        let admin_config = &self.admin;
        if self.partitions.get().is_some() {
            return Ok(());
        }
        match self.lookup_partition_count()? {
            Some(n) => {
                let _ = self.partitions.set(n);
            }
            None if self.settings.create => self.create_topic()?,
            None => return Err(StoreError::Topic(self.missing_message())),
        }
        let policy = (|| -> Option<String> {
            let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
                admin_config.create().ok()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let opts =
                rdkafka::admin::AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
            let spec = rdkafka::admin::ResourceSpecifier::Topic(&self.topic);
            let res = rt.block_on(admin.describe_configs([&spec], &opts)).ok()?;
            let cfg = res.into_iter().next()?.ok()?;
            cfg.get("cleanup.policy")?.value.clone()
        })();
        match policy {
            Some(p) if p.contains("compact") => {}
            Some(p) => tracing::warn!(topic = %self.topic, cleanup_policy = %p,
                "the checkpoint topic is not compacted: retention can delete the checkpoint of an \
                 idle partition (it is rewritten daily to limit this); set cleanup.policy=compact"),
            None => {
                tracing::debug!(topic = %self.topic, "cleanup.policy of the checkpoint topic not known")
            }
        }
        Ok(())
    }

    /// The checkpoint topic's partition count; `None` when it does not
    /// exist.
    fn lookup_partition_count(&self) -> Result<Option<i32>, StoreError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self
                .producer
                .client()
                .fetch_metadata(Some(&self.topic), Duration::from_secs(5))
            {
                Ok(md) => {
                    if let Some(t) = md.topics().first() {
                        if t.error().is_none() && !t.partitions().is_empty() {
                            return Ok(Some(t.partitions().len() as i32));
                        }
                        if let Some(e) = t.error() {
                            let code = RDKafkaErrorCode::from(e);
                            if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                                return Ok(None);
                            }
                        }
                    }
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(kafka(format!("checkpoint topic `{}`", self.topic))(e));
                }
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Topic(format!(
                    "checkpoint topic `{}` has no partitions (does it exist?)",
                    self.topic
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The checkpoint partition of a source partition.
    fn partition_of(&self, topic: &str, partition: i32) -> Result<i32, StoreError> {
        let n = self.partition_count()?;
        let h =
            xxhash_rust::xxh3::xxh3_64(format!("{}/{topic}/{partition}", self.group).as_bytes());
        Ok((h % n.max(1) as u64) as i32)
    }

    /// Writes one checkpoint into `slot` (0 or 1) and returns once the
    /// broker has acknowledged every record of it.
    pub fn write(&self, bytes: &[u8], meta: &CheckpointMeta, slot: u8) -> Result<(), StoreError> {
        let _one = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let cp = self.partition_of(&meta.topic, meta.partition)?;
        let n = bytes.len().div_ceil(CHUNK_BYTES).max(1);
        let results: Results = Arc::new(Mutex::new(vec![None; n]));
        for i in 0..n {
            let part = &bytes
                [(i * CHUNK_BYTES).min(bytes.len())..((i + 1) * CHUNK_BYTES).min(bytes.len())];
            let value = chunk_record(generation, i as u32, part);
            let k = key(&self.group, &meta.topic, meta.partition, slot, Some(i));
            self.send(cp, &k, &value, Box::new((results.clone(), i)))?;
        }
        let chunks = self.wait(&results)?;
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            group: self.group.clone(),
            topic: meta.topic.clone(),
            partition: meta.partition,
            next_offset: meta.next_offset,
            generation,
            slot,
            chunks,
            bytes: bytes.len() as u64,
            written_at_ms: meta.written_at_ms,
        };
        let value = serde_json::to_vec(&manifest)?;
        let k = key(&self.group, &meta.topic, meta.partition, slot, None);
        let results: Results = Arc::new(Mutex::new(vec![None]));
        self.send(cp, &k, &value, Box::new((results.clone(), 0)))?;
        self.wait(&results)?;
        self.stats.written.fetch_add(1, Ordering::Relaxed);
        self.stats
            .written_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.stats
            .write_us
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn send(
        &self,
        partition: i32,
        key: &str,
        value: &[u8],
        opaque: Box<(Results, usize)>,
    ) -> Result<(), StoreError> {
        let mut record = BaseRecord::with_opaque_to(&self.topic, opaque)
            .partition(partition)
            .key(key)
            .payload(value);
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(kafka("checkpoint write")(e)),
            }
        }
    }

    /// Waits for every delivery report; returns the offsets in order.
    fn wait(&self, results: &Results) -> Result<Vec<i64>, StoreError> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            {
                let r = results.lock().unwrap_or_else(|e| e.into_inner());
                if r.iter().all(Option::is_some) {
                    return r
                        .iter()
                        .flatten()
                        .map(|x| x.clone().map_err(kafka("checkpoint write")))
                        .collect();
                }
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Timeout(
                    "checkpoint write: no acknowledgement within 30s".into(),
                ));
            }
            let _ = self.producer.flush(Duration::from_millis(50));
        }
    }

    fn reader(&self) -> Result<BaseConsumer<QuietReader>, StoreError> {
        self.reader
            .create_with_context(QuietReader)
            .map_err(kafka("checkpoint reader"))
    }

    /// Reads `[from, until)` of a checkpoint partition (`until` = None: to
    /// its end), calling `f` for every record. A fresh reader each time, so
    /// no end-of-partition event of an earlier read can end this one.
    fn scan(
        &self,
        cp: i32,
        from: i64,
        until: Option<i64>,
        mut f: impl FnMut(i64, &[u8], &[u8]),
    ) -> Result<(), StoreError> {
        if until.is_some_and(|u| u <= from) {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, cp, Offset::Offset(from))
            .map_err(kafka("checkpoint read"))?;
        let reader = self.reader()?;
        reader.assign(&tpl).map_err(kafka("checkpoint read"))?;
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut last_progress = Instant::now();
        loop {
            if Instant::now() >= deadline {
                return Err(StoreError::Timeout(format!(
                    "reading checkpoint partition {cp}: no end within 30s"
                )));
            }
            match reader.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last_progress = Instant::now();
                    let o = m.offset();
                    if until.is_some_and(|u| o >= u) {
                        return Ok(());
                    }
                    if o >= from {
                        f(o, m.key().unwrap_or(&[]), m.payload().unwrap_or(&[]));
                    }
                    if until.is_some_and(|u| o + 1 >= u) {
                        return Ok(());
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(()),
                Some(Err(e)) if last_progress.elapsed() > Duration::from_secs(10) => {
                    return Err(kafka(format!("reading checkpoint partition {cp}"))(e));
                }
                Some(Err(_)) => {}
                None => {}
            }
        }
    }

    /// Finds and decodes the newest usable checkpoint of a source partition.
    /// `source_low` is the source partition's low watermark: a checkpoint
    /// older than the retained data cannot be resumed exactly.
    pub fn load(
        &self,
        engine: &Engine,
        topic: &str,
        partition: i32,
        source_low: i64,
    ) -> Result<Loaded, StoreError> {
        let cp = self.partition_of(topic, partition)?;
        let watermarks = || {
            self.producer
                .client()
                .fetch_watermarks(&self.topic, cp, Duration::from_secs(10))
                .map_err(kafka("checkpoint topic watermarks"))
        };
        let (low, _) = watermarks()?;
        let mut end: Option<i64> = None;
        let mut window = 64i64;
        let mut problems: Vec<(&'static str, String)> = Vec::new();
        loop {
            // The first pass reads to the partition's real end (a reported
            // high watermark can trail it); later ones stop where the
            // previous pass began.
            let (from, until) = match end {
                None => {
                    let (_, high) = watermarks()?;
                    ((high - window).max(low), None)
                }
                Some(e) => ((e - window).max(low), Some(e)),
            };
            let mut found: Vec<(i64, Manifest)> = Vec::new();
            self.scan(cp, from, until, |o, _k, v| {
                if v.first() != Some(&b'{') {
                    return;
                }
                if let Ok(m) = serde_json::from_slice::<Manifest>(v) {
                    if m.group == self.group && m.topic == topic && m.partition == partition {
                        found.push((o, m));
                    }
                }
            })?;
            found.sort_by_key(|(o, m)| std::cmp::Reverse((m.next_offset, *o)));
            for (o, m) in found {
                let what = format!(
                    "checkpoint at {}:{cp}@{o} (covers offsets below {})",
                    self.topic, m.next_offset
                );
                if m.format != MANIFEST_FORMAT {
                    problems.push((
                        "incompatible",
                        format!("{what}: manifest format {}", m.format),
                    ));
                    continue;
                }
                if m.next_offset < source_low {
                    problems.push((
                        "missing",
                        format!(
                            "{what}: the source partition no longer holds offset {} \
                             (retention starts at {source_low})",
                            m.next_offset
                        ),
                    ));
                    continue;
                }
                match self.read_chunks(cp, &m) {
                    Err(e) => problems.push(("corrupt", format!("{what}: {e}"))),
                    Ok(bytes) => match checkpoint::decode(&bytes, engine, true) {
                        Ok((part, meta)) if meta.topic == topic && meta.partition == partition => {
                            return Ok(Loaded::Found {
                                part: Box::new(part),
                                meta,
                                slot: m.slot,
                                bytes: m.bytes,
                                skipped: problems.into_iter().map(|p| p.1).collect(),
                            });
                        }
                        Ok(_) => problems
                            .push(("corrupt", format!("{what}: state is of another partition"))),
                        Err(e @ CheckpointError::Corrupt(_)) => {
                            problems.push(("corrupt", format!("{what}: {e}")))
                        }
                        Err(e @ CheckpointError::Incompatible(_)) => {
                            problems.push(("incompatible", format!("{what}: {e}")))
                        }
                    },
                }
            }
            if from <= low {
                return Ok(Loaded::NotFound { problems });
            }
            end = Some(from);
            window = window.saturating_mul(4);
        }
    }

    fn read_chunks(&self, cp: i32, m: &Manifest) -> Result<Vec<u8>, StoreError> {
        let (Some(&first), Some(&last)) = (m.chunks.iter().min(), m.chunks.iter().max()) else {
            return Err(StoreError::Unreadable("manifest lists no chunks".into()));
        };
        if m.bytes > (m.chunks.len() * CHUNK_BYTES) as u64 {
            return Err(StoreError::Unreadable(
                "manifest size does not match its chunks".into(),
            ));
        }
        let mut parts: Vec<Option<Vec<u8>>> = vec![None; m.chunks.len()];
        self.scan(cp, first, Some(last + 1), |o, _k, v| {
            let Some(i) = m.chunks.iter().position(|&c| c == o) else {
                return;
            };
            if v.len() >= CHUNK_HEADER
                && v[..8] == CHUNK_MAGIC
                && v[8..16] == m.generation.to_le_bytes()
                && v[16..20] == (i as u32).to_le_bytes()
            {
                parts[i] = Some(v[CHUNK_HEADER..].to_vec());
            }
        })?;
        let mut out = Vec::with_capacity(m.bytes as usize);
        for (i, p) in parts.into_iter().enumerate() {
            match p {
                Some(p) => out.extend_from_slice(&p),
                None => {
                    return Err(StoreError::Unreadable(format!(
                        "chunk {i} (offset {}) is missing or overwritten",
                        m.chunks[i]
                    )))
                }
            }
        }
        if out.len() as u64 != m.bytes {
            return Err(StoreError::Unreadable(format!(
                "{} bytes of state, manifest says {}",
                out.len(),
                m.bytes
            )));
        }
        Ok(out)
    }
}
