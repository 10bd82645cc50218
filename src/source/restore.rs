//! Restoring newly assigned partitions from their checkpoints.

use super::checkpoint::{Loaded, Policy, Store, StoreError};
use super::context::SourceContext;
use super::Kafka;
use crate::checkpoint::CheckpointMeta;
use crate::clock::wall_clock_ms;
use crate::engine::Partition;
use crate::live::Slot;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

/// Why a newly assigned partition cannot start (the engine stops).
#[derive(Debug, thiserror::Error)]
enum RestoreError {
    #[error("cannot read the offsets of {topic}/{partition}: {source}")]
    Watermarks {
        topic: String,
        partition: i32,
        source: KafkaError,
    },
    #[error("cannot read checkpoints of {topic}/{partition} from `{store}`: {source}")]
    Read {
        topic: String,
        partition: i32,
        store: String,
        source: Box<StoreError>,
    },
    #[error(
        "checkpoint of {topic}/{partition} is {reason}: {detail}; refusing to start \
         (--checkpoint-policy refuse). Fix or delete the checkpoint, or run \
         with --checkpoint-policy rebuild to recount from the earliest retained offset"
    )]
    Refused {
        topic: String,
        partition: i32,
        reason: &'static str,
        detail: String,
    },
}

impl SourceContext {
    /// Checkpointing on: gives every newly assigned partition its state
    /// (kept from before a rebalance when nobody else consumed it since,
    /// otherwise restored from its newest checkpoint, otherwise empty as the
    /// policy says) and sets the offset to resume from.
    pub(super) fn restore_assigned(&self, consumer: &Kafka, tpl: &mut TopicPartitionList) {
        let Some(store) = &self.store else { return };
        if let Err(e) = store.check_topic() {
            error!("{e}");
            *self.live.fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
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
                Err(e) => {
                    let msg = e.to_string();
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
    ) -> Result<i64, RestoreError> {
        let slot = self.live.slot(topic, p);
        let _g = slot
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(kept) = keep_unmoved_state(&slot, group_offset) {
            return Ok(kept);
        }
        let (low, loaded) = self.read_newest_checkpoint(consumer, store, topic, p)?;
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
                Ok(install_checkpoint(
                    &slot, store, *part, &meta, written_to, bytes,
                ))
            }
            Loaded::NotFound { problems } if problems.is_empty() && group_offset.is_none() => {
                info!(
                    topic,
                    partition = p,
                    from = low,
                    "no checkpoint yet: starting from the earliest offset"
                );
                self.start_empty(&slot, low);
                Ok(low)
            }
            Loaded::NotFound { problems } => {
                self.without_usable_checkpoint(&slot, store, low, group_offset, problems)
            }
        }
    }

    /// The low watermark of `(topic, p)` (the earliest retained offset) and
    /// the newest usable checkpoint of it at or after that offset.
    fn read_newest_checkpoint(
        &self,
        consumer: &Kafka,
        store: &Store,
        topic: &str,
        p: i32,
    ) -> Result<(i64, Loaded), RestoreError> {
        let (low, _) = with_retries("source watermarks", || {
            consumer.fetch_watermarks(topic, p, Duration::from_secs(10))
        })
        .map_err(|source| RestoreError::Watermarks {
            topic: topic.to_string(),
            partition: p,
            source,
        })?;
        let loaded = with_retries("checkpoint read", || {
            store.load(&self.live.engine, topic, p, low)
        })
        .map_err(|source| RestoreError::Read {
            topic: topic.to_string(),
            partition: p,
            store: store.topic.clone(),
            source: Box::new(source),
        })?;
        Ok((low, loaded))
    }

    /// A group offset but no usable checkpoint for it (or unusable ones):
    /// rebuilds from `low` or refuses, as `--checkpoint-policy` says.
    fn without_usable_checkpoint(
        &self,
        slot: &Slot,
        store: &Store,
        low: i64,
        group_offset: Option<i64>,
        problems: Vec<(&'static str, String)>,
    ) -> Result<i64, RestoreError> {
        let (topic, p) = (slot.topic.as_str(), slot.partition);
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
                self.start_empty(slot, low);
                Ok(low)
            }
            Policy::Refuse => Err(RestoreError::Refused {
                topic: topic.to_string(),
                partition: p,
                reason,
                detail,
            }),
        }
    }

    /// Empty state, resuming from `start`, no checkpoint written yet.
    fn start_empty(&self, slot: &Slot, start: i64) {
        *slot.state.lock().unwrap_or_else(|e| e.into_inner()) = self.live.engine.live_partition();
        slot.applied_next.store(start, Ordering::Release);
        slot.start_offset.store(start, Ordering::Release);
        slot.checkpointed.store(-1, Ordering::Release);
        slot.checkpoint_bytes.store(0, Ordering::Relaxed);
        slot.checkpoint_at_ms
            .store(wall_clock_ms(), Ordering::Relaxed);
    }
}

/// The offset to resume from when the partition's state in memory is still
/// good: ours since our last checkpoint, which nobody moved past (the
/// group's offset is that checkpoint's). `None`: it must be restored.
fn keep_unmoved_state(slot: &Slot, group_offset: Option<i64>) -> Option<i64> {
    let kept = slot.checkpointed.load(Ordering::Acquire);
    if kept < 0 || slot.applied_next.load(Ordering::Acquire) != kept || group_offset != Some(kept) {
        return None;
    }
    info!(
        topic = slot.topic.as_str(),
        partition = slot.partition,
        next_offset = kept,
        "state kept: still at its last checkpoint"
    );
    slot.start_offset.store(kept, Ordering::Release);
    Some(kept)
}

/// Installs a checkpoint's state in `slot` (written to checkpoint slot
/// `written_to`, `bytes` long); the offset to resume from.
fn install_checkpoint(
    slot: &Slot,
    store: &Store,
    part: Partition,
    meta: &CheckpointMeta,
    written_to: u8,
    bytes: u64,
) -> i64 {
    *slot.state.lock().unwrap_or_else(|e| e.into_inner()) = part;
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
        topic = slot.topic.as_str(),
        partition = slot.partition,
        next_offset = start,
        bytes,
        "state restored from checkpoint"
    );
    start
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
