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
//!
//! Files by job: `settings` (what the source is told, the client
//! configuration), `poll` (the poll loop and its upkeep), `dispatch` (the
//! hand-off to the workers), `worker` (applying batches), `context`
//! (logs, errors) and `stats` (lag from librdkafka's statistics),
//! `rebalance` (revocation and assignment), `restore` (state from
//! checkpoints on assignment), `checkpointer` (taking checkpoints),
//! `commit` (committing what is covered), `checkpoint` (the checkpoint format in
//! Kafka), `dead_letter`; this file builds the source and shuts it down.

pub mod checkpoint;
pub(crate) mod client;
pub(crate) mod dead_letter;
pub(crate) mod mock;
pub mod producer;

mod checkpointer;
mod commit;
mod context;
mod dispatch;
mod poll;
mod rebalance;
mod restore;
mod settings;
mod stats;
mod throttle;
mod worker;

pub(crate) use checkpointer::checkpoint_slot;
pub(crate) use context::SourceContext;
pub use settings::KafkaSettings;
pub(crate) use settings::{client_config, CONSUMER_ONLY, MANAGED_PROPERTIES};

use crate::live::LiveState;
use checkpoint::Store;
use checkpointer::checkpointer;
use commit::commit_covered;
use dead_letter::DeadLetter;
use dispatch::{Batch, Dispatcher, Work, QUEUE_BATCHES};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::Offset;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};
use worker::worker;

type Kafka = BaseConsumer<SourceContext>;

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
                // Only the producer's creation fails here: its configuration.
                .map_err(|e| SourceError::Config(e.to_string()))?;
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
            throttle: Default::default(),
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

    pub(super) fn shutdown(&mut self) {
        self.live.shutting_down.store(true, Ordering::Release);
        if self.consumer.context().store.is_some() {
            info!("stopping: applying in-flight events, checkpointing and committing offsets");
        } else {
            info!("stopping: applying in-flight events and committing offsets");
        }
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
