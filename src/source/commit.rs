//! Committing offsets: only what was applied (or checkpointed).

use super::Kafka;
use crate::live::LiveState;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;

/// Commits, for every assigned partition (or only those in `only`), the
/// offset everything below which is safe: with checkpoints, the offset the
/// last acknowledged checkpoint covers; without, the offset after the last
/// applied event (held below any unacknowledged dead-letter copy). Only
/// where it moved since the last commit. Returns the number of partitions
/// committed.
pub(super) fn commit_covered(
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
