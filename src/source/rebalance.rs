//! Rebalances: what happens before partitions are revoked (drain, hand
//! over) and after they are assigned.

use super::checkpointer::checkpoint_slot;
use super::commit::commit_covered;
use super::context::SourceContext;
use super::Kafka;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tracing::{info, warn};

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
}
