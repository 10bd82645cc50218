//! The poll loop and its periodic upkeep (readiness bookkeeping).

use super::commit::commit_covered;
use super::Source;
use crate::live::Slot;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// A partition's slot and the worker that applies its messages.
type Routed = (Arc<Slot>, usize);

/// Messages polled between two looks at the clock (upkeep, commits) and at
/// the fatal flag, unless a poll finds nothing first. A poll waits at most
/// 50 ms, so even a trickle that never leaves the queue empty is looked at
/// within 0.8 s.
const CHECK_EVERY: u32 = 16;

/// Wall time between two upkeeps of every assigned partition, busy or
/// idle, by its worker (`Partition::upkeep` trims at most once a second).
const TRIM_EVERY: Duration = Duration::from_secs(1);

impl Source {
    /// Polls until `stop` is set, then drains, commits and returns.
    pub fn run(mut self, stop: &AtomicBool) {
        info!(topics = ?self.settings.topics, group = %self.settings.group, "consuming");
        // Each partition's slot and worker, looked up once, by topic (a
        // consumer has few: a scan compares fewer bytes than a hash reads).
        let mut slots: Vec<(String, Vec<Option<Routed>>)> = Vec::new();
        let mut last_upkeep = Instant::now();
        let mut last_trim = Instant::now();
        let mut last_commit = Instant::now();
        let mut last_error_log = Instant::now() - Duration::from_secs(60);
        let mut polled: u32 = 0;
        while !stop.load(Ordering::Acquire) {
            let mut idle = false;
            match self.consumer.poll(Duration::from_millis(50)) {
                None => {
                    self.consumer.context().dispatcher.send_pending();
                    idle = true;
                }
                Some(Ok(m)) => {
                    let topic = m.topic();
                    let i = match slots.iter().position(|(t, _)| t == topic) {
                        Some(i) => i,
                        None => {
                            slots.push((topic.to_string(), Vec::new()));
                            slots.len() - 1
                        }
                    };
                    let by_partition = &mut slots[i].1;
                    let p = m.partition().max(0) as usize;
                    if by_partition.len() <= p {
                        by_partition.resize(p + 1, None);
                    }
                    let dispatcher = &self.consumer.context().dispatcher;
                    let (slot, w) = by_partition[p].get_or_insert_with(|| {
                        let slot = self.live.slot(m.topic(), m.partition());
                        let w = dispatcher.worker_of(&slot);
                        (slot, w)
                    });
                    dispatcher.push(*w, slot, m.offset(), m.key(), m.payload().unwrap_or(&[]));
                }
                Some(Err(e)) => {
                    if last_error_log.elapsed() > Duration::from_secs(5) {
                        warn!(error = %e, "consumer error (librdkafka retries with backoff)");
                        last_error_log = Instant::now();
                    }
                }
            }
            // The clock and the fatal flag every `CHECK_EVERY` messages, or
            // when the poll found nothing: with them read on every message
            // (and the topic hashed), the poll thread took 0.76 to 0.86
            // CPU-seconds for the 1.17M messages of the Kafka bench's
            // skewed stream, now 0.56 to 0.70.
            polled = polled.wrapping_add(1);
            if !idle && polled % CHECK_EVERY != 0 {
                continue;
            }
            if last_upkeep.elapsed() >= Duration::from_millis(200) {
                self.upkeep();
                last_upkeep = Instant::now();
            }
            if last_trim.elapsed() >= TRIM_EVERY {
                let assigned = self.live.assigned();
                self.consumer.context().dispatcher.upkeep(&assigned);
                last_trim = Instant::now();
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
}
