//! The poll thread's side of the hand-off to the workers: messages copied
//! into one pending batch per worker (a partition always goes to the same
//! worker, so its order is kept), each batch handed over whole through a
//! bounded channel. A full channel blocks the poll thread: backpressure on
//! fetching.
//!
//! Per message, the poll thread only copies the key and payload and
//! appends an offset: the partition (`Slot`) is referenced once per run of
//! consecutive messages of one partition, not per message, so the poll
//! thread and the workers do not bounce the slot's reference count and
//! counters between cores on every message.

use crate::live::Slot;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Messages per batch handed to a worker.
pub(super) const BATCH: usize = 1024;
/// Batches queued per worker before the poll thread waits.
pub(super) const QUEUE_BATCHES: usize = 32;

/// One message inside its batch.
pub(super) struct Item {
    pub(super) offset: i64,
    /// The key (`key_len` bytes, `NO_KEY` for none), then the payload.
    pub(super) start: u32,
    pub(super) key_len: u32,
    pub(super) len: u32,
}

pub(super) const NO_KEY: u32 = u32::MAX;

/// Consecutive items of one partition: `items[previous run's end..end]`.
pub(super) struct Run {
    pub(super) slot: Arc<Slot>,
    pub(super) end: usize,
}

#[derive(Default)]
pub(super) struct Batch {
    pub(super) runs: Vec<Run>,
    pub(super) items: Vec<Item>,
    pub(super) bytes: Vec<u8>,
}

impl Batch {
    /// Counts the batch's messages as in flight on their partitions.
    fn mark_in_flight(&self) {
        let mut from = 0;
        for r in &self.runs {
            r.slot
                .in_flight
                .fetch_add((r.end - from) as i64, Ordering::AcqRel);
            from = r.end;
        }
    }
}

pub(super) enum Work {
    Batch(Batch),
    /// Periodic upkeep of these partitions (see [`Dispatcher::upkeep`]).
    Upkeep(Vec<Arc<Slot>>),
    Flush(SyncSender<()>),
    Stop,
}

/// Batches not yet handed to workers, and the workers' queues. Only the
/// poll thread (which also runs the rebalance callbacks) pushes and drains.
pub(super) struct Dispatcher {
    pub(super) pending: Mutex<Vec<Batch>>,
    pub(super) senders: Vec<SyncSender<Work>>,
}

impl Dispatcher {
    /// The worker that applies a partition's messages.
    pub(super) fn worker_of(&self, slot: &Slot) -> usize {
        (slot.partition as usize).wrapping_add(hash_topic(&slot.topic)) % self.senders.len()
    }

    /// Appends a message of `slot`'s partition for worker `w`
    /// (`worker_of(slot)`).
    pub(super) fn push(
        &self,
        w: usize,
        slot: &Arc<Slot>,
        offset: i64,
        key: Option<&[u8]>,
        payload: &[u8],
    ) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let b = &mut pending[w];
        let start = b.bytes.len() as u32;
        let key_len = match key {
            Some(k) => {
                b.bytes.extend_from_slice(k);
                k.len() as u32
            }
            None => NO_KEY,
        };
        b.bytes.extend_from_slice(payload);
        b.items.push(Item {
            offset,
            start,
            key_len,
            len: payload.len() as u32,
        });
        let end = b.items.len();
        match b.runs.last_mut() {
            Some(r) if Arc::ptr_eq(&r.slot, slot) => r.end = end,
            _ => b.runs.push(Run {
                slot: slot.clone(),
                end,
            }),
        }
        if end >= BATCH {
            let full = std::mem::take(b);
            drop(pending);
            self.send(w, full);
        }
    }

    fn send(&self, w: usize, b: Batch) {
        b.mark_in_flight();
        // Blocks while the worker is busy: backpressure on fetching.
        let _ = self.senders[w].send(Work::Batch(b));
    }

    /// Hands every pending batch to its worker.
    pub(super) fn send_pending(&self) {
        let batches: Vec<Batch> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.iter_mut().map(std::mem::take).collect()
        };
        for (w, b) in batches.into_iter().enumerate() {
            if !b.items.is_empty() {
                self.send(w, b);
            }
        }
    }

    /// Hands each worker the given partitions of its own for upkeep
    /// ([`Partition::upkeep`](crate::engine::Partition::upkeep)): a
    /// worker otherwise calls it only after a batch, so a partition that
    /// stops receiving messages would keep its keys' expired buckets and
    /// dense slots for good. Blocks while a worker's queue is full, as a
    /// batch does.
    pub(super) fn upkeep(&self, slots: &[Arc<Slot>]) {
        let mut by_worker: Vec<Vec<Arc<Slot>>> = vec![Vec::new(); self.senders.len()];
        for s in slots {
            by_worker[self.worker_of(s)].push(s.clone());
        }
        for (w, slots) in by_worker.into_iter().enumerate() {
            if !slots.is_empty() {
                let _ = self.senders[w].send(Work::Upkeep(slots));
            }
        }
    }

    /// Applies everything dispatched so far; returns when every worker has.
    pub(super) fn drain(&self) {
        self.send_pending();
        let acks: Vec<Receiver<()>> = self
            .senders
            .iter()
            .map(|s| {
                let (tx, rx) = mpsc::sync_channel(1);
                let _ = s.send(Work::Flush(tx));
                rx
            })
            .collect();
        for rx in acks {
            let _ = rx.recv();
        }
    }
}

fn hash_topic(t: &str) -> usize {
    t.bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::engine::Engine;
    use crate::live::LiveState;

    /// Every partition given for upkeep reaches its own worker, once, and
    /// a worker with none of them gets nothing.
    #[test]
    fn upkeep_goes_to_each_partitions_worker() {
        let live = LiveState::new(Engine::new(EngineConfig::default()));
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| mpsc::sync_channel(8)).unzip();
        let d = Dispatcher {
            pending: Mutex::new((0..3).map(|_| Batch::default()).collect()),
            senders,
        };
        // Partitions 0, 1, 3 and 4 of one topic: with three workers, one
        // of them owns none (which one depends on the topic's hash).
        let slots: Vec<_> = [0, 1, 3, 4].map(|p| live.slot("t", p)).to_vec();
        d.upkeep(&slots);
        drop(d);
        let mut seen = Vec::new();
        for (w, rx) in receivers.iter().enumerate() {
            let got: Vec<Work> = rx.try_iter().collect();
            let expected: Vec<i32> = slots
                .iter()
                .filter(|s| (s.partition as usize + hash_topic("t")) % 3 == w)
                .map(|s| s.partition)
                .collect();
            match &got[..] {
                [] => assert!(expected.is_empty(), "worker {w} got nothing"),
                [Work::Upkeep(s)] => {
                    let mine: Vec<i32> = s.iter().map(|s| s.partition).collect();
                    assert_eq!(mine, expected, "worker {w}");
                    seen.extend(mine);
                }
                _ => panic!("worker {w} got {} messages", got.len()),
            }
        }
        seen.sort();
        assert_eq!(seen, [0, 1, 3, 4]);
    }
}
