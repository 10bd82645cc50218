//! State shared by the live path: the source writes it, the HTTP export
//! reads it. One `Mutex<Partition>` per Kafka partition, locked by the one
//! worker that owns the partition and, briefly, by a render: there is no
//! global lock on the hot path. Knows neither Kafka nor HTTP.

use crate::engine::{wall_clock_ms, Engine, Health, Partition};
use crate::export::prometheus::{render_copied, Format, KeyCopies};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// One Kafka partition's processing state and progress.
#[derive(Debug)]
pub struct Slot {
    pub topic: String,
    pub partition: i32,
    pub state: Mutex<Partition>,
    /// Next offset to apply (offset of the last applied message + 1), -1
    /// before the first.
    pub applied_next: AtomicI64,
    /// High watermark seen at assignment: caught up once applied_next or
    /// the fetch position reaches it. -1 while unknown.
    pub target: AtomicI64,
    /// Offset consumption started from at assignment, -1 unknown.
    pub start_offset: AtomicI64,
    /// The target has been raised to a high watermark reported by a fetch
    /// response since assignment (ListOffsets alone can lag behind on some
    /// brokers).
    pub target_confirmed: AtomicBool,
    /// Dispatched to a worker but not yet applied.
    pub in_flight: AtomicI64,
    /// Offsets of rejected events whose dead-letter copy is not yet
    /// acknowledged: the partition's commit stays below the first.
    pub dlq_pending: Mutex<std::collections::BTreeSet<i64>>,
    /// Next offset covered by the last acknowledged checkpoint of this
    /// slot's current state, -1 none (checkpointing only).
    pub checkpointed: AtomicI64,
    /// Checkpoint slot (0 or 1) the next checkpoint goes to.
    pub checkpoint_slot: std::sync::atomic::AtomicU8,
    /// Size and wall-clock time of the last checkpoint (or of the
    /// assignment, before the first).
    pub checkpoint_bytes: std::sync::atomic::AtomicU64,
    pub checkpoint_at_ms: AtomicI64,
    /// Held while a checkpoint of this partition is taken, and while the
    /// partition is assigned or revoked.
    pub checkpoint_lock: Mutex<()>,
    /// Last offset committed synchronously by this process, -1 none.
    pub committed: AtomicI64,
    /// Messages this process applied (valid, duplicate or rejected).
    pub messages: AtomicI64,
    pub assigned: AtomicBool,
    /// `funnel_consumer_lag_messages`, -1 while unknown.
    pub lag: AtomicI64,
}

impl Slot {
    /// Everything that was in the partition when it was assigned has been
    /// applied (`applied_next` starts at the committed offset).
    pub fn caught_up(&self) -> bool {
        let target = self.target.load(Ordering::Acquire);
        self.target_confirmed.load(Ordering::Acquire)
            && self.start_offset.load(Ordering::Acquire) >= 0
            && target >= 0
            && self.applied_next.load(Ordering::Acquire) >= target
    }
}

/// Why the engine is not ready (for `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    ShuttingDown,
    NoAssignment,
    BrokersDown(String),
    CatchingUp(usize),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::ShuttingDown => f.write_str("shutting down"),
            NotReady::NoAssignment => f.write_str("no partition assignment yet"),
            NotReady::BrokersDown(e) => write!(f, "brokers unreachable: {e}"),
            NotReady::CatchingUp(n) => write!(f, "{n} partition(s) catching up"),
        }
    }
}

#[derive(Debug)]
pub struct LiveState {
    pub engine: Engine,
    slots: RwLock<BTreeMap<(String, i32), Arc<Slot>>>,
    pub assigned_once: AtomicBool,
    pub shutting_down: AtomicBool,
    /// Last error that made every broker unreachable; cleared on progress.
    pub brokers_down: Mutex<Option<String>>,
    pub version: &'static str,
    /// Dead-letter counters, when a dead-letter topic is configured.
    pub dead_letter: std::sync::OnceLock<Arc<crate::source::dead_letter::DeadLetterStats>>,
    /// Checkpoint counters, when a checkpoint topic is configured.
    pub checkpoint: std::sync::OnceLock<Arc<crate::source::checkpoint::CheckpointStats>>,
    /// Set when the engine must stop with an error (a refused checkpoint).
    pub fatal: Mutex<Option<String>>,
    /// Counters of `/api/v1/kpis/stream` (written by the HTTP export).
    pub streams: StreamStats,
}

/// `funnel_stream_clients` and `funnel_stream_clients_dropped_total`.
#[derive(Debug, Default)]
pub struct StreamStats {
    pub clients: std::sync::atomic::AtomicU64,
    pub dropped: std::sync::atomic::AtomicU64,
}

impl LiveState {
    pub fn new(engine: Engine) -> Arc<Self> {
        Arc::new(LiveState {
            engine,
            slots: RwLock::new(BTreeMap::new()),
            assigned_once: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
            brokers_down: Mutex::new(None),
            version: crate::cli::VERSION,
            dead_letter: std::sync::OnceLock::new(),
            checkpoint: std::sync::OnceLock::new(),
            fatal: Mutex::new(None),
            streams: StreamStats::default(),
        })
    }

    /// The slot of a partition, created on first use.
    pub fn slot(&self, topic: &str, partition: i32) -> Arc<Slot> {
        if let Some(s) = self
            .slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_string(), partition))
        {
            return s.clone();
        }
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        slots
            .entry((topic.to_string(), partition))
            .or_insert_with(|| {
                Arc::new(Slot {
                    topic: topic.to_string(),
                    partition,
                    state: Mutex::new(self.engine.live_partition()),
                    applied_next: AtomicI64::new(-1),
                    target: AtomicI64::new(-1),
                    start_offset: AtomicI64::new(-1),
                    target_confirmed: AtomicBool::new(false),
                    in_flight: AtomicI64::new(0),
                    messages: AtomicI64::new(0),
                    committed: AtomicI64::new(-1),
                    checkpointed: AtomicI64::new(-1),
                    checkpoint_slot: Default::default(),
                    checkpoint_bytes: Default::default(),
                    checkpoint_at_ms: AtomicI64::new(-1),
                    checkpoint_lock: Mutex::new(()),
                    dlq_pending: Mutex::new(Default::default()),
                    assigned: AtomicBool::new(false),
                    lag: AtomicI64::new(-1),
                })
            })
            .clone()
    }

    pub fn slots(&self) -> Vec<Arc<Slot>> {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(NotReady::ShuttingDown);
        }
        if let Some(e) = self
            .brokers_down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(NotReady::BrokersDown(e));
        }
        if !self.assigned_once.load(Ordering::Acquire) {
            return Err(NotReady::NoAssignment);
        }
        let behind = self
            .slots()
            .iter()
            .filter(|s| s.assigned.load(Ordering::Acquire) && !s.caught_up())
            .count();
        if behind > 0 {
            return Err(NotReady::CatchingUp(behind));
        }
        Ok(())
    }

    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` with every assigned partition's state locked (in a fixed
    /// order, so concurrent renders cannot deadlock), and the engine time.
    /// A partition revoked from this instance is not published: its new
    /// owner publishes it, so `sum` across instances counts it once.
    /// Holds every lock for the whole of `f`: the live exports use
    /// [`copy_partitions`](Self::copy_partitions) instead.
    pub fn with_partitions<R>(&self, f: impl FnOnce(&[&Partition], i64) -> R) -> R {
        let slots = self.assigned();
        let guards: Vec<MutexGuard<'_, Partition>> = slots
            .iter()
            .map(|s| s.state.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let parts: Vec<&Partition> = guards.iter().map(|g| &**g).collect();
        let now = self.engine.clock.now(wall_clock_ms());
        f(&parts, now)
    }

    fn assigned(&self) -> Vec<Arc<Slot>> {
        self.slots()
            .into_iter()
            .filter(|s| s.assigned.load(Ordering::Acquire))
            .collect()
    }

    /// Every assigned partition's keys (summed at the engine time returned)
    /// and health counters, copied out one partition at a time: each
    /// partition is locked only while its own state is copied, so a render
    /// never stalls ingestion on the other partitions, nor on this one for
    /// longer than the copy. Revoked partitions are left out as in
    /// [`with_partitions`](Self::with_partitions).
    pub fn copy_partitions(&self) -> (KeyCopies, Health, i64) {
        let now = self.engine.clock.now(wall_clock_ms());
        let mut keys = KeyCopies::default();
        let mut health = Health::default();
        for s in self.assigned() {
            let p = s.state.lock().unwrap_or_else(|e| e.into_inner());
            keys.add(&p.agg, now);
            health.add(&p);
            // Exactly the partitions copied: see `funnel_partition_owned`.
            health.owned.push((s.topic.clone(), s.partition));
        }
        keys.finish();
        (keys, health, now)
    }

    /// The exposition of everything consumed so far.
    pub fn render(&self, format: Format) -> String {
        let lag: Vec<(String, i32, i64)> = self
            .slots()
            .iter()
            .filter(|s| s.assigned.load(Ordering::Acquire) && s.lag.load(Ordering::Acquire) >= 0)
            .map(|s| (s.topic.clone(), s.partition, s.lag.load(Ordering::Acquire)))
            .collect();
        let (keys, mut health, _now) = self.copy_partitions();
        health.lag = lag;
        health.dead_letter = self.dead_letter.get().map(|d| {
            [
                d.written.load(Ordering::Relaxed),
                d.failures.load(Ordering::Relaxed),
                d.pending.load(Ordering::Relaxed).max(0) as u64,
            ]
        });
        health.checkpoint = self.checkpoint.get().map(|c| {
            let now = wall_clock_ms();
            let mut h = crate::engine::CheckpointHealth {
                written: c.written.load(Ordering::Relaxed),
                failures: c.failures.load(Ordering::Relaxed),
                restored: c.restored.load(Ordering::Relaxed),
                rebuilds: std::array::from_fn(|i| c.rebuilds[i].load(Ordering::Relaxed)),
                ..Default::default()
            };
            for s in self.slots() {
                if s.assigned.load(Ordering::Acquire) {
                    h.bytes += s.checkpoint_bytes.load(Ordering::Relaxed);
                    let at = s.checkpoint_at_ms.load(Ordering::Relaxed);
                    if at >= 0 {
                        h.age_ms = h.age_ms.max(now - at);
                    }
                }
            }
            h
        });
        health.streams = Some([
            self.streams.clients.load(Ordering::Relaxed),
            self.streams.dropped.load(Ordering::Relaxed),
        ]);
        if health.delay.is_none() {
            health.delay = Some(Default::default());
        }
        render_copied(&keys, &health, self.version, format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClockMode, EngineConfig};
    use crate::export::prometheus::render_as;
    use crate::synth::{Synth, SynthConfig};

    /// The live render copies one partition at a time; what it publishes
    /// must be byte for byte what rendering all partitions at once under
    /// their locks publishes, keys spread over several partitions included.
    #[test]
    fn copied_render_equals_locked_render() {
        let live = LiveState::new(Engine::new(EngineConfig {
            clock: ClockMode::Event,
            ..EngineConfig::default()
        }));
        let day = 86_400_000i64;
        let start = 1_700_000_000_000 - 40 * day;
        for (i, keys) in [(0, 30u64), (1, 30), (2, 7)] {
            let slot = live.slot("t", i);
            slot.assigned.store(true, Ordering::Release);
            let mut p = slot.state.lock().unwrap();
            let mut g = Synth::new(SynthConfig {
                seed: 7 + i as u64,
                keys,
                start_ms: start,
                step_ms: 40.0 * day as f64 / 20_000.0,
                duplicate_ratio: 0.01,
                invalid_ratio: 0.01,
                ..SynthConfig::default()
            });
            for _ in 0..20_000 {
                p.process(g.next_line().as_bytes());
            }
        }
        // A revoked partition is not published by either.
        let gone = live.slot("t", 3);
        gone.state
            .lock()
            .unwrap()
            .process(Synth::new(SynthConfig::default()).next_line().as_bytes());
        for format in [Format::Text, Format::OpenMetrics] {
            let locked = live.with_partitions(|parts, now| {
                let mut health = Health::of(parts);
                health.streams = Some([0, 0]);
                health.delay = health.delay.or(Some(Default::default()));
                let aggs: Vec<_> = parts.iter().map(|p| &p.agg).collect();
                render_as(&aggs, &health, now, live.version, format)
            });
            let copied = live.render(format);
            assert!(copied.contains("funnel_series "));
            assert_eq!(copied, locked, "{format:?}");
        }
    }
}
