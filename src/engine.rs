//! Wiring of the pure stages for one partition: decode -> dedup ->
//! aggregate, driven by a shared engine clock. No I/O: the caller hands in
//! message bytes (from Kafka, a file or a test) and reads the state back
//! through [`crate::export`].

use crate::aggregate::labels::LabelTable;
use crate::aggregate::{AggStats, Aggregator, KeyHint, KeyHints};
use crate::config::{ClockMode, EngineConfig};
use crate::decode::dedup::Dedup;
use crate::decode::{self, DecodeConfig, Event, EventType, RejectReason};
use crate::util::codec::{CheckpointError, ReadResult, Reader, Writer};
use crate::util::hash::IdHasher;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Engine time, shared by every partition. Monotonic in both modes: in
/// `wall` mode a clock step backwards does not move it back.
#[derive(Debug)]
pub struct EngineClock {
    mode: ClockMode,
    now: AtomicI64,
}

impl EngineClock {
    pub fn new(mode: ClockMode) -> Self {
        EngineClock {
            mode,
            now: AtomicI64::new(i64::MIN),
        }
    }

    /// Engine time after seeing a valid event at `ts`.
    #[inline]
    pub(crate) fn observe(&self, ts: i64, wall_ms: i64) -> i64 {
        let t = match self.mode {
            ClockMode::Event => ts,
            ClockMode::Wall => wall_ms,
        };
        self.advance(t)
    }

    /// Engine time for rendering.
    pub fn now(&self, wall_ms: i64) -> i64 {
        match self.mode {
            ClockMode::Event => self.now.load(Ordering::Relaxed),
            ClockMode::Wall => self.advance(wall_ms),
        }
    }

    /// Engine time as last advanced (`i64::MIN` before any event), without
    /// reading the wall clock.
    pub fn current(&self) -> i64 {
        self.now.load(Ordering::Relaxed)
    }

    /// Moves engine time forward to a checkpoint's engine time (never back).
    pub fn restore(&self, t: i64) {
        if t != i64::MIN {
            self.advance(t);
        }
    }

    #[inline]
    fn advance(&self, t: i64) -> i64 {
        let prev = self.now.fetch_max(t, Ordering::Relaxed);
        prev.max(t)
    }
}

/// How many messages [`Partition::process_batch_at`] decodes ahead of the
/// one it applies.
pub(crate) const BATCH_AHEAD: usize = 16;

/// How many messages ahead of its decoding [`Partition::process_batch_at`]
/// prefetches a message's bytes: a worker's batch was written by the poll
/// thread on another core, and a message's first bytes otherwise stall
/// the decoder's first loads.
const MESSAGE_AHEAD: usize = 4;
/// Wall time between two trims of [`Partition::upkeep`], and the keys each
/// trims: about 1 µs a key once the state has outgrown the cache (3.3 to
/// 7 ms for 4,096 keys of a 160k-key backfill, measured), so about 0.1% of
/// a worker's time.
const TRIM_EVERY_MS: i64 = 1_000;
const TRIM_KEYS: usize = 1_024;
/// Dedup lookups done together by [`Partition::process_batch_at`].
const DEDUP_BURST: usize = 8;
/// How many messages after its decoding a message's ring tails are
/// prefetched: once its ring headers (stage 3) have arrived, well before
/// it is applied.
const TAILS_AHEAD: usize = 8;
/// Below this many keys, and a dedup table sized for [`PIPELINE_MIN_IDS`]
/// remembered ids,
/// [`Partition::process_batch_at`] applies messages one by one: the state
/// is then small enough to stay in cache, and the pipeline's work costs
/// more than the misses it hides. Measured on the backfill stream (medians
/// of three alternating runs, ns/event, one by one against the pipeline):
/// 544/662 at 2,000 keys, 624/647 at 4,000, 734/710 at 5,000, 746/707 at
/// 7,000, 819/738 at 10,000.
pub(crate) const PIPELINE_MIN_KEYS: usize = 4096;
/// From this many remembered ids the pipeline runs whatever the number of
/// keys: the dedup table (8 bytes a slot, at most half full) is then 4 MB,
/// twice this machine's L2, and its two misses an event (the new id's slot
/// and the expiring id's) stall the one-by-one loop. Measured on the v1
/// backfill stream at 100 keys (ns/event, one by one against the
/// pipeline, two runs each): 707/806 and 775/762 with 30,000 ids, 800/784
/// and 783/809 with 100,000, 897/855 and 807/917 with 300,000, and at
/// 500 keys with a million ids 1,058/898, 1,070/996, 1,041/945; on the
/// realistic log (55 keys, about a million ids) 1,690 against 1,580.
/// The table never shrinks, so the rule is its size: the slots this many
/// ids grow it to (8 MB). After a jump of engine time has expired most ids
/// (the end of a backfill), a lookup in that table still misses the cache
/// however few ids are left.
pub(crate) const PIPELINE_MIN_IDS: usize = 1 << 18;

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied { late: bool },
    Duplicate,
    Rejected(RejectReason),
}

/// Upper bounds (seconds) of the `funnel_event_delay_seconds` buckets.
pub(crate) const DELAY_BUCKETS_S: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0, 604800.0,
];

/// Histogram of processing time minus event time (live use only: in a
/// replay of history it would only measure the history's age).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DelayHistogram {
    /// Per bucket (not cumulative), the last one for +Inf.
    pub counts: [u64; DELAY_BUCKETS_S.len() + 1],
    pub(crate) sum_ms: i128,
}

impl DelayHistogram {
    #[inline]
    pub(crate) fn observe(&mut self, delay_ms: i64) {
        let s = delay_ms as f64 / 1000.0;
        let i = DELAY_BUCKETS_S.partition_point(|&le| le < s);
        self.counts[i] += 1;
        self.sum_ms += i128::from(delay_ms);
    }

    pub fn add(&mut self, o: &DelayHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.sum_ms += o.sum_ms;
    }
}

/// Counters of the decode and dedup steps of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionStats {
    pub ingested: [u64; EventType::ALL.len()],
    pub rejected: [u64; RejectReason::ALL.len()],
    pub duplicates: u64,
}

/// Engine-wide shared parts: settings, label table, clock.
#[derive(Debug, Clone)]
pub struct Engine {
    pub config: Arc<EngineConfig>,
    pub labels: Arc<LabelTable>,
    pub clock: Arc<EngineClock>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            labels: Arc::new(
                LabelTable::new(
                    config.max_channels,
                    config.max_campaigns,
                    config.max_actions,
                )
                .with_series_budget(
                    config.max_series,
                    crate::kpi::charges(config.published_windows()),
                ),
            ),
            clock: Arc::new(EngineClock::new(config.clock)),
            config: Arc::new(config),
        }
    }

    /// A partition that also records `funnel_event_delay_seconds` (live use).
    pub fn live_partition(&self) -> Partition {
        let mut p = self.partition();
        p.delay = Some(DelayHistogram::default());
        p
    }

    pub fn partition(&self) -> Partition {
        Partition {
            delay: None,
            decode: self.config.decode_config(),
            clock: self.clock.clone(),
            dedup: Dedup::new(self.config.dedup_horizon_ms, self.config.dedup_capacity),
            agg: Aggregator::new(&self.config, self.labels.clone()),
            key_hints: KeyHints::default(),
            pipeline_min_keys: PIPELINE_MIN_KEYS,
            stats: PartitionStats::default(),
            trim_at: i64::MIN,
            trim_cursor: 0,
        }
    }
}

/// The processing state of one partition (one Kafka partition, or one
/// replayed file).
#[derive(Debug)]
pub struct Partition {
    decode: DecodeConfig,
    clock: Arc<EngineClock>,
    dedup: Dedup,
    pub agg: Aggregator,
    /// Key lookups for [`process_batch_at`](Self::process_batch_at) only.
    key_hints: KeyHints,
    /// See [`PIPELINE_MIN_KEYS`]; tests lower it to run the pipeline on
    /// small states.
    pipeline_min_keys: usize,
    pub stats: PartitionStats,
    pub delay: Option<DelayHistogram>,
    /// Wall time of the next [`upkeep`](Self::upkeep) trim, and the key it
    /// starts at.
    trim_at: i64,
    trim_cursor: usize,
}

impl Partition {
    /// Processes one message value with the given wall-clock reading.
    pub fn process_at(&mut self, bytes: &[u8], wall_ms: i64) -> Outcome {
        match decode::decode(bytes, &self.decode, wall_ms) {
            Ok(ev) => {
                let id = self.agg.ids.hash(&ev.id);
                let hint = self.agg.key_hint(&ev);
                self.apply_decoded(&ev, id, hint, wall_ms)
            }
            Err(reason) => self.reject(reason),
        }
    }

    /// Processes message values in order with the given wall-clock reading,
    /// appending one outcome per message to `out`. Exactly equivalent to
    /// calling [`process_at`](Self::process_at) on each, but faster on
    /// large state: a software pipeline decodes [`BATCH_AHEAD`] events ahead
    /// of the one it applies and, while decoding, prefetches the memory the
    /// coming events will touch (dedup slots, key state, then ring headers,
    /// then ring buckets, each step once the previous one has arrived), so
    /// that their cache misses overlap with work instead of stalling it.
    /// Below [`PIPELINE_MIN_KEYS`] keys and a dedup table sized for
    /// [`PIPELINE_MIN_IDS`] remembered ids it is exactly that loop.
    pub fn process_batch_at<M: AsRef<[u8]>>(
        &mut self,
        msgs: &[M],
        wall_ms: i64,
        out: &mut Vec<Outcome>,
    ) {
        if !self.pipelined() {
            out.reserve(msgs.len());
            for m in msgs {
                out.push(self.process_at(m.as_ref(), wall_ms));
            }
            return;
        }
        const SLOTS: usize = (BATCH_AHEAD + 1).next_power_of_two();
        // Each message's decoded event, then its dedup id and pair hash,
        // then its key hint, in separate rings: an event is written once
        // and applied in place (it is 136 bytes; moving it costs a copy).
        let mut events: [Option<Result<Event<'_>, RejectReason>>; SLOTS] = Default::default();
        let mut ids = [(0u64, 0u128); SLOTS];
        let mut hints: [Option<KeyHint>; SLOTS] = [None; SLOTS];
        let n = msgs.len();
        out.reserve(n);
        for i in 0..n + BATCH_AHEAD {
            // Stage 0: decode, hash, prefetch the dedup and key-hint slots.
            if let Some(m) = msgs.get(i + MESSAGE_AHEAD) {
                crate::util::prefetch::prefetch_all(m.as_ref());
            }
            if let Some(m) = msgs.get(i) {
                let slot = &mut events[i % SLOTS];
                *slot = Some(decode::decode(m.as_ref(), &self.decode, wall_ms));
                ids[i % SLOTS] = match slot {
                    Some(Ok(e)) => (self.agg.ids.hash(&e.id), self.key_hints.start(e)),
                    _ => (0, 0),
                };
                hints[i % SLOTS] = None;
                // The dedup slots are prefetched in a burst, so that their
                // misses overlap each other.
                if (i + 1) % DEDUP_BURST == 0 || i + 1 == n {
                    let from = (i + 1).saturating_sub(DEDUP_BURST);
                    for j in from..=i {
                        if let Some(Ok(_)) = &events[j % SLOTS] {
                            self.dedup.touch(ids[j % SLOTS].0);
                        }
                    }
                    for k in BATCH_AHEAD - DEDUP_BURST..BATCH_AHEAD {
                        self.dedup.touch_nth(k);
                    }
                }
            }
            // Stage 1: resolve the key, prefetch its state.
            if let Some(j) = i.checked_sub(1).filter(|&j| j < n) {
                if let Some(Ok(e)) = &events[j % SLOTS] {
                    let h = self.key_hints.resolve(&self.agg, ids[j % SLOTS].1);
                    self.agg.prefetch_key(e, h);
                    hints[j % SLOTS] = Some(h);
                }
            }
            // Stage 2: ring headers; stage 3: ring buckets.
            if let Some(j) = i.checked_sub(2).filter(|&j| j < n) {
                if let (Some(Ok(e)), Some(h)) = (&events[j % SLOTS], hints[j % SLOTS]) {
                    self.agg.prefetch_rings(e, h);
                }
            }
            if let Some(j) = i.checked_sub(3).filter(|&j| j < n) {
                if let (Some(Ok(e)), Some(h)) = (&events[j % SLOTS], hints[j % SLOTS]) {
                    self.agg.prefetch_buckets(e, h);
                }
            }
            // Stage 4: the ends of the rings' bytes.
            if let Some(j) = i.checked_sub(TAILS_AHEAD).filter(|&j| j < n) {
                if let (Some(Ok(e)), Some(h)) = (&events[j % SLOTS], hints[j % SLOTS]) {
                    self.agg.prefetch_tails(e, h);
                }
            }
            if let Some(j) = i.checked_sub(BATCH_AHEAD).filter(|&j| j < n) {
                out.push(match (&events[j % SLOTS], hints[j % SLOTS]) {
                    (Some(Ok(ev)), Some(hint)) => {
                        self.apply_decoded(ev, ids[j % SLOTS].0, hint, wall_ms)
                    }
                    (Some(Err(reason)), _) => self.reject(*reason),
                    _ => unreachable!("message {j} was decoded"),
                });
            }
        }
    }

    /// Periodic upkeep for a long-running partition, cheap enough to call
    /// after every batch: at most every [`TRIM_EVERY_MS`] of wall time,
    /// trims the next [`TRIM_KEYS`] keys (see [`Aggregator::trim`]), so
    /// that keys gone idle give back the memory of buckets that have left
    /// their windows, and backfilled keys their dense slots. A partition
    /// of 100k keys is swept in under two minutes. The live source also
    /// calls it every second for partitions that get no messages, so
    /// engine time is read as rendering reads it: with the wall clock it
    /// moves on while the partition is idle.
    pub fn upkeep(&mut self, wall_ms: i64) {
        if wall_ms < self.trim_at {
            return;
        }
        self.trim_at = wall_ms.saturating_add(TRIM_EVERY_MS);
        let now = self.clock.now(wall_ms);
        if now != i64::MIN {
            self.trim_cursor = self.agg.trim(now, self.trim_cursor, TRIM_KEYS);
        }
    }

    /// Does [`process_batch_at`](Self::process_batch_at) run its pipeline
    /// (the state has outgrown the cache) rather than a plain loop?
    #[inline]
    fn pipelined(&self) -> bool {
        self.agg.keys().len() >= self.pipeline_min_keys
            || self.dedup.table_slots() > 2 * PIPELINE_MIN_IDS
    }

    #[inline]
    fn reject(&mut self, reason: RejectReason) -> Outcome {
        self.stats.rejected[reason.index()] += 1;
        Outcome::Rejected(reason)
    }

    /// Dedup and aggregation of a decoded event; `id` is its id's hash,
    /// `hint` from `self.agg.key_hint(ev)`.
    #[inline]
    fn apply_decoded(&mut self, ev: &Event<'_>, id: u64, hint: KeyHint, wall_ms: i64) -> Outcome {
        let now = self.clock.observe(ev.ts, wall_ms);
        let ts_eff = ev.ts.min(now);
        if self.dedup.check_and_insert(id, now) {
            self.stats.duplicates += 1;
            return Outcome::Duplicate;
        }
        let late = self.agg.apply_hinted(ev, ts_eff, now, hint);
        self.stats.ingested[ev.event_type() as usize] += 1;
        if let Some(d) = &mut self.delay {
            d.observe(wall_ms.saturating_sub(ev.ts));
        }
        Outcome::Applied { late }
    }

    pub fn dedup(&self) -> &Dedup {
        &self.dedup
    }

    /// The state's own accounting of its bytes ([`Aggregator::memory_bytes`]).
    #[cfg(test)]
    pub(crate) fn state_bytes(&self) -> usize {
        self.agg.memory_bytes()
    }

    /// The buckets the v1 rings hold ([`Aggregator::v1_buckets`]).
    #[cfg(test)]
    pub(crate) fn state_buckets(&self) -> usize {
        self.agg.v1_buckets()
    }

    /// Checkpoint encoding of everything but the settings (see
    /// [`crate::checkpoint`]).
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        for counters in [&self.stats.ingested[..], &self.stats.rejected[..]] {
            w.uvar(counters.len() as u64);
            for c in counters {
                w.uvar(*c);
            }
        }
        w.uvar(self.stats.duplicates);
        match &self.delay {
            None => w.u8(0),
            Some(d) => {
                w.u8(1);
                w.uvar(d.counts.len() as u64);
                for c in d.counts {
                    w.uvar(c);
                }
                w.i128var(d.sum_ms);
            }
        }
        // Format 5: the id hasher's key (0: unkeyed, restored from format
        // 4 or older), then the dedup memory hashed with it.
        match self.agg.ids.key() {
            None => w.u8(0),
            Some((k0, k1)) => {
                w.u8(1);
                w.u64_fixed(k0);
                w.u64_fixed(k1);
            }
        }
        self.dedup.encode_into(w);
        self.agg.encode_into(w);
    }

    /// Inverse of [`encode_into`](Self::encode_into), into a fresh partition,
    /// for checkpoint format `version` written at engine time `engine_now`.
    pub(crate) fn decode_from(
        &mut self,
        r: &mut Reader<'_>,
        version: u16,
        engine_now: i64,
    ) -> ReadResult<()> {
        fn counters(r: &mut Reader<'_>, out: &mut [u64]) -> ReadResult<()> {
            if r.count(1)? != out.len() {
                return Err(CheckpointError::Corrupt("counter array length".into()));
            }
            for c in out.iter_mut() {
                *c = r.uvar()?;
            }
            Ok(())
        }
        // Formats 1 and 2 count the six v1 types only.
        if version < 3 {
            counters(r, &mut self.stats.ingested[..EventType::V1_COUNT])?;
        } else {
            counters(r, &mut self.stats.ingested)?;
        }
        counters(r, &mut self.stats.rejected)?;
        self.stats.duplicates = r.uvar()?;
        match r.u8()? {
            0 => {}
            1 => {
                let mut d = DelayHistogram::default();
                counters(r, &mut d.counts)?;
                d.sum_ms = r.i128var()?;
                // A live partition keeps its histogram; a replay has none.
                if self.delay.is_some() {
                    self.delay = Some(d);
                }
            }
            _ => return Err(CheckpointError::Corrupt("delay histogram flag".into())),
        }
        let ids = if version < 5 {
            IdHasher::LEGACY
        } else {
            match r.u8()? {
                0 => IdHasher::LEGACY,
                1 => IdHasher::from_key(Some((r.u64_fixed()?, r.u64_fixed()?))),
                _ => return Err(CheckpointError::Corrupt("id hasher flag".into())),
            }
        };
        self.dedup.decode_from(r, version, engine_now)?;
        self.agg.decode_from(r, version)?;
        self.agg.ids = ids;
        Ok(())
    }
}

/// The engine's own health counters, summed over partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub partition: PartitionStats,
    pub agg: AggStats,
    pub(crate) dedup_evicted: u64,
    /// Live use only.
    pub delay: Option<DelayHistogram>,
    /// `(topic, partition, lag)` of assigned partitions (live use only).
    pub lag: Vec<(String, i32, i64)>,
    /// `(topic, partition)` of the partitions whose state this exposition
    /// holds (live use only): `funnel_partition_owned`.
    pub(crate) owned: Vec<(String, i32)>,
    /// Dead-letter copies written, failed writes, copies pending.
    pub(crate) dead_letter: Option<[u64; 3]>,
    /// Checkpoint counters (live use with a checkpoint topic only).
    pub checkpoint: Option<CheckpointHealth>,
    /// `/api/v1/kpis/stream` clients connected now, and dropped because
    /// they stopped reading (live use only).
    pub streams: Option<[u64; 2]>,
    /// The `max_series` budget (0 when no partition was added).
    pub series_budget: u64,
}

/// Checkpoint counters and gauges, for the exposition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointHealth {
    pub written: u64,
    pub failures: u64,
    pub restored: u64,
    /// By [`crate::checkpoint::REBUILD_REASONS`].
    pub(crate) rebuilds: [u64; 3],
    /// Latest checkpoint size of each assigned partition, summed.
    pub bytes: u64,
    /// Age of the oldest latest checkpoint among assigned partitions.
    pub(crate) age_ms: i64,
}

impl Health {
    pub fn add(&mut self, p: &Partition) {
        for (a, b) in self.partition.ingested.iter_mut().zip(p.stats.ingested) {
            *a += b;
        }
        for (a, b) in self.partition.rejected.iter_mut().zip(p.stats.rejected) {
            *a += b;
        }
        self.partition.duplicates += p.stats.duplicates;
        self.agg.late += p.agg.stats.late;
        for i in 0..4 {
            self.agg.label_overflow[i] += p.agg.stats.label_overflow[i];
        }
        for i in 0..2 {
            self.agg.fields_ignored[i] += p.agg.stats.fields_ignored[i];
        }
        self.agg.deals_untracked += p.agg.stats.deals_untracked;
        self.series_budget = p.agg.labels().keys.max_series() as u64;
        self.dedup_evicted += p.dedup.evicted;
        if let Some(d) = &p.delay {
            self.delay
                .get_or_insert_with(DelayHistogram::default)
                .add(d);
        }
    }

    pub fn of(partitions: &[&Partition]) -> Health {
        let mut h = Health::default();
        for p in partitions {
            h.add(p);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_windows;
    use crate::export::prometheus::render;
    use crate::synth::{Synth, SynthConfig};

    /// A stream with duplicates, malformed events, late events (a second
    /// source two days behind), events ahead of the engine clock, and
    /// events of the v2 types (the main source only).
    fn stream(keys: u64, step_ms: f64, n: usize) -> Vec<String> {
        let cfg = |seed, start_ms, v2_ratio| SynthConfig {
            seed,
            keys,
            step_ms,
            start_ms,
            duplicate_ratio: 0.05,
            invalid_ratio: 0.03,
            v2_ratio,
            ..SynthConfig::default()
        };
        let start = SynthConfig::default().start_ms;
        let mut a = Synth::new(cfg(1, start, 0.25));
        let mut b = Synth::new(cfg(2, start - 200 * 86_400_000, 0.0));
        let mut c = Synth::new(cfg(3, start + 60_000, 0.0));
        let mut pick = crate::synth::Rng::new(9);
        (0..n)
            .map(|_| match pick.below(10) {
                0 => b.next_line(),
                1 => c.next_line(),
                _ => a.next_line(),
            })
            .collect()
    }

    /// A partition trimmed all along publishes what an untrimmed one does,
    /// after every chunk of a stream whose keys go idle, and holds less.
    #[test]
    fn trimming_changes_no_published_value_and_gives_memory_back() {
        let start = SynthConfig::default().start_ms;
        const DAY: i64 = 86_400_000;
        // A shuffled week-long backfill of 300 keys (their rings, updated
        // out of order, turn dense), then 200 days of a trickle on 3 keys
        // while the others sit idle.
        let mut backfill = Synth::new(SynthConfig {
            seed: 5,
            keys: 300,
            step_ms: 20_000.0,
            duplicate_ratio: 0.02,
            invalid_ratio: 0.01,
            v2_ratio: 0.25,
            ..SynthConfig::default()
        });
        let mut msgs: Vec<String> = (0..30_000).map(|_| backfill.next_line()).collect();
        let mut rng = crate::synth::Rng::new(3);
        for i in (1..msgs.len()).rev() {
            msgs.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut trickle = Synth::new(SynthConfig {
            seed: 6,
            keys: 3,
            start_ms: start + 10 * DAY,
            step_ms: (200 * DAY / 10_000) as f64,
            v2_ratio: 0.25,
            ..SynthConfig::default()
        });
        msgs.extend((0..10_000).map(|_| trickle.next_line()));
        let wall = start + 400 * DAY;
        let cfg = EngineConfig {
            windows: parse_windows("5m,1h,1d,7d,30d,90d").unwrap(),
            clock: ClockMode::Event,
            ..EngineConfig::default()
        };
        let (a_engine, b_engine) = (Engine::new(cfg.clone()), Engine::new(cfg));
        let (mut a, mut b) = (a_engine.partition(), b_engine.partition());
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let mut cursor = 0;
        let mut most = 0;
        for chunk in msgs.chunks(500) {
            a.process_batch_at(chunk, wall, &mut out_a);
            b.process_batch_at(chunk, wall, &mut out_b);
            // An odd number of keys a call, so the sweep wraps unevenly.
            cursor = a.agg.trim(a.clock.current(), cursor, 97);
            let now = a_engine.clock.now(wall);
            assert_eq!(now, b_engine.clock.now(wall));
            assert_eq!(
                render(&[&a.agg], &Health::of(&[&a]), now, "t"),
                render(&[&b.agg], &Health::of(&[&b]), now, "t"),
            );
            most = most.max(b.agg.memory_bytes());
        }
        assert_eq!(out_a, out_b);
        // The idle keys' buckets, and with them their dense slots, are
        // gone; what is left is the fixed part of 300 keys' state.
        let (held, kept) = (a.agg.v1_buckets(), b.agg.v1_buckets());
        assert!(held * 10 < kept, "trimmed {held} buckets, untrimmed {kept}");
        let (held, kept) = (a.agg.memory_bytes(), b.agg.memory_bytes());
        assert!(
            held * 3 < kept * 2,
            "trimmed {held} bytes, untrimmed {kept}, peak {most}"
        );
    }

    #[test]
    fn batch_processing_equals_one_by_one() {
        let start = SynthConfig::default().start_ms;
        for (keys, step, windows, clock) in [
            (7, 100.0, "5m,1h,1d,7d,30d,90d", ClockMode::Event),
            (300, 0.5, "1m,1h", ClockMode::Event),
            (5000, 3000.0, "5m,1d,90d", ClockMode::Event),
            (50, 10.0, "5m,1h", ClockMode::Wall),
        ] {
            let msgs = stream(keys, step, 20_000);
            let wall = match clock {
                ClockMode::Event => start + 400 * 86_400_000,
                ClockMode::Wall => start + 400_000,
            };
            let cfg = EngineConfig {
                windows: parse_windows(windows).unwrap(),
                clock,
                dedup_capacity: 3_000,
                dedup_horizon_ms: 600_000,
                max_campaigns: 2_000,
                max_tracked_deals: 500,
                ..EngineConfig::default()
            };
            let one_engine = Engine::new(cfg.clone());
            let mut one = one_engine.live_partition();
            let expect: Vec<Outcome> = msgs
                .iter()
                .map(|m| one.process_at(m.as_bytes(), wall))
                .collect();
            for min_keys in [0, PIPELINE_MIN_KEYS] {
                let batch_engine = Engine::new(cfg.clone());
                let mut batch = batch_engine.live_partition();
                batch.pipeline_min_keys = min_keys;
                let mut got = Vec::new();
                let mut rest = &msgs[..];
                let mut sizes = [1usize, 16, 7, 33, 256, 15, 17].iter().cycle();
                while !rest.is_empty() {
                    let (now, later) = rest.split_at((*sizes.next().unwrap()).min(rest.len()));
                    batch.process_batch_at(now, wall, &mut got);
                    rest = later;
                }
                assert_eq!(got, expect, "{keys} keys, {windows}");
                assert_eq!(batch.stats, one.stats);
                assert_eq!(batch.dedup.len(), one.dedup.len());
                assert_eq!(batch.dedup.evicted, one.dedup.evicted);
                let now = one_engine.clock.now(wall);
                assert_eq!(now, batch_engine.clock.now(wall));
                assert_eq!(
                    render(&[&batch.agg], &Health::of(&[&batch]), now, "t"),
                    render(&[&one.agg], &Health::of(&[&one]), now, "t"),
                );
            }
            assert!(expect.contains(&Outcome::Duplicate));
            assert!(expect.contains(&Outcome::Applied { late: true }));
            assert!(expect.iter().any(|o| matches!(o, Outcome::Rejected(_))));
        }
    }
}
