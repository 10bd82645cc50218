//! Taking checkpoints: of one partition, and periodically of all.

use super::checkpoint::{Store, StoreError};
use super::commit::commit_covered;
use super::Kafka;
use crate::clock::wall_clock_ms;
use crate::live::{LiveState, Slot};
use rdkafka::consumer::CommitMode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// An unchanged partition's checkpoint is rewritten after this long.
const REWRITE_IDLE_MS: i64 = 86_400_000;

/// Takes and writes a checkpoint of one partition if it moved since the
/// last one. Ok(false): nothing to do.
pub(crate) fn checkpoint_slot(
    store: &Store,
    live: &LiveState,
    slot: &Slot,
) -> Result<bool, StoreError> {
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
                return Err(StoreError::DeadLetterPending(first));
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

/// Every `interval`, checkpoints each assigned partition that moved and
/// commits the offsets the checkpoints cover.
pub(super) fn checkpointer(store: &Store, consumer: &Kafka, live: &LiveState, stop: &AtomicBool) {
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
