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

pub mod checkpoint;
pub mod client;
pub mod dead_letter;
pub mod mock;
pub mod producer;

use crate::clock::wall_clock_ms;
use crate::engine::Outcome;
use crate::live::{LiveState, Slot};
use checkpoint::{CheckpointSettings, Loaded, Policy, Store};
use dead_letter::DeadLetter;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
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
    /// Where partition state is checkpointed, if anywhere.
    pub checkpoint: Option<CheckpointSettings>,
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
    store: Option<Arc<Store>>,
    dead_letter: Option<Arc<DeadLetter>>,
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
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if self.store.is_some() {
                    self.restore_assigned(consumer, tpl);
                    if self.live.fatal().is_some() {
                        // Refused: consume nothing; the engine stops.
                        let _ = consumer.unassign();
                        return;
                    }
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    warn!(error = %e, "assign failed");
                }
                self.assigned(tpl);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoke(consumer, tpl, consumer.assignment_lost());
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    warn!(error = %e, "unassign failed");
                }
            }
            e => {
                warn!(error = ?e, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}

impl SourceContext {
    /// Before partitions go away: apply everything fetched for them,
    /// checkpoint them (or, without checkpoints, commit what was applied),
    /// so their next owner starts exactly after it; then stop publishing
    /// them.
    /// `lost`: the group already gave the partitions to others (session
    /// timeout): no checkpoint and no commit, which could only race their
    /// new owner; the state is reloaded if they come back.
    fn revoke(&self, consumer: &Kafka, tpl: &TopicPartitionList, lost: bool) {
        self.dispatcher.drain();
        if lost {
            warn!(
                partitions = tpl.count(),
                "partitions lost (session timed out): not publishing them until reassigned"
            );
        } else {
            self.hand_over(consumer, tpl);
        }
        for e in tpl.elements() {
            let slot = self.live.slot(e.topic(), e.partition());
            let _g = slot
                .checkpoint_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            slot.assigned.store(false, Ordering::Release);
        }
        info!(partitions = tpl.count(), "partitions revoked");
    }

    /// Checkpoints (or, without checkpoints, commits) revoked partitions so
    /// their next owner starts exactly after what was applied.
    fn hand_over(&self, consumer: &Kafka, tpl: &TopicPartitionList) {
        if let Some(store) = &self.store {
            if let Some(d) = &self.dead_letter {
                d.flush(Duration::from_secs(10));
            }
            for e in tpl.elements() {
                let slot = self.live.slot(e.topic(), e.partition());
                if let Err(err) = checkpoint_slot(store, &self.live, &slot) {
                    store.stats.failures.fetch_add(1, Ordering::Relaxed);
                    warn!(topic = %slot.topic, partition = slot.partition, error = %err,
                        "checkpoint before revocation failed; the next owner resumes from the previous one");
                }
            }
        }
        if let Err(e) = commit_covered(consumer, &self.live, Some(tpl), CommitMode::Sync) {
            warn!(error = %e, "commit before revocation failed");
        }
    }

    /// Bookkeeping once partitions are assigned; frees the state of
    /// partitions that went to other instances.
    fn assigned(&self, tpl: &TopicPartitionList) {
        for e in tpl.elements() {
            let slot = self.live.slot(e.topic(), e.partition());
            slot.target.store(-1, Ordering::Release);
            if self.store.is_none() {
                slot.start_offset.store(-1, Ordering::Release);
            }
            slot.target_confirmed.store(false, Ordering::Release);
            slot.assigned.store(true, Ordering::Release);
        }
        for s in self.live.slots() {
            if !s.assigned.load(Ordering::Acquire) {
                let _g = s.checkpoint_lock.lock().unwrap_or_else(|e| e.into_inner());
                *s.state.lock().unwrap_or_else(|e| e.into_inner()) =
                    self.live.engine.live_partition();
                s.applied_next.store(-1, Ordering::Release);
                s.checkpointed.store(-1, Ordering::Release);
                s.committed.store(-1, Ordering::Release);
            }
        }
        self.needs_targets.store(true, Ordering::Release);
        self.live.assigned_once.store(true, Ordering::Release);
        info!(partitions = tpl.count(), "partitions assigned");
    }

    /// Checkpointing on: gives every newly assigned partition its state
    /// (kept from before a rebalance when nobody else consumed it since,
    /// otherwise restored from its newest checkpoint, otherwise empty as the
    /// policy says) and sets the offset to resume from.
    fn restore_assigned(&self, consumer: &Kafka, tpl: &mut TopicPartitionList) {
        let Some(store) = &self.store else { return };
        if let Err(e) = store.check_topic() {
            error!("{e}");
            *self.live.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            return;
        }
        let committed = with_retries("committed offsets", || {
            consumer.committed_offsets(tpl.clone(), Duration::from_secs(10))
        })
        .ok();
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, p) in parts {
            let group_offset = committed
                .as_ref()
                .and_then(|c| c.find_partition(&topic, p))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            match self.restore_one(consumer, store, &topic, p, group_offset) {
                Ok(start) => {
                    if let Err(e) = tpl.set_partition_offset(&topic, p, Offset::Offset(start)) {
                        warn!(error = %e, "setting the start offset failed");
                    }
                }
                Err(msg) => {
                    error!("{msg}");
                    *self.live.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
                    return;
                }
            }
        }
    }

    /// The offset partition `(topic, p)` resumes from, its state installed;
    /// `Err` when the engine must stop.
    fn restore_one(
        &self,
        consumer: &Kafka,
        store: &Store,
        topic: &str,
        p: i32,
        group_offset: Option<i64>,
    ) -> Result<i64, String> {
        let live = &self.live;
        let slot = live.slot(topic, p);
        let _g = slot
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let kept = slot.checkpointed.load(Ordering::Acquire);
        if kept >= 0
            && slot.applied_next.load(Ordering::Acquire) == kept
            && group_offset == Some(kept)
        {
            // Ours since our last checkpoint, which nobody moved past.
            info!(
                topic,
                partition = p,
                next_offset = kept,
                "state kept: still at its last checkpoint"
            );
            slot.start_offset.store(kept, Ordering::Release);
            return Ok(kept);
        }
        let (low, _) = with_retries("source watermarks", || {
            consumer.fetch_watermarks(topic, p, Duration::from_secs(10))
        })
        .map_err(|e| format!("cannot read the offsets of {topic}/{p}: {e}"))?;
        let loaded = with_retries("checkpoint read", || {
            store.load(&live.engine, topic, p, low)
        })
        .map_err(|e| {
            format!(
                "cannot read checkpoints of {topic}/{p} from `{}`: {e}",
                store.topic
            )
        })?;
        let reset = |start: i64, at_ms: i64| {
            *slot.state.lock().unwrap_or_else(|e| e.into_inner()) = live.engine.live_partition();
            slot.applied_next.store(start, Ordering::Release);
            slot.start_offset.store(start, Ordering::Release);
            slot.checkpointed.store(-1, Ordering::Release);
            slot.checkpoint_bytes.store(0, Ordering::Relaxed);
            slot.checkpoint_at_ms.store(at_ms, Ordering::Relaxed);
        };
        match loaded {
            Loaded::Found {
                part,
                meta,
                slot: written_to,
                bytes,
                skipped,
            } => {
                for s in &skipped {
                    warn!(
                        topic,
                        partition = p,
                        "skipped an unusable newer checkpoint: {s}"
                    );
                }
                *slot.state.lock().unwrap_or_else(|e| e.into_inner()) = *part;
                let start = meta.next_offset;
                slot.applied_next.store(start, Ordering::Release);
                slot.start_offset.store(start, Ordering::Release);
                slot.checkpointed.store(start, Ordering::Release);
                slot.checkpoint_slot
                    .store(1 - written_to, Ordering::Release);
                slot.checkpoint_bytes.store(bytes, Ordering::Relaxed);
                slot.checkpoint_at_ms
                    .store(meta.written_at_ms, Ordering::Relaxed);
                store.stats.restored.fetch_add(1, Ordering::Relaxed);
                info!(
                    topic,
                    partition = p,
                    next_offset = start,
                    bytes,
                    "state restored from checkpoint"
                );
                Ok(start)
            }
            Loaded::NotFound { problems } if problems.is_empty() && group_offset.is_none() => {
                info!(
                    topic,
                    partition = p,
                    from = low,
                    "no checkpoint yet: starting from the earliest offset"
                );
                reset(low, wall_clock_ms());
                Ok(low)
            }
            Loaded::NotFound { problems } => {
                let (reason, detail) = problems.first().cloned().unwrap_or((
                    "missing",
                    format!(
                        "the group has committed offset {} but `{}` holds no checkpoint for it",
                        group_offset.unwrap_or(-1),
                        store.topic
                    ),
                ));
                for (_, d) in problems.iter().skip(1) {
                    warn!(topic, partition = p, "unusable checkpoint: {d}");
                }
                match store.settings.policy {
                    Policy::Rebuild => {
                        warn!(topic, partition = p, reason, from = low,
                            "checkpoint {reason}: {detail}; rebuilding from the earliest retained offset (--checkpoint-policy rebuild)");
                        if let Some(i) = crate::checkpoint::REBUILD_REASONS
                            .iter()
                            .position(|r| *r == reason)
                        {
                            store.stats.rebuilds[i].fetch_add(1, Ordering::Relaxed);
                        }
                        reset(low, wall_clock_ms());
                        Ok(low)
                    }
                    Policy::Refuse => Err(format!(
                        "checkpoint of {topic}/{p} is {reason}: {detail}; refusing to start \
                         (--checkpoint-policy refuse). Fix or delete the checkpoint, or run \
                         with --checkpoint-policy rebuild to recount from the earliest retained offset"
                    )),
                }
            }
        }
    }
}

/// Retries a broker call with backoff for up to two minutes.
fn with_retries<T, E: std::fmt::Display>(
    what: &str,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut wait = Duration::from_millis(200);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() + wait < deadline => {
                warn!(error = %e, "{what} failed; retrying in {wait:?}");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// An unchanged partition's checkpoint is rewritten after this long.
const REWRITE_IDLE_MS: i64 = 86_400_000;

/// Takes and writes a checkpoint of one partition if it moved since the
/// last one. Ok(false): nothing to do.
pub(crate) fn checkpoint_slot(
    store: &Store,
    live: &LiveState,
    slot: &Slot,
) -> Result<bool, String> {
    let _g = slot
        .checkpoint_lock
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if !slot.assigned.load(Ordering::Acquire) {
        return Ok(false);
    }
    let started = Instant::now();
    let (bytes, meta) = {
        let mut part = slot.state.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the state lock: workers move it under the same lock.
        let next = slot.applied_next.load(Ordering::Acquire);
        // Unchanged since the last checkpoint: nothing to write, except a
        // daily rewrite, so that a topic with deleting retention (not
        // compacted, against the advice) keeps an idle partition's state.
        let stale =
            wall_clock_ms() - slot.checkpoint_at_ms.load(Ordering::Relaxed) > REWRITE_IDLE_MS;
        let covered = slot.checkpointed.load(Ordering::Acquire);
        if next < 0 || next < covered || (next == covered && !stale) {
            return Ok(false);
        }
        if let Some(&first) = slot
            .dlq_pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first()
        {
            if first < next {
                return Err(format!(
                    "dead-letter copy of offset {first} not yet acknowledged"
                ));
            }
        }
        let meta = crate::checkpoint::CheckpointMeta {
            topic: slot.topic.clone(),
            partition: slot.partition,
            next_offset: next,
            written_at_ms: wall_clock_ms(),
            engine_now_ms: live.engine.clock.current(),
        };
        (crate::checkpoint::encode(&mut part, &meta), meta)
    };
    store
        .stats
        .encode_us
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    let ab = slot.checkpoint_slot.load(Ordering::Acquire);
    debug!(topic = %meta.topic, partition = meta.partition, next_offset = meta.next_offset,
        bytes = bytes.len(), "checkpoint encoded, writing");
    store.write(&bytes, &meta, ab)?;
    slot.checkpoint_slot.store(1 - ab, Ordering::Release);
    slot.checkpointed.store(meta.next_offset, Ordering::Release);
    slot.checkpoint_bytes
        .store(bytes.len() as u64, Ordering::Relaxed);
    slot.checkpoint_at_ms
        .store(meta.written_at_ms, Ordering::Relaxed);
    debug!(topic = %meta.topic, partition = meta.partition, next_offset = meta.next_offset,
        bytes = bytes.len(), ms = started.elapsed().as_millis() as u64, "checkpoint written");
    Ok(true)
}

type Kafka = BaseConsumer<SourceContext>;

/// Commits, for every assigned partition (or only those in `only`), the
/// offset everything below which is safe: with checkpoints, the offset the
/// last acknowledged checkpoint covers; without, the offset after the last
/// applied event (held below any unacknowledged dead-letter copy). Only
/// where it moved since the last commit. Returns the number of partitions
/// committed.
fn commit_covered(
    consumer: &Kafka,
    live: &LiveState,
    only: Option<&TopicPartitionList>,
    mode: CommitMode,
) -> KafkaResult<usize> {
    let mut tpl = TopicPartitionList::new();
    let mut slots = Vec::new();
    let checkpoints = live.checkpoint.get().is_some();
    for s in live.slots() {
        let selected = match only {
            Some(t) => t.find_partition(&s.topic, s.partition).is_some(),
            None => s.assigned.load(Ordering::Acquire),
        };
        let mut next = if checkpoints {
            s.checkpointed.load(Ordering::Acquire)
        } else {
            s.applied_next.load(Ordering::Acquire)
        };
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
    /// The periodic checkpoint thread and its stop flag.
    checkpointer: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

/// Every `interval`, checkpoints each assigned partition that moved and
/// commits the offsets the checkpoints cover.
fn checkpointer(store: &Store, consumer: &Kafka, live: &LiveState, stop: &AtomicBool) {
    let mut last_warning: Option<Instant> = None;
    loop {
        let due = Instant::now() + store.settings.interval;
        while Instant::now() < due {
            if stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50).min(store.settings.interval));
        }
        let mut wrote = false;
        for slot in live.slots() {
            match checkpoint_slot(store, live, &slot) {
                Ok(w) => wrote |= w,
                Err(e) => {
                    store.stats.failures.fetch_add(1, Ordering::Relaxed);
                    if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        warn!(topic = %slot.topic, partition = slot.partition, error = %e,
                            "checkpoint failed; retried at the next interval (commits wait)");
                        last_warning = Some(Instant::now());
                    }
                }
            }
        }
        if wrote {
            if let Err(e) = commit_covered(consumer, live, None, CommitMode::Async) {
                debug!(error = %e, "commit after checkpoint failed; retried next time");
            }
        }
    }
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
        let dead_letter = match &settings.dead_letter_topic {
            Some(t) => {
                let d = DeadLetter::new(&settings.brokers, t, &settings.properties)
                    .map_err(|e| SourceError::Config(format!("dead-letter producer: {e}")))?;
                let _ = live.dead_letter.set(d.stats.clone());
                Some(Arc::new(d))
            }
            None => None,
        };
        let store = match &settings.checkpoint {
            Some(c) => {
                let st = Store::new(
                    &settings.brokers,
                    &settings.group,
                    &settings.topics,
                    &settings.properties,
                    c.clone(),
                )
                .map_err(SourceError::Config)?;
                let _ = live.checkpoint.set(st.stats.clone());
                Some(Arc::new(st))
            }
            None => None,
        };
        let ctx = SourceContext {
            live: live.clone(),
            dispatcher,
            needs_targets: AtomicBool::new(false),
            store: store.clone(),
            dead_letter: dead_letter.clone(),
        };
        let consumer: Kafka = client_config(&settings)?
            .set_log_level(RDKafkaLogLevel::Warning)
            .create_with_context(ctx)
            .map_err(|e| SourceError::Config(format!("kafka configuration: {e}")))?;
        let consumer = Arc::new(consumer);
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
        let checkpointer = store.map(|st| {
            let (consumer, live, stop) = (
                consumer.clone(),
                live.clone(),
                Arc::new(AtomicBool::new(false)),
            );
            let flag = stop.clone();
            let h = std::thread::Builder::new()
                .name("funnel-checkpoint".into())
                .spawn(move || checkpointer(&st, &consumer, &live, &flag))
                .expect("spawn checkpoint thread");
            (stop, h)
        });
        Ok(Source {
            consumer,
            live,
            settings,
            workers: handles,
            dead_letter,
            checkpointer,
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
            if self.live.fatal().is_some() {
                break;
            }
            if self.checkpointer.is_none() && last_commit.elapsed() >= Duration::from_secs(1) {
                if let Err(e) = commit_covered(&self.consumer, &self.live, None, CommitMode::Async)
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
                        s.target.fetch_max(high, Ordering::AcqRel);
                        // With checkpoints the start was fixed at assignment
                        // (the restored checkpoint's offset, or the earliest
                        // one on a rebuild, which can lie below the group's
                        // commit): the state covers nothing past it.
                        if s.start_offset.load(Ordering::Acquire) < 0 {
                            // Nothing before the start offset needs applying.
                            s.applied_next.fetch_max(start, Ordering::AcqRel);
                            s.start_offset.store(start, Ordering::Release);
                        }
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
        info!("stopping: applying in-flight events, checkpointing and committing offsets");
        if let Some((stop, h)) = self.checkpointer.take() {
            stop.store(true, Ordering::Release);
            let _ = h.join();
        }
        let ctx = self.consumer.context();
        ctx.dispatcher.drain();
        if let Some(d) = &self.dead_letter {
            // Commits stop below any copy still unacknowledged after this.
            d.flush(Duration::from_secs(10));
        }
        let unreachable = self
            .live
            .brokers_down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let (Some(store), Some(e)) = (&ctx.store, &unreachable) {
            warn!(error = %e, store = %store.topic,
                "brokers unreachable: no final checkpoint; a restart resumes from the last one");
        }
        if let (Some(store), None, None) = (&ctx.store, self.live.fatal(), unreachable) {
            for slot in self.live.slots() {
                if let Err(e) = checkpoint_slot(store, &self.live, &slot) {
                    store.stats.failures.fetch_add(1, Ordering::Relaxed);
                    warn!(topic = %slot.topic, partition = slot.partition, error = %e,
                        "final checkpoint failed; a restart resumes from the previous one");
                }
            }
        }
        if let Err(e) = commit_covered(&self.consumer, &self.live, None, CommitMode::Sync) {
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

impl Item {
    /// The message's key (if any) and payload inside its batch's bytes.
    fn parts<'a>(&self, bytes: &'a [u8]) -> (Option<&'a [u8]>, &'a [u8]) {
        let mut at = self.start as usize;
        let key = (self.key_len != NO_KEY).then(|| {
            at += self.key_len as usize;
            &bytes[self.start as usize..at]
        });
        (key, &bytes[at..at + self.len as usize])
    }
}

/// Applies a batch, one run of consecutive messages of a partition at a
/// time, through the prefetching batch path of the engine.
fn apply_batch(b: &Batch, dead_letter: Option<&DeadLetter>) {
    let mut payloads: Vec<&[u8]> = Vec::with_capacity(b.items.len());
    let mut outcomes = Vec::with_capacity(b.items.len());
    let mut i = 0;
    while i < b.items.len() {
        let slot = &b.items[i].slot;
        let j = i + b.items[i..]
            .iter()
            .take_while(|it| Arc::ptr_eq(&it.slot, slot))
            .count();
        payloads.clear();
        payloads.extend(b.items[i..j].iter().map(|it| it.parts(&b.bytes).1));
        outcomes.clear();
        {
            let mut part = slot.state.lock().unwrap_or_else(|e| e.into_inner());
            part.process_batch_at(&payloads, wall_clock_ms(), &mut outcomes);
            if let Some(d) = dead_letter {
                for (it, o) in b.items[i..j].iter().zip(&outcomes) {
                    if let Outcome::Rejected(reason) = o {
                        let (key, bytes) = it.parts(&b.bytes);
                        d.send(slot, it.offset, key, bytes, reason.as_str());
                    }
                }
            }
            // Under the state lock, so a checkpoint sees state and offset
            // together.
            let next = b.items[j - 1].offset + 1;
            slot.applied_next.fetch_max(next, Ordering::AcqRel);
        }
        slot.in_flight.fetch_sub((j - i) as i64, Ordering::AcqRel);
        slot.messages.fetch_add((j - i) as i64, Ordering::AcqRel);
        i = j;
    }
}
