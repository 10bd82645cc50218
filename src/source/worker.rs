//! Worker threads: apply batches to their partitions' state and record
//! the next offset to apply.

use super::dead_letter::DeadLetter;
use super::dispatch::{Batch, Item, Work, NO_KEY};
use crate::clock::wall_clock_ms;
use crate::engine::Outcome;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

pub(super) fn worker(rx: Receiver<Work>, dead_letter: Option<&DeadLetter>) {
    let mut outcomes = Vec::new();
    for work in rx {
        match work {
            Work::Flush(ack) => {
                let _ = ack.send(());
            }
            Work::Batch(b) => apply_batch(&b, dead_letter, &mut outcomes),
            Work::Upkeep(slots) => {
                for slot in slots {
                    if slot.assigned.load(Ordering::Acquire) {
                        let mut part = slot.state.lock().unwrap_or_else(|e| e.into_inner());
                        part.upkeep(wall_clock_ms());
                    }
                }
            }
            Work::Stop => break,
        }
    }
}

impl Item {
    /// The message's key (if any) and payload inside its batch's bytes.
    fn parts<'a>(&self, bytes: &'a [u8]) -> (Option<&'a [u8]>, &'a [u8]) {
        let mut at = self.start as usize;
        let key = (self.key_len != NO_KEY).then(|| {
            at += self.key_len as usize;
            &bytes[self.start as usize..at]
        });
        (key, &bytes[at..at + self.len as usize])
    }
}

/// Applies a batch, one run of consecutive messages of a partition at a
/// time, through the prefetching batch path of the engine: the partition's
/// state is locked once per run.
fn apply_batch(b: &Batch, dead_letter: Option<&DeadLetter>, outcomes: &mut Vec<Outcome>) {
    let mut payloads: Vec<&[u8]> = Vec::with_capacity(b.items.len());
    let mut i = 0;
    for run in &b.runs {
        let (slot, items) = (&run.slot, &b.items[i..run.end]);
        payloads.clear();
        payloads.extend(items.iter().map(|it| it.parts(&b.bytes).1));
        outcomes.clear();
        {
            let mut part = slot.state.lock().unwrap_or_else(|e| e.into_inner());
            let wall = wall_clock_ms();
            part.process_batch_at(&payloads, wall, outcomes);
            part.upkeep(wall);
            if let Some(d) = dead_letter {
                for (it, o) in items.iter().zip(outcomes.iter()) {
                    if let Outcome::Rejected(reason) = o {
                        let (key, bytes) = it.parts(&b.bytes);
                        d.send(slot, it.offset, key, bytes, reason.as_str());
                    }
                }
            }
            // Under the state lock, so a checkpoint sees state and offset
            // together.
            if let Some(last) = items.last() {
                slot.applied_next
                    .fetch_max(last.offset + 1, Ordering::AcqRel);
            }
        }
        let n = items.len() as i64;
        slot.in_flight.fetch_sub(n, Ordering::AcqRel);
        slot.messages.fetch_add(n, Ordering::AcqRel);
        i = run.end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_windows;
    use crate::config::{ClockMode, EngineConfig};
    use crate::engine::Engine;
    use crate::live::{LiveState, Slot};
    use crate::synth::{Synth, SynthConfig};
    use std::sync::mpsc;

    const DAY: i64 = 86_400_000;

    /// A partition that stops getting messages is still trimmed: its
    /// keys' buckets leave their windows as engine time moves on with the
    /// other partitions, and the worker's periodic upkeep gives their
    /// memory back. Before, only a batch of the partition's own ran it.
    #[test]
    fn an_idle_partition_is_trimmed_by_its_worker() {
        let start = SynthConfig::default().start_ms;
        let engine = Engine::new(EngineConfig {
            windows: parse_windows("5m,1h,1d,7d,30d,90d").unwrap(),
            clock: ClockMode::Event,
            ..EngineConfig::default()
        });
        let live = LiveState::new(engine);
        let (idle, busy) = (live.slot("t", 0), live.slot("t", 1));
        for s in [&idle, &busy] {
            s.assigned.store(true, Ordering::Release);
        }
        let wall = start + 400 * DAY;
        // `n` events of a synthetic stream, applied to `slot`'s partition.
        let feed = |slot: &Slot, cfg: SynthConfig, n: usize| {
            let mut synth = Synth::new(cfg);
            let msgs: Vec<String> = (0..n).map(|_| synth.next_line()).collect();
            let mut part = slot.state.lock().unwrap();
            part.process_batch_at(&msgs, wall, &mut Vec::new());
        };
        let backfill = SynthConfig {
            keys: 300,
            step_ms: 20_000.0,
            v2_ratio: 0.25,
            ..SynthConfig::default()
        };
        feed(&idle, backfill, 30_000);
        // The other partition moves engine time past every window,
        // calendar ones included; the idle one has had its last batch.
        let later = SynthConfig {
            keys: 3,
            start_ms: start + 300 * DAY,
            ..SynthConfig::default()
        };
        feed(&busy, later, 100);
        let held = |s: &Slot| {
            let p = s.state.lock().unwrap();
            (p.state_buckets(), p.state_bytes())
        };
        let before = held(&idle);

        let (tx, rx) = mpsc::sync_channel(4);
        let worker = std::thread::spawn(move || worker(rx, None));
        // An upkeep trims at most once a second of wall time, and 1,024
        // keys each time: one covers all of these.
        tx.send(Work::Upkeep(vec![idle.clone()])).unwrap();
        let (ack, done) = mpsc::sync_channel(1);
        tx.send(Work::Flush(ack)).unwrap();
        done.recv().unwrap();
        let after = held(&idle);
        tx.send(Work::Stop).unwrap();
        worker.join().unwrap();
        assert!(
            after.0 * 10 < before.0 && after.1 < before.1,
            "idle partition holds (buckets, bytes) {after:?} of {before:?}"
        );
    }
}
