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
