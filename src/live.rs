//! State shared by the live path: the source writes it, the HTTP export
//! reads it. One `Mutex<Partition>` per Kafka partition, locked by the one
//! worker that owns the partition and, briefly, by a render: there is no
//! global lock on the hot path. Knows neither Kafka nor HTTP nor the
//! exposition format: `export::exposition` renders it.

use crate::engine::{Engine, Partition};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// One Kafka partition's processing state and progress.
#[derive(Debug)]
pub struct Slot {
    pub topic: String,
    pub partition: i32,
    pub state: Mutex<Partition>,
    /// Next offset to apply (offset of the last applied message + 1), -1
    /// before the first.
    pub(crate) applied_next: AtomicI64,
    /// High watermark seen at assignment: caught up once applied_next or
    /// the fetch position reaches it. -1 while unknown.
    pub target: AtomicI64,
    /// Offset consumption started from at assignment, -1 unknown.
    pub(crate) start_offset: AtomicI64,
    /// The target has been raised to a high watermark reported by a fetch
    /// response since assignment (ListOffsets alone can lag behind on some
    /// brokers).
    pub(crate) target_confirmed: AtomicBool,
    /// Dispatched to a worker but not yet applied.
    pub(crate) in_flight: AtomicI64,
    /// Offsets of rejected events whose dead-letter copy is not yet
    /// acknowledged: the partition's commit stays below the first.
    pub(crate) dlq_pending: Mutex<std::collections::BTreeSet<i64>>,
    /// Next offset covered by the last acknowledged checkpoint of this
    /// slot's current state, -1 none (checkpointing only).
    pub(crate) checkpointed: AtomicI64,
    /// Checkpoint slot (0 or 1) the next checkpoint goes to.
    pub(crate) checkpoint_slot: std::sync::atomic::AtomicU8,
    /// Size and wall-clock time of the last checkpoint (or of the
    /// assignment, before the first).
    pub(crate) checkpoint_bytes: std::sync::atomic::AtomicU64,
    pub(crate) checkpoint_at_ms: AtomicI64,
    /// Held while a checkpoint of this partition is taken, and while the
    /// partition is assigned or revoked.
    pub(crate) checkpoint_lock: Mutex<()>,
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
    pub(crate) fn caught_up(&self) -> bool {
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
    pub(crate) assigned_once: AtomicBool,
    pub(crate) shutting_down: AtomicBool,
    /// Last error that made every broker unreachable; cleared on progress.
    pub(crate) brokers_down: Mutex<Option<String>>,
    pub version: &'static str,
    /// Dead-letter counters, when a dead-letter topic is configured.
    pub(crate) dead_letter: std::sync::OnceLock<Arc<DeadLetterStats>>,
    /// Checkpoint counters, when a checkpoint topic is configured.
    pub checkpoint: std::sync::OnceLock<Arc<CheckpointStats>>,
    /// Set when the engine must stop with an error (a refused checkpoint).
    pub(crate) fatal: Mutex<Option<String>>,
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
            version: crate::VERSION,
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

    pub(crate) fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` with every assigned partition's state locked (in a fixed
    /// order, so concurrent renders cannot deadlock), and the engine time.
    /// A partition revoked from this instance is not published: its new
    /// owner publishes it, so `sum` across instances counts it once.
    /// Holds every lock for the whole of `f`: the live exports use
    /// [`copy_partitions`](Self::copy_partitions) instead.
    #[cfg(test)]
    pub(crate) fn with_partitions<R>(&self, f: impl FnOnce(&[&Partition], i64) -> R) -> R {
        use crate::clock::wall_clock_ms;
        use std::sync::MutexGuard;
        let slots = self.assigned();
        let guards: Vec<MutexGuard<'_, Partition>> = slots
            .iter()
            .map(|s| s.state.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let parts: Vec<&Partition> = guards.iter().map(|g| &**g).collect();
        let now = self.engine.clock.now(wall_clock_ms());
        f(&parts, now)
    }

    /// The slots of the partitions assigned to this instance.
    pub fn assigned(&self) -> Vec<Arc<Slot>> {
        self.slots()
            .into_iter()
            .filter(|s| s.assigned.load(Ordering::Acquire))
            .collect()
    }
}

/// Dead-letter counters (written by the source, published on /metrics).
#[derive(Debug, Default)]
pub(crate) struct DeadLetterStats {
    pub written: AtomicU64,
    pub failures: AtomicU64,
    pub pending: AtomicI64,
}

/// Checkpoint counters (written by the source, published on /metrics).
#[derive(Debug, Default)]
pub struct CheckpointStats {
    pub written: AtomicU64,
    pub failures: AtomicU64,
    pub restored: AtomicU64,
    pub(crate) rebuilds: [AtomicU64; 3],
    pub written_bytes: AtomicU64,
    /// Microseconds spent encoding (partition locked) and writing.
    pub(crate) encode_us: AtomicU64,
    pub(crate) write_us: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::wall_clock_ms;
    use crate::config::{ClockMode, EngineConfig};
    use crate::engine::Health;
    use crate::export::prometheus::{render_as, Format};
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
                p.process_at(g.next_line().as_bytes(), wall_clock_ms());
            }
        }
        // A revoked partition is not published by either.
        let gone = live.slot("t", 3);
        gone.state.lock().unwrap().process_at(
            Synth::new(SynthConfig::default()).next_line().as_bytes(),
            wall_clock_ms(),
        );
        for format in [Format::Text, Format::OpenMetrics] {
            let locked = live.with_partitions(|parts, now| {
                let mut health = Health::of(parts);
                // The partitions rendered are the ones owned.
                health.owned = live
                    .assigned()
                    .iter()
                    .map(|s| (s.topic.clone(), s.partition))
                    .collect();
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
