//! Stage 1 of the flow: **source**. A Kafka consumer-group member feeding
//! the engine, and the only module that knows Kafka.
//!
//! One thread polls the consumer and routes each message's bytes, in
//! batches, to a fixed worker per partition over bounded channels (so
//! partition order is kept, and a slow engine pushes back on fetching).
//! Workers apply events to their partitions' state and record, per
//! partition, the next offset to apply; the poll thread commits exactly
//! those offsets every second (librdkafka's auto-commit and offset store
//! are off), so only applied events are ever committed. Before partitions
//! are revoked, and at shutdown, every batch in flight is applied and the
//! applied offsets are committed synchronously.

pub mod dead_letter;

use crate::engine::{wall_clock_ms, Outcome};
use crate::live::{LiveState, Slot};
use dead_letter::DeadLetter;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// librdkafka properties funnelstream sets itself, because exactness
/// depends on them; passing them through is refused.
pub const MANAGED_PROPERTIES: [&str; 5] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
];

/// Consumer-only librdkafka properties, not passed to the dead-letter
/// producer.
pub const CONSUMER_ONLY: [&str; 9] = [
    "auto.offset.reset",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
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
}

const BATCH: usize = 512;
const QUEUE_BATCHES: usize = 64;

struct Item {
    slot: Arc<Slot>,
    offset: i64,
    /// The key (`key_len` bytes, `NO_KEY` for none), then the payload.
    start: u32,
    key_len: u32,
    len: u32,
}

const NO_KEY: u32 = u32::MAX;

#[derive(Default)]
struct Batch {
    items: Vec<Item>,
    bytes: Vec<u8>,
}

enum Work {
    Batch(Batch),
    Flush(SyncSender<()>),
    Stop,
}

/// Batches not yet handed to workers, and the workers' queues.
struct Dispatcher {
    pending: Mutex<Vec<Batch>>,
    senders: Vec<SyncSender<Work>>,
}

impl Dispatcher {
    fn push(&self, slot: Arc<Slot>, offset: i64, key: Option<&[u8]>, payload: &[u8]) {
        let w =
            (slot.partition as usize).wrapping_add(hash_topic(&slot.topic)) % self.senders.len();
        slot.in_flight.fetch_add(1, Ordering::AcqRel);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let b = &mut pending[w];
        let start = b.bytes.len() as u32;
        let key_len = match key {
            Some(k) => {
                b.bytes.extend_from_slice(k);
                k.len() as u32
            }
            None => NO_KEY,
        };
        b.bytes.extend_from_slice(payload);
        b.items.push(Item {
            slot,
            offset,
            start,
            key_len,
            len: payload.len() as u32,
        });
        if b.items.len() >= BATCH {
            let full = std::mem::take(b);
            drop(pending);
            // Blocks while the worker is busy: backpressure on fetching.
            let _ = self.senders[w].send(Work::Batch(full));
        }
    }

    /// Hands every pending batch to its worker.
    fn send_pending(&self) {
        let batches: Vec<Batch> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.iter_mut().map(std::mem::take).collect()
        };
        for (w, b) in batches.into_iter().enumerate() {
            if !b.items.is_empty() {
                let _ = self.senders[w].send(Work::Batch(b));
            }
        }
    }

    /// Applies everything dispatched so far; returns when every worker has.
    fn drain(&self) {
        self.send_pending();
        let acks: Vec<Receiver<()>> = self
            .senders
            .iter()
            .map(|s| {
                let (tx, rx) = mpsc::sync_channel(1);
                let _ = s.send(Work::Flush(tx));
                rx
            })
            .collect();
        for rx in acks {
            let _ = rx.recv();
        }
    }
}

fn hash_topic(t: &str) -> usize {
    t.bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
}

/// Consumer callbacks: rebalances, statistics (lag), errors, logs.
pub struct SourceContext {
    live: Arc<LiveState>,
    dispatcher: Arc<Dispatcher>,
    needs_targets: AtomicBool,
}

impl ClientContext for SourceContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = false;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                error!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => {
                warn!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => debug!(target: "librdkafka", facility = fac, "{log_message}"),
        }
    }

    fn stats_raw(&self, raw: &[u8]) {
        // Only the fields needed, rather than rdkafka's full `Statistics`.
        #[derive(serde::Deserialize)]
        struct Stats {
            #[serde(default)]
            topics: HashMap<String, TopicStats>,
        }
        #[derive(serde::Deserialize)]
        struct TopicStats {
            #[serde(default)]
            partitions: HashMap<String, PartStats>,
        }
        #[derive(serde::Deserialize)]
        struct PartStats {
            #[serde(default = "minus_one")]
            hi_offset: i64,
            #[serde(default = "minus_one")]
            committed_offset: i64,
        }
        fn minus_one() -> i64 {
            -1
        }
        let Ok(stats) = serde_json::from_slice::<Stats>(raw) else {
            return;
        };
        for (name, topic) in &stats.topics {
            for (p, part) in &topic.partitions {
                let Ok(p) = p.parse::<i32>() else { continue };
                if p < 0 || part.hi_offset < 0 {
                    continue;
                }
                let slot = self.live.slot(name, p);
                if !slot.assigned.load(Ordering::Acquire) {
                    continue;
                }
                if !slot.target_confirmed.load(Ordering::Acquire) {
                    slot.target.fetch_max(part.hi_offset, Ordering::AcqRel);
                    slot.target_confirmed.store(true, Ordering::Release);
                }
                // Committed position: librdkafka's view of the last commit,
                // or where consumption started before the first commit.
                let committed = if part.committed_offset >= 0 {
                    part.committed_offset
                } else {
                    slot.start_offset.load(Ordering::Acquire)
                };
                if committed >= 0 {
                    slot.lag
                        .store((part.hi_offset - committed).max(0), Ordering::Release);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            *self
                .live
                .brokers_down
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
        }
        warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Apply everything fetched for the partitions going away, then
            // commit, so their next owner starts exactly after it.
            self.dispatcher.drain();
            if let Err(e) = commit_applied(consumer, &self.live, Some(tpl), CommitMode::Sync) {
                warn!(error = %e, "commit before revocation failed");
            }
            for e in tpl.elements() {
                let slot = self.live.slot(e.topic(), e.partition());
                slot.assigned.store(false, Ordering::Release);
            }
            info!(partitions = tpl.count(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                for e in tpl.elements() {
                    let slot = self.live.slot(e.topic(), e.partition());
                    slot.target.store(-1, Ordering::Release);
                    slot.start_offset.store(-1, Ordering::Release);
                    slot.target_confirmed.store(false, Ordering::Release);
                    slot.assigned.store(true, Ordering::Release);
                }
                self.needs_targets.store(true, Ordering::Release);
                self.live.assigned_once.store(true, Ordering::Release);
                info!(partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

type Kafka = BaseConsumer<SourceContext>;

/// Commits, for every assigned partition (or only those in `only`), the
/// offset after the last applied event, where it moved since the last
/// commit. Returns the number of partitions committed.
fn commit_applied(
    consumer: &Kafka,
    live: &LiveState,
    only: Option<&TopicPartitionList>,
    mode: CommitMode,
) -> KafkaResult<usize> {
    let mut tpl = TopicPartitionList::new();
    let mut slots = Vec::new();
    for s in live.slots() {
        let selected = match only {
            Some(t) => t.find_partition(&s.topic, s.partition).is_some(),
            None => s.assigned.load(Ordering::Acquire),
        };
        let mut next = s.applied_next.load(Ordering::Acquire);
        // Never past a rejected event whose dead-letter copy is unacknowledged.
        if let Some(&first) = s
            .dlq_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
        {
            next = next.min(first);
        }
        if selected && next >= 0 && next > s.committed.load(Ordering::Acquire) {
            tpl.add_partition_offset(&s.topic, s.partition, Offset::Offset(next))?;
            slots.push((s, next));
        }
    }
    if slots.is_empty() {
        return Ok(0);
    }
    consumer.commit(&tpl, mode)?;
    if matches!(mode, CommitMode::Sync) {
        for (s, next) in &slots {
            s.committed.fetch_max(*next, Ordering::AcqRel);
        }
    }
    Ok(slots.len())
}

/// Error that stops the source before it starts.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Config(String),
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// A running source: call [`Source::run`] on a dedicated thread.
pub struct Source {
    consumer: Arc<Kafka>,
    live: Arc<LiveState>,
    settings: KafkaSettings,
    workers: Vec<std::thread::JoinHandle<()>>,
    dead_letter: Option<Arc<DeadLetter>>,
}

/// The client configuration funnelstream uses (exposed for `check-config`).
pub fn client_config(s: &KafkaSettings) -> Result<ClientConfig, SourceError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.brokers)
        .set("group.id", &s.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
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

impl Source {
    pub fn new(live: Arc<LiveState>, settings: KafkaSettings) -> Result<Self, SourceError> {
        if settings.topics.is_empty() {
            return Err(SourceError::Config(
                "topics: at least one topic is needed".into(),
            ));
        }
        let workers = settings.workers.max(1);
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..workers {
            let (tx, rx) = mpsc::sync_channel(QUEUE_BATCHES);
            senders.push(tx);
            receivers.push(rx);
        }
        let dispatcher = Arc::new(Dispatcher {
            pending: Mutex::new((0..workers).map(|_| Batch::default()).collect()),
            senders,
        });
        let ctx = SourceContext {
            live: live.clone(),
            dispatcher,
            needs_targets: AtomicBool::new(false),
        };
        let consumer: Kafka = client_config(&settings)?
            .set_log_level(RDKafkaLogLevel::Warning)
            .create_with_context(ctx)
            .map_err(|e| SourceError::Config(format!("kafka configuration: {e}")))?;
        let consumer = Arc::new(consumer);
        let dead_letter = match &settings.dead_letter_topic {
            Some(t) => {
                let d = DeadLetter::new(&settings.brokers, t, &settings.properties)
                    .map_err(|e| SourceError::Config(format!("dead-letter producer: {e}")))?;
                let _ = live.dead_letter.set(d.stats.clone());
                Some(Arc::new(d))
            }
            None => None,
        };
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let handles = receivers
            .into_iter()
            .enumerate()
            .map(|(i, rx)| {
                let d = dead_letter.clone();
                std::thread::Builder::new()
                    .name(format!("funnel-worker-{i}"))
                    .spawn(move || worker(rx, d.as_deref()))
                    .expect("spawn worker thread")
            })
            .collect();
        Ok(Source {
            consumer,
            live,
            settings,
            workers: handles,
            dead_letter,
        })
    }

    /// Polls until `stop` is set, then drains, commits and returns.
    pub fn run(mut self, stop: &AtomicBool) {
        info!(topics = ?self.settings.topics, group = %self.settings.group, "consuming");
        let mut slots: HashMap<String, Vec<Option<Arc<Slot>>>> = HashMap::new();
        let mut last_upkeep = Instant::now();
        let mut last_commit = Instant::now();
        let mut last_error_log = Instant::now() - Duration::from_secs(60);
        while !stop.load(Ordering::Acquire) {
            match self.consumer.poll(Duration::from_millis(50)) {
                None => self.consumer.context().dispatcher.send_pending(),
                Some(Ok(m)) => {
                    let by_partition = match slots.get_mut(m.topic()) {
                        Some(v) => v,
                        None => slots.entry(m.topic().to_string()).or_default(),
                    };
                    let p = m.partition().max(0) as usize;
                    if by_partition.len() <= p {
                        by_partition.resize(p + 1, None);
                    }
                    let slot = by_partition[p]
                        .get_or_insert_with(|| self.live.slot(m.topic(), m.partition()))
                        .clone();
                    self.consumer.context().dispatcher.push(
                        slot,
                        m.offset(),
                        m.key(),
                        m.payload().unwrap_or(&[]),
                    );
                }
                Some(Err(e)) => {
                    if last_error_log.elapsed() > Duration::from_secs(5) {
                        warn!(error = %e, "consumer error (librdkafka retries with backoff)");
                        last_error_log = Instant::now();
                    }
                }
            }
            if last_upkeep.elapsed() >= Duration::from_millis(200) {
                self.upkeep();
                last_upkeep = Instant::now();
            }
            if last_commit.elapsed() >= Duration::from_secs(1) {
                if let Err(e) = commit_applied(&self.consumer, &self.live, None, CommitMode::Async)
                {
                    debug!(error = %e, "periodic commit failed; retried next second");
                }
                last_commit = Instant::now();
            }
        }
        self.shutdown();
    }

    /// Readiness bookkeeping: end offsets at assignment, fetch positions,
    /// broker reachability.
    fn upkeep(&self) {
        let ctx = self.consumer.context();
        ctx.dispatcher.send_pending();
        if let Some(d) = &self.dead_letter {
            d.retry_failed();
        }
        let assigned: Vec<Arc<Slot>> = self
            .live
            .slots()
            .into_iter()
            .filter(|s| s.assigned.load(Ordering::Acquire))
            .collect();
        if ctx.needs_targets.swap(false, Ordering::AcqRel)
            || assigned
                .iter()
                .any(|s| s.target.load(Ordering::Acquire) < 0)
        {
            let mut missing = false;
            for s in &assigned {
                if s.target.load(Ordering::Acquire) >= 0 {
                    continue;
                }
                match self.start_and_end(s) {
                    Ok((start, high)) => {
                        // Nothing before the start offset needs applying.
                        s.applied_next.fetch_max(start, Ordering::AcqRel);
                        s.target.fetch_max(high, Ordering::AcqRel);
                        s.start_offset.store(start, Ordering::Release);
                    }
                    Err(e) => {
                        missing = true;
                        debug!(error = %e, topic = %s.topic, partition = s.partition, "end offset not known yet");
                    }
                }
            }
            if !missing {
                ctx.live
                    .brokers_down
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
            }
        } else if self
            .live
            .brokers_down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
            && self
                .consumer
                .fetch_metadata(None, Duration::from_secs(1))
                .is_ok_and(|m| !m.brokers().is_empty())
        {
            self.live
                .brokers_down
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            info!("brokers reachable again");
        }
    }

    /// Where consumption of a partition starts (its committed offset, or the
    /// low watermark when the group has none: `auto.offset.reset=earliest`)
    /// and its end offset now.
    fn start_and_end(&self, s: &Slot) -> KafkaResult<(i64, i64)> {
        let (low, high) =
            self.consumer
                .fetch_watermarks(&s.topic, s.partition, Duration::from_secs(2))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&s.topic, s.partition);
        let committed = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(2))?
            .find_partition(&s.topic, s.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        Ok((committed.unwrap_or(low).max(low), high))
    }

    fn shutdown(&mut self) {
        self.live.shutting_down.store(true, Ordering::Release);
        info!("stopping: applying in-flight events and committing offsets");
        let ctx = self.consumer.context();
        ctx.dispatcher.drain();
        if let Some(d) = &self.dead_letter {
            // Commits stop below any copy still unacknowledged after this.
            d.flush(Duration::from_secs(10));
        }
        if let Err(e) = commit_applied(&self.consumer, &self.live, None, CommitMode::Sync) {
            warn!(error = %e, "final commit failed");
        }
        // What the group coordinator now holds, next to what was applied.
        let held = self.consumer.committed(Duration::from_secs(5)).ok();
        for s in self.live.slots() {
            if !s.assigned.load(Ordering::Acquire) {
                continue;
            }
            let committed = held
                .as_ref()
                .and_then(|t| t.find_partition(&s.topic, s.partition))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(-1);
            info!(
                topic = %s.topic,
                partition = s.partition,
                committed_offset = committed,
                next_offset = s.applied_next.load(Ordering::Acquire),
                start_offset = s.start_offset.load(Ordering::Acquire),
                messages = s.messages.load(Ordering::Acquire),
                "committed"
            );
        }
        self.consumer.unsubscribe();
        for tx in &ctx.dispatcher.senders {
            let _ = tx.send(Work::Stop);
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        info!("stopped");
    }
}

fn worker(rx: Receiver<Work>, dead_letter: Option<&DeadLetter>) {
    for work in rx {
        match work {
            Work::Flush(ack) => {
                let _ = ack.send(());
            }
            Work::Batch(b) => apply_batch(&b, dead_letter),
            Work::Stop => break,
        }
    }
}

fn apply_batch(b: &Batch, dead_letter: Option<&DeadLetter>) {
    let mut i = 0;
    while i < b.items.len() {
        let slot = &b.items[i].slot;
        let mut j = i;
        {
            let mut part = slot.state.lock().unwrap_or_else(|e| e.into_inner());
            let wall = wall_clock_ms();
            while j < b.items.len() && Arc::ptr_eq(&b.items[j].slot, slot) {
                let it = &b.items[j];
                let mut at = it.start as usize;
                let key = (it.key_len != NO_KEY).then(|| {
                    at += it.key_len as usize;
                    &b.bytes[it.start as usize..at]
                });
                let bytes = &b.bytes[at..at + it.len as usize];
                if let Outcome::Rejected(reason) = part.process_at(bytes, wall) {
                    if let Some(d) = dead_letter {
                        d.send(slot, it.offset, key, bytes, reason.as_str());
                    }
                }
                j += 1;
            }
        }
        let next = b.items[j - 1].offset + 1;
        slot.applied_next.fetch_max(next, Ordering::AcqRel);
        slot.in_flight.fetch_sub((j - i) as i64, Ordering::AcqRel);
        slot.messages.fetch_add((j - i) as i64, Ordering::AcqRel);
        i = j;
    }
}
