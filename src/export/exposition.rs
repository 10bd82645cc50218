//! The exposition of the live state: `LiveState`'s render methods live
//! here, so `live` stays shared state that knows no output format.

use crate::clock::wall_clock_ms;
use crate::engine::Health;
use crate::export::prometheus::{render_copied, Format, KeyCopies};
use crate::live::LiveState;
use std::sync::atomic::Ordering;

impl LiveState {
    /// Every assigned partition's keys (summed at the engine time returned)
    /// and health counters, copied out one partition at a time: each
    /// partition is locked only while its own state is copied, so a render
    /// never stalls ingestion on the other partitions, nor on this one for
    /// longer than the copy. Partitions revoked from this instance are left
    /// out: their new owner publishes them.
    pub(crate) fn copy_partitions(&self) -> (KeyCopies, Health, i64) {
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
